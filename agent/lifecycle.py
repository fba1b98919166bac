"""The lifecycle of one process, decided exactly as supervisord decides it.

This module owns the state table (STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL,
UNKNOWN) and nothing else: it never reads a clock and never touches an OS process. Every input
carries `now`; every side effect (fork/exec, kill, log line, state change notification) goes
through the `ProcessHost` it was given. That keeps it testable without sleeping and keeps the
runtime (`process.py`) a thin adapter.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from typing import Protocol

from .config.model import AutoRestart, ProcessConfig
from .states import SPAWNABLE_STATES, ProcessState, SupervisorState


class SpawnError(Exception):
    """The process could not be started; the message is supervisord's spawnerr text."""


class ProcessHost(Protocol):
    """What the lifecycle needs from the world around it."""

    def spawn(self) -> int:
        """Fork/exec the process and return its pid, or raise SpawnError."""

    def kill(self, pid: int, sig: int) -> None:
        """os.kill; a negative pid signals the process group."""

    def log(self, level: str, message: str) -> None:
        """A main-log line; level is 'critical', 'warn', 'info' or 'debug'."""

    def state_changed(self, old: ProcessState, new: ProcessState, expected: bool | None) -> None:
        """Called after every real state change, in order."""

    def blocker(self) -> Blocker | None:
        """The first dependency (depends_on) that is not ready, or None when it may start."""


@dataclass(frozen=True)
class Blocker:
    """Why a start is held: a dependency that is not ready, and whether it will get there
    by itself (`dead`: FATAL, or stopped with no start coming)."""

    name: str
    why: str  # its state, or "not healthy"
    dead: bool

    def text(self) -> str:
        return f"dependency {self.name} is {self.why}"


def signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def describe_wait_status(status: int) -> tuple[int, str]:
    """(exit status, text) for a waitpid status; a signal death has exit status -1."""
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return code, f"exit status {code}"
    if os.WIFSIGNALED(status):
        text = f"terminated by {signame(os.WTERMSIG(status))}"
        if os.WCOREDUMP(status):
            text += " (core dumped)"
        return -1, text
    return -1, f"unknown termination cause 0x{status:04x}"


class Lifecycle:
    """State and bookkeeping of one process. All times are wall-clock seconds (time.time())."""

    def __init__(self, config: ProcessConfig, host: ProcessHost) -> None:
        self.config = config
        self.host = host
        self.state = ProcessState.STOPPED
        self.pid = 0
        self.laststart = 0.0
        self.laststop = 0.0
        self.laststopreport = 0.0
        self.delay = 0.0  # deadline of the current STARTING/BACKOFF/STOPPING phase
        self.backoff = 0  # failed starts in a row
        self.killing = False  # a stop was requested: the next exit is a "stopped:"
        self.exitstatus: int | None = None
        self.spawnerr: str | None = None
        self.system_stop = False
        self.administrative_stop = False
        self.waiting = ""  # a start held until the dependencies are ready: what it waits for

    @property
    def name(self) -> str:
        return self.config.name

    # -- state changes -------------------------------------------------------------------------

    def _change(self, new: ProcessState, now: float, expected: bool | None = None) -> None:
        old = self.state
        if new == old:
            return
        self.state = new
        if new == ProcessState.BACKOFF:
            self.backoff += 1
            self.delay = now + self.backoff
        self.host.state_changed(old, new, expected)

    def _require(self, *states: ProcessState) -> None:
        if self.state not in states:
            allowed = " ".join(s.name for s in states)
            raise AssertionError(f"Assertion failed for {self.name}: {self.state.name} not in {allowed}")

    # -- commands ------------------------------------------------------------------------------

    def spawn(self, now: float) -> int | None:
        """Start the process (from STOPPED, EXITED, FATAL or BACKOFF). Returns the pid or None.
        While a dependency is not ready the start is held (`waiting`), in the state it was
        asked in; `tick` makes it once they are. A dependency that will not get ready by
        itself is this process's spawnerr, logged once."""
        if self.pid:
            self.host.log("warn", f"process '{self.name}' already running")
            return None
        blocker = self.host.blocker() if self.config.depends_on else None
        if blocker is not None:
            text = blocker.text()
            if blocker.dead and self.spawnerr != text:
                self.host.log("info", f"spawnerr: {text}")
            self.spawnerr = text if blocker.dead else None
            self.waiting = text
            return None
        self.waiting = ""
        self.killing = False
        self.spawnerr = None
        self.exitstatus = None
        self.system_stop = False
        self.administrative_stop = False
        self.laststart = now
        self._require(*SPAWNABLE_STATES)
        self._change(ProcessState.STARTING, now)
        try:
            pid = self.host.spawn()
        except SpawnError as exc:
            self.spawnerr = str(exc)
            self.host.log("info", f"spawnerr: {exc}")
            self._change(ProcessState.BACKOFF, now)
            return None
        self.pid = pid
        self.host.log("info", f"spawned: '{self.name}' with pid {pid}")
        self.delay = now + self.config.startsecs
        return pid

    def stop(self, now: float) -> str | None:
        """Administrative stop: the stop signal now, SIGKILL after stopwaitsecs."""
        self.administrative_stop = True
        self.laststopreport = 0.0
        return self.kill(self.config.stopsignal, now)

    def will_start(self) -> bool:
        """Whether a start is under way or coming without anyone asking (a dependency that
        will not is dead to its dependents)."""
        cfg = self.config
        if self.waiting or self.state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.BACKOFF):
            return True
        if self.state == ProcessState.STOPPED:
            return not self.laststart and cfg.autostart
        if self.state == ProcessState.EXITED:
            return cfg.autorestart == AutoRestart.ALWAYS or (
                cfg.autorestart == AutoRestart.UNEXPECTED and self.exitstatus not in cfg.exitcodes)
        return False

    def cancel_wait(self) -> bool:
        """A stop of a process whose start is held: the start is called off. True if one was."""
        held, self.waiting = bool(self.waiting), ""
        return held

    def give_up(self, now: float) -> None:
        """BACKOFF -> FATAL: no more retries (also how a shutdown stops a backing-off process)."""
        self.delay = 0.0
        self.backoff = 0
        self.system_stop = True
        self.waiting = ""
        self._require(ProcessState.BACKOFF)
        self._change(ProcessState.FATAL, now)

    def kill(self, sig: int, now: float) -> str | None:
        """Send a signal meant to end the process. Returns an error text, or None when sent."""
        if self.state == ProcessState.BACKOFF:
            # Do not make a stop wait for the remaining retries.
            self.host.log("debug", f"Attempted to kill {self.name}, which is in BACKOFF state.")
            self._change(ProcessState.STOPPED, now)
            return None
        if not self.pid:
            msg = f"attempted to kill {self.name} with sig {signame(sig)} but it wasn't running"
            self.host.log("debug", msg)
            return msg
        # The first signal follows stopasgroup; the SIGKILL after stopwaitsecs follows killasgroup.
        as_group = (self.config.killasgroup if self.state == ProcessState.STOPPING
                    else self.config.stopasgroup)
        group_text = "process group " if as_group else ""
        self.host.log("debug", f"killing {self.name} (pid {self.pid}) {group_text}with signal {signame(sig)}")
        self.killing = True
        self.delay = now + self.config.stopwaitsecs
        self._require(ProcessState.RUNNING, ProcessState.STARTING, ProcessState.STOPPING)
        self._change(ProcessState.STOPPING, now)
        return self._send(-self.pid if as_group else self.pid, sig, now, stopping=True)

    def signal(self, sig: int, now: float) -> str | None:
        """Send a signal without meaning to stop the process."""
        if not self.pid:
            msg = f"attempted to send {self.name} sig {signame(sig)} but it wasn't running"
            self.host.log("debug", msg)
            return msg
        self.host.log("debug", f"sending {self.name} (pid {self.pid}) sig {signame(sig)}")
        self._require(ProcessState.RUNNING, ProcessState.STARTING, ProcessState.STOPPING)
        return self._send(self.pid, sig, now, stopping=False)

    def _send(self, pid: int, sig: int, now: float, *, stopping: bool) -> str | None:
        try:
            self.host.kill(pid, sig)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                # It exited on its own; the exit notification will settle the state.
                self.host.log("debug", f"unable to signal {self.name} (pid {self.pid}), it probably "
                                       f"just exited on its own: {exc}")
                return None
            msg = f"unknown problem {'killing' if stopping else 'sending sig'} {self.name} ({self.pid}):{exc}"
            self.host.log("critical", msg)
            self._change(ProcessState.UNKNOWN, now)
            if stopping:
                self.killing = False
                self.delay = 0.0
            return msg
        return None

    # -- inputs from the world -----------------------------------------------------------------

    def exited(self, wait_status: int, now: float) -> None:
        """The process was reaped."""
        code, text = describe_wait_status(wait_status)
        self.laststop = now
        if now > self.laststart:
            too_quickly = now - self.laststart < self.config.startsecs
        else:
            too_quickly = False
            self.host.log("warn", f"process '{self.name}' ({self.pid}) laststart time is in the future, "
                                  "don't know how long process was running so assuming it did not "
                                  "exit too quickly")
        expected = code in self.config.exitcodes
        if self.killing:
            self.killing = False
            self.delay = 0.0
            self.exitstatus = code
            self._require(ProcessState.STOPPING)
            self._change(ProcessState.STOPPED, now)
            self.host.log("info" if expected else "warn", f"stopped: {self.name} ({text})")
        elif too_quickly:
            self.exitstatus = None
            self.spawnerr = "Exited too quickly (process log may have details)"
            self._require(ProcessState.STARTING)
            self._change(ProcessState.BACKOFF, now)
            self.host.log("warn", f"exited: {self.name} ({text}; not expected)")
        else:
            self.delay = 0.0
            self.backoff = 0
            self.exitstatus = code
            if self.state == ProcessState.STARTING:
                # It outlived startsecs before the timer noticed.
                self._change(ProcessState.RUNNING, now)
            self._require(ProcessState.RUNNING)
            if expected:
                self._change(ProcessState.EXITED, now, expected=True)
                self.host.log("info", f"exited: {self.name} ({text}; expected)")
            else:
                self.spawnerr = f"Bad exit code {code}"
                self._change(ProcessState.EXITED, now, expected=False)
                self.host.log("warn", f"exited: {self.name} ({text}; not expected)")
        self.pid = 0

    def tick(self, now: float, mood: SupervisorState) -> None:
        """Advance time-driven transitions: autostart, autorestart, retries, startsecs, SIGKILL."""
        state = self.state
        cfg = self.config
        if mood > SupervisorState.RESTARTING:
            if self.waiting and state in SPAWNABLE_STATES:
                self.spawn(now)
            elif state == ProcessState.EXITED:
                if cfg.autorestart == AutoRestart.ALWAYS or (
                        cfg.autorestart == AutoRestart.UNEXPECTED
                        and self.exitstatus not in cfg.exitcodes):
                    self.spawn(now)
            elif state == ProcessState.STOPPED and not self.laststart:
                if cfg.autostart:
                    self.spawn(now)
            elif state == ProcessState.BACKOFF:
                if self.backoff <= cfg.startretries and now > self.delay:
                    self.spawn(now)

        if state == ProcessState.STARTING and now - self.laststart > cfg.startsecs:
            self.delay = 0.0
            self.backoff = 0
            self._change(ProcessState.RUNNING, now)
            self.host.log("info", f"success: {self.name} entered RUNNING state, process has stayed up "
                                  f"for > than {cfg.startsecs} seconds (startsecs)")
        if state == ProcessState.BACKOFF:
            if self.backoff > cfg.startretries:
                self.give_up(now)
                self.host.log("info", f"gave up: {self.name} entered FATAL state, too many start "
                                      "retries too quickly")
        elif state == ProcessState.STOPPING and self.delay - now <= 0:
            self.host.log("warn", f"killing '{self.name}' ({self.pid}) with SIGKILL")
            self.kill(signal.SIGKILL, now)

    def next_tick(self, mood: SupervisorState) -> float | None:
        """When `tick` next has something to do (wall time), or None if only an input can."""
        if self.waiting and self.state in SPAWNABLE_STATES:
            return None  # a held start: the dependencies' changes wake it (Process.advance)
        if self.state == ProcessState.STARTING and self.pid:
            return self.laststart + self.config.startsecs
        if self.state == ProcessState.STOPPING:
            return self.delay
        if self.state == ProcessState.BACKOFF:
            if self.backoff > self.config.startretries:
                return 0.0  # give up at once
            return self.delay if mood > SupervisorState.RESTARTING else None
        return None
