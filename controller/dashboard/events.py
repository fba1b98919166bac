"""Server-sent events: the fleet's live state as small diffs, an operation's progress, a log tail.

The status stream is driven as WatchStatus is: the Fleet's change counter (membership, desired
and live state), coalesced to at most one message per COALESCE seconds, with a resend at
least every PERIOD (heartbeat ages). What is sent is what changed since the last message
(rows.py): a node's facts, a process's row (keyed NODE:GROUP:NAME), or a removal, so a
flapping process costs one small row, not the page. Uptimes are not sent each second: the
page counts them from `start`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

COALESCE = 0.25  # seconds: at most four status messages a second
PERIOD = 5.0     # and one at least this often, for heartbeat ages
PING = 15.0      # a comment line this often keeps proxies from closing an idle stream
MAX_STREAMS_PER_IDENTITY = 8
TAIL_MAX_SECONDS = 600.0
TAIL_MAX_BYTES = 1 << 20


# -- the streams themselves -----------------------------------------------------------------------

class StreamLimit(Exception):
    """Too many open streams for one identity."""


@dataclass
class Streams:
    """Open streams per identity, bounded; `cancel_all` on shutdown."""

    per_identity: int = MAX_STREAMS_PER_IDENTITY
    open: Counter[str] = field(default_factory=Counter)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def enter(self, who: str) -> None:
        if self.open[who] >= self.per_identity:
            raise StreamLimit(f"{who} has {self.open[who]} live views open, the limit: close some tabs")
        self.open[who] += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)

    def leave(self, who: str) -> None:
        self.open[who] -= 1
        if self.open[who] <= 0:
            del self.open[who]
        task = asyncio.current_task()
        if task is not None:
            self.tasks.discard(task)

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()


async def sse(request: web.Request, events: AsyncIterator[tuple[str, Any]],
              on_error: Callable[[Exception], str | None]) -> web.StreamResponse:
    """Send `events` (name, JSON-able data) as text/event-stream until they end or the client goes.
    An exception `on_error` recognises ends the stream with an "error" event naming it."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    iterator = aiter(events)
    try:
        while True:
            try:
                async with asyncio.timeout(PING):
                    name, data = await anext(iterator)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            except StopAsyncIteration:
                break
            await response.write(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())
    except (ConnectionError, OSError):
        pass  # the page went away
    except Exception as exc:
        message = on_error(exc)
        if message is None:
            raise
        try:
            await response.write(f"event: error\ndata: {json.dumps({'error': message})}\n\n".encode())
        except (ConnectionError, OSError):
            pass
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return response
