"""gRPC channels for fleetctl, and turning transport failures into one clear line.

Also the controller side of the wire: every call names the local user (unverified; the
controller prefers the certificate CN under mTLS), goes to the first controller of the list
that answers, and a write refused by a follower is sent on to the leader the follower names, so
operators never need to know who leads or which controller is down. Which controller to ask
first is controllers.py's.
"""

from __future__ import annotations

import datetime
import getpass
import os
import socket
import threading
from collections.abc import Generator, Sequence
from typing import Any

import grpc
from cryptography import x509
from google.protobuf.message import Message

from fleetvisor.agent.limits import MAX_STATUS_MESSAGE_BYTES
from fleetvisor.v1 import controller_pb2_grpc as cpb_grpc

from .controllers import Memory, ordered
from .exitcodes import STATUS_UNKNOWN
from .settings import Settings

USER_KEY = "fleetvisor-user"
LEADER_KEY = "fleetvisor-leader"


class CommandError(Exception):
    """A failure to report as one line; `exit_code` follows supervisorctl's meanings.
    `unavailable`: the server itself said that something it needs is unavailable (a node it
    relays, etcd), as opposed to the server being out of reach."""

    def __init__(self, message: str, exit_code: int = 1, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.unavailable = unavailable


class NoController(CommandError):
    """No controller of the list answered. Its exit status 4 is not "no such thing" (also 4):
    a watch reconnects after it, and no hint about names is added to it."""


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


# A whole fleet's status is one reply: about 4 MB per 1000 nodes of 20 processes, gRPC's default limit.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_STATUS_MESSAGE_BYTES)]


def channel(target: str, settings: Settings) -> grpc.Channel:
    if ":" not in target:
        raise CommandError(f"address {target!r} must be HOST:PORT", 2)
    if settings.tls:
        ca, key, cert = settings.tls_ca, settings.tls_key, settings.tls_cert
        assert ca and key and cert, "Settings refuses a partial TLS set"
        creds = grpc.ssl_channel_credentials(root_certificates=_read(ca, "CA"), private_key=_read(key, "key"),
                                             certificate_chain=_read(cert, "certificate"))
        return grpc.secure_channel(target, creds, options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def describe_rpc_error(exc: grpc.RpcError, target: str, role: str = "", *, tls: bool | None = None,
                       cert: str | None = None) -> CommandError:
    """The message an operator needs, without gRPC's internals.

    `role` ("controller") goes before the address so the line says which part is missing.
    `tls` (whether fleetctl dialled with certificates) turns gRPC's bare "Socket closed" while
    connecting into a hint: a mutual-TLS server hangs up on a plaintext client, and on a client
    certificate it does not trust, without saying why. gRPC gives the client no reason for
    such a hang-up, so `cert` (fleetctl's own certificate file) is checked here: an expired or
    not yet valid one is named as the reason instead of the CA.
    """
    peer = f"{role} {target}" if role else target
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "shutdown" in lowered.replace("_", ""):
            return CommandError(f"{peer} is shutting down")
        if not _from_transport(lowered):  # the server said it (e.g. "etcd is unavailable"): it was reached
            return CommandError(f"{peer}: {_first_line(details)}", unavailable=True)
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
        hint = _hung_up_hint(lowered, tls, role or "agent", cert)
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


def _tls_trouble(lowered_details: str) -> bool:
    """Whether a transport failure was the TLS handshake's (a certificate, not a dead host)."""
    return any(sign in lowered_details for sign in ("ssl", "handshake", "certificate", "tls",
                                                    "hostname verification", "not in peer certificate",
                                                    *SERVER_NOT_TRUSTED))


def _hung_up_hint(lowered_details: str, tls: bool | None, role: str, cert: str | None = None) -> str:
    """Why a server may have closed a new connection at once: the TLS side of it."""
    if tls is None or not lowered_details.startswith("failed to connect") or "socket closed" not in lowered_details:
        return ""
    if tls and cert and (stale := _validity_problem(cert)):
        return f" (the {role} hung up during the TLS handshake: fleetctl's certificate {cert} {stale})"
    if tls:
        return (f" (the {role} hung up during the TLS handshake: it accepts only client certificates "
                "signed by its CA)")
    return (f" (the {role} hung up at once: it may require mutual TLS; pass --tls-cert, --tls-key and "
            "--tls-ca)")


def _validity_problem(cert_path: str) -> str | None:
    """"expired on ..." or "is not valid before ..." for a certificate outside its dates now."""
    try:
        with open(cert_path, "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None
    now = datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc < now:
        return (f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                "issue a new one (fleetctl certs issue)")
    if certificate.not_valid_before_utc > now:
        return f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clocks)"
    return None


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


# The ControllerService calls that change nothing. Any controller answers them, so one that breaks
# off or times out is simply asked of the next; a write is sent on only when it cannot have
# reached the first (no connection was ever made), since it must not be carried out twice.
READS = frozenset({"GetStatus", "WatchStatus", "ListNodes", "GetLeader", "ListConfigs", "ConfigHistory",
                   "GetConfigRevision", "ConfigStatus", "TailLog", "ListAudit", "ListOperations", "GetOperation",
                   "WatchOperation", "ListPolicies", "ListRevocations"})
CONNECT_TIMEOUT = 5.0  # a controller that has not taken the connection by then is passed over, when others are left
MAX_REDIRECTS = 3      # a leader that changed while the write travelled names the next one; a loop is cut off


class NoAnswer(Exception):
    """One controller of the list gave no answer; the next may. `unreachable`: it could not be
    reached at all (refused, timed out), rather than refusing the connection (TLS)."""

    def __init__(self, error: CommandError, unreachable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.unreachable = unreachable


def none_answered(failures: Sequence[NoAnswer]) -> NoController:
    """One line for a list that gave no answer, every address with its reason. Exit 4 when none
    could be reached, as `status` always said for an unreachable controller; a TLS refusal among
    them keeps its own code, since no retry later will fix it."""
    assert failures, "a list is never empty"
    refused = [f.error for f in failures if not f.unreachable]
    code = refused[0].exit_code if refused else STATUS_UNKNOWN
    if len(failures) == 1:
        return NoController(str(failures[0].error), code)
    return NoController(f"no controller answered ({len(failures)} tried): "
                        + "; ".join(str(f.error) for f in failures), code)


def unreachable(exc: grpc.RpcError, tls: bool | None = None) -> bool:
    """The controller was not reached, or did not answer in time: not a refusal, not an answer."""
    code = exc.code() if hasattr(exc, "code") else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return True
    if code != grpc.StatusCode.UNAVAILABLE:
        return False
    lowered = ((exc.details() if hasattr(exc, "details") else "") or "").lower()
    if "shutdown" in lowered.replace("_", ""):
        return True
    return _from_transport(lowered) and not _tls_trouble(lowered) and not _hung_up_hint(lowered, tls, "controller")


def unanswered(exc: grpc.RpcError, *, read: bool, connected: bool | None) -> bool:
    """Whether another controller of the list should be asked after `exc`.

    `connected`: whether a connection was made before the call (None: not looked at). Words the
    controller itself sent (not found, refused, etcd down) are an answer, the same from any of
    them. A write goes on only when it cannot have been received; a read whenever the transport
    failed or time ran out.
    """
    code = exc.code() if hasattr(exc, "code") else None
    lowered = ((exc.details() if hasattr(exc, "details") else "") or "").lower()
    never_connected = connected is False or lowered.startswith("failed to connect")
    if code == grpc.StatusCode.UNAVAILABLE:
        if "shutdown" in lowered.replace("_", ""):
            return read or never_connected
        return _from_transport(lowered) and (read or never_connected)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return read or never_connected
    return False


def wait_connected(chan: grpc.Channel, bound: float) -> bool | None:
    """True once `chan` is connected, False when its first attempt failed (refused, TLS), None
    when neither happened within `bound` seconds (a host that drops packets, a hung server)."""
    settled = threading.Event()
    outcome: list[bool] = []

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                     grpc.ChannelConnectivity.SHUTDOWN) and not outcome:
            outcome.append(state is grpc.ChannelConnectivity.READY)
            settled.set()

    chan.subscribe(watch, try_to_connect=True)
    try:
        settled.wait(bound)
    finally:
        chan.unsubscribe(watch)
    return outcome[0] if outcome else None


class Controller:
    """ControllerService calls to the first controller of the list that answers, with identity
    metadata, leader redirects for writes, and one-line errors.

    The list is tried in order, the one that answered last (this run, else as `memory` recalls
    from earlier runs) first. Every controller but the last gets CONNECT_TIMEOUT to take the
    connection, so a dead host costs seconds, not the whole --timeout; the last one gets the
    call's own deadline, which makes a single controller behave as it always did.
    """

    def __init__(self, addresses: str | Sequence[str], settings: Settings, *, memory: Memory | None = None) -> None:
        self.addresses = (addresses,) if isinstance(addresses, str) else tuple(addresses)
        assert self.addresses, "fleet mode needs a controller"
        self.settings = settings
        self.memory = memory
        self.metadata = ((USER_KEY, local_identity()),)
        self.order = ordered(self.addresses, memory.recall(self.addresses) if memory else None)
        self.address = self.order[0]  # the one that answered last, or the first to ask

    def candidates(self) -> tuple[str, ...]:
        return ordered(self.order, self.address)

    def _describe(self, exc: grpc.RpcError, target: str) -> CommandError:
        return describe_rpc_error(exc, target, "controller", tls=self.settings.tls, cert=self.settings.tls_cert)

    def _connect_bound(self, index: int, count: int, timeout: float | None) -> float | None:
        if index == count - 1:
            return None
        return min(CONNECT_TIMEOUT, timeout) if timeout else CONNECT_TIMEOUT

    def _answered(self, target: str) -> None:
        self.address = target
        if self.memory is not None:
            self.memory.remember(self.addresses, target)

    def call(self, method: str, request: Message, *, timeout: float | None = None) -> Any:
        timeout = timeout or self.settings.timeout
        failures: list[NoAnswer] = []
        order = self.candidates()
        for index, target in enumerate(order):
            try:
                return self._call_at(target, method, request, timeout,
                                     self._connect_bound(index, len(order), timeout))
            except NoAnswer as failure:
                failures.append(failure)
        raise none_answered(failures)

    def _call_at(self, target: str, method: str, request: Message, timeout: float, bound: float | None) -> Any:
        """The call at `target`, following leader redirects; NoAnswer when the next controller
        of the list should be asked instead."""
        named_by: str | None = None  # who named `target` as the leader
        seen = {target}
        while True:
            chan = channel(target, self.settings)
            try:
                connected = wait_connected(chan, bound) if bound is not None else None
                if connected is None and bound is not None:
                    raise NoAnswer(CommandError(f"controller {target} took no connection within {bound:g} s"), True)
                try:
                    result = getattr(cpb_grpc.ControllerServiceStub(chan), method)(
                        request, timeout=timeout, metadata=self.metadata)
                except grpc.RpcError as exc:
                    leader = leader_redirect(exc.code(), _trailers(exc))
                    if leader and leader not in seen and len(seen) <= MAX_REDIRECTS:
                        named_by, target, bound = target, leader, None
                        seen.add(leader)
                        continue
                    error = self._describe(exc, target)
                    if named_by:  # say where the address came from: it was not typed by the operator
                        raise CommandError(f"{error} (the leader, as named by {named_by})", error.exit_code) from None
                    if unanswered(exc, read=method in READS, connected=connected):
                        raise NoAnswer(error, unreachable(exc, self.settings.tls)) from None
                    raise error from None
                self._answered(target)
                return result
            finally:
                chan.close()

    def stream(self, method: str, request: Message, *, timeout: float | None = None) -> Generator[Any, None, None]:
        """Messages of a server stream from the first controller that answers; closing the
        iterator cancels the call (Ctrl-C, --watch). Once messages flow, a break is the caller's
        to handle (reconnect.py asks the list again): a stream is not silently stitched together
        from two controllers."""
        failures: list[NoAnswer] = []
        order = self.candidates()
        read = method in READS
        for index, target in enumerate(order):
            bound = self._connect_bound(index, len(order), timeout or self.settings.timeout)
            chan = channel(target, self.settings)
            call = None
            try:
                connected = wait_connected(chan, bound) if bound is not None else None
                if connected is None and bound is not None:
                    failures.append(NoAnswer(CommandError(f"controller {target} took no connection within "
                                                          f"{bound:g} s"), True))
                    continue
                call = getattr(cpb_grpc.ControllerServiceStub(chan), method)(request, timeout=timeout,
                                                                            metadata=self.metadata)
                try:
                    first = next(call)
                except StopIteration:  # an empty stream is an answer too
                    self._answered(target)
                    return
                except grpc.RpcError as exc:
                    error = self._describe(exc, target)
                    if unanswered(exc, read=read, connected=connected):
                        failures.append(NoAnswer(error, unreachable(exc, self.settings.tls)))
                        continue
                    raise error from None
                self._answered(target)
                yield first
                try:
                    yield from call
                except grpc.RpcError as exc:
                    raise self._describe(exc, target) from None
                return
            finally:
                if call is not None:
                    call.cancel()
                chan.close()
        raise none_answered(failures)


def _trailers(exc: grpc.RpcError) -> Sequence[tuple[str, Any]]:
    try:
        return exc.trailing_metadata() or ()
    except Exception:  # not a Call (a local error): nothing to read
        return ()
