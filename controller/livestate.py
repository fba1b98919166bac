"""This controller's live view of every registered agent.

One `NodeLink` per node: a gRPC channel for commands, dialled when first used, and the node's
live state. For the nodes this controller follows (its share, assignment.py) a follower of the
agent's WatchEvents stream keeps the processes current: after a lost connection it reconnects
with capped backoff and resumes after the last event it saw; an agent that restarted (another
run id) or whose journal moved on sends a fresh snapshot instead. HTTP/2 keepalive pings notice
a silent network cut within a few seconds. The state of the other nodes is put in by the
controller that follows them (peerlinks.py, `take`).

This is the controller's agent client: with service.py, the only module that speaks the
agent's protobuf. Commands take and return the core's values (processes.py).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc

from fleetvisor.agent.security.guard import NODE_KEY
from fleetvisor.agent.security.tlsfiles import TlsMaterial
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc

from .backoff import Backoff
from .processes import AgentCallFailed, ProcessList, ProcessResult

# Ping an idle connection every 2 s and give up on it 3 s later: a cut link shows well
# inside a node's lease TTL. The agent's server allows pings this frequent.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 3000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
    # a channel dialled for a command to a node another controller follows lets go when unused
    ("grpc.client_idle_timeout_ms", 60_000),
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


# Serials of changes to the links' processes: one count for every link, so that a link made
# anew for a node (another address) never looks unchanged to a stream that sent its predecessor.
_serials = itertools.count(1)


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
        self._channel: grpc.aio.Channel | None = None
        self._stub: apb_grpc.AgentServiceStub | None = None
        self.generation = 0
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
        self._taken: LiveState | None = None  # the last state `take` showed
        self._reported: tuple[str, int] | None = None  # the owner whose `sessions` count was seen last, and it
        # what changed in `processes`, for the peer streams that send only that (changed_since)
        self.serial = self._replaced = next(_serials)
        self._changed: dict[str, int] = {}  # namespec -> serial of its last change
        self._ordered = ProcessList([]), self.serial  # see ordered()

    def _note(self, spec: str | None) -> None:
        """`processes` changed: process `spec` was set, or (None) processes were replaced or removed."""
        self.serial = next(_serials)
        if spec is None:
            self._replaced = self.serial
            self._changed.clear()
        else:
            self._changed[spec] = self.serial

    def changed_since(self, serial: int) -> list[str] | None:
        """The processes set after `serial` (a value of `serial` read before), or None when some
        were replaced or removed since: then all of them must be read again."""
        if serial < self._replaced:
            return None
        return [spec for spec, at in self._changed.items() if at > serial]

    @property
    def stub(self) -> apb_grpc.AgentServiceStub:
        """The agent's stub; the channel is dialled on first use."""
        if self._stub is None:
            self._channel, self.generation = self._dial()
            self._stub = apb_grpc.AgentServiceStub(self._channel)
        return self._stub

    @property
    def following(self) -> bool:
        """Whether this controller keeps the agent's state stream (the node is in its share)."""
        return self._task is not None

    def start(self) -> None:
        """Follow the agent's state stream (from the last event seen, if this controller followed
        it before; else from a snapshot)."""
        if self._task is None:
            if not self.sequence:  # the run id another controller reported: a snapshot, not a resume
                self.run_id = ""
            self._reported = None
            self._task = asyncio.create_task(self._follow(), name=f"follow {self.name}")

    def stop_following(self, why: str) -> None:
        """Another controller follows the node now: until it reports, the state held here is
        stale, and says `why`. A cancelled follower applies nothing more (it is not running
        now, and raises at its next await); close() waits for it."""
        if self._task is not None:
            self._loading.add(self._task)
            self._task.add_done_callback(self._loading.discard)
            self._task = None
        for task in self._loading:
            task.cancel()
        self.run_id, self.sequence = "", 0  # what arrives meanwhile comes from elsewhere
        self.take(None, why)

    def take(self, state: LiveState | None, why: str = "") -> None:
        """The node's state as the controller that follows it reports it, or (None) that no
        current report is at hand, `why`: the processes known stay, shown not current."""
        if state is not None and state is self._taken:
            return  # already shown
        self._taken = state
        if state is None:
            if self.reachable:
                self.state_as_of = time.time()
            changed = self.reachable or self.error != why
            self.reachable, self.error = False, why
        else:
            self.processes, self.received = dict(state.processes), dict(state.received)
            self._note(None)
            self.info = state.info
            self.reachable, self.error, self.state_as_of = state.reachable, state.error, state.state_as_of
            self.run_id = state.run_id
            # a new event stream at the owner counts here too (an agent upgrade waits for one);
            # another owner's count is another count: its first report adds nothing
            if self._reported is not None and self._reported[0] == state.owner and self._reported[1] != state.sessions:
                self.sessions += 1
            self._reported = (state.owner, state.sessions)
            changed = True
        if changed:
            self.on_change(self)

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
        if self.tls is None or self._channel is None:
            return
        self.tls.refresh()
        if self.tls.generation == self.generation:
            return
        old = self._channel
        self._channel, self._stub = None, None  # dialled again at the next use
        await old.close(grace=None)

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._loading) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()

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
        except grpc.aio.AioRpcError as exc:
            raise AgentCallFailed(rpc_reason(exc)) from None
        processes = await self.ask_processes([], timeout)
        self.info = info
        self.on_change(self)
        return info.agent_version, info.pid, processes

    async def ask_processes(self, names: list[str], timeout: float) -> list[apb.ProcessInfo]:
        """The processes `names` (none: all) as the agent has them now, not as streamed here.
        Raises AgentCallFailed."""
        try:
            listing = await self.stub.ListProcesses(apb.ListProcessesRequest(names=names), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise AgentCallFailed(rpc_reason(exc)) from None
        return list(listing.processes)

    def ordered(self) -> ProcessList:
        """The processes by namespec as the agent sent them: one list until one changes."""
        ordered, serial = self._ordered
        if serial != self.serial:
            ordered = ProcessList([self.processes[spec] for spec in sorted(self.processes)])
            self._ordered = ordered, self.serial
        return ordered

    def snapshot(self, only: list[str] | None = None) -> list[apb.ProcessInfo]:
        """The processes (`only` these namespecs, if given) with RUNNING descriptions brought up to date."""
        now = time.monotonic()
        result = []
        for spec in self.processes if only is None else only:
            proc = self.processes[spec]
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
                if self.info is not None and self.sequence:  # resumed: what we hold is current again
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
            self._note(None)
            self.info = event.snapshot.info
        elif kind in ("process_state", "process_health"):
            proc = getattr(event, kind).process
            self.processes[proc.namespec] = proc
            self.received[proc.namespec] = now
            self._note(proc.namespec)
        elif kind == "group":
            if event.group.added:
                loading = asyncio.create_task(self._load_group(event.group.group))
                self._loading.add(loading)  # held until done: the loop keeps only weak references
                loading.add_done_callback(self._loading.discard)
            else:
                for spec in [s for s, p in self.processes.items() if p.group == event.group.group]:
                    del self.processes[spec]
                    del self.received[spec]
                self._note(None)
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
            if proc.namespec not in self.processes:
                self.processes[proc.namespec] = proc
                self.received[proc.namespec] = now
                self._note(proc.namespec)
        self.on_change(self)


@dataclass(frozen=True)
class LiveState:
    """A node's live state as the controller that follows it reports it (peer.proto LiveNode)."""

    reachable: bool
    error: str
    state_as_of: float
    info: apb.AgentInfo | None
    processes: dict[str, apb.ProcessInfo]  # by namespec
    received: dict[str, float]  # namespec -> monotonic time its info arrived here
    owner: str = ""  # the controller that reports it
    run_id: str = ""  # the agent run it follows
    sessions: int = 0  # the event streams it established to the agent


class NodeLinks:
    """One link per member, at its current address, with the controller's current TLS set
    (`tls`, None for plaintext): links follow certificate rotation when they are dialled or
    fail; working ones keep their connection. `watchers` are told the name of each node whose
    live state changed (the peer streams this controller serves)."""

    def __init__(self, tls: TlsMaterial | None, on_change: Callable[[], None]) -> None:
        self.tls = tls
        self.on_change = on_change
        self.links: dict[str, NodeLink] = {}
        self.watchers: list[Callable[[str], None]] = []
        self._pending: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> NodeLink | None:
        return self.links.get(name)

    def followed(self) -> list[NodeLink]:
        return [link for link in self.links.values() if link.following]

    def _changed(self, link: NodeLink) -> None:
        for watcher in self.watchers:
            watcher(link.name)
        self.on_change()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._pending.discard)

    def sync(self, addresses: dict[str, str], owners: dict[str, str] | None = None, me: str = "") -> None:
        """Keep a link per member (`addresses`: where each node is reached) and follow the agents
        this controller owns (`owners`: each node's controller; None: all of them)."""
        for name in list(self.links):
            if addresses.get(name) != self.links[name].address:
                link = self.links.pop(name)
                self._background(link.close())
                self._changed(link)  # a peer stream says it follows it no more
        for name, address in addresses.items():
            if name not in self.links:
                if not address:
                    continue
                self.links[name] = NodeLink(name, address, self.tls, self._changed)
            link = self.links[name]
            owner = me if owners is None else owners.get(name, "")
            if owner == me and not link.following:
                link.start()
                self._changed(link)
            elif owner != me and link.following:
                link.stop_following(f"followed by controller {owner}, which has not reported it yet")

    async def close(self) -> None:
        links, self.links = self.links, {}
        await asyncio.gather(*(link.close() for link in links.values()))
        await asyncio.gather(*self._pending, return_exceptions=True)
