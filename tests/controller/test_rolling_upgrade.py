"""Rolling agent upgrades (AGENT_UPGRADE): each node's agent re-execs into the installed one and
not one program is restarted; judged from the agents themselves, not only the controller."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import grpc
import pytest

from fleetvisor.agent.operations import AGENT_VERSION
from fleetvisor.agent.reexec.state import STATE_VERSION
from fleetvisor.controller import opmodel
from fleetvisor.controller.records import op_key, prefix_of
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as pb
from tests.support import wait_for

from .fleet_harness import CLUSTER, fleetctl, one_line_error, states, wait_status
from .test_operations import wait_op

WORKERS = """
[program:worker]
command=sleep 1000
process_name=%(program_name)s_%(process_num)d
numprocs=3
startsecs=0
stopwaitsecs=2
"""

BROKEN = "#!/bin/sh\necho 'broken install' >&2\nexit 1\n"
# Names another version in its dry run, then becomes the agent it really is: the re-exec happens,
# and the gate finds the version the agent reports is not the one it was told to expect.
LYING = f"""#!/bin/sh
case " $* " in *" --reexec-probe "*)
  echo "fleetvisor-agent reexec-probe ok state-version {STATE_VERSION} agent-version 9.9.9"; exit 0 ;; esac
exec {sys.executable} -m fleetvisor.agent "$@"
"""

# A package upgrade: the same code, installed as another version (the agent's version is its
# installed distribution's).
UPGRADED = f"""#!/bin/sh
PYTHONPATH={{dist}} exec {sys.executable} -m fleetvisor.agent "$@"
"""


def installed_as(directory: Path, version: str) -> str:
    """A wrapper that runs this agent as if fleetvisor `version` were installed."""
    info = directory / "dist" / f"fleetvisor-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fleetvisor\nVersion: {version}\n")
    return UPGRADED.format(dist=directory / "dist")


def new_agent(directory: Path, body: str) -> tuple[str, ...]:
    """The agent's arguments that make `body` the installed agent its re-exec runs."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "new-agent"
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return ("--reexec-command", str(path))


def agent_view(agent) -> tuple[int, dict[str, tuple[int, str]]]:
    """The agent's pid and {namespec: (pid, state)}, asked of the agent itself."""
    with grpc.insecure_channel(agent.address) as channel:
        stub = apb_grpc.AgentServiceStub(channel)
        info = stub.GetInfo(apb.GetInfoRequest(), timeout=5)
        procs = stub.ListProcesses(apb.ListProcessesRequest(), timeout=5).processes
    return info.pid, {p.namespec: (p.pid, p.statename) for p in procs}


def upgrade(ctl, nodes=(), labels=None, expect_version="", healthy_for=0.5, timeout=60.0, dry_run=False):
    spec = pb.OperationSpec(kind=pb.AGENT_UPGRADE, batch=1, healthy_for_seconds=healthy_for, timeout_seconds=timeout,
                            expect_version=expect_version, selector=pb.Assignment(nodes=list(nodes), labels=labels))
    return ctl.stub.StartOperation(pb.StartOperationRequest(spec=spec, message="test", dry_run=dry_run), timeout=10)


def step_states(op) -> dict[str, str]:
    return {s.node: pb.NodeStepState.Name(s.state) for b in op.batches for s in b.nodes}


def start_fleet(fleet, tmp_path, wrappers: dict[str, str] | None = None, controllers: int = 1,
                more: dict[str, str] | None = None):
    """n1, n2 (role=web) and n3 (role=db), three workers each (and `more` programs by node);
    `wrappers` by node: the agent a node's re-exec runs."""
    ctls = [fleet.controller() for _ in range(controllers)]
    ctl = ctls[0]
    wrappers, more = wrappers or {}, more or {}
    agents = [fleet.agent(node, *ctls, labels=f"role={'db' if node == 'n3' else 'web'}",
                          programs=WORKERS + more.get(node, ""),
                          extra_args=new_agent(tmp_path / f"bin-{node}", wrappers[node]) if node in wrappers else ())
              for node in ("n1", "n2", "n3")]
    count = 9 + sum(section.count("[") for section in more.values())
    wait_status(ctl, lambda s: len(states(s)) == count and all(v == "RUNNING" for v in states(s).values()),
                timeout=30, what=f"{count} programs running")
    wait_for(ctl.is_leader, 10, "a leader")
    return ctl, agents


def test_a_rolling_upgrade_of_three_agents_restarts_no_program(fleet, tmp_path):
    ctl, agents = start_fleet(fleet, tmp_path)
    before = {a.node: agent_view(a) for a in agents}

    plan = fleetctl(ctl.address, "rolling-upgrade", "--batch", "1", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "plan: rolling agent upgrade of the agent on nodes n1,n2,n3" in plan.stdout
    assert "batch 1: n1" in plan.stdout and "batch 3: n3" in plan.stdout
    picked = upgrade(ctl, nodes=["n[12]"], labels={"role": "web"}, dry_run=True)
    assert [s.node for b in picked.batches for s in b.nodes] == ["n1", "n2"] and not picked.id
    refused = fleetctl(ctl.address, "rolling-upgrade", "nope")
    assert refused.returncode == 4 and one_line_error(refused) == "error: no such node: nope"
    for nodes, labels, said in ((["db-*"], {}, "no node matches db-*"), ([], {"role": "cache"},
                                                                       "no node matches role=cache")):
        with pytest.raises(grpc.RpcError) as info:
            upgrade(ctl, nodes=nodes, labels=labels)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and info.value.details() == said
    assert not ctl.stub.ListOperations(pb.ListOperationsRequest(all=True), timeout=5).operations  # nothing started

    done = fleetctl(ctl.address, "rolling-upgrade", "--batch", "1", "--healthy-for", "0.5s", "-m", "0.1.0",
                    timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded: 3/3 done" in done.stdout
    for agent in agents:
        agent.daemon.wait_line(r"re-exec: took over 3 running processes", 30)
        assert agent_view(agent) == before[agent.node]  # same agent pid, every child's pid and state
        assert agent.daemon.proc.poll() is None
    op = ctl.stub.ListOperations(pb.ListOperationsRequest(all=True), timeout=5).operations[0]
    assert op.state == pb.OP_SUCCEEDED and set(step_states(op).values()) == {"STEP_DONE"}
    assert {s.agent_version_after for b in op.batches for s in b.nodes} == {AGENT_VERSION}
    assert all(ctl.node(a.node).agent_version == AGENT_VERSION for a in agents)
    entries = ctl.stub.ListAudit(pb.ListAuditRequest(), timeout=5).entries
    assert any(e.action == "ops.rolling-upgrade" and e.ok for e in entries)


FCGI = """
[fcgi-program:fcgi]
command=sleep 1000
socket=unix://%(here)s/fcgi.sock
startsecs=0
"""


@pytest.mark.parametrize("refusal", ["broken new agent", "fcgi-program"])
def test_a_refusing_node_pauses_the_upgrade_there(fleet, tmp_path, refusal):
    broken = refusal == "broken new agent"
    ctl, agents = start_fleet(fleet, tmp_path, {"n2": BROKEN} if broken else None,
                              more=None if broken else {"n2": FCGI})
    before = {a.node: agent_view(a) for a in agents}
    op = wait_op(ctl, upgrade(ctl).id, {pb.OP_PAUSED})
    assert step_states(op) == {"n1": "STEP_DONE", "n2": "STEP_FAILED", "n3": "STEP_PENDING"}
    said = ("failed its dry run (exit status 1): broken install" if broken
            else "group 'fcgi' is an fcgi-program, which a re-exec does not carry yet")
    assert op.reason.startswith("n2: re-exec refused: ") and said in op.reason, op.reason
    n2 = agents[1]
    assert agent_view(n2) == before["n2"]  # every child running, managed by the same agent
    assert n2.daemon.wait_line(r"ERRO re-exec refused: ")
    assert not any("handing" in line for line in n2.daemon.messages())
    assert agent_view(agents[2]) == before["n3"]
    assert not any("re-exec" in line for line in agents[2].daemon.messages())  # not reached
    problems = ctl.stub.GetStatus(pb.StatusRequest(summary=True), timeout=5).summary.problems
    assert [p.detail for p in problems if p.subject == op.id] == [f"rolling agent upgrade: {op.reason}"]
    assert "paused: n2: re-exec refused" in fleetctl(ctl.address, "ops", "show", op.id).stdout
    if not broken:
        return
    # the operator fixes the install and resumes: n2 is retried, n3 follows
    new_agent(tmp_path / "bin-n2", f"#!/bin/sh\nexec {sys.executable} -m fleetvisor.agent \"$@\"\n")
    ctl.stub.ResumeOperation(pb.GetOperationRequest(id=op.id), timeout=10)
    done = wait_op(ctl, op.id, {pb.OP_SUCCEEDED})
    assert set(step_states(done).values()) == {"STEP_DONE"}
    for agent in agents:
        agent.daemon.wait_line(r"re-exec: took over 3 running processes", 30)
        assert agent_view(agent) == before[agent.node]


@pytest.mark.parametrize("where", ["after", "before"])
def test_the_version_gate(fleet, tmp_path, where):
    """`after`: the installed agent names 9.9.9 in its dry run, but comes back as what it is;
    `before`: the operator expects 9.9.9 and the installed agent is another, so nothing is re-exec'd."""
    ctl, agents = start_fleet(fleet, tmp_path, {"n1": LYING} if where == "after" else None)
    before = agent_view(agents[0])
    op = wait_op(ctl, upgrade(ctl, nodes=["n1"], expect_version="" if where == "after" else "9.9.9").id,
                 {pb.OP_PAUSED})
    step = op.batches[0].nodes[0]
    if where == "after":
        assert op.reason == f"n1: the agent reports version {AGENT_VERSION}, expected 9.9.9"
        assert (step.agent_version_before, step.agent_version_expected) == (AGENT_VERSION, "9.9.9")
        agents[0].daemon.wait_line(r"re-exec: took over 3 running processes", 30)
    else:
        assert op.reason == f"n1: the installed agent is version {AGENT_VERSION}, not 9.9.9; nothing was changed"
        assert not any("handing" in line for line in agents[0].daemon.messages())
    assert agent_view(agents[0]) == before


def test_nodes_that_are_down_are_left_out_of_the_plan(fleet, tmp_path):
    ctl, agents = start_fleet(fleet, tmp_path)
    agents[2].stop()
    wait_for(lambda: not ctl.node("n3").up, 20, "n3 down")
    plan = upgrade(ctl, dry_run=True)
    assert [s.node for b in plan.batches for s in b.nodes] == ["n1", "n2"]
    with pytest.raises(grpc.RpcError) as info:
        upgrade(ctl, nodes=["n1", "n3"])
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details().startswith("node n3 is down; once it is back, try again")
    assert not ctl.stub.ListOperations(pb.ListOperationsRequest(all=True), timeout=5).operations


def handovers(agent) -> int:
    return sum(1 for line in agent.daemon.messages() if "re-exec: handing" in line)


@pytest.mark.slow
def test_a_new_leader_resumes_the_upgrade_without_a_second_reexec(fleet, tmp_path):
    first, agents = start_fleet(fleet, tmp_path, controllers=2)
    second = fleet.controllers[1]
    before = {a.node: agent_view(a) for a in agents}
    op = upgrade(first, healthy_for=3.0)

    def n1_back():  # n1 re-exec'd and is in its healthy-for wait
        step = first.stub.GetOperation(pb.GetOperationRequest(id=op.id), timeout=5).batches[0].nodes[0]
        return step.state == pb.STEP_WAITING and step.agent_version_after
    wait_for(n1_back, 30, "n1 back from its re-exec")
    first.kill()
    done = wait_op(second, op.id, {pb.OP_SUCCEEDED}, timeout=90)
    assert done.controller_id == second.name
    assert [handovers(a) for a in agents] == [1, 1, 1]  # the step in its wait was not re-exec'd again
    for agent in agents:
        agent.daemon.wait_line(r"re-exec: took over 3 running processes", 30)
        assert agent_view(agent) == before[agent.node]


def test_the_new_version_is_expected_reported_and_shown(fleet, tmp_path):
    ctl, agents = start_fleet(fleet, tmp_path, {"n1": installed_as(tmp_path / "v2", "0.2.0")})
    before = agent_view(agents[0])
    assert ctl.node("n1").agent_version == AGENT_VERSION
    op = wait_op(ctl, upgrade(ctl, nodes=["n1"], expect_version="0.2.0").id, {pb.OP_SUCCEEDED})
    step = op.batches[0].nodes[0]
    assert (step.agent_version_before, step.agent_version_expected, step.agent_version_after) == \
        (AGENT_VERSION, "0.2.0", "0.2.0")
    assert agent_view(agents[0]) == before
    assert ctl.node("n1").agent_version == "0.2.0"  # the step ends once the node list shows it
    listing = fleetctl(ctl.address, "nodes").stdout
    assert any(line.split()[0] == "n1" and "0.2.0" in line.split() for line in listing.splitlines()), listing
    assert f"(agent {AGENT_VERSION} -> 0.2.0)" in fleetctl(ctl.address, "ops", "watch", op.id).stdout
    shown = fleetctl(ctl.address, "ops", "show", op.id).stdout
    assert "AGENT" in shown and f"{AGENT_VERSION} -> 0.2.0" in shown, shown


@pytest.mark.parametrize("stored", [pb.STEP_ACTING, pb.STEP_WAITING])
def test_a_step_left_mid_way_is_resumed_from_its_record(fleet, tmp_path, stored):
    """A leader that stopped after recording n1's agent (ACTING: the re-exec may not have gone
    out) or after sending it (WAITING): the leader that finds the record sends the re-exec
    again in the first case only, and judges the agent by the recorded facts in both."""
    ctl, agents = start_fleet(fleet, tmp_path)
    pid, processes = before = agent_view(agents[0])
    mark = opmodel.AgentMark(version_before=AGENT_VERSION, version_expected=AGENT_VERSION, pid=pid,
                             held=[opmodel.Held(name, p, state) for name, (p, state) in sorted(processes.items())])
    op = opmodel.Operation("left-mid-way", opmodel.Spec(kind=opmodel.Kind.AGENT_UPGRADE, healthy_for_seconds=0.5,
                                                        timeout_seconds=60).with_defaults(),
                           batches=[opmodel.Batch([opmodel.Step("n1", state=opmodel.StepState(
                               pb.NodeStepState.Name(stored)), started_at=1.0, agent=mark)])])
    fleet.etcd.put(f"{prefix_of(CLUSTER)}{op_key(op.id)}".encode(), opmodel.encode(op))
    # written behind the controller's back: GetOperation knows it once the controller's copy does
    wait_for(lambda: op.id in {o.id for o in ctl.stub.ListOperations(pb.ListOperationsRequest(all=True),
                                                                      timeout=5).operations},
             20, "the controller's copy of etcd to hold the operation written there")
    done = wait_op(ctl, op.id, {pb.OP_SUCCEEDED})
    assert done.batches[0].nodes[0].agent_version_after == AGENT_VERSION
    assert handovers(agents[0]) == (1 if stored == pb.STEP_ACTING else 0)
    assert agent_view(agents[0]) == before
