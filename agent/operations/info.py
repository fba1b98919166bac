"""Process, agent and config information.

Ordering fact kept from supervisord 4.3: getAllProcessInfo lists groups and processes by name.
"""

from __future__ import annotations

import datetime
import os
import pwd
import time
from typing import TYPE_CHECKING

from ..caller import Caller
from ..config.model import AUTO, GroupConfig, ProcessConfig
from ..states import ProcessState
from .names import _lookup_process, ensure_running
from .results import AgentInfo, ProcessInfo

if TYPE_CHECKING:
    from ..fleetconfig import FleetConfig
    from ..process import Process
    from ..supervisor import Supervisor


# XML-RPC's i4: supervisord caps times to it.
_MAXINT = 2**31 - 1
_MININT = -(2**31)


def _capped(value: float) -> int:
    return max(_MININT, min(_MAXINT, int(value)))


def describe(state: ProcessState, *, start: int, stop: int, now: int, pid: int, spawnerr: str,
             name: str, waiting: str = "") -> str:
    """The status text supervisorctl shows next to the state name; a start held for its
    dependencies (depends_on, which supervisord lacks) says what it waits for."""
    if state == ProcessState.RUNNING:
        started = datetime.datetime(*time.gmtime(start)[:6])
        current = datetime.datetime(*time.gmtime(now)[:6])
        uptime = max(current - started, datetime.timedelta(0))  # the clock may go back
        return f"pid {pid}, uptime {uptime}"
    if state in (ProcessState.FATAL, ProcessState.BACKOFF):
        return spawnerr or f'unknown error (try "tail {name}")'
    if state in (ProcessState.STOPPED, ProcessState.EXITED):
        if waiting:
            return f"start held: {waiting}"
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
                             spawnerr=spawnerr, name=proc.name, waiting=lifecycle.waiting))


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

