"""Fleet-wide start/stop/restart/signal: every matching node in parallel, each with a deadline.

Which processes a node gets is decided from the controller's live cache, so a glob over nodes
(`*:worker`) skips nodes without a `worker`. A node the controller cannot reach, or that does
not answer in time, is reported in its own result while the others proceed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .errors import InvalidArgument, NotFound
from .fleet import Fleet
from .processes import AgentCallFailed, ProcessResult, ProcessView
from .records import MemberRecord

ACTIONS = ("start", "stop", "restart", "signal")


@dataclass(frozen=True)
class Command:
    action: str  # one of ACTIONS
    patterns: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    signal: str = ""  # for "signal"
    wait: bool = False
    node_timeout: float = 0.0  # 0: the controller's default


@dataclass(frozen=True)
class NodeResult:
    node: str
    ok: bool  # the call reached the node and every process result is ok
    error: str = ""  # why the node could not be driven
    results: list[ProcessResult] = field(default_factory=list)
    seconds: float = 0.0


class Outcome(Protocol):
    """A node's outcome as the core or the wire has it."""

    @property
    def node(self) -> str: ...
    @property
    def ok(self) -> bool: ...


def summary(nodes: Sequence[Outcome]) -> str:
    """A command's result in one line, for the audit log."""
    failed = [n.node for n in nodes if not n.ok]
    return (f"{len(nodes) - len(failed)} of {len(nodes)} nodes ok"
            + (f"; failed: {', '.join(failed)}" if failed else ""))


Check = Callable[[list[tuple[MemberRecord, Sequence[ProcessView]]]], None]


async def control(fleet: Fleet, command: Command, *, default_timeout: float,
                  concurrency: int = 64, check: Check | None = None) -> list[NodeResult]:
    """`check` sees every (node, processes) the command would reach before any is called, and
    may raise to stop it."""
    if command.action not in ACTIONS:
        given = "no action given" if command.action == "unspecified" else f"no such action: {command.action}"
        raise InvalidArgument(f"{given} (start, stop, restart or signal)")
    if command.action == "signal" and not command.signal:
        raise InvalidArgument("no signal given")
    if not command.patterns:
        raise NotFound("no process names given (use 'all' for every process)")
    picked = fleet.views.pick(command.patterns, command.labels)
    timeout = command.node_timeout or default_timeout
    slots = asyncio.Semaphore(concurrency)

    async def one(name: str, names: list[str]) -> NodeResult:
        began = time.monotonic()
        link = fleet.links.get(name)
        if link is None or not link.reachable:
            return NodeResult(node=name, ok=False, error=link.error if link else "unreachable (no address known)")
        try:
            async with slots:
                results = await link.command(command.action, names, timeout=timeout, wait=command.wait,
                                             signal=command.signal, cluster_id=fleet.cluster_id)
        except AgentCallFailed as exc:
            return NodeResult(node=name, ok=False, error=str(exc), seconds=time.monotonic() - began)
        return NodeResult(node=name, ok=all(r.ok for r in results), results=results,
                          seconds=time.monotonic() - began)

    targets = []
    for member, procs in picked:
        link = fleet.links.get(member.name)
        if link is not None and link.reachable and not procs:
            continue  # the node is live and nothing of it matches
        targets.append((member, procs))
    if not targets:
        raise NotFound("nothing matches: " + " ".join(command.patterns))
    if check is not None:
        check(targets)
    return list(await asyncio.gather(*(one(m.name, [p.namespec for p in procs]) for m, procs in targets)))
