"""This controller's live view of every registered agent.

One `NodeLink` per node: a gRPC channel (reused for commands) and a follower of the agent's
WatchEvents stream that keeps the node's processes current. After a lost connection the
follower reconnects with capped backoff and resumes after the last event it saw; an agent
that restarted (another run id) or whose journal moved on sends a fresh snapshot instead.
HTTP/2 keepalive pings notice a silent network cut within a few seconds.

This is the controller's agent client: with service.py, the only module that speaks the
agent's protobuf. Commands take and return the core's values (processes.py).
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from collections.abc import Callable
from typing import Any

import grpc

from fleetvisor.agent.security.guard import NODE_KEY
from fleetvisor.agent.security.tlsfiles import TlsMaterial
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc

from .backoff import Backoff
from .processes import AgentCallFailed, ProcessResult

# Ping an idle connection every 2 s and give up on it 3 s later: a cut link shows well
# inside a node's lease TTL. The agent's server allows pings this frequent.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 3000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
]


class _NameTheNode:
    """Every call says which node it is meant for; an agent refuses one meant for another, so
    a node that took over a gone node's address never gets that node's config or commands.
    (A channel files an interceptor under one call kind only: one object per kind.)"""

    def __init__(self, node: str) -> None:
        self.metadata = ((NODE_KEY, node),)

    def _named(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return details._replace(metadata=grpc.aio.Metadata(*(details.metadata or ()), *self.metadata))


class _NameTheNodeUnary(_NameTheNode, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        return await continuation(self._named(details), request)


class _NameTheNodeStream(_NameTheNode, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                     request: Any) -> Any:
        return await continuation(self._named(details), request)


# What an agent answers when it refuses a config as it is (its parser, its deploy policy).
REFUSALS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


def rpc_reason(exc: grpc.aio.AioRpcError) -> str:
    """One line about a failed call, without gRPC's debug string."""
    details = (exc.details() or "").strip().splitlines()
    text = details[0] if details else exc.code().name
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        return f"unreachable ({text.rsplit(': ', 1)[-1]})"
    if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timed out"
    return text


_FAULT_NAME = re.compile(r"^[A-Z_]+: ")  # the supervisord fault an agent's refusal starts with


def running_description(proc: apb.ProcessInfo, elapsed: float) -> str:
    """supervisorctl's text for a RUNNING process, `elapsed` seconds after the agent said it."""
    uptime = datetime.timedelta(seconds=max(0, int(proc.now - proc.start + elapsed)))
    return f"pid {proc.pid}, uptime {uptime}"


class NodeLink:
    def __init__(self, name: str, address: str, tls: TlsMaterial | None,
                 on_change: Callable[[NodeLink], None]) -> None:
        self.name = name
        self.address = address
        self.on_change = on_change
        self.tls = tls
        self.channel, self.generation = self._dial()
        self.stub = apb_grpc.AgentServiceStub(self.channel)
        self.processes: dict[str, apb.ProcessInfo] = {}
        self.received: dict[str, float] = {}  # namespec -> monotonic time its info arrived
        self.info: apb.AgentInfo | None = None
        self.reachable = False
        self.state_as_of = 0.0
        self.error = "not connected yet"
        self.run_id = ""
        self.sequence = 0
        self.sessions = 0  # event streams established: one more after an agent re-exec'd or came back
        self._task: asyncio.Task[None] | None = None
        self._loading: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"follow {self.name}")

    def _dial(self) -> tuple[grpc.aio.Channel, int]:
        """A channel with the controller's current certificate, and that set's generation."""
        interceptors: list[grpc.aio.ClientInterceptor] = [_NameTheNodeUnary(self.name), _NameTheNodeStream(self.name)]
        if self.tls is None:
            return grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS, interceptors=interceptors), 0
        credentials = self.tls.channel_credentials()
        # Under TLS the agent must show a certificate for its node name, whatever the address.
        options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", self.name)]
        return (grpc.aio.secure_channel(self.address, credentials, interceptors=interceptors, options=options),
                self.tls.generation)

    async def _redial_if_rotated(self) -> None:
        """After a failure: a link dialled before a certificate rotation dials again with the
        new set (its reconnects would keep showing the old one, which peers may no longer
        trust). A link that works keeps its connection and streams."""
        if self.tls is None:
            return
        self.tls.refresh()
        if self.tls.generation == self.generation:
            return
        old = self.channel
        self.channel, self.generation = self._dial()
        self.stub = apb_grpc.AgentServiceStub(self.channel)
        await old.close(grace=None)

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._loading) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.channel.close()

    @property
    def has_data(self) -> bool:
        """Whether the agent has sent its processes at least once."""
        return self.info is not None

    async def command(self, action: str, names: list[str], *, timeout: float, wait: bool = False,
                      signal: str = "", cluster_id: str = "") -> list[ProcessResult]:
        """Start, stop, restart or signal `names` on the agent, for the cluster `cluster_id` (an
        agent with controllers refuses a start or stop of its fleet programs without one).
        Raises AgentCallFailed."""
        if action == "signal":
            call = self.stub.Signal(apb.SignalCommand(names=names, signal=signal), timeout=timeout)
        else:
            method = {"start": self.stub.Start, "stop": self.stub.Stop, "restart": self.stub.Restart}[action]
            call = method(apb.ProcessCommand(names=names, wait=wait, cluster_id=cluster_id), timeout=timeout)
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            raise AgentCallFailed(rpc_reason(exc)) from None
        return [ProcessResult(r.name, r.ok, r.status, r.description, r.state) for r in answer.results]

    async def apply_config(self, revision: str, text: str, *, cluster_id: str, timeout: float,
                           dry_run: bool = False) -> None:
        """Make the agent run this fleet config, as the cluster `cluster_id` (with `dry_run`: only
        ask whether it would). Raises AgentCallFailed, `refused` when the agent refuses the config."""
        try:
            await self.stub.ApplyConfig(apb.ApplyConfigRequest(revision=revision, config_text=text,
                                                               cluster_id=cluster_id, dry_run=dry_run),
                                        timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise AgentCallFailed(rpc_reason(exc), refused=exc.code() in REFUSALS) from None

    async def reexec(self, *, dry_run: bool, timeout: float) -> apb.ReexecResponse:
        """Ask the agent to re-exec into its installed agent (with `dry_run`: only whether it
        would). Raises AgentCallFailed, `refused` when the agent refuses (fcgi programs, a failed
        dry run)."""
        try:
            return await self.stub.Reexec(apb.ReexecRequest(dry_run=dry_run), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            reason = _FAULT_NAME.sub("", rpc_reason(exc), count=1)  # "re-exec refused: ..." says it all
            raise AgentCallFailed(reason, refused=exc.code() != grpc.StatusCode.UNAVAILABLE) from None

    async def ask_info(self, timeout: float) -> tuple[str, int, list[apb.ProcessInfo]]:
        """The agent's version, pid and every process, read now from the agent (not the streamed
        view). The info is kept: a re-exec'd agent resumes its stream without the snapshot that
        would carry it. Raises AgentCallFailed."""
        try:
            info = await self.stub.GetInfo(apb.GetInfoRequest(), timeout=timeout)
            listing = await self.stub.ListProcesses(apb.ListProcessesRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise AgentCallFailed(rpc_reason(exc)) from None
        self.info = info
        self.on_change(self)
        return info.agent_version, info.pid, list(listing.processes)

    def snapshot(self) -> list[apb.ProcessInfo]:
        """The processes with RUNNING descriptions brought up to date."""
        now = time.monotonic()
        result = []
        for spec, proc in self.processes.items():
            if proc.state == apb.RUNNING:
                copy = apb.ProcessInfo()  # the cache keeps what the agent said
                copy.CopyFrom(proc)
                proc = copy
                elapsed = now - self.received[spec]
                proc.description = running_description(proc, elapsed)
                proc.now += elapsed
            result.append(proc)
        return result

    async def _follow(self) -> None:
        backoff = Backoff(initial=0.2, cap=5.0, jitter=0.2)
        while True:
            try:
                call = self.stub.WatchEvents(apb.WatchEventsRequest(after_sequence=self.sequence,
                                                                    agent_run_id=self.run_id))
                await call.initial_metadata()  # the agent sends its headers as soon as it follows
                self.sessions += 1
                if self.info is not None:  # resumed: what we hold is current again
                    self._mark_live()
                async for event in call:
                    self._apply(event)
                    backoff.reset()
                reason = "the agent ended its event stream"
            except grpc.aio.AioRpcError as exc:
                reason = rpc_reason(exc)
            if self.reachable or self.error != reason:
                self.reachable = False
                self.error = reason
                self.on_change(self)
            await asyncio.sleep(backoff.next())
            await self._redial_if_rotated()

    def _apply(self, event: apb.AgentEvent) -> None:
        kind = event.WhichOneof("kind")
        now = time.monotonic()
        if kind == "snapshot":
            self.processes = {p.namespec: p for p in event.snapshot.processes}
            self.received = dict.fromkeys(self.processes, now)
            self.info = event.snapshot.info
        elif kind in ("process_state", "process_health"):
            proc = getattr(event, kind).process
            self.processes[proc.namespec] = proc
            self.received[proc.namespec] = now
        elif kind == "group":
            if event.group.added:
                loading = asyncio.create_task(self._load_group(event.group.group))
                self._loading.add(loading)  # held until done: the loop keeps only weak references
                loading.add_done_callback(self._loading.discard)
            else:
                for spec in [s for s, p in self.processes.items() if p.group == event.group.group]:
                    del self.processes[spec]
                    del self.received[spec]
        elif kind == "supervisor_state" and self.info is not None:
            self.info.state = event.supervisor_state.state
        self.run_id = event.agent_run_id
        self.sequence = event.sequence
        self._mark_live()

    def _mark_live(self) -> None:
        self.reachable = True
        self.error = ""
        self.state_as_of = time.time()
        self.on_change(self)

    async def _load_group(self, group: str) -> None:
        """A group was added: its processes may not have changed state yet, so ask for them."""
        try:
            listing = await self.stub.ListProcesses(apb.ListProcessesRequest(names=[f"{group}:*"]), timeout=10)
        except grpc.aio.AioRpcError:
            return  # the group went again, or the link did: the next snapshot brings it
        now = time.monotonic()
        for proc in listing.processes:
            self.processes.setdefault(proc.namespec, proc)
            self.received.setdefault(proc.namespec, now)
        self.on_change(self)


class NodeLinks:
    """One link per member, dialled at its current address, with the controller's current TLS
    set (`tls`, None for plaintext): links follow certificate rotation when they are made or
    fail; working ones keep their connection."""

    def __init__(self, tls: TlsMaterial | None, on_change: Callable[[], None]) -> None:
        self.tls = tls
        self.on_change = on_change
        self.links: dict[str, NodeLink] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> NodeLink | None:
        return self.links.get(name)

    def sync(self, addresses: dict[str, str]) -> None:
        """Follow the members: `addresses` maps each node to where it is reached."""
        for name in list(self.links):
            if addresses.get(name) != self.links[name].address:
                closing = asyncio.create_task(self.links.pop(name).close())
                self._closing.add(closing)  # held until done: the loop keeps only weak references
                closing.add_done_callback(self._closing.discard)
        for name, address in addresses.items():
            if name not in self.links and address:
                link = NodeLink(name, address, self.tls, lambda _link: self.on_change())
                self.links[name] = link
                link.start()

    async def close(self) -> None:
        links, self.links = self.links, {}
        await asyncio.gather(*(link.close() for link in links.values()))
