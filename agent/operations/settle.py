"""Waiting for processes to settle: one change subscription per call, however many
processes it acts on, woken by the core's change notifications, never by polling.

Ordering fact kept from supervisord 4.3, because supervisorctl prints results in the order
it gets them: results that are known at once come first, in process order; results that had
to wait come in the order they settled, ties in process order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ..faults import Fault, FaultError
from ..states import STOPPED_STATES, ProcessState
from ..timeouts import wait_within
from .results import ProcessResult

if TYPE_CHECKING:
    from ..process import Process
    from ..supervisor import Supervisor


# supervisord logs "waiting for x to stop" this often while a client waits for a stop.
STOP_REPORT_INTERVAL = 2.0
# supervisord's re-check period for group operations; see _settle.
RESULT_GRID = 0.05


class _Wait:
    """A process operation that was begun and must settle before its answer is known."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc

    def settled(self) -> bool:
        raise NotImplementedError

    def outcome(self) -> None:
        """Called once settled: returns on success, raises FaultError on failure."""

    def report(self, core: Supervisor) -> bool:
        """Log progress while waiting; True if it wants to be called again later."""
        return False


class _StartWait(_Wait):
    def __init__(self, proc: Process, namespec: str) -> None:
        super().__init__(proc)
        self.namespec = namespec

    def settled(self) -> bool:
        lifecycle = self.proc.lifecycle
        return bool(lifecycle.spawnerr) or (self.proc.state != ProcessState.STARTING and not lifecycle.waiting)

    def outcome(self) -> None:
        if self.proc.lifecycle.spawnerr:
            raise FaultError(Fault.SPAWN_ERROR, self.namespec)
        if self.proc.state != ProcessState.RUNNING:
            raise FaultError(Fault.ABNORMAL_TERMINATION, self.namespec)


class _StopWait(_Wait):
    def settled(self) -> bool:
        return self.proc.state in STOPPED_STATES

    def report(self, core: Supervisor) -> bool:
        lifecycle = self.proc.lifecycle
        if self.proc.state != ProcessState.STOPPING:
            return False
        now = time.time()
        if now > lifecycle.laststopreport + STOP_REPORT_INTERVAL:
            core.log.info(f"waiting for {self.proc.name} to stop")
            lifecycle.laststopreport = now
        return True


class _Watch:
    """A call's one subscription to the core's changes, made when it first has to wait. It
    settles one batch of operations at a time (a restart settles its stops, then its starts)."""

    def __init__(self, core: Supervisor) -> None:
        self.core = core
        self.pending: dict[Process, tuple[int, _Wait]] = {}
        self.changed: set[Process] = set()
        self.wake = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    def listen(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.core.subscribe(self._on_change)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_change(self, change: object) -> None:
        proc = getattr(change, "process", None)
        if proc in self.pending:
            self.changed.add(proc)
            self.wake.set()


@contextlib.contextmanager
def _watching(core: Supervisor) -> Iterator[_Watch]:
    watch = _Watch(core)
    try:
        yield watch
    finally:
        watch.close()


async def _settle(watch: _Watch, waits: list[_Wait]) -> list[tuple[_Wait, FaultError | None]]:
    """Wait until every operation settled; (operation, failure or None) in settling order.

    Only processes that changed are looked at again, so stopping a thousand processes costs
    a thousand checks, not a million.

    supervisord re-checks waiting operations every RESULT_GRID seconds and lists those it
    finds settled in process order, so processes that stop together are reported in process
    order, a slow one after them. Results are ordered the same way here, by the grid slot
    they settled in and then by process order; nothing waits for the grid, it only sorts.
    """
    if not waits:
        return []
    core = watch.core
    watch.listen()
    loop = asyncio.get_running_loop()
    began = loop.time()
    pending = watch.pending = {wait.proc: (index, wait) for index, wait in enumerate(waits)}
    changed = watch.changed = set(pending)
    settled: list[tuple[int, int, _Wait, FaultError | None]] = []
    while True:
        slot = math.ceil((loop.time() - began) / RESULT_GRID)
        for proc in sorted(changed, key=lambda p: pending[p][0]):
            index, wait = pending[proc]
            if not wait.settled():
                continue
            del pending[proc]
            try:
                wait.outcome()
            except FaultError as exc:
                settled.append((slot, index, wait, exc))
            else:
                settled.append((slot, index, wait, None))
        changed.clear()
        if not pending:
            break
        reporting = [wait.report(core) for _, wait in pending.values()]
        watch.wake.clear()
        await wait_within(watch.wake.wait(), STOP_REPORT_INTERVAL if any(reporting) else None)
    settled.sort(key=lambda item: item[:2])
    return [(wait, failure) for _, _, wait, failure in settled]


def _result(proc: Process, failure: FaultError | None) -> ProcessResult:
    if failure is None:
        return ProcessResult(proc.name, proc.group.name, Fault.SUCCESS, "OK", proc.state)
    return ProcessResult(proc.name, proc.group.name, failure.code, failure.text, proc.state)


async def _for_each(watch: _Watch, procs: Iterable[Process], wanted: Callable[[Process], bool],
                    begin: Callable[[Process], _Wait | None]) -> list[ProcessResult]:
    """Begin an operation on every wanted process, then wait for those that must settle.
    Results in supervisord's order: those known at once, then the others as they settled."""
    results: list[ProcessResult] = []
    waits: list[_Wait] = []
    for proc in procs:
        if not wanted(proc):
            continue
        try:
            wait = begin(proc)
        except FaultError as exc:
            results.append(_result(proc, exc))
            continue
        if wait is None:
            results.append(_result(proc, None))
        else:
            waits.append(wait)
    results.extend(_result(wait.proc, failure) for wait, failure in await _settle(watch, waits))
    return results


async def _each(core: Supervisor, procs: Iterable[Process], wanted: Callable[[Process], bool],
                begin: Callable[[Process], _Wait | None]) -> list[ProcessResult]:
    with _watching(core) as watch:
        return await _for_each(watch, procs, wanted, begin)


async def _settle_one(core: Supervisor, pending: _Wait | None) -> None:
    """Wait for one process's operation; raises its failure."""
    if pending is None:
        return
    with _watching(core) as watch:
        [(_, failure)] = await _settle(watch, [pending])
    if failure is not None:
        raise failure


def _everything(proc: Process) -> bool:
    return True

