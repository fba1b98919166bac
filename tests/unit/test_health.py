"""Health checks (agent/health.py): the rule that turns probe outcomes into health, as a pure
function, and each probe kind against real endpoints and real commands on this machine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest

from fleetvisor.agent.config.model import HealthCheck, ProbeKind
from fleetvisor.agent.health import Health, Verdict, judge, probe

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


def check(kind: ProbeKind, target: str, timeout: float = 2.0) -> str:
    return run(probe(HealthCheck(kind, target, timeout=timeout), spawn), timeout=30)


def test_exec_probe_exit_status_and_last_line_of_output():
    assert check(ProbeKind.EXEC, "true") == ""
    assert check(ProbeKind.EXEC, "sh -c 'echo starting; echo db is down >&2; exit 3'") == \
        "sh exited with status 3: db is down"
    assert check(ProbeKind.EXEC, "/nonexistent/check").startswith("cannot run /nonexistent/check: ")


def test_exec_probe_over_its_timeout_is_killed_and_reaped():
    started = time.monotonic()
    assert check(ProbeKind.EXEC, "sh -c 'sleep 30 & wait'", timeout=0.5) == \
        "no answer within 0.5s (healthcheck_timeout)"
    assert time.monotonic() - started < 5

    def children() -> list[str]:
        return subprocess.run(["pgrep", "-f", "sleep 30"], capture_output=True, text=True).stdout.split()
    wait_for(lambda: not children(), 5, "the probe's process group killed")


async def serve(status: int | None) -> tuple[asyncio.Server, int]:
    """An HTTP server answering `status`, or accepting and never answering (None)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a TCP probe: connected, and gone
            return
        if status is None:
            await asyncio.sleep(30)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("status, expected", [
    (200, ""), (302, ""), (500, "answered HTTP 500"), (None, "no answer within 0.5s (healthcheck_timeout)"),
])
def test_http_probe(status, expected):
    async def body() -> str:
        server, port = await serve(status)
        async with server:
            url = f"http://127.0.0.1:{port}/health?deep=1"
            failure = await probe(HealthCheck(ProbeKind.HTTP, url, timeout=0.5), spawn)
            return failure.replace(url + " ", "")
    assert run(body(), timeout=30) == expected


def test_tcp_probe():
    async def body() -> tuple[str, str]:
        server, port = await serve(200)
        async with server:
            up = await probe(HealthCheck(ProbeKind.TCP, f"127.0.0.1:{port}"), spawn)
        closed = free_port()
        down = await probe(HealthCheck(ProbeKind.TCP, f"127.0.0.1:{closed}"), spawn)
        return up, down.replace(str(closed), "PORT")
    assert run(body(), timeout=30) == ("", f"cannot connect to 127.0.0.1:PORT: {os.strerror(111)}")
