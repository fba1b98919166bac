"""One virtual node on the simulator's loop: what a real agent shows the fleet, without its
processes.

It heartbeats with the agent's own `Heartbeat` task (same schedule, backoff and request),
serves AgentService on its own port behind the agent's guard (so a call a controller meant for
another node is refused, as an agent refuses it), numbers its changes with the agent's
`Journal` (so a follower resumes after a reconnect, or gets a snapshot from a new run), and
drives its process table on one loop timer.

A node can go away (its heartbeats stop and its server closes, as when the host is cut off or
powered down) and come back on the same port: after a cut it is the same agent run, and the
controller's follower resumes after the last event it saw; after a reboot it is a new run
(new run id, processes started afresh) and the follower takes a new snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc

from fleetvisor.agent.config.model import FleetvisorConfig, GroupConfig
from fleetvisor.agent.grpcapi.server import CallCount
from fleetvisor.agent.heartbeat import Heartbeat, Schedule, home
from fleetvisor.agent.journal import Journal
from fleetvisor.agent.mainlog import Level, MainLog
from fleetvisor.agent.operations.results import AGENT_VERSION
from fleetvisor.agent.security.guard import AGENT_SERVES, Gate, Guard, Mode
from fleetvisor.agent.security.keeper import Keeper
from fleetvisor.agent.security.tlsfiles import TlsFiles, TlsMaterial
from fleetvisor.agent.states import RUNNING_STATES, STOPPED_STATES
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as cpb

from .process_table import Change, PidSource, ProcessTable, VirtualProcess

SETTLE_TIMEOUT = 30.0  # a wait for processes to settle gives up after this (virtual stops take 50 ms)
# Controllers ping every 2 s to notice a cut link: allow it, as the agent's server does.
SERVER_OPTIONS = [("grpc.http2.min_recv_ping_interval_without_data_ms", 1000), ("grpc.http2.max_ping_strikes", 0)]


@dataclass(frozen=True)
class Identity:
    """Who a virtual node is: fixed for its life, across outages and reboots. With `tls` (its
    certificate, key and the fleet's CA, as `fleetctl certs` issues them) it serves and
    heartbeats over mutual TLS, as an agent with tls_cert, tls_key and tls_ca does."""

    name: str
    labels: dict[str, str]
    controllers: tuple[str, ...]
    host: str = "127.0.0.1"
    tls: TlsFiles | None = None


@dataclass
class Applied:
    """The fleet revision the node runs, as the agent's RevisionStore keeps it."""

    revision: str = ""
    text: str = ""
    cluster_id: str = ""
    local: bool = False
    sections: list[str] = field(default_factory=list)


class VirtualNode:
    def __init__(self, identity: Identity, own_groups: tuple[GroupConfig, ...], local_sections: tuple[str, ...],
                 *, rng: random.Random, calls: Counter[tuple[str, str]],
                 make_servicer: Callable[[VirtualNode], apb_grpc.AgentServiceServicer], state_dir: str) -> None:
        self.identity = identity
        self.own_groups = own_groups
        self.local_sections = local_sections
        self.rng = rng
        self.calls = calls  # shared by every node of the process: RPCs served, by method
        self.make_servicer = make_servicer
        self.applied = Applied()
        self.fleet_groups: tuple[GroupConfig, ...] = ()
        self.apply_lock = asyncio.Lock()
        self.pids = PidSource(rng)
        self.port = 0
        self.up = False
        self.reboots = 0
        self.heartbeats_before = 0  # sent by the heartbeat tasks of earlier outages
        self.watchers = 0  # open WatchEvents streams: one per node when controllers share the fleet
        self.heartbeat: Heartbeat | None = None
        # The agent's own TLS set (the server's credentials and the heartbeat's); no check of
        # the certificate's name here: the simulator issued it for this node.
        self.tls = TlsMaterial(identity.tls, lambda own: None, lambda line, trouble: None) if identity.tls else None
        self.gate = Gate(Mode.LOCAL, node=self.name, roles=AGENT_SERVES) if self.tls is None else Gate(
            Mode.TLS, cluster=self.tls.current.identity.cluster, node=self.name, roles=AGENT_SERVES)
        # The policies and revocations controllers answer heartbeats with: in force on the gate and
        # kept in the node's state dir, as the agent's keeper does (and reported back, so that a
        # controller stops sending them).
        self.keeper = Keeper(self.gate, state_dir, lambda line: None)
        self.server: grpc.aio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._boot()

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def address(self) -> str:
        return f"{self.identity.host}:{self.port}"

    def _boot(self) -> None:
        """A new agent run: a fresh table of the node's groups (with the applied revision's,
        which an agent keeps on disk) and a fresh journal, thus a new run id."""
        self.started_at = time.time()
        self.agent_pid = self.pids.next()
        self.table = ProcessTable((*self.own_groups, *self.fleet_groups), pids=self.pids,
                                  log_dir=f"/var/log/fleetvisor-sim/{self.name}")
        self.journal = Journal(self.table)  # type: ignore[arg-type]  # it only calls subscribe()
        self.table.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        self._changed.set()  # wake settle(); later waits use a fresh event
        self._changed = asyncio.Event()

    # -- life -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve, autostart, heartbeat: in an agent's order."""
        await self._serve()
        self.table.autostart(time.time())
        self.reschedule()
        self._start_heartbeat()
        self.up = True

    async def _serve(self) -> None:
        tls = self.tls
        server = grpc.aio.server(interceptors=[CallCount(self.calls), Guard(self.gate)], options=SERVER_OPTIONS)
        apb_grpc.add_AgentServiceServicer_to_server(self.make_servicer(self), server)

        def listen(port: int) -> int:
            address = f"{self.identity.host}:{port}"
            if tls is None:
                return server.add_insecure_port(address)
            return server.add_secure_port(address, tls.server_credentials())

        bound = 0
        if self.port:  # back on the same port, so that the controller's member address holds
            with contextlib.suppress(RuntimeError):
                bound = listen(self.port)
        if not bound:
            bound = listen(0)
        if not bound:
            raise OSError(f"node {self.name}: no port to listen on")
        self.port = bound
        await server.start()
        self.server = server

    def _start_heartbeat(self) -> None:
        fv = FleetvisorConfig(node=self.name, labels=tuple(self.identity.labels.items()),
                              grpc_listen=(self.identity.host, self.port))
        quiet = MainLog(None, maxbytes=0, backups=0, level=Level.CRIT)
        self.heartbeat = Heartbeat(fv, self.describe, quiet, schedule=Schedule(
            self.identity.controllers, index=home(self.name, len(self.identity.controllers))),
                                   tls=self.tls, keeper=self.keeper)
        self.heartbeat.start()

    async def go_away(self) -> None:
        """Heartbeats stop, the server closes (open streams end): the host is gone."""
        self.up = False
        if self.heartbeat is not None:
            self.heartbeats_before += self.heartbeat.schedule.attempts
            await self.heartbeat.stop()
            self.heartbeat = None
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None

    async def come_back(self, *, reboot: bool) -> None:
        if reboot:
            self.reboots += 1
            self.cancel_timer()
            self.journal.close()
            self._boot()
            await self.start()
            return
        await self._serve()
        self._start_heartbeat()
        self.up = True

    async def close(self) -> None:
        await self.go_away()
        self.cancel_timer()
        self.journal.close()

    # -- what it says about itself --------------------------------------------------------------

    def describe(self) -> cpb.HeartbeatRequest:
        """As the agent's agent_describer."""
        a = self.applied
        return cpb.HeartbeatRequest(
            node=self.name, address=self.address, labels=self.identity.labels, agent_version=AGENT_VERSION,
            applied_revision=a.revision, agent_run_id=self.journal.run_id, started_at=self.started_at,
            edited_by_hand=False, security_revision=self.keeper.revision, cluster_id=a.cluster_id,
            local_revision=a.local and bool(a.revision), local_sections=list(self.local_sections))

    @property
    def heartbeats(self) -> int:
        """Heartbeat attempts so far (failed ones too)."""
        return self.heartbeats_before + (self.heartbeat.schedule.attempts if self.heartbeat is not None else 0)

    def fleet_group_names(self) -> set[str]:
        return {g.name for g in self.fleet_groups}

    # -- time -----------------------------------------------------------------------------------

    def reschedule(self) -> None:
        """Arm the one timer for the table's next due transition."""
        self.cancel_timer()
        due = self.table.next_due()
        if due is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, due - time.time()), self._tick)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        self.table.advance(time.time())
        self.reschedule()

    async def settle(self, procs: Iterable[VirtualProcess], done: Callable[[VirtualProcess], bool],
                     timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait until `done` holds for every one of `procs` (True), or `timeout` (False)."""
        procs = list(procs)
        deadline = time.monotonic() + timeout
        while not all(done(p) for p in procs):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    async def stop_and_wait(self, procs: list[VirtualProcess]) -> None:
        """Stop the running ones of `procs`, and wait until every one has stopped (those that
        were already stopping too)."""
        self.table.stop([p for p in procs if p.state in RUNNING_STATES], time.time())
        self.reschedule()
        await self.settle(procs, lambda p: p.state in STOPPED_STATES)

    # -- churn ----------------------------------------------------------------------------------

    def flap(self, proc: VirtualProcess, *, through_backoff: bool) -> bool:
        flapped = self.table.flap(proc, time.time(), through_backoff=through_backoff)
        self.reschedule()
        return flapped
