"""Following a log: growth, rotation, truncation, replacement; woken by inotify, or by the
slow timer where inotify is unavailable."""

from __future__ import annotations

import asyncio
import os

import pytest

from fleetvisor.agent import logfollow
from fleetvisor.agent.inotify import Watcher
from fleetvisor.agent.logfollow import TRUNCATED, follow

TIMEOUT = 5.0


async def collect(chunks, until: bytes, got: bytearray) -> None:
    while until not in got:
        got += await asyncio.wait_for(anext(chunks), TIMEOUT)


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_starts_with_the_last_bytes_and_follows(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"0123456789")

    async def scenario():
        chunks = follow(str(path), head=4)
        got = bytearray()
        await collect(chunks, b"6789", got)
        with open(path, "ab") as f:
            f.write(b"more\n")
        await collect(chunks, b"more\n", got)
        await chunks.aclose()
        assert bytes(got) == b"6789more\n"

    run(scenario)


def test_small_file_is_sent_whole(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"abc")

    async def scenario():
        chunks = follow(str(path), head=1024)
        assert await asyncio.wait_for(anext(chunks), TIMEOUT) == b"abc"
        await chunks.aclose()

    run(scenario)


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"first\n")

    async def scenario():
        chunks = follow(str(path), head=100)
        got = bytearray()
        await collect(chunks, b"first\n", got)
        waiting = asyncio.ensure_future(collect(chunks, b"new\n", got))
        with open(path, "ab") as f:
            f.write(b"last words\n")
        os.rename(path, tmp_path / "x.log.1")
        path.write_bytes(b"new\n")
        await waiting
        await chunks.aclose()
        assert bytes(got) == b"first\nlast words\nnew\n"

    run(scenario)


def test_truncation_is_announced(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"before\n")

    async def scenario():
        chunks = follow(str(path), head=100)
        got = bytearray()
        await collect(chunks, b"before\n", got)
        os.truncate(path, 0)
        await collect(chunks, TRUNCATED, got)
        with open(path, "ab") as f:
            f.write(b"after\n")
        await collect(chunks, b"after\n", got)
        await chunks.aclose()
        assert bytes(got) == b"before\n" + TRUNCATED + b"after\n"

    run(scenario)


def test_a_removed_file_is_waited_for(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"a\n")

    async def scenario():
        chunks = follow(str(path), head=10)
        got = bytearray()
        await collect(chunks, b"a\n", got)
        os.remove(path)
        waiting = asyncio.ensure_future(collect(chunks, b"b\n", got))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        path.write_bytes(b"b\n")
        await waiting
        await chunks.aclose()

    run(scenario)


def test_without_inotify_a_timer_wakes_the_follower(tmp_path, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OSError("no inotify here")

    monkeypatch.setattr(Watcher, "watch", unavailable)
    monkeypatch.setattr(logfollow, "POLL_INTERVAL", 0.02)
    path = tmp_path / "x.log"
    path.write_bytes(b"")

    async def scenario():
        chunks = follow(str(path), head=0)
        got = bytearray()
        waiting = asyncio.ensure_future(collect(chunks, b"late\n", got))
        await asyncio.sleep(0.05)
        with open(path, "ab") as f:
            f.write(b"late\n")
        await waiting
        await chunks.aclose()

    run(scenario)


@pytest.mark.skipif(not Watcher.available(), reason="no inotify")
def test_watcher_calls_back_per_file_and_closes_when_idle(tmp_path):
    async def scenario():
        watcher = Watcher.for_loop()
        a, b = asyncio.Event(), asyncio.Event()
        cancel_a = watcher.watch(str(tmp_path / "a"), a.set)
        cancel_b = watcher.watch(str(tmp_path / "b"), b.set)
        (tmp_path / "a").write_bytes(b"x")
        await asyncio.wait_for(a.wait(), TIMEOUT)
        assert not b.is_set()
        cancel_a()
        cancel_b()
        assert watcher._fd == -1  # the descriptor goes with the last watch

    run(scenario)
