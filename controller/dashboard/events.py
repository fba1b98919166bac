"""Server-sent events: the fleet's live state as small diffs, an operation's progress, a log tail.

The status stream is driven as WatchStatus is: the Fleet's change counter (membership, desired
and live state), coalesced to at most one message per COALESCE seconds, with a resend at
least every PERIOD (heartbeat ages). What is sent is what changed since the last message:
a node's facts, a process's row (keyed NODE:GROUP:NAME), or a removal, so a flapping process
costs one small row, not the page. Uptimes are not sent each second: the page counts them
from `start`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleetvisor.v1 import controller_pb2 as pb

from .calls import to_json

COALESCE = 0.25  # seconds: at most four status messages a second
PERIOD = 5.0     # and one at least this often, for heartbeat ages
PING = 15.0      # a comment line this often keeps proxies from closing an idle stream
MAX_STREAMS_PER_IDENTITY = 8
TAIL_MAX_SECONDS = 600.0
TAIL_MAX_BYTES = 1 << 20

NODE_FIELDS = ("name", "address", "labels", "agent_version", "up", "reachable", "applied_revision",
               "desired_revision", "error", "started_at", "edited_by_hand", "foreign", "local_revision", "pinned",
               "pinned_by")
PROC_FIELDS = ("group", "name", "namespec", "statename", "pid", "start", "stop", "exitstatus", "spawnerr", "health",
               "health_message")


def node_row(n: pb.NodeInfo) -> dict[str, Any]:
    row = {k: v for k, v in to_json(n).items() if k in NODE_FIELDS}
    row["drift"] = bool(n.desired_revision) and n.desired_revision != n.applied_revision
    return row


def process_row(node: str, p: Any) -> dict[str, Any]:
    row = {k: v for k, v in to_json(p).items() if k in PROC_FIELDS}
    row["node"] = node
    # a RUNNING description is its uptime, which changes every second: the page counts it
    row["description"] = "" if p.statename == "RUNNING" else p.description
    return row


@dataclass
class Model:
    """The rows of one status, keyed as the page keys them."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    procs: dict[str, dict[str, Any]] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)
    stale: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, status: pb.FleetStatus, summary: pb.FleetSummary) -> Model:
        """The rows of `status`, and `summary`: the controller's own (controller/summary.py, as
        `fleetctl status` shows it), asked for with the same identity and checks."""
        model = cls(stale=to_json(status.stale) if status.HasField("stale") else None, summary=to_json(summary))
        for entry in status.nodes:
            name = entry.node.name
            model.nodes[name] = node_row(entry.node)
            model.heartbeats[name] = entry.node.last_heartbeat
            for p in entry.processes:
                model.procs[f"{name}:{p.group}:{p.name}"] = process_row(name, p)
        return model


def diff(old: Model | None, new: Model) -> dict[str, Any]:
    """What the page must change to show `new` after `old` (everything when `old` is None)."""
    before = old or Model()
    out: dict[str, Any] = {"full": old is None}
    nodes = {k: v for k, v in new.nodes.items() if before.nodes.get(k) != v}
    procs = {k: v for k, v in new.procs.items() if before.procs.get(k) != v}
    gone_nodes = sorted(before.nodes.keys() - new.nodes.keys())
    gone_procs = sorted(before.procs.keys() - new.procs.keys())
    if nodes:
        out["nodes"] = nodes
    if procs:
        out["procs"] = procs
    if gone_nodes:
        out["gone_nodes"] = gone_nodes
    if gone_procs:
        out["gone_procs"] = gone_procs
    if old is None or new.stale != before.stale:
        out["stale"] = new.stale
    if old is None or new.summary != before.summary:
        out["summary"] = new.summary
    return out


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
