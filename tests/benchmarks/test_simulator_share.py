"""The simulator's quick mode with three controllers: 200 virtual nodes against three real
controllers on a real etcd. Each controller follows a share of the agents (about a third; every
node by exactly one, as the virtual agents themselves count their WatchEvents streams), every
controller answers status for the whole fleet, and after one controller is SIGKILLed the
survivors take its nodes over within the node TTL, their status current again. Then one that
hangs (SIGSTOP: its connections stay open and silent, its lease expires) is taken over too, and
takes its share back when it runs again."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from benchmarks.simulator.child import SimulatorProcess
from fleetvisor.controller.assignment import owner
from fleetvisor.v1 import controller_pb2 as pb
from tests.controller.etcd_harness import EtcdServer
from tests.controller.fleet_harness import Controller
from tests.support import wait_for

from .test_simulator import RUNNING, node, procs, push_everywhere

NODES = 200
NODE_TTL = 6
LEADER_TTL = 3  # also how long a dead controller's share stays its own


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[list[Controller], SimulatorProcess]]:
    etcd = EtcdServer(tmp_path)
    etcd.start()
    controllers: list[Controller] = []
    sim = None
    try:
        for name in ("ctl-1", "ctl-2", "ctl-3"):
            controllers.append(Controller(tmp_path, etcd.endpoint, name=name, node_ttl=NODE_TTL,
                                          leader_ttl=LEADER_TTL))
        sim = SimulatorProcess(NODES, [c.address for c in controllers], tmp_path / "report.json", procs=2, seed=3)
        yield controllers, sim
    finally:
        if sim is not None:
            sim.stop()
        for ctl in controllers:
            ctl.stop()
        etcd.kill()


def everyone_live(status: pb.FleetStatus, running: int = RUNNING) -> bool:
    return len(status.nodes) == NODES and all(
        n.node.up and n.node.reachable and sum(p.statename == "RUNNING" for p in n.processes) == running
        for n in status.nodes)


def status_of(ctl: Controller, *patterns: str) -> pb.FleetStatus | None:
    try:
        return ctl.status(*patterns)
    except grpc.RpcError:
        return None


def leader_info(ctl: Controller) -> pb.LeaderInfo:
    return ctl.stub.GetLeader(pb.GetLeaderRequest(), timeout=5)


def streams(sim: SimulatorProcess) -> dict[str, int]:
    """Open WatchEvents streams per virtual node, as the virtual agents count them."""
    seen = len(sim.lines)
    sim.say("streams")
    counts: dict[str, int] = {}

    def answered() -> bool:
        counts.clear()
        replies = [line.split(": ", 1)[1] for line in sim.lines[seen:] if '{"streams"' in line]
        for reply in replies:
            counts.update(json.loads(reply)["streams"])
        return len(replies) == 2  # --procs 2
    wait_for(answered, 10, "the simulator's workers to count their streams")
    return counts


def followed_once(sim: SimulatorProcess) -> bool:
    counts = streams(sim)
    return len(counts) == NODES and set(counts.values()) == {1}


def seen_after(check: Callable[[], bool], began: float, timeout: float, what: str) -> float:
    """Seconds from `began` until `check` holds."""
    wait_for(check, timeout, what, interval=0.01)
    return time.monotonic() - began


def flapped(ctl: Controller, name: str, pid: int) -> Callable[[], bool]:
    def check() -> bool:
        status = status_of(ctl, f"{name}:nginx")
        return (status is not None and procs(status, name)["nginx"].pid != pid) or (
            status is not None and procs(status, name)["nginx"].statename != "RUNNING")
    return check


@pytest.mark.timeout(300)
def test_three_controllers_share_the_fleet_and_take_over_a_dead_ones_share(shared):
    controllers, sim = shared
    ids = [c.name for c in controllers]

    # every controller shows the whole fleet live
    for ctl in controllers:
        wait_for(lambda ctl=ctl: (s := status_of(ctl)) is not None and everyone_live(s), 120,
                 f"{ctl.name} to show {NODES} virtual nodes live")

    # each follows about a third, together every node, each node by exactly one controller
    def shares_settled() -> bool:
        infos = [leader_info(c) for c in controllers]
        return sum(i.followed_nodes for i in infos) == NODES and all(
            len(i.controllers) == 3 and all(s.connected for s in i.controllers) for i in infos)
    wait_for(shares_settled, 30, "the three shares to add up to the fleet")
    infos = {c.name: leader_info(c) for c in controllers}
    followed = {name: info.followed_nodes for name, info in infos.items()}
    assert all(NODES / 3 * 0.6 < count < NODES / 3 * 1.4 for count in followed.values()), followed
    for info in infos.values():  # every controller assigns the same shares, which are what each follows
        assert {s.id: s.nodes for s in info.controllers} == followed
    wait_for(lambda: followed_once(sim), 20, "every virtual node to have exactly one state stream")

    # a state change on a node another controller follows shows in ctl-1's status within a second
    first = controllers[0]
    name = next(f"sim-{i:04d}" for i in range(1, NODES + 1) if owner(f"sim-{i:04d}", ids) != first.name)
    follower = next(c for c in controllers if c.name == owner(name, ids))
    pid = procs(first.status(name), name)["nginx"].pid
    began = time.monotonic()
    sim.say(f"flap {name} nginx")
    at_owner = seen_after(flapped(follower, name, pid), began, 10, f"{follower.name} to see {name}'s nginx flap")
    through_peer = seen_after(flapped(first, name, pid), began, 10, f"{first.name} to see {name}'s nginx flap")
    print(f"flap of {name} seen by its follower after {at_owner:.3f}s, through it by {first.name} after "
          f"{through_peer:.3f}s")
    assert through_peer < 1.0, through_peer

    # the leader drives nodes other controllers follow: a restart, and a config pushed to every node
    leader = wait_for(lambda: next((c for c in controllers if c.is_leader()), None), 10, "a leader")
    name = next(f"sim-{i:04d}" for i in range(1, NODES + 1) if owner(f"sim-{i:04d}", ids) != leader.name)
    before = {k: p.pid for k, p in procs(leader.status(name), name).items() if k.startswith("app:")}
    answer = leader.stub.Control(pb.ControlRequest(action=pb.RESTART, patterns=[f"{name}:app:*"], wait=True),
                                 timeout=30)
    assert [n.ok for n in answer.nodes] == [True], answer
    wait_for(lambda: all(p.pid != before[k] and p.statename == "RUNNING" for k, p in procs(
        leader.status(name), name).items() if k in before), 10, f"{name}'s app restarted, as the leader shows it")
    push_everywhere(leader, NODES)
    for ctl in controllers:
        wait_for(lambda ctl=ctl: (s := status_of(ctl)) is not None and len(s.nodes) == NODES and all(
            procs(s, n.node.name).get("pushed") is not None and procs(s, n.node.name)["pushed"].statename == "RUNNING"
            for n in s.nodes), 30, f"{ctl.name} to show the pushed program running everywhere")

    # SIGKILL one controller that does not lead (agents spread their heartbeats over the list by name:
    # those that heartbeated to it go on to the next)
    victim = next(c for c in reversed(controllers[1:]) if not c.is_leader())
    survivors = [c for c in controllers if c is not victim]
    orphans = sorted(n for n in (f"sim-{i:04d}" for i in range(1, NODES + 1)) if owner(n, ids) == victim.name)
    victim.kill()
    killed = time.monotonic()

    # its port refuses connections, so the survivors follow its nodes at once (its lease would expire
    # within --leader-ttl); meanwhile its nodes are shown not current, saying why, never as fresh
    def stale_or_taken(s: pb.FleetStatus) -> bool:
        return all((not node(s, n).node.reachable and victim.name in node(s, n).node.error)
                   or node(s, n).node.reachable for n in orphans)
    assert stale_or_taken(survivors[0].status())

    # within the node TTL the survivors follow everything, and their status is live again
    def taken_over() -> bool:
        infos = [leader_info(c) for c in survivors]
        return sum(i.followed_nodes for i in infos) == NODES and all(
            (s := status_of(c)) is not None and everyone_live(s, RUNNING + 1) for c in survivors)
    took = seen_after(taken_over, killed, NODE_TTL, f"the survivors to take over {victim.name}'s nodes")
    print(f"{len(orphans)} nodes of {victim.name} taken over {took:.2f}s after SIGKILL (node TTL {NODE_TTL}s, "
          f"controller TTL {LEADER_TTL}s); shares before: {followed}")
    dead = next(s for s in leader_info(survivors[0]).controllers if s.id == victim.name)
    assert dead.nodes == 0 and not dead.connected, dead
    # and its registration goes when its lease expires
    wait_for(lambda: all({s.id for s in leader_info(c).controllers} == {c.name for c in survivors} for c in survivors),
             NODE_TTL, f"{victim.name}'s registration to expire")
    wait_for(lambda: followed_once(sim), 10, "every virtual node to have exactly one state stream again")

    # a state change on a taken-over node is current in both survivors' status
    taken = orphans[0]
    pid = procs(survivors[0].status(taken), taken)["nginx"].pid
    began = time.monotonic()
    sim.say(f"flap {taken} nginx")
    for ctl in survivors:
        seen = seen_after(flapped(ctl, taken, pid), began, 10, f"{ctl.name} to see {taken}'s nginx flap")
        assert seen < 1.0, (ctl.name, seen)

    # a controller that hangs: the last one takes over within the node TTL; it comes back and rejoins
    alive, hung = survivors[0], survivors[1]
    os.kill(hung.proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        took = seen_after(lambda: leader_info(alive).followed_nodes == NODES and (
            s := status_of(alive)) is not None and everyone_live(s, RUNNING + 1), stopped, NODE_TTL,
            f"{alive.name} to take over {hung.name}'s nodes")
        print(f"{hung.name} hung (SIGSTOP): {alive.name} follows all {NODES} after {took:.2f}s")
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)

    def rejoined() -> bool:
        infos = [leader_info(c) for c in survivors]
        return infos[1].followed_nodes > 0 and sum(i.followed_nodes for i in infos) == NODES and all(
            (s := status_of(c)) is not None and everyone_live(s, RUNNING + 1) for c in survivors)
    back = seen_after(rejoined, time.monotonic(), 30, f"{hung.name} to take its share back")
    print(f"{hung.name} running again: its share back after {back:.2f}s")
    wait_for(lambda: followed_once(sim), 10, "every virtual node to have exactly one state stream after the rejoin")
