"""A fleet on seven test hosts (network namespaces) plus a driver host, over mutual TLS.

`topology` (one per pytest run) makes the namespaces, the bridge and the blackhole route and
removes them at the end, also on failure. `fleet` (one per test) starts etcd, two
controllers, four agents and the driver's probe on those hosts, and at the end stops them,
kills whatever is left in any of our namespaces and brings every link back up.

Every gRPC link uses role certificates from `fleetctl certs` (cluster "mh"): each controller
and agent names its own address, and the driver (probe and fleetctl) is an operator in group
admins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetvisor.cli.certs import issue, make_ca

from tests.support import tried_in_order

from .netns import PYTHON, Driver, NetnsUnavailable, Proc, Topology, wait_for

HOSTS = {"etcd": 2, "ctl-a": 11, "ctl-b": 12, "n1": 21, "n2": 22, "n3": 23, "n4": 24, "driver": 100}
AGENTS = ("n1", "n2", "n3", "n4")
CONTROLLERS = ("ctl-a", "ctl-b")
ETCD_PORT = 2379
CTL_PORT = 7500
AGENT_PORT = 7400
NODE_TTL = 3
LEADER_TTL = 2
CLUSTER = "mh"
OPERATOR = "mh-admin"

# Each program has its own command line, so its processes can be counted in a host's /proc.
ALPHA = ["sleep", "86401"]
BETA = ["sleep", "86402"]
AGENT_CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/agent.pid
childlogdir=%(here)s
identifier={node}

[fleetvisor]
node={node}
labels=role=web,host={node}
grpc_listen={address}:{port}
controllers={controllers}
state_dir=%(here)s/state
tls_cert={pki}/{node}.pem
tls_key={pki}/{node}.key
tls_ca={pki}/ca.pem

[program:alpha]
command=sleep 86401
startsecs=1
stopwaitsecs=2

[program:beta]
command=sleep 86402
startsecs=0
stopwaitsecs=2
"""


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    topo = Topology(HOSTS)
    try:
        try:
            topo.create()
        except NetnsUnavailable as exc:
            pytest.skip(f"network namespaces unavailable: {exc}")
        yield topo
    finally:
        topo.destroy()


def make_pki(topo: Topology, directory: Path) -> Path:
    """A CA and role certificates: each controller and agent with its address, the operator."""
    make_ca(directory)
    for name in (*CONTROLLERS, *AGENTS):
        issue(directory, name, [topo.addr(name)], role="controller" if name in CONTROLLERS else "agent",
              cluster=CLUSTER)
    issue(directory, OPERATOR, [], role="operator", groups=["admins"], cluster=CLUSTER)
    return directory


def tls_flags(pki: Path, name: str) -> tuple[str, ...]:
    return ("--tls-cert", str(pki / f"{name}.pem"), "--tls-key", str(pki / f"{name}.key"),
            "--tls-ca", str(pki / "ca.pem"))


class Agent:
    def __init__(self, fleet: Fleet, node: str) -> None:
        self.fleet = fleet
        self.node = node
        self.address = f"{fleet.topo.addr(node)}:{AGENT_PORT}"
        self.dir = fleet.base / node
        self.dir.mkdir(parents=True, exist_ok=True)
        controllers = ",".join(tried_in_order(node, [fleet.controllers[c] for c in CONTROLLERS]))
        self.config = self.dir / "supervisord.conf"
        self.config.write_text(AGENT_CONFIG.format(node=node, address=fleet.topo.addr(node), port=AGENT_PORT,
                                                   controllers=controllers, pki=fleet.pki).lstrip())
        self.proc: Proc | None = None

    @property
    def log(self) -> Path:
        return self.dir / "agent.out"

    def start(self) -> None:
        self.proc = self.fleet.topo.spawn(self.node, [PYTHON, "-m", "fleetvisor.agent", "-c", str(self.config), "-n"],
                                          self.log)

    def spawned(self, program: str) -> list[int]:
        """Pids from the main log's `spawned: 'x' with pid N` lines, over every run of the agent."""
        return [int(m) for m in re.findall(rf"spawned: '{program}' with pid (\d+)", self.proc.text())]

    def programs(self) -> dict[str, list[int]]:
        """What really runs on the host: live pids per program, from the namespace's /proc."""
        return {"alpha": self.fleet.topo.processes(self.node, ALPHA),
                "beta": self.fleet.topo.processes(self.node, BETA)}


class Fleet:
    def __init__(self, topo: Topology, base: Path) -> None:
        self.topo = topo
        self.base = base
        self.etcd_endpoint = f"{topo.addr('etcd')}:{ETCD_PORT}"
        self.controllers = {c: f"{topo.addr(c)}:{CTL_PORT}" for c in CONTROLLERS}
        self.pki = make_pki(topo, base / "pki")
        self.ctl_procs: dict[str, Proc] = {}
        self.etcd: Proc | None = None
        self.agents = {n: Agent(self, n) for n in AGENTS}
        self.driver: Driver | None = None
        self.controller_args: tuple[str, ...] = ()  # more flags for every controller (the soak's compaction)
        self._last_status: dict[str, dict | None] = {}

    # -- processes -------------------------------------------------------------------------------

    def start_etcd(self) -> None:
        host = self.topo.addr("etcd")
        client = f"http://{host}:{ETCD_PORT}"
        peer = "http://127.0.0.1:2380"  # peers: nobody but itself, on the etcd host's own loopback
        argv = ["/usr/bin/etcd", "--name", "mh", "--data-dir", str(self.base / "etcd-data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"mh={peer}", "--initial-cluster-state", "new",
                "--heartbeat-interval", "10", "--election-timeout", "100",
                "--logger", "zap", "--log-outputs", "stderr"]
        log = self.base / "etcd.log"
        before = log.read_text().count("serving client traffic") if log.exists() else 0
        self.etcd = self.topo.spawn("etcd", argv, log)
        self.etcd.wait_log("serving client traffic", 30, count=before + 1)

    def start_controller(self, name: str):
        address = self.controllers[name]
        argv = [PYTHON, "-m", "fleetvisor.controller", "--etcd", self.etcd_endpoint, "--listen", address,
                "--advertise", address, "--cluster", CLUSTER, *tls_flags(self.pki, name), "--node-ttl", str(NODE_TTL),
                "--leader-ttl", str(LEADER_TTL), "--id", name, "--state-dir", str(self.base / name),
                *self.controller_args]
        proc = self.topo.spawn(name, argv, self.base / f"{name}.out")
        self.ctl_procs[name] = proc
        return proc

    def start(self) -> None:
        self.start_etcd()
        for name in CONTROLLERS:
            self.start_controller(name)
        for agent in self.agents.values():
            agent.start()
        self.driver = Driver(self.topo, self.base / "driver.out", tls_flags(self.pki, OPERATOR))
        for proc in self.ctl_procs.values():
            proc.wait_log("serving on", 60)
        self.wait_converged(timeout=60)
        self.wait_leader(timeout=30)

    def close(self) -> None:
        try:
            for agent in self.agents.values():
                if agent.proc is not None:
                    agent.proc.terminate()
            for proc in self.ctl_procs.values():
                proc.terminate()
            if self.etcd is not None:
                self.etcd.terminate()
        finally:
            self.topo.heal_all()
            self.topo.sweep()

    # -- checks, made from the driver namespace ----------------------------------------------------

    def status(self, controller: str):
        return self.driver.poll("status", ctl=self.controllers[controller])

    def converged(self, controller: str, nodes=AGENTS) -> dict | None:
        """Every node up and reachable with alpha and beta RUNNING, seen by `controller`."""
        status = self.status(controller)
        self._last_status[controller] = status
        if status is None:
            return None
        by_node = {n["name"]: n for n in status["nodes"]}
        for node in nodes:
            n = by_node.get(node)
            if not n or not (n["up"] and n["reachable"]):
                return None
            procs = {p["namespec"]: p for p in n["processes"]}
            if not all(procs.get(s, {}).get("statename") == "RUNNING" for s in ("alpha", "beta")):
                return None
        return by_node

    def wait_converged(self, timeout: float, controllers=CONTROLLERS) -> dict[str, dict]:
        views = {}
        for c in controllers:
            try:
                views[c] = wait_for(lambda c=c: self.converged(c), timeout,
                                    f"{c} to see every node up, reachable, running")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; it last saw: {self.summary(self._last_status.get(c))}") from None
        return views

    @staticmethod
    def summary(status) -> str:
        if status is None:
            return "no answer"
        return "; ".join(f"{n['name']} up={n['up']} reachable={n['reachable']} error={n['error']!r} "
                         + ",".join(f"{p['namespec']}={p['statename']}/{p['pid']}" for p in n["processes"])
                         for n in status["nodes"])

    def leader(self, controller: str) -> str | None:
        info = self.driver.poll("leader", ctl=self.controllers[controller])
        return info["leader_id"] if info and info["leader_id"] else None

    def wait_leader(self, timeout: float, among=CONTROLLERS) -> str:
        def agreed():
            seen = {self.leader(c) for c in among}
            return seen.pop() if len(seen) == 1 and None not in seen else None
        return wait_for(agreed, timeout, f"{among} to agree on a leader")

    def reported_pids(self, controller: str) -> dict[str, dict[str, int]]:
        """{node: {namespec: pid}} as the controller reports it."""
        status = self.driver.get("status", ctl=self.controllers[controller])
        return {n["name"]: {p["namespec"]: p["pid"] for p in n["processes"]} for n in status["nodes"]}

    def host_pids(self) -> dict[str, dict[str, list[int]]]:
        return {n: a.programs() for n, a in self.agents.items()}


@pytest.fixture
def fleet(topology: Topology, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(topology, tmp_path)
    try:
        f.start()
        yield f
    finally:
        f.close()
