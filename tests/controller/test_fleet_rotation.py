"""Certificate rotation without downtime: a controller and an agent take new certificate files
(same CA, then a CA bundle with the old and a new CA) while streams to both stay open. The
streams carry on; new connections see the new certificates."""

from __future__ import annotations

import queue
import shutil
import signal
import socket
import ssl
import threading
from pathlib import Path

import grpc
from cryptography import x509

from fleetvisor.agent.security.identity import from_pem
from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as cpb
from fleetvisor.v1 import controller_pb2_grpc as cpb_grpc
from tests.support import wait_for

from . import test_fleet_tls
from .fleet_harness import CLUSTER
from .test_fleet_tls import OPERATOR, TLSFleet, tls_agent

pki = test_fleet_tls.pki  # the fixtures this module shares
tls_fleet = test_fleet_tls.tls_fleet


def served_serial(address: str, directory: Path) -> str:
    """The serial of the certificate a new TLS connection to `address` is shown (as the
    operator, trusting directory/ca.pem)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(str(directory / "ca.pem"))
    ctx.load_cert_chain(str(directory / f"{OPERATOR}.pem"), str(directory / f"{OPERATOR}.key"))
    ctx.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def file_serial(path: Path) -> str:
    return from_pem(path.read_bytes()).serial


class Streams:
    """A WatchStatus stream to the controller and a WatchEvents stream to web-1, opened once
    and read on threads; each message goes to its queue."""

    def __init__(self, f: TLSFleet) -> None:
        creds = grpc.ssl_channel_credentials((f.pki / "ca.pem").read_bytes(),
                                             (f.pki / f"{OPERATOR}.key").read_bytes(),
                                             (f.pki / f"{OPERATOR}.pem").read_bytes())
        self.channels = [grpc.secure_channel(f.ctl.address, creds),
                         grpc.secure_channel(f.fleet.agents[0].address, creds)]
        self.status: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.calls = [cpb_grpc.ControllerServiceStub(self.channels[0]).WatchStatus(cpb.StatusRequest()),
                      apb_grpc.AgentServiceStub(self.channels[1]).WatchEvents(apb.WatchEventsRequest())]
        for call, into in zip(self.calls, (self.status, self.events), strict=True):
            threading.Thread(target=self._read, args=(call, into), daemon=True).start()
        assert self.events.get(timeout=10).WhichOneof("kind") == "snapshot"
        self.status.get(timeout=10)

    @staticmethod
    def _read(call, into: queue.Queue) -> None:
        try:
            for message in call:
                into.put(message)
        except grpc.RpcError as exc:
            into.put(exc)

    def see_app_stopped(self, f: TLSFleet) -> None:
        """Both streams report web-1:app stopping: neither was cut (an error would show)."""
        assert f.run("stop", "web-1:app").returncode == 0
        wait_for(lambda: self._next(self.events, lambda e: e.process_state.process.statename == "STOPPED"),
                 15, "web-1's open WatchEvents stream to report app STOPPED")
        wait_for(lambda: self._next(self.status, lambda s: any(
            p.statename == "STOPPED" for n in s.nodes if n.node.name == "web-1" for p in n.processes
            if p.name == "app")), 15, "the open WatchStatus stream to show web-1:app STOPPED")
        assert f.run("start", "web-1:app").returncode == 0

    @staticmethod
    def _next(into: queue.Queue, match) -> bool:
        message = into.get(timeout=10)
        assert not isinstance(message, grpc.RpcError), f"the stream ended: {message}"
        return bool(match(message))

    def close(self) -> None:
        for call in self.calls:
            call.cancel()
        for channel in self.channels:
            channel.close()


def rotate(f: TLSFleet, source: Path) -> tuple[str, str]:
    """Give ctl-1 and web-1 the certificates `source` signs; their new serials."""
    issue(source, "ctl-1", ["127.0.0.1"], role="controller", cluster=CLUSTER, force=True)
    issue(source, "web-1", ["127.0.0.1"], role="agent", cluster=CLUSTER, force=True)
    if source != f.pki:
        for name in ("ctl-1.key", "ctl-1.pem", "web-1.key", "web-1.pem"):
            shutil.copy(source / name, f.pki / name)
    return file_serial(f.pki / "ctl-1.pem"), file_serial(f.pki / "web-1.pem")


def test_rotation_keeps_open_streams_and_serves_the_new_certificates(tls_fleet, tmp_path):
    f = tls_fleet
    web_1 = f.fleet.agents[0]
    streams = Streams(f)
    try:
        assert served_serial(f.ctl.address, f.pki) == file_serial(f.pki / "ctl-1.pem")
        assert served_serial(web_1.address, f.pki) == file_serial(f.pki / "web-1.pem")

        # Same CA: the files change, the next connection shows the new certificate.
        ctl_serial, agent_serial = rotate(f, f.pki)
        wait_for(lambda: served_serial(f.ctl.address, f.pki) == ctl_serial, 10, "ctl-1 to serve its new certificate")
        wait_for(lambda: served_serial(web_1.address, f.pki) == agent_serial, 10, "web-1 to serve its new one")
        f.ctl.wait_line(f"TLS certificate reloaded: controller ctl-1, serial {ctl_serial}")
        web_1.daemon.wait_line(f"TLS certificate reloaded: agent web-1, serial {agent_serial}")
        streams.see_app_stopped(f)

        # A new CA: first every node trusts both, then ctl-1 and web-1 get certificates of the new one.
        new_ca = tmp_path / "new-ca"
        make_ca(new_ca, "fleetvisor CA 2")
        bundle = (f.pki / "ca.pem").read_bytes() + (new_ca / "ca.pem").read_bytes()
        (f.pki / "ca.pem").write_bytes(bundle)
        ctl_serial, agent_serial = rotate(f, new_ca)
        wait_for(lambda: served_serial(f.ctl.address, f.pki) == ctl_serial, 10, "ctl-1 to serve the new CA's")
        wait_for(lambda: served_serial(web_1.address, f.pki) == agent_serial, 10, "web-1 to serve the new CA's")
        streams.see_app_stopped(f)

        # An agent that trusts only the new CA joins: the controller serves it and dials it with
        # the new certificate (its links made after the rotation use the new files).
        issue(new_ca, "web-3", ["127.0.0.1"], role="agent", cluster=CLUSTER)
        f.fleet.agents.append(tls_agent(f.fleet.base, "web-3", f.ctl.address, new_ca))
        f.wait_running(["web-1", "web-2", "web-3"])

        # web-2 comes back at the same address trusting only the new CA: the controller's link,
        # dialled before the rotation, fails once and dials again with the new certificate.
        web_2 = f.fleet.agents[1]
        web_2.stop()
        issue(new_ca, "web-2", ["127.0.0.1"], role="agent", cluster=CLUSTER)
        web_2.config.write_text(web_2.config.read_text().replace(str(f.pki), str(new_ca)))
        web_2.start()
        f.wait_running(["web-1", "web-2", "web-3"])

        # SIGHUP makes the controller look at once; a broken key keeps the current set.
        (f.pki / "ctl-1.key").write_text("garbage")
        f.ctl.proc.send_signal(signal.SIGHUP)
        f.ctl.wait_line(f"keeping the current TLS certificate (serial {ctl_serial}): the key")
        assert served_serial(f.ctl.address, f.pki) == ctl_serial
        assert f.ctl.proc.poll() is None
        streams.see_app_stopped(f)
    finally:
        streams.close()


def test_an_agent_keeps_its_certificate_when_the_new_files_are_not_its_own(tls_fleet):
    f = tls_fleet
    web_2 = f.fleet.agents[1]
    serial = file_serial(f.pki / "web-2.pem")
    for suffix in ("pem", "key"):  # web-1's certificate is no certificate for web-2
        shutil.copy(f.pki / f"web-1.{suffix}", f.pki / f"web-2.{suffix}")
    assert served_serial(web_2.address, f.pki) == serial
    web_2.daemon.wait_line(rf"keeping the current TLS certificate \(serial {serial}\): .* is for agent web-1: "
                           r"not agent web-2")

    # The SIGHUP restart reads its files again and, finding them still wrong, serves on with the old set.
    web_2.daemon.proc.send_signal(signal.SIGHUP)
    web_2.daemon.wait_line(r"gRPC AgentService listening on", count=2)
    web_2.daemon.wait_line(rf"keeping the current TLS certificate \(serial {serial}\)", count=2)
    assert web_2.daemon.proc.poll() is None
    assert served_serial(web_2.address, f.pki) == serial
    f.wait_running(["web-1", "web-2"])
