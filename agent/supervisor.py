"""The supervisor core: the one owner of process groups and of the daemon's state.

XML-RPC, the web page, gRPC and signal handlers are adapters that call this object; none of
them touches a process directly. State changes fan out to subscribers (event listeners, gRPC
watch streams, requests waiting for processes to settle).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import events
from .caller import Caller
from .config.errors import ConfigError
from .config.model import Config, GroupConfig, GroupKind, HealthAction
from .faults import FaultError
from .fcgisocket import FcgiSocket
from .health import Health, Verdict
from .lifecycle import Blocker, signame
from .listener import ListenerPool
from .mainlog import MainLog
from .process import Process, auto_log_channels
from .states import STOPPED_STATES, ProcessState, SupervisorState
from .tally import AgentTally
from .timeouts import wait_within

if TYPE_CHECKING:
    from .reexec.trigger import Reexec

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


@dataclass(frozen=True)
class HealthChange:
    process: Process
    before: Verdict
    after: Verdict
    when: float


Change = ProcessStateChange | SupervisorStateChange | GroupChange | HealthChange


class ProcessGroup:
    def __init__(self, config: GroupConfig, core: Supervisor,
                 auto_logs: Mapping[tuple[str, str], str] | None = None) -> None:
        self.config = config
        ordered = sorted(config.processes, key=lambda p: p.priority)
        self.processes: dict[str, Process] = {p.name: Process(p, self, core, auto_logs) for p in ordered}
        self.pool = ListenerPool(self, core) if config.kind == GroupKind.EVENTLISTENER else None
        self.fcgi_socket = FcgiSocket(config.socket) if config.socket is not None else None

    @property
    def name(self) -> str:
        return self.config.name

    def unstopped(self) -> list[Process]:
        return [p for p in self.processes.values() if p.state not in STOPPED_STATES]

    def stop_all(self, free: Callable[[Process], bool] = lambda proc: True) -> None:
        """Stop what runs, highest priority number first; a backing-off process gives up; a
        start held for dependencies is called off. `free`: whether a process may be stopped yet
        (its dependents have stopped)."""
        # supervisord sorts, then reverses: equal priorities stop in reverse config order
        for proc in reversed(sorted(self.processes.values(), key=lambda p: p.config.priority)):
            if not free(proc):
                continue
            if proc.state in (ProcessState.RUNNING, ProcessState.STARTING):
                proc.stop()
            elif proc.state == ProcessState.BACKOFF:
                proc.give_up()
            elif proc.lifecycle.waiting:
                proc.cancel_start()


HEALTH = Caller("local", "healthcheck")  # who restarts an unhealthy process


class Supervisor:
    def __init__(self, config: Config, log: MainLog,
                 reloader: Callable[[], Config] | None = None,
                 auto_logs: Mapping[str, Mapping[tuple[str, str], str]] | None = None) -> None:
        """`auto_logs`: group -> the AUTO log files its processes keep using (after a re-exec)."""
        self.config = config
        self.log = log
        # Parses the config again before a restart, so a broken file cannot take the daemon down.
        self.reloader = reloader
        self._reloading: asyncio.Future[None] | None = None  # a SIGHUP's parse, off the loop
        self.mood = SupervisorState.RUNNING
        self.started_at = time.time()  # of this run of the daemon (a restart begins another)
        self.groups: dict[str, ProcessGroup] = {}
        # The groups of the last read of the config file: what addProcessGroup can add.
        self.group_configs: tuple[GroupConfig, ...] = config.groups
        self.serverurl = _server_url(config)
        self._restarts: set[asyncio.Task[None]] = set()  # of unhealthy processes (health_changed)
        self._held: set[Process] = set()  # starts waiting for their dependencies (see blocker)
        self._waking = False
        self._programs: dict[str, list[Process]] | None = None  # program name -> its processes
        self._dependents: dict[Process, list[Process]] | None = None  # see dependents()
        self._subscribers: list[Callable[[Change], None]] = []
        self._changed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        # supervisord's events, for listener pools; fed from changes (first subscriber, so
        # before anything that reacts to a change publishes more) and by producers directly.
        self.events = events.EventBus()
        self.tally = AgentTally()  # counts for /metrics
        self.subscribe(self._publish_event)
        self._ticker = events.Ticker(self.events.publish)
        # Set by the face that can re-exec the agent (see reexec.trigger); None: it cannot.
        self.reexec: Reexec | None = None
        self.handing_over = False  # a re-exec is under way: run() returns with everything running
        # Shutdowns and restarts asked for once the handover began: the next agent carries them out.
        self.deferred_signals: list[int] = []
        for group_config in config.groups:
            self.add_group(group_config, (auto_logs or {}).get(group_config.name))

    # -- groups --------------------------------------------------------------------------------

    def ordered_groups(self) -> list[ProcessGroup]:
        """Groups by priority; equal priorities keep config order (sort is stable)."""
        return sorted(self.groups.values(), key=lambda g: g.config.priority)

    def add_group(self, config: GroupConfig, auto_logs: Mapping[tuple[str, str], str] | None = None) -> bool:
        """`auto_logs`: the group's AUTO log files, made beforehand by `make_auto_logs`."""
        if config.name in self.groups:
            return False
        self.groups[config.name] = ProcessGroup(config, self, auto_logs)
        self._publish(GroupChange(config.name, added=True))
        return True

    def remove_group(self, name: str) -> bool:
        """Forget a group whose processes are all stopped; False if some still run."""
        group = self.groups[name]
        if group.unstopped():
            return False
        for proc in group.processes.values():
            proc.close()
        if group.pool is not None:
            group.pool.close()
        if group.fcgi_socket is not None:
            group.fcgi_socket.close()
        del self.groups[name]
        self._held.difference_update(group.processes.values())
        self._publish(GroupChange(name, added=False))
        return True

    def reread(self) -> tuple[list[str], list[str], list[str]]:
        """Parse the config file again and keep its groups for addProcessGroup; returns the
        (added, changed, removed) group names against the running groups. Nothing running
        changes. Raises ConfigError for a bad file."""
        config = self.reloader() if self.reloader is not None else self.config
        self.group_configs = config.groups
        return diff_groups(config.groups, [g.config for g in self.groups.values()])

    async def reread_off_loop(self) -> tuple[list[str], list[str], list[str]]:
        """reread, with the parse in a worker thread so that status calls and signals keep
        being answered while a big file parses. The parse reads files only; the groups it
        yields are kept here, on the loop."""
        config = await asyncio.to_thread(self.reloader) if self.reloader is not None else self.config
        self.group_configs = config.groups
        return diff_groups(config.groups, [g.config for g in self.groups.values()])

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

    def make_auto_logs(self, config: GroupConfig) -> dict[tuple[str, str], str]:
        """The AUTO log files of a group's processes, made now. A file creation can take a
        millisecond and a group may have a thousand processes: callers run this in a worker
        thread (it reads only the daemon's settings) and hand the result to add_group."""
        return {(p.name, channel): self.auto_log_path(p.name, channel)
                for p in config.processes for channel in auto_log_channels(p)}

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

    # -- dependencies (depends_on) ---------------------------------------------------------------

    def blocker(self, proc: Process) -> Blocker | None:
        """The first dependency of `proc` that is not ready: RUNNING, and healthy where it has a
        health check. None when `proc` may start."""
        for dep in proc.config.depends_on:
            if dep.endswith(":*"):
                group = self.groups.get(dep[:-2])
                found = list(group.processes.values()) if group is not None else []
            else:
                found = self._by_program().get(dep, [])
            if not found:
                return Blocker(dep, "not loaded", dead=True)
            for other in found:
                if other.state != ProcessState.RUNNING:
                    return Blocker(other.name, other.state.name, dead=not other.lifecycle.will_start())
                if other.health is not None and other.health.verdict.health is not Health.HEALTHY:
                    return Blocker(other.name, "not healthy yet", dead=False)
        return None

    def _by_program(self) -> dict[str, list[Process]]:
        if self._programs is None:
            self._programs = {}
            for group in self.groups.values():
                for proc in group.processes.values():
                    self._programs.setdefault(proc.config.program_name, []).append(proc)
        return self._programs

    def hold(self, proc: Process, held: bool) -> None:
        """Whether `proc` has a start held for its dependencies: woken on their changes."""
        if held:
            self._held.add(proc)
        else:
            self._held.discard(proc)

    def _wake_held(self) -> None:
        self._waking = False
        for proc in list(self._held):
            proc.advance()

    def health_changed(self, proc: Process, before: Verdict, after: Verdict) -> None:
        """One main-log line per change of a process's health (a return to unknown, when it
        leaves RUNNING, goes without one: its state change says it); an unhealthy process
        with healthcheck_action=restart is restarted, as a restart by hand would do it."""
        check = proc.config.healthcheck
        self._publish(HealthChange(proc, before, after, time.time()))
        if after.health is Health.HEALTHY:
            self.log.info(f"healthy: {proc.name} (health check passed)")
        elif after.health is Health.UNHEALTHY and check is not None:
            restart = check.action is HealthAction.RESTART
            self.log.warn(f"unhealthy: {proc.name} (health check failed {after.failures} "
                          f"time{'s' if after.failures != 1 else ''} in a row: {after.message})"
                          + ("; restarting it" if restart else ""))
            if restart:
                self._restart(proc)

    def _restart(self, proc: Process) -> None:
        from . import operations  # the operations use the core: imported where they are needed

        async def restart() -> None:
            with contextlib.suppress(FaultError):  # shutting down meanwhile: nothing to restart
                await operations.restart_processes(self, HEALTH, [proc])
        task = asyncio.get_running_loop().create_task(restart())
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def publish_remote_comm(self, type: str, data: str) -> None:
        """sendRemoteCommEvent: a REMOTE_COMMUNICATION event for listeners."""
        self.events.publish(events.remote_communication(type, data))

    def _publish_event(self, change: Change) -> None:
        """The supervisord event, if any, for a change, made only if a pool would get it."""
        bus = self.events
        if isinstance(change, ProcessStateChange):
            name = f"PROCESS_STATE_{change.new.name}"
            if bus.wants(name):
                proc = change.process
                extras = events.process_state_extras(change.new.name, proc.pid, proc.lifecycle.backoff,
                                                     change.expected)
                bus.publish(events.process_state(name, proc.name, proc.group.name, change.old.name,
                                                 extras))
        elif isinstance(change, SupervisorStateChange):
            # RUNNING is announced by run(); STOPPING once, when a shutdown or restart begins.
            if change.old >= SupervisorState.RUNNING > change.new:
                bus.publish(events.supervisor_state(running=False))
        elif isinstance(change, GroupChange):
            bus.publish(events.process_group(change.added, change.name))
        elif isinstance(change, HealthChange):
            name = f"FLEETVISOR_PROCESS_HEALTH_{change.after.health.name}"
            if bus.wants(name):
                proc = change.process
                bus.publish(events.process_health(name, proc.name, proc.group.name, change.before.health.value,
                                                  change.after.message))

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback` for every change from now on; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _publish(self, change: Change) -> None:
        self._changed.set()
        for callback in list(self._subscribers):
            callback(change)
        if isinstance(change, GroupChange):
            self._programs = self._dependents = None
        if self._held and not self._waking and isinstance(change, ProcessStateChange | HealthChange | GroupChange):
            # once, after the change is fully made: a held start may go now, or learn it never will
            self._waking = True
            asyncio.get_running_loop().call_soon(self._wake_held)

    async def wait_until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait for a condition over process states, re-checked on every change, not polled."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not condition():
            self._changed.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            if not await wait_within(self._changed.wait(), remaining):
                return condition()
        return True

    # -- daemon lifecycle ----------------------------------------------------------------------

    def _set_mood(self, mood: SupervisorState) -> None:
        old, self.mood = self.mood, mood
        if old != mood:
            self._publish(SupervisorStateChange(old, mood))

    async def run(self, resumed: bool = False) -> SupervisorState:
        """Start what autostarts, run until asked to stop, stop everything in order.

        Returns SHUTDOWN or RESTARTING so the caller knows whether to come back up; RUNNING
        with `handing_over` set when a re-exec takes over the running processes. `resumed`:
        this run carries on one that re-exec'd (it was announced then).
        """
        if not resumed:
            self.events.publish(events.supervisor_state(running=True))
        self._ticker.start()
        try:
            for proc in self.all_processes():
                proc.advance()
            await self._stop_requested.wait()
            if self.handing_over:
                return self.mood
            await self.stop_all_groups()
        finally:
            self._ticker.stop()
        return self.mood

    def handle_signal(self, sig: int) -> None:
        name = signame(sig)
        if self.handing_over and sig != signal.SIGUSR2:
            self._defer(sig)
            return
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.log.warn(f"received {name} indicating exit request")
            self.shutdown()
        elif sig == signal.SIGHUP:
            if self.mood == SupervisorState.SHUTDOWN:
                self.log.warn(f"ignored {name} indicating restart request (shutdown in progress)")
            else:
                self.log.warn(f"received {name} indicating restart request")
                self._reloading = asyncio.ensure_future(self._reload_then_restart())
        elif sig == signal.SIGUSR2:
            self.log.info(f"received {name} indicating log reopen request")
            self.reopen_logs()
        else:
            self.log.blather(f"received {name} indicating nothing")

    def reload_config(self) -> None:
        """Parse the config file again before a restart, whoever asked for it (SIGHUP,
        `supervisorctl reload`): a broken one is logged in the main log and raised, and
        the running state is kept."""
        if self.reloader is None:
            return
        try:
            self.reloader()
        except ConfigError as exc:
            self.log.error(f"restart refused, the config file is not valid: {exc}")
            raise

    async def reload_config_off_loop(self) -> None:
        """reload_config with the parse in a worker thread (a big file must not stall the loop)."""
        if self.reloader is None:
            return
        try:
            await asyncio.to_thread(self.reloader)
        except ConfigError as exc:
            self.log.error(f"restart refused, the config file is not valid: {exc}")
            raise

    async def _reload_then_restart(self) -> None:
        try:
            await self.reload_config_off_loop()
        except ConfigError:
            return
        if self.mood != SupervisorState.SHUTDOWN:
            self.restart()

    def reload_config_ok(self) -> bool:
        try:
            self.reload_config()
        except ConfigError:
            return False
        return True

    def _defer(self, sig: int) -> None:
        """A shutdown or restart during a re-exec's handover: the new agent acts on it."""
        self.log.warn(f"{signame(sig)} during a re-exec: the next agent acts on it")
        self.deferred_signals.append(int(sig))

    def shutdown(self) -> None:
        if self.handing_over:
            self._defer(signal.SIGTERM)
            return
        self._set_mood(SupervisorState.SHUTDOWN)
        self._stop_requested.set()

    def begin_handover(self) -> None:
        """A re-exec: leave run() with every process as it is (see reexec.trigger)."""
        self.handing_over = True
        self._stop_requested.set()

    def restart(self) -> None:
        if self.handing_over:
            self._defer(signal.SIGHUP)
            return
        self._set_mood(SupervisorState.RESTARTING)
        self._stop_requested.set()

    def reopen_logs(self) -> None:
        self.log.info("supervisord logreopen")
        self.log.reopen()
        for proc in self.all_processes():
            proc.reopen_logs()

    async def stop_all_groups(self) -> None:
        """Stop groups by descending priority, each fully before the next, as supervisord does;
        with depends_on, dependents stop before what they depend on (stop_order)."""
        loop = asyncio.get_running_loop()
        next_report = 0.0
        for group in self.stop_order():
            # Let pools dispatch what the groups stopped so far caused before the next group
            # (the listeners come last) is stopped; supervisord's one group per loop pass does too.
            await asyncio.sleep(0)
            free = self._stoppable_in(group)
            while unstopped := len(group.unstopped()):
                group.stop_all(free)  # those whose dependents in the group have stopped, in waves
                if loop.time() >= next_report:
                    self._shutdown_report()
                    next_report = loop.time() + SHUTDOWN_REPORT_INTERVAL
                await self.wait_until(lambda: len(group.unstopped()) < unstopped,  # noqa: B023 - awaited here
                                      timeout=max(0.0, next_report - loop.time()))

    def stop_order(self) -> list[ProcessGroup]:
        """Groups by descending priority, except that a group waits for the groups whose
        processes depend on its own (groups that depend on each other: priority decides)."""
        pending = list(reversed(self.ordered_groups()))
        if not any(p.config.depends_on for g in pending for p in g.processes.values()):
            return pending
        waiting_on = {g.name: {d.group.name for p in g.processes.values() for d in self.dependents(p)} - {g.name}
                      for g in pending}
        order: list[ProcessGroup] = []
        while pending:
            names = {g.name for g in pending}
            group = next((g for g in pending if not waiting_on[g.name] & names), pending[0])
            order.append(group)
            pending.remove(group)
        return order

    def _stoppable_in(self, group: ProcessGroup) -> Callable[[Process], bool]:
        """Whether a process of `group` may be stopped: no dependent of it in the group runs."""
        return lambda proc: not any(d.group is group and d.state not in STOPPED_STATES and d is not proc
                                    for d in self.dependents(proc))

    def dependents(self, proc: Process) -> list[Process]:
        """The processes whose depends_on names `proc` (its program, or its group as GROUP:*)."""
        if self._dependents is None:
            index: dict[Process, list[Process]] = {}
            for group in self.groups.values():
                for other in group.processes.values():
                    for dep in other.config.depends_on:
                        named = self.groups.get(dep[:-2]) if dep.endswith(":*") else None
                        targets = named.processes.values() if named is not None else self._by_program().get(dep, [])
                        for target in targets:
                            index.setdefault(target, []).append(other)
            self._dependents = index
        return self._dependents.get(proc, [])

    def _shutdown_report(self) -> None:
        unstopped = [p for g in self.groups.values() for p in g.unstopped()]
        if unstopped:
            self.log.info(f"waiting for {', '.join(p.name for p in unstopped)} to die")
            for proc in unstopped:
                self.log.blather(f"{proc.name} state: {proc.state.name}")


def diff_groups(new: Iterable[GroupConfig], current: Iterable[GroupConfig]
                ) -> tuple[list[str], list[str], list[str]]:
    """(added, changed, removed) names: new ones and changed ones in the new file's order,
    removed ones in running order. A change is any difference in the group's config."""
    new, current = list(new), list(current)
    running = {g.name: g for g in current}
    names = {g.name for g in new}
    added = [g.name for g in new if g.name not in running]
    changed = [g.name for g in new if g.name in running and g != running[g.name]]
    removed = [g.name for g in current if g.name not in names]
    return added, changed, removed


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
