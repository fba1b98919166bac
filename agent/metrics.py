"""/metrics on the agent's HTTP servers: the Prometheus text format, made by prometheus_client
from the live state at each scrape (the same auth as the rest of the HTTP face).

Nothing runs while nobody scrapes: no collection loop, and the hot paths only bump integers
(tally.py). A scrape reads each process's /proc/PID/stat once (CPU seconds and RSS) and walks
the process table; for 1000 programs that is well under 100 ms (benchmarks/metrics_scrape.py).

Per process (labels node, group, name): its state (a gauge per state name, 1 for the current
one), start time, starts after the first (restarts), exits by expected/unexpected, health
(where it has a check), CPU seconds, RSS and bytes written to its logs. Of the agent: the
event loop's lag at the scrape, events delivered to listeners, RPC calls by face and method,
and its build.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import weakref
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .health import Health
from .operations import AGENT_VERSION
from .process import Process
from .states import ProcessState
from .supervisor import Supervisor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def node_name(core: Supervisor) -> str:
    return core.config.fleetvisor.node if core.config.fleetvisor is not None else socket.gethostname()


def proc_usage(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a live process from /proc/PID/stat; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    # after the command's ")": state is field 3, utime 14, stime 15, rss 24 (proc(5))
    return (int(fields[11]) + int(fields[12])) / _TICKS, int(fields[21]) * _PAGE


class _Labels:
    """One process's label sets, made once: a scrape then builds no dict per sample."""

    __slots__ = ("base", "states", "healths", "expected", "unexpected", "channels")

    def __init__(self, node: str, proc: Process) -> None:
        self.base = {"node": node, "group": proc.group.name, "name": proc.name}
        self.states = [(state, {**self.base, "state": state.name}) for state in ProcessState]
        self.healths = [(health, {**self.base, "health": health.value}) for health in Health]
        self.expected = {**self.base, "expected": "true"}
        self.unexpected = {**self.base, "expected": "false"}
        self.channels = {channel: {**self.base, "channel": channel} for channel in ("stdout", "stderr")}


class AgentCollector(Collector):
    def __init__(self, core: Supervisor) -> None:
        self.core = core
        self.loop_lag = 0.0  # measured by the scrape just before it collects
        self._labels: weakref.WeakKeyDictionary[Process, _Labels] = weakref.WeakKeyDictionary()

    def collect(self) -> Iterator[Metric]:
        core, node = self.core, node_name(self.core)
        # samples are appended with their own label dicts: the families' label names go unused
        state = GaugeMetricFamily("fleetvisor_process_state", "1 for the process's current supervisord state, "
                                  "0 for the others", labels=[])
        started = GaugeMetricFamily("fleetvisor_process_start_time_seconds", "When the process was last started "
                                    "(unix time); 0 if never", labels=[])
        restarts = CounterMetricFamily("fleetvisor_process_restarts", "Starts after the first since the agent "
                                       "loaded the process", labels=[])
        exits = CounterMetricFamily("fleetvisor_process_exits", "Exits, by whether the exit status was expected",
                                    labels=[])
        health = GaugeMetricFamily("fleetvisor_process_health", "1 for the process's current health, 0 for the "
                                   "others (processes with a healthcheck)", labels=[])
        cpu = CounterMetricFamily("fleetvisor_process_cpu_seconds", "CPU time of the running process (user and "
                                  "system)", labels=[])
        rss = GaugeMetricFamily("fleetvisor_process_resident_memory_bytes", "Resident memory of the running "
                                "process", labels=[])
        logged = CounterMetricFamily("fleetvisor_process_log_bytes", "Bytes the process wrote to its log files",
                                     labels=[])
        for proc in core.all_processes():
            labels = self._labels.get(proc)
            if labels is None or labels.base["node"] != node:
                labels = self._labels[proc] = _Labels(node, proc)
            now = proc.state
            state.samples += [Sample("fleetvisor_process_state", lab, 1.0 if s is now else 0.0)
                              for s, lab in labels.states]
            started.samples.append(Sample("fleetvisor_process_start_time_seconds", labels.base,
                                          proc.lifecycle.laststart))
            tally = proc.tally
            restarts.samples.append(Sample("fleetvisor_process_restarts_total", labels.base,
                                           max(tally.starts - 1, 0)))
            exits.samples += [Sample("fleetvisor_process_exits_total", labels.expected, tally.exits_expected),
                              Sample("fleetvisor_process_exits_total", labels.unexpected, tally.exits_unexpected)]
            if proc.health is not None:
                current = proc.health.verdict.health
                health.samples += [Sample("fleetvisor_process_health", lab, 1.0 if h is current else 0.0)
                                   for h, lab in labels.healths]
            if proc.pid and (usage := proc_usage(proc.pid)) is not None:
                cpu.samples.append(Sample("fleetvisor_process_cpu_seconds_total", labels.base, usage[0]))
                rss.samples.append(Sample("fleetvisor_process_resident_memory_bytes", labels.base, usage[1]))
            logged.samples += [Sample("fleetvisor_process_log_bytes_total", labels.channels[channel], count.bytes)
                               for channel, count in tally.log_bytes.items()]
        yield from (state, started, restarts, exits, health, cpu, rss, logged)

        yield GaugeMetricFamily("fleetvisor_agent_event_loop_lag_seconds", "How long a callback waited in the "
                                "agent's event loop at the scrape", value=self.loop_lag)
        yield CounterMetricFamily("fleetvisor_agent_events_delivered", "Events handed to event listeners",
                                  value=core.tally.events_delivered)
        calls = CounterMetricFamily("fleetvisor_agent_rpc_calls", "RPC calls, by face (xmlrpc, grpc) and method",
                                    labels=["face", "method"])
        for (face, method), count in sorted(core.tally.rpc_calls.items()):
            calls.add_metric([face, method], count)
        yield calls
        build = GaugeMetricFamily("fleetvisor_build_info", "The running build",
                                  labels=["version", "component", "python"])
        build.add_metric([AGENT_VERSION, "agent", platform.python_version()], 1)
        yield build


class _Collected:
    """What one scrape collected, for the formatter to read in a worker thread."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


class Metrics:
    """The /metrics answer of one agent."""

    def __init__(self, core: Supervisor) -> None:
        self.collector = AgentCollector(core)
        self._formatted: dict[str, tuple[list[Sample], bytes]] = {}  # family -> its samples and text

    async def scrape(self) -> bytes:
        """Collected on the loop (it reads the live state), formatted in a worker thread: the
        text of 1000 programs takes prometheus_client ~90 ms, which the loop need not wait."""
        self.collector.loop_lag = await loop_lag()
        return await asyncio.to_thread(self._format, list(self.collector.collect()))

    def _format(self, families: list[Metric]) -> bytes:
        """Each family's text, made again only when its samples changed since the last scrape:
        on a steady host most do not (states, starts, exits, idle processes' CPU and RSS)."""
        parts = []
        for family in families:
            kept = self._formatted.get(family.name)
            if kept is None or kept[0] != family.samples:
                kept = self._formatted[family.name] = (family.samples, generate_latest(_Collected([family])))
            parts.append(kept[1])
        return b"".join(parts)


async def loop_lag() -> float:
    """How long a callback queued now waits for its turn: what every other callback pays."""
    loop = asyncio.get_running_loop()
    queued = loop.time()
    turn: asyncio.Future[float] = loop.create_future()
    loop.call_soon(lambda: turn.set_result(loop.time()))
    return await turn - queued
