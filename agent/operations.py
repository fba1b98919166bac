"""What a client may ask of the core, decided once for every face.

XML-RPC (and later gRPC) are thin translations of these functions. They raise `FaultError`
with supervisord's codes and texts, and their waits ("start and hold the answer until the
process is RUNNING") are woken by the core's change notifications, never by polling.

Ordering facts kept from supervisord 4.3, because supervisorctl prints results in the order
it gets them:

- group/all operations act on processes by priority (groups by priority, then processes);
- results that are known at once come first, in that order; results that had to wait come
  in the order they settled, ties in process order;
- getAllProcessInfo lists groups and processes by name.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import math
import os
import pwd
import signal as _signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config.errors import ConfigError
from .config.model import AUTO, GroupConfig, ProcessConfig
from .faults import Fault, FaultError
from .logfiles import LogReadError, read_log, tail_log
from .lifecycle import SpawnError
from .process import CommandNotFound, resolve_command
from .states import (RUNNING_STATES, SIGNALLABLE_STATES, STOPPED_STATES, ProcessState,
                     SupervisorState)

if TYPE_CHECKING:
    from .process import Process
    from .supervisor import ProcessGroup, Supervisor

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
    """The outcome for one process of a group/all operation."""

    name: str
    group: str
    status: Fault
    description: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "group": self.group, "status": int(self.status),
                "description": self.description}


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


def lookup(core: Supervisor, namespec: str) -> tuple[ProcessGroup, Process | None]:
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


def lookup_process(core: Supervisor, namespec: str) -> Process:
    proc = lookup(core, namespec)[1]
    if proc is None:
        raise FaultError(Fault.BAD_NAME, namespec)
    return proc


def processes_by_priority(core: Supervisor) -> list[Process]:
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


async def _settle(core: Supervisor, waits: list[_Wait]) -> list[tuple[_Wait, FaultError | None]]:
    """Wait until every operation settled; (operation, failure or None) in settling order.

    Only processes that changed are looked at again, so stopping a thousand processes costs
    a thousand checks, not a million.

    supervisord re-checks waiting operations every RESULT_GRID seconds and lists those it
    finds settled in process order, so processes that stop together are reported in process
    order, a slow one after them. Results are ordered the same way here, by the grid slot
    they settled in and then by process order; nothing waits for the grid, it only sorts.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    pending = {wait.proc: (index, wait) for index, wait in enumerate(waits)}
    settled: list[tuple[int, int, _Wait, FaultError | None]] = []
    changed: set[Process] = set(pending)
    wake = asyncio.Event()

    def on_change(change: object) -> None:
        proc = getattr(change, "process", None)
        if proc in pending:
            changed.add(proc)
            wake.set()

    unsubscribe = core.subscribe(on_change)
    try:
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
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(),
                                       STOP_REPORT_INTERVAL if any(reporting) else None)
            except TimeoutError:
                pass
    finally:
        unsubscribe()
    settled.sort(key=lambda item: item[:2])
    return [(wait, failure) for _, _, wait, failure in settled]


async def _for_each(core: Supervisor, procs: Iterable[Process], wanted: Callable[[Process], bool],
                    begin: Callable[[Process], _Wait | None]) -> list[ProcessResult]:
    """Begin an operation on every wanted process, then wait for those that must settle."""
    results: list[ProcessResult] = []
    waits: list[_Wait] = []
    for proc in procs:
        if not wanted(proc):
            continue
        try:
            wait = begin(proc)
        except FaultError as exc:
            results.append(ProcessResult(proc.name, proc.group.name, exc.code, exc.text))
            continue
        if wait is None:
            results.append(ProcessResult(proc.name, proc.group.name, Fault.SUCCESS, "OK"))
        else:
            waits.append(wait)
    for wait, failure in await _settle(core, waits):
        proc = wait.proc
        if failure is None:
            results.append(ProcessResult(proc.name, proc.group.name, Fault.SUCCESS, "OK"))
        else:
            results.append(ProcessResult(proc.name, proc.group.name, failure.code, failure.text))
    return results


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


async def start(core: Supervisor, namespec: str, wait: bool = True) -> bool | list[ProcessResult]:
    """startProcess: True, or the group's results for `group:*`."""
    ensure_running(core)
    group, proc = lookup(core, namespec)
    if proc is None:
        return await start_group(core, group.name, wait)
    pending = _begin_start(proc, namespec, wait)
    if pending is not None:
        [(_, failure)] = await _settle(core, [pending])
        if failure is not None:
            raise failure
    return True


async def start_group(core: Supervisor, name: str, wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    group = _group(core, name)
    return await _for_each(core, _by_priority(group), _not_running,
                           lambda p: _begin_start(p, _spec(p), wait))


async def start_all(core: Supervisor, wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    return await _for_each(core, processes_by_priority(core), _not_running,
                           lambda p: _begin_start(p, _spec(p), wait))


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


async def stop(core: Supervisor, namespec: str, wait: bool = True) -> bool | list[ProcessResult]:
    """stopProcess: True, or the group's results for `group:*`."""
    ensure_running(core)
    group, proc = lookup(core, namespec)
    if proc is None:
        return await stop_group(core, group.name, wait)
    pending = _begin_stop(proc, namespec, wait)
    if pending is not None:
        await _settle(core, [pending])
    return True


async def stop_group(core: Supervisor, name: str, wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    group = _group(core, name)
    return await _for_each(core, _by_priority(group), _is_running,
                           lambda p: _begin_stop(p, _spec(p), wait))


async def stop_all(core: Supervisor, wait: bool = True) -> list[ProcessResult]:
    ensure_running(core)
    return await _for_each(core, processes_by_priority(core), _is_running,
                           lambda p: _begin_stop(p, _spec(p), wait))


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


async def signal(core: Supervisor, namespec: str, sig: object) -> bool | list[ProcessResult]:
    """signalProcess: True, or the group's results for `group:*`. Nothing to wait for."""
    ensure_running(core)
    group, proc = lookup(core, namespec)
    if proc is None:
        return await signal_group(core, group.name, sig)
    _send_signal(proc, namespec, sig)
    return True


def _signallable(proc: Process) -> bool:
    return proc.state in SIGNALLABLE_STATES


async def signal_group(core: Supervisor, name: str, sig: object) -> list[ProcessResult]:
    group = core.groups.get(name)
    ensure_running(core)
    if group is None:
        raise FaultError(Fault.BAD_NAME, name)
    results = await _for_each(core, _by_priority(group), _signallable,
                              lambda p: _send_signal(p, _spec(p), sig))
    ensure_running(core)
    return results


async def signal_all(core: Supervisor, sig: object) -> list[ProcessResult]:
    # supervisord signals first and only then checks whether it is shutting down.
    results = await _for_each(core, processes_by_priority(core), _signallable,
                              lambda p: _send_signal(p, _spec(p), sig))
    ensure_running(core)
    return results


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


def get_process_info(core: Supervisor, namespec: str) -> ProcessInfo:
    ensure_running(core)
    return process_info(lookup_process(core, namespec))


def all_process_info(core: Supervisor) -> list[ProcessInfo]:
    ensure_running(core)
    now = time.time()
    return [process_info(group.processes[name], now)
            for group in sorted(core.groups.values(), key=lambda g: g.name)
            for name in sorted(group.processes)]


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


def all_config_info(core: Supervisor) -> list[dict[str, object]]:
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

def reread(core: Supervisor) -> tuple[list[str], list[str], list[str]]:
    """reloadConfig: parse the file again; (added, changed, removed) group names."""
    ensure_running(core)
    try:
        return core.reread()
    except ConfigError as exc:
        raise FaultError(Fault.CANT_REREAD, exc) from None


def add_group(core: Supervisor, name: str) -> bool:
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


def remove_group(core: Supervisor, name: str) -> bool:
    ensure_running(core)
    if name not in core.groups:
        raise FaultError(Fault.BAD_NAME, name)
    if not core.remove_group(name):
        raise FaultError(Fault.STILL_RUNNING, name)
    return True


def restart(core: Supervisor) -> bool:
    """Restart the daemon; a config file that no longer parses is refused, not obeyed."""
    ensure_running(core)
    if core.reloader is not None:
        try:
            core.reloader()
        except ConfigError as exc:
            raise FaultError(Fault.CANT_REREAD, exc) from None
    core.restart()
    return True


def shutdown(core: Supervisor) -> bool:
    ensure_running(core)
    core.shutdown()
    return True


# -- logs --------------------------------------------------------------------------------------

def _read(path: str | None, offset: int, length: int) -> bytes:
    try:
        return read_log(path, offset, length)
    except LogReadError as exc:
        raise FaultError(Fault[exc.fault]) from None


def read_main_log(core: Supervisor, offset: int, length: int) -> bytes:
    ensure_running(core)
    path = core.log.path
    if path is None or not os.path.exists(path):
        raise FaultError(Fault.NO_FILE, path)
    return _read(path, offset, length)


def clear_main_log(core: Supervisor) -> bool:
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


def _log_path(core: Supervisor, namespec: str, channel: str) -> str | None:
    proc = lookup_process(core, namespec)
    return proc.stdout_logfile if channel == "stdout" else proc.stderr_logfile


def read_process_log(core: Supervisor, namespec: str, channel: str, offset: int,
                     length: int) -> bytes:
    ensure_running(core)
    path = _log_path(core, namespec, channel)
    if path is None or not os.path.exists(path):
        raise FaultError(Fault.NO_FILE, path)
    return _read(path, offset, length)


def tail_process_log(core: Supervisor, namespec: str, channel: str, offset: int,
                     length: int) -> tuple[bytes, int, bool]:
    ensure_running(core)
    return tail_log(_log_path(core, namespec, channel), offset, length)


def clear_process_logs(core: Supervisor, namespec: str) -> bool:
    ensure_running(core)
    proc = lookup_process(core, namespec)
    try:
        proc.clear_logs()
    except OSError:
        raise FaultError(Fault.FAILED, namespec) from None
    return True


async def clear_all_process_logs(core: Supervisor) -> list[ProcessResult]:
    ensure_running(core)

    def clear(proc: Process) -> None:
        try:
            proc.clear_logs()
        except OSError:
            raise FaultError(Fault.FAILED, _spec(proc)) from None

    return await _for_each(core, processes_by_priority(core), lambda p: True, clear)


# -- input -------------------------------------------------------------------------------------

def send_stdin(core: Supervisor, namespec: str, data: bytes) -> bool:
    ensure_running(core)
    proc = lookup_process(core, namespec)
    if not proc.pid or proc.lifecycle.killing:
        raise FaultError(Fault.NOT_RUNNING, namespec)
    try:
        proc.write_stdin(data)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise FaultError(Fault.NO_FILE, namespec) from None
        raise
    return True


def send_remote_comm(core: Supervisor, type_: str, data: str) -> bool:
    core.publish_remote_comm(type_, data)
    return True
