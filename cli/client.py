"""gRPC channels for fleetctl, and turning transport failures into one clear line.

Also the controller side of the wire: every call names the local user (unverified; the
controller prefers the certificate CN under mTLS) and a write refused by a follower is sent
once more to the leader the follower names, so operators never need to know who leads.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Generator, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from fleetvisor.v1 import controller_pb2_grpc as cpb_grpc

from .settings import Settings

USER_KEY = "fleetvisor-user"
LEADER_KEY = "fleetvisor-leader"


class CommandError(Exception):
    """A failure to report as one line; `exit_code` follows supervisorctl's meanings."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _read(path: str, what: str) -> bytes:
    """A TLS file's bytes; one that is not PEM is refused here, where the file can still be named
    (gRPC would only say "Failed to create security handshaker" at the first call)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CommandError(f"cannot read TLS {what} {path}: {exc.strerror}", 2) from None
    if b"-----BEGIN " not in data:
        raise CommandError(f"TLS {what} {path} is not a PEM file", 2)
    return data


def channel(target: str, settings: Settings) -> grpc.Channel:
    if ":" not in target:
        raise CommandError(f"address {target!r} must be HOST:PORT", 2)
    if settings.tls:
        ca, key, cert = settings.tls_ca, settings.tls_key, settings.tls_cert
        assert ca and key and cert, "Settings refuses a partial TLS set"
        creds = grpc.ssl_channel_credentials(root_certificates=_read(ca, "CA"), private_key=_read(key, "key"),
                                             certificate_chain=_read(cert, "certificate"))
        return grpc.secure_channel(target, creds)
    return grpc.insecure_channel(target)


def describe_rpc_error(exc: grpc.RpcError, target: str, role: str = "", *, tls: bool | None = None) -> CommandError:
    """The message an operator needs, without gRPC's internals.

    `role` ("controller") goes before the address so the line says which part is missing.
    `tls` (whether fleetctl dialled with certificates) turns gRPC's bare "Socket closed" while
    connecting into a hint: a mutual-TLS server hangs up on a plaintext client, and on a client
    certificate it does not trust, without saying why.
    """
    peer = f"{role} {target}" if role else target
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "shutdown" in lowered.replace("_", ""):
            return CommandError(f"{peer} is shutting down")
        if not _from_transport(lowered):  # the server said it (e.g. "etcd is unavailable"): it was reached
            return CommandError(f"{peer}: {_first_line(details)}")
        if "hostname verification" in lowered or "not in peer certificate" in lowered:
            host = target.rpartition(":")[0].strip("[]")
            return CommandError(f"TLS handshake with {peer} failed: its certificate does not name {host} "
                                f"(issue it with --host {host})")
        if any(sign in lowered for sign in SERVER_NOT_TRUSTED):
            return CommandError(f"TLS handshake with {peer} failed: its certificate is not signed by the CA "
                                "fleetctl trusts (--tls-ca)")
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered or "tls" in lowered:
            return CommandError(f"TLS handshake with {peer} failed: check the certificates "
                                f"(the {role or 'agent'} requires a client certificate signed by its CA)")
        reason = _first_line(details).rsplit(": ", 1)[-1] or "unavailable"
        hint = _hung_up_hint(lowered, tls, role or "agent")
        return CommandError(f"cannot reach {peer}: {reason}{hint}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CommandError(f"{peer} did not answer in time")
    if code == grpc.StatusCode.NOT_FOUND:
        return CommandError(_first_line(details), 4)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return CommandError(_first_line(details), 2)
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return CommandError(f"{peer} refused: {_first_line(details)}")
    if code == grpc.StatusCode.CANCELLED and not details:
        return CommandError(f"{peer} cancelled the call")
    return CommandError(f"{peer}: {_first_line(details) or (code.name if code else 'failed')}")


# What BoringSSL says when the server's certificate does not chain to fleetctl's CA (EC and RSA keys)
SERVER_NOT_TRUSTED = ("certificate signature failure", "bad_signature", "certificate_verify_failed",
                      "certificate verify failed", "unable to get local issuer", "self signed certificate",
                      "self-signed certificate")


# How gRPC's own transport failures begin; a server's abort(UNAVAILABLE, ...) text does not.
TRANSPORT_PREFIXES = (
    "failed to connect", "connect failed", "connection refused", "connection reset", "socket closed",
    "stream removed", "broken pipe", "dns resolution", "name resolution", "empty address list", "goaway",
    "keepalive", "transport closed", "endpoint", "recvmsg", "sendmsg", "ssl", "tls", "handshake", "unavailable",
    "connections to all backends failing", "cancelling all calls", "no route to host", "network is unreachable",
    "channel", "subchannel", "lame client", "unable to", "could not", "timeout", "timed out", "eof",
)


def _hung_up_hint(lowered_details: str, tls: bool | None, role: str) -> str:
    """Why a server may have closed a new connection at once: the TLS side of it."""
    if tls is None or not lowered_details.startswith("failed to connect") or "socket closed" not in lowered_details:
        return ""
    if tls:
        return (f" (the {role} hung up during the TLS handshake: it accepts only client certificates "
                "signed by its CA)")
    return (f" (the {role} hung up at once: it may require mutual TLS; pass --tls-cert, --tls-key and "
            "--tls-ca)")


def _from_transport(lowered_details: str) -> bool:
    """Whether an UNAVAILABLE came from the connection rather than from the server's own words."""
    return not lowered_details.strip() or lowered_details.strip().startswith(TRANSPORT_PREFIXES)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def local_identity() -> str:
    """`user@host` for the audit log; never fails, since a missing passwd entry must not stop a command."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def leader_redirect(code: grpc.StatusCode | None, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The leader to retry at, when a follower refused a write; else None.

    Only FAILED_PRECONDITION with a non-empty "fleetvisor-leader" trailer is a redirect: the
    same code without it (no leader elected) is a real failure to report.
    """
    if code != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    for key, value in metadata or ():
        if key.lower() == LEADER_KEY:
            address = value.decode() if isinstance(value, bytes) else str(value)
            return address.strip() or None
    return None


class Controller:
    """ControllerService calls with identity metadata, one leader redirect, and one-line errors."""

    def __init__(self, address: str, settings: Settings) -> None:
        self.address = address
        self.settings = settings
        self.metadata = ((USER_KEY, local_identity()),)

    def call(self, method: str, request: Message, *, timeout: float | None = None) -> Any:
        target = self.address
        redirected = False
        while True:
            chan = channel(target, self.settings)
            try:
                stub = cpb_grpc.ControllerServiceStub(chan)
                return getattr(stub, method)(request, timeout=timeout or self.settings.timeout,
                                             metadata=self.metadata)
            except grpc.RpcError as exc:
                leader = None if redirected else leader_redirect(exc.code(), _trailers(exc))
                if leader and leader != target:
                    target, redirected = leader, True
                    continue
                error = describe_rpc_error(exc, target, "controller", tls=self.settings.tls)
                if redirected:  # say where the address came from: it was not typed by the operator
                    error = CommandError(f"{error} (the leader, as named by {self.address})", error.exit_code)
                raise error from None
            finally:
                chan.close()

    def stream(self, method: str, request: Message, *, timeout: float | None = None) -> Generator[Any, None, None]:
        """Messages of a server stream; closing the iterator cancels the call (Ctrl-C, --watch)."""
        chan = channel(self.address, self.settings)
        call = getattr(cpb_grpc.ControllerServiceStub(chan), method)(request, timeout=timeout,
                                                                    metadata=self.metadata)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise describe_rpc_error(exc, self.address, "controller", tls=self.settings.tls) from None
        finally:
            call.cancel()
            chan.close()


def _trailers(exc: grpc.RpcError) -> Sequence[tuple[str, Any]]:
    try:
        return exc.trailing_metadata() or ()
    except Exception:  # not a Call (a local error): nothing to read
        return ()
