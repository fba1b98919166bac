"""Work a caller started is finished even when the caller goes away.

A gRPC handler is cancelled when its client disconnects or its deadline passes. A restart
cancelled between its stops and its starts would leave the programs stopped, and an apply
cancelled mid-way would leave a config half applied; so such work runs as its own task,
and the handler only waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()  # the loop keeps only weak references to tasks


async def carried_through(work: Awaitable[T]) -> T:
    """Run `work` to its end; a cancel of the caller stops the waiting, not the work."""
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    task.add_done_callback(_consume)
    return await asyncio.shield(task)


def _consume(task: asyncio.Task[Any]) -> None:
    # Nobody may be waiting any more: mark the outcome retrieved (the caller that is still
    # waiting gets it through the shield all the same).
    if not task.cancelled():
        task.exception()
