"""Both controllers serve reads: a follower must report what the nodes really run."""

from __future__ import annotations


from .conftest import AGENTS, CONTROLLERS
from .netns import wait_for
from .test_controller_failover import WORKER


def test_follower_reports_the_revision_the_leader_applied(fleet):
    leader = fleet.wait_leader(timeout=15)
    follower = next(c for c in CONTROLLERS if c != leader)
    fleet.driver.get("push", ctl=fleet.controllers[leader], name="workers", text=WORKER, labels={"role": "web"})
    wait_for(lambda: (s := fleet.driver.poll("config_status", ctl=fleet.controllers[leader]))
             and all(s.get(n, {}).get("applied") == "workers@1" for n in AGENTS), 30, "the leader to apply workers@1")
    # heartbeats (every ~1 s at a 3 s node TTL) carry the new revision to etcd, where the follower reads it
    wait_for(lambda: (s := fleet.driver.poll("config_status", ctl=fleet.controllers[follower]))
             and all(s.get(n, {}).get("applied") == "workers@1" and s[n]["in_sync"] for n in AGENTS), 10,
             f"the follower {follower} to report workers@1 applied and in sync on every node")
