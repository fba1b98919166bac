"""wait_within: a deadline that never swallows a cancel (3.11's wait_for can)."""

from __future__ import annotations

import asyncio

import pytest

from fleetvisor.agent.timeouts import wait_within


def test_done_in_time_and_no_limit():
    async def scenario() -> None:
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        assert await wait_within(done, 60) is True
        event = asyncio.Event()
        event.set()
        assert await wait_within(event.wait(), None) is True

    asyncio.run(scenario())


def test_time_running_out_cancels_what_it_waited_for():
    async def scenario() -> None:
        never = asyncio.get_running_loop().create_future()
        assert await wait_within(never, 0) is False
        assert never.cancelled()

    asyncio.run(scenario())


def test_a_cancel_that_meets_completion_is_not_swallowed():
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        inner = loop.create_future()
        waiter = asyncio.create_task(wait_within(inner, 60))
        await asyncio.sleep(0)  # the waiter now awaits inner
        inner.set_result(None)  # completes and ...
        waiter.cancel()         # ... is cancelled in the same loop iteration
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(scenario())


def test_the_awaitables_own_timeout_error_is_not_taken_for_the_deadline():
    async def fails() -> None:
        raise TimeoutError("its own")

    async def scenario() -> None:
        with pytest.raises(TimeoutError, match="its own"):
            await wait_within(fails(), 60)

    asyncio.run(scenario())
