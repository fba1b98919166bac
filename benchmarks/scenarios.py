"""The measured scenarios. Each runs one daemon kind once and returns named figures.

A figure's target is a bound on the ratio agent / supervisord (see Metric). Quick mode keeps
every scenario's shape but shrinks counts and durations so the suite can run it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .daemons import Daemon, sleepers, usage

LISTENER = Path(__file__).with_name("listener.py")


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    target: float  # the ratio agent / supervisord must reach
    higher_is_better: bool = False

    def met(self, ratio: float) -> bool:
        return ratio >= self.target if self.higher_is_better else ratio <= self.target


@dataclass(frozen=True)
class Scenario:
    name: str
    metrics: tuple[Metric, ...]
    run: Callable[[str, bool], dict[str, float]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- start / stop ------------------------------------------------------------------------------

def start_n(count: int, startsecs: int) -> Callable[[str, bool], dict[str, float]]:
    def run(kind: str, quick: bool) -> dict[str, float]:
        n = max(10, count // 20) if quick else count
        with Daemon(kind, sleepers(n, startsecs)) as d:
            ready = d.all_running(n)
            result = {"start": ready - d.started_at - startsecs}
            server = d.rpc()
            t0 = time.monotonic()
            server.supervisor.stopAllProcesses(True)
            result["stop"] = time.monotonic() - t0
        return result
    return run


# -- idle cost ---------------------------------------------------------------------------------

def idle(kind: str, quick: bool) -> dict[str, float]:
    seconds = 3.0 if quick else 30.0
    n = 50 if quick else 1000
    figures: dict[str, float] = {}
    for count in (0, n):
        with Daemon(kind, sleepers(count)) as d:
            d.all_running(count)
            time.sleep(1.0)  # let start-up work finish before the window opens
            before = usage(d.pid)
            time.sleep(seconds)  # the idle window itself is what is measured
            after = usage(d.pid)
            figures[f"cpu_{count}"] = after.cpu_seconds - before.cpu_seconds
            figures[f"rss_{count}"] = after.rss_bytes
    figures["rss_per_program"] = (figures[f"rss_{n}"] - figures["rss_0"]) / n
    return {"cpu_idle_0": figures["cpu_0"], "cpu_idle_n": figures[f"cpu_{n}"],
            "rss_0": figures["rss_0"] / 2**20, "rss_per_program": figures["rss_per_program"] / 1024}


# -- log throughput ----------------------------------------------------------------------------

def log_throughput(kind: str, quick: bool) -> dict[str, float]:
    children = 10
    seconds = 3.0 if quick else 60.0
    limit = (200 if quick else 2048) * 2**20
    line = "x" * 100
    programs = "".join(
        f"[program:w{i}]\ncommand=yes {line}\nstartsecs=0\nautostart=false\n"
        f"stdout_logfile=%(here)s/w{i}.log\nstdout_logfile_maxbytes=0\n\n" for i in range(children))
    with Daemon(kind, programs) as d:
        server = d.rpc()
        d.wait_until(lambda s: len(s.supervisor.getAllProcessInfo()) == children)
        before = usage(d.pid)
        t0 = time.monotonic()
        server.supervisor.startAllProcesses(False)
        logs = [d.workdir / f"w{i}.log" for i in range(children)]

        def landed() -> int:
            return sum(p.stat().st_size for p in logs if p.exists())
        while time.monotonic() - t0 < seconds and landed() < limit:
            time.sleep(0.05)
        server.supervisor.stopAllProcesses(True)
        elapsed = time.monotonic() - t0
        after = usage(d.pid)
        total = landed()
    gb = total / 2**30
    return {"mb_per_s": total / 2**20 / elapsed, "cpu_per_gb": (after.cpu_seconds - before.cpu_seconds) / gb}


# -- status at scale ---------------------------------------------------------------------------

def status_latency(kind: str, quick: bool) -> dict[str, float]:
    n = 100 if quick else 1000
    calls = 20 if quick else 200
    with Daemon(kind, sleepers(n)) as d:
        d.all_running(n)
        server = d.rpc()
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter()
            server.supervisor.getAllProcessInfo()
            samples.append(time.perf_counter() - t0)
    return {"p50_ms": statistics.median(samples) * 1000, "p99_ms": percentile(samples, 0.99) * 1000}


# -- crash -> restart --------------------------------------------------------------------------

def restart_latency(kind: str, quick: bool) -> dict[str, float]:
    restarts = 10 if quick else 60
    program = ("[program:crash]\n"
               "command=/bin/sh -c 'date +%%s%%N >> %(here)s/starts; date +%%s%%N >> %(here)s/ends'\n"
               "autorestart=true\nstartsecs=0\nstartretries=1000000\n"
               "stdout_logfile=NONE\nstderr_logfile=NONE\n")
    with Daemon(kind, program) as d:
        starts, ends = d.workdir / "starts", d.workdir / "ends"

        def enough(_server) -> bool:
            return starts.exists() and len(starts.read_text().split()) > restarts
        d.wait_until(enough, timeout=600, interval=0.05)
        d.rpc().supervisor.stopAllProcesses(True)
        begin = [int(x) for x in starts.read_text().split()]
        finish = [int(x) for x in ends.read_text().split()]
    gaps = [(b - e) / 1e6 for e, b in zip(finish, begin[1:])]
    return {"p50_ms": statistics.median(gaps), "p99_ms": percentile(gaps, 0.99)}


# -- events ------------------------------------------------------------------------------------

def event_rate(kind: str, quick: bool) -> dict[str, float]:
    seconds = 3.0 if quick else 20.0
    programs = (
        "[program:chatter]\ncommand=yes event-payload\nstartsecs=0\nautostart=false\n"
        "stdout_logfile=NONE\nstdout_events_enabled=true\n\n"
        f"[eventlistener:counter]\ncommand={sys.executable} {LISTENER} %(here)s/count\n"
        "events=PROCESS_LOG_STDOUT\nbuffer_size=1000\nstderr_logfile=NONE\n")
    with Daemon(kind, programs) as d:
        count_file = d.workdir / "count"
        d.wait_until(lambda s: any(i["name"] == "counter" and i["statename"] == "RUNNING"
                                   for i in s.supervisor.getAllProcessInfo()))
        server = d.rpc()
        server.supervisor.startProcess("chatter", False)

        def counted() -> int:
            try:
                return int(count_file.read_text() or 0)
            except (OSError, ValueError):
                return 0
        d.wait_until(lambda s: counted() > 0, timeout=30)
        first, t0 = counted(), time.monotonic()
        time.sleep(seconds)  # the measurement window
        last, elapsed = counted(), time.monotonic() - t0
        server.supervisor.stopProcess("chatter", True)
    return {"events_per_s": (last - first) / elapsed}


SCENARIOS: tuple[Scenario, ...] = (
    *(Scenario(f"start_stop_{n}", (Metric("start", "s", 0.5), Metric("stop", "s", 0.5)), start_n(n, 0))
      for n in (100, 500, 1000)),
    Scenario("start_startsecs1_1000", (Metric("start", "s", 0.5),), start_n(1000, 1)),
    Scenario("idle", (Metric("cpu_idle_0", "s", 1.0), Metric("cpu_idle_n", "s", 1.0),
                      Metric("rss_0", "MiB", 2.0), Metric("rss_per_program", "KiB", 1.0)), idle),
    Scenario("log_throughput", (Metric("mb_per_s", "MB/s", 2.0, higher_is_better=True),
                                Metric("cpu_per_gb", "s/GB", 0.5)), log_throughput),
    Scenario("getAllProcessInfo", (Metric("p50_ms", "ms", 0.5), Metric("p99_ms", "ms", 0.5)), status_latency),
    Scenario("crash_restart", (Metric("p50_ms", "ms", 0.5), Metric("p99_ms", "ms", 0.5)), restart_latency),
    Scenario("event_delivery", (Metric("events_per_s", "ev/s", 2.0, higher_is_better=True),), event_rate),
)

