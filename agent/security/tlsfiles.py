"""The certificate, key and CA files of an agent or controller, reloaded when they change.

Rotation without downtime: the gRPC server's credentials are dynamic (gRPC asks for them at
every new handshake, and a cheap stat of the three files says whether to read them again),
clients build each new channel from the current files, and established connections and
streams carry on with what they were opened with. SIGHUP (`refresh()`) forces a look.

A new set is taken only whole and consistent: every file readable and parsed, the key the
certificate's, and the certificate still this process's own identity (`check`); otherwise
the previous set stays in use and one line says why. Who signed the certificate is for the
peers to judge: in a CA rotation a node may get a certificate of the new CA before its own
bundle lists it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from .identity import Identity, IdentityError, from_pem


class TlsFileError(ValueError):
    """The files do not make a usable set; the message says which and why."""


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class TlsSet:
    cert: bytes
    key: bytes
    ca: bytes
    identity: Identity


# What `check` answers for an identity: None when it may be used, else why not.
Check = Callable[[Identity], "str | None"]
_Stamp = tuple[tuple[int, int, int] | None, ...]


def read_set(files: TlsFiles, check: Check) -> TlsSet:
    """The three files as one checked set. Raises TlsFileError."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = {}
    for what, path in (("certificate", files.cert), ("key", files.key), ("CA", files.ca)):
        try:
            with open(path, "rb") as f:
                data[what] = f.read()
        except OSError as exc:
            raise TlsFileError(f"cannot read the {what} {path}: {exc.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificate(data["certificate"])
    except ValueError:
        raise TlsFileError(f"the certificate {files.cert} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(data["key"], None)
    except (ValueError, TypeError):
        raise TlsFileError(f"the key {files.key} is not an unencrypted PEM private key") from None
    try:
        x509.load_pem_x509_certificates(data["CA"])
    except ValueError:
        raise TlsFileError(f"the CA {files.ca} is not a PEM certificate bundle") from None
    if key.public_key() != cert.public_key():
        raise TlsFileError(f"the key {files.key} is not the key of the certificate {files.cert}")
    try:
        identity = from_pem(data["certificate"])
    except IdentityError as exc:
        raise TlsFileError(f"the certificate {files.cert}: {exc}", True) from None
    refusal = check(identity)
    if refusal is not None:
        raise TlsFileError(f"the certificate {files.cert} is for {identity}: {refusal}")
    return TlsSet(data["certificate"], data["key"], data["CA"], identity)


class TlsMaterial:
    """The current set, shared by the server credentials and new client channels.

    gRPC calls the server's fetcher from its own threads, hence the lock; `report(line,
    trouble)` is how a rejected (trouble) or accepted change is logged, and it must be safe
    to call from any thread."""

    def __init__(self, files: TlsFiles, check: Check, report: Callable[[str, bool], None]) -> None:
        self.files = files
        self.check = check
        self.report = report
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self.current = read_set(files, check)  # at startup a bad set is an error, not a warning
        self.generation = 0  # bumped for each set taken after the first

    def refresh(self, force: bool = False) -> bool:
        """Take the files again if they changed since the last look (or `force`); True if a
        new set is now current. A set that does not pass keeps the previous one (reported
        once per change)."""
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp and not force:
                return False
            self._stamp = stamp
            try:
                fresh = read_set(self.files, self.check)
            except TlsFileError as exc:
                self.report(f"keeping the current TLS certificate (serial {self.current.identity.serial}): {exc}", True)
                return False
            if fresh == self.current:
                return False
            self.current = fresh
            self.generation += 1
        self.report(f"TLS certificate reloaded: {fresh.identity}, serial {fresh.identity.serial}", False)
        return True

    def _stat(self) -> _Stamp:
        stamps: list[tuple[int, int, int] | None] = []
        for path in (self.files.cert, self.files.key, self.files.ca):
            try:
                st = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS that follows the files; clients need a certificate signed by the CA."""
        served = [self.generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            self.refresh()
            if served[0] == self.generation:
                return None  # keep what the server has
            served[0] = self.generation
            return self._server_config()

        return grpc.dynamic_ssl_server_credentials(self._server_config(), fetch,
                                                   require_client_authentication=True)

    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        now = self.current
        return grpc.ssl_server_certificate_configuration([(now.key, now.cert)], root_certificates=now.ca)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """For a new client channel: the current set, after a look at the files."""
        self.refresh()
        now = self.current
        return grpc.ssl_channel_credentials(root_certificates=now.ca, private_key=now.key,
                                            certificate_chain=now.cert)
