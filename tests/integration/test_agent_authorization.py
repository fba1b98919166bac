"""The agent's gRPC face enforces roles and scopes, and keeps the fleet's policies and
revocations in its state dir while no controller answers.

Real agents with mutual TLS and role certificates from cli.certs.issue; people are judged
through the real `fleetctl --node`, exact status codes through a gRPC stub; the controller
that hands out the security state is a recorder like test_agent_heartbeat's.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from fleetvisor.agent.security.identity import from_pem
from fleetvisor.agent.security.policy import PolicySet, make
from fleetvisor.agent.security.wire import state_to_pb
from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as cpb
from fleetvisor.v1 import controller_pb2_grpc as cpb_grpc

from tests.support import free_port, wait_for

from .harness import write_config

CLUSTER = "test"
NODE = "node-a"
FLEETCTL = [sys.executable, "-m", "fleetvisor.cli.main"]
CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s

[fleetvisor]
node={node}
labels=role=web
grpc_listen=127.0.0.1:{port}
state_dir=%(here)s/state
tls_cert={pki}/{node}.pem
tls_key={pki}/{node}.key
tls_ca={pki}/ca.pem
{extra}

[program:web]
command=sleep 1000
numprocs=2
process_name=%(program_name)s_%(process_num)d
startsecs=0

[program:db]
command=sleep 1000
startsecs=0
"""
# webops may read and control web:*, and deploy canary* running as nobody; mallory is revoked
WEB_OPS = make("web-ops", ["read", "control"], groups=["webops"], programs="web:*")
CANARY = make("canary", ["deploy"], groups=["webops"], programs="canary*", run_as=["nobody"])


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory)
    for node in (NODE, "node-x"):
        issue(directory, node, ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(directory, "ctl-1", ["127.0.0.1"], role="controller", cluster=CLUSTER)
    issue(directory, "admin", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(directory, "mallory", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(directory, "webop", [], role="operator", groups=["webops"], cluster=CLUSTER)
    issue(directory, "vera", [], role="viewer", cluster=CLUSTER)
    return directory


def serial(pki: Path, name: str) -> str:
    return from_pem((pki / f"{name}.pem").read_bytes()).serial


def kept(pki: Path, revision: int = 3) -> PolicySet:
    return PolicySet(revision, [WEB_OPS, CANARY], {serial(pki, "mallory"): "mallory"})


class Node:
    def __init__(self, daemons, base: Path, pki: Path, *, state: str | None = None, extra: str = "") -> None:
        self.pki = pki
        self.base = base
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.state_file = base / "state" / "security.json"
        if state is not None:
            self.state_file.parent.mkdir(mode=0o700, exist_ok=True)
            self.state_file.write_text(state)
        text = textwrap.dedent(CONFIG).format(node=NODE, port=self.port, pki=pki, extra=extra)
        self.daemon = daemons(write_config(base, text))
        self.daemon.wait_line(r"gRPC AgentService listening on .*\(mutual TLS\)")
        for name in ("web_0", "web_1", "db"):
            self.daemon.wait_line(rf"success: {name} entered RUNNING")

    def fleetctl(self, who: str, *args: str) -> subprocess.CompletedProcess:
        flags = ("--tls-cert", f"{self.pki}/{who}.pem", "--tls-key", f"{self.pki}/{who}.key",
                 "--tls-ca", f"{self.pki}/ca.pem")
        return subprocess.run([*FLEETCTL, "--node", self.address, "--timeout", "10", *flags, *args],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "FLEETCTL_CONFIG": "/nonexistent", "COLUMNS": "200"})

    def pids(self) -> dict[str, int]:
        shown = self.fleetctl("admin", "--output", "json", "status")
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        processes = data["processes"] if isinstance(data, dict) else data
        return {p["namespec"]: p["pid"] for p in processes}

    def stub(self, who: str) -> tuple[grpc.Channel, apb_grpc.AgentServiceStub]:
        creds = grpc.ssl_channel_credentials((self.pki / "ca.pem").read_bytes(), (self.pki / f"{who}.key").read_bytes(),
                                             (self.pki / f"{who}.pem").read_bytes())
        channel = grpc.secure_channel(self.address, creds)
        return channel, apb_grpc.AgentServiceStub(channel)

    def code_for(self, who: str, metadata: tuple = ()) -> grpc.StatusCode:
        channel, stub = self.stub(who)
        with channel:
            try:
                stub.ListProcesses(apb.ListProcessesRequest(), metadata=metadata, timeout=10)
            except grpc.RpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    def warnings(self, pattern: str) -> list[str]:
        return [m for m in self.daemon.messages() if m.startswith("WARN") and re.search(pattern, m)]


def refused(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode != 0, result.stdout
    assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def fleet_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fleet.conf"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_a_viewer_reads_and_is_refused_control_and_deploy(daemons, tmp_path, pki):
    node = Node(daemons, tmp_path, pki)
    before = node.pids()
    shown = node.fleetctl("vera", "status")
    assert shown.returncode == 0, shown.stderr
    assert all(name in shown.stdout for name in ("web:web_0", "web:web_1", "db"))
    assert node.fleetctl("vera", "tail", "db").returncode == 0
    assert node.fleetctl("vera", "info").returncode == 0
    for args in (("stop", "db"), ("start", "db"), ("restart", "all")):
        refused(node.fleetctl("vera", *args), "viewer vera may not control")
    canary = fleet_file(tmp_path, "[program:canary]\ncommand=sleep 1000\nuser=nobody\n")
    refused(node.fleetctl("vera", "config", "apply", canary, "--dry-run"), "viewer vera may not deploy")
    assert node.pids() == before
    assert node.warnings(r"viewer vera may not control")
    assert node.warnings(r"viewer vera may not deploy")


def test_an_admin_controls_and_applies(daemons, tmp_path, pki):
    node = Node(daemons, tmp_path, pki)
    before = node.pids()
    restarted = node.fleetctl("admin", "restart", "db")
    assert restarted.returncode == 0, restarted.stderr
    assert node.pids()["db"] != before["db"]
    canary = fleet_file(tmp_path, "[program:canary]\ncommand=sleep 1000\nstartsecs=0\n")
    applied = node.fleetctl("admin", "config", "apply", canary, "--revision", "rev-1")
    assert applied.returncode == 0, applied.stderr
    wait_for(lambda: node.pids().get("canary"), 10, "canary running")
    assert not node.warnings("refused|may not")


def test_a_scoped_operator_controls_and_sees_only_its_programs(daemons, tmp_path, pki):
    node = Node(daemons, tmp_path, pki, state=kept(pki).to_json())
    before = node.pids()
    shown = node.fleetctl("webop", "--output", "json", "status")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    listed = {p["namespec"] for p in (data["processes"] if isinstance(data, dict) else data)}
    assert listed == {"web:web_0", "web:web_1"}
    refused(node.fleetctl("webop", "status", "db"), "may not read db:db")
    refused(node.fleetctl("webop", "tail", "db"), "may not read db:db")
    assert node.fleetctl("webop", "tail", "web:web_0").returncode == 0

    restarted = node.fleetctl("webop", "restart", "web:*")
    assert restarted.returncode == 0, restarted.stderr
    after = node.pids()
    assert after["web:web_0"] != before["web:web_0"] and after["web:web_1"] != before["web:web_1"]

    refused(node.fleetctl("webop", "restart", "db"), "operator webop (groups webops) may not control db:db")
    # one name out of scope refuses the whole call: web_0 is not touched either
    refused(node.fleetctl("webop", "stop", "web:web_0", "db"), "may not control db:db")
    refused(node.fleetctl("webop", "stop", "all"), "may not control db:db")
    assert node.pids() == after
    assert node.warnings(r"operator webop \(groups webops\) may not control db:db")


def test_a_scoped_operator_deploys_only_what_it_may_run_as(daemons, tmp_path, pki):
    node = Node(daemons, tmp_path, pki, state=kept(pki).to_json())
    as_nobody = fleet_file(tmp_path, "[program:canary]\ncommand=sleep 1000\nuser=nobody\n")
    dry = node.fleetctl("webop", "config", "apply", as_nobody, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    as_root = fleet_file(tmp_path, "[program:canary]\ncommand=sleep 1000\nuser=root\n")
    refused(node.fleetctl("webop", "config", "apply", as_root, "--revision", "r2"),
            "may not deploy canary:canary running as root")
    no_user = fleet_file(tmp_path, "[program:canary]\ncommand=sleep 1000\n")  # runs as the agent's user
    refused(node.fleetctl("webop", "config", "apply", no_user, "--dry-run"), "canary:canary running as root")
    other = fleet_file(tmp_path, "[program:cron]\ncommand=sleep 1000\nuser=nobody\n")
    refused(node.fleetctl("webop", "config", "apply", other, "--revision", "r3"), "may not deploy cron:cron")
    config = node.fleetctl("admin", "--output", "json", "config", "show")
    assert config.returncode == 0, config.stderr
    assert "canary" not in config.stdout and "cron" not in config.stdout  # nothing was applied
    assert not (tmp_path / "state" / "fleet.conf").exists()


def test_other_agents_foreign_nodes_and_revoked_certificates_are_refused(daemons, tmp_path, pki):
    node = Node(daemons, tmp_path, pki, state=kept(pki).to_json())
    assert node.code_for("admin") == grpc.StatusCode.OK
    assert node.code_for("node-x") == grpc.StatusCode.PERMISSION_DENIED
    refused(node.fleetctl("node-x", "status"), "agent node-x may not call")
    assert node.code_for("ctl-1", (("fleetvisor-node", NODE),)) == grpc.StatusCode.OK
    assert node.code_for("ctl-1", (("fleetvisor-node", "node-b"),)) == grpc.StatusCode.FAILED_PRECONDITION
    assert node.code_for("ctl-1") == grpc.StatusCode.FAILED_PRECONDITION
    assert node.code_for("mallory") == grpc.StatusCode.UNAUTHENTICATED
    refused(node.fleetctl("mallory", "restart", "db"), "revoked")
    assert node.warnings(r"operator mallory .*revoked")


def test_a_corrupt_state_file_is_one_warning_and_built_ins_only(daemons, tmp_path, pki):
    node = Node(daemons, tmp_path, pki, state='{"policies": [{"name": "x"')
    (line,) = node.warnings(r"security\.json")
    assert str(node.state_file) in line
    assert not any("Traceback" in m for m in node.daemon.messages())
    assert node.code_for("mallory") == grpc.StatusCode.OK  # the revocation was in the lost file
    refused(node.fleetctl("webop", "status"), "operator webop (groups webops) may not read")
    assert node.fleetctl("admin", "status").returncode == 0


class SecurityRecorder(cpb_grpc.ControllerServiceServicer):
    """A controller that answers heartbeats with a security state when the agent holds an
    older revision, and records the revisions agents said they held."""

    def __init__(self, pki: Path, state: PolicySet) -> None:
        self.state = state
        self.held: list[int] = []
        self.port = free_port()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        cpb_grpc.add_ControllerServiceServicer_to_server(self, self.server)
        creds = grpc.ssl_server_credentials([((pki / "ctl-1.key").read_bytes(), (pki / "ctl-1.pem").read_bytes())],
                                            root_certificates=(pki / "ca.pem").read_bytes(), require_client_auth=True)
        assert self.server.add_secure_port(f"127.0.0.1:{self.port}", creds)
        self.server.start()

    def Heartbeat(self, request, context):
        self.held.append(request.security_revision)
        response = cpb.HeartbeatResponse(interval_seconds=0.2, ttl_seconds=1, controller_id="recorder")
        if request.security_revision != self.state.revision:
            response.security.CopyFrom(state_to_pb(self.state))
        return response

    def stop(self) -> None:
        self.server.stop(grace=None).wait(10)


def test_the_state_a_controller_sends_is_kept_across_a_restart_without_it(daemons, tmp_path, pki):
    recorder = SecurityRecorder(pki, kept(pki, revision=41))
    try:
        (tmp_path / "probe").mkdir()
        assert Node(daemons, tmp_path / "probe", pki).code_for("mallory") == grpc.StatusCode.OK  # no revocation yet
        (tmp_path / "a").mkdir()
        node = Node(daemons, tmp_path / "a", pki, extra=f"controllers=127.0.0.1:{recorder.port}")
        wait_for(lambda: 41 in recorder.held, 15, "the agent to report the revision it was sent")
        assert recorder.held[0] == 0
        assert node.code_for("mallory") == grpc.StatusCode.UNAUTHENTICATED
        assert stat.S_IMODE(node.state_file.stat().st_mode) == 0o600
        assert PolicySet.from_json(node.state_file.read_text()) == kept(pki, revision=41)
    finally:
        recorder.stop()
    assert node.daemon.stop() == 0
    again = Node(daemons, tmp_path / "a", pki, extra=f"controllers=127.0.0.1:{recorder.port}")
    assert again.code_for("mallory") == grpc.StatusCode.UNAUTHENTICATED
    refused(again.fleetctl("webop", "restart", "db"), "may not control db:db")
    assert again.fleetctl("webop", "restart", "web:web_1").returncode == 0


def test_a_scoped_operator_watches_only_its_programs(daemons, tmp_path, pki):
    node = Node(daemons, tmp_path, pki, state=kept(pki).to_json())
    channel, stub = node.stub("webop")
    with channel:
        events = stub.WatchEvents(apb.WatchEventsRequest(), timeout=30)
        snapshot = next(events).snapshot
        assert {p.namespec for p in snapshot.processes} == {"web:web_0", "web:web_1"}
        # db changes first, in the journal's order: a leak would arrive before web_0's
        for name in ("db", "web:web_0"):
            assert node.fleetctl("admin", "restart", name).returncode == 0
        seen = []
        for event in events:
            if event.WhichOneof("kind") == "process_state":
                seen.append((event.process_state.process.namespec, event.process_state.process.statename))
                if seen[-1] == ("web:web_0", "RUNNING"):
                    break
        events.cancel()
    assert {name for name, _ in seen} == {"web:web_0"}, seen
