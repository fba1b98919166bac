"""The XML-RPC dispatcher on its own: parsing, argument checks, faults, marshalling,
system.* and multicall, with a small namespace instead of the core."""

from __future__ import annotations

import asyncio
import xmlrpc.client

import pytest

from fleetvisor.agent.faults import Fault, FaultError
from fleetvisor.agent.mainlog import Level, MainLog
from fleetvisor.agent.rpc.supervisor_api import SupervisorNamespace, log_text
from fleetvisor.agent.rpc.xmlrpc import Dispatcher, signature_types


class Sample:
    ALIASES = {"older": "echo"}

    def echo(self, text: str, times: int = 1) -> str:
        """Repeat a text.

        @param string text  what to repeat
        @param int times  how often
        @return string result  the text, repeated
        """
        return text * times

    async def later(self, flag: bool) -> bool:
        """@param boolean flag  anything
        @return boolean result  its truth"""
        await asyncio.sleep(0)
        return flag

    def fail(self) -> bool:
        """@return boolean result  never"""
        raise FaultError(Fault.BAD_NAME, "nope")

    def quote(self, name: str) -> bool:
        """@param string name  anything
        @return boolean result  never: a fault that quotes the name"""
        raise FaultError(Fault.BAD_NAME, name)

    def crash(self) -> bool:
        """@return boolean result  never"""
        raise RuntimeError("internal detail")

    def nothing(self) -> None:
        """No tags at all."""

    def _hidden(self) -> str:
        return "secret"


@pytest.fixture
def log(tmp_path):
    log = MainLog(str(tmp_path / "main.log"), maxbytes=0, backups=0, level=Level.INFO)
    yield log
    log.close()


@pytest.fixture
def dispatcher(log):
    return Dispatcher({"sample": Sample()}, log)


def call(dispatcher: Dispatcher, method: str, *params, raw: bytes | None = None):
    body = raw if raw is not None else xmlrpc.client.dumps(params, method, allow_none=True).encode()
    reply = asyncio.run(dispatcher.handle(body))
    if reply.status != 200:
        return reply.status
    try:
        return xmlrpc.client.loads(reply.body)[0][0]
    except xmlrpc.client.Fault as fault:
        return ("fault", fault.faultCode, fault.faultString)


def test_calls_and_conversions(dispatcher):
    assert call(dispatcher, "sample.echo", "ab", 2) == "abab"
    assert call(dispatcher, "sample.echo", "ab", "3") == "ababab"
    assert call(dispatcher, "sample.older", "x") == "x"
    assert call(dispatcher, "sample.later", 0) is False
    assert call(dispatcher, "sample.echo", xmlrpc.client.Binary(b"b")) == "b"


@pytest.mark.parametrize("method, params, fault", [
    ("sample.nosuch", (), 1), ("sample._hidden", (), 1), ("sample.ALIASES", (), 1),
    ("echo", (), 1), ("sample.echo.x", (), 1), ("x.echo", (), 1),
    ("sample.echo", (), 2), ("sample.echo", ("a", 1, 2), 2), ("sample.echo", (1,), 2),
    ("sample.echo", ("a", "b"), 2), ("sample.echo", ("a", None), 2), ("sample.fail", (), 10),
])
def test_faults(dispatcher, method, params, fault):
    assert call(dispatcher, method, *params)[:2] == ("fault", fault)


def test_bad_bodies_are_400_and_logged_without_traceback(dispatcher, tmp_path):
    assert call(dispatcher, "", raw=b"not xml") == 400
    assert call(dispatcher, "", raw=b"<methodCall><params/></methodCall>") == 400
    log = (tmp_path / "main.log").read_text()
    assert "is invalid: unmarshallable" in log and "is invalid: no method name" in log


def test_unexpected_errors_are_500_and_one_log_line(dispatcher, tmp_path):
    assert call(dispatcher, "sample.crash") == 500
    lines = (tmp_path / "main.log").read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("ERRO XML-RPC method sample.crash() failed unexpectedly: "
                             "RuntimeError: internal detail")


def test_unmarshallable_results_are_500(dispatcher):
    assert call(dispatcher, "sample.nothing") == 500  # None has no XML-RPC type


def test_introspection(dispatcher):
    assert call(dispatcher, "system.listMethods") == [
        "sample.crash", "sample.echo", "sample.fail", "sample.later", "sample.nothing",
        "sample.older", "sample.quote", "system.listMethods", "system.methodHelp", "system.methodSignature",
        "system.multicall"]
    assert call(dispatcher, "system.methodSignature", "sample.echo") == ["string", "string", "int"]
    assert call(dispatcher, "system.methodSignature", "sample.older") == ["string", "string", "int"]
    assert call(dispatcher, "system.methodSignature", "sample.nothing")[:2] == ("fault", 4)
    assert call(dispatcher, "system.methodHelp", "sample.echo").startswith("Repeat a text.")
    assert call(dispatcher, "system.methodHelp", "x.y")[:2] == ("fault", 4)


def test_multicall(dispatcher):
    result = call(dispatcher, "system.multicall", [
        {"methodName": "sample.echo", "params": ["a"]},
        {"methodName": "sample.later", "params": [1]},
        {"methodName": "sample.fail"},
        {"methodName": "sample.crash", "params": []},
        {"methodName": "sample.echo", "params": "notalist"},
        "not a struct",
    ])
    assert result == [
        "a", True,
        {"faultCode": 10, "faultString": "BAD_NAME: nope"},
        {"faultCode": 30, "faultString": "FAILED: RuntimeError: internal detail"},
        {"faultCode": 2, "faultString": "INCORRECT_PARAMETERS"},
        {"faultCode": 2, "faultString": "INCORRECT_PARAMETERS: No methodName"},
    ]


def test_signature_types():
    assert signature_types("@param int a\n  @param string b  text\n@return array r") == \
        ["array", "int", "string"]
    assert signature_types("no tags") is None


def test_supervisor_namespace_signatures_match_supervisord(log):
    """system.methodSignature of every supervisor.* method is supervisord 4.3's."""
    from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
    from supervisor.xmlrpc import SystemNamespaceRPCInterface

    stock = SystemNamespaceRPCInterface([("supervisor", SupervisorNamespaceRPCInterface(None))])
    ours = Dispatcher({"supervisor": SupervisorNamespace(None)}, log)  # type: ignore[arg-type]
    assert sorted(ours.methods) == stock.listMethods()
    for name in stock.listMethods():
        signature = signature_types(ours.methods[name].doc)
        assert signature == stock.methodSignature(name), name


def test_log_text_replaces_what_xml_cannot_carry():
    assert log_text(b"a\x1b[1mb\x00c\td\n\xff") == "a\ufffd[1mb\ufffdc\td\n\ufffd"
    assert log_text("é".encode()) == "é"


def test_a_fault_quoting_what_xml_cannot_carry_is_still_xml(dispatcher):
    """A name sent as base64 may hold a NUL; the fault that quotes it used to be a response no client could parse
    (found by tests/fuzz/test_fuzz_xmlrpc.py)."""
    name = xmlrpc.client.Binary(b"a\x00b\xef\xbf\xbe")
    assert call(dispatcher, "sample.quote", name) == ("fault", 10, "BAD_NAME: a\ufffdb\ufffd")
    answer = call(dispatcher, "system.multicall", [{"methodName": "sample.quote", "params": [name]}])
    assert answer == [{"faultCode": 10, "faultString": "BAD_NAME: a\ufffdb\ufffd"}]
