"""fleetctl's operations commands against a real controller and real agents."""

from __future__ import annotations

import json

import pytest

from tests.support import wait_for

from .fleet_harness import fleetctl, states, wait_status
from .test_operations import WEB


@pytest.mark.slow
def test_rolling_restart_and_ops_commands(fleet, tmp_path):
    ctl = fleet.controller()
    for i in (1, 2, 3):
        fleet.agent(f"n{i}", ctl, labels="role=web", programs=WEB)
    wait_status(ctl, lambda s: len(states(s)) == 6 and all(v == "RUNNING" for v in states(s).values()),
                timeout=30, what="six web processes")
    wait_for(ctl.is_leader, 10, "a leader")

    plan = fleetctl(ctl.address, "rolling-restart", "web", "--batch", "2", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "batch 1: n1, n2" in plan.stdout and "batch 2: n3" in plan.stdout
    assert not json.loads(fleetctl(ctl.address, "ops", "list", "--all", "-o", "json").stdout)["operations"]

    run = fleetctl(ctl.address, "rolling-restart", "web", "--batch", "2", "--healthy-for", "1s", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded" in run.stdout and "3/3" in run.stdout
    listing = json.loads(fleetctl(ctl.address, "-o", "json", "ops", "list", "--all").stdout)["operations"]
    assert len(listing) == 1
    op_id = listing[0]["id"]
    shown = fleetctl(ctl.address, "ops", "show", op_id)
    assert shown.returncode == 0 and "n3" in shown.stdout and "succeeded" in shown.stdout
    again = fleetctl(ctl.address, "ops", "abort", op_id)
    assert again.returncode != 0 and "already ended" in again.stderr and len(again.stderr.splitlines()) == 1
    missing = fleetctl(ctl.address, "ops", "show", "nosuch")
    assert missing.returncode == 4 and "no such operation" in missing.stderr


def test_rolling_config_push_with_a_canary_then_promote(fleet, tmp_path):
    ctl = fleet.controller()
    for i in (1, 2, 3):
        fleet.agent(f"n{i}", ctl, labels="role=web")
    wait_status(ctl, lambda s: len(states(s)) == 3, what="three nodes")
    wait_for(ctl.is_leader, 10, "a leader")
    conf = tmp_path / "extra.conf"
    conf.write_text("[program:extra]\ncommand=sleep 1000\nstartsecs=0\n")
    pushed = fleetctl(ctl.address, "config", "push", str(conf), "--name", "extra", "--label", "role=web",
                      "-m", "canary", "--rolling", "--canary", "1", "--healthy-for", "1s", "--detach")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    op_id = json.loads(fleetctl(ctl.address, "-o", "json", "ops", "list").stdout)["operations"][0]["id"]

    def op():
        return json.loads(fleetctl(ctl.address, "-o", "json", "ops", "show", op_id).stdout)
    wait_for(lambda: op()["state"] == "OP_PAUSED", 30, "the canary pause")
    assert "canary on n1" in op()["reason"]
    resumed = fleetctl(ctl.address, "ops", "resume", op_id)
    assert resumed.returncode == 0, resumed.stderr
    watched = fleetctl(ctl.address, "ops", "watch", op_id, timeout=120)
    assert watched.returncode == 0 and "succeeded" in watched.stdout
    wait_status(ctl, lambda s: sum(1 for k, v in states(s).items() if k.endswith(":extra") and v == "RUNNING") == 3,
                what="extra running on every node")
