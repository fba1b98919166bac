"""A three-member etcd: when the member a controller talks to dies, it moves to another one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fleetvisor.controller.election import Election
from fleetvisor.controller.etcd import EtcdSettings, connect
from fleetvisor.controller.mirror import Mirror

from tests.support import eventually, run, wait_for

from .etcd_harness import cluster
from .fleet_harness import Agent, Controller

P = "/fleetvisor/failover/"


async def put_retrying(client, key: str, value: bytes) -> None:
    """A put that may meet the cluster between raft leaders: retried until a deadline."""
    failures = []

    async def attempt() -> bool:
        try:
            await client.put(key.encode(), value)
            return True
        except Exception as exc:  # etcd's "request timed out" while it elects
            failures.append(exc)
            return False
    for _ in range(50):
        if await attempt():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"put {key} kept failing: {failures[-1]}")


def test_mirror_election_and_writes_move_to_a_live_member(tmp_path: Path) -> None:
    members = cluster(tmp_path)

    async def body():
        client = await connect(EtcdSettings([m.endpoint for m in members]))
        writer = await connect(EtcdSettings([members[2].endpoint]))
        mirror = Mirror(client, P)
        election = Election(client, P + "leader", b"me", ttl=2)
        try:
            await mirror.start()
            await election.start()
            assert election.is_leader and client.endpoint == members[0].endpoint

            members[0].kill()  # the member this controller talks to
            await put_retrying(writer, f"{P}after", b"1")  # the survivors may first elect a raft leader
            await eventually(lambda: mirror.get("after") == b"1", 20, "the mirror to follow on another member")
            assert client.endpoint != members[0].endpoint
            await eventually(lambda: election.is_leader, 20, "leadership kept (or regained) on another member")
            await put_retrying(client, f"{P}written", b"2")  # plain calls use the new member too
            assert (await writer.get(f"{P}written".encode())).value == b"2"
        finally:
            await election.close()
            await mirror.close()
            await client.close()
            await writer.close()
    try:
        run(body(), timeout=60)
    finally:
        for member in members:
            member.kill()


# What must never reach a controller's log: asyncio's reports of tasks and async generators
# that were dropped instead of being closed, and tracebacks of any kind.
UNCLEAN = ("Task was destroyed", "Traceback", "aclose()", "never awaited", "Exception in callback",
           "exception was never retrieved", "Unclosed", "unclosed")


def test_controller_log_stays_clean_when_its_etcd_member_dies(tmp_path: Path) -> None:
    """A controller process with an agent heartbeating to it: the member it talks to is killed,
    it moves on (watch, election, leases), and neither then nor at its shutdown does asyncio
    report a pending task destroyed or an async generator's failed aclose()."""
    members = cluster(tmp_path)
    ctl = agent = None
    try:
        ctl = Controller(tmp_path, ",".join(m.endpoint for m in members), name="ctl-1")
        wait_for(ctl.is_leader, 20, "the controller to lead")
        agent = Agent(tmp_path, "web-1", [ctl.address])
        wait_for(lambda: (node := ctl.node("web-1")) is not None and node.up, 20, "web-1 to register")

        killed_at = time.time()
        members[0].kill()  # the member the controller talks to (first in its list)
        ctl.wait_line(f"etcd member {members[0].endpoint} is not answering; switching to", timeout=30)
        wait_for(ctl.is_leader, 30, "the controller to lead again on a live member")
        # heartbeats are recorded on the new member well past the node TTL (3 s): still up
        wait_for(lambda: (node := ctl.node("web-1")) is not None and node.up
                 and node.last_heartbeat > killed_at + 4, 30, "web-1 heartbeating through the new member")
        agent.stop()
        agent = None
        ctl.stop()
        assert ctl.proc.returncode == 0, ctl.log()
        wait_for(lambda: "shutting down" in ctl.log(), 10, "the controller's last lines")
        log = ctl.log()
        dirty = [line for line in log.splitlines() if any(sign in line for sign in UNCLEAN)]
        assert not dirty, log
    finally:
        if agent is not None:
            agent.kill()
        if ctl is not None:
            ctl.kill()
        for member in members:
            member.kill()
