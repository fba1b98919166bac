"""Fleet scale: status across N real agents through one controller, against the stock
supervisorctl asked about each agent in turn, and how fast a pushed revision reaches them all.
The same status is also timed as supervisor.getAllProcessInfo on the controller's XML-RPC
endpoint (--xmlrpc-listen, with basic auth), the fleet as one supervisord (issue 17: within
the status budget, p99 < 200 ms at 100 agents).

    python -m benchmarks.fleet_scale [--sizes 10,50,100] [--samples 50] [--out DIR] [--mtls]
    python -m benchmarks.fleet_scale --simulated 100,1000,5000 ...   (virtual nodes: simulated_scale.py)

Every agent is a real process on loopback with a few programs, an XML-RPC port (for the stock
supervisorctl) and a gRPC port (for the controller). The controller runs its embedded etcd.
Targets (issue 6): status p99 < 200 ms at 100 agents and >= 20x faster than the sequential
supervisorctl loop; a pushed revision applied on all 100 agents in < 2 s.

With --mtls every link is mutual TLS with role certificates, and status is also asked by a
reader whose rights come from a scoped policy among POLICIES others, so that its answer is
filtered node by node: the cost of authorization (issue 13: at most 5 % on status p99 at 100
agents against a plaintext run of the same size).

The summary-first `fleetctl status` (issue 18) is timed too (GetStatus with summary), and the
screen fleetctl draws from it on an 80x24 terminal is kept in the results: at 100 agents it must
fit one screen.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.cli.summaryview import summary_view
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc

from . import simulated_scale
from .scenarios import percentile

VENV_BIN = Path(sys.executable).parent
PROGRAMS_PER_AGENT = 3
POLICIES = 50
CLUSTER = "bench"
XMLRPC_USER, XMLRPC_PASSWORD = "bench", "bench-password"

AGENT_CONFIG = """
[inet_http_server]
port=127.0.0.1:{http_port}

[supervisord]
logfile={dir}/main.log
pidfile={dir}/agent.pid
childlogdir={dir}
identifier={node}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[fleetvisor]
node={node}
labels=bench=yes
grpc_listen=127.0.0.1:{grpc_port}
controllers={controller}
state_dir={dir}/state
{tls}
{programs}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def make_pki(base: Path) -> Path:
    pki = base / "pki"
    make_ca(pki)
    issue(pki, "ctl", ["127.0.0.1"], role="controller", cluster=CLUSTER)
    issue(pki, "admin", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(pki, "reader", [], role="operator", groups=["bench-readers"], cluster=CLUSTER)
    return pki


def tls_files(pki: Path, name: str) -> list[str]:
    return ["--tls-cert", str(pki / f"{name}.pem"), "--tls-key", str(pki / f"{name}.key"),
            "--tls-ca", str(pki / "ca.pem")]


class Fleet:
    def __init__(self, base: Path, pki: Path | None = None) -> None:
        self.base = base
        self.pki = pki
        self.controller_port = free_port()
        self.xmlrpc_port = free_port()
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "fleetvisor.controller", "--etcd", "embedded", "--state-dir", str(base / "ctl"),
             "--listen", f"127.0.0.1:{self.controller_port}", "--cluster", CLUSTER,
             "--xmlrpc-listen", f"127.0.0.1:{self.xmlrpc_port}", "--xmlrpc-user", XMLRPC_USER,
             "--xmlrpc-groups", "admins", *(tls_files(pki, "ctl") if pki else [])],
            stdout=subprocess.DEVNULL, stderr=open(base / "controller.log", "wb"),
            env={**os.environ, "FLEETVISOR_XMLRPC_PASSWORD": XMLRPC_PASSWORD})
        self.channel, self.stub = self.dial("admin")
        self.agents: list[tuple[subprocess.Popen, int]] = []
        self.ports = {self.controller_port, self.xmlrpc_port}

    def dial(self, user: str) -> tuple[grpc.Channel, pb_grpc.ControllerServiceStub]:
        address = f"127.0.0.1:{self.controller_port}"
        if self.pki is None:
            channel = grpc.insecure_channel(address)
        else:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(
                (self.pki / "ca.pem").read_bytes(), (self.pki / f"{user}.key").read_bytes(),
                (self.pki / f"{user}.pem").read_bytes()))
        return channel, pb_grpc.ControllerServiceStub(channel)

    def add_policies(self) -> None:
        """POLICIES that do not apply to the reader, and one that lets it read the bench nodes."""
        for i in range(POLICIES):
            self.stub.SetPolicy(pb.SetPolicyRequest(policy=pb.Policy(
                name=f"other-{i}", verbs=["read", "control"], groups=[f"team-{i}"], labels={"team": str(i)})),
                timeout=10)
        self.stub.SetPolicy(pb.SetPolicyRequest(policy=pb.Policy(
            name="bench-read", verbs=["read"], groups=["bench-readers"], labels={"bench": "yes"})), timeout=10)

    def _tls_lines(self, node: str) -> str:
        if self.pki is None:
            return ""
        issue(self.pki, node, ["127.0.0.1"], role="agent", cluster=CLUSTER)
        return f"tls_cert={self.pki}/{node}.pem\ntls_key={self.pki}/{node}.key\ntls_ca={self.pki}/ca.pem\n"

    def add_agents(self, total: int) -> None:
        programs = "".join(f"[program:p{i}]\ncommand=sleep 100000\nstartsecs=0\n\n" for i in range(PROGRAMS_PER_AGENT))
        while len(self.agents) < total:
            node = f"node-{len(self.agents) + 1:03d}"
            directory = self.base / node
            directory.mkdir()
            http_port = self._port()
            (directory / "supervisord.conf").write_text(AGENT_CONFIG.format(
                http_port=http_port, dir=directory, node=node, grpc_port=self._port(),
                controller=f"127.0.0.1:{self.controller_port}", programs=programs, tls=self._tls_lines(node)))
            with open(directory / "agent.out", "wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "fleetvisor.agent", "-n", "-c",
                                         str(directory / "supervisord.conf")], stdout=out, stderr=out)
            self.agents.append((proc, http_port))
        wait(lambda: self._all_running(total), 120 + total, f"{total} agents live in the controller's status")

    def _port(self) -> int:
        """A free port not handed to another agent of this run (the kernel may offer one twice)."""
        while (port := free_port()) in self.ports:
            pass
        self.ports.add(port)
        return port

    def _all_running(self, total: int) -> bool:
        for proc, _ in self.agents:
            if proc.poll() is not None:
                raise RuntimeError(f"an agent exited ({proc.returncode}): see {self.base}/node-*/agent.out")
        try:
            status = self.stub.GetStatus(pb.StatusRequest(), timeout=5)
        except grpc.RpcError:
            return False
        programs = {f"p{i}" for i in range(PROGRAMS_PER_AGENT)}
        return (sum(1 for n in status.nodes if n.node.reachable) == total and
                sum(1 for n in status.nodes for p in n.processes if p.group in programs and p.statename == "RUNNING")
                == total * PROGRAMS_PER_AGENT)

    def close(self) -> None:
        for proc, _ in self.agents:
            proc.terminate()
        for proc, _ in self.agents:
            proc.wait(30)
        self.controller.terminate()
        self.controller.wait(30)
        self.channel.close()


def status_latency(stub: pb_grpc.ControllerServiceStub, samples: int, nodes: int) -> list[float]:
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        answer = stub.GetStatus(pb.StatusRequest(), timeout=10)
        times.append((time.perf_counter() - began) * 1000)
        if len(answer.nodes) != nodes:
            raise RuntimeError(f"status showed {len(answer.nodes)} nodes, not {nodes}")
    return times


def summary_latency(stub: pb_grpc.ControllerServiceStub, samples: int, nodes: int) -> tuple[list[float], list[str]]:
    """GetStatus with the summary, and the screen fleetctl draws from the last answer on an 80x24
    terminal (23 lines: the last one is the prompt's)."""
    times = []
    answer = pb.FleetStatus()
    for _ in range(samples):
        began = time.perf_counter()
        answer = stub.GetStatus(pb.StatusRequest(summary=True), timeout=10)
        times.append((time.perf_counter() - began) * 1000)
        if answer.summary.nodes != nodes:
            raise RuntimeError(f"the summary counted {answer.summary.nodes} nodes, not {nodes}")
    screen = Console(file=io.StringIO(), width=80, color_system=None)
    screen.print(summary_view(answer, width=80, height=23))
    return times, screen.file.getvalue().splitlines()


def xmlrpc_latency(fleet: Fleet, samples: int, nodes: int) -> list[float]:
    """supervisor.getAllProcessInfo on the controller, as a scripted client or exporter asks it
    (one kept-alive connection, basic auth on every request)."""
    proxy = xmlrpc.client.ServerProxy(f"http://{XMLRPC_USER}:{XMLRPC_PASSWORD}@127.0.0.1:{fleet.xmlrpc_port}/RPC2")
    times = []
    with proxy:
        for _ in range(samples):
            began = time.perf_counter()
            infos = proxy.supervisor.getAllProcessInfo()
            times.append((time.perf_counter() - began) * 1000)
            shown = {info["group"].partition("/")[0] for info in infos}  # pushed configs add programs
            if len(shown) != nodes:
                raise RuntimeError(f"getAllProcessInfo showed {len(shown)} nodes, not {nodes}")
    return times


def supervisorctl_loop(fleet: Fleet) -> float:
    """Seconds for the stock supervisorctl to print `status` of every agent, one after another."""
    began = time.perf_counter()
    for _, port in fleet.agents:
        subprocess.run([str(VENV_BIN / "supervisorctl"), "-s", f"http://127.0.0.1:{port}", "status"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - began


def propagation(fleet: Fleet, generation: int) -> float:
    """Seconds from a push until every agent reports the new revision as applied."""
    text = f"[program:pushed]\ncommand=sleep 100000\nstartsecs=0\nenvironment=GENERATION={generation}\n"
    began = time.perf_counter()
    answer = fleet.stub.PushConfig(pb.PushConfigRequest(name="bench", config_text=text, message="bench",
                                                        assignment=pb.Assignment(labels={"bench": "yes"})),
                                   timeout=30)
    want = f"bench@{answer.revision.revision}"

    def done() -> bool:
        nodes = fleet.stub.ConfigStatus(pb.ConfigStatusRequest(), timeout=10).nodes
        return all(n.applied_revision == want for n in nodes)
    wait(done, 60, f"{want} applied everywhere")
    return time.perf_counter() - began


def rolling_restart(fleet: Fleet, batch: int, healthy_for: float) -> dict[str, float]:
    """A rolling restart of every agent's group p0, `batch` nodes at a time. The ideal is what
    the batches cannot avoid: per batch, the slowest node's restart (restart sent until every
    process RUNNING) plus healthy_for; the overhead is what the controller adds on top."""
    spec = pb.OperationSpec(kind=pb.ROLLING_RESTART, group="p0", batch=batch, healthy_for_seconds=healthy_for,
                            timeout_seconds=120)
    began = time.time()
    op = fleet.stub.StartOperation(pb.StartOperationRequest(spec=spec, message="bench"), timeout=30)
    done = wait(lambda: (lambda o: o if o.state not in (pb.OP_RUNNING,) else None)(
        fleet.stub.GetOperation(pb.GetOperationRequest(id=op.id), timeout=10)), 600, "the rolling restart")
    if done.state != pb.OP_SUCCEEDED:
        raise RuntimeError(f"rolling restart ended {pb.OperationState.Name(done.state)}: {done.reason}")
    total = done.updated_at - began
    ideal = sum(max(s.healthy_at - s.started_at for s in b.nodes) + healthy_for for b in done.batches)
    return {"nodes": sum(len(b.nodes) for b in done.batches), "batches": len(done.batches), "total_s": total,
            "ideal_s": ideal, "overhead": total / ideal - 1}


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    if any(a.split("=")[0] == "--simulated" for a in args_given):  # virtual nodes: another bench, same entry
        return simulated_scale.main(args_given)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50,100")
    parser.add_argument("--samples", type=int, default=50, help="status calls per size")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--mtls", action="store_true",
                        help="mutual TLS with role certificates; also time status for a scoped reader")
    parser.add_argument("--rolling-at", type=int, default=50,
                        help="run the rolling restart (batch 5) when the fleet has this many agents")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    console = Console(width=150)
    base = Path(tempfile.mkdtemp(prefix="fleetvisor-fleet-bench-"))
    fleet = Fleet(base, make_pki(base) if args.mtls else None)
    reader = None
    results = []
    rolling = None
    finished = False
    try:
        for size in sizes:
            console.print(f"[bold]{size} agents[/]: starting ...")
            fleet.add_agents(size)
            latencies = status_latency(fleet.stub, args.samples, size)
            summary_times, screen = summary_latency(fleet.stub, args.samples, size)
            xmlrpc_times = xmlrpc_latency(fleet, args.samples, size)
            scoped: dict[str, float] = {}
            if args.mtls:
                if reader is None:
                    fleet.add_policies()
                    reader = fleet.dial("reader")
                times = status_latency(reader[1], args.samples, size)
                scoped = {"scoped_p50_ms": percentile(times, 0.5), "scoped_p99_ms": percentile(times, 0.99)}
            loop = supervisorctl_loop(fleet)
            pushes = [propagation(fleet, size * 10 + i) for i in range(3)]
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            results.append({"agents": size, "status_p50_ms": p50, "status_p99_ms": p99,
                            "supervisorctl_loop_s": loop, "speedup": loop * 1000 / p99,
                            "propagation_s": statistics.median(pushes), "propagation_max_s": max(pushes),
                            "xmlrpc_p50_ms": percentile(xmlrpc_times, 0.5),
                            "xmlrpc_p99_ms": percentile(xmlrpc_times, 0.99), "mtls": args.mtls, **scoped,
                            "summary_p50_ms": percentile(summary_times, 0.5),
                            "summary_p99_ms": percentile(summary_times, 0.99), "summary_screen": screen})
            if size == args.rolling_at:
                rolling = rolling_restart(fleet, batch=5, healthy_for=2.0)
        finished = True
    finally:
        if reader is not None:
            reader[0].close()
        fleet.close()
        if finished:
            shutil.rmtree(base, ignore_errors=True)
        else:
            console.print(f"[red]failed; the fleet's logs are kept in {base}[/]")
    table = Table(title="fleet scale (targets at 100 agents: status and XML-RPC p99 < 200 ms, >= 20x, "
                        "propagation < 2 s)")
    for column in ("agents", "status p50 ms", "status p99 ms", "XML-RPC getAllProcessInfo p50/p99 ms",
                   "supervisorctl loop s", "speedup (loop/p99)", "propagation s (median of 3)", "propagation max s"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r["agents"]), f"{r['status_p50_ms']:.1f}", f"{r['status_p99_ms']:.1f}",
                      f"{r['xmlrpc_p50_ms']:.1f}/{r['xmlrpc_p99_ms']:.1f}",
                      f"{r['supervisorctl_loop_s']:.2f}", f"{r['speedup']:.0f}x", f"{r['propagation_s']:.2f}",
                      f"{r['propagation_max_s']:.2f}")
    console.print(table)
    for r in results:
        if "scoped_p99_ms" in r:
            console.print(f"{r['agents']} agents over mutual TLS: status p50/p99 {r['status_p50_ms']:.1f}/"
                          f"{r['status_p99_ms']:.1f} ms for an admin, {r['scoped_p50_ms']:.1f}/"
                          f"{r['scoped_p99_ms']:.1f} ms for a reader scoped by a policy among {POLICIES + 1}")
    for r in results:
        console.print(f"{r['agents']} agents: summary status p50/p99 {r['summary_p50_ms']:.1f}/"
                      f"{r['summary_p99_ms']:.1f} ms; fleetctl's summary on 80x24 is "
                      f"{len(r['summary_screen'])} lines:")
        console.print("\n".join(r["summary_screen"]), markup=False, highlight=False)
    if rolling:
        console.print(f"rolling restart of {rolling['nodes']} agents, batch 5, healthy for 2 s: "
                      f"{rolling['total_s']:.1f} s against an ideal of {rolling['ideal_s']:.1f} s "
                      f"(overhead {rolling['overhead']:.1%}; target <= 10%)")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "fleet_scale_mtls.json" if args.mtls else "fleet_scale.json"
    (args.out / name).write_text(json.dumps({"status": results, "rolling_restart": rolling}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
