"""Helpers every kind of test shares: free ports, waiting for a condition, process liveness,
and one event loop for async test bodies.

Tests wait for a condition with a generous deadline; nothing here sleeps and hopes, and no
test asserts how fast something happened (speed targets live in benchmarks/).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def tried_in_order(node: str, controllers: list[str]) -> list[str]:
    """The `controllers=` list that makes agent `node` try `controllers` in this order: an agent
    starts at a place of the list chosen by its name (agent/heartbeat.py `home`)."""
    from fleetvisor.agent.heartbeat import home  # only the tests that start agents need it
    start = home(node, len(controllers))
    return [controllers[(i - start) % len(controllers)] for i in range(len(controllers))]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rounds(timeout: float, what: str) -> Iterator[None]:
    """One round per check until `timeout` seconds are over, then the failure."""
    deadline = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.02) -> T:
    """Check `condition` every `interval` until it is truthy and return its value; fail after
    `timeout` seconds."""
    for _ in _rounds(timeout, what):
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError("unreachable")


async def eventually(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition",
                     interval: float = 0.01) -> T:
    """`wait_for` inside an event loop: the loop keeps running between the checks."""
    for _ in _rounds(timeout, what):
        if value := condition():
            return value
        await asyncio.sleep(interval)
    raise AssertionError("unreachable")


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process; a zombie is dead for our purposes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process, alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


_loop: asyncio.AbstractEventLoop | None = None


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run one async test body, failing rather than hanging past `timeout`.

    All bodies share one event loop: grpc.aio binds its completion queue to every loop it
    has seen, and events for calls of an already closed loop (a cancelled watch finishing
    late) make it drop the rest of a batch, which shows up as rare, slow, flaky tests.
    """
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro
    try:
        return _loop.run_until_complete(bounded())
    finally:
        leftovers = [t for t in asyncio.all_tasks(_loop) if not t.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            _loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
