"""The leading controller killed: the other leads; status and config pushes keep working."""

from __future__ import annotations

import time

from .conftest import AGENTS, CONTROLLERS, LEADER_TTL
from .netns import wait_for

WORKER = """
[program:worker]
command=sleep 86403
startsecs=0
stopwaitsecs=2
"""
WORKER_ARGV = ["sleep", "86403"]
FAILOVER_MARGIN = 6.0  # on top of the leader TTL: campaign retries and a loaded machine


def test_leader_killed_the_other_leads_and_status_and_pushes_keep_working(fleet, tmp_path):
    any_ctl = fleet.controllers["ctl-a"]
    leader = fleet.driver.fleetctl_json(any_ctl, "leader")["leader_id"]
    assert leader in CONTROLLERS
    survivor = next(c for c in CONTROLLERS if c != leader)
    address = fleet.controllers[survivor]
    pids = fleet.host_pids()

    killed_at = time.monotonic()
    fleet.ctl_procs[leader].kill()  # SIGKILL: no resignation, the election lease has to expire
    wait_for(lambda: fleet.leader(survivor) == survivor, LEADER_TTL + FAILOVER_MARGIN, f"{survivor} to lead")
    print(f"{survivor} leads {time.monotonic() - killed_at:.1f}s after {leader} was killed")
    info = fleet.driver.fleetctl_json(address, "leader")
    assert info["leader_id"] == survivor and info["is_leader"] and info["leader_address"] == address

    status = fleet.driver.fleetctl_json(address, "status")
    assert status["controller_id"] == survivor
    states = {f"{n['node']['name']}:{p['namespec']}": p["statename"] for n in status["nodes"] for p in n["processes"]}
    assert states == {f"{n}:{p}": "RUNNING" for n in AGENTS for p in ("alpha", "beta")}

    conf = tmp_path / "workers.conf"
    conf.write_text(WORKER.lstrip())
    result = fleet.driver.fleetctl(address, "config", "push", str(conf), "--name", "workers", "--label", "role=web",
                                   "-m", "after failover")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: (s := fleet.driver.poll("config_status", ctl=address))
             and all(s.get(n, {}).get("applied") == "workers@1" for n in AGENTS), 30,
             "the push made after the failover to be applied on every node")
    for node in AGENTS:
        wait_for(lambda: len(fleet.topo.processes(node, WORKER_ARGV)) == 1, 15, f"worker running on {node}")
    assert fleet.host_pids() == pids, "alpha/beta were disturbed by the failover or the push"
