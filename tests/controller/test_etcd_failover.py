"""A three-member etcd: when the member a controller talks to dies, it moves to another one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from fleetvisor.controller.election import Election
from fleetvisor.controller.etcd import EtcdSettings, connect
from fleetvisor.controller.mirror import Mirror

from tests.support import eventually, run, wait_for

from .etcd_harness import cluster
from .fleet_harness import Agent, Controller

P = "/fleetvisor/failover/"


@pytest.fixture
def members(tmp_path: Path):
    """A three-member etcd, killed at the end whatever happened (SIGKILL ends a stopped one too)."""
    started = cluster(tmp_path)
    try:
        yield started
    finally:
        for member in started:
            member.kill()


@contextlib.asynccontextmanager
async def followed(members, **settings):
    """A client on every member with a mirror and an election on it (it talks to the first
    member), and a writer on the last member; all closed at the end."""
    client = await connect(EtcdSettings([m.endpoint for m in members], **settings))
    writer = await connect(EtcdSettings([members[2].endpoint]))
    mirror = Mirror(client, P)
    election = Election(client, P + "leader", b"me", ttl=2)
    try:
        await mirror.start()
        await election.start()
        assert election.is_leader and client.endpoint == members[0].endpoint
        yield client, writer, mirror, election
    finally:
        await election.close()
        await mirror.close()
        await client.close()
        await writer.close()


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


def test_mirror_election_and_writes_move_to_a_live_member(members) -> None:
    async def body():
        async with followed(members) as (client, writer, mirror, election):
            members[0].kill()  # the member this controller talks to
            await put_retrying(writer, f"{P}after", b"1")  # the survivors may first elect a raft leader
            await eventually(lambda: mirror.get("after") == b"1", 20, "the mirror to follow on another member")
            assert client.endpoint != members[0].endpoint
            await eventually(lambda: election.is_leader, 20, "leadership kept (or regained) on another member")
            await put_retrying(client, f"{P}written", b"2")  # plain calls use the new member too
            assert (await writer.get(f"{P}written".encode())).value == b"2"
    run(body(), timeout=60)


def test_calls_in_flight_when_the_client_moves_are_not_cancelled(members) -> None:
    """Moving to another member must not cancel other tasks' calls on the old channel: grpc.aio
    reports such a call as asyncio.CancelledError, so a heartbeat being recorded, or a retry
    loop, would stop as if told to. Lease renewals run in a loop across several moves."""

    async def body():
        client = await connect(EtcdSettings([m.endpoint for m in members], timeout=2))
        lease = await client.lease(10)
        renewed = [0] * 8
        cancelled: list[int] = []

        async def renew(i: int) -> None:
            while True:
                try:
                    await client.refresh_lease(lease.id)
                    renewed[i] += 1
                except asyncio.CancelledError:
                    cancelled.append(i)
                    raise
                except Exception:
                    await asyncio.sleep(0.01)  # a call that failed on the way: the next one goes

        tasks = [asyncio.create_task(renew(i)) for i in range(len(renewed))]
        try:
            await eventually(lambda: all(renewed), 10, "every loop to renew")
            for _ in range(3):
                renewed[:] = [0] * len(renewed)
                client._failed_over_at = 0.0  # move now, not at most once a second
                await client.fail_over()
                await eventually(lambda: cancelled or all(renewed), 10, "every loop to renew after a move")
                assert not cancelled, f"loops {cancelled} were cancelled by the move"
            assert not cancelled and not any(t.done() for t in tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()
    run(body(), timeout=60)


def test_mirror_and_election_carry_on_when_their_streams_channel_is_retired(members) -> None:
    """The member under the mirror's and the election's streams freezes (no error, no answer),
    and the client moves on because of some other call. When the old channel is closed its
    open streams are cut off; their owners must resume on the new member, not end."""
    async def body():
        async with followed(members, timeout=2) as (client, writer, mirror, election):
            os.killpg(members[0].proc.pid, signal.SIGSTOP)  # frozen: its streams neither end nor answer
            client._failed_over_at = 0.0
            await client.fail_over()  # as a timed-out call's recover() would
            assert client.endpoint != members[0].endpoint
            await put_retrying(writer, f"{P}after-freeze", b"1")
            await eventually(lambda: mirror.get("after-freeze") == b"1", 30, "the mirror to follow on another member")
            await eventually(lambda: election.is_leader, 30, "leadership regained on another member")
            assert not mirror._task.done() and not election._task.done()
    run(body(), timeout=90)


# What must never reach a controller's log: asyncio's reports of tasks and async generators
# that were dropped instead of being closed, and tracebacks of any kind.
UNCLEAN = ("Task was destroyed", "Traceback", "aclose()", "never awaited", "Exception in callback",
           "exception was never retrieved", "Unclosed", "unclosed")


@pytest.mark.parametrize("loss", ["killed", "frozen"])
def test_controller_log_stays_clean_when_its_etcd_member_is_lost(tmp_path: Path, members, loss: str) -> None:
    """A controller process with an agent heartbeating to it: the member it talks to is killed
    (its connections fail at once) or frozen (they hang until timeouts). The controller moves
    on (watch, election, node leases), and neither then nor at its shutdown does asyncio report
    a pending task destroyed, an async generator's failed aclose() or any traceback."""
    ctl = agent = None
    try:
        ctl = Controller(tmp_path, ",".join(m.endpoint for m in members), name="ctl-1")
        wait_for(ctl.is_leader, 20, "the controller to lead")
        agent = Agent(tmp_path, "web-1", [ctl.address])
        wait_for(lambda: (node := ctl.node("web-1")) is not None and node.up, 20, "web-1 to register")

        killed_at = time.time()
        if loss == "killed":  # the member the controller talks to (first in its list)
            members[0].kill()
        else:
            os.killpg(members[0].proc.pid, signal.SIGSTOP)
        try:
            ctl.wait_line(f"etcd member {members[0].endpoint} is not answering; switching to", timeout=30)
            wait_for(ctl.is_leader, 30, "the controller to lead again on a live member")
            # heartbeats are recorded on the new member well past the node TTL (3 s): still up
            wait_for(lambda: (node := ctl.node("web-1")) is not None and node.up
                     and node.last_heartbeat > killed_at + 4, 30, "web-1 heartbeating through the new member")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ncontroller log:\n{ctl.log()}\nagent log:\n"
                                 f"{(tmp_path / 'web-1' / 'main.log').read_text(errors='replace')[-3000:]}") from None
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
