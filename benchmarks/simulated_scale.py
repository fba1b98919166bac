"""Fleet scale on the simulator (issue 20): real controllers on a real etcd, against thousands of
virtual nodes (benchmarks/simulator) that speak the agent's protocol.

    python -m benchmarks.fleet_scale --simulated 100,1000,2000,5000 [--controllers 1,3] [--procs 2]
        [--window 20] [--samples 30] [--flaps-per-second-per-1000 1] [--out benchmarks/results]

For each size and controller count, a fresh etcd, that many controllers, and the simulator with
--procs worker processes. Once every node is live in every controller's status, it measures:

- steady state over --window seconds (churn: --flaps-per-second-per-1000 crashes per second per
  1000 nodes, fleet-wide): controllers' CPU and RSS, the simulator's CPU, etcd writes per second
  (its revision, and puts + deletes) and its database size;
- status latency on every controller in turn: the summary, the whole fleet, and one node's glob;
- the delay from a process crash on a node (a control line to the simulator) until a controller
  picked at random shows it, polled every 10 ms through that node's glob: p50/p99;
- how long a pushed config revision takes to be applied on every node;
- the time to plan (dry run) a rolling restart of one group over the whole fleet;
- after the leader is SIGKILLed (with 1 controller: killed and started again), the time until a
  write is served again, and until every node is followed again and a crash on nodes chosen at
  random shows within the delay above.

It prints a table, and writes simulated_scale.json and simulated_scale.svg (cost against nodes)
to --out. Each size ends with its own JSON line, so a size that fails still leaves the others.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc
from tests.controller.etcd_harness import EtcdServer
from tests.controller.fleet_harness import Controller

from .daemons import children_of, usage
from .scenarios import percentile
from .simulator.child import SimulatorProcess
from .svgchart import Panel, Series, chart

ROOT = Path(__file__).resolve().parents[1]
RUNNING = 18  # autostarted processes per virtual node (the simulator's default table)
FLAP_DOWN_S = 10  # at most this long a flapped process is not RUNNING (through BACKOFF included)
MAX_MESSAGE = 256 << 20  # a 5000-node status is about 20 MB
FLAPPED = "nginx"  # a process every virtual node runs

# The targets, at 5000 nodes x 20 processes and 3 controllers.
TARGETS = {"summary_p99_ms": 200, "whole_p99_ms": 2000, "glob_p99_ms": 50, "change_p99_ms": 1000,
           "propagation_s": 10, "controller_rss_mib": 1536, "writes_back_s": 15, "live_back_s": 30}


@dataclass
class Setup:
    nodes: int
    controllers: int
    procs: int
    window: float
    samples: int
    flaps_per_1000: float


class SimFleet:
    def __init__(self, base: Path, setup: Setup) -> None:
        self.setup = setup
        self.etcd = EtcdServer(base)
        self.etcd.start()
        self.controllers: list[Controller] = []
        self.channels: dict[str, grpc.Channel] = {}
        self.sim: SimulatorProcess | None = None
        for i in range(setup.controllers):
            self.controllers.append(Controller(base, self.etcd.endpoint, name=f"ctl-{i + 1}", node_ttl=10,
                                               leader_ttl=5))
        flaps = setup.flaps_per_1000 * setup.nodes / 1000
        self.sim = SimulatorProcess(setup.nodes, [c.address for c in self.controllers], base / "simulator.json",
                                    procs=setup.procs, flaps_per_second=flaps)

    def stub(self, ctl: Controller) -> pb_grpc.ControllerServiceStub:
        if ctl.address not in self.channels:
            self.channels[ctl.address] = grpc.insecure_channel(
                ctl.address, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
        return pb_grpc.ControllerServiceStub(self.channels[ctl.address])

    def alive(self) -> list[Controller]:
        return [c for c in self.controllers if c.proc is not None and c.proc.poll() is None]

    def leader(self) -> Controller | None:
        for ctl in self.alive():
            try:
                if self.stub(ctl).GetLeader(pb.GetLeaderRequest(), timeout=2).is_leader:
                    return ctl
            except grpc.RpcError:
                pass
        return None

    def summary(self, ctl: Controller) -> pb.FleetSummary | None:
        try:
            return self.stub(ctl).GetStatus(pb.StatusRequest(summary=True), timeout=30).summary
        except grpc.RpcError:
            return None

    def live_on(self, ctl: Controller) -> bool:
        s = self.summary(ctl)
        n = self.setup.nodes
        # the processes flaps keep down at any moment (a few seconds each): at 5000 nodes there
        # are always some, and "every one RUNNING" was never true
        flapping = math.ceil(self.setup.flaps_per_1000 * n / 1000 * FLAP_DOWN_S)
        return (s is not None and s.nodes == n and s.nodes_up == n and s.nodes_reachable == n
                and s.running >= n * RUNNING - flapping)

    def etcd_metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://{self.etcd.endpoint}/metrics", timeout=10).read().decode()
        wanted = ("etcd_debugging_mvcc_current_revision", "etcd_mvcc_put_total", "etcd_mvcc_delete_total",
                  "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
                  "etcd_server_proposals_committed_total")
        found = {}
        for name in wanted:
            match = re.search(rf"^{name} (\S+)$", text, re.M)
            found[name] = float(match.group(1)) if match else 0.0
        return found

    def close(self) -> dict:
        report = {}
        if self.sim is not None:
            self.sim.stop()
            report = self.sim.result()
        for channel in self.channels.values():
            channel.close()
        for ctl in self.controllers:
            ctl.stop()
        self.etcd.kill()
        return report


def until(condition, timeout: float, what: str, gap: float = 0.05) -> float:
    """Seconds until `condition()` holds; raises after `timeout`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():
            return time.monotonic() - began
        time.sleep(gap)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def timed(call, samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def p(values: list[float], q: float) -> float:
    return round(percentile(values, q), 1) if values else 0.0


def node_name(i: int, nodes: int) -> str:
    return f"sim-{i:0{max(4, len(str(nodes)))}d}"


def flapped_process(stub: pb_grpc.ControllerServiceStub, node: str) -> tuple[str, int] | None:
    try:
        status = stub.GetStatus(pb.StatusRequest(patterns=[f"{node}:{FLAPPED}"]), timeout=5)
    except grpc.RpcError:
        return None
    for n in status.nodes:
        for proc in n.processes:
            return proc.statename, proc.pid
    return None


def change_delays(fleet: SimFleet, count: int, rng: random.Random, timeout: float = 30.0) -> list[float]:
    """Crash a RUNNING process on random nodes, one at a time, and time until a random controller
    shows it (left RUNNING, or RUNNING under a new pid)."""
    delays = []
    for _ in range(count):
        node = node_name(rng.randrange(1, fleet.setup.nodes + 1), fleet.setup.nodes)
        stub = fleet.stub(rng.choice(fleet.alive()))
        before = flapped_process(stub, node)
        if before is None or before[0] != "RUNNING":
            continue  # churn has it already; another node next
        fleet.sim.say(f"flap {node} {FLAPPED}")
        began = time.perf_counter()
        while time.perf_counter() - began < timeout:
            now = flapped_process(stub, node)
            if now is not None and now != before:
                delays.append((time.perf_counter() - began) * 1000)
                break
            time.sleep(0.01)
    return delays


def propagation(fleet: SimFleet, stub: pb_grpc.ControllerServiceStub, generation: int) -> float:
    text = f"[program:pushed]\ncommand=/srv/pushed --generation {generation}\n"
    began = time.monotonic()
    answer = stub.PushConfig(pb.PushConfigRequest(name="scale", config_text=text, message="scale",
                                                  assignment=pb.Assignment(labels={"sim": "yes"})), timeout=60)
    want = f"scale@{answer.revision.revision}"

    def applied() -> bool:
        nodes = stub.ConfigStatus(pb.ConfigStatusRequest(), timeout=60).nodes
        return len(nodes) == fleet.setup.nodes and all(n.applied_revision == want for n in nodes)
    until(applied, 120, f"{want} applied on every node", gap=0.2 if fleet.setup.nodes <= 1000 else 0.5)
    return round(time.monotonic() - began, 2)


def write_once(stub: pb_grpc.ControllerServiceStub) -> bool:
    """A small write (a policy that grants nothing to anyone) every controller refuses unless it
    leads and reaches etcd."""
    try:
        stub.SetPolicy(pb.SetPolicyRequest(policy=pb.Policy(name="scale-probe", verbs=["read"],
                                                            groups=["nobody-at-all"])), timeout=5)
        return True
    except grpc.RpcError:
        return False


def leader_loss(fleet: SimFleet, rng: random.Random, change_timeout: float) -> dict:
    leader = fleet.leader()
    if leader is None:
        raise RuntimeError("no controller leads")
    began = time.monotonic()
    leader.proc.kill()
    leader.proc.wait()
    if len(fleet.controllers) == 1:
        leader.start()
    writes = until(lambda: any(write_once(fleet.stub(c)) for c in fleet.alive()), 120,
                   "a write served after the leader's death", gap=0.1)
    survivor = fleet.alive()[0]
    until(lambda: fleet.live_on(survivor), 300, "every node followed again", gap=0.2)
    probes = change_delays(fleet, 10, rng, timeout=change_timeout)
    if len(probes) < 5:
        raise RuntimeError(f"after the leader's death only {len(probes)} of 10 crashes showed")
    return {"writes_back_s": round(writes, 2), "live_back_s": round(time.monotonic() - began, 2),
            "probe_delay_p99_ms": p(probes, 0.99)}


def measure(base: Path, setup: Setup, console: Console) -> dict:
    rng = random.Random(setup.nodes * 10 + setup.controllers)
    fleet = SimFleet(base, setup)
    result: dict = {"nodes": setup.nodes, "controllers": setup.controllers, "procs": setup.procs}
    try:
        began = time.monotonic()
        for ctl in fleet.controllers:
            # a summary of thousands of nodes costs the controller ~0.1 s: asked every 0.5 s, it
            # would be a good part of what is measured
            until(lambda c=ctl: fleet.live_on(c), 120 + setup.nodes / 10, f"{setup.nodes} nodes live on {ctl.name}",
                  gap=max(0.5, setup.nodes / 2000))
        result["converged_s"] = round(time.monotonic() - began, 1)
        console.print(f"  every node live on every controller in {result['converged_s']} s")

        # steady state: nobody asks anything
        pids = [c.proc.pid for c in fleet.controllers]
        sim_pids = children_of(fleet.sim.proc.pid)
        cpu0 = {pid: usage(pid).cpu_seconds for pid in pids + sim_pids}
        etcd0, t0 = fleet.etcd_metrics(), time.monotonic()
        time.sleep(setup.window)
        cpu1 = {pid: usage(pid).cpu_seconds for pid in pids + sim_pids}
        etcd1, elapsed = fleet.etcd_metrics(), time.monotonic() - t0
        share = {pid: round((cpu1[pid] - cpu0[pid]) / elapsed, 3) for pid in cpu1}
        result.update({
            "controller_cpu": [share[pid] for pid in pids],
            "controller_rss_mib": [round(usage(pid).rss_bytes / 2**20) for pid in pids],
            "simulator_cpu": round(sum(share[pid] for pid in sim_pids), 3),
            "etcd_revisions_per_s": round((etcd1["etcd_debugging_mvcc_current_revision"]
                                           - etcd0["etcd_debugging_mvcc_current_revision"]) / elapsed, 2),
            "etcd_puts_deletes_per_s": round((etcd1["etcd_mvcc_put_total"] + etcd1["etcd_mvcc_delete_total"]
                                              - etcd0["etcd_mvcc_put_total"] - etcd0["etcd_mvcc_delete_total"])
                                             / elapsed, 2),
            "etcd_proposals_per_s": round((etcd1["etcd_server_proposals_committed_total"]
                                           - etcd0["etcd_server_proposals_committed_total"]) / elapsed, 2),
            "etcd_db_mib": round(etcd1["etcd_mvcc_db_total_size_in_bytes"] / 2**20, 2),
            "etcd_db_in_use_mib": round(etcd1["etcd_mvcc_db_total_size_in_use_in_bytes"] / 2**20, 2),
        })
        console.print(f"  steady: controller CPU {result['controller_cpu']}, etcd "
                      f"{result['etcd_revisions_per_s']} writes/s")

        # status, on every controller in turn
        summary: list[float] = []
        whole: list[float] = []
        glob: list[float] = []
        for ctl in fleet.controllers:
            stub = fleet.stub(ctl)
            summary += timed(lambda stub=stub: stub.GetStatus(pb.StatusRequest(summary=True), timeout=30),
                             setup.samples)
            whole += timed(lambda stub=stub: stub.GetStatus(pb.StatusRequest(), timeout=60), max(5, setup.samples // 3))
            glob += timed(lambda stub=stub: stub.GetStatus(pb.StatusRequest(
                patterns=[node_name(rng.randrange(1, setup.nodes + 1), setup.nodes)]), timeout=10), setup.samples)
        whole_answer = fleet.stub(fleet.controllers[0]).GetStatus(pb.StatusRequest(), timeout=60)
        result.update({"summary_p50_ms": p(summary, 0.5), "summary_p99_ms": p(summary, 0.99),
                       "whole_p50_ms": p(whole, 0.5), "whole_p99_ms": p(whole, 0.99),
                       "whole_mb": round(whole_answer.ByteSize() / 1e6, 2),
                       "glob_p50_ms": p(glob, 0.5), "glob_p99_ms": p(glob, 0.99)})
        console.print(f"  status p99: summary {result['summary_p99_ms']} ms, whole {result['whole_p99_ms']} ms, "
                      f"glob {result['glob_p99_ms']} ms")

        delays = change_delays(fleet, setup.samples, rng)
        result.update({"change_p50_ms": p(delays, 0.5), "change_p99_ms": p(delays, 0.99),
                       "change_samples": len(delays)})
        console.print(f"  crash to status p50/p99: {result['change_p50_ms']}/{result['change_p99_ms']} ms")

        leader = fleet.leader()
        assert leader is not None
        stub = fleet.stub(leader)
        pushes = [propagation(fleet, stub, i) for i in range(3)]
        result["propagation_s"] = sorted(pushes)[1]
        result["propagation_max_s"] = max(pushes)
        plan = timed(lambda: stub.StartOperation(pb.StartOperationRequest(
            spec=pb.OperationSpec(kind=pb.ROLLING_RESTART, group="app", batch=max(1, setup.nodes // 20)),
            dry_run=True), timeout=60), 5)
        result["plan_p50_ms"] = p(plan, 0.5)
        console.print(f"  propagation {result['propagation_s']} s (median of 3), plan {result['plan_p50_ms']} ms")

        result.update(leader_loss(fleet, rng, change_timeout=30))
        console.print(f"  leader killed: writes back in {result['writes_back_s']} s, every node current in "
                      f"{result['live_back_s']} s")
    finally:
        report = fleet.close()
    workers = report.get("workers", [])
    result["simulator_loop_lag_p99_ms"] = round(max((w["loop_lag_ms"]["p99"] for w in workers), default=0.0), 1)
    result["simulator_rss_mib"] = sum(round(w["max_rss_mib"]) for w in workers)
    return result


COLUMNS = [("nodes", "nodes"), ("ctl", "controllers"), ("summary p99", "summary_p99_ms"),
           ("whole p99", "whole_p99_ms"), ("glob p99", "glob_p99_ms"), ("change p50/p99", None),
           ("propagation s", "propagation_s"), ("plan ms", "plan_p50_ms"), ("ctl CPU", None),
           ("ctl RSS MiB", None), ("etcd w/s", "etcd_revisions_per_s"), ("etcd MiB", "etcd_db_mib"),
           ("writes back s", "writes_back_s"), ("live back s", "live_back_s"), ("sim CPU", "simulator_cpu")]


def table(results: list[dict]) -> Table:
    t = Table(title="simulated fleet (targets at 5000 x 3: summary < 200 ms, whole < 2 s, glob < 50 ms, "
                    "change < 1 s, propagation < 10 s, writes back < 15 s, live < 30 s)")
    for title, _ in COLUMNS:
        t.add_column(title, justify="right")
    for r in results:
        row = []
        for _, key in COLUMNS:
            row.append(str(r.get(key, "")) if key else "")
        row[5] = f"{r.get('change_p50_ms', '')}/{r.get('change_p99_ms', '')}"
        row[8] = "/".join(str(c) for c in r.get("controller_cpu", []))
        row[9] = "/".join(str(m) for m in r.get("controller_rss_mib", []))
        t.add_row(*row)
    return t


def draw(results: list[dict]) -> str:
    def series(key: str, label: str, pick=lambda v: v) -> list[Series]:
        out = []
        for k in sorted({r["controllers"] for r in results}):
            points = [(r["nodes"], pick(r[key])) for r in results if r["controllers"] == k and r.get(key)]
            out.append(Series(f"{label} ({k} ctl)", points))
        return out
    panels = [
        Panel("status p99", "ms", series("summary_p99_ms", "summary") + series("whole_p99_ms", "whole")
              + series("glob_p99_ms", "glob")),
        Panel("crash to status p99", "ms", series("change_p99_ms", "delay")),
        Panel("controller CPU (steady)", "cores", series("controller_cpu", "max", max)),
        Panel("controller RSS", "MiB", series("controller_rss_mib", "max", max)),
        Panel("etcd writes (steady)", "per s", series("etcd_revisions_per_s", "revisions")),
        Panel("revision propagation", "s", series("propagation_s", "all nodes")),
    ]
    return chart(panels, title="fleetvisor controller cost against fleet size (simulated nodes, 20 processes each)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_scale --simulated", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simulated", required=True, metavar="SIZES", help="virtual node counts, e.g. 100,1000")
    parser.add_argument("--controllers", default="1,3", metavar="COUNTS")
    parser.add_argument("--procs", type=int, default=2, help="simulator worker processes")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of steady state measured")
    parser.add_argument("--samples", type=int, default=30, help="status calls per kind and controller")
    parser.add_argument("--flaps-per-second-per-1000", type=float, default=1.0, dest="flaps")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="simulated_scale", help="file name of the JSON and SVG in --out")
    args = parser.parse_args(argv)
    console = Console(width=200)
    results = []
    for nodes in (int(s) for s in args.simulated.split(",")):
        for controllers in (int(c) for c in args.controllers.split(",")):
            setup = Setup(nodes, controllers, min(args.procs, nodes), args.window, args.samples, args.flaps)
            console.print(f"[bold]{nodes} nodes, {controllers} controller(s)[/]")
            base = Path(tempfile.mkdtemp(prefix="fleetvisor-simscale-"))
            try:
                result = measure(base, setup, console)
            except (RuntimeError, grpc.RpcError, OSError) as exc:
                why = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.Call) else str(exc).splitlines()[0]
                console.print(f"[red]  failed: {why}; logs kept in {base}[/]")
                results.append({"nodes": nodes, "controllers": controllers, "failed": why})
                continue
            shutil.rmtree(base, ignore_errors=True)
            print(json.dumps(result), flush=True)
            results.append(result)
    console.print(table([r for r in results if "failed" not in r]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"targets_at_5000x3": TARGETS, "runs": results},
                                                           indent=2) + "\n")
    (args.out / f"{args.name}.svg").write_text(draw([r for r in results if "failed" not in r]))
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
