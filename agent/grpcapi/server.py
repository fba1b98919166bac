"""Serving AgentService on [fleetvisor] grpc_listen, on the agent's loop; mutual TLS when the
certificate, key and CA are configured (clients without a certificate signed by the CA are
refused during the handshake), following the files when they change (security/tlsfiles.py).
Every call passes the guard (security/guard.py) first.

Plaintext is served on loopback only, unless `insecure = true` says otherwise explicitly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from ..config.model import FleetvisorConfig
from ..daemon import StartupError, remove_quietly
from ..fleetconfig import FleetConfig
from ..journal import Journal
from ..mainlog import MainLog
from ..reexec import grpcport
from ..reexec.state import SocketState
from ..security.guard import AGENT_SERVES, Gate, Guard, InsecureListen, Mode, mode_for
from ..security.identity import Identity, reissue_hint
from ..security.keeper import Keeper
from ..security.rules import AGENT_SERVICE
from ..security.tlsfiles import TlsFileError, TlsFiles, TlsMaterial
from ..supervisor import Supervisor
from .authorize import Access
from .service import AgentServicer
from .standard import SERVING, Health


class CallCount(grpc.aio.ServerInterceptor):
    """Counts each call by method for /metrics (a method nobody serves counts as one name)."""

    def __init__(self, calls: Counter[tuple[str, str]]) -> None:
        self.calls = calls

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        self.calls["grpc", details.method.lstrip("/") if handler is not None else "(unknown)"] += 1
        return handler


class GrpcFace:
    def __init__(self, core: Supervisor, fleet: FleetConfig, fv: FleetvisorConfig, log: MainLog) -> None:
        self.core = core
        self.fv = fv
        self.log = log
        self.tls: TlsMaterial | None = None  # under TLS, once started; heartbeats dial with it too
        self.journal = Journal(core)
        self.gate = Gate(Mode.LOCAL, node=fv.node, roles=AGENT_SERVES, on_unauthenticated=self._unauthenticated)
        self.access = Access(self.gate, core, fv.node, fv.labels, log.warn)
        self.gate.on_refusal = self.access.on_refusal
        self.keeper = Keeper(self.gate, fleet.store.state_dir, log.warn)
        # Controllers ping every 2 s to notice a cut link; allow it (gRPC's default is 5 min).
        self.server = grpc.aio.server(interceptors=[CallCount(core.tally.rpc_calls), Guard(self.gate)],
                                      options=[("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
                                               ("grpc.http2.max_ping_strikes", 0)])
        self.servicer = AgentServicer(core, self.journal, fleet, self.access)
        self.port = 0  # the bound port, once started (grpc_listen may name port 0)
        self.relay: grpcport.Relay | None = None  # after a re-exec: what the old agent's port queued
        pb_grpc.add_AgentServiceServicer_to_server(self.servicer, self.server)
        self.health = Health(self.server, [AGENT_SERVICE])

    async def start(self, previous: TlsMaterial | None = None, held: list[SocketState] | None = None) -> None:
        """`previous` is the TLS set of the run before a SIGHUP restart: if the files no longer
        make a usable set, that one is kept (and the reason logged) rather than failing.
        `held`: the port the agent before a re-exec kept queueing (reexec/grpcport.py)."""
        assert self.fv.grpc_listen is not None
        host, port = self.fv.grpc_listen
        address = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
        tls = bool(self.fv.tls_cert and self.fv.tls_key and self.fv.tls_ca)
        self.keeper.load()  # before the first call: revocations hold while no controller answers
        try:
            self.gate.mode = mode_for(host, tls, self.fv.insecure)
        except InsecureListen as exc:
            raise StartupError(f"{exc}: set tls_cert, tls_key and tls_ca in [fleetvisor] (see deploy/TLS.md), "
                               "or insecure = true to let anyone who reaches the port control this host") from None
        if not held:
            _refuse_if_taken(host, port, address)
        try:
            if self.fv.tls_cert and self.fv.tls_key and self.fv.tls_ca:
                self.tls = self._material(TlsFiles(self.fv.tls_cert, self.fv.tls_key, self.fv.tls_ca), previous)
                self.gate.cluster = self.tls.current.identity.cluster
                credentials = self.tls.server_credentials()
                bound = self.server.add_secure_port(address, credentials)
            else:
                credentials = None
                bound = self.server.add_insecure_port(address)
        except (OSError, RuntimeError) as exc:
            grpcport.close(held or [])
            raise StartupError(f"cannot listen for gRPC on {address}: {exc}") from None
        if not bound:
            grpcport.close(held or [])
            raise StartupError(f"cannot listen for gRPC on {address}: address in use or not available")
        relay_to = self._relay_port(credentials) if held else None
        await self.server.start()
        self.health.report({"": SERVING, AGENT_SERVICE: SERVING})
        self.port = bound
        if held:
            self.relay = grpcport.Relay(held, relay_to)
            if relayed := await self.relay.drain():
                self.log.info(f"re-exec: {relayed} gRPC connection(s) made during the handover relayed to this agent")
        if self.gate.mode is Mode.INSECURE:
            self.log.critical(f"gRPC on {address} is not using TLS (insecure = true): anyone who reaches it "
                              "controls this host")
        self.log.info(f"gRPC AgentService listening on {address} ({self.gate.mode.value})")

    def _relay_port(self, credentials: grpc.ServerCredentials | None) -> str | None:
        """A unix socket of this server's, in the state dir, for the relayed connections (None:
        not to be had; what the held port queued is then refused, as without it)."""
        path = grpcport.relay_path(self.keeper.state_dir)
        if path is not None:
            remove_quietly(path)
            address = f"unix:{path}"
            try:
                if (self.server.add_secure_port(address, credentials) if credentials is not None
                        else self.server.add_insecure_port(address)):
                    return path
            except RuntimeError:
                pass
        self.log.warn("re-exec: no unix socket for the gRPC connections made during the handover: "
                      f"they are refused (state dir {self.keeper.state_dir})")
        return None

    def hold(self) -> list[SocketState]:
        """Keep the port queueing connections once this server stops, for the next agent."""
        try:
            return grpcport.hold(self.port)
        except OSError as exc:
            self.log.warn(f"re-exec: the gRPC port cannot be held through the handover ({exc}): "
                          "clients may be refused for a moment")
            return []

    def _material(self, files: TlsFiles, previous: TlsMaterial | None) -> TlsMaterial:
        loop = asyncio.get_running_loop()

        def report(line: str, trouble: bool) -> None:  # gRPC asks for credentials on its own threads
            with contextlib.suppress(RuntimeError):  # the loop of a run that has ended
                loop.call_soon_threadsafe(self.log.warn if trouble else self.log.info, line)

        if previous is not None and previous.files == files:
            self.tls, self.gate.cluster = previous, previous.current.identity.cluster
            previous.report, previous.check = report, self._own_identity
            previous.refresh(force=True)
            return previous
        try:
            return TlsMaterial(files, self._own_identity, report)
        except TlsFileError as exc:
            raise StartupError(f"tls_cert: {exc}") from None

    def _own_identity(self, own: Identity) -> str | None:
        """The agent's own certificate must name it: controllers accept its heartbeats only
        then. A rotated one must also stay in the cluster the agent started in."""
        if own.role != "agent" or own.name != self.fv.node:
            return f"not agent {self.fv.node}; {reissue_hint('agent', self.fv.node)}"
        if self.tls is not None and own.cluster != self.gate.cluster:
            return f"cluster {own.cluster!r}, not {self.gate.cluster!r}"
        return None

    def _unauthenticated(self, peer: str) -> None:
        self.log.warn(f"unauthenticated gRPC connection from {peer} (insecure = true)")

    async def close(self) -> None:
        await self.health.close()
        if self.relay is not None:
            await self.relay.close()
        await self.server.stop(grace=1.0)
        if self.relay is not None and self.relay.target:
            remove_quietly(self.relay.target)
        self.journal.close()


def _refuse_if_taken(host: str, port: int, address: str) -> None:
    """grpcio binds with SO_REUSEPORT, so a second agent on a port in use would start and
    silently share it with the first. Checked with a plain bind first (re-exec: grpcport.py)."""
    if not port:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return  # grpcio names the address problem itself
    for family, kind, proto, _, where in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is no owner
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(f"cannot listen for gRPC on {address}: address in use") from None

