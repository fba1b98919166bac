"""Health checks (agent/health.py): the rule that turns probe outcomes into health, as a pure
function, and each probe kind against real endpoints and real commands on this machine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import replace

import pytest

from fleetvisor.agent.config.model import HealthCheck, ProbeKind
from fleetvisor.agent.health import Health, Monitor, Verdict, judge, make_probe

from tests.support import free_port, run, wait_for

CHECK = HealthCheck(ProbeKind.TCP, "127.0.0.1:1", retries=3)


def outcomes(*failures: str, in_start_period: bool = False, before: Verdict = Verdict()) -> Verdict:
    verdict = before
    for failure in failures:
        verdict = judge(verdict, failure, CHECK, in_start_period=in_start_period)
    return verdict


def test_retries_failures_in_a_row_make_a_process_unhealthy_and_one_success_healthy():
    assert outcomes("down", "down") == Verdict(Health.UNKNOWN, 2, "down")
    assert outcomes("down", "down", "down") == Verdict(Health.UNHEALTHY, 3, "down")
    assert outcomes("down", "down", "down", "") == Verdict(Health.HEALTHY, 0, "down")  # the last failure stays told
    healthy = outcomes("")
    assert outcomes("slow", "slow", before=healthy).health is Health.HEALTHY  # not yet `retries` in a row
    assert outcomes("slow", "", "slow", "slow", before=healthy).health is Health.HEALTHY
    assert outcomes("slow", "slow", "slow", before=healthy).health is Health.UNHEALTHY


def test_failures_in_the_start_period_do_not_count_until_the_first_success():
    assert outcomes("booting", "booting", "booting", "booting", in_start_period=True) == \
        Verdict(Health.UNKNOWN, 0, "booting")
    healthy = outcomes("", in_start_period=True)
    assert outcomes("x", "x", "x", before=healthy, in_start_period=True).health is Health.UNHEALTHY


def spawn(argv: list[str], output: int) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, process_group=0,
                            close_fds=True)


class Host:
    """The process side of a monitor: spawns exec probes as a plain child, records each change."""

    def __init__(self) -> None:
        self.changes: asyncio.Queue[Verdict] = asyncio.Queue()

    def probe_spawn(self, argv: list[str], output: int) -> subprocess.Popen:
        return spawn(argv, output)

    def health_changed(self, before: Verdict, after: Verdict) -> None:
        self.changes.put_nowait(after)


async def probe_once(check: HealthCheck) -> str:
    """One probe through a Monitor (its schedule, its timeout): "" when it passed, else why not."""
    host = Host()
    monitor = Monitor(replace(check, retries=1, interval=3600), host)
    monitor.running(time.time())
    after = await host.changes.get()
    monitor.stopped()
    return "" if after.health is Health.HEALTHY else after.message


def check(kind: ProbeKind, target: str, timeout: float = 2.0) -> str:
    return run(probe_once(HealthCheck(kind, target, timeout=timeout)), timeout=30)


def test_exec_probe_exit_status_and_last_line_of_output():
    assert check(ProbeKind.EXEC, "true") == ""
    assert check(ProbeKind.EXEC, "sh -c 'echo starting; echo db is down >&2; exit 3'") == \
        "sh exited with status 3: db is down"
    assert check(ProbeKind.EXEC, "/nonexistent/check").startswith("cannot run /nonexistent/check: ")


def test_exec_probe_over_its_timeout_is_killed_and_reaped():
    started = time.monotonic()
    assert check(ProbeKind.EXEC, "sh -c 'sleep 30.0417 & wait'", timeout=0.5) == \
        "no answer within 0.5s (healthcheck_timeout)"
    assert time.monotonic() - started < 5

    def children() -> list[str]:
        # exactly this probe's sleep: "sleep 30" also matched other tests' "sleep 300..." under xdist
        return subprocess.run(["pgrep", "-f", "^sleep 30.0417$"], capture_output=True, text=True).stdout.split()
    wait_for(lambda: not children(), 5, "the probe's process group killed")


class Server:
    """An HTTP server on loopback that counts its connections. `answer` is what it writes for each
    request (None: it never answers); `close` says whether it closes the connection after."""

    def __init__(self, answer: bytes | None, close: bool = False) -> None:
        self.answer, self.close = answer, close
        self.connections = 0
        self.open = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()

    def url(self, path: str = "/health?deep=1") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.writers.append(writer)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                if self.answer is None:
                    await asyncio.sleep(30)
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):  # a TCP probe: connected, and gone
            pass
        self.open -= 1
        writer.close()


def status(code: int, headers: str = "Content-Length: 0\r\n", body: str = "") -> bytes:
    return f"HTTP/1.1 {code} X\r\n{headers}\r\n{body}".encode()


@pytest.mark.parametrize("answer, expected", [
    (status(200), ""), (status(302), ""), (status(500), "answered HTTP 500"),
    (None, "no answer within 0.5s (healthcheck_timeout)"), (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer HTTP"),
])
def test_http_probe(answer, expected):
    async def body() -> str:
        async with Server(answer) as server:
            failure = await probe_once(HealthCheck(ProbeKind.HTTP, server.url(), timeout=0.5))
            return failure.replace(server.url() + " ", "")
    assert run(body(), timeout=30) == expected


def test_tcp_probe():
    async def body() -> tuple[str, str]:
        async with Server(status(200)) as server:
            up = await probe_once(HealthCheck(ProbeKind.TCP, f"127.0.0.1:{server.port}"))
        closed = free_port()
        down = await probe_once(HealthCheck(ProbeKind.TCP, f"127.0.0.1:{closed}"))
        return up, down.replace(str(closed), "PORT")
    assert run(body(), timeout=30) == ("", f"cannot connect to 127.0.0.1:PORT: {os.strerror(111)}")


def test_a_name_is_resolved_and_its_addresses_tried():
    async def body() -> str:
        async with Server(status(200)) as server:
            return await probe_once(HealthCheck(ProbeKind.HTTP, f"http://localhost:{server.port}/"))
    assert run(body(), timeout=30) == ""  # localhost may resolve to ::1 first; the server is on 127.0.0.1


async def probes(server: Server, count: int, between=None) -> list[str]:
    """`count` probes of `server` by one HttpProbe, as a monitor runs them: one at a time."""
    probe = make_probe(HealthCheck(ProbeKind.HTTP, server.url()), spawn)
    failures = []
    try:
        for _ in range(count):
            answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            probe.start(answered.set_result)
            failures.append(await asyncio.wait_for(answered, 5))
            if between is not None:
                await between()
    finally:
        probe.cancel()
    return failures


@pytest.mark.parametrize("answer, close, connections", [
    (status(200), False, 1),  # HTTP/1.1 with a length: kept
    (status(200, "Content-Length: 5\r\n", "fine\n"), False, 1),  # its body read to keep it
    (status(200, "Content-Length: 0\r\nConnection: close\r\n"), True, 3),
    (status(200, "Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), False, 3),  # not kept
    (b"HTTP/1.0 200 OK\r\n\r\n", True, 3),
    (status(200, f"Content-Length: {70000}\r\n", "x" * 70000), False, 3),  # too long to read for reuse
])
def test_an_http_connection_is_kept_between_probes_when_the_server_allows(answer, close, connections):
    async def body() -> tuple[list[str], int]:
        async with Server(answer, close) as server:
            return await probes(server, 3), server.connections
    assert run(body(), timeout=30) == (["", "", ""], connections)


def test_a_kept_connection_the_server_drops_is_replaced_without_a_failure():
    async def body() -> tuple[list[str], int]:
        async with Server(status(200)) as server:
            async def drop() -> None:
                for writer in server.writers:
                    writer.transport.abort()  # a reset, as an idle timeout of a proxy would do
                await asyncio.sleep(0)
            return await probes(server, 3, between=drop), server.connections
    assert run(body(), timeout=30) == (["", "", ""], 3)


def test_a_stuck_kept_connection_is_not_used_after_a_timeout():
    async def body() -> tuple[str, str, int]:
        async with Server(status(200)) as server:
            host = Host()
            monitor = Monitor(HealthCheck(ProbeKind.HTTP, server.url(), interval=0.05, timeout=0.3, retries=1), host)
            monitor.running(time.time())
            assert (await host.changes.get()).health is Health.HEALTHY
            server.answer = None  # the kept connection's next request is never answered
            unhealthy = await host.changes.get()
            server.answer = status(200)
            healthy = await host.changes.get()
            monitor.stopped()
            return unhealthy.message, healthy.health.value, server.connections
    message, health, connections = run(body(), timeout=30)
    assert (message, health) == ("no answer within 0.3s (healthcheck_timeout)", "healthy")
    assert connections >= 2  # the stuck one was dropped, not asked again


def test_a_stopped_monitor_probes_no_more_and_keeps_no_connection():
    async def body() -> tuple[int, int, int]:
        async with Server(status(200)) as server:
            host = Host()
            monitor = Monitor(HealthCheck(ProbeKind.HTTP, server.url(), interval=0.05), host)
            monitor.running(time.time())
            await host.changes.get()
            assert server.open == 1
            monitor.stopped()
            assert (await host.changes.get()).health is Health.UNKNOWN
            seen = server.connections
            await asyncio.sleep(0.3)  # several intervals: nothing more may arrive
            return seen, server.connections, server.open
    seen, later, still_open = run(body(), timeout=30)
    assert (later, still_open) == (seen, 0)
