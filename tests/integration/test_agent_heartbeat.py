"""Fleet membership from the agent's side: real agent processes heartbeating to controllers.

The controller here is a recorder in the test process: it implements only
ControllerService.Heartbeat and keeps what the agent sent, to check the agent's half of the
contract. The real controller has its own tests.
"""

from __future__ import annotations

import re
import textwrap
import threading
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from supervisor.xmlrpc import SupervisorTransport

from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc

from tests.support import free_port, tried_in_order, wait_for

from .harness import Daemon, write_config

CONFIG = """
[unix_http_server]
file=%(here)s/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
loglevel=debug

[fleetvisor]
node=node-hb
labels=role=web,zone=z1
grpc_listen=127.0.0.1:{grpc_port}
controllers={controllers}
state_dir=%(here)s/state
{extra}

[program:app]
command=sleep 1000
startsecs=0
"""

FLEET = "[program:svc]\ncommand=sleep 1000\nstartsecs=0\n"
WARNING = r"WARN cannot reach any controller \((?P<list>[^)]*)\): (?P<reason>.+); retrying$"


class Recorder(pb_grpc.ControllerServiceServicer):
    """Answers Heartbeat with `interval` and records (arrival time, request, peer CN)."""

    def __init__(self, port: int | None = None, interval: float = 0.2,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        self.port = port or free_port()
        self.interval = interval
        self.credentials = credentials
        self.calls: list[tuple[float, pb.HeartbeatRequest, str]] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Recorder:
        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_ControllerServiceServicer_to_server(self, server)
        if self.credentials is not None:
            assert server.add_secure_port(self.address, self.credentials)
        else:
            assert server.add_insecure_port(self.address)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(10)
            self._server = None

    def Heartbeat(self, request, context):
        cn = context.auth_context().get("x509_common_name", [b""])[0].decode()
        with self._lock:
            self.calls.append((time.monotonic(), request, cn))
        return pb.HeartbeatResponse(interval_seconds=self.interval, ttl_seconds=self.interval * 3,
                                    controller_id=f"recorder-{self.port}")

    def requests(self) -> list[pb.HeartbeatRequest]:
        with self._lock:
            return [request for _, request, _ in self.calls]

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def times(self) -> list[float]:
        with self._lock:
            return [t for t, _, _ in self.calls]


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def make(**kwargs) -> Recorder:
        recorder = Recorder(**kwargs)
        made.append(recorder)
        return recorder
    yield make
    for recorder in made:
        recorder.stop()


def start_agent(daemons, directory: Path, controllers: list[str], extra: str = "") -> tuple[Daemon, int]:
    grpc_port = free_port()
    text = textwrap.dedent(CONFIG).format(grpc_port=grpc_port, controllers=", ".join(controllers),
                                          extra=extra)
    daemon = daemons(write_config(directory, text))
    daemon.wait_line(r"gRPC AgentService listening on")
    return daemon, grpc_port


def count(daemon: Daemon, pattern: str) -> int:
    regex = re.compile(pattern)
    return sum(1 for line in daemon.messages() if regex.search(line))


def failed_attempts(daemon: Daemon) -> int:
    return count(daemon, r"DEBG heartbeat attempt \d+ to controller \S+ failed: ")


def no_tracebacks(daemon: Daemon) -> None:
    assert not any("Traceback" in line for line in daemon.messages()), "\n".join(daemon.messages())


def test_unreachable_controllers_leave_programs_running_with_one_warning(daemons, tmp_path):
    nobody = f"127.0.0.1:{free_port()}"
    daemon, _ = start_agent(daemons, tmp_path, [nobody])
    daemon.wait_line(r"success: app entered RUNNING state")
    # several attempts on the backoff schedule (1 s, then 2 s), still one warning
    wait_for(lambda: failed_attempts(daemon) >= 3, 15, "three failed heartbeat attempts")
    warnings = daemon.wait_line(WARNING)
    assert len(warnings) == 1 and warnings[0]["list"] == nobody
    assert "UNAVAILABLE" in warnings[0]["reason"]
    delays = [float(m) for m in re.findall(r"failed: .*; next attempt in ([\d.]+)s",
                                                          "\n".join(daemon.messages()))]
    assert 0.7 <= delays[0] <= 1.0 and 1.5 <= delays[1] <= 2.0  # doubling, jitter only shortens
    assert count(daemon, "registered with controller") == 0
    server = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
        None, None, f"unix://{tmp_path}/supervisor.sock"))
    assert server.supervisor.getProcessInfo("app")["statename"] == "RUNNING"
    no_tracebacks(daemon)
    assert daemon.stop(timeout=10) == 0  # the retrying heartbeat does not hold the shutdown up


def test_heartbeat_says_who_the_agent_is_and_follows_the_interval(daemons, recorders, tmp_path):
    recorder = recorders(interval=0.25).start()
    daemon, grpc_port = start_agent(daemons, tmp_path, [recorder.address])
    daemon.wait_line(rf"INFO registered with controller {recorder.address}$")
    # at the answered 0.25 s: six heartbeats at the 3 s default would take 15 s
    wait_for(lambda: recorder.count() >= 6, 10, "six heartbeats")

    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        stub = apb_grpc.AgentServiceStub(channel)
        info = stub.GetInfo(apb.GetInfoRequest(), timeout=10)
        events = stub.WatchEvents(apb.WatchEventsRequest(), timeout=10)
        run_id = next(iter(events)).agent_run_id
        events.cancel()

        first = recorder.requests()[0]
        assert first.node == "node-hb" and dict(first.labels) == {"role": "web", "zone": "z1"}
        assert first.address == f"127.0.0.1:{grpc_port}"
        assert first.agent_version == info.agent_version and first.agent_version
        assert first.applied_revision == "" and not first.edited_by_hand
        assert first.cluster_id == "" and not first.local_revision
        assert first.agent_run_id == run_id and len(run_id) == 32
        assert first.started_at == pytest.approx(info.started_at)

        # and not faster than answered
        gaps = [b - a for a, b in zip(recorder.times()[1:], recorder.times()[2:])]
        assert min(gaps) > 0.2, gaps

        # a long interval now; an applied revision is still reported at once
        recorder.interval = 30.0
        seen = recorder.count()
        wait_for(lambda: recorder.count() > seen, 5, "a heartbeat answered with the long interval")
        seen = recorder.count()
        stub.ApplyConfig(apb.ApplyConfigRequest(revision="rev-7", config_text=FLEET, cluster_id="c-1"), timeout=30)
        wait_for(lambda: recorder.count() > seen, 15, "a heartbeat long before the 30 s interval is up")
        assert recorder.requests()[seen].applied_revision == "rev-7"
        # the identity of the cluster that applied it, and that a controller did (no drift)
        assert recorder.requests()[seen].cluster_id == "c-1" and not recorder.requests()[seen].local_revision
        # a dry run is no news: the next heartbeat is the one for the next real apply
        stub.ApplyConfig(apb.ApplyConfigRequest(revision="rev-8", config_text=FLEET, dry_run=True), timeout=30)
        # a per-node apply (forced: the node has controllers) keeps the identity and is drift
        stub.ApplyConfig(apb.ApplyConfigRequest(revision="rev-9", config_text=FLEET, force=True), timeout=30)
        wait_for(lambda: recorder.count() > seen + 1, 15, "a heartbeat right after the second apply")
        assert [r.applied_revision for r in recorder.requests()[seen:]] == ["rev-7", "rev-9"]
        assert recorder.requests()[seen + 1].cluster_id == "c-1" and recorder.requests()[seen + 1].local_revision
    finally:
        channel.close()
    assert count(daemon, "registered with controller") == 1
    assert count(daemon, "cannot reach any controller") == 0
    no_tracebacks(daemon)


def test_controller_outage_is_one_warning_then_registered_again(daemons, recorders, tmp_path):
    recorder = recorders(interval=0.1).start()
    daemon, _ = start_agent(daemons, tmp_path, [recorder.address])
    daemon.wait_line(r"registered with controller")
    recorder.stop()
    daemon.wait_line(WARNING)
    before = failed_attempts(daemon)
    wait_for(lambda: failed_attempts(daemon) >= before + 2, 10, "two more failed attempts")
    assert count(daemon, "cannot reach any controller") == 1
    seen = recorder.count()
    recorder.start()
    daemon.wait_line(rf"INFO registered with controller {recorder.address}$", timeout=15, count=2)
    wait_for(lambda: recorder.count() > seen, 5, "heartbeats to the restarted controller")
    messages = [m for m in daemon.messages() if "controller" in m and "DEBG" not in m and "TRAC" not in m]
    assert [m.split()[0] + " " + m.split()[1] for m in messages] == ["INFO registered", "WARN cannot", "INFO registered"]
    no_tracebacks(daemon)


def test_failover_to_the_next_controller_of_the_list(daemons, recorders, tmp_path):
    nobody = f"127.0.0.1:{free_port()}"
    a = recorders(interval=0.1).start()
    b = recorders(interval=0.1).start()
    daemon, _ = start_agent(daemons, tmp_path, tried_in_order("node-hb", [nobody, a.address, b.address]))
    # the first it tries is down: the next is tried at once, without a warning
    daemon.wait_line(rf"INFO registered with controller {a.address}$")
    wait_for(lambda: a.count() >= 3, 5, "heartbeats to the second controller tried")
    assert b.count() == 0
    a.stop()
    daemon.wait_line(rf"INFO registered with controller {b.address}$")
    wait_for(lambda: b.count() >= 3, 5, "heartbeats to the third controller tried")
    assert count(daemon, "cannot reach any controller") == 0
    assert b.requests()[0].agent_run_id == a.requests()[0].agent_run_id
    no_tracebacks(daemon)


def test_mutual_tls_to_the_controller(daemons, recorders, tmp_path):
    pki = tmp_path / "pki"
    make_ca(pki)
    issue(pki, "controller", ["127.0.0.1"], role="controller")
    issue(pki, "node-hb", ["127.0.0.1"], role="agent")
    creds = grpc.ssl_server_credentials([((pki / "controller.key").read_bytes(), (pki / "controller.pem").read_bytes())],
                                        root_certificates=(pki / "ca.pem").read_bytes(), require_client_auth=True)
    recorder = recorders(interval=0.2, credentials=creds).start()
    tls = f"tls_cert={pki}/node-hb.pem\ntls_key={pki}/node-hb.key\ntls_ca={pki}/ca.pem"
    daemon, _ = start_agent(daemons, tmp_path, [recorder.address], extra=tls)
    daemon.wait_line(rf"INFO registered with controller {recorder.address}$")
    wait_for(lambda: recorder.count() >= 2, 5, "heartbeats over mutual TLS")
    assert {cn for _, _, cn in recorder.calls} == {"node-hb"}  # the agent showed its certificate
    no_tracebacks(daemon)
