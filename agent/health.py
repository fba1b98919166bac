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
- http: a GET of the URL; a status below 400 is healthy.
- tcp: a connection that is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shlex
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from .config.model import HealthCheck, ProbeKind

OUTPUT_KEPT = 1024  # bytes of an exec probe's output kept for the failure's message
MESSAGE_CHARS = 200


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
        return replace(before, health=Health.HEALTHY, failures=0)
    if in_start_period and before.health is Health.UNKNOWN:
        return replace(before, message=failure)  # still starting: not counted
    failures = before.failures + 1
    health = Health.UNHEALTHY if failures >= check.retries else before.health
    return Verdict(health, failures, failure)


class Spawner(Protocol):
    def __call__(self, argv: list[str], output: int) -> subprocess.Popen: ...


async def probe(check: HealthCheck, spawn: Spawner) -> str:
    """Run the check once: "" when it passed, else one line saying why it failed."""
    try:
        async with asyncio.timeout(check.timeout):
            if check.kind is ProbeKind.EXEC:
                return await _exec(shlex.split(check.target), spawn)
            if check.kind is ProbeKind.HTTP:
                return await _http(check.target)
            return await _tcp(check.target)
    except TimeoutError:
        return f"no answer within {check.timeout:g}s (healthcheck_timeout)"


def _endpoint(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host.strip("[]"), int(port)


class _Asking(asyncio.Protocol):
    """One connection of a probe: connected is enough for tcp; http sends its request and reads
    the status line. A bare protocol, not streams: a probe a second per program must be cheap."""

    def __init__(self, request: bytes | None, judge: Callable[[bytes], str], answer: asyncio.Future[str]) -> None:
        self.request = request
        self.judge = judge
        self.answer = answer
        self.received = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.request is None:
            self._answer("")
        else:
            transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if b"\n" in self.received or len(self.received) > 4096:
            self._answer(self.judge(bytes(self.received.split(b"\n", 1)[0])))

    def connection_lost(self, exc: Exception | None) -> None:
        self._answer("the connection closed before an answer")

    def _answer(self, failure: str) -> None:
        if not self.answer.done():
            self.answer.set_result(failure)
        if self.transport is not None:
            self.transport.close()


async def _ask(host: str, port: int, request: bytes | None, judge: Callable[[bytes], str] = lambda _: "") -> str:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    try:
        transport, _ = await loop.create_connection(lambda: _Asking(request, judge, answer), host, port)
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}"
    try:
        return await answer
    finally:
        transport.close()  # a timeout or a cancel: not left open


async def _tcp(target: str) -> str:
    return await _ask(*_endpoint(target), None)


async def _http(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None  # checked by the parser
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: fleetvisor-healthcheck\r\n"
               "Connection: close\r\n\r\n").encode()

    def judge(status_line: bytes) -> str:
        status = status_line.decode("latin-1").split()
        if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
            return f"{url} did not answer HTTP"
        code = int(status[1])
        return "" if code < 400 else f"{url} answered HTTP {code}"
    return await _ask(parts.hostname, parts.port, request, judge)


async def _exec(argv: list[str], spawn: Spawner) -> str:
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    try:
        child = spawn(argv, write_end)
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(read_end)
        return f"cannot run {argv[0]}: {getattr(exc, 'strerror', None) or exc}"
    finally:
        os.close(write_end)
    output = bytearray()
    exited: asyncio.Future[int] = loop.create_future()
    pidfd = os.pidfd_open(child.pid)
    os.set_blocking(read_end, False)

    def readable() -> bool:
        """Take what the pipe holds; False once it holds nothing more for now."""
        try:
            data = os.read(read_end, 65536)
        except BlockingIOError:
            return False
        if not data:
            loop.remove_reader(read_end)
        output.extend(data)
        del output[:-OUTPUT_KEPT]
        return bool(data)

    def drain() -> None:
        while readable():
            pass

    def reap() -> None:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid == 0:
            return
        child.returncode = os.waitstatus_to_exitcode(status)
        drain()  # what it wrote just before it exited
        loop.remove_reader(pidfd)
        loop.remove_reader(read_end)
        os.close(pidfd)
        os.close(read_end)
        if not exited.done():
            exited.set_result(child.returncode)

    loop.add_reader(read_end, readable)
    loop.add_reader(pidfd, reap)
    try:
        code = await asyncio.shield(exited)
    finally:
        if not exited.done():  # timed out or cancelled: reap() closes everything once it is dead
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    if code == 0:
        return ""
    lines = [line for line in bytes(output).decode("utf-8", "replace").splitlines() if line.strip()]
    said = f": {lines[-1].strip()[:MESSAGE_CHARS]}" if lines else ""
    return f"{argv[0]} exited with status {code}{said}"


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
        self._task: asyncio.Task[None] | None = None

    def running(self, started_at: float) -> None:
        """The process entered RUNNING after a start at `started_at`: probe it."""
        self.stopped()
        self._task = asyncio.get_running_loop().create_task(self._probe_loop(started_at))

    def stopped(self) -> None:
        """The process left RUNNING: no more probes, and its health is unknown again."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._set(Verdict())

    def _set(self, verdict: Verdict) -> None:
        before, self.verdict = self.verdict, verdict
        if before.health is not verdict.health:
            self.host.health_changed(before, verdict)

    async def _probe_loop(self, started_at: float) -> None:
        check = self.check
        while True:
            failure = await probe(check, self.host.probe_spawn)
            in_start = self.clock() - started_at < check.start_period
            self._set(judge(self.verdict, failure, check, in_start_period=in_start))
            await asyncio.sleep(check.interval)
