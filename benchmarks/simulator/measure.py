"""How far the simulator and the controller go on this machine: for each size, a fresh
controller (embedded etcd, as benchmarks.fleet_scale starts it), the simulator with that many
virtual nodes in --procs processes, then over a window: the controller's GetStatus latency,
and the CPU share of the controller, its etcd and each simulator process, and the simulator's
loop lag. Run by hand (minutes); not part of the suite.

    python -m benchmarks.simulator.measure --sizes 250,500,1000 --procs 1 [--window 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1.controller_pb2_grpc import ControllerServiceStub

from ..daemons import children_of, usage
from ..fleet_scale import Fleet, wait
from ..scenarios import percentile

ROOT = Path(__file__).resolve().parents[2]
RUNNING = 18  # autostarted processes per node in the default table


def cpu(pids: list[int]) -> dict[int, float]:
    result = {}
    for pid in pids:
        try:
            result[pid] = usage(pid).cpu_seconds
        except OSError:
            pass
    return result


def leading(stub: ControllerServiceStub) -> bool:
    try:
        return stub.GetLeader(pb.GetLeaderRequest(), timeout=2).is_leader
    except grpc.RpcError:
        return False


def counts(stub: ControllerServiceStub) -> dict[str, int]:
    """How many nodes the controller lists, shows up (heartbeats arrive), follows (reachable),
    and shows up and followed with their processes RUNNING."""
    try:
        status = stub.GetStatus(pb.StatusRequest(), timeout=30)
    except grpc.RpcError:
        return {"listed": 0, "up": 0, "reachable": 0, "live": 0}
    return {"listed": len(status.nodes), "up": sum(n.node.up for n in status.nodes),
            "reachable": sum(n.node.reachable for n in status.nodes),
            "live": sum(n.node.up and n.node.reachable and sum(p.statename == "RUNNING" for p in n.processes) >= RUNNING
                        for n in status.nodes)}


def converge(stub: ControllerServiceStub, nodes: int, timeout: float) -> float | None:
    """Seconds until every node is live in status, or None if they are not within `timeout`
    (the controller cannot keep up: the figures after it say how far it got)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if counts(stub)["live"] == nodes:
            return time.monotonic() - began
        time.sleep(1.0)
    return None


def measure(size: int, procs: int, window: float, samples: int, timeout: float, extra: list[str]) -> dict:
    base = Path(tempfile.mkdtemp(prefix="fleetvisor-sim-measure-"))
    fleet = Fleet(base)
    sim = None
    channel: grpc.Channel | None = None
    try:
        # A status of 1000 nodes of 20 processes is about 4 MB, gRPC's default limit (fleetctl's too)
        channel = grpc.insecure_channel(f"127.0.0.1:{fleet.controller_port}",
                                        options=[("grpc.max_receive_message_length", 256 << 20)])
        stub = ControllerServiceStub(channel)
        wait(lambda: leading(stub), 60, "the controller to lead")
        sim = subprocess.Popen([sys.executable, "-m", "benchmarks.simulator", "--nodes", str(size), "--procs",
                                str(procs), "--controller", f"127.0.0.1:{fleet.controller_port}", *extra],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        assert sim.stdout is not None
        threading.Thread(target=lines.extend, args=(sim.stdout,), daemon=True).start()
        converged = converge(stub, size, timeout)
        ctl = fleet.controller.pid
        etcd = children_of(ctl)
        workers = children_of(sim.pid)
        before, start = cpu([ctl, *etcd, *workers]), time.monotonic()
        latencies = []
        gap = window / samples
        while time.monotonic() - start < window:
            t = time.perf_counter()
            answer = stub.GetStatus(pb.StatusRequest(), timeout=30)
            latencies.append((time.perf_counter() - t) * 1000)
            time.sleep(max(0.0, gap - (time.perf_counter() - t)))
        after, elapsed = cpu([ctl, *etcd, *workers]), time.monotonic() - start
        share = {pid: (after[pid] - before[pid]) / elapsed for pid in after if pid in before}
        at_end = counts(stub)
        size_mb = answer.ByteSize() / 1e6
        sim.terminate()
        sim.wait(120)
        report = json.loads("".join(lines[lines.index("{\n"):])) if "{\n" in lines else {}
        sim = None
        return {
            "nodes": size, "procs": procs, "converged_s": round(converged, 1) if converged is not None else None,
            "at_end": at_end,
            "status_p50_ms": round(percentile(latencies, 0.5), 1),
            "status_p99_ms": round(percentile(latencies, 0.99), 1),
            "status_max_ms": round(max(latencies), 1), "status_calls": len(latencies),
            "status_mb": round(size_mb, 2),
            "controller_cpu": round(share.get(ctl, 0.0), 2),
            "etcd_cpu": round(sum(share.get(p, 0.0) for p in etcd), 2),
            "simulator_cpu": [round(share.get(p, 0.0), 2) for p in workers],
            "simulator_rss_mib": [round(w["max_rss_mib"]) for w in report.get("workers", [])],
            "simulator_loop_lag_p99_ms": [round(w["loop_lag_ms"]["p99"], 1) for w in report.get("workers", [])],
            "rpcs_served": report.get("rpcs_total", 0),
        }
    finally:
        if sim is not None:  # asked to stop first, so that it takes its workers and files with it
            sim.terminate()
            try:
                sim.wait(60)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        if channel is not None:
            channel.close()
        fleet.close()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.simulator.measure", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="250,500,1000")
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--window", type=float, default=30.0, help="seconds of sampling per size")
    p.add_argument("--samples", type=int, default=60, help="status calls per window")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds for every node to be live")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/simulator_scale.json"))
    p.add_argument("extra", nargs="*", help="more simulator options, after --")
    args = p.parse_args(argv)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = measure(size, args.procs, args.window, args.samples, args.timeout, args.extra)
        print(json.dumps(result), flush=True)
        results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
