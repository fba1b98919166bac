"""The supervisor core: the one owner of process groups and of the daemon's state.

XML-RPC, the web page, gRPC and signal handlers are adapters that call this object; none of
them touches a process directly. State changes fan out to subscribers (event listeners, gRPC
watch streams, requests waiting for processes to settle).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config.errors import ConfigError
from .config.model import Config, GroupConfig
from .lifecycle import signame
from .mainlog import MainLog
from .process import Process
from .states import STOPPED_STATES, ProcessState, SupervisorState

SHUTDOWN_REPORT_INTERVAL = 3.0


@dataclass(frozen=True)
class ProcessStateChange:
    process: Process
    old: ProcessState
    new: ProcessState
    expected: bool | None
    when: float


@dataclass(frozen=True)
class SupervisorStateChange:
    old: SupervisorState
    new: SupervisorState


@dataclass(frozen=True)
class GroupChange:
    name: str
    added: bool


Change = ProcessStateChange | SupervisorStateChange | GroupChange


class ProcessGroup:
    def __init__(self, config: GroupConfig, core: Supervisor) -> None:
        self.config = config
        ordered = sorted(config.processes, key=lambda p: p.priority)
        self.processes: dict[str, Process] = {p.name: Process(p, self, core) for p in ordered}

    @property
    def name(self) -> str:
        return self.config.name

    def unstopped(self) -> list[Process]:
        return [p for p in self.processes.values() if p.state not in STOPPED_STATES]

    def stop_all(self) -> None:
        """Stop what runs, highest priority number first; a backing-off process gives up."""
        # supervisord sorts, then reverses: equal priorities stop in reverse config order
        for proc in reversed(sorted(self.processes.values(), key=lambda p: p.config.priority)):
            if proc.state in (ProcessState.RUNNING, ProcessState.STARTING):
                proc.stop()
            elif proc.state == ProcessState.BACKOFF:
                proc.give_up()


class Supervisor:
    def __init__(self, config: Config, log: MainLog,
                 reloader: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.log = log
        # Parses the config again before a restart, so a broken file cannot take the daemon down.
        self.reloader = reloader
        self.mood = SupervisorState.RUNNING
        self.groups: dict[str, ProcessGroup] = {}
        self.serverurl = _server_url(config)
        self._subscribers: list[Callable[[Change], None]] = []
        self._changed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        for group_config in config.groups:
            self.add_group(group_config)

    # -- groups --------------------------------------------------------------------------------

    def ordered_groups(self) -> list[ProcessGroup]:
        """Groups by priority; equal priorities keep config order (sort is stable)."""
        return sorted(self.groups.values(), key=lambda g: g.config.priority)

    def add_group(self, config: GroupConfig) -> bool:
        if config.name in self.groups:
            return False
        self.groups[config.name] = ProcessGroup(config, self)
        self._publish(GroupChange(config.name, added=True))
        return True

    def remove_group(self, name: str) -> bool:
        """Forget a group whose processes are all stopped; False if some still run."""
        group = self.groups[name]
        if group.unstopped():
            return False
        for proc in group.processes.values():
            proc.close()
        del self.groups[name]
        self._publish(GroupChange(name, added=False))
        return True

    def all_processes(self) -> Iterable[Process]:
        for group in self.ordered_groups():
            yield from group.processes.values()

    # -- what processes need from the core -----------------------------------------------------

    def auto_log_path(self, name: str, channel: str) -> str:
        """A fresh AUTO log file in childlogdir, named so a later start can clean it up."""
        sd = self.config.supervisord
        fd, path = tempfile.mkstemp(prefix=f"{name}-{channel}---{sd.identifier}-", suffix=".log",
                                    dir=sd.childlogdir)
        os.close(fd)
        return path

    def child_environment(self, proc: Process) -> dict[str, str]:
        env = dict(os.environ)
        env["SUPERVISOR_ENABLED"] = "1"
        url = proc.config.serverurl
        if url in (None, "AUTO"):
            url = self.serverurl
        if url:
            env["SUPERVISOR_SERVER_URL"] = url
        env["SUPERVISOR_PROCESS_NAME"] = proc.name
        env["SUPERVISOR_GROUP_NAME"] = proc.group.name
        env.update(proc.config.environment)
        return env

    def process_state_changed(self, proc: Process, old: ProcessState, new: ProcessState,
                              expected: bool | None) -> None:
        self._publish(ProcessStateChange(proc, old, new, expected, time.time()))

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback` for every change from now on; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _publish(self, change: Change) -> None:
        self._changed.set()
        for callback in list(self._subscribers):
            callback(change)

    async def wait_until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait for a condition over process states, re-checked on every change, not polled."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not condition():
            self._changed.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return condition()
        return True

    # -- daemon lifecycle ----------------------------------------------------------------------

    def _set_mood(self, mood: SupervisorState) -> None:
        old, self.mood = self.mood, mood
        if old != mood:
            self._publish(SupervisorStateChange(old, mood))

    async def run(self) -> SupervisorState:
        """Start what autostarts, run until asked to stop, stop everything in order.

        Returns SHUTDOWN or RESTARTING so the caller knows whether to come back up.
        """
        for proc in self.all_processes():
            proc.advance()
        await self._stop_requested.wait()
        await self.stop_all_groups()
        return self.mood

    def handle_signal(self, sig: int) -> None:
        name = signame(sig)
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.log.warn(f"received {name} indicating exit request")
            self.shutdown()
        elif sig == signal.SIGHUP:
            if self.mood == SupervisorState.SHUTDOWN:
                self.log.warn(f"ignored {name} indicating restart request (shutdown in progress)")
            else:
                self.log.warn(f"received {name} indicating restart request")
                if self.reload_config_ok():
                    self.restart()
        elif sig == signal.SIGUSR2:
            self.log.info(f"received {name} indicating log reopen request")
            self.reopen_logs()
        else:
            self.log.blather(f"received {name} indicating nothing")

    def reload_config_ok(self) -> bool:
        if self.reloader is None:
            return True
        try:
            self.reloader()
        except ConfigError as exc:
            self.log.error(f"restart refused, the config file is not valid: {exc}")
            return False
        return True

    def shutdown(self) -> None:
        self._set_mood(SupervisorState.SHUTDOWN)
        self._stop_requested.set()

    def restart(self) -> None:
        self._set_mood(SupervisorState.RESTARTING)
        self._stop_requested.set()

    def reopen_logs(self) -> None:
        self.log.info("supervisord logreopen")
        self.log.reopen()
        for proc in self.all_processes():
            proc.reopen_logs()

    async def stop_all_groups(self) -> None:
        """Stop groups by descending priority, each fully before the next, as supervisord does."""
        loop = asyncio.get_running_loop()
        next_report = 0.0
        for group in reversed(self.ordered_groups()):
            group.stop_all()
            while group.unstopped():
                if loop.time() >= next_report:
                    self._shutdown_report()
                    next_report = loop.time() + SHUTDOWN_REPORT_INTERVAL
                await self.wait_until(lambda: not group.unstopped(),
                                      timeout=max(0.0, next_report - loop.time()))

    def _shutdown_report(self) -> None:
        unstopped = [p for g in self.groups.values() for p in g.unstopped()]
        if unstopped:
            self.log.info(f"waiting for {', '.join(p.name for p in unstopped)} to die")
            for proc in unstopped:
                self.log.blather(f"{proc.name} state: {proc.state.name}")


def _server_url(config: Config) -> str | None:
    """The URL children get as SUPERVISOR_SERVER_URL: the unix socket if any, else TCP."""
    for server in config.http_servers:
        if server.kind == "unix":
            return f"unix://{server.file}"
    for server in config.http_servers:
        if server.kind == "inet":
            return f"http://{server.host or 'localhost'}:{server.port}"
    return None


AUTO_LOG_PATTERN = r".+?---{identifier}-\S+\.log\.?\d{{0,4}}"


def clear_auto_logs(childlogdir: str, identifier: str, log: MainLog) -> None:
    """Remove AUTO child logs a previous run left behind (unless nocleanup)."""
    pattern = re.compile(AUTO_LOG_PATTERN.format(identifier=re.escape(identifier)))
    try:
        names = os.listdir(childlogdir)
    except OSError:
        log.warn("Could not clear childlog dir")
        return
    for name in names:
        if pattern.match(name):
            path = os.path.join(childlogdir, name)
            try:
                os.remove(path)
            except OSError:
                log.warn(f"Failed to clean up {path!r}")
