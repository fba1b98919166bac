"""Membership and live status: real agents register with a real controller on a real etcd."""

from __future__ import annotations

import os
import signal

import grpc
import pytest

from fleetvisor.v1 import controller_pb2 as pb

from tests.support import free_port, pid_alive

from .fleet_harness import Agent, states, wait_status


def test_agents_register_and_status_covers_every_node(fleet):
    ctl = fleet.controller()
    fleet.agent("web-1", ctl, labels="role=web")
    fleet.agent("web-2", ctl, labels="role=web")
    fleet.agent("db-1", ctl, labels="role=db")
    status = wait_status(ctl, lambda s: len(s.nodes) == 3 and all(n.node.reachable for n in s.nodes)
                         and len(states(s)) == 3, what="three live nodes")
    assert states(status) == {"db-1:app": "RUNNING", "web-1:app": "RUNNING", "web-2:app": "RUNNING"}
    web1 = next(n.node for n in status.nodes if n.node.name == "web-1")
    assert web1.up and dict(web1.labels) == {"role": "web"} and web1.agent_version
    assert web1.address.startswith("127.0.0.1:")

    by_label = ctl.stub.GetStatus(pb.StatusRequest(labels={"role": "web"}), timeout=5)
    assert sorted(n.node.name for n in by_label.nodes) == ["web-1", "web-2"]
    one = ctl.status("db-1:app")
    assert [(n.node.name, [p.namespec for p in n.processes]) for n in one.nodes] == [("db-1", ["app"])]


def test_status_follows_process_changes_live(fleet):
    ctl = fleet.controller()
    agent = fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    pid = agent.daemon.pid_of("app")
    os.kill(pid, signal.SIGKILL)
    # autorestart (default: unexpected) brings it back with a new pid; the controller sees it
    wait_status(ctl, lambda s: any(p.pid not in (0, pid) and p.statename == "RUNNING"
                                   for n in s.nodes for p in n.processes), what="a new pid for app")


def test_unknown_node_or_process_is_not_found(fleet):
    ctl = fleet.controller()
    fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    for pattern, message in (("nosuch:app", "no such node: nosuch"), ("web-1:nosuch", "no such process")):
        with pytest.raises(grpc.RpcError) as info:
            ctl.status(pattern)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert message in info.value.details()


def test_node_whose_heartbeats_stop_is_shown_down_not_hidden(fleet):
    ctl = fleet.controller(node_ttl=2)
    agent = fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    pid = agent.daemon.pid_of("app")
    agent.kill()  # SIGKILL: no goodbye, heartbeats just stop
    status = wait_status(ctl, lambda s: len(s.nodes) == 1 and not s.nodes[0].node.up, timeout=10,
                         what="web-1 shown down after its lease expired")
    node = status.nodes[0].node
    assert node.name == "web-1" and not node.reachable and node.error
    assert node.state_as_of > 0 and node.last_heartbeat > 0
    assert pid_alive(pid), "a dead agent's child keeps running (it is its own process)"
    os.kill(pid, signal.SIGKILL)


def test_agent_restart_is_followed_again(fleet):
    ctl = fleet.controller()
    agent = fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    old = ctl.node("web-1").started_at
    agent.stop()
    wait_status(ctl, lambda s: not s.nodes[0].node.reachable, what="web-1 unreachable")
    agent.start()
    wait_status(ctl, lambda s: s.nodes[0].node.reachable and s.nodes[0].node.started_at != old
                and states(s).get("web-1:app") == "RUNNING", what="web-1 followed after its restart")


def test_agent_registers_once_a_controller_appears(fleet, tmp_path):
    port = free_port()
    agent = fleet.agent("web-1", f"127.0.0.1:{port}")
    agent.daemon.wait_line(r"cannot reach any controller")
    assert agent.daemon.proc.poll() is None
    ctl = fleet.controller(port=port)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING", timeout=40,
                what="web-1 registered after the controller started")


def test_a_second_agent_with_the_same_node_name_is_refused(fleet, tmp_path):
    ctl = fleet.controller()
    first = fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    twin = Agent(tmp_path / "twin", "web-1", [ctl.address])
    fleet.agents.append(twin)
    twin.daemon.wait_line(r"node name web-1 is in use by the agent at 127\.0\.0\.1:%d" % first.grpc_port)
    assert ctl.node("web-1").address == first.address
