"""etcd stopped and started again: agents and programs untouched, controllers recover."""

from __future__ import annotations

import time

from .conftest import AGENTS, CONTROLLERS
from .netns import wait_for
from .test_controller_failover import WORKER, WORKER_ARGV


def test_etcd_outage_leaves_agents_alone_and_controllers_recover(fleet):
    pids = fleet.host_pids()
    reported = {c: fleet.reported_pids(c) for c in CONTROLLERS}
    runs = {n: a.proc.pid for n, a in fleet.agents.items()}

    fleet.etcd.terminate()
    stopped_at = time.monotonic()

    # the outage is noticed: the leader steps down rather than act on a store it cannot reach
    def nobody_leads():
        infos = {c: fleet.driver.poll("leader", ctl=fleet.controllers[c]) for c in CONTROLLERS}
        return infos if all(i and not i["is_leader"] for i in infos.values()) else None
    infos = wait_for(nobody_leads, 20, "the leader to step down while etcd is down")
    print(f"leader stepped down {time.monotonic() - stopped_at:.1f}s after etcd stopped; GetLeader then: {infos}")
    # the agents feel it: heartbeats cannot be recorded, so every controller refuses them
    for node, agent in fleet.agents.items():
        # ... and log what the controller answered, not a connection error of their own
        wait_for(lambda agent=agent: "no controller took the heartbeat" in agent.proc.text()
                 and "answered UNAVAILABLE: etcd is unavailable at" in agent.proc.text(), 20,
                 f"{node}'s agent to log that no controller takes its heartbeats, and why")
    print(f"every agent without a controller {time.monotonic() - stopped_at:.1f}s after etcd stopped")
    registered = {n: a.proc.text().count("registered with controller") for n, a in fleet.agents.items()}
    reads = {c: fleet.driver.call("status", ctl=fleet.controllers[c]) for c in CONTROLLERS}
    print("status during the outage:", {c: {n["name"]: n["up"] for n in r["result"]["nodes"]} if r["ok"] else r["code"]
                                         for c, r in reads.items()})
    assert fleet.host_pids() == pids
    assert all(a.proc.running() for a in fleet.agents.values())

    fleet.start_etcd()  # same host, port and data dir
    started_at = time.monotonic()
    leader = fleet.wait_leader(timeout=30)
    print(f"{leader} leads {time.monotonic() - started_at:.1f}s after etcd came back")
    for node, agent in fleet.agents.items():  # the agents' heartbeats are taken again
        wait_for(lambda n=node, a=agent: a.proc.text().count("registered with controller") > registered[n], 30,
                 f"{node}'s agent to register again")
    fleet.wait_converged(timeout=30)

    answer = fleet.driver.get("push", ctl=fleet.controllers[leader], name="workers", text=WORKER,
                              labels={"role": "web"})
    assert answer["revision"] == 1 and answer["target_nodes"] == list(AGENTS)
    # the leader applied it everywhere
    wait_for(lambda: (s := fleet.driver.poll("config_status", ctl=fleet.controllers[leader]))
             and all(s.get(n, {}).get("applied") == "workers@1" for n in AGENTS), 30,
             "the push made after the etcd restart to be applied on every node")
    # both controllers' etcd watches resumed: each mirror holds the new revision as desired
    # (the follower's "applied" column is not used here: see test_follower_reads.py)
    for ctl in CONTROLLERS:
        wait_for(lambda ctl=ctl: (s := fleet.driver.poll("config_status", ctl=fleet.controllers[ctl]))
                 and all(s.get(n, {}).get("desired") == "workers@1" for n in AGENTS), 15,
                 f"{ctl}'s mirror to see workers@1 desired on every node")
    for node in AGENTS:
        wait_for(lambda node=node: len(fleet.topo.processes(node, WORKER_ARGV)) == 1, 15, f"worker on {node}")
    for ctl in CONTROLLERS:
        wait_for(lambda ctl=ctl: all(
            (s := fleet.driver.poll("status", ctl=fleet.controllers[ctl], patterns=[f"{n}:worker"])) and
            s["nodes"] and s["nodes"][0]["processes"][0]["statename"] == "RUNNING" for n in AGENTS),
            15, f"{ctl}'s live state to show the workers running")

    assert fleet.host_pids() == pids, "alpha/beta were restarted by the etcd outage"
    assert {n: a.proc.pid for n, a in fleet.agents.items()} == runs
    for ctl in CONTROLLERS:
        now = {n: {k: v for k, v in p.items() if k != "worker"} for n, p in fleet.reported_pids(ctl).items()}
        assert now == reported[ctl]
