"""Start, stop, signal and restart: supervisord's single/group/all calls and the
multi-target calls over explicit processes.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..caller import Caller
from ..faults import Fault, FaultError
from ..lifecycle import SpawnError
from ..process import CommandNotFound, resolve_command
from ..states import RUNNING_STATES, SIGNALLABLE_STATES, STOPPED_STATES, ProcessState
from .names import _by_priority, _lookup, _processes_by_priority, _spec, ensure_running
from .results import Outcome, ProcessResult
from .settle import _each, _everything, _for_each, _settle_one, _StartWait, _StopWait, _Wait, _watching

if TYPE_CHECKING:
    from ..process import Process
    from ..supervisor import ProcessGroup, Supervisor


# -- start -------------------------------------------------------------------------------------

def _begin_start(proc: Process, namespec: str, wait: bool) -> _Wait | None:
    try:
        resolve_command(proc.config)
    except CommandNotFound as exc:
        raise FaultError(Fault.NO_FILE, exc) from None
    except SpawnError as exc:
        raise FaultError(Fault.NOT_EXECUTABLE, exc) from None
    if proc.state in RUNNING_STATES:
        raise FaultError(Fault.ALREADY_STARTED, namespec)
    if proc.state == ProcessState.UNKNOWN:
        raise FaultError(Fault.FAILED, f"{namespec} is in an unknown process state")
    proc.start()
    if proc.lifecycle.spawnerr:
        raise FaultError(Fault.SPAWN_ERROR, namespec)
    if wait and proc.state != ProcessState.RUNNING:
        return _StartWait(proc, namespec)
    return None


def _starter(wait: bool) -> Callable[[Process], _Wait | None]:
    return lambda proc: _begin_start(proc, _spec(proc), wait)


async def _named(core: Supervisor, namespec: str, one: Callable[[Process, str], _Wait | None],
                 group_call: Callable[[str], Awaitable[list[ProcessResult]]]) -> Outcome:
    """A supervisord call on a name: one process (its failure raises), or with `group:*`
    the group call's results."""
    ensure_running(core)
    group, proc = _lookup(core, namespec)
    if proc is None:
        return Outcome(True, tuple(await group_call(group.name)))
    await _settle_one(core, one(proc, namespec))
    return Outcome(False)


async def start(core: Supervisor, caller: Caller, namespec: str, wait: bool = True) -> Outcome:
    """startProcess: one process, or every process of `group:*` that is not running."""
    return await _named(core, namespec, lambda proc, spec: _begin_start(proc, spec, wait),
                        lambda group: start_group(core, caller, group, wait))


async def start_group(core: Supervisor, caller: Caller, name: str,
                      wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    return await _each(core, _by_priority(_group(core, name)), _not_running, _starter(wait))


async def start_all(core: Supervisor, caller: Caller, wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    return await _each(core, _processes_by_priority(core), _not_running, _starter(wait))


def _not_running(proc: Process) -> bool:
    return proc.state not in RUNNING_STATES


def _group(core: Supervisor, name: str) -> ProcessGroup:
    group = core.groups.get(name)
    if group is None:
        raise FaultError(Fault.BAD_NAME, name)
    return group


# -- stop --------------------------------------------------------------------------------------

def _begin_stop(proc: Process, namespec: str, wait: bool) -> _Wait | None:
    if proc.state not in RUNNING_STATES:
        if proc.lifecycle.waiting and proc.cancel_start():  # its start waited for dependencies
            return None
        raise FaultError(Fault.NOT_RUNNING, namespec)
    msg = proc.stop()
    if msg is not None:
        raise FaultError(Fault.FAILED, msg)
    if wait and proc.state not in STOPPED_STATES:
        return _StopWait(proc)
    return None


def _stopper(wait: bool) -> Callable[[Process], _Wait | None]:
    return lambda proc: _begin_stop(proc, _spec(proc), wait)


async def stop(core: Supervisor, caller: Caller, namespec: str, wait: bool = True) -> Outcome:
    """stopProcess: one process, or every running process of `group:*`."""
    return await _named(core, namespec, lambda proc, spec: _begin_stop(proc, spec, wait),
                        lambda group: stop_group(core, caller, group, wait))


async def stop_group(core: Supervisor, caller: Caller, name: str,
                     wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    return await _stop_in_waves(core, _by_priority(_group(core, name)), wait)


async def stop_all(core: Supervisor, caller: Caller, wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    return await _stop_in_waves(core, _processes_by_priority(core), wait)


async def _stop_in_waves(core: Supervisor, procs: list[Process], wait: bool) -> list[ProcessResult]:
    """Stop `procs` in priority order, but each only after those of them that depend on it
    (depends_on) have stopped: one wave at a time. Without dependencies, one wave."""
    remaining = [p for p in procs if _is_running(p)]
    results: list[ProcessResult] = []
    with _watching(core) as watch:
        while remaining:
            left = set(remaining)
            wave = {p for p in remaining if not any(d in left and d is not p for d in core.dependents(p))} or left
            last = wave == left  # the others wait for this wave to have stopped, whatever `wait` says
            results += await _for_each(watch, [p for p in remaining if p in wave], _everything,
                                       _stopper(wait or not last))
            remaining = [p for p in remaining if p not in wave]
    return results


def _is_running(proc: Process) -> bool:
    """What a stop acts on: a running process, or one whose start waits for its dependencies."""
    return proc.state in RUNNING_STATES or bool(proc.lifecycle.waiting)


# -- signal ------------------------------------------------------------------------------------

_SIGNUMS = frozenset({0, *(int(s) for s in _signal.Signals)})


def signal_number(value: object) -> int:
    """A signal given as a number or a name ('HUP', 'sighup', 'SIGHUP'), as supervisord
    accepts it; ValueError if it is neither."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        if not isinstance(value, str):
            raise ValueError(f"value {value!r} is not a valid signal name") from None
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        member = _signal.Signals.__members__.get(name)
        if member is None:
            raise ValueError(f"value {value!r} is not a valid signal name") from None
        number = int(member)
    if number not in _SIGNUMS:
        raise ValueError(f"value {value!r} is not a valid signal number")
    return number


def _send_signal(proc: Process, namespec: str, sig: object) -> None:
    try:
        number = signal_number(sig)
    except ValueError:
        raise FaultError(Fault.BAD_SIGNAL, sig) from None
    if proc.state not in SIGNALLABLE_STATES:
        raise FaultError(Fault.NOT_RUNNING, namespec)
    msg = proc.signal(number)
    if msg is not None:
        raise FaultError(Fault.FAILED, msg)


def _signaller(sig: object) -> Callable[[Process], None]:
    return lambda proc: _send_signal(proc, _spec(proc), sig)


async def signal(core: Supervisor, caller: Caller, namespec: str, sig: object) -> Outcome:
    """signalProcess: one process, or every signallable process of `group:*`."""
    return await _named(core, namespec, lambda proc, spec: _send_signal(proc, spec, sig),
                        lambda group: signal_group(core, caller, group, sig))


def _signallable(proc: Process) -> bool:
    return proc.state in SIGNALLABLE_STATES


async def signal_group(core: Supervisor, caller: Caller, name: str,
                       sig: object) -> list[ProcessResult]:
    group = core.groups.get(name)
    ensure_running(core)
    if group is None:
        raise FaultError(Fault.BAD_NAME, name)
    results = await _each(core, _by_priority(group), _signallable, _signaller(sig))
    ensure_running(core)
    return results


async def signal_all(core: Supervisor, caller: Caller, sig: object) -> list[ProcessResult]:
    # supervisord signals first and only then checks whether it is shutting down.
    results = await _each(core, _processes_by_priority(core), _signallable, _signaller(sig))
    ensure_running(core)
    return results


# -- several named processes -------------------------------------------------------------------

def _in_order(procs: Sequence[Process], results: Iterable[ProcessResult]) -> list[ProcessResult]:
    by_name = {(r.group, r.name): r for r in results}
    return [by_name[(p.group.name, p.name)] for p in procs]


async def start_processes(core: Supervisor, caller: Caller, procs: Sequence[Process],
                          wait: bool = True) -> list[ProcessResult]:
    """Start each target (from `resolve`); a result per target, in target order."""
    ensure_running(core)
    return _in_order(procs, await _each(core, procs, _everything, _starter(wait)))


async def stop_processes(core: Supervisor, caller: Caller, procs: Sequence[Process],
                         wait: bool = True) -> list[ProcessResult]:
    """Stop each target; a result per target, in target order."""
    ensure_running(core)
    return _in_order(procs, await _each(core, procs, _everything, _stopper(wait)))


async def restart_processes(core: Supervisor, caller: Caller, procs: Sequence[Process],
                            wait: bool = True) -> list[ProcessResult]:
    """Restart each target: stop it, wait until it has stopped, then start it. This is what
    restart means on every face; supervisorctl's restart is the same two XML-RPC calls.

    Every target is stopped before any is started, and starts go in target (priority)
    order, as a stop all then a start all would. A target that is not running is just
    started; one that is stopping is waited for first. `wait` is for the starts: the stops
    are always waited for. A result per target, in target order: its stop's failure if the
    stop failed (it is then not started), else its start's outcome.
    """
    ensure_running(core)
    with _watching(core) as watch:
        stops = await _for_each(watch, procs, _stoppable, _begin_restart_stop)
        failed = {(r.group, r.name): r for r in stops if not r.ok}
        ensure_running(core)  # shutting down meanwhile: nothing is started again
        starts = await _for_each(watch, [p for p in procs if (p.group.name, p.name) not in failed],
                                 _everything, _starter(wait))
    return _in_order(procs, [*starts, *failed.values()])


def _stoppable(proc: Process) -> bool:
    return proc.state in RUNNING_STATES or proc.state == ProcessState.STOPPING


def _begin_restart_stop(proc: Process) -> _Wait | None:
    if proc.state == ProcessState.STOPPING:
        return _StopWait(proc)
    return _begin_stop(proc, _spec(proc), True)


async def signal_processes(core: Supervisor, caller: Caller, procs: Sequence[Process],
                           sig: object) -> list[ProcessResult]:
    """Signal each target; a result per target, in target order. A signal that is no
    signal is refused (BAD_SIGNAL) before any is sent."""
    ensure_running(core)
    try:
        number = signal_number(sig)
    except ValueError as exc:
        raise FaultError(Fault.BAD_SIGNAL, exc) from None
    return _in_order(procs, await _each(core, procs, _everything, _signaller(number)))

