"""Waiting with a deadline without losing a cancellation.

On Python 3.11, `asyncio.wait_for` can swallow a cancel that arrives while its awaitable is
completing, so a task told to stop carries on. `asyncio.timeout` does not; the controller
uses it for the same reason, and every wait with a deadline in the agent goes through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def wait_within(awaitable: Awaitable[object], timeout: float | None) -> bool:
    """Await `awaitable` for at most `timeout` seconds (None: no limit); False if the time
    ran out first (the awaitable is then cancelled). A cancel of the caller propagates."""
    if timeout is None:
        await awaitable
        return True
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await awaitable
    except TimeoutError:
        if not deadline.expired():
            raise  # the awaitable's own TimeoutError, not our deadline
        return False
    return True
