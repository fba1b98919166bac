"""gRPC channels for fleetctl, and turning transport failures into one clear line."""

from __future__ import annotations

import grpc

from .settings import Settings


class CommandError(Exception):
    """A failure to report as one line; `exit_code` follows supervisorctl's meanings."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"cannot read TLS {what} {path}: {exc.strerror}", 2) from None


def channel(target: str, settings: Settings) -> grpc.Channel:
    if ":" not in target:
        raise CommandError(f"address {target!r} must be HOST:PORT", 2)
    if settings.tls:
        creds = grpc.ssl_channel_credentials(root_certificates=_read(settings.tls_ca, "CA"),
                                             private_key=_read(settings.tls_key, "key"),
                                             certificate_chain=_read(settings.tls_cert, "certificate"))
        return grpc.secure_channel(target, creds)
    return grpc.insecure_channel(target)


def describe_rpc_error(exc: grpc.RpcError, target: str) -> CommandError:
    """The message an operator needs, without gRPC's internals."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered or "tls" in lowered:
            return CommandError(f"TLS handshake with {target} failed: check the certificates "
                                "(the agent requires a client certificate signed by its CA)")
        if "shutdown" in lowered.replace("_", ""):
            return CommandError(f"{target} is shutting down")
        reason = _first_line(details).rsplit(": ", 1)[-1] or "unavailable"
        return CommandError(f"cannot reach {target}: {reason}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CommandError(f"{target} did not answer in time")
    if code == grpc.StatusCode.NOT_FOUND:
        return CommandError(_first_line(details), 4)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return CommandError(_first_line(details), 2)
    return CommandError(f"{target}: {_first_line(details) or code}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
