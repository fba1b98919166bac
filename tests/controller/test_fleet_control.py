"""Fan-out of start/stop/restart/signal, log tailing through the controller, and the audit log."""

from __future__ import annotations

import json

import grpc
import pytest

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb
from tests.support import wait_for

from .fleet_harness import SLEEPER, states, wait_status

PROGRAMS = SLEEPER.format(name="app") + SLEEPER.format(name="worker") + """
[program:talker]
command=sh -c 'echo hello-from-%(host_node_name)s; exec sleep 1000'
startsecs=0
"""


@pytest.fixture
def three_nodes(fleet):
    ctl = fleet.controller()
    for name, role in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        fleet.agent(name, ctl, labels=f"role={role}", programs=PROGRAMS)
    wait_status(ctl, lambda s: len(states(s)) == 9 and all(v == "RUNNING" for v in states(s).values()),
                what="nine running processes")
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    return ctl


def control(ctl, action, *patterns, labels=None, signal="", timeout=0.0):
    return ctl.stub.Control(pb.ControlRequest(action=action, patterns=list(patterns), labels=labels or {},
                                              signal=signal, wait=True, node_timeout_seconds=timeout), timeout=30)


def test_stop_and_start_across_nodes_with_globs_and_labels(three_nodes):
    ctl = three_nodes
    answer = control(ctl, pb.STOP, "*:worker")
    assert sorted(n.node for n in answer.nodes) == ["db-1", "web-1", "web-2"]
    assert all(n.ok and [r.name for r in n.results] == ["worker"] for n in answer.nodes)
    now = states(wait_status(ctl, lambda s: all(v == "STOPPED" for k, v in states(s).items()
                                                 if k.endswith(":worker"))))
    assert now["web-1:app"] == "RUNNING"

    answer = control(ctl, pb.START, "*:worker", labels={"role": "web"})
    assert sorted(n.node for n in answer.nodes) == ["web-1", "web-2"] and all(n.ok for n in answer.nodes)
    wait_status(ctl, lambda s: (states(s)["web-1:worker"], states(s)["web-2:worker"], states(s)["db-1:worker"])
                == ("RUNNING", "RUNNING", "STOPPED"))


def test_restart_by_label_changes_pids_only_there(three_nodes):
    ctl = three_nodes
    before = {f"{n.node.name}:{p.namespec}": p.pid for n in ctl.status().nodes for p in n.processes}
    answer = control(ctl, pb.RESTART, "*:app", labels={"role": "web"})
    assert sorted(n.node for n in answer.nodes) == ["web-1", "web-2"] and all(n.ok for n in answer.nodes)
    def pids(s):
        return {f"{n.node.name}:{p.namespec}": p.pid for n in s.nodes for p in n.processes if p.statename == "RUNNING"}
    after = pids(wait_status(ctl, lambda s: pids(s).get("web-1:app", 0) not in (0, before["web-1:app"])
                             and pids(s).get("web-2:app", 0) not in (0, before["web-2:app"])))
    assert after["db-1:app"] == before["db-1:app"]


def test_one_node_down_is_reported_while_the_others_proceed(fleet, three_nodes):
    ctl = three_nodes
    down = next(a for a in fleet.agents if a.node == "web-2")
    down.kill()
    wait_status(ctl, lambda s: not next(n for n in s.nodes if n.node.name == "web-2").node.reachable,
                what="web-2 unreachable")
    answer = control(ctl, pb.STOP, "*:worker")
    result = {n.node: n for n in answer.nodes}
    assert result["web-1"].ok and result["db-1"].ok
    assert not result["web-2"].ok and "unreachable" in result["web-2"].error
    wait_status(ctl, lambda s: states(s)["web-1:worker"] == "STOPPED")


def test_unknown_names_are_refused(three_nodes):
    ctl = three_nodes
    for patterns in (["nosuch:app"], ["web-1:nosuch"], []):
        with pytest.raises(grpc.RpcError) as info:
            control(ctl, pb.STOP, *patterns)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert all(v == "RUNNING" for v in states(ctl.status()).values())


def test_signal_and_tail(three_nodes):
    ctl = three_nodes
    answer = control(ctl, pb.SIGNAL, "db-1:app", signal="TERM")
    assert [n.node for n in answer.nodes] == ["db-1"] and answer.nodes[0].ok
    chunks = ctl.stub.TailLog(pb.FleetTailRequest(node="web-1", request=apb.TailLogRequest(
        name="talker", last_bytes=100)), timeout=10)
    assert b"hello-from-" in b"".join(c.data for c in chunks)
    with pytest.raises(grpc.RpcError) as info:
        list(ctl.stub.TailLog(pb.FleetTailRequest(node="nosuch", request=apb.TailLogRequest(name="x")), timeout=5))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_mutating_commands_are_audited(three_nodes):
    ctl = three_nodes
    control(ctl, pb.STOP, "web-1:worker")
    with pytest.raises(grpc.RpcError):
        control(ctl, pb.STOP, "nosuch:worker")
    entries = ctl.stub.ListAudit(pb.ListAuditRequest(), timeout=5).entries
    assert [(e.action, e.ok) for e in entries] == [("control.stop", True), ("control.stop", False)]
    assert json.loads(entries[0].detail)["patterns"] == ["web-1:worker"]
    assert entries[0].who.endswith("(unverified)") and entries[0].controller_id == "ctl-1"
    assert "no such node" in entries[1].result
    later = ctl.stub.ListAudit(pb.ListAuditRequest(since=entries[1].time), timeout=5).entries
    assert len(later) == 1


def test_refused_writes_are_audited_in_bounded_entries_and_never_unknown(fleet):
    """Regressions from tests/fuzz/test_fuzz_controller_grpc.py: refusals before the write itself
    went unaudited; a Control action or an on_failure number the controller does not know was
    UNKNOWN "Unexpected ValueError"; a label of a megabyte was audited whole, until the audit
    listing was too big for one gRPC message."""
    ctl = fleet.controller()
    fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    stub = ctl.stub
    refused = [
        (stub.AbortOperation, pb.GetOperationRequest(id="nosuch"), grpc.StatusCode.NOT_FOUND, "ops.abort"),
        (stub.PushConfig, pb.PushConfigRequest(name="app", config_text="[program:x]\n"),
         grpc.StatusCode.INVALID_ARGUMENT, "config.push"),
        (stub.PushConfig, pb.PushConfigRequest(name="", config_text=""), grpc.StatusCode.INVALID_ARGUMENT,
         "config.push"),
        (stub.PinNode, pb.PinNodeRequest(node="nosuch"), grpc.StatusCode.NOT_FOUND, "node.pin"),
        (stub.StartOperation, pb.StartOperationRequest(spec=pb.OperationSpec(kind=pb.CONFIG_ROLLOUT)),
         grpc.StatusCode.INVALID_ARGUMENT, "ops.rolling-restart"),
        (stub.StartOperation, pb.StartOperationRequest(spec=pb.OperationSpec(group="app", on_failure=7)),
         grpc.StatusCode.INVALID_ARGUMENT, "ops.rolling-restart"),
        (stub.Control, pb.ControlRequest(action=5, patterns=["*"]), grpc.StatusCode.INVALID_ARGUMENT, "control.5"),
        (stub.Control, pb.ControlRequest(action=pb.STOP, patterns=["nosuch:*"], labels={"role": "x" * (1 << 20)}),
         grpc.StatusCode.NOT_FOUND, "control.stop"),
    ]
    for method, request, code, _ in refused:
        with pytest.raises(grpc.RpcError) as info:
            method(request, timeout=10)
        assert info.value.code() == code, (request, info.value.details())
    entries = stub.ListAudit(pb.ListAuditRequest(), timeout=10).entries
    assert [(e.action, e.ok) for e in entries] == [(action, False) for *_, action in refused]
    assert entries[-1].detail.count("x") < 400 and entries[-2].result == (
        "no such action: 5 (start, stop, restart or signal)")
