"""Controllers that share the agents' state streams (README "Several controllers"), with real
controllers, agents and etcd: over mutual TLS each follows its share and gets the others' from
them with its own certificate; fleetctl shows the shares; a controller that shuts down gives its
share up at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.controller.assignment import owner
from fleetvisor.v1 import controller_pb2 as pb
from tests.support import free_port, wait_for

from .fleet_harness import CLUSTER, FLEETCTL, states, wait_status
from .test_controller_metrics import scrape
from .test_fleet_tls import ENV, OPERATOR, tls_agent, tls_flags

NODES = ("web-1", "web-2", "web-3", "web-4")


def test_two_tls_controllers_share_the_agents_and_each_shows_them_all(fleet, tmp_path: Path):
    pki = tmp_path / "pki"
    make_ca(pki)
    for name in ("ctl-1", "ctl-2"):
        issue(pki, name, ["127.0.0.1"], role="controller", cluster=CLUSTER)
    for name in NODES:
        issue(pki, name, ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(pki, OPERATOR, [], role="operator", groups=["admins"], cluster=CLUSTER)
    ctls = [fleet.controller(name, extra=tls_flags(pki, name)) for name in ("ctl-1", "ctl-2")]
    for name in NODES:
        fleet.agents.append(tls_agent(fleet.base, name, ctls[0].address, pki))
    owners = {n: owner(n, ["ctl-1", "ctl-2"]) for n in NODES}
    assert len(set(owners.values())) == 2, owners  # these names split over the two

    def fleetctl(ctl, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FLEETCTL, "--controller", ctl.address, *tls_flags(pki, OPERATOR), *args],
                              capture_output=True, text=True, timeout=30, env=ENV)

    def all_live(ctl) -> bool:
        result = fleetctl(ctl, "-o", "json", "status")
        if result.returncode != 0:
            return False
        nodes = json.loads(result.stdout)["nodes"]
        return len(nodes) == len(NODES) and all(
            n["node"].get("reachable") and [p["statename"] for p in n["processes"]] == ["RUNNING", "RUNNING"]
            for n in nodes)
    for ctl in ctls:
        wait_for(lambda ctl=ctl: all_live(ctl), 30, f"{ctl.name} to show every node live over mutual TLS")

    shown = fleetctl(ctls[0], "leader", "--controllers")
    assert shown.returncode == 0, shown.stderr
    for ctl in ctls:
        share = sum(o == ctl.name for o in owners.values())
        line = next(line for line in shown.stdout.splitlines() if line.startswith(ctl.name))
        assert ctl.address in line and f" {share} " in f" {line} ", shown.stdout
    assert "connected" in shown.stdout and "not connected" not in shown.stdout, shown.stdout

    # a tail and a stop through a controller that does not follow the node (a channel dialled for it)
    for name in NODES:
        other = next(c for c in ctls if c.name != owners[name])
        tail = fleetctl(other, "tail", f"{name}:talker")
        assert tail.returncode == 0 and tail.stdout == "hello-over-tls\n", tail.stdout + tail.stderr
    leading = wait_for(lambda: json.loads(fleetctl(ctls[0], "-o", "json", "leader").stdout or "{}").get("leader_id"),
                       10, "a leader")
    leader = next(c for c in ctls if c.name == leading)
    name = next(n for n in NODES if owners[n] != leader.name)
    stopped = fleetctl(leader, "stop", f"{name}:app")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for ctl in ctls:
        wait_for(lambda ctl=ctl: '"statename": "STOPPED"' in fleetctl(
            ctl, "-o", "json", "status", f"{name}:app").stdout, 10, f"{ctl.name} to show {name}:app stopped")

    # ctl-2's guard admitted ctl-1's certificate for PeerService only: ctl-1 gets ctl-2's share
    assert "following the live state of controller ctl-2" in ctls[0].log()
    assert "following the live state of controller ctl-1" in ctls[1].log()


def test_a_controller_that_shuts_down_gives_its_share_up_at_once(fleet):
    port = free_port()
    a = fleet.controller("ctl-a", leader_ttl=10, node_ttl=12, extra=("--metrics-listen", f"127.0.0.1:{port}"))
    b = fleet.controller("ctl-b", leader_ttl=10, node_ttl=12)
    names = [f"web-{i}" for i in range(1, 7)]
    for name in names:
        fleet.agent(name, a, b)
    for ctl in (a, b):
        wait_status(ctl, lambda s: len(s.nodes) == len(names) and all(n.node.reachable for n in s.nodes)
                    and all(states(s).get(f"{n}:app") == "RUNNING" for n in names), 30, f"{ctl.name}: all live")
    info = a.stub.GetLeader(pb.GetLeaderRequest(), timeout=5)
    assert info.followed_nodes == sum(owner(n, ["ctl-a", "ctl-b"]) == "ctl-a" for n in names)
    assert sorted((s.id, s.connected) for s in info.controllers) == [("ctl-a", True), ("ctl-b", True)]
    samples = scrape(port)
    assert samples[("fleetvisor_controller_followed_nodes", ())] == info.followed_nodes
    assert {labels[0][1]: v for (name, labels), v in samples.items()
            if name == "fleetvisor_controller_assigned_nodes"} == {s.id: s.nodes for s in info.controllers}
    assert samples[("fleetvisor_controller_peer_connected", (("controller", "ctl-b"),))] == 1

    b.stop()  # SIGTERM: its registration is withdrawn, well before its 10 s lease would expire
    wait_for(lambda: a.stub.GetLeader(pb.GetLeaderRequest(), timeout=5).followed_nodes == len(names), 5,
             "ctl-a to follow every node")
    wait_status(a, lambda s: all(n.node.reachable for n in s.nodes), 5, "ctl-a: every node live again")
    assert [s.id for s in a.stub.GetLeader(pb.GetLeaderRequest(), timeout=5).controllers] == ["ctl-a"]
    assert scrape(port)[("fleetvisor_controller_followed_nodes", ())] == len(names)
