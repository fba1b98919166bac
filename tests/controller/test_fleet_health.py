"""Health checks as the fleet sees them (issue 16): a process's health reaches the controller's
status through the agent's event stream, and fleetctl status shows it in a column of its own."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb

from .fleet_harness import fleetctl, states, wait_status
from .test_fleet_config import push
from .test_operations import start, wait_op

CHECKED = """
[program:api]
command=sleep 1000
startsecs=0
stopwaitsecs=2
healthcheck=exec:test ! -e {flag}
healthcheck_interval=0.2
healthcheck_retries=1
[program:plain]
command=sleep 1000
startsecs=0
stopwaitsecs=2
"""


def health_of(status, spec: str) -> tuple[int, str]:
    found = {p.namespec: p for n in status.nodes for p in n.processes}[spec]
    return found.health, found.health_message


def test_health_reaches_fleet_status_and_fleetctl(fleet, tmp_path: Path):
    flag = tmp_path / "broken"
    ctl = fleet.controller()
    fleet.agent("web-1", ctl, programs=CHECKED.format(flag=flag))
    wait_status(ctl, lambda s: health_of(s, "api")[0] == apb.HEALTHY if "web-1:api" in states(s) else False,
                what="api healthy in the controller's status")
    assert health_of(ctl.status(), "plain")[0] == apb.HEALTH_UNSPECIFIED
    shown = fleetctl(ctl.address, "status")
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line.startswith("  ")}
    assert rows["api"][1:3] == ["RUNNING", "healthy"], shown.stdout
    assert rows["plain"][1] == "RUNNING" and "healthy" not in rows["plain"]

    flag.touch()
    status = wait_status(ctl, lambda s: health_of(s, "api")[0] == apb.UNHEALTHY, what="api unhealthy")
    assert health_of(status, "api")[1] == "test exited with status 1"
    assert states(status)["web-1:api"] == "RUNNING"  # health is not a state
    shown = fleetctl(ctl.address, "status")
    assert "unhealthy (test exited with status 1)" in shown.stdout, shown.stdout

    # the summary counts it as a problem in a category of its own, and --state UNHEALTHY finds it
    summary = ctl.stub.GetStatus(pb.StatusRequest(summary=True), timeout=5).summary
    assert [(p.kind, p.node, p.subject, p.state, p.detail) for p in summary.problems] == [
        (pb.Problem.PROCESS, "web-1", "api", "UNHEALTHY", "test exited with status 1")]
    api = next(g for g in summary.groups if g.group == "api")
    assert (api.running, [(c.state, c.count) for c in api.states]) == (1, [("UNHEALTHY", 1)])
    shown = fleetctl(ctl.address, "status", "--summary")
    assert shown.returncode == 0 and "api    1/1 RUNNING  UNHEALTHY 1 (web-1)" in shown.stdout, shown.stdout
    assert states(ctl.stub.GetStatus(pb.StatusRequest(states=["UNHEALTHY"]), timeout=5)) == {"web-1:api": "RUNNING"}


RESTARTED = """
[program:api]
command=sleep 1000
startsecs=0
stopwaitsecs=2
healthcheck=exec:test ! -e {flag}
healthcheck_interval=0.2
healthcheck_retries=1
"""


def test_a_rolling_restart_halts_on_an_unhealthy_batch_and_goes_through_once_healthy(fleet, tmp_path: Path):
    flags = {n: tmp_path / f"broken-{n}" for n in ("web-1", "web-2")}
    ctl = fleet.controller()
    for node, flag in flags.items():
        fleet.agent(node, ctl, programs=RESTARTED.format(flag=flag))
    wait_status(ctl, lambda s: [p.health for n in s.nodes for p in n.processes] == [apb.HEALTHY] * 2,
                what="api healthy on both nodes")
    plan = start(ctl, group="api", batch=1, healthy_for=0.5, dry_run=True)
    assert dict(plan.gates) == {"api": "health check"}
    shown = fleetctl(ctl.address, "rolling-restart", "api", "--batch", "1", "--healthy-for", "2s", "--dry-run")
    assert "gate for api: every process healthy by its health check for 2s" in shown.stdout, shown.stdout
    flags["web-2"].touch()  # web-2's api will run but not be healthy
    op = start(ctl, group="api", batch=1, healthy_for=0.5, timeout=20, on_failure=pb.PAUSE)
    paused = wait_op(ctl, op.id, {pb.OP_PAUSED})
    assert "web-2" in paused.reason and "api is RUNNING but unhealthy (test exited with status 1)" in paused.reason
    assert steps(paused) == {"web-1": pb.STEP_DONE, "web-2": pb.STEP_FAILED}
    flags["web-2"].unlink()  # fixed: once its check says so, the operator resumes
    wait_status(ctl, lambda s: [p.health for n in s.nodes for p in n.processes] == [apb.HEALTHY] * 2,
                what="web-2's api healthy again")
    ctl.stub.ResumeOperation(pb.GetOperationRequest(id=op.id), timeout=10)
    done = wait_op(ctl, op.id, {pb.OP_SUCCEEDED})
    assert steps(done) == {"web-1": pb.STEP_DONE, "web-2": pb.STEP_DONE}


def steps(op) -> dict[str, int]:
    return {step.node: step.state for batch in op.batches for step in batch.nodes}


def test_a_fleet_revision_may_depend_on_a_nodes_own_program(fleet):
    """The controller accepts the name (the node's heartbeat lists its own programs); the node
    holds the dependent until the dependency is running."""
    ctl = fleet.controller()
    agent = fleet.agent("web-1", ctl, programs="[program:db]\ncommand=sleep 1000\nstartsecs=0\nautostart=false\n")
    wait_status(ctl, lambda s: states(s).get("web-1:db") == "STOPPED", what="web-1 with its own db")
    with pytest.raises(grpc.RpcError) as missing:
        push(ctl, "workers", "[program:worker]\ncommand=sleep 1000\ndepends_on=nosuch\n", nodes=["web-1"])
    assert "depends on nosuch, but no program named nosuch is defined" in missing.value.details()
    push(ctl, "workers", "[program:worker]\ncommand=sleep 1000\nstartsecs=0\ndepends_on=db\n", nodes=["web-1"])
    wait_status(ctl, lambda s: states(s).get("web-1:worker") == "STOPPED", what="worker added and held")
    assert fleetctl(ctl.address, "start", "web-1:db").returncode == 0
    wait_status(ctl, lambda s: states(s).get("web-1:worker") == "RUNNING", what="worker started after db")
    log = agent.daemon.messages()  # the node's main log
    assert next(i for i, m in enumerate(log) if "success: db entered RUNNING" in m) < \
        next(i for i, m in enumerate(log) if "spawned: 'worker'" in m)


def test_a_rolling_push_dry_run_shows_each_groups_gate_and_stores_nothing(fleet, tmp_path: Path):
    """The gate comes from the revision pushed: a group it gives a health check waits for health,
    even where the nodes run the group without one today."""
    ctl = fleet.controller()
    for node in ("web-1", "web-2"):
        fleet.agent(node, ctl, labels="role=web")
    wait_status(ctl, lambda s: len(s.nodes) == 2 and all(n.node.reachable for n in s.nodes), what="two nodes")
    config = tmp_path / "web.conf"
    config.write_text(CHECKED.format(flag=tmp_path / "broken"))
    shown = fleetctl(ctl.address, "config", "push", str(config), "--name", "web", "--label", "role=web",
                     "-m", "checked api", "--rolling", "--batch", "1", "--healthy-for", "3s", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "web revision 1 would be stored; targets: web-1, web-2" in shown.stdout
    assert "batch 1: web-1" in shown.stdout and "batch 2: web-2" in shown.stdout
    assert "gate for api: every process healthy by its health check for 3s" in shown.stdout
    assert "gate for plain: every process RUNNING for 3s" in shown.stdout
    assert_not_stored(ctl, "web")
    assert not ctl.stub.ListOperations(pb.ListOperationsRequest(all=True), timeout=5).operations

    plain = fleetctl(ctl.address, "config", "push", str(config), "--name", "web", "--label", "role=web",
                     "-m", "checked api", "--dry-run")  # without --rolling: no plan, still nothing stored
    assert plain.returncode == 0 and "would be stored" in plain.stdout and "gate" not in plain.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("[program:x]\ncommand=sleep 1\nnumprocs=2\n")  # without %(process_num)s in its name
    refused = fleetctl(ctl.address, "config", "push", str(bad), "--name", "web", "--label", "role=web", "-m", "x",
                       "--rolling", "--dry-run")
    assert refused.returncode != 0 and "process_num" in refused.stderr and "Traceback" not in refused.stderr
    assert_not_stored(ctl, "web")


def assert_not_stored(ctl, name: str) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        ctl.stub.ConfigHistory(pb.ConfigHistoryRequest(name=name), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_revision_that_breaks_another_configs_dependency_is_refused(fleet):
    ctl = fleet.controller()
    fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: "web-1:app" in states(s), what="web-1 up")
    push(ctl, "cache", "[program:cache]\ncommand=sleep 1000\nstartsecs=0\n", nodes=["web-1"])
    push(ctl, "workers", "[program:worker]\ncommand=sleep 1000\nstartsecs=0\ndepends_on=cache\n", nodes=["web-1"])
    wait_status(ctl, lambda s: states(s).get("web-1:worker") == "RUNNING", what="worker running after cache")
    with pytest.raises(grpc.RpcError) as broken:
        push(ctl, "cache", "[program:redis]\ncommand=sleep 1000\nstartsecs=0\n")
    assert broken.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "depends on cache, but no program named cache is defined" in broken.value.details()
    deleted = fleetctl(ctl.address, "config", "delete", "cache", "-m", "gone", "--yes")
    assert deleted.returncode != 0 and "cache" in deleted.stderr, deleted.stdout + deleted.stderr
    history = ctl.stub.ConfigHistory(pb.ConfigHistoryRequest(name="cache"), timeout=5)
    assert len(history.revisions) == 1
    assert states(ctl.status()).get("web-1:cache") == "RUNNING"
