"""The XML-RPC face of a real agent under generated bodies and calls: every request is answered within a bound
with a well-formed result or fault (or a 400 for a body that is not a call), never a 500 or a traceback; the agent
keeps answering; and a refused call changes nothing (the process table and pids stay as they were).

A request costs a few milliseconds here, so these take the profile's number of examples."""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.fuzz.agent_strategies import (
    WHOLE_DAEMON_METHODS,
    malformed_bodies,
    method_calls,
    multicall_params,
    one_in,
    xml_text,
    xmlrpc_values,
)
from tests.integration.ctlharness import Server, serving
from tests.support import wait_for

# Seconds within which every request is answered (stopwaitsecs below keeps stopProcess well inside it).
BOUND = 5.0
PROGRAMS = """
[program:steady]
command=/bin/sh -c "echo hello; echo oops >&2; exec sleep 1000"
startsecs=0
stopwaitsecs=1
autorestart=false

[program:other]
command=/bin/sleep 1000
startsecs=0
stopwaitsecs=1
autorestart=false
autostart=false

[program:pair]
command=/bin/sleep 1000
process_name=%(program_name)s_%(process_num)s
numprocs=2
startsecs=0
stopwaitsecs=1
autorestart=false
"""
GROUPS = ("steady", "other", "pair")
# Where a process is between two states that its next event decides.
MOVING = {"STARTING", "STOPPING", "BACKOFF"}


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("fuzz-xmlrpc"), PROGRAMS) as server:
        server.wait_state("steady", "RUNNING")
        yield server


def post(agent: Server, body: bytes) -> tuple[int, bytes]:
    started = time.monotonic()
    status, _, answer = agent.http("POST", "/RPC2", body, timeout=BOUND + 5)
    assert time.monotonic() - started < BOUND, "answered too late"
    assert status != 500 and b"Traceback" not in answer, (status, answer)
    return status, answer


def answer_of(status: int, answer: bytes) -> object:
    """The result of a 200 answer, or its xmlrpc.client.Fault; fails unless it is well-formed XML-RPC."""
    assert status == 200, (status, answer)
    try:
        (value,), _ = xmlrpc.client.loads(answer, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        assert isinstance(fault.faultCode, int) and isinstance(fault.faultString, str)
        return fault
    return value


def table(agent: Server) -> dict[str, tuple[str, int]]:
    """Every process's state and pid."""
    return {f"{p['group']}:{p['name']}": (p["statename"], p["pid"])
            for p in agent.rpc().supervisor.getAllProcessInfo()}


def settled(agent: Server) -> dict[str, tuple[str, int]]:
    """The process table once nothing in it is about to change: every group configured (a successful
    removeProcessGroup is undone), nobody between states, every RUNNING pid alive (a signal may have ended it)."""
    rpc = agent.rpc().supervisor
    present = {name.split(":")[0] for name in table(agent)}
    for group in GROUPS:
        if group not in present:
            rpc.addProcessGroup(group)

    def quiet() -> dict[str, tuple[str, int]] | None:
        now = table(agent)
        moving = any(state in MOVING or (state == "RUNNING" and about_to_change(pid)) for state, pid in now.values())
        return None if moving else now
    return wait_for(quiet, 10, "the process table to settle")


PF_EXITING = 0x4  # /proc/<pid>/stat flags: the process has begun to exit


def about_to_change(pid: int) -> bool:
    """Whether a RUNNING process's state is about to change: it is gone or exiting (the agent has yet to hear of
    it), or a signal sent to it has not been delivered yet (unless it is stopped, which holds signals back)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = {key: value.strip() for key, _, value in (line.partition(":") for line in status.splitlines())}
    state = fields["State"][:1]
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    flags = int(stat.rsplit(") ", 1)[1].split()[6])
    return state in "ZX" or bool(flags & PF_EXITING) or (bool(pending) and state not in "Tt")


def still_serving(agent: Server) -> None:
    assert agent.rpc().supervisor.getState()["statename"] == "RUNNING"


@given(malformed_bodies())
@example(b"")
@example(b"<?xml version='1.0'?><methodCall><methodName>supervisor.getState</methodName><params><param>")
def test_malformed_bodies(agent, body):
    status, answer = post(agent, body)
    if status != 400:
        answer_of(status, answer)
    still_serving(agent)


def check_call(agent: Server, name: str, params: tuple, note: Callable[[str], None] = event) -> object:
    """Call `name`; a fault must leave the process table as it was. `note` hears the kind of answer."""
    before = settled(agent)
    body = xmlrpc.client.dumps(params, name, allow_none=True).encode("utf-8", "surrogatepass")
    result = answer_of(*post(agent, body))
    if isinstance(result, xmlrpc.client.Fault):
        note(f"fault {result.faultCode}")
        if name != "system.multicall":
            assert table(agent) == before, (name, params, result)
    else:
        note("result")
    still_serving(agent)
    return result


@given(method_calls())
@example(("supervisor.readLog", (-10**9, 0)))
@example(("supervisor.signalProcess", ("steady", "NOPE")))
@example(("supervisor.stopProcessGroup", ("steady:*",)))
def test_any_method_with_any_arguments(agent, call):
    check_call(agent, *call)


@st.composite
def right_arity_calls(draw: st.DrawFn) -> tuple[str, tuple]:
    """A known method with as many arguments as it takes, each mostly of its kind and sometimes anything: the
    conversions and the methods' own checks are reached, not only the arity check."""
    name = draw(st.sampled_from(sorted(SIGNATURES)))
    kinds = [one_in(4).flatmap(lambda rarely, kind=kind: xmlrpc_values if rarely else ARGUMENTS[kind])
             for kind in SIGNATURES[name]]
    return name, tuple(draw(kind) for kind in kinds)


# Each method's parameters: n a namespec, i an int, b a flag, g a signal, t text, m a method name.
SIGNATURES = {
    "supervisor.getAPIVersion": "", "supervisor.getSupervisorVersion": "", "supervisor.getIdentification": "",
    "supervisor.getState": "", "supervisor.getPID": "", "supervisor.getAllConfigInfo": "",
    "supervisor.getAllProcessInfo": "", "supervisor.clearLog": "", "system.listMethods": "",
    "supervisor.readLog": "ii", "supervisor.readMainLog": "ii", "supervisor.readProcessLog": "nii",
    "supervisor.readProcessStdoutLog": "nii", "supervisor.readProcessStderrLog": "nii",
    "supervisor.tailProcessLog": "nii", "supervisor.tailProcessStdoutLog": "nii",
    "supervisor.tailProcessStderrLog": "nii", "supervisor.getProcessInfo": "n",
    "supervisor.startProcess": "nb", "supervisor.stopProcess": "nb", "supervisor.startProcessGroup": "nb",
    "supervisor.stopProcessGroup": "nb", "supervisor.signalProcess": "ng", "supervisor.signalProcessGroup": "ng",
    "supervisor.addProcessGroup": "n", "supervisor.removeProcessGroup": "n", "supervisor.clearProcessLog": "n",
    "supervisor.clearProcessLogs": "n", "supervisor.sendProcessStdin": "nt", "supervisor.sendRemoteCommEvent": "tt",
    "system.methodHelp": "m", "system.methodSignature": "m",
}
ARGUMENTS = {
    "n": st.sampled_from(["steady", "steady:steady", "steady:*", "other", "other:other", "pair:*", "pair:pair_0",
                          "pair", "pair:", ":pair_1", "nosuch", "nosuch:*", "*", ""]),
    "i": st.one_of(st.integers(-3, 3), st.integers(-2**31, 2**31 - 1), st.sampled_from(["0", "10", "-5"])),
    "b": st.one_of(st.booleans(), st.integers(0, 1)),
    "g": st.one_of(st.sampled_from(["CONT", "HUP", "USR1", "SIGCONT", "TERM", "0", "NOPE", "", "64", "-1"]),
                   st.integers(-1, 70)),
    "t": st.one_of(xml_text, st.binary(max_size=10).map(xmlrpc.client.Binary)),
    "m": st.sampled_from(["supervisor.getState", "system.listMethods", "system.multicall", "nosuch", ""]),
}


@given(right_arity_calls())
@example(("supervisor.startProcess", (xmlrpc.client.Binary(b"\x00"), [])))  # the fault quoted a NUL
def test_known_methods_with_random_values(agent, call):
    check_call(agent, *call)


@given(multicall_params())
def test_multicall_with_random_calls(agent, params):
    result = check_call(agent, "system.multicall", params)
    if not isinstance(result, xmlrpc.client.Fault):
        assert isinstance(result, list) and len(result) == len(params[0])


@pytest.mark.parametrize("name", WHOLE_DAEMON_METHODS)
def test_whole_daemon_methods_with_too_many_arguments_change_nothing(agent, name):
    result = check_call(agent, name, ("steady", 1, 2), note=print)
    assert isinstance(result, xmlrpc.client.Fault) and result.faultCode == 2  # INCORRECT_PARAMETERS
