"""Rolling config pushes that fail, are aborted or are retried, judged from the agents' own
state: what each node's programs ran (they note their revision in the node's state dir when
they start) and the agents' event streams.

The sequence replayed is the one an operator hit: a revision fails its rollout on one node and
is aborted; a later rolling push must never bring the aborted revision back to any node, and
nodes waiting for their batch get nothing before it.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from fleetvisor.v1 import controller_pb2 as pb
from tests.support import wait_for

from .fleet_harness import fleetctl, states, wait_status
from .test_operations import EventLog, wait_op

NODES = ("web-1", "web-2", "web-3")


def web(revision: int) -> str:
    """Revision N of config `web`: its program notes N when it starts, and fails to start on a
    node whose state dir holds `broken`."""
    return ("[program:web]\n"
            f"command=sh -c 'echo {revision} >> %(here)s/ran; test -e %(here)s/broken && exit 1; "
            f"exec sleep 100{revision}'\n"
            "startsecs=1\nstartretries=0\nstopwaitsecs=2\n")


def push(ctl, revision: int, *, rolling: bool, on_failure=pb.PAUSE, auto_revert: bool = True) -> pb.PushConfigResponse:
    spec = pb.OperationSpec(batch=1, healthy_for_seconds=1.0, timeout_seconds=15.0, on_failure=on_failure,
                            auto_revert=auto_revert) if rolling else None
    request = pb.PushConfigRequest(name="web", config_text=web(revision), message=f"r{revision}",
                                   assignment=pb.Assignment(labels={"role": "web"}), rollout=spec)
    return ctl.stub.PushConfig(request, timeout=30)


def ran(agent) -> list[int]:
    """The revisions this node's programs started with, in order."""
    path = state_dir(agent) / "ran"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def state_dir(agent) -> Path:
    return agent.dir / "state"


def applied(ctl) -> dict[str, str]:
    return {n.name: n.applied_revision for n in ctl.stub.ListNodes(pb.ListNodesRequest(), timeout=5).nodes}


@pytest.fixture
def web_nodes(fleet):
    ctl = fleet.controller()
    agents = {name: fleet.agent(name, ctl, labels="role=web", programs="") for name in NODES}
    wait_for(ctl.is_leader, 10, "a leader")
    wait_for(lambda: len(applied(ctl)) == 3, 15, "three nodes")
    push(ctl, 1, rolling=False)
    wait_status(ctl, lambda s: [v for k, v in states(s).items() if k.endswith(":web")] == ["RUNNING"] * 3,
                timeout=30, what="web@1 running on every node")
    return ctl, agents


@pytest.mark.slow
def test_an_aborted_rollout_is_withdrawn_and_never_shipped_again(fleet, web_nodes, tmp_path):
    ctl, agents = web_nodes
    (state_dir(agents["web-2"]) / "broken").write_text("")
    op_id = push(ctl, 2, rolling=True).operation_id
    paused = wait_op(ctl, op_id, {pb.OP_PAUSED}, timeout=60)
    assert paused.reason.startswith("web-2: ")
    assert [s.state for b in paused.batches for s in b.nodes] == [pb.STEP_DONE, pb.STEP_REVERTED, pb.STEP_PENDING]
    ctl.stub.AbortOperation(pb.GetOperationRequest(id=op_id, reason="bad build"), timeout=10)

    # the config is back at what every node ran; revision 2 stays in history, marked
    history = ctl.stub.ConfigHistory(pb.ConfigHistoryRequest(name="web"), timeout=5)
    assert history.current_revision == 1
    assert [(r.revision, bool(r.withdrawn)) for r in history.revisions] == [(1, False), (2, True)]
    assert "bad build" in history.revisions[1].withdrawn
    withdrawals = [e for e in ctl.stub.ListAudit(pb.ListAuditRequest(), timeout=5).entries
                   if e.action == "config.withdraw"]
    assert len(withdrawals) == 1 and "revision 2 withdrawn" in withdrawals[0].result
    assert "back to revision 1, sent again to web-1" in withdrawals[0].result
    listed = ctl.stub.ListConfigs(pb.ListConfigsRequest(), timeout=5).configs
    assert [(c.name, c.current_revision) for c in listed] == [("web", 1)]
    wait_for(lambda: set(applied(ctl).values()) == {"web@1"}, 30, "web-1 sent back to revision 1")
    wait_status(ctl, lambda s: states(s).get("web-1:web") == "RUNNING", timeout=30, what="web-1 running web@1")
    assert ran(agents["web-1"])[-1] == 1 and ran(agents["web-3"]) == [1]
    resumed = fleetctl(ctl.address, "ops", "resume", op_id)
    assert resumed.returncode != 0 and "revision 2 of web was withdrawn" in resumed.stderr

    # a new rolling push starts from revision 1: nothing of revision 2 again, nothing before a
    # node's batch
    (state_dir(agents["web-2"]) / "broken").unlink()
    after_abort = {name: len(ran(a)) for name, a in agents.items()}
    log_mark = len(ctl.log())
    events = EventLog(fleet.agents)
    try:
        reply = push(ctl, 3, rolling=True)
        assert reply.revision.revision == 3 and not reply.unchanged
        op = ctl.stub.GetOperation(pb.GetOperationRequest(id=reply.operation_id), timeout=5)
        assert op.spec.previous_revision == 1
        done = wait_op(ctl, reply.operation_id, {pb.OP_SUCCEEDED}, timeout=90)
        for name, agent in agents.items():
            assert ran(agent)[after_abort[name]:] == [3], name
        started = {s.node: s.started_at for b in done.batches for s in b.nodes}
        for when, node, _, state in events.of_group("web"):
            if state == "STARTING":
                assert when >= started[node], f"{node} started web before its batch"
    finally:
        events.close()
    assert "web@2" not in ctl.log()[log_mark:]

    # the same text as the current revision: nothing stored, and --rolling says it did nothing
    again = push(ctl, 3, rolling=True)
    assert again.unchanged and not again.operation_id
    conf = tmp_path / "web.conf"
    conf.write_text(web(3))
    said = fleetctl(ctl.address, "config", "push", str(conf), "--name", "web", "-m", "again", "--rolling")
    assert said.returncode == 0 and "no rollout started" in said.stdout, said.stdout + said.stderr
    # ... while the withdrawn revision's text is a new revision, rolled out like any other
    pushed = push(ctl, 2, rolling=True)
    assert pushed.revision.revision == 4 and pushed.operation_id
    wait_op(ctl, pushed.operation_id, {pb.OP_SUCCEEDED}, timeout=90)


@pytest.mark.slow
def test_resuming_a_paused_rollout_starts_what_gave_up(fleet, web_nodes):
    ctl, agents = web_nodes
    (state_dir(agents["web-2"]) / "broken").write_text("")
    op_id = push(ctl, 2, rolling=True, auto_revert=False).operation_id
    paused = wait_op(ctl, op_id, {pb.OP_PAUSED}, timeout=60)
    assert [s.state for s in paused.batches[1].nodes] == [pb.STEP_FAILED]
    wait_status(ctl, lambda s: states(s).get("web-2:web") == "FATAL", what="web-2's web given up")
    assert applied(ctl)["web-2"] == "web@2"  # not reverted: applying it again would restart nothing

    (state_dir(agents["web-2"]) / "broken").unlink()
    ctl.stub.ResumeOperation(pb.GetOperationRequest(id=op_id), timeout=10)
    done = wait_op(ctl, op_id, {pb.OP_SUCCEEDED}, timeout=90)
    assert all(s.state == pb.STEP_DONE for b in done.batches for s in b.nodes)
    assert ran(agents["web-2"])[-1] == 2
    history = ctl.stub.ConfigHistory(pb.ConfigHistoryRequest(name="web"), timeout=5)
    assert history.current_revision == 2 and not any(r.withdrawn for r in history.revisions)


def test_a_failed_first_rollout_leaves_no_current_revision(fleet):
    ctl = fleet.controller()
    agent = fleet.agent("web-1", ctl, labels="role=web", programs="")
    wait_for(ctl.is_leader, 10, "a leader")
    wait_for(lambda: "web-1" in applied(ctl), 15, "the node")
    state_dir(agent).mkdir(exist_ok=True)
    (state_dir(agent) / "broken").write_text("")
    op_id = push(ctl, 1, rolling=True, on_failure=pb.ABORT).operation_id
    failed = wait_op(ctl, op_id, {pb.OP_FAILED}, timeout=60)
    assert failed.reason.startswith("web-1: ")
    history = ctl.stub.ConfigHistory(pb.ConfigHistoryRequest(name="web"), timeout=5)
    assert history.current_revision == 0 and history.revisions[0].withdrawn.startswith(f"operation {op_id} failed")
    wait_for(lambda: applied(ctl)["web-1"] in ("", "none"), 30, "web-1 back to no fleet config")
    with pytest.raises(grpc.RpcError) as info:
        ctl.stub.ResumeOperation(pb.GetOperationRequest(id=op_id), timeout=10)
    assert "withdrawn" in info.value.details()
