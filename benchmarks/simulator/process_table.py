"""One virtual node's processes: the agent's own state machine (`Lifecycle`) over processes
that do not exist.

Each `VirtualProcess` is the `ProcessHost` of a real `Lifecycle`, so every transition
(STARTING after a spawn, RUNNING after startsecs, BACKOFF and its 1 s, 2 s ... retries,
EXITED with expected or not, STOPPING then STOPPED, FATAL) is decided by the agent's code.
A spawn hands out a made-up pid; a stop signal makes the "process" exit `exit_delay` later;
a crash is fed to the lifecycle as an exit status. Nothing here reads a clock or sleeps:
every entry point takes `now`, and `next_due()` says when `advance()` has work, so the owner
(node.py) arms one timer per node.
"""

from __future__ import annotations

import random
import signal as signals
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from fleetvisor.agent.config.model import AutoRestart, GroupConfig, ProcessConfig
from fleetvisor.agent.faults import Fault, FaultError
from fleetvisor.agent.lifecycle import Blocker, Lifecycle
from fleetvisor.agent.operations.names import make_namespec, split_namespec
from fleetvisor.agent.states import RUNNING_STATES, SIGNALLABLE_STATES, ProcessState, SupervisorState
from fleetvisor.agent.supervisor import GroupChange

from .synthetic_log import SyntheticLog

TIMER_SLACK = 0.01        # as the agent's: a startsecs deadline is "more than", not "at"
EXIT_DELAY = 0.05         # how long a virtual process takes to die of its stop signal
QUICK_EXIT = 0.2          # a doomed start dies this soon (under startsecs: BACKOFF)
MAX_PID = 4_194_304       # Linux's pid_max on 64-bit
# Signals a virtual process dies of when sent by Signal (not as a stop); others it handles.
ALIVE_STATES = frozenset({ProcessState.RUNNING, ProcessState.STOPPING})  # states with a live pid once started
FATAL_SIGNALS = frozenset({signals.SIGTERM, signals.SIGKILL, signals.SIGINT, signals.SIGQUIT})


def wait_status(*, code: int = 0, sig: int = 0) -> int:
    """A waitpid status word, as the lifecycle decodes it."""
    return sig & 0x7F if sig else (code & 0xFF) << 8


@dataclass(frozen=True)
class StateChange:
    """A process changed state; `process` is its facts right after, for the journal."""

    process: VirtualProcess
    old: ProcessState
    new: ProcessState
    expected: bool | None
    when: float
    pid: int
    start: float
    stop: float
    exitstatus: int
    spawnerr: str


Change = StateChange | GroupChange


@dataclass
class PidSource:
    """Made-up pids that grow like a host's, wrapping at pid_max."""

    rng: random.Random
    last: int = 0

    def __post_init__(self) -> None:
        self.last = self.last or self.rng.randrange(1000, 30000)

    def next(self) -> int:
        self.last += self.rng.randrange(1, 40)
        if self.last >= MAX_PID:
            self.last = 300 + self.last % MAX_PID
        return self.last


@dataclass(frozen=True)
class VirtualGroup:
    """The part of a group the agent's converters read (`.name`), and its config."""

    name: str
    config: GroupConfig
    processes: dict[str, VirtualProcess] = field(default_factory=dict, compare=False)


class VirtualProcess:
    """A `ProcessHost` whose spawns and deaths are bookkeeping. It carries the attributes
    the agent's `process_info` reads (name, group, state, pid, lifecycle, log paths, health)."""

    health = None  # no health checks are simulated

    def __init__(self, config: ProcessConfig, group: VirtualGroup, table: ProcessTable, log_dir: str) -> None:
        self.config = config
        self.group = group
        self.table = table
        self.lifecycle = Lifecycle(config, self)
        self.exit_at: float | None = None  # a pending virtual death
        self.exit_status = 0
        self.doomed = False  # the next start dies before startsecs (a flap through BACKOFF)
        self.stdout_logfile = f"{log_dir}/{config.name}-stdout.log"
        self.stderr_logfile = "" if config.redirect_stderr else f"{log_dir}/{config.name}-stderr.log"
        self.output = SyntheticLog(config.name)
        self.forked = 0  # the pid of the start under way

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def namespec(self) -> str:
        return make_namespec(self.group.name, self.name)

    @property
    def state(self) -> ProcessState:
        return self.lifecycle.state

    @property
    def pid(self) -> int:
        return self.lifecycle.pid

    def due(self) -> float | None:
        """When this process next has something to do (wall time), or None."""
        tick = self.lifecycle.next_tick(SupervisorState.RUNNING)
        if tick is not None:
            tick += TIMER_SLACK
        if self.exit_at is None:
            return tick
        return self.exit_at if tick is None else min(tick, self.exit_at)

    # -- ProcessHost ----------------------------------------------------------------------------

    def spawn(self) -> int:
        now = self.table.now
        if self.doomed:
            self.doomed = False
            self._die(now + min(QUICK_EXIT, self.config.startsecs / 2), wait_status(code=1))
        self.output.started(now, self.forked)
        return self.forked

    def kill(self, pid: int, sig: int) -> None:
        if self.lifecycle.killing or sig in FATAL_SIGNALS:
            self._die(self.table.now + EXIT_DELAY, wait_status(sig=sig))
        else:
            self.table.signals_handled += 1

    def log(self, level: str, message: str) -> None:
        pass  # a main log of thousands of nodes would be noise; the events say it all

    def state_changed(self, old: ProcessState, new: ProcessState, expected: bool | None) -> None:
        lc = self.lifecycle
        # The lifecycle announces STARTING before it spawns: the virtual fork happens here, so
        # that the event already carries the pid, as the agent's (sent after the spawn) does.
        if new == ProcessState.STARTING:
            self.forked = self.table.pids.next()
        pid = self.forked if new == ProcessState.STARTING else lc.pid if new in ALIVE_STATES else 0
        if new in (ProcessState.EXITED, ProcessState.STOPPED, ProcessState.BACKOFF) and self.output.running_since:
            self.output.ended(self.table.now, f"{new.name.lower()} (exit status {lc.exitstatus or 0})")
        self.table.publish(StateChange(self, old, new, expected, self.table.now, pid, lc.laststart, lc.laststop,
                                       lc.exitstatus or 0, lc.spawnerr or ""))

    def blocker(self) -> Blocker | None:
        return None  # depends_on is not simulated: every start goes at once

    # -- the virtual OS -------------------------------------------------------------------------

    def _die(self, at: float, status: int) -> None:
        if self.exit_at is None or at < self.exit_at:
            self.exit_at, self.exit_status = at, status

    def advance(self, now: float) -> None:
        """Run what is due, as the agent's Process.advance does: ticks until nothing more
        happens at `now` (a failed spawn, then FATAL), and a pending death."""
        if self.exit_at is not None and self.exit_at <= now and self.pid:
            self.exit_at = None
            self.lifecycle.exited(self.exit_status, now)
        elif self.exit_at is not None and not self.pid:
            self.exit_at = None  # it was already reaped (killed while BACKOFF, for example)
        for _ in range(10):
            before = self.state
            self.lifecycle.tick(now, SupervisorState.RUNNING)
            due = self.lifecycle.next_tick(SupervisorState.RUNNING)
            if due is None or due > now or self.state == before:
                return


@dataclass(frozen=True)
class Outcome:
    """What a command did to one process (the agent's operations.ProcessResult, in short)."""

    process: VirtualProcess
    status: Fault
    description: str = ""

    @property
    def ok(self) -> bool:
        return self.status == Fault.SUCCESS


class ProcessTable:
    """The groups of one node and the clock-free commands on them."""

    def __init__(self, groups: Iterable[GroupConfig], *, pids: PidSource, log_dir: str) -> None:
        self.pids = pids
        self.log_dir = log_dir
        self.now = 0.0  # the time of the entry point being served
        self.groups: dict[str, VirtualGroup] = {}
        self.signals_handled = 0
        self._subscribers: list[Callable[[Change], None]] = []
        for config in groups:
            self._add(config)

    # -- events ---------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """As Supervisor.subscribe: the agent's Journal numbers what this publishes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def publish(self, change: Change) -> None:
        for callback in list(self._subscribers):
            callback(change)

    # -- reading --------------------------------------------------------------------------------

    def processes(self) -> list[VirtualProcess]:
        """Groups by priority, then processes by priority (the agent's order)."""
        ordered = sorted(self.groups.values(), key=lambda g: g.config.priority)
        return [p for g in ordered for p in sorted(g.processes.values(), key=lambda p: p.config.priority)]

    def resolve(self, names: Sequence[str]) -> list[VirtualProcess]:
        """`name`, `group:name`, `group:*`, `all`; one unknown name refuses all (BAD_NAME)."""
        ordered = self.processes()
        if "all" in names:
            return ordered
        chosen: set[VirtualProcess] = set()
        for spec in names:
            group_name, name = split_namespec(spec)
            group = self.groups.get(group_name)
            if group is None or (name is not None and name not in group.processes):
                raise FaultError(Fault.BAD_NAME, spec)
            chosen.update(group.processes.values() if name is None else [group.processes[name]])
        return [p for p in ordered if p in chosen]

    def next_due(self) -> float | None:
        dues = [d for p in self.processes() if (d := p.due()) is not None]
        return min(dues) if dues else None

    def sections(self) -> list[str]:
        return sorted(self.groups)

    # -- time -----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Every transition due by `now`."""
        self.now = now
        for proc in self.processes():
            due = proc.due()
            if due is not None and due <= now:
                proc.advance(now)

    def autostart(self, now: float, procs: Iterable[VirtualProcess] | None = None) -> None:
        self.now = now
        for proc in self.processes() if procs is None else procs:
            proc.advance(now)

    # -- commands -------------------------------------------------------------------------------

    def start(self, procs: Sequence[VirtualProcess], now: float) -> list[Outcome]:
        self.now = now
        results = []
        for proc in procs:
            if proc.state in RUNNING_STATES:
                results.append(Outcome(proc, Fault.ALREADY_STARTED, "ALREADY_STARTED"))
                continue
            if proc.state == ProcessState.UNKNOWN:
                results.append(Outcome(proc, Fault.FAILED, f"{proc.namespec} is in an unknown process state"))
                continue
            proc.lifecycle.spawn(now)
            proc.advance(now)
            results.append(Outcome(proc, Fault.SUCCESS))
        return results

    def stop(self, procs: Sequence[VirtualProcess], now: float) -> list[Outcome]:
        self.now = now
        results = []
        for proc in procs:
            if proc.state not in RUNNING_STATES:
                results.append(Outcome(proc, Fault.NOT_RUNNING, "NOT_RUNNING"))
                continue
            message = proc.lifecycle.stop(now)
            proc.advance(now)
            results.append(Outcome(proc, Fault.FAILED, message) if message else Outcome(proc, Fault.SUCCESS))
        return results

    def signal(self, procs: Sequence[VirtualProcess], sig: int, now: float) -> list[Outcome]:
        self.now = now
        results = []
        for proc in procs:
            if proc.state not in SIGNALLABLE_STATES:
                results.append(Outcome(proc, Fault.NOT_RUNNING, "NOT_RUNNING"))
                continue
            message = proc.lifecycle.signal(sig, now)
            results.append(Outcome(proc, Fault.FAILED, message) if message else Outcome(proc, Fault.SUCCESS))
        return results

    def flap(self, proc: VirtualProcess, now: float, *, through_backoff: bool) -> bool:
        """A RUNNING process crashes (exit status 1, unexpected); autorestart brings it back.
        `through_backoff`: its first restart dies before startsecs too (BACKOFF, then a retry).
        False when the process cannot flap now."""
        if proc.state != ProcessState.RUNNING or proc.config.autorestart == AutoRestart.NEVER:
            return False
        self.now = now
        proc.doomed = through_backoff and proc.config.startsecs > 0
        proc.exit_at = None
        proc.lifecycle.exited(wait_status(code=1), now)
        proc.advance(now)
        return True

    # -- groups ---------------------------------------------------------------------------------

    def _add(self, config: GroupConfig) -> VirtualGroup:
        group = VirtualGroup(config.name, config)
        for pconfig in sorted(config.processes, key=lambda p: p.priority):
            group.processes[pconfig.name] = VirtualProcess(pconfig, group, self, self.log_dir)
        self.groups[config.name] = group
        return group

    def add_group(self, config: GroupConfig, now: float) -> VirtualGroup:
        """Add and autostart, as the agent's add_group_config (GroupChange first)."""
        self.now = now
        group = self._add(config)
        self.publish(GroupChange(config.name, True))
        self.autostart(now, group.processes.values())
        return group

    def remove_group(self, name: str) -> None:
        """The group's processes must have stopped (the caller waits for it)."""
        if self.groups.pop(name, None) is not None:
            self.publish(GroupChange(name, False))


def flappable(procs: Iterable[VirtualProcess]) -> list[VirtualProcess]:
    return [p for p in procs if p.state == ProcessState.RUNNING and p.config.autorestart != AutoRestart.NEVER]
