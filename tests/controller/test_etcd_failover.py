"""A three-member etcd: when the member a controller talks to dies, it moves to another one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fleetvisor.controller.election import Election
from fleetvisor.controller.etcd import EtcdSettings, connect
from fleetvisor.controller.mirror import Mirror

from tests.support import eventually, run

from .etcd_harness import cluster

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
