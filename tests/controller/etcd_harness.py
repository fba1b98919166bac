"""A real etcd server for tests: free loopback ports, a private data dir, restart in place.

`restart()` keeps the ports and the data dir so clients that were connected can reconnect
and resume, which is what the mirror and election tests exercise. Timing knobs are tightened
(10 ms heartbeat, 100 ms election) so etcd's minimum lease TTL drops to 1 s and tests stay
short. Everything here is synchronous: it is called from fixtures and, briefly, from inside
a test's event loop (a restart blocks that loop for a fraction of a second, as a real outage
would freeze nothing but the network).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from aetcd import rpc

from fleetvisor.controller.embedded import die_with_parent

from tests.support import free_port

ETCD = os.path.abspath(shutil.which("etcd") or "/usr/bin/etcd")


@dataclass
class ServerTLS:
    """Server certificate for etcd's client port; `client_auth` demands client certificates."""

    ca: Path
    cert: Path
    key: Path
    client_auth: bool = True


class EtcdServer:
    def __init__(self, base: Path, *, tls: ServerTLS | None = None, binary: str = ETCD, name: str = "test") -> None:
        self.base = base
        self.name = name
        self.cluster = ""  # "name=peer-url,...": set by cluster() for a multi-member etcd
        self.data_dir = base / "etcd-data"
        self.log_path = base / "etcd.log"
        self.tls = tls
        self.binary = binary
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.root_password: str | None = None  # set by enable_auth()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def _args(self) -> list[str]:
        scheme = "https" if self.tls else "http"
        client_url = f"{scheme}://127.0.0.1:{self.client_port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        args = [self.binary, "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", self.cluster or f"{self.name}={peer_url}", "--initial-cluster-state", "new",
                "--heartbeat-interval", "10", "--election-timeout", "100",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        if self.tls:
            args += ["--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
                     "--trusted-ca-file", str(self.tls.ca)]
            if self.tls.client_auth:
                args.append("--client-cert-auth")
        return args

    def start(self, timeout: float = 20.0) -> None:
        self.launch()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def launch(self) -> None:
        """Start the process without waiting (a cluster member is ready only with a quorum)."""
        assert self.proc is None, "already running"
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # die_with_parent: no etcd outlives a test run that is killed
            self.proc = subprocess.Popen(die_with_parent(self._args()), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         process_group=0, close_fds=True)

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(self.tls.ca.read_bytes(), self.tls.key.read_bytes(),
                                            self.tls.cert.read_bytes())

    def _wait_ready(self, timeout: float) -> None:
        """Block until a linearizable read succeeds (a leader exists), or fail with the log."""
        options = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                   ("grpc.max_reconnect_backoff_ms", 100)]
        creds = self._credentials()
        channel = (grpc.secure_channel(self.endpoint, creds, options) if creds
                   else grpc.insecure_channel(self.endpoint, options))
        deadline = time.monotonic() + timeout
        try:
            stub = rpc.KVStub(channel)
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"etcd exited ({self.proc.returncode}): {self.log_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"etcd not ready after {timeout}s: {self.log_tail()}")
                try:
                    metadata = None
                    if self.root_password:
                        token = rpc.AuthStub(channel).Authenticate(
                            rpc.AuthenticateRequest(name="root", password=self.root_password),
                            wait_for_ready=True, timeout=min(remaining, 1.0)).token
                        metadata = (("token", token),)
                    stub.Range(rpc.RangeRequest(key=b"ready?"), wait_for_ready=True,
                               timeout=min(remaining, 1.0), metadata=metadata)
                    return
                except grpc.RpcError:
                    continue  # not listening yet, or no leader yet; the 1 s slice re-checks the process
        finally:
            channel.close()

    # -- synchronous writes: they run while a test's event loop is blocked, i.e. while the
    # -- clients under test cannot react (e.g. before they reconnect after a restart)

    def _call(self, method: str, request, token: str | None = None):
        creds = self._credentials()
        channel = (grpc.secure_channel(self.endpoint, creds) if creds else grpc.insecure_channel(self.endpoint))
        try:
            service = rpc.AuthStub(channel) if method.startswith("Auth") or method.startswith("User") \
                else rpc.KVStub(channel)
            metadata = (("token", token),) if token else None
            return getattr(service, method)(request, timeout=10, metadata=metadata)
        finally:
            channel.close()

    def put(self, key: bytes, value: bytes) -> int:
        return self._call("Put", rpc.PutRequest(key=key, value=value)).header.revision

    def delete(self, key: bytes) -> int:
        return self._call("DeleteRange", rpc.DeleteRangeRequest(key=key)).header.revision

    def compact(self) -> int:
        """Compact all history up to the current revision; returns that revision."""
        revision = self._call("Range", rpc.RangeRequest(key=b"\0", count_only=True)).header.revision
        self._call("Compact", rpc.CompactionRequest(revision=revision, physical=True))
        return revision

    def enable_auth(self, password: str) -> None:
        """Create `root` with `password` and switch authentication on."""
        self._call("UserAdd", rpc.AuthUserAddRequest(name="root", password=password))
        self._call("UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        self._call("AuthEnable", rpc.AuthEnableRequest())
        self.root_password = password

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal(self, sig: int, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): etcd closes its streams, clients see UNAVAILABLE."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye on open streams."""
        self._signal(signal.SIGKILL, 5.0)

    def restart(self, *, kill: bool = False) -> None:
        """Down and up again on the same ports and data dir."""
        self.kill() if kill else self.stop()
        self.start()


def cluster(base: Path, size: int = 3, timeout: float = 30.0) -> list[EtcdServer]:
    """A multi-member etcd cluster on loopback; every member is ready on return."""
    members = [EtcdServer(base / f"m{i}", name=f"m{i}") for i in range(1, size + 1)]
    initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in members)
    for member in members:
        member.cluster = initial
        member.launch()
    try:
        for member in members:
            member._wait_ready(timeout)
    except BaseException:
        for member in members:
            member.kill()
        raise
    return members
