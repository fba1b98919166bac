"""Serving AgentService on [fleetvisor] grpc_listen, on the agent's loop; mutual TLS when the
certificate, key and CA are configured (clients without a certificate signed by the CA are
refused during the handshake)."""

from __future__ import annotations

import grpc

from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from ..config.model import FleetvisorConfig
from ..daemon import StartupError
from ..fleetconfig import FleetConfig
from ..journal import Journal
from ..mainlog import MainLog
from ..supervisor import Supervisor
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
        # Controllers ping every 2 s to notice a cut link; allow it (gRPC's default is 5 min).
        self.server = grpc.aio.server(options=[("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
                                               ("grpc.http2.max_ping_strikes", 0)])
        self.servicer = AgentServicer(core, self.journal, fleet)
        self.port = 0  # the bound port, once started (grpc_listen may name port 0)
        pb_grpc.add_AgentServiceServicer_to_server(self.servicer, self.server)

    async def start(self) -> None:
        assert self.fv.grpc_listen is not None
        host, port = self.fv.grpc_listen
        address = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
        try:
            if self.fv.tls_cert and self.fv.tls_key and self.fv.tls_ca:
                creds = server_credentials(self.fv.tls_cert, self.fv.tls_key, self.fv.tls_ca)
                bound = self.server.add_secure_port(address, creds)
                mode = "mutual TLS"
            else:
                bound = self.server.add_insecure_port(address)
                mode = "plaintext"
        except (OSError, RuntimeError) as exc:
            raise StartupError(f"cannot listen for gRPC on {address}: {exc}") from None
        if not bound:
            raise StartupError(f"cannot listen for gRPC on {address}: address in use or not available")
        await self.server.start()
        self.port = bound
        if mode == "plaintext" and host not in ("127.0.0.1", "localhost", "::1"):
            self.log.critical(f"gRPC on {address} is not using TLS: set tls_cert, tls_key and tls_ca "
                              "in [fleetvisor] to require mutual TLS")
        self.log.info(f"gRPC AgentService listening on {address} ({mode})")

    async def close(self) -> None:
        await self.server.stop(grace=1.0)
        self.journal.close()
