"""The leader compacts etcd's history (found missing by the soak test: the db grew with every
operation step): to the mirror's revision minus the retention, never twice, tolerant of a
compaction done by someone else, and the mirror keeps following afterwards."""

from __future__ import annotations

import aetcd
import pytest

from fleetvisor.controller.compaction import CompactionPolicy, Compactor
from fleetvisor.controller.etcd import EtcdSettings, connect
from fleetvisor.controller.main import parse_args
from fleetvisor.controller.mirror import Mirror

from tests.support import run

from .etcd_harness import EtcdServer

P = "/fleetvisor/t/"


async def _compacted_to_at_least(client, revision: int) -> bool:
    """etcd refuses to compact to a revision at or below its compact revision."""
    try:
        await client.compact(revision)
    except aetcd.exceptions.ClientError as exc:
        return "required revision has been compacted" in str(exc)
    return False


def test_compactor_keeps_the_retention_and_the_mirror_follows_afterwards(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        mirror = Mirror(client, P)
        try:
            await mirror.start()
            for i in range(20):
                put = await client.put(f"{P}ops/op-1".encode(), str(i).encode())
            await mirror.wait_revision(put.header.revision, timeout=5)
            compactor = Compactor(client, mirror, CompactionPolicy(interval=1, retention=5))
            target = await compactor.compact_once()
            assert target == put.header.revision - 5 and compactor.compacted == target
            assert await compactor.compact_once() is None  # nothing new since
            assert await _compacted_to_at_least(client, target)

            # someone else compacted further: not an error, and the next one goes on from there
            for i in range(10):
                put = await client.put(f"{P}ops/op-1".encode(), f"b{i}".encode())
            await client.compact(put.header.revision - 1)
            await mirror.wait_revision(put.header.revision, timeout=5)
            assert await compactor.compact_once() is None
            assert compactor.compacted == put.header.revision - 5

            put = await client.put(f"{P}ops/op-2".encode(), b"after")
            await mirror.wait_revision(put.header.revision, timeout=5)
            assert mirror.get("ops/op-2") == b"after" and mirror.get("ops/op-1") == b"b9"
        finally:
            await mirror.close()
            await client.close()
    run(body())


def test_compaction_can_be_left_to_etcd(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        mirror = Mirror(client, P)
        try:
            await mirror.start()
            compactor = Compactor(client, mirror, CompactionPolicy(interval=0))
            assert not compactor.policy.enabled
            await compactor.run()  # returns at once
        finally:
            await mirror.close()
            await client.close()
    run(body(), timeout=5)


@pytest.mark.slow
def test_the_leader_compacts_periodically(fleet) -> None:
    ctl = fleet.controller("ctl-1", extra=("--compact-interval", "1", "--compact-retention", "1"))
    ctl.wait_line("compacted etcd history up to revision", timeout=20)


@pytest.mark.parametrize("flags", [["--compact-interval", "-1"], ["--compact-retention", "0"]])
def test_bad_compaction_flags_are_one_line(flags, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(flags)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].endswith("--compact-interval must be 0 or more seconds and --compact-retention at "
                                         "least 1 revision")
