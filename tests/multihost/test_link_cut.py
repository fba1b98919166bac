"""A host's link cut and restored: the fleet marks it down, its programs never notice."""

from __future__ import annotations

import time

from .conftest import CONTROLLERS, NODE_TTL
from .netns import wait_for

DOWN_MARGIN = 3.0    # on top of the node TTL: heartbeat interval, etcd's lease-expiry tick, a loaded machine
HEAL_TIMEOUT = 20.0  # the agent's next heartbeat and the controllers' reconnect backoff (capped at 5 s) fit well


def node_view(fleet, ctl: str, node: str) -> dict | None:
    nodes = fleet.driver.poll("nodes", ctl=fleet.controllers[ctl])
    return next((n for n in nodes or () if n["name"] == node), None)


def test_cut_host_is_marked_down_keeps_its_programs_and_converges_after_heal(fleet):
    topo, victim = fleet.topo, "n3"
    agent = fleet.agents[victim]
    reported = {c: fleet.reported_pids(c)[victim] for c in CONTROLLERS}
    on_host = agent.programs()
    assert on_host == {"alpha": [reported["ctl-a"]["alpha"]], "beta": [reported["ctl-a"]["beta"]]}
    assert reported["ctl-a"] == reported["ctl-b"]
    spawned = {p: agent.spawned(p) for p in ("alpha", "beta")}
    assert spawned == on_host

    cut_at = time.monotonic()
    topo.cut(victim)
    try:
        seen = {}
        for ctl in CONTROLLERS:
            for field in ("up", "reachable"):
                wait_for(lambda: (n := node_view(fleet, ctl, victim)) and not n[field], NODE_TTL + DOWN_MARGIN,
                         f"{ctl} to show {victim} {field}=false within the node TTL (+{DOWN_MARGIN}s)")
                seen[f"{ctl} {field}=false"] = round(time.monotonic() - cut_at, 1)
        print(f"\n{victim} cut, seconds until: {seen}")
        # only the cut host is affected
        for ctl in CONTROLLERS:
            others = {n["name"]: n["up"] and n["reachable"]
                      for n in fleet.driver.get("nodes", ctl=fleet.controllers[ctl]) if n["name"] != victim}
            assert others == {"n1": True, "n2": True, "n4": True}, (ctl, others)
        # the host itself carries on: same agent, same programs, nothing restarted
        assert agent.proc.running()
        assert agent.programs() == on_host
    finally:
        topo.heal(victim)

    healed_at = time.monotonic()
    for ctl in CONTROLLERS:  # heartbeats get through again
        wait_for(lambda: (n := node_view(fleet, ctl, victim)) and n["up"], HEAL_TIMEOUT, f"{ctl}: {victim} up")
    print(f"{victim} up again at both controllers {time.monotonic() - healed_at:.1f}s after the heal")
    assert agent.proc.running()
    assert agent.programs() == on_host, "a program was restarted or duplicated on the cut host"
    assert {p: agent.spawned(p) for p in ("alpha", "beta")} == spawned, "the agent spawned again"

    views = fleet.wait_converged(timeout=HEAL_TIMEOUT)
    print(f"{victim} converged {time.monotonic() - healed_at:.1f}s after the heal")
    for ctl, nodes in views.items():
        pids = {p["namespec"]: p["pid"] for p in nodes[victim]["processes"]}
        assert pids == reported[ctl], f"{ctl} reports other pids after the heal: {pids} != {reported[ctl]}"
    assert agent.programs() == on_host
