"""Mirror: load, live updates, resume after etcd restarts, reload after compaction or rewind."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from fleetvisor.controller.election import Election
from fleetvisor.controller.etcd import EtcdError, EtcdSettings, connect
from fleetvisor.controller.mirror import Change, Mirror

from tests.support import eventually, run

from .etcd_harness import EtcdServer

P = "/fleetvisor/t/"


async def _stored(client, prefix: str = P) -> dict[str, bytes]:
    """What etcd really holds under the prefix, relative keys."""
    return {kv.key[len(prefix):].decode(): kv.value for kv in await client.get_prefix(prefix.encode())}


class Recorder:
    def __init__(self, mirror: Mirror) -> None:
        self.batches: list[list[Change]] = []
        mirror.subscribe(self.batches.append)

    @property
    def changes(self) -> list[Change]:
        return [c for batch in self.batches for c in batch]


def test_mirror_loads_then_follows_puts_deletes_and_transactions(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        await client.put(f"{P}nodes/a".encode(), b"A")
        await client.put(f"{P}nodes/b".encode(), b"B")
        await client.put(f"{P}configs/x".encode(), b"X")
        await client.put(b"/fleetvisor/other/nodes/z", b"not ours")
        mirror = Mirror(client, P)
        rec = Recorder(mirror)
        try:
            await mirror.start()
            assert mirror.connected
            assert mirror.items() == {"configs/x": b"X", "nodes/a": b"A", "nodes/b": b"B"}
            assert mirror.items("nodes/") == {"nodes/a": b"A", "nodes/b": b"B"}
            assert mirror.get("nodes/a") == b"A" and mirror.get("nodes/zz") is None
            assert rec.batches == []  # the initial load is read with items(), not replayed

            nodes, configs = mirror.generation("nodes"), mirror.generation("configs")
            put = await client.put(f"{P}nodes/c".encode(), b"C")
            await mirror.wait_revision(put.header.revision, timeout=5)
            assert mirror.get("nodes/c") == b"C"  # a writer reads its own write
            assert mirror.revision == put.header.revision
            assert mirror.generation("nodes") != nodes, "a change under nodes/ moves its generation"
            assert mirror.generation("configs") == configs, "and no other folder's"

            deleted = await client.delete(f"{P}nodes/a".encode())
            await mirror.wait_revision(deleted.header.revision, timeout=5)
            assert mirror.get("nodes/a") is None and "nodes/a" not in mirror.items("nodes/")

            t = client.transactions
            await client.transaction(compare=[], success=[t.put(f"{P}nodes/d".encode(), b"D"),
                                                          t.put(f"{P}nodes/b".encode(), b"B2"),
                                                          t.delete(f"{P}configs/x".encode())], failure=[])
            await eventually(lambda: mirror.get("nodes/d") == b"D", 5, "the transaction")
            txn_batch = rec.batches[-1]
            assert [(c.key, c.value) for c in txn_batch] == [("nodes/d", b"D"), ("nodes/b", b"B2"),
                                                              ("configs/x", None)]
            assert len({c.revision for c in txn_batch}) == 1  # one transaction, one batch, one revision
            assert [c.key for c in rec.changes] == ["nodes/c", "nodes/a", "nodes/d", "nodes/b", "configs/x"]
            assert mirror.items() == await _stored(client)
            assert mirror.reloads == 0
            with pytest.raises(TimeoutError):
                await mirror.wait_revision(mirror.revision + 100, timeout=0.05)
        finally:
            await mirror.close()
            await client.close()
    run(body())


def test_start_fails_with_one_clear_line_when_etcd_is_down(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint], timeout=2))
        etcd.kill()
        try:
            # the reason is gRPC's ("Connection refused", "Socket closed", ...), on the same line
            with pytest.raises(EtcdError, match=f"^cannot read {P} from etcd: [^\n]+$"):
                await Mirror(client, P).start()
            with pytest.raises(EtcdError, match="^cannot campaign for /x/leader in etcd: [^\n]+$"):
                await Election(client, "/x/leader", b"me", 1).start()
        finally:
            await client.close()
    run(body())


def test_mirror_unsubscribe_and_failing_subscriber(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        mirror = Mirror(client, P)
        seen: list[Change] = []

        def broken(changes):
            raise RuntimeError("subscriber bug")
        mirror.subscribe(broken)
        unsubscribe = mirror.subscribe(seen.extend)
        try:
            await mirror.start()
            rev = (await client.put(f"{P}a".encode(), b"1")).header.revision
            await mirror.wait_revision(rev, 5)
            unsubscribe()
            rev = (await client.put(f"{P}b".encode(), b"2")).header.revision
            await mirror.wait_revision(rev, 5)  # a broken subscriber does not stop the mirror
            assert [c.key for c in seen] == ["a"]
        finally:
            await mirror.close()
            await client.close()
    run(body())


def test_mirror_resumes_after_etcd_restart_without_loss_or_duplicates(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        mirror = Mirror(client, P)
        rec = Recorder(mirror)
        try:
            await mirror.start()
            for i in range(3):
                rev = (await client.put(f"{P}before/{i}".encode(), b"x")).header.revision
            await mirror.wait_revision(rev, 5)

            etcd.kill()
            await eventually(lambda: not mirror.connected, 5, "the mirror to notice etcd is gone")
            # Back up, and written to while this loop is blocked: the mirror cannot have
            # re-established its watch yet, so these arrive through the resumed watch.
            etcd.start()
            for i in range(3):
                etcd.put(f"{P}down/{i}".encode(), b"y")
            etcd.delete(f"{P}before/0".encode())
            assert not mirror.connected

            await eventually(lambda: mirror.connected, 10, "the mirror to reconnect")
            for i in range(3):
                rev = (await client.put(f"{P}after/{i}".encode(), b"z")).header.revision
            await mirror.wait_revision(rev, 10)

            keys = [(c.key, c.value) for c in rec.changes]
            assert keys == ([(f"before/{i}", b"x") for i in range(3)] + [(f"down/{i}", b"y") for i in range(3)]
                            + [("before/0", None)] + [(f"after/{i}", b"z") for i in range(3)])
            revisions = [c.revision for c in rec.changes]
            assert revisions == sorted(set(revisions))  # strictly increasing: nothing twice
            assert mirror.items() == await _stored(client)
            assert mirror.reloads == 0
        finally:
            await mirror.close()
            await client.close()
    run(body())


def test_mirror_survives_a_graceful_restart_and_a_long_outage(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        mirror = Mirror(client, P)
        try:
            await mirror.start()
            etcd.stop()
            await eventually(lambda: not mirror.connected, 5, "the mirror to notice etcd is gone")
            await asyncio.sleep(0.8)  # the outage itself: several failed retries (0.1, 0.2, 0.4 s)
            etcd.start()
            etcd.put(f"{P}k".encode(), b"v")
            await eventually(lambda: mirror.get("k") == b"v", 10, "the write made during the outage")
            assert mirror.connected and mirror.reloads == 0
        finally:
            await mirror.close()
            await client.close()
    run(body())


def test_mirror_reloads_after_compaction_and_reports_the_difference(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        for key in ("keep", "change", "drop"):
            await client.put(f"{P}{key}".encode(), b"1")
        mirror = Mirror(client, P)
        rec = Recorder(mirror)
        try:
            await mirror.start()
            loaded = mirror.generation("keep")
            etcd.restart()
            # While the mirror is cut off: changes, then compaction removes their history.
            etcd.put(f"{P}change".encode(), b"2")
            etcd.delete(f"{P}drop".encode())
            etcd.put(f"{P}new".encode(), b"3")
            etcd.put(b"/elsewhere", b"noise")
            compacted = etcd.compact()

            await eventually(lambda: mirror.reloads == 1 and mirror.connected, 10, "the mirror to reload")
            assert mirror.items() == {"keep": b"1", "change": b"2", "new": b"3"}
            assert mirror.revision >= compacted
            assert sorted((c.key, c.value) for c in rec.changes) == [("change", b"2"), ("drop", None),
                                                                     ("new", b"3")]
            assert all(c.revision == mirror.revision for c in rec.changes)
            assert mirror.generation("keep") != loaded, "a reload moves every folder's generation"

            rev = (await client.put(f"{P}later".encode(), b"4")).header.revision
            await mirror.wait_revision(rev, 5)  # and it keeps following afterwards
            assert mirror.items() == await _stored(client)
        finally:
            await mirror.close()
            await client.close()
    run(body())


def test_mirror_reloads_when_etcd_comes_back_with_older_data(etcd: EtcdServer) -> None:
    """etcd restored from an older backup (here: wiped) would accept a watch from our future
    revision and silently skip to it; the mirror must notice and reload instead."""
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        mirror = Mirror(client, P)
        rec = Recorder(mirror)
        try:
            await mirror.start()
            for i in range(5):
                rev = (await client.put(f"{P}old/{i}".encode(), b"x")).header.revision
            await mirror.wait_revision(rev, 5)
            etcd.kill()
            shutil.rmtree(etcd.data_dir)
            etcd.start()
            etcd.put(f"{P}fresh".encode(), b"y")

            await eventually(lambda: mirror.reloads == 1 and mirror.connected, 10, "the mirror to reload")
            assert mirror.items() == {"fresh": b"y"}
            assert {(c.key, c.value) for c in rec.changes[5:]} == (
                {(f"old/{i}", None) for i in range(5)} | {("fresh", b"y")})
        finally:
            await mirror.close()
            await client.close()
    run(body())
