"""No daemon hangs on any input (issue 15): limits refuse huge configs at once, and a big
legal config is parsed and applied while status calls keep being answered."""

from __future__ import annotations

import signal
import xmlrpc.client

import grpc
import pytest
from supervisor.xmlrpc import SupervisorTransport

from fleetvisor.v1 import agent_pb2 as pb

from tests.support import wait_for

from .test_grpc_agent import Agent

HUGE = """
[program:huge]
command=sleep 1000
process_name=%(program_name)s_%(process_num)s
numprocs=100000000
"""


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    a.start()
    yield a
    a.stop()


def snapshot(agent: Agent) -> dict[str, tuple[int, str]]:
    return {k: (v.pid, v.statename) for k, v in agent.by_name().items()}


def xmlrpc_server(agent: Agent):
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
        None, None, f"unix://{agent.dir}/supervisor.sock"))


def test_huge_numprocs_apply_is_refused_at_once(agent):
    before = snapshot(agent)
    for dry_run in (True, False):
        with pytest.raises(grpc.RpcError) as info:
            # The deadline is the judge: a parse that expands the processes takes minutes.
            agent.stub.ApplyConfig(pb.ApplyConfigRequest(revision="huge", config_text=HUGE,
                                                         dry_run=dry_run), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = info.value.details()
        assert "max_numprocs=1000" in details and "'program:huge'" in details
        assert "option 'numprocs'" in details and "Traceback" not in details
    assert snapshot(agent) == before
    assert agent.stub.GetConfig(pb.GetConfigRequest(), timeout=10).revision == ""


def test_huge_numprocs_in_the_node_file_is_refused_by_reload_and_sighup(agent):
    before = snapshot(agent)
    original = agent.config.read_text()
    agent.config.write_text(original + HUGE)
    try:
        server = xmlrpc_server(agent)
        with pytest.raises(xmlrpc.client.Fault) as info:
            server.supervisor.reloadConfig()
        assert "max_numprocs=1000" in info.value.faultString
        assert info.value.faultCode == 92  # CANT_REREAD, as for any bad file
        assert agent.daemon is not None
        agent.daemon.signal(signal.SIGHUP)
        agent.daemon.wait_line(r"restart refused, the config file is not valid: numprocs 100000000 "
                               r"is more than 1000 \(limit max_numprocs=1000")
        assert snapshot(agent) == before  # still answering, nothing restarted
        assert server.supervisor.getState()["statename"] == "RUNNING"
    finally:
        agent.config.write_text(original)


BIG_COUNT = 3000


def big_config(count: int) -> str:
    return "".join(f"[program:big{i:05d}]\ncommand=sleep 1000\nautostart=false\n\n" for i in range(count))


def test_status_answers_while_a_big_config_is_applied(agent):
    """A status call made during the apply completes before the apply does, and sees part
    of the new groups: neither the parse nor adding the groups holds the loop."""
    future = agent.stub.ApplyConfig.future(
        pb.ApplyConfigRequest(revision="big", config_text=big_config(BIG_COUNT)), timeout=300)
    seen_during: list[int] = []  # new processes seen by replies that came back mid-apply
    while not future.done():
        count = sum(1 for p in agent.processes() if p.name.startswith("big"))
        if not future.done():
            seen_during.append(count)
    reply = future.result()
    assert len(reply.added) == BIG_COUNT
    assert seen_during, "no status call completed while the apply was in progress"
    assert any(0 < n < BIG_COUNT for n in seen_during), \
        f"no reply saw a partly applied config (counts {sorted(set(seen_during))[:10]})"
    wait_for(lambda: sum(1 for p in agent.processes() if p.name.startswith("big")) == BIG_COUNT,
             30, "every big program listed")
