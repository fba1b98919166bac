"""What a careless or hostile client can send: the right HTTP status or fault, nothing more
revealed, no traceback in the log, and the agent keeps serving. Statuses are compared with
stock supervisord where it answers sensibly."""

from __future__ import annotations

import base64
import socket
import xmlrpc.client

import pytest
from supervisor.xmlrpc import UnixStreamHTTPConnection

from .ctlharness import PASSWORD, USER, Pair, Server

PROGRAMS = """
[program:steady]
command=/bin/sh -c "echo hello; exec sleep 1000"
startsecs=0
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pair = Pair(tmp_path_factory.mktemp("bad"), PROGRAMS)
    try:
        pair.for_each(lambda s: s.wait_state("steady", "RUNNING"))
        yield pair
    finally:
        pair.close()


def request(server: Server, method: str, path: str, body: bytes = b"", *, tcp: bool = False,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return server.http(method, path, body, tcp=tcp, headers=headers)


def rpc_body(method: str, *params) -> bytes:
    return xmlrpc.client.dumps(params, method).encode()


def fault_of(body: bytes) -> tuple[int, str]:
    try:
        xmlrpc.client.loads(body)
    except xmlrpc.client.Fault as fault:
        return fault.faultCode, fault.faultString
    raise AssertionError(f"not a fault: {body!r}")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = "".join(f"{k}: {v}\r\n" for k, v in basic(USER, PASSWORD).items())


BAD_BODIES = [
    b"",
    b"garbage",
    b"<?xml version='1.0'?><methodCall><params/></methodCall>",
    b"<methodCall><methodName></methodName></methodCall>",
    xmlrpc.client.dumps(("x",), methodresponse=True).encode(),
    xmlrpc.client.dumps(xmlrpc.client.Fault(1, "x")).encode(),
    b"<methodCall><methodName>supervisor.getState</methodName><params><param>",
    # a "billion laughs" entity bomb: the parser refuses it
    b"<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'>" + b"".join(
        b"<!ENTITY %c '%s'>" % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(9))
    + b"]><methodCall><methodName>&j;</methodName></methodCall>",
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_a_body_that_is_not_a_call_is_400(pair, body):
    status, _, content = request(pair.agent, "POST", "/RPC2", body)
    assert status == 400
    assert b"Traceback" not in content
    assert pair.agent.rpc().supervisor.getState()["statename"] == "RUNNING"


def test_bad_bodies_match_stock_status(pair):
    for body in BAD_BODIES[1:6]:  # stock never answers an empty body
        statuses = [request(s, "POST", "/RPC2", body)[0] for s in (pair.stock, pair.agent)]
        assert statuses[0] == statuses[1], body


def test_get_on_rpc_is_400(pair):
    for server in (pair.stock, pair.agent):
        assert request(server, "GET", "/RPC2")[0] == 400


@pytest.mark.parametrize("method", ["supervisor.nosuch", "nosuch", "a.b.c", "supervisor._update",
                                    "supervisor.ALIASES", "supervisor.core", "system._listMethods",
                                    "system.listMethods.x", "nosuch.getState", ".", ""])
def test_unknown_methods(pair, method):
    status, _, body = request(pair.agent, "POST", "/RPC2", rpc_body(method))
    if method:
        assert (status, fault_of(body)) == (200, (1, "UNKNOWN_METHOD"))
        stock = request(pair.stock, "POST", "/RPC2", rpc_body(method))
        assert fault_of(stock[2])[0] == 1
    else:
        assert status == 400  # no method name at all


@pytest.mark.parametrize("method, params", [
    ("supervisor.getState", (1,)),
    ("supervisor.startProcess", ()),
    ("supervisor.startProcess", ("steady", True, 3)),
    ("supervisor.readLog", (0,)),
    ("system.multicall", ()),
    ("system.methodHelp", ()),
])
def test_wrong_argument_counts(pair, method, params):
    for server in (pair.stock, pair.agent):
        status, _, body = request(server, "POST", "/RPC2", rpc_body(method, *params))
        assert (status, fault_of(body)) == (200, (2, "INCORRECT_PARAMETERS"))


@pytest.mark.parametrize("method, params", [
    ("supervisor.startProcess", (123,)),
    ("supervisor.getProcessInfo", ([1],)),
    ("supervisor.readLog", ("x", 0)),
    ("supervisor.tailProcessStdoutLog", ("steady", {"a": 1}, 5)),
    ("supervisor.addProcessGroup", (None,)),
    ("system.multicall", ("not a list",)),
    ("system.methodSignature", (5,)),
])
def test_wrong_argument_types(pair, method, params):
    """Stock answers most of these with HTTP 500; the agent says what is wrong."""
    body = xmlrpc.client.dumps(params, method, allow_none=True).encode()
    status, _, response = request(pair.agent, "POST", "/RPC2", body)
    assert (status, fault_of(response)[0]) == (200, 2)


def test_types_that_convert_like_stock(pair):
    rpc = pair.agent.rpc().supervisor
    assert rpc.readProcessStdoutLog("steady", "0", "0") == "hello\n"
    assert rpc.readProcessStdoutLog("steady", 0.0, 0) == "hello\n"
    assert rpc.stopProcess("steady", 1) is True
    assert rpc.startProcess("steady", "") is True


def test_no_traceback_in_the_log_and_still_serving(pair):
    assert pair.agent.rpc().supervisor.getState()["statename"] == "RUNNING"
    log = (pair.agent.dir / "main.log").read_text()
    assert "Traceback" not in log
    assert "XML-RPC request data 'garbage' is invalid: unmarshallable" in log


# -- authentication ---------------------------------------------------------------------------------

BAD_CREDENTIALS = [
    {},
    basic(USER, "wrong"),
    basic("wrong", PASSWORD),
    basic(USER, ""),
    {"Authorization": "Digest abc"},
    {"Authorization": "Basic"},
    {"Authorization": "basic " + base64.b64encode(f"{USER}:wrong".encode()).decode()},
]


@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
@pytest.mark.parametrize("method, path", [("POST", "/RPC2"), ("GET", "/logtail/steady"),
                                          ("GET", "/mainlogtail"), ("GET", "/"),
                                          ("GET", "/nosuch")])
def test_wrong_credentials_are_401(pair, headers, method, path):
    body = rpc_body("supervisor.getState") if method == "POST" else b""
    status, response_headers, content = request(pair.agent, method, path, body, tcp=True,
                                                headers=headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"] == 'Basic realm="default"'
    assert b"RUNNING" not in content and b"hello" not in content and len(content) < 100


def test_undecodable_credentials_are_400(pair):
    for server in (pair.stock, pair.agent):
        status = request(server, "POST", "/RPC2", rpc_body("supervisor.getState"), tcp=True,
                         headers={"Authorization": "Basic %%%not-base64"})[0]
        assert status == 400


def test_right_credentials(pair):
    status, _, body = request(pair.agent, "POST", "/RPC2", rpc_body("supervisor.getState"),
                              tcp=True, headers=basic(USER, PASSWORD))
    assert status == 200 and xmlrpc.client.loads(body)[0][0]["statename"] == "RUNNING"
    rpc = pair.agent.rpc(tcp=True, user=USER, password=PASSWORD)
    assert rpc.supervisor.getAPIVersion() == "3.0"
    with pytest.raises(xmlrpc.client.ProtocolError) as exc:
        pair.agent.rpc(tcp=True, user=USER, password="nope").supervisor.getAPIVersion()
    assert exc.value.errcode == 401


def test_the_unix_socket_has_no_auth_configured(pair):
    status, _, _ = request(pair.agent, "POST", "/RPC2", rpc_body("supervisor.getState"))
    assert status == 200


# -- log tail endpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, status", [
    ("GET", "/logtail/nosuch", 404), ("GET", "/logtail/steady/bogus", 404),
    ("GET", "/logtail/steady:nosuch", 404), ("GET", "/logtail/nosuch:*", 404),
    ("GET", "/logtail", 404), ("POST", "/logtail/steady", 400), ("POST", "/mainlogtail", 400),
    ("GET", "/nosuch", 404),
])
def test_logtail_refusals(pair, method, path, status):
    assert request(pair.agent, method, path)[0] == status


def test_logtail_starts_with_the_log(pair):
    conn = UnixStreamHTTPConnection("localhost", timeout=10)
    conn.socketfile = pair.agent.socket
    try:
        conn.request("GET", "/logtail/steady:steady/stdout")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Content-Type") == "text/plain;charset=utf-8"
        assert response.getheader("Last-Modified")
        assert response.read1(100).startswith(b"hello\n")
    finally:
        conn.close()
    assert pair.agent.rpc().supervisor.getState()["statename"] == "RUNNING"


def test_logtail_to_an_http_1_0_client_is_unchunked(pair):
    """HTTP/1.0 has no chunks: the stream comes as plain bytes, ended by closing the connection (it was a 500,
    found by tests/fuzz/test_fuzz_http.py)."""
    for path in ("/logtail/steady", "/mainlogtail"):
        with socket.create_connection(("127.0.0.1", pair.agent.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\n{AUTH}\r\n".encode())
            received = b""
            while b"\r\n\r\n" not in received or (path == "/logtail/steady" and b"hello" not in received):
                data = sock.recv(4096)
                assert data, received
                received += data
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 "), head
        assert b"Transfer-Encoding" not in head
        if path == "/logtail/steady":
            assert body.startswith(b"hello\n"), body
    assert pair.agent.rpc().supervisor.getState()["statename"] == "RUNNING"


# -- issue 15 item 5: numbers and nesting that used to be a 500 ----------------------------------

def raw_call(method: str, params: str) -> bytes:
    return (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName>"
            f"<params>{params}</params></methodCall>").encode()


def test_read_log_with_huge_offsets_answers_without_a_500(pair):
    """Stock supervisord answers these with a 500 and a traceback; the agent reads what the
    file has (a negative offset past the start is the whole log; an offset past the end, '')."""
    whole = pair.agent.rpc().supervisor.readLog(0, 0)
    for offset, expected in (("<int>-1000000000000</int>", whole), ("<double>1e300</double>", ""),
                             ("<int>1000000000000</int>", "")):
        body = raw_call("supervisor.readLog", f"<param><value>{offset}</value></param>"
                        "<param><value><int>0</int></value></param>")
        status, _, answer = request(pair.agent, "POST", "/RPC2", body)
        assert status == 200, (offset, answer)
        (value,), _ = xmlrpc.client.loads(answer)
        assert value.startswith(expected) if expected else value == "", offset
    body = raw_call("supervisor.readLog", "<param><value><int>0</int></value></param>"
                    "<param><value><int>1000000000000</int></value></param>")
    status, _, answer = request(pair.agent, "POST", "/RPC2", body)
    assert status == 200 and xmlrpc.client.loads(answer)[0][0].startswith(whole[:40])


def test_deeply_nested_arguments_are_bad_arguments(pair):
    nested = "<value><array><data>" * 5000 + "<value><int>1</int></value>" + "</data></array></value>" * 5000
    body = raw_call("supervisor.sendRemoteCommEvent",
                    f"<param><value><string>t</string></value></param><param>{nested}</param>")
    status, _, answer = request(pair.agent, "POST", "/RPC2", body)
    assert status == 200
    code, text = fault_of(answer)
    assert code == 3 and "nested deeper than 64 levels" in text  # BAD_ARGUMENTS
    shallow = "<value><array><data>" * 3 + "<value><int>1</int></value>" + "</data></array></value>" * 3
    body = raw_call("supervisor.sendRemoteCommEvent",
                    f"<param><value><string>t</string></value></param><param>{shallow}</param>")
    status, _, answer = request(pair.agent, "POST", "/RPC2", body)
    assert status == 200 and xmlrpc.client.loads(answer)[0] == (True,)
    assert "Traceback" not in (pair.agent.dir / "main.log").read_text()


def test_tail_process_log_with_huge_numbers_answers_without_a_500(pair):
    for offset, length in (("-1000000000000", "1000000000000"), ("0", "1000000000000"),
                           ("1000000000000", "1000000000000")):
        body = raw_call("supervisor.tailProcessStdoutLog", "<param><value><string>steady</string></value></param>"
                        f"<param><value><int>{offset}</int></value></param>"
                        f"<param><value><int>{length}</int></value></param>")
        status, _, answer = request(pair.agent, "POST", "/RPC2", body)
        assert status == 200, (offset, length, answer)
        (data, _, _), = xmlrpc.client.loads(answer)[0]
        assert set(data.splitlines()) <= {"hello"}, data  # the log, or nothing; never a 500
