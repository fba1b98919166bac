"""One supervised OS process on the agent's event loop.

`Process` is the runtime half of a process: it forks/execs, reads the child's pipes, learns of
its exit through a pidfd and runs the timers. Every decision is made by its `Lifecycle`; this
class only performs what the lifecycle asks for and feeds it what happened.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import grp
import os
import pwd
import shlex
import stat
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from itertools import islice
from typing import TYPE_CHECKING

from .childlog import ChildLog, debug_line
from .config.model import AUTO, GroupKind, LogConfig, ProcessConfig
from .events import OutputEvents, OutputTap
from .fdbudget import BUDGET
from .health import Monitor, Verdict
from .lifecycle import Blocker, Lifecycle, SpawnError
from .mainlog import Level
from .states import ProcessState
from .tally import ProcessTally

if TYPE_CHECKING:
    from .listener import Listener
    from .supervisor import ProcessGroup, Supervisor

DEFAULT_PATH = ["/bin", "/usr/bin", "/usr/local/bin"]
READ_CHUNK = 1 << 16
STDIN_IOV_MAX = 1024  # buffers per writev (the kernel's IOV_MAX)
# A listener's stdin takes a whole event in one write: a PROCESS_LOG event of a full pipeful
# of output (64 KB) plus its header is more than a default pipe holds, and in two writes the
# listener wakes, reads, sleeps and wakes again for the rest. (Measured on the benchmark's
# event scenario: about +30 % events/s.) The kernel allocates a pipe's pages as data is
# written, so the larger capacity costs no memory while the listener keeps up.
LISTENER_STDIN_PIPE = 1 << 17
# The wait status of a child whose real one is lost (reaped by another process): neither an
# exit nor a signal, so it reads as "unknown termination cause" and is never an expected exit.
UNKNOWN_WAIT_STATUS = 0xFFFF
# Loop timers may fire a hair early; startsecs needs "strictly more than".
TIMER_SLACK = 0.001


def errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


class CommandNotFound(SpawnError):
    """The command's file does not exist (startProcess answers NO_FILE, not NOT_EXECUTABLE)."""


def resolve_command(config: ProcessConfig) -> tuple[str, list[str]]:
    """(filename, argv) for the command, looked up on the program's PATH like supervisord."""
    try:
        argv = shlex.split(config.command)
    except ValueError as exc:
        raise SpawnError(f"can't parse command {config.command!r}: {exc}") from None
    if not argv:
        raise SpawnError("command is empty")
    program = argv[0]
    filename, st = program, None
    if "/" in program:
        st = _stat(program)
    else:
        path = config.env.get("PATH") or os.environ.get("PATH")
        for directory in path.split(os.pathsep) if path else DEFAULT_PATH:
            candidate = os.path.join(directory, program)
            st = _stat(candidate)
            if st is not None:
                filename = candidate
                break
    if st is None:
        raise CommandNotFound(f"can't find command {filename!r}")
    if stat.S_ISDIR(st.st_mode):
        raise SpawnError(f"command at {filename!r} is a directory")
    if not stat.S_IMODE(st.st_mode) & 0o111:
        raise SpawnError(f"command at {filename!r} is not executable")
    if not os.access(filename, os.X_OK):
        raise SpawnError(f"no permission to run command {filename!r}")
    return filename, argv


def grow_pipe(fd: int, size: int) -> bool:
    """Ask for a pipe capacity of `size` bytes; False if refused. An unprivileged user over
    the per-user pipe allowance (/proc/sys/fs/pipe-user-pages-soft) gets EPERM, as does a
    size above /proc/sys/fs/pipe-max-size: the pipe then keeps its size, which works too."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        return False
    return True


def _close(*fds: int) -> None:
    for fd in set(fds):
        if fd >= 0:
            os.close(fd)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def user_credentials(user: str) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary gids) for a user name or uid, as a spawn switches to them."""
    try:
        record = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise SpawnError(f"couldn't setuid to {user}: Can't find username {user!r}") from None
    groups = [g.gr_gid for g in grp.getgrall() if record.pw_name in g.gr_mem]
    return record.pw_uid, record.pw_gid, [record.pw_gid, *groups]


def _output_tap(process: Process, channel: str, log: ChildLog) -> OutputTap | None:
    if channel == "stdout" and process.listener is not None:
        return process.listener.stdout_tap(log)
    cfg = process.config.stdout if channel == "stdout" else process.config.stderr
    if cfg.capture_maxbytes or cfg.events_enabled:
        return OutputEvents(process, channel, log, capture_maxbytes=cfg.capture_maxbytes,
                            events_enabled=cfg.events_enabled)
    return None


def describe_pipe(pipe: object, process: Process, channel: str) -> str:
    """How supervisord's debug lines name one end of a child's pipe ("fd 9 closed, stopped
    monitoring <...>"): the same shape, with our objects' ids in place of its."""
    if channel == "stdin":
        kind = "PInputDispatcher"
    elif channel == "stdout" and process.listener is not None:
        kind = "PEventListenerDispatcher"
    else:
        kind = "POutputDispatcher"
    return (f"<{kind} at {id(pipe)} for <Subprocess at {id(process)} with name {process.name} "
            f"in state {process.state.name}> ({channel})>")


class OutputChannel:
    """The parent end of a child's stdout or stderr pipe and where its bytes go."""

    def __init__(self, process: Process, name: str, fd: int, log: ChildLog) -> None:
        self.process = process
        self.name = name
        self.fd = fd
        self.log = log
        # None unless something besides the log wants the bytes (listener protocol, capture
        # mode, log events): then it gets them instead, and the plain path below is skipped.
        self.tap = _output_tap(process, name, log)
        # A channel whose bytes become events lets busy listeners answer before each read.
        self.collects_answers = isinstance(self.tap, OutputEvents)
        # Checked on every wake, so asked once (the level is fixed for the log's life).
        self.blather = process.core.log.is_enabled(Level.BLAT)
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self.drain, False)

    def drain(self, whole: bool = True) -> None:
        """Move what the pipe holds now to where it goes: all of it, or when called as the
        reader, maybe one pipeful (the loop calls again while there is more)."""
        if self.tap is None and not self.process.core.log.is_enabled(Level.DEBG) and self._splice(whole):
            return
        if self.collects_answers and self.process.core.events.awaiting:
            self.process.core.events.collect_answers()
        while self.fd >= 0:
            try:
                data = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if self.blather and not whole:  # supervisord names the pipe of each read event
                described = describe_pipe(self, self.process, self.name)
                self.process.core.log.blather(f"read event caused by {described}")
            if not data:
                self.close()
                return
            if self.tap is not None:
                self.tap.feed(data)
            else:
                self.log.write(data)
                mainlog = self.process.core.log
                if mainlog.is_enabled(Level.DEBG):
                    mainlog.debug(debug_line(self.process.name, self.name, data))
            if not whole:
                return  # one chunk per wake: a flooding child must not starve the other fds

    def _splice(self, whole: bool) -> bool:
        """Splice the pipe into the log file: only the file wants the bytes, so they need not
        enter Python. False when the log cannot take them that way: read them instead.

        Unless `whole`, one splice and back to the loop: a splice holds the pipe's lock while
        it copies into the file, so the child cannot write meanwhile, and splicing again at
        once would find only what it wrote in the gap (measured: ~20 KB a call instead of a
        full 64 KB, and more CPU per GB than reading). Back in the loop, the pipe refills
        while the other channels are served.
        """
        while self.fd >= 0:
            try:
                moved = self.log.splice_from(self.fd, READ_CHUNK)
            except BlockingIOError:
                return True
            if moved is None:
                return False
            if moved == 0:
                self.close()
            elif not whole:
                return True
        return True

    def close(self) -> None:
        if self.fd >= 0:
            mainlog = self.process.core.log
            if mainlog.is_enabled(Level.DEBG):
                mainlog.debug(f"fd {self.fd} closed, stopped monitoring "
                              f"{describe_pipe(self, self.process, self.name)}")
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            if self.tap is not None:
                self.tap.close()
        self.log.close()


def own_stderr_log(config: ProcessConfig) -> bool:
    """Whether stderr has a log of its own (an event listener's stdout is the protocol)."""
    return not config.redirect_stderr or config.kind == GroupKind.EVENTLISTENER


def auto_log_channels(config: ProcessConfig) -> list[str]:
    """The channels whose log file is AUTO: a file in childlogdir made for each."""
    channels = ["stdout"] if config.stdout.logfile == AUTO else []
    if own_stderr_log(config) and config.stderr.logfile == AUTO:
        channels.append("stderr")
    return channels


class Process:
    """A configured process: its lifecycle plus the OS resources of its current run."""

    def __init__(self, config: ProcessConfig, group: ProcessGroup, core: Supervisor,
                 auto_logs: Mapping[tuple[str, str], str] | None = None) -> None:
        """`auto_logs`: AUTO log files made for it beforehand ((name, channel) -> path); the
        others are made here."""
        self.config = config
        self.group = group
        self.core = core
        self.lifecycle = Lifecycle(config, self)
        made = auto_logs or {}
        self.stdout_logfile = self._log_path(config.stdout.logfile, "stdout", made)
        self.stderr_logfile = (self._log_path(config.stderr.logfile, "stderr", made)
                               if own_stderr_log(config) else None)
        self._popen: subprocess.Popen | None = None
        self._pidfd = -1
        self._channels: list[OutputChannel] = []
        self.stdin_fd = -1
        self._holds_fcgi_socket = False
        # Written to stdin when the pipe takes it: the callers' buffers themselves (a cut one
        # as a memoryview of its rest), never copied into one growing buffer.
        self._stdin_pending: deque[bytes | memoryview] = deque()
        self._stdin_waiting = False
        self._timer: asyncio.TimerHandle | None = None
        # Set by the pool when this process is an event listener.
        self.listener: Listener | None = None
        self.health = Monitor(config.healthcheck, self) if config.healthcheck is not None else None
        self.tally = ProcessTally()

    def _log_path(self, value: str | None, channel: str, made: Mapping[tuple[str, str], str]) -> str | None:
        if value != AUTO:
            return value
        return made.get((self.config.name, channel)) or self.core.auto_log_path(self.config.name, channel)

    # -- facts ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def namespec(self) -> str:
        return f"{self.group.name}:{self.name}"

    @property
    def state(self) -> ProcessState:
        return self.lifecycle.state

    @property
    def pid(self) -> int:
        return self.lifecycle.pid

    # -- ProcessHost: what the lifecycle asks for ----------------------------------------------

    def _credentials(self) -> dict:
        """The Popen keywords that make a child run as the program's user."""
        if self.config.user is None:
            return {}
        uid, gid, groups = user_credentials(self.config.user)
        if uid == os.getuid():
            return {}
        if os.getuid() != 0:
            raise SpawnError(f"couldn't setuid to {uid}: Can't drop privilege as nonroot user")
        return {"user": uid, "group": gid, "extra_groups": groups}

    def spawn(self) -> int:
        filename, argv = resolve_command(self.config)
        kwargs = self._credentials()
        separate_stderr = self.stderr_logfile is not None or self.config.kind == GroupKind.EVENTLISTENER
        if not BUDGET.spawn_fits():  # keep descriptors back to answer on (see fdbudget)
            raise SpawnError(self._too_many_files())
        fcgi_fd = self._acquire_fcgi_socket()  # an fcgi-program's stdin is its listening socket
        try:
            stdin_r, stdin_w = os.pipe() if fcgi_fd < 0 else (-1, -1)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe() if separate_stderr else (-1, out_w)
        except OSError as exc:
            self._release_fcgi_socket()
            raise SpawnError(self._dispatcher_failure(exc)) from None
        # The logs are opened before the fork, as supervisord makes its dispatchers: a log
        # that cannot be opened is a spawn error, not a child running unwatched.
        logs: list[ChildLog] = []
        try:
            logs.append(self._open_log(self.config.stdout, self.stdout_logfile, "stdout"))
            if err_r >= 0:
                logs.append(self._open_log(self.config.stderr, self.stderr_logfile, "stderr"))
        except OSError as exc:
            for log in logs:
                log.close()
            _close(stdin_r, stdin_w, out_r, out_w, err_r, err_w)
            self._release_fcgi_socket()
            raise SpawnError(self._dispatcher_failure(exc)) from None
        try:
            self._popen = subprocess.Popen(
                argv, executable=filename, stdin=stdin_r if fcgi_fd < 0 else fcgi_fd, stdout=out_w, stderr=err_w,
                cwd=self.config.directory, env=self.core.child_environment(self),
                process_group=0,  # keep a Ctrl-C at supervisord's terminal away from children
                umask=-1 if self.config.umask is None else self.config.umask,
                close_fds=True, **kwargs)
            pid = self._popen.pid
            self.tally.starts += 1
        except OSError as exc:
            pid, failure = -1, self._spawn_failure(exc, argv[0])
        finally:
            _close(stdin_r, out_w, err_w)
        pidfd = -1
        if pid > 0:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError as exc:  # unwatchable: take the child back rather than lose it
                self._reap_unwatched()
                pid, failure = -1, self._dispatcher_failure(exc)
        if pid < 0:
            for log in logs:
                log.close()
            _close(stdin_w, out_r, err_r)
            self._release_fcgi_socket()
            raise SpawnError(failure)
        if self.listener is not None:
            self.listener.spawned()
            if stdin_w >= 0:
                grow_pipe(stdin_w, LISTENER_STDIN_PIPE)
        self.stdin_fd = stdin_w
        if stdin_w >= 0:
            os.set_blocking(stdin_w, False)
        self._channels = [OutputChannel(self, "stdout", out_r, logs[0])]
        if err_r >= 0:
            self._channels.append(OutputChannel(self, "stderr", err_r, logs[1]))
        self._pidfd = pidfd
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)
        return pid

    def _reap_unwatched(self) -> None:
        assert self._popen is not None
        self._popen.kill()
        self._popen.wait()
        self._popen = None

    def _too_many_files(self) -> str:
        return f"too many open files to spawn '{self.name}'"

    def _dispatcher_failure(self, exc: OSError) -> str:
        """supervisord's spawnerr for a pipe or log it could not make."""
        if exc.errno == errno.EMFILE:
            return self._too_many_files()
        return f"unknown error making dispatchers for '{self.name}': {errno_name(exc)}"

    def _acquire_fcgi_socket(self) -> int:
        sock = self.group.fcgi_socket
        if sock is None:
            return -1
        try:
            fd = sock.acquire()
        except OSError as exc:
            raise SpawnError(f"Could not create FastCGI socket {sock.config.url}: {exc.strerror}") from None
        self._holds_fcgi_socket = True
        return fd

    def _release_fcgi_socket(self) -> None:
        if self._holds_fcgi_socket:
            self._holds_fcgi_socket = False
            assert self.group.fcgi_socket is not None  # held only from the group's socket
            self.group.fcgi_socket.release()

    def _spawn_failure(self, exc: OSError, program: str) -> str:
        if exc.errno == errno.EMFILE:  # the pipe subprocess reports exec failures on
            return self._too_many_files()
        if exc.errno == errno.EAGAIN:
            return f"Too many processes in process table to spawn '{self.name}'"
        if self.config.directory is not None and exc.filename == self.config.directory:
            return f"couldn't chdir to {self.config.directory}: {errno_name(exc)}"
        if isinstance(exc, PermissionError) and exc.filename is None:
            return f"couldn't setuid to {self.config.user}: {exc.strerror}"
        return f"couldn't exec {program}: {errno_name(exc)}"

    def _open_log(self, cfg: LogConfig, path: str | None, channel: str) -> ChildLog:
        syslog_tag = self.name if cfg.syslog else None
        return ChildLog(path, maxbytes=cfg.maxbytes, backups=cfg.backups, syslog_tag=syslog_tag,
                        strip_ansi=self.core.config.supervisord.strip_ansi, notify=self.core.log.log_trouble,
                        counted=self.tally.log_bytes[channel])

    def kill(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)

    def log(self, level: str, message: str) -> None:
        getattr(self.core.log, level)(message)

    def state_changed(self, old: ProcessState, new: ProcessState, expected: bool | None) -> None:
        if new == ProcessState.EXITED or (new == ProcessState.BACKOFF and old == ProcessState.STARTING):
            if expected:
                self.tally.exits_expected += 1
            else:
                self.tally.exits_unexpected += 1
        self.core.process_state_changed(self, old, new, expected)
        if self.listener is not None and new == ProcessState.RUNNING:
            self.listener.running()
        if self.health is not None:
            if new == ProcessState.RUNNING:
                self.health.running(self.lifecycle.laststart)
            elif old == ProcessState.RUNNING:
                self.health.stopped()

    def blocker(self) -> Blocker | None:
        return self.core.blocker(self)

    # -- HealthHost: what the health monitor asks for -------------------------------------------

    def probe_spawn(self, argv: list[str], output: int) -> subprocess.Popen:
        """An exec health check, as the program runs: its user, directory, environment, umask."""
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                cwd=self.config.directory, env=self.core.child_environment(self),
                                process_group=0, umask=-1 if self.config.umask is None else self.config.umask,
                                close_fds=True, **self._credentials())

    def health_changed(self, before: Verdict, after: Verdict) -> None:
        self.core.health_changed(self, before, after)

    # -- driving the lifecycle -----------------------------------------------------------------

    def advance(self) -> None:
        """Run due transitions and arm the timer for the next one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        mood = self.core.mood
        try:
            while True:
                before = self.state
                now = time.time()
                self.lifecycle.tick(now, mood)
                due = self.lifecycle.next_tick(mood)
                if due is None:
                    return
                # A transition can make the next one due at once (a failed spawn, then FATAL).
                if due > now or self.state == before:
                    delay = max(0.0, due - time.time()) + TIMER_SLACK
                    self._timer = asyncio.get_running_loop().call_later(delay, self.advance)
                    return
        finally:
            self.core.hold(self, bool(self.lifecycle.waiting))

    def start(self) -> None:
        self.lifecycle.spawn(time.time())
        self.advance()

    def stop(self) -> str | None:
        self.lifecycle.cancel_wait()
        msg = self.lifecycle.stop(time.time())
        self.advance()
        return msg

    def cancel_start(self) -> bool:
        """A stop of a process whose start waits for its dependencies: called off."""
        held = self.lifecycle.cancel_wait()
        self.advance()
        return held

    def give_up(self) -> None:
        self.lifecycle.give_up(time.time())
        self.advance()

    def signal(self, sig: int) -> str | None:
        msg = self.lifecycle.signal(sig, time.time())
        self.advance()
        return msg

    def _on_exit(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        self._exited(status)

    def _exited(self, status: int) -> None:
        self._release()
        if self._popen is not None:
            self._popen.returncode = os.waitstatus_to_exitcode(status)
            self._popen = None
        self.lifecycle.exited(status, time.time())
        # supervisord learns of exits from SIGCHLD and says so after the exit line; a pidfd
        # tells us instead, but tools grep for the line.
        if self.core.log.is_enabled(Level.DEBG):
            self.core.log.debug("received SIGCHLD indicating a child quit")
        if self.listener is not None:
            self.listener.exited()
        self.advance()

    def _release(self) -> None:
        """Close everything of the finished run; output still in the pipes goes to the logs."""
        loop = asyncio.get_running_loop()
        if self._pidfd >= 0:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        for channel in self._channels:
            channel.drain()
            channel.close()
        self._channels = []
        self._close_stdin()
        self._release_fcgi_socket()

    # -- re-exec: handing the running child to the next agent, and taking it over ------------------

    def detach(self) -> tuple[int, int, int, bytes]:
        """Stop watching this run without ending it: the loop forgets the pipes and the exit
        notification, the descriptors stay open for the next agent. Bytes still in the pipes
        stay there for it to read. Returns (stdin, stdout, stderr) fds (-1 for none) and what
        was queued for stdin and not yet taken."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.health is not None:
            self.health.pause()
        if self._pidfd >= 0:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        fds = {"stdout": -1, "stderr": -1}
        for channel in self._channels:
            if channel.fd >= 0:
                loop.remove_reader(channel.fd)
                fds[channel.name], channel.fd = channel.fd, -1
            channel.log.close()
        self._channels = []
        if self._stdin_waiting:
            loop.remove_writer(self.stdin_fd)
            self._stdin_waiting = False
        pending = b"".join(bytes(b) for b in self._stdin_pending)
        self._stdin_pending.clear()
        stdin, self.stdin_fd = self.stdin_fd, -1
        self._popen = None  # the child stays unreaped: the next agent (same pid) reaps it
        return stdin, fds["stdout"], fds["stderr"], pending

    def attach(self, pid: int, stdin_fd: int, stdout_fd: int, stderr_fd: int, pending: bytes,
               gone: bool = False, health: Verdict | None = None) -> None:
        """Watch a running child a previous agent spawned (this process is still its parent).
        The lifecycle's fields are already set. `gone`: it was reaped meanwhile by someone
        else (a wrapper script exec'd in between, say): its exit is reported with an unknown
        status once the loop runs, after what is left in its pipes. `health`: the previous
        agent's verdict, which the checks carry on from. Raises OSError if it cannot be watched."""
        pidfd = -1 if gone else os.pidfd_open(pid)  # a zombie is fine: its exit is reported at once
        logs = [self._open_log(self.config.stdout, self.stdout_logfile, "stdout")]
        if stderr_fd >= 0:
            logs.append(self._open_log(self.config.stderr, self.stderr_logfile, "stderr"))
        self.stdin_fd = stdin_fd
        if stdout_fd >= 0:
            self._channels.append(OutputChannel(self, "stdout", stdout_fd, logs[0]))
        if stderr_fd >= 0:
            self._channels.append(OutputChannel(self, "stderr", stderr_fd, logs[-1]))
        self._pidfd = pidfd
        if gone:
            asyncio.get_running_loop().call_soon(self._exited, UNKNOWN_WAIT_STATUS)
        else:
            asyncio.get_running_loop().add_reader(pidfd, self._on_exit)
        if stdin_fd >= 0:
            os.set_blocking(stdin_fd, False)
            if pending:
                self._stdin_pending.append(pending)
                try:
                    self._flush_stdin()
                except OSError:  # the child closed its stdin meanwhile: the queue is dropped
                    self._close_stdin()
        if self.health is not None and self.state == ProcessState.RUNNING:
            self.health.resume(self.lifecycle.laststart, health or Verdict())

    def read_stdout(self) -> None:
        """Take one chunk of what the child has written on stdout, if any, now rather than
        when the loop reports it (a listener's answer: see EventBus.awaiting)."""
        if self._channels:
            self._channels[0].drain(False)

    def reopen_logs(self) -> None:
        for channel in self._channels:
            channel.log.reopen()

    def clear_logs(self) -> None:
        """clearProcessLogs: remove the log files and start empty ones (open logs are
        reopened at once). Raises OSError."""
        open_paths = set()
        for channel in self._channels:
            channel.log.clear()
            open_paths.add(channel.log.path)
        for path in {p for p in (self.stdout_logfile, self.stderr_logfile) if p is not None} - open_paths:
            if os.path.exists(path):
                os.remove(path)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))

    def write_stdin(self, data: bytes) -> None:
        """Queue bytes for the child's stdin and write what the pipe takes now; the rest
        follows when it is writable. Raises EPIPE if the child closed its end."""
        if self.stdin_fd < 0:
            raise OSError(errno.EPIPE, "Process' stdin channel is closed")
        if data:
            self._stdin_pending.append(data if type(data) is bytes else bytes(data))
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        pending = self._stdin_pending
        try:
            while pending:
                if len(pending) == 1:
                    written = os.write(self.stdin_fd, pending[0])
                else:
                    written = os.writev(self.stdin_fd, list(islice(pending, STDIN_IOV_MAX)))
                while written:
                    first = pending[0]
                    if written < len(first):
                        pending[0] = memoryview(first)[written:]
                        break
                    written -= len(first)
                    pending.popleft()
        except BlockingIOError:
            if not self._stdin_waiting:
                asyncio.get_running_loop().add_writer(self.stdin_fd, self._stdin_writable)
                self._stdin_waiting = True
            return
        except BrokenPipeError:
            self._close_stdin()
            raise
        if self._stdin_waiting:
            asyncio.get_running_loop().remove_writer(self.stdin_fd)
            self._stdin_waiting = False

    def _stdin_writable(self) -> None:
        mainlog = self.core.log
        if mainlog.is_enabled(Level.BLAT):
            mainlog.blather(f"write event caused by {describe_pipe(self._stdin_pending, self, 'stdin')}")
        try:
            self._flush_stdin()
        except OSError:  # the child closed its stdin: what was queued is dropped
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            if self._stdin_waiting:
                asyncio.get_running_loop().remove_writer(self.stdin_fd)
                self._stdin_waiting = False
            os.close(self.stdin_fd)
            self.stdin_fd = -1
        self._stdin_pending.clear()

    def close(self) -> None:
        """Forget the process (its group is being removed); it must not be running."""
        if self.health is not None:
            self.health.stopped()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
