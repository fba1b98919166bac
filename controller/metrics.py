"""The controller's /metrics: Prometheus collectors that read live state at scrape time (nothing
is collected while nobody scrapes), a gRPC timing interceptor, and the small HTTP server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from fleetvisor.agent.security.guard import LOOPBACK

from .fleet import Fleet
from .leadership import Leadership
from .operations import Operations
from .opmodel import ENDED, Kind, OpState, StepState
from .reconcile import Reconciler

log = logging.getLogger("fleetvisor.controller")

NODE_STATES = ("up", "down", "unreachable")


class MetricsConfigError(Exception):
    pass


def build_version() -> str:
    try:
        return version("fleetvisor")
    except PackageNotFoundError:
        return "unknown"


def check_listen(listen: str, insecure: bool) -> tuple[str, int]:
    """HOST:PORT; off loopback only with the operator's explicit --metrics-insecure, as the
    project serves nothing unauthenticated off loopback by default."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise MetricsConfigError(f"--metrics-listen {listen!r}: expected HOST:PORT")
    if host not in LOOPBACK and not insecure:
        raise MetricsConfigError(f"--metrics-listen {listen}: /metrics has no authentication; keep it on loopback "
                                 "or pass --metrics-insecure to let anyone who reaches the port read it")
    return host.strip("[]"), int(port)


def node_state(up: bool, reachable: bool) -> str:
    """up: heartbeats arrive and our state stream is connected; unreachable: heartbeats but no stream."""
    if not up:
        return "down"
    return "up" if reachable else "unreachable"


class FleetCollector(Collector):
    """Node, drift, reconcile and leader figures, composed from the controller's views per scrape."""

    def __init__(self, fleet: Fleet, leadership: Leadership, clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self.leadership = leadership
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        now = self.clock()
        nodes = self.fleet.views.nodes({})
        counts = dict.fromkeys(NODE_STATES, 0)
        age = GaugeMetricFamily("fleetvisor_controller_node_heartbeat_age_seconds",
                                "Seconds since the node's last heartbeat", labels=["node"])
        for n in nodes:
            counts[node_state(n.up, n.reachable)] += 1
            if n.last_heartbeat:
                age.add_metric([n.name], max(0.0, now - n.last_heartbeat))
        by_state = GaugeMetricFamily("fleetvisor_controller_nodes", "Member nodes by state", labels=["state"])
        for state, count in counts.items():
            by_state.add_metric([state], count)
        yield by_state
        yield age
        drift = GaugeMetricFamily("fleetvisor_controller_node_config_drift",
                                  "1 when the node's applied config revision is not the desired one", labels=["node"])
        attempts = GaugeMetricFamily("fleetvisor_controller_reconcile_failed_attempts",
                                     "Failed config pushes to the node since its last success", labels=["node"])
        last = GaugeMetricFamily("fleetvisor_controller_reconcile_last_attempt_timestamp_seconds",
                                 "Unix time of the last config push to the node", labels=["node"])
        held = GaugeMetricFamily("fleetvisor_controller_node_reconcile_held",
                                 "1 when nothing is pushed to the node (pinned or foreign)", labels=["node"])
        for s in self.fleet.views.config_status():
            drift.add_metric([s.node], 0 if s.in_sync else 1)
            attempts.add_metric([s.node], s.attempts)
            held.add_metric([s.node], 1 if s.held else 0)
            if s.last_attempt:
                last.add_metric([s.node], s.last_attempt)
        yield from (drift, attempts, last, held)
        yield GaugeMetricFamily("fleetvisor_controller_leader", "1 while this controller is the leader",
                                value=1 if self.leadership.is_leader else 0)
        yield GaugeMetricFamily("fleetvisor_controller_followed_nodes",
                                "Agents whose state stream this controller keeps (its share of the fleet)",
                                value=len(self.fleet.links.followed()))
        peers = GaugeMetricFamily("fleetvisor_controller_peer_connected",
                                  "1 while this controller gets the live state of the nodes another controller "
                                  "follows", labels=["controller"])
        assigned = GaugeMetricFamily("fleetvisor_controller_assigned_nodes",
                                     "Member nodes each live controller follows, as this controller assigns them",
                                     labels=["controller"])
        for share in self.fleet.shares():
            assigned.add_metric([share.id], share.nodes)
            if share.id != self.fleet.id:
                peers.add_metric([share.id], 1 if share.connected else 0)
        yield from (assigned, peers)


class ReconcileCollector(Collector):
    """The leader's config pushes per node, and how long each backed-off node waits."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler

    def collect(self) -> Iterator[Any]:
        pushes = CounterMetricFamily("fleetvisor_controller_reconcile_attempts",
                                     "Config pushes to the node by this controller (as leader)",
                                     labels=["node", "outcome"])
        for (node, failed), count in sorted(self.reconciler.pushes.items()):
            pushes.add_metric([node, "failure" if failed else "success"], count)
        wait = GaugeMetricFamily("fleetvisor_controller_reconcile_backoff_seconds",
                                 "Seconds until the next push to a node whose pushes failed", labels=["node"])
        for node, seconds in sorted(self.reconciler.backoff().items()):
            wait.add_metric([node], seconds)
        passes = CounterMetricFamily("fleetvisor_controller_reconcile_passes",
                                     "Passes over every node by this controller's reconciler (as leader)",
                                     value=self.reconciler.passes)
        yield from (pushes, wait, passes)


class OperationsCollector(Collector):
    """Operations by kind and state, and the progress of those still going. Operation ids label
    only unended operations, which the leader bounds (one at a time per selection)."""

    def __init__(self, operations: Operations) -> None:
        self.operations = operations

    def collect(self) -> Iterator[Any]:
        ops = self.operations.list(everything=True)
        counts = {(kind.value, state.word): 0 for kind in Kind if kind is not Kind.UNSPECIFIED
                  for state in OpState if state is not OpState.UNSPECIFIED}
        by_state = GaugeMetricFamily("fleetvisor_controller_operations", "Operations by kind and state",
                                     labels=["kind", "state"])
        batch = GaugeMetricFamily("fleetvisor_controller_operation_batch",
                                  "Current batch (0-based) of an unended operation", labels=["operation", "kind"])
        batches = GaugeMetricFamily("fleetvisor_controller_operation_batches",
                                    "Batches of an unended operation", labels=["operation", "kind"])
        done = GaugeMetricFamily("fleetvisor_controller_operation_steps_done",
                                 "Node steps finished (done or skipped) of an unended operation",
                                 labels=["operation", "kind"])
        steps = GaugeMetricFamily("fleetvisor_controller_operation_steps",
                                  "Node steps of an unended operation", labels=["operation", "kind"])
        for op in ops:
            key = (op.spec.kind.value, op.state.word)
            if key in counts:
                counts[key] += 1
            if op.state in ENDED:
                continue
            labels = [op.id, op.spec.kind.value]
            all_steps = op.steps()
            batch.add_metric(labels, op.current_batch)
            batches.add_metric(labels, len(op.batches))
            done.add_metric(labels, sum(s.state in (StepState.DONE, StepState.SKIPPED) for s in all_steps))
            steps.add_metric(labels, len(all_steps))
        for (kind, state), count in counts.items():
            by_state.add_metric([kind, state], count)
        yield from (by_state, batch, batches, done, steps)


class BuildCollector(Collector):
    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("fleetvisor_build", "fleetvisor build")
        info.add_metric([], {"version": build_version(), "component": "controller"})
        yield info


def grpc_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("fleetvisor_controller_grpc_request_duration_seconds",
                     "gRPC request latency by method and status code", ["method", "code"], registry=registry)


def etcd_histogram(registry: CollectorRegistry) -> Callable[[str, float], None]:
    """The etcd client's `observe`: request latency by etcd method (Range, Txn, LeaseGrant...)."""
    histogram = Histogram("fleetvisor_controller_etcd_request_duration_seconds",
                          "etcd request latency by operation", ["operation"], registry=registry)
    return lambda kind, seconds: histogram.labels(kind).observe(seconds)


class GrpcTiming(grpc.aio.ServerInterceptor):
    """Times each call of a known method; the label values are bounded: methods come from the
    registered service descriptors (`methods`), codes from grpc.StatusCode."""

    def __init__(self, histogram: Histogram, methods: frozenset[str]) -> None:
        self.histogram = histogram
        self.methods = methods

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method = details.method
        if handler is None or method not in self.methods:
            return handler
        observe = self.histogram
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start = time.perf_counter()
                failed = True
                try:
                    result = await inner(request, context)
                    failed = False
                    return result
                finally:
                    observe.labels(method, _code(context, failed)).observe(time.perf_counter() - start)
            return handler._replace(unary_unary=unary_unary)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start = time.perf_counter()
                failed = True
                try:
                    async for item in inner_stream(request, context):
                        yield item
                    failed = False
                finally:
                    observe.labels(method, _code(context, failed)).observe(time.perf_counter() - start)
            return handler._replace(unary_stream=unary_stream)
        return handler


def _code(context: grpc.aio.ServicerContext, failed: bool) -> str:
    """The status the call ends with: the one set (by abort or set_code), else OK, or, when the
    handler raised without setting one, UNKNOWN (what gRPC sends then; a cancelled stream too)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code != 0:
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return "UNKNOWN" if failed else "OK"


def service_methods(*descriptors: Any) -> frozenset[str]:
    """/package.Service/Method for every method of the given service descriptors."""
    return frozenset(f"/{d.full_name}/{m.name}" for d in descriptors for m in d.methods)


@dataclass
class MetricsServer:
    """Serves GET /metrics only, on the controller's own asyncio loop."""

    registry: CollectorRegistry
    host: str
    port: int
    _runner: web.AppRunner | None = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        return sockets[0].getsockname()[1] if sockets else self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
