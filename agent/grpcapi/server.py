"""Serving AgentService on [fleetvisor] grpc_listen, on the agent's loop; mutual TLS when the
certificate, key and CA are configured (clients without a certificate signed by the CA are
refused during the handshake). Every call passes the guard (security/guard.py) first.

Plaintext is served on loopback only, unless `insecure = true` says otherwise explicitly."""

from __future__ import annotations

import grpc

from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from ..config.model import FleetvisorConfig
from ..daemon import StartupError
from ..fleetconfig import FleetConfig
from ..journal import Journal
from ..mainlog import MainLog
from ..security.guard import AGENT_SERVES, Gate, Guard, InsecureListen, Mode, mode_for
from ..security.identity import Identity, IdentityError, from_pem, reissue_hint
from ..security.keeper import Keeper
from ..supervisor import Supervisor
from .authorize import Access
from .service import AgentServicer


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def server_credentials(cert: str, key: str, ca: str) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(_read(key), _read(cert))], root_certificates=_read(ca),
                                       require_client_auth=True)


def channel_credentials(cert: str, key: str, ca: str) -> grpc.ChannelCredentials:
    """The same files the other way round: the agent dialing a controller shows its own
    certificate and trusts only servers signed by the fleet's CA. Raises OSError."""
    return grpc.ssl_channel_credentials(root_certificates=_read(ca), private_key=_read(key),
                                        certificate_chain=_read(cert))


class GrpcFace:
    def __init__(self, core: Supervisor, fleet: FleetConfig, fv: FleetvisorConfig, log: MainLog) -> None:
        self.core = core
        self.fv = fv
        self.log = log
        self.journal = Journal(core)
        self.gate = Gate(Mode.LOCAL, node=fv.node, roles=AGENT_SERVES, on_unauthenticated=self._unauthenticated)
        self.access = Access(self.gate, core, fv.node, fv.labels, log.warn)
        self.gate.on_refusal = self.access.on_refusal
        self.keeper = Keeper(self.gate, fleet.store.state_dir, log.warn)
        # Controllers ping every 2 s to notice a cut link; allow it (gRPC's default is 5 min).
        self.server = grpc.aio.server(interceptors=[Guard(self.gate)],
                                      options=[("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
                                               ("grpc.http2.max_ping_strikes", 0)])
        self.servicer = AgentServicer(core, self.journal, fleet, self.access)
        self.port = 0  # the bound port, once started (grpc_listen may name port 0)
        pb_grpc.add_AgentServiceServicer_to_server(self.servicer, self.server)

    async def start(self) -> None:
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
        try:
            if self.fv.tls_cert and self.fv.tls_key and self.fv.tls_ca:
                self.gate.cluster = self._own_identity(self.fv.tls_cert).cluster
                creds = server_credentials(self.fv.tls_cert, self.fv.tls_key, self.fv.tls_ca)
                bound = self.server.add_secure_port(address, creds)
            else:
                bound = self.server.add_insecure_port(address)
        except (OSError, RuntimeError) as exc:
            raise StartupError(f"cannot listen for gRPC on {address}: {exc}") from None
        if not bound:
            raise StartupError(f"cannot listen for gRPC on {address}: address in use or not available")
        await self.server.start()
        self.port = bound
        if self.gate.mode is Mode.INSECURE:
            self.log.critical(f"gRPC on {address} is not using TLS (insecure = true): anyone who reaches it "
                              "controls this host")
        self.log.info(f"gRPC AgentService listening on {address} ({self.gate.mode.value})")

    def _own_identity(self, cert: str) -> Identity:
        """The agent's own certificate must name it: controllers accept its heartbeats only then."""
        try:
            own = from_pem(_read(cert))
        except IdentityError as exc:
            raise StartupError(f"tls_cert {cert}: {exc}") from None
        if own.role != "agent" or own.name != self.fv.node:
            raise StartupError(f"tls_cert {cert} is for {own}, not agent {self.fv.node}; "
                               f"{reissue_hint('agent', self.fv.node)}")
        return own

    def _unauthenticated(self, peer: str) -> None:
        self.log.warn(f"unauthenticated gRPC connection from {peer} (insecure = true)")

    async def close(self) -> None:
        await self.server.stop(grace=1.0)
        self.journal.close()
