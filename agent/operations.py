"""What a client may ask of the core, decided once for every face.

XML-RPC, gRPC, the web page, /logtail and the heartbeat are thin translations of these
functions: none of them looks processes up, fans out over processes or restarts on its own.
Every call takes the `Caller` that asks (where authorization will attach), raises
`FaultError` with supervisord's codes and texts, and returns typed values that each face
converts to its wire shape. Waits ("start and hold the answer until the process is RUNNING")
are woken by the core's change notifications, never by polling: one subscription per call,
however many processes it acts on.

Two families of process calls:

- supervisord's (`start`, `stop_group`, `signal_all`, ...): a name that may be a group, the
  group/all forms acting only on processes they apply to, results in supervisord's order;
- the multi-target calls (`resolve`, then `start_processes`, `stop_processes`,
  `restart_processes`, `signal_processes`): explicit targets, one result per target in
  target order, every target reported (a stop of a stopped process is a NOT_RUNNING result).

Ordering facts kept from supervisord 4.3, because supervisorctl prints results in the order
it gets them:

- group/all operations act on processes by priority (groups by priority, then processes);
- results that are known at once come first, in that order; results that had to wait come
  in the order they settled, ties in process order;
- getAllProcessInfo lists groups and processes by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import math
import os
import pwd
import signal as _signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .caller import Caller
from .config.errors import ConfigError
from .config.model import AUTO, GroupConfig, ProcessConfig
from .faults import Fault, FaultError
from .lifecycle import SpawnError
from .logfiles import LogReadError, read_log, tail_log
from .process import CommandNotFound, resolve_command
from .states import RUNNING_STATES, SIGNALLABLE_STATES, STOPPED_STATES, ProcessState, SupervisorState
from .timeouts import wait_within

if TYPE_CHECKING:
    from .fleetconfig import FleetConfig
    from .process import Process
    from .supervisor import ProcessGroup, Supervisor

AGENT_VERSION = "0.1.0"
API_VERSION = "3.0"
SUPERVISOR_VERSION = "4.3.0"  # the supervisord the agent stands in for (-v, getSupervisorVersion)
# supervisord logs "waiting for x to stop" this often while a client waits for a stop.
STOP_REPORT_INTERVAL = 2.0
# supervisord's re-check period for group operations; see _settle.
RESULT_GRID = 0.05
# XML-RPC's i4: supervisord caps times to it.
_MAXINT = 2**31 - 1
_MININT = -(2**31)


# -- values ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessResult:
    """The outcome for one process of an operation on several."""

    name: str
    group: str
    status: Fault
    description: str
    state: ProcessState  # the process's state when its outcome was known

    @property
    def ok(self) -> bool:
        return self.status == Fault.SUCCESS

    @property
    def namespec(self) -> str:
        return make_namespec(self.group, self.name)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "group": self.group, "status": int(self.status),
                "description": self.description}


@dataclass(frozen=True)
class Outcome:
    """What `start`, `stop` and `signal` did with a name. A name of one process either
    succeeded (no results) or raised; a group name (`g:*`) gives a result per process."""

    group: bool
    results: tuple[ProcessResult, ...] = ()


@dataclass(frozen=True)
class AgentInfo:
    """The agent's description of itself, as GetInfo, the heartbeat and the page show it."""

    node: str
    labels: Mapping[str, str]
    identifier: str
    pid: int
    state: SupervisorState
    started_at: float
    now: float
    applied_revision: str = ""   # "" without a fleet config or before the first revision
    edited_by_hand: bool = False
    agent_version: str = AGENT_VERSION
    supervisor_version: str = SUPERVISOR_VERSION
    api_version: str = API_VERSION

    @property
    def uptime(self) -> float:
        return self.now - self.started_at


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    group: str
    start: int
    stop: int
    now: int
    state: ProcessState
    spawnerr: str
    exitstatus: int
    stdout_logfile: str
    stderr_logfile: str
    pid: int
    description: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "group": self.group, "start": self.start, "stop": self.stop,
                "now": self.now, "state": int(self.state), "statename": self.state.name,
                "spawnerr": self.spawnerr, "exitstatus": self.exitstatus,
                "logfile": self.stdout_logfile,  # the pre-3.0 name, still sent
                "stdout_logfile": self.stdout_logfile, "stderr_logfile": self.stderr_logfile,
                "pid": self.pid, "description": self.description}


# -- names -------------------------------------------------------------------------------------

def make_namespec(group: str, name: str) -> str:
    """`name` when a process is alone in its same-named group, else `group:name`."""
    return name if group == name else f"{group}:{name}"


def split_namespec(namespec: str) -> tuple[str, str | None]:
    """(group, process); process is None for `group:*` and `group:`."""
    group, colon, name = namespec.partition(":")
    if not colon:
        return namespec, namespec
    return group, (None if name in ("", "*") else name)


def ensure_running(core: Supervisor) -> None:
    """Most calls are refused once the daemon is shutting down or restarting."""
    if core.mood < SupervisorState.RUNNING:
        raise FaultError(Fault.SHUTDOWN_STATE)


def _lookup(core: Supervisor, namespec: str) -> tuple[ProcessGroup, Process | None]:
    group_name, name = split_namespec(namespec)
    group = core.groups.get(group_name)
    if group is None:
        raise FaultError(Fault.BAD_NAME, namespec)
    if name is None:
        return group, None
    proc = group.processes.get(name)
    if proc is None:
        raise FaultError(Fault.BAD_NAME, namespec)
    return group, proc


def _lookup_process(core: Supervisor, namespec: str) -> Process:
    proc = _lookup(core, namespec)[1]
    if proc is None:
        raise FaultError(Fault.BAD_NAME, namespec)
    return proc


def find_process(core: Supervisor, caller: Caller, namespec: str) -> Process:
    """The one process `name` or `group:name` names; BAD_NAME for anything else (`g:*` too)."""
    return _lookup_process(core, namespec)


def resolve(core: Supervisor, caller: Caller, names: Iterable[str]) -> list[Process]:
    """The processes that names name (`name`, `group:name`, `group:*`, `all` for every one),
    each once, in priority order. Every name is checked before anything is returned: one
    unknown name is a BAD_NAME for the whole request, so nothing is half done."""
    names = list(names)
    ordered = _processes_by_priority(core)
    if "all" in names:
        return ordered
    chosen: set[Process] = set()
    for spec in names:
        group, proc = _lookup(core, spec)
        chosen.update([proc] if proc is not None else group.processes.values())
    return [p for p in ordered if p in chosen]


def _processes_by_priority(core: Supervisor) -> list[Process]:
    return [p for g in core.ordered_groups() for p in _by_priority(g)]


def _by_priority(group: ProcessGroup) -> list[Process]:
    return sorted(group.processes.values(), key=lambda p: p.config.priority)


def _spec(proc: Process) -> str:
    return make_namespec(proc.group.name, proc.name)


# -- waiting -----------------------------------------------------------------------------------

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
        return bool(self.proc.lifecycle.spawnerr) or self.proc.state != ProcessState.STARTING

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
    return await _each(core, _by_priority(_group(core, name)), _is_running, _stopper(wait))


async def stop_all(core: Supervisor, caller: Caller, wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    return await _each(core, _processes_by_priority(core), _is_running, _stopper(wait))


def _is_running(proc: Process) -> bool:
    return proc.state in RUNNING_STATES


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


# -- information -------------------------------------------------------------------------------

def _capped(value: float) -> int:
    return max(_MININT, min(_MAXINT, int(value)))


def describe(state: ProcessState, *, start: int, stop: int, now: int, pid: int, spawnerr: str,
             name: str) -> str:
    """The status text supervisorctl shows next to the state name."""
    if state == ProcessState.RUNNING:
        started = datetime.datetime(*time.gmtime(start)[:6])
        current = datetime.datetime(*time.gmtime(now)[:6])
        uptime = max(current - started, datetime.timedelta(0))  # the clock may go back
        return f"pid {pid}, uptime {uptime}"
    if state in (ProcessState.FATAL, ProcessState.BACKOFF):
        return spawnerr or f'unknown error (try "tail {name}")'
    if state in (ProcessState.STOPPED, ProcessState.EXITED):
        if not start:
            return "Not started"
        return datetime.datetime(*time.localtime(stop)[:6]).strftime("%b %d %I:%M %p")
    return ""


def process_info(proc: Process, now: float | None = None) -> ProcessInfo:
    lifecycle = proc.lifecycle
    start, stop_ = _capped(lifecycle.laststart), _capped(lifecycle.laststop)
    current = _capped(time.time() if now is None else now)
    spawnerr = lifecycle.spawnerr or ""
    return ProcessInfo(
        name=proc.name, group=proc.group.name, start=start, stop=stop_, now=current,
        state=proc.state, spawnerr=spawnerr, exitstatus=lifecycle.exitstatus or 0,
        stdout_logfile=proc.stdout_logfile or "", stderr_logfile=proc.stderr_logfile or "",
        pid=proc.pid,
        description=describe(proc.state, start=start, stop=stop_, now=current, pid=proc.pid,
                             spawnerr=spawnerr, name=proc.name))


def get_process_info(core: Supervisor, caller: Caller, namespec: str) -> ProcessInfo:
    ensure_running(core)
    return process_info(_lookup_process(core, namespec))


def all_process_info(core: Supervisor, caller: Caller, *,
                     during_shutdown: bool = False) -> list[ProcessInfo]:
    """Every process, by group and process name; refused while the daemon shuts down or
    restarts unless `during_shutdown` (a status page still shows what is stopping)."""
    if not during_shutdown:
        ensure_running(core)
    now = time.time()
    return [process_info(group.processes[name], now)
            for group in sorted(core.groups.values(), key=lambda g: g.name)
            for name in sorted(group.processes)]


def agent_info(core: Supervisor, caller: Caller, fleet: FleetConfig | None = None) -> AgentInfo:
    """The agent's description of itself; the revision facts need the node's fleet config."""
    fv = core.config.fleetvisor
    applied = fleet.store.current() if fleet is not None else None
    return AgentInfo(
        node=fv.node if fv is not None else os.uname().nodename,
        labels=dict(fv.labels) if fv is not None else {},
        identifier=core.config.supervisord.identifier, pid=os.getpid(), state=core.mood,
        started_at=core.started_at, now=time.time(),
        applied_revision=applied.revision if applied is not None else "",
        edited_by_hand=fleet.edited_by_hand() if fleet is not None else False)


def _uid(user: str | None) -> int | None:
    if user is None:
        return None
    try:
        return pwd.getpwuid(int(user)).pw_uid if user.isdigit() else pwd.getpwnam(user).pw_uid
    except (KeyError, ValueError):
        return int(user) if user.isdigit() else None


def _config_value(value: object) -> object:
    # XML-RPC has no nil; supervisord sends these two words instead.
    if value is None:
        return "none"
    if value == AUTO:
        return "auto"
    return value


def all_config_info(core: Supervisor, caller: Caller) -> list[dict[str, object]]:
    """getAllConfigInfo: every process of the groups known from the last (re)read.

    Log paths are the running ones (AUTO resolved) when the running group was made from
    that very config, as supervisord shows them; otherwise as configured.
    """
    ensure_running(core)
    infos = []
    for gconfig in core.group_configs:
        group = core.groups.get(gconfig.name)
        running = group if group is not None and group.config is gconfig else None
        for pconfig in gconfig.processes:
            proc = running.processes.get(pconfig.name) if running is not None else None
            infos.append(_config_info(gconfig, pconfig, proc, inuse=group is not None))
    infos.sort(key=lambda info: str(info["name"]))
    return infos


def _config_info(gconfig: GroupConfig, p: ProcessConfig, proc: Process | None, *,
                 inuse: bool) -> dict[str, object]:
    stdout_logfile = p.stdout.logfile if proc is None else proc.stdout_logfile
    stderr_logfile = p.stderr.logfile if proc is None else proc.stderr_logfile
    serverurl = None if p.serverurl in (None, AUTO) else p.serverurl
    info: dict[str, object] = {
        "autostart": p.autostart, "directory": p.directory, "uid": _uid(p.user),
        "command": p.command, "exitcodes": list(p.exitcodes), "group": gconfig.name,
        "group_prio": gconfig.priority, "inuse": inuse, "killasgroup": p.killasgroup,
        "name": p.name, "process_prio": p.priority, "redirect_stderr": p.redirect_stderr,
        "startretries": p.startretries, "startsecs": p.startsecs,
        "stdout_capture_maxbytes": p.stdout.capture_maxbytes,
        "stdout_events_enabled": p.stdout.events_enabled, "stdout_logfile": stdout_logfile,
        "stdout_logfile_backups": p.stdout.backups, "stdout_logfile_maxbytes": p.stdout.maxbytes,
        "stdout_syslog": p.stdout.syslog, "stopsignal": int(p.stopsignal),
        "stopwaitsecs": p.stopwaitsecs, "stderr_capture_maxbytes": p.stderr.capture_maxbytes,
        "stderr_events_enabled": p.stderr.events_enabled, "stderr_logfile": stderr_logfile,
        "stderr_logfile_backups": p.stderr.backups, "stderr_logfile_maxbytes": p.stderr.maxbytes,
        "stderr_syslog": p.stderr.syslog, "serverurl": serverurl,
    }
    return {key: _config_value(value) for key, value in info.items()}


# -- config changes ----------------------------------------------------------------------------

def reread(core: Supervisor, caller: Caller) -> tuple[list[str], list[str], list[str]]:
    """reloadConfig: parse the file again; (added, changed, removed) group names."""
    ensure_running(core)
    try:
        return core.reread()
    except ConfigError as exc:
        raise FaultError(Fault.CANT_REREAD, exc) from None


def add_group(core: Supervisor, caller: Caller, name: str) -> bool:
    """addProcessGroup: make a group of the last reread live; it autostarts as at boot."""
    ensure_running(core)
    for config in core.group_configs:
        if config.name == name:
            if not core.add_group(config):
                raise FaultError(Fault.ALREADY_ADDED, name)
            for proc in core.groups[name].processes.values():
                proc.advance()
            return True
    raise FaultError(Fault.BAD_NAME, name)


def remove_group(core: Supervisor, caller: Caller, name: str) -> bool:
    ensure_running(core)
    if name not in core.groups:
        raise FaultError(Fault.BAD_NAME, name)
    if not core.remove_group(name):
        raise FaultError(Fault.STILL_RUNNING, name)
    return True


def restart_daemon(core: Supervisor, caller: Caller) -> bool:
    """Restart the daemon; a config file that no longer parses is refused, not obeyed."""
    ensure_running(core)
    if core.reloader is not None:
        try:
            core.reloader()
        except ConfigError as exc:
            raise FaultError(Fault.CANT_REREAD, exc) from None
    core.restart()
    return True


def shutdown(core: Supervisor, caller: Caller) -> bool:
    ensure_running(core)
    core.shutdown()
    return True


# -- logs --------------------------------------------------------------------------------------

def _read(path: str | None, offset: int, length: int) -> bytes:
    try:
        return read_log(path, offset, length)
    except LogReadError as exc:
        raise FaultError(Fault[exc.fault]) from None


def main_log_path(core: Supervisor, caller: Caller) -> str | None:
    """The main log's file; None when it goes nowhere but stdout."""
    return core.log.path


def read_main_log(core: Supervisor, caller: Caller, offset: int, length: int) -> bytes:
    ensure_running(core)
    path = main_log_path(core, caller)
    if path is None or not os.path.exists(path):
        raise FaultError(Fault.NO_FILE, path)
    return _read(path, offset, length)


def clear_main_log(core: Supervisor, caller: Caller) -> bool:
    ensure_running(core)
    path = core.log.path
    if path is None or not os.path.exists(path):
        raise FaultError(Fault.NO_FILE)
    try:
        os.remove(path)
    except OSError:
        raise FaultError(Fault.FAILED) from None
    # Like supervisord, this line goes to the file being removed (and to stdout with -n).
    core.log.info("reopening log file")
    try:
        core.log.reopen()
    except OSError:
        raise FaultError(Fault.FAILED) from None
    return True


LOG_CHANNELS = ("stdout", "stderr")


def log_path(core: Supervisor, caller: Caller, namespec: str, channel: str = "stdout", *,
             existing: bool = False) -> str | None:
    """The file a process's stdout or stderr log is written to; None if it has none.
    BAD_NAME for a name that is no process, BAD_ARGUMENTS for another channel; with
    `existing`, NO_FILE unless the file is there now."""
    proc = _lookup_process(core, namespec)
    if channel not in LOG_CHANNELS:
        raise FaultError(Fault.BAD_ARGUMENTS, f"no log channel {channel!r}")
    path = proc.stdout_logfile if channel == "stdout" else proc.stderr_logfile
    if existing and (path is None or not os.path.exists(path)):
        raise FaultError(Fault.NO_FILE, path)
    return path


def read_process_log(core: Supervisor, caller: Caller, namespec: str, channel: str, offset: int,
                     length: int) -> bytes:
    ensure_running(core)
    return _read(log_path(core, caller, namespec, channel, existing=True), offset, length)


def tail_process_log(core: Supervisor, caller: Caller, namespec: str, channel: str, offset: int,
                     length: int) -> tuple[bytes, int, bool]:
    ensure_running(core)
    return tail_log(log_path(core, caller, namespec, channel), offset, length)


def clear_process_logs(core: Supervisor, caller: Caller, namespec: str) -> bool:
    ensure_running(core)
    proc = _lookup_process(core, namespec)
    try:
        proc.clear_logs()
    except OSError:
        raise FaultError(Fault.FAILED, namespec) from None
    return True


async def clear_all_process_logs(core: Supervisor, caller: Caller) -> list[ProcessResult]:
    ensure_running(core)

    def clear(proc: Process) -> None:
        try:
            proc.clear_logs()
        except OSError:
            raise FaultError(Fault.FAILED, _spec(proc)) from None

    return await _each(core, _processes_by_priority(core), _everything, clear)


# -- input -------------------------------------------------------------------------------------

def send_stdin(core: Supervisor, caller: Caller, namespec: str, data: bytes) -> bool:
    ensure_running(core)
    proc = _lookup_process(core, namespec)
    if not proc.pid or proc.lifecycle.killing:
        raise FaultError(Fault.NOT_RUNNING, namespec)
    try:
        proc.write_stdin(data)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise FaultError(Fault.NO_FILE, namespec) from None
        raise
    return True


def send_remote_comm(core: Supervisor, caller: Caller, type_: str, data: str) -> bool:
    core.publish_remote_comm(type_, data)
    return True
