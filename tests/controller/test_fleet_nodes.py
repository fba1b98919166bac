"""Issue 14 parts 2 and 4 with real agents and a real etcd, judged from the agents' own state:
a controller on another (empty) store leaves foreign nodes alone until they are adopted; a
per-node apply on a managed node needs --force, shows as drift, is reverted unless pinned."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as pb

from tests.support import wait_for

from .etcd_harness import EtcdServer
from .fleet_harness import FLEETCTL, Controller, fleetctl, one_line_error, states, wait_status
from .test_fleet_config import WORKER, WORKER_V2
HOTFIX = """
[program:hotfix]
command=sleep 1000
startsecs=0
stopwaitsecs=2
"""


def push(ctl, name, text, nodes):
    wait_for(lambda: all(ctl.node(n) is not None for n in nodes), 15, f"{', '.join(nodes)} registered")
    return ctl.stub.PushConfig(pb.PushConfigRequest(name=name, config_text=text, message="test",
                                                    assignment=pb.Assignment(nodes=list(nodes))), timeout=15)


def meta(agent) -> dict:
    """What the agent keeps on disk about its applied revision (fleet.json)."""
    try:
        return json.loads((agent.dir / "state" / "fleet.json").read_text())
    except (OSError, ValueError):
        return {}


def pids(agent) -> dict[str, int]:
    """The agent's own word on its processes: {namespec: pid} of the running ones."""
    with grpc.insecure_channel(agent.address) as channel:
        listing = apb_grpc.AgentServiceStub(channel).ListProcesses(apb.ListProcessesRequest(), timeout=5)
    return {p.namespec: p.pid for p in listing.processes if p.statename == "RUNNING"}


def audit(ctl, action: str, node: str) -> list[pb.AuditEntry]:
    entries = ctl.stub.ListAudit(pb.ListAuditRequest(), timeout=5).entries
    return [e for e in entries if e.action == action and json.loads(e.detail or "{}").get("node") == node]


def per_node(agent, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETCTL, "--node", agent.address, *args], capture_output=True, text=True, timeout=60,
                          env={"FLEETCTL_CONFIG": "/nonexistent", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def cluster_id(ctl) -> str:
    line = next(line for line in ctl.log().splitlines() if "serving on" in line)
    return line.split("(identity ")[1].split(")")[0]


def test_a_controller_on_an_empty_store_leaves_foreign_nodes_running_until_adopted(fleet, tmp_path: Path):
    ctl = fleet.controller()
    web1 = fleet.agent("web-1", ctl)
    web2 = fleet.agent("web-2", ctl)
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    push(ctl, "workers", WORKER, ["web-1", "web-2"])
    wait_for(lambda: all(meta(a).get("revision") == "workers@1" and "worker" in pids(a) for a in (web1, web2)),
             20, "workers@1 running on both agents")
    first = cluster_id(ctl)
    assert all(meta(a)["cluster_id"] == first and not meta(a)["local"] for a in (web1, web2))
    before = {a.node: pids(a) for a in (web1, web2)}

    # the agents' controller comes back on a new, empty etcd (same address, as after a move)
    ctl.stop()
    other = EtcdServer(tmp_path / "etcd-2")
    other.start()
    try:
        ctl2 = Controller(fleet.base, other.endpoint, name="ctl-2", port=ctl.port)
        fleet.controllers.append(ctl2)
        second = cluster_id(ctl2)
        assert second != first
        wait_for(ctl2.is_leader, 10, "ctl-2 to lead")

        # the leader has judged each node (it audits the reason in the pass that decides)
        for node in ("web-1", "web-2"):
            wait_for(lambda n=node: audit(ctl2, "node.foreign", n), 20, f"{node} audited as foreign")
        shown = {n.name: n for n in ctl2.stub.ListNodes(pb.ListNodesRequest(), timeout=5).nodes}
        assert all("another cluster" in shown[n].foreign for n in ("web-1", "web-2")), shown
        assert {a.node: pids(a) for a in (web1, web2)} == before  # nothing stopped or restarted
        assert all(meta(a)["revision"] == "workers@1" and meta(a)["cluster_id"] == first for a in (web1, web2))
        listing = fleetctl(ctl2.address, "nodes")
        assert listing.returncode == 0 and "FOREIGN" in listing.stdout and "nodes adopt web-1" in listing.stdout
        status = fleetctl(ctl2.address, "status")
        assert "FOREIGN" in status.stdout, status.stdout
        assert len(audit(ctl2, "node.foreign", "web-1")) == 1  # once per change, not per pass

        adopted = fleetctl(ctl2.address, "nodes", "adopt", "web-1", "--keep")
        assert adopted.returncode == 0, adopted.stderr
        assert "adopted" in adopted.stdout
        wait_for(lambda: not ctl2.node("web-1").foreign, 10, "web-1 no longer foreign")
        assert audit(ctl2, "node.adopt", "web-1")
        assert pids(web1) == before["web-1"] and meta(web1)["revision"] == "workers@1"

        # a later push reaches the adopted node (this store's workers@1 is another text)...
        push(ctl2, "workers", WORKER_V2, ["web-1"])
        wait_for(lambda: meta(web1).get("cluster_id") == second, 20, "web-1 reconciled by ctl-2")
        assert meta(web1)["revision"] == "workers@1" and not meta(web1)["local"]
        wait_for(lambda: pids(web1).get("worker") not in (None, before["web-1"]["worker"]), 20,
                 "web-1's worker restarted with the new text")
        # ...and the node that was not adopted is still left alone
        assert ctl2.node("web-2").foreign
        assert pids(web2) == before["web-2"] and meta(web2)["cluster_id"] == first
        refused = fleetctl(ctl2.address, "nodes", "adopt", "web-1")
        assert refused.returncode != 0 and "not foreign" in one_line_error(refused)
    finally:
        for c in fleet.controllers[1:]:
            c.stop()
        other.kill()


def test_agents_running_configs_the_store_does_not_know_are_foreign(fleet, tmp_path: Path):
    """The same store, but the revision the nodes run is gone from it (e.g. etcd restored from
    an older backup): nothing is pushed, though web-1 is assigned nothing now (a push would stop
    its worker); `adopt --keep` keeps web-1 as it is, `adopt` gives web-2 this store's revision."""
    ctl = fleet.controller()
    agents = [fleet.agent("web-1", ctl), fleet.agent("web-2", ctl)]
    web1, web2 = agents
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    push(ctl, "workers", WORKER, ["web-1", "web-2"])
    wait_for(lambda: all("worker" in pids(a) and meta(a).get("revision") == "workers@1" for a in agents), 20,
             "workers@1 running on both")
    for agent in agents:
        agent.stop()
        state = agent.dir / "state" / "fleet.json"
        state.write_text(json.dumps({**json.loads(state.read_text()), "revision": "workers@7"}))
    push(ctl, "workers", WORKER_V2, ["web-2"])  # workers@2, for web-2 only
    for agent in agents:
        agent.start()
    for node in ("web-1", "web-2"):
        wait_for(lambda n=node: audit(ctl, "node.foreign", n), 20, f"{node} audited as foreign")
    assert ("runs workers@7, which this store does not know (config workers has no revision 7)"
            in ctl.node("web-1").foreign)
    before = {a.node: pids(a)["worker"] for a in agents}

    kept = fleetctl(ctl.address, "nodes", "adopt", "web-1", "--keep")
    assert kept.returncode == 0, kept.stderr
    replaced = fleetctl(ctl.address, "nodes", "adopt", "web-2")
    assert replaced.returncode == 0, replaced.stderr
    wait_for(lambda: meta(web2).get("revision") == "workers@2" and pids(web2).get("worker") not in
             (None, before["web-2"]), 20, "web-2 given workers@2 by the store")
    wait_for(lambda: not ctl.node("web-1").foreign and not ctl.node("web-2").foreign, 10, "neither foreign")
    assert pids(web1)["worker"] == before["web-1"] and meta(web1)["revision"] == "workers@7"


@pytest.fixture
def managed(fleet):
    ctl = fleet.controller()
    web1 = fleet.agent("web-1", ctl)
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    push(ctl, "workers", WORKER, ["web-1"])
    wait_for(lambda: meta(web1).get("revision") == "workers@1" and "worker" in pids(web1), 20,
             "workers@1 running on web-1")
    wait_status(ctl, lambda s: states(s).get("web-1:worker") == "RUNNING")
    return ctl, web1


def test_an_unforced_per_node_apply_on_a_managed_node_is_refused(managed, tmp_path: Path):
    ctl, web1 = managed
    hotfix = tmp_path / "hotfix.conf"
    hotfix.write_text(HOTFIX)
    before, kept = pids(web1), meta(web1)

    refused = per_node(web1, "config", "apply", str(hotfix))
    line = one_line_error(refused)
    assert refused.returncode == 1
    assert "would revert" in line and "fleetctl nodes pin web-1" in line and "fleetctl config push" in line
    assert "--force" in line

    # another client, straight to the agent: the agent refuses it too
    with grpc.insecure_channel(web1.address) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            apb_grpc.AgentServiceStub(channel).ApplyConfig(
                apb.ApplyConfigRequest(revision="sneaky", config_text=HOTFIX), timeout=10)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "would revert" in raised.value.details()

    stopped = per_node(web1, "stop", "worker")
    line = one_line_error(stopped)
    assert "fleet program worker" in line and "fleetctl stop web-1:worker" in line
    with grpc.insecure_channel(web1.address) as channel:
        for method in ("Stop", "Start"):
            with pytest.raises(grpc.RpcError) as raised:
                getattr(apb_grpc.AgentServiceStub(channel), method)(apb.ProcessCommand(all=True), timeout=10)
            assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "fleet program worker" in raised.value.details()

    assert pids(web1) == before and meta(web1) == kept  # nothing changed
    dry = per_node(web1, "config", "apply", str(hotfix), "--dry-run")
    assert dry.returncode == 0 and "hotfix: would be added" in dry.stdout
    # the node's own program is not the controller's: no --force needed
    local = per_node(web1, "stop", "app")
    assert local.returncode == 0, local.stderr
    assert "app" not in pids(web1) and pids(web1)["worker"] == before["worker"]
    # through the controller, or with --force, a fleet program may be stopped
    assert fleetctl(ctl.address, "stop", "web-1:worker").returncode == 0
    assert "worker" not in pids(web1)
    forced = per_node(web1, "start", "worker", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "worker" in pids(web1)


def test_a_forced_per_node_apply_is_drift_reverted_by_default_and_held_when_pinned(fleet, managed, tmp_path: Path):
    ctl, web1 = managed
    hotfix = tmp_path / "hotfix.conf"
    hotfix.write_text(WORKER + HOTFIX)

    forced = per_node(web1, "config", "apply", str(hotfix), "--force")
    assert forced.returncode == 0, forced.stderr
    # reverted: the controller logs it, audits the drift, and the agent is back at workers@1
    ctl.wait_line("runs per-node revision local-", 20)
    wait_for(lambda: meta(web1).get("revision") == "workers@1" and not meta(web1)["local"]
             and "hotfix" not in pids(web1), 20, "the per-node revision reverted on web-1")
    assert "reverting it to workers@1" in ctl.log() and "fleetctl nodes pin web-1" in ctl.log()
    assert audit(ctl, "node.drift", "web-1")

    pinned = fleetctl(ctl.address, "nodes", "pin", "web-1", "-m", "incident 4711")
    assert pinned.returncode == 0, pinned.stderr
    drifts = len(audit(ctl, "node.drift", "web-1"))
    forced = per_node(web1, "config", "apply", str(hotfix), "--force")
    assert forced.returncode == 0, forced.stderr
    # the leader has seen the drift (audited in the pass that decides) and pushed nothing
    wait_for(lambda: len(audit(ctl, "node.drift", "web-1")) > drifts
             and any("runs per-node" in e.result for e in audit(ctl, "node.drift", "web-1")[drifts:]), 20,
             "the new drift audited")
    node = wait_for(lambda: (n := ctl.node("web-1")) and n.local_revision and n, 10, "drift shown")
    assert node.pinned and not node.foreign
    follower = fleet.controller("ctl-2")  # the pin is in etcd: every controller shows it
    assert wait_for(lambda: (n := follower.node("web-1")) and n.pinned, 10, "the follower to show the pin")
    assert meta(web1)["local"] and meta(web1)["revision"].startswith("local-") and "hotfix" in pids(web1)
    listing = fleetctl(ctl.address, "nodes")
    assert "pinned by" in listing.stdout and "drift" in listing.stdout
    held = {n.node: n for n in ctl.stub.ConfigStatus(pb.ConfigStatusRequest(), timeout=5).nodes}["web-1"].held
    assert held == "web-1 is pinned: unpin it first (fleetctl nodes unpin web-1)"
    assert "held: web-1 is pinned" in fleetctl(ctl.address, "config", "status").stdout
    # a rollout does not wait out its timeout on a pinned node: it fails it at once, saying why
    rolled = ctl.stub.PushConfig(pb.PushConfigRequest(
        name="workers", config_text=WORKER + "; v2\n", message="while pinned",
        rollout=pb.OperationSpec(batch=1, on_failure=pb.ABORT, timeout_seconds=300)), timeout=30)
    failed = wait_for(lambda: (o := ctl.stub.GetOperation(pb.GetOperationRequest(id=rolled.operation_id),
                                                          timeout=5)).state == pb.OP_FAILED and o,
                      20, "the rollout to fail on the pinned node")
    assert "web-1 is pinned: unpin it first" in failed.reason

    unpinned = fleetctl(ctl.address, "nodes", "unpin", "web-1")
    assert unpinned.returncode == 0, unpinned.stderr
    wait_for(lambda: meta(web1).get("revision") == "workers@1" and "hotfix" not in pids(web1), 20,
             "reverted once unpinned")
    assert {e.action for e in ctl.stub.ListAudit(pb.ListAuditRequest(), timeout=5).entries} >= {
        "node.pin", "node.unpin", "node.drift"}
    for args, words in ((("nodes", "pin", "nosuch"), "no such node: nosuch"),
                        (("nodes", "unpin", "web-1"), "node web-1 is not pinned")):
        bad = fleetctl(ctl.address, *args)
        assert bad.returncode != 0 and words in one_line_error(bad)
