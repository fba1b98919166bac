"""The fleet simulator against a real controller and a real etcd: 50 virtual nodes in 2
processes, judged from the controller's side (its GetStatus, ConfigStatus and Control)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from benchmarks.simulator.child import SimulatorProcess
from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc
from tests.controller.etcd_harness import EtcdServer
from tests.controller.fleet_harness import CLUSTER, Controller, wait_status
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
NODES = 50
PROGRAMS = 20           # processes per node in the simulator's default table
RUNNING = 18            # of them autostarted (backup and reindex are started by hand only)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Controller, SimulatorProcess]]:
    etcd = EtcdServer(tmp_path)
    etcd.start()
    ctl = sim = None
    try:
        ctl = Controller(tmp_path, etcd.endpoint, node_ttl=3)
        sim = SimulatorProcess(NODES, [ctl.address], tmp_path / "report.json", procs=2, seed=3)
        yield ctl, sim
    finally:
        if sim is not None:
            sim.stop()
        if ctl is not None:
            ctl.stop()
        etcd.kill()


def node(status: pb.FleetStatus, name: str) -> pb.NodeProcesses:
    return next(n for n in status.nodes if n.node.name == name)


def procs(status: pb.FleetStatus, name: str) -> dict[str, pb.ProcessInfo]:
    return {p.namespec: p for p in node(status, name).processes}


def push_everywhere(ctl: Controller, nodes: int) -> str:
    """Push a config with one more program to every virtual node; its revision, once every one of
    the `nodes` runs it."""
    pushed = ctl.stub.PushConfig(pb.PushConfigRequest(
        name="simcfg", config_text="[program:pushed]\ncommand=/srv/pushed --serve\n",
        assignment=pb.Assignment(labels={"sim": "yes"}), message="simulator test"), timeout=30)
    want = f"simcfg@{pushed.revision.revision}"
    wait_for(lambda: (lambda listed: len(listed) == nodes and all(n.applied_revision == want for n in listed))(
        ctl.stub.ConfigStatus(pb.ConfigStatusRequest(), timeout=10).nodes), 60, f"{want} applied on every node")
    return want


def everyone_live(status: pb.FleetStatus, running: int = RUNNING) -> bool:
    return len(status.nodes) == NODES and all(
        n.node.up and n.node.reachable and sum(p.statename == "RUNNING" for p in n.processes) == running
        for n in status.nodes)


@pytest.mark.timeout(300)
def test_virtual_fleet_as_the_controller_sees_it(fleet):
    ctl, sim = fleet

    # every virtual node registered, followed, with its programs running
    status = wait_status(ctl, everyone_live, 90, f"{NODES} virtual nodes up with {RUNNING} RUNNING each")
    first = node(status, "sim-0001")
    assert first.node.labels["sim"] == "yes" and first.node.agent_version
    assert len(first.processes) == PROGRAMS
    assert {p.namespec for p in first.processes} >= {"nginx", "app:app_00", "worker:worker_04", "backup"}
    assert procs(status, "sim-0001")["backup"].statename == "STOPPED"
    assert len({n.node.address for n in status.nodes}) == NODES  # a port each

    # a flap shows in status: the process leaves RUNNING, then runs again with a new pid
    before = procs(status, "sim-0003")["nginx"].pid
    sim.say("flap sim-0003 nginx backoff")
    seen: set[str] = set()

    def flapped(s: pb.FleetStatus) -> bool:
        p = procs(s, "sim-0003")["nginx"]
        seen.add(p.statename)
        return p.statename == "RUNNING" and p.pid != before
    wait_status(ctl, flapped, 30, "sim-0003's nginx to flap and run again")
    assert seen & {"EXITED", "STARTING", "BACKOFF"}, seen

    # a restart through the controller gives the processes new pids
    before_pids = {k: p.pid for k, p in procs(ctl.status(), "sim-0001").items() if k.startswith("app:")}
    answer = ctl.stub.Control(pb.ControlRequest(action=pb.RESTART, patterns=["sim-0001:app:*"], wait=True),
                              timeout=30)
    assert [n.ok for n in answer.nodes] == [True], answer
    assert len(answer.nodes[0].results) == 4
    after = wait_status(ctl, lambda s: all(
        p.statename == "RUNNING" and p.pid != before_pids[k] for k, p in procs(s, "sim-0001").items()
        if k in before_pids), 30, "sim-0001's app processes running with new pids")
    assert len({p.pid for k, p in procs(after, "sim-0001").items() if k in before_pids}) == 4

    # a config push reaches every virtual node: applied revision, and its program running
    want = push_everywhere(ctl, NODES)
    wait_status(ctl, lambda s: everyone_live(s, RUNNING + 1) and all(
        procs(s, n.node.name)["pushed"].statename == "RUNNING" for n in s.nodes), 30, "pushed running everywhere")

    # a node that goes away is shown down, and comes back (the same agent run: the follower resumes)
    sim.say("away sim-0002 8")
    wait_status(ctl, lambda s: not node(s, "sim-0002").node.up and not node(s, "sim-0002").node.reachable,
                30, "sim-0002 shown down")
    wait_status(ctl, lambda s: node(s, "sim-0002").node.up and node(s, "sim-0002").node.reachable
                and sum(p.statename == "RUNNING" for p in node(s, "sim-0002").processes) == RUNNING + 1,
                60, "sim-0002 back")

    # ... and one that reboots comes back as a new run, its processes started again, the revision kept
    old_pids = {k: p.pid for k, p in procs(ctl.status(), "sim-0004").items()}
    sim.say("away sim-0004 5 reboot")
    wait_status(ctl, lambda s: not node(s, "sim-0004").node.reachable, 30, "sim-0004 gone")
    back = wait_status(ctl, lambda s: node(s, "sim-0004").node.reachable and all(
        p.statename == "RUNNING" and p.pid != old_pids[k] for k, p in procs(s, "sim-0004").items()
        if old_pids[k]), 60, "sim-0004 back with new pids")
    assert node(back, "sim-0004").node.applied_revision == want

    # the report of what ran, on SIGTERM
    assert sim.stop() == 0, "\n".join(sim.lines[-40:])
    report = sim.result()
    assert report["nodes"] == NODES and report["processes"] == NODES * (PROGRAMS + 1)
    assert report["flaps"] >= 1 and report["outages"] == 2 and report["reboots"] == 1
    rpcs = report["rpcs"]
    assert rpcs["fleetvisor.v1.AgentService/WatchEvents"] >= NODES
    assert rpcs["fleetvisor.v1.AgentService/ApplyConfig"] >= NODES
    assert rpcs["fleetvisor.v1.AgentService/Restart"] == 1


@pytest.mark.timeout(180)
def test_virtual_nodes_over_mutual_tls(tmp_path):
    """With --pki each virtual node gets an agent certificate from the project's tooling, and
    serves and heartbeats over mutual TLS: a TLS controller registers and follows them."""
    pki = tmp_path / "pki"
    make_ca(pki)
    issue(pki, "ctl", ["127.0.0.1"], role="controller", cluster=CLUSTER)
    issue(pki, "admin", [], role="operator", groups=["admins"], cluster=CLUSTER)
    etcd = EtcdServer(tmp_path)
    etcd.start()
    ctl = sim = None
    try:
        ctl = Controller(tmp_path, etcd.endpoint, node_ttl=3, extra=(
            "--tls-cert", str(pki / "ctl.pem"), "--tls-key", str(pki / "ctl.key"), "--tls-ca", str(pki / "ca.pem")))
        sim = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.simulator", "--nodes", "10", "--controller", ctl.address,
             "--pki", str(pki), "--cluster", CLUSTER], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes(), (pki / "admin.key").read_bytes(),
                                             (pki / "admin.pem").read_bytes())
        with grpc.secure_channel(ctl.address, creds) as channel:
            stub = pb_grpc.ControllerServiceStub(channel)

            def live() -> bool:
                try:
                    status = stub.GetStatus(pb.StatusRequest(), timeout=5)
                except grpc.RpcError:
                    return False
                return len(status.nodes) == 10 and all(n.node.up and n.node.reachable and sum(
                    p.statename == "RUNNING" for p in n.processes) == RUNNING for n in status.nodes)
            wait_for(live, 90, "10 virtual nodes live over mutual TLS")
        assert (pki / "sim-0001.pem").exists()
        sim.terminate()
        assert sim.wait(60) == 0
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
            sim.wait()
        if ctl is not None:
            ctl.stop()
        etcd.kill()
