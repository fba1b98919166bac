"""Health checks: a probe of a RUNNING process, beyond what supervisord can tell (that it stayed
up for startsecs).

A process with `healthcheck=` has a Monitor. While the process is RUNNING, the monitor runs one
probe at a time on the agent's loop (no thread per check): the first at once, then `interval`
seconds after the previous one ended. Each probe is bounded by `timeout`. Health is a field of
its own (unknown, healthy, unhealthy, with the last failure's message), never a process state:
stock clients see the states they know. The rule (`judge`) is Docker's: `retries` failures in a
row make a process unhealthy, one success makes it healthy, and failures in the `start_period`
after a start do not count until the first success.

The probes:
- exec: the command runs as the program's user, in its directory and environment; exit 0 is
  healthy. Its output's last line is the failure's message. It is watched through a pidfd and
  reaped by this monitor alone, like the program itself.
- http: a GET of the URL; a status below 400 is healthy. The connection is kept for the next
  probe when the server allows it (HTTP/1.1 with a Content-Length), as HTTP clients do.
- tcp: a connection that is accepted.

Cost is designed in, for 1000 programs probed every second: probes are plain loop callbacks
(no task, no stream, no transport), and their timers sit on a grid of SLACK seconds, so the
probes due in the same 50 ms start in one pass of the loop and their answers come back in a
few epoll waits instead of one each (benchmarks/health_checks.py).
"""

from __future__ import annotations

import asyncio
import enum
import errno
import ipaddress
import math
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from .config.model import HealthCheck, ProbeKind

SLACK = 0.05  # seconds: the grid probe timers are rounded up to
OUTPUT_KEPT = 1024  # bytes of an exec probe's output kept for the failure's message
MESSAGE_CHARS = 200
HEAD_MAX = 8192  # bytes of an HTTP answer's head read before it is judged on its status line
KEPT_BODY_MAX = 65536  # a longer body is not read to keep the connection: it is closed instead

Done = Callable[[str], None]  # told "" when a probe passed, else one line saying why it failed


class Health(enum.Enum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class Verdict:
    health: Health = Health.UNKNOWN
    failures: int = 0  # failures in a row that counted
    message: str = ""  # the last failure's


def judge(before: Verdict, failure: str, check: HealthCheck, *, in_start_period: bool) -> Verdict:
    """The health after one probe: `failure` is "" when it passed, else why it failed."""
    if not failure:
        if before.failures == 0 and before.health is Health.HEALTHY:
            return before  # the common case, without a new object a second per program
        return replace(before, health=Health.HEALTHY, failures=0)
    if in_start_period and before.health is Health.UNKNOWN:
        return replace(before, message=failure)  # still starting: not counted
    failures = before.failures + 1
    health = Health.UNHEALTHY if failures >= check.retries else before.health
    return Verdict(health, failures, failure)


def _at(loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
    return loop.call_at(math.ceil((loop.time() + delay) / SLACK) * SLACK, callback)


class Probe(Protocol):
    def start(self, done: Done) -> None:
        """Probe once; `done` is called exactly once, unless `cancel` comes first."""

    def cancel(self) -> None:
        """Abandon the probe in flight, if any, and drop what is kept for the next one."""


class Spawner(Protocol):
    def __call__(self, argv: list[str], output: int) -> subprocess.Popen: ...


def make_probe(check: HealthCheck, spawn: Spawner) -> Probe:
    if check.kind is ProbeKind.EXEC:
        return ExecProbe(shlex.split(check.target), spawn)
    if check.kind is ProbeKind.HTTP:
        return HttpProbe(check.target)
    host, _, port = check.target.rpartition(":")
    return TcpProbe(host.strip("[]"), int(port))


# -- network probes -------------------------------------------------------------------------------

class TcpProbe:
    """Connects, and is done once connected (or not). A name is resolved off the loop, once, and
    again after a connect fails; each of its addresses is tried in turn."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.addresses: list[tuple[int, tuple]] = []  # (family, socket address) to try in turn
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            self.literal = False
        else:
            self.literal = True
            self.addresses = [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (host, port))]
        self.loop: asyncio.AbstractEventLoop  # the running loop, taken at each start
        self.done: Done | None = None
        self.sock: socket.socket | None = None
        self._resolving: asyncio.Future | None = None
        self._tried = 0

    def start(self, done: Done) -> None:
        self.loop = asyncio.get_running_loop()
        self.done = done
        self._dial()

    def cancel(self) -> None:
        self.done = None
        if self._resolving is not None:
            self._resolving.cancel()
            self._resolving = None
        self._close()

    def _dial(self) -> None:
        if not self.addresses:
            self._resolve()
            return
        self._tried = 0
        self._connect()

    def _resolve(self) -> None:
        def resolved(future: asyncio.Future) -> None:
            self._resolving = None
            if future.cancelled():
                return
            if (exc := future.exception()) is not None:
                self._finish(f"cannot resolve {self.host}: {getattr(exc, 'strerror', None) or exc}")
                return
            self.addresses = [(family, address[:2]) for family, _, _, _, address in future.result()
                              if family in (socket.AF_INET, socket.AF_INET6)]
            if not self.addresses:
                self._finish(f"cannot resolve {self.host}: no IP address")
                return
            self._dial()
        self._resolving = asyncio.ensure_future(self.loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM))
        self._resolving.add_done_callback(resolved)

    def _connect(self) -> None:
        family, address = self.addresses[self._tried]
        sock = self.sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code == 0:
            self._connected()
        elif code == errno.EINPROGRESS:
            self.loop.add_writer(sock.fileno(), self._writable)
        else:
            self._refused(code)

    def _writable(self) -> None:
        assert self.sock is not None
        self.loop.remove_writer(self.sock.fileno())
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._refused(code)
        else:
            self._connected()

    def _refused(self, code: int) -> None:
        self._close()
        self._tried += 1
        if self._tried < len(self.addresses):
            self._connect()
            return
        if not self.literal:
            self.addresses = []  # resolved again for the next probe
        self._finish(f"cannot connect to {self.host}:{self.port}: {os.strerror(code)}")

    def _connected(self) -> None:
        self._close()
        self._finish("")

    def _finish(self, failure: str) -> None:
        done, self.done = self.done, None
        if done is not None:
            done(failure)

    def _close(self) -> None:
        if self.sock is not None:
            self.loop.remove_writer(self.sock.fileno())
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


class HttpProbe(TcpProbe):
    """A GET, judged on the status line. The connection is kept for the next probe when the
    answer says it may be (HTTP/1.1, a Content-Length of at most KEPT_BODY_MAX, no `close`):
    its reader stays registered in between, so a server that closes it is noticed and the next
    probe connects anew. A kept connection that fails before any answer is retried once on a new
    one, as HTTP clients do for a GET."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname is not None and parts.port is not None  # checked by the parser
        super().__init__(parts.hostname, parts.port)
        self.url = url
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                        "User-Agent: fleetvisor-healthcheck\r\n\r\n").encode()
        self.received = bytearray()
        self.reused = False
        self.failure = ""  # the status line's verdict, once read
        self.length = -1  # the whole answer's bytes, once its head is read and it may be kept

    def start(self, done: Done) -> None:
        self.loop = asyncio.get_running_loop()
        self.done = done
        self.received.clear()
        self.length = -1
        self.reused = self.sock is not None
        if self.reused:
            self._send()
        else:
            self._dial()

    def _connected(self) -> None:
        assert self.sock is not None
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self._send()

    def _send(self) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(self.request)
        except OSError as exc:
            self._lost(exc.strerror or str(exc))
            return
        if sent < len(self.request):  # a few hundred bytes into an empty socket buffer
            self._close()
            self._finish(f"{self.url}: the request could not be sent at once")

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc.strerror or str(exc))
            return
        if self.done is None:  # between probes: the server closed the kept connection
            self._close()
        elif not data:
            self._lost("the connection closed before an answer")
        else:
            self.received += data
            self._answer()

    def _lost(self, why: str) -> None:
        self._close()
        if self.reused and not self.received:
            self.reused = False
            self._dial()
        else:
            self._finish(f"{self.url}: {why}")

    def _answer(self) -> None:
        if self.length < 0:
            end = self.received.find(b"\r\n\r\n")
            if end < 0:
                if len(self.received) > HEAD_MAX:
                    self._close()
                    self._finish(self._judge(bytes(self.received)))
                return
            head = bytes(self.received[:end])
            self.failure = self._judge(head)
            body = _kept_body(head)
            if body is None:
                self._close()
                self._finish(self.failure)
                return
            self.length = end + 4 + body
        if len(self.received) < self.length:
            return  # the rest of the body
        if len(self.received) > self.length:
            self._close()  # more than it said: out of step, not reused
        self._finish(self.failure)

    def _judge(self, head: bytes) -> str:
        status = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1").split()
        if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
            return f"{self.url} did not answer HTTP"
        code = int(status[1])
        return "" if code < 400 else f"{self.url} answered HTTP {code}"


def _kept_body(head: bytes) -> int | None:
    """The body's length when the connection may be kept after reading it; else None."""
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 "):
        return None
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if (name == b"connection" and b"close" in value) or name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if not value.isdigit() or length is not None:
                return None
            length = int(value)
    return length if length is not None and length <= KEPT_BODY_MAX else None


# -- exec probes ----------------------------------------------------------------------------------

class ExecProbe:
    def __init__(self, argv: list[str], spawn: Spawner) -> None:
        self.argv = argv
        self.spawn = spawn
        self.run: _Run | None = None

    def start(self, done: Done) -> None:
        read_end, write_end = os.pipe()
        try:
            child = self.spawn(self.argv, write_end)
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(read_end)
            done(f"cannot run {self.argv[0]}: {getattr(exc, 'strerror', None) or exc}")
            return
        finally:
            os.close(write_end)

        def exited(code: int, output: bytes) -> None:
            self.run = None
            if code == 0:
                done("")
                return
            lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
            said = f": {lines[-1].strip()[:MESSAGE_CHARS]}" if lines else ""
            done(f"{self.argv[0]} exited with status {code}{said}")
        self.run = _Run(child, read_end, exited)

    def cancel(self) -> None:
        if self.run is not None:
            self.run.kill()
            self.run = None


class _Run:
    """One exec probe's child: its output read as it comes, its exit seen through a pidfd."""

    def __init__(self, child: subprocess.Popen, output: int, exited: Callable[[int, bytes], None] | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.child = child
        self.fd = output
        self.exited = exited
        self.output = bytearray()
        self.pidfd = os.pidfd_open(child.pid)
        os.set_blocking(output, False)
        self.loop.add_reader(output, self._readable)
        self.loop.add_reader(self.pidfd, self._reap)

    def kill(self) -> None:
        """Timed out or no longer wanted: killed; it is still reaped (and closed) once dead."""
        self.exited = None
        try:
            os.killpg(self.child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _readable(self) -> bool:
        """Take what the pipe holds; False once it holds nothing more for now."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        if not data:
            self.loop.remove_reader(self.fd)
        self.output.extend(data)
        del self.output[:-OUTPUT_KEPT]
        return bool(data)

    def _reap(self) -> None:
        pid, status = os.waitpid(self.child.pid, os.WNOHANG)
        if pid == 0:
            return
        self.child.returncode = os.waitstatus_to_exitcode(status)
        while self._readable():  # what it wrote just before it exited
            pass
        self.loop.remove_reader(self.pidfd)
        self.loop.remove_reader(self.fd)
        os.close(self.pidfd)
        os.close(self.fd)
        if self.exited is not None:
            self.exited(self.child.returncode, bytes(self.output))


# -- the monitor ----------------------------------------------------------------------------------

class HealthHost(Protocol):
    """What a monitor needs of its process."""

    def probe_spawn(self, argv: list[str], output: int) -> subprocess.Popen: ...
    def health_changed(self, before: Verdict, after: Verdict) -> None: ...


class Monitor:
    """The health check of one process, probing while the process is RUNNING."""

    def __init__(self, check: HealthCheck, host: HealthHost, clock: Callable[[], float] = time.time) -> None:
        self.check = check
        self.host = host
        self.clock = clock
        self.verdict = Verdict()
        self.probe = make_probe(check, host.probe_spawn)
        self._started_at = 0.0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None  # the next probe, or this one's timeout

    def running(self, started_at: float) -> None:
        """The process entered RUNNING after a start at `started_at`: probe it."""
        self.stopped()
        self._started_at = started_at
        self._timer = asyncio.get_running_loop().call_soon(self._start)

    def resume(self, started_at: float, verdict: Verdict) -> None:
        """Carry on from a previous agent's verdict (a re-exec): probe at once, as when the
        process entered RUNNING, with no health event for what was already known."""
        self.running(started_at)
        self.verdict = verdict

    def pause(self) -> None:
        """No more probes, the verdict kept: the agent is handing the process to its next run."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.probe.cancel()

    def stopped(self) -> None:
        """The process left RUNNING: no more probes, and its health is unknown again."""
        self.pause()
        self._set(Verdict())

    def _start(self) -> None:
        self._timer = _at(asyncio.get_running_loop(), self.check.timeout, self._timed_out)
        self.probe.start(self._finished)

    def _timed_out(self) -> None:
        self.probe.cancel()  # an exec probe is killed; a stuck connection is not kept
        self._finished(f"no answer within {self.check.timeout:g}s (healthcheck_timeout)")

    def _finished(self, failure: str) -> None:
        assert self._timer is not None
        self._timer.cancel()
        check = self.check
        verdict = judge(self.verdict, failure, check,
                        in_start_period=self.clock() - self._started_at < check.start_period)
        # armed before the verdict is told: telling it may stop the process (healthcheck_action),
        # and stopped() must find this timer to cancel it
        self._timer = _at(asyncio.get_running_loop(), check.interval, self._start)
        self._set(verdict)

    def _set(self, verdict: Verdict) -> None:
        before, self.verdict = self.verdict, verdict
        if before.health is not verdict.health:
            self.host.health_changed(before, verdict)
