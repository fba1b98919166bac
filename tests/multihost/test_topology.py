"""The multi-host fleet itself: isolated hosts, every node seen by both controllers."""

from __future__ import annotations

import ipaddress
import json
import re

from .conftest import AGENTS
from .netns import ip


def test_hosts_are_isolated_and_the_fleet_converges(fleet):
    topo = fleet.topo
    topo.check_root_clean()
    # no link of ours in the root namespace; each host has only lo and its eth0
    assert not [l for l in json.loads(ip("-j", "link")) if l["ifname"].startswith("v-")]
    for host in topo.host_octets:
        names = sorted(l["ifname"] for l in json.loads(ip("-n", topo.ns(host), "-j", "link")))
        assert names == ["eth0", "lo"], (host, names)
    for ctl in fleet.controllers:
        nodes = fleet.converged(ctl)
        assert nodes and sorted(nodes) == list(AGENTS)
        for node in AGENTS:
            assert ipaddress.ip_address(nodes[node]["address"].rsplit(":", 1)[0]) in topo.subnet
    for agent in fleet.agents.values():
        assert {k: len(v) for k, v in agent.programs().items()} == {"alpha": 1, "beta": 1}
    # every link is mutual TLS: controllers and agents say so, and nobody runs insecure
    for name, proc in fleet.ctl_procs.items():
        assert "(mutual TLS)" in proc.text() and "--insecure" not in proc.text(), name
    for agent in fleet.agents.values():
        assert re.search(r"gRPC AgentService listening on \S+ \(mutual TLS\)", agent.proc.text()), agent.node
