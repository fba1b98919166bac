"""Status latency while the agent applies a big fleet config (issue 15).

Starts one agent with a gRPC listener, pushes N programs (autostart=false) with gRPC
ApplyConfig, and meanwhile calls XML-RPC getAllProcessInfo and gRPC ListProcesses back to
back. Reports how long the apply took and the latency of the status calls made during it;
the target is that calls during the apply cost about what they cost after it (a reply of N
entries takes its own time to build), and never much more than 100 ms more.

    .venv/bin/python -m benchmarks.apply_latency --programs 5000
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import grpc

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from .daemons import Daemon


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def programs(count: int) -> str:
    return "".join(f"[program:big{i:05d}]\ncommand=sleep 1000\nautostart=false\n\n" for i in range(count))


def summary(name: str, samples: list[float]) -> str:
    if not samples:
        return f"{name}: no call completed during the apply"
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name}: {len(ms)} calls during the apply, p50 {statistics.median(ms):.1f} ms, "
            f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")


def run(count: int, via: str) -> None:
    """One agent, one apply, status calls over one interface (two client threads in one process
    would contend for the client's GIL and time each other, not the agent)."""
    port = free_port()
    daemon = Daemon("agent", "")
    daemon.config.write_text(daemon.config.read_text() + (
        f"\n[fleetvisor]\nnode=bench\ngrpc_listen=127.0.0.1:{port}\nstate_dir={daemon.workdir}/state\n"))
    daemon.start()
    try:
        daemon.wait_until(lambda s: s.supervisor.getState()["statename"] == "RUNNING")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.AgentServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=30)
        server = daemon.rpc()
        if via == "xmlrpc":
            def status() -> object:
                return server.supervisor.getAllProcessInfo()
        else:
            def status() -> object:
                return stub.ListProcesses(pb.ListProcessesRequest(), timeout=60)
        status()
        done = threading.Event()
        started = time.monotonic()
        future = stub.ApplyConfig.future(pb.ApplyConfigRequest(revision="big", config_text=programs(count)),
                                         timeout=600)
        future.add_done_callback(lambda _: done.set())
        during: list[float] = []
        while not done.is_set():
            t = time.monotonic()
            status()
            if not done.is_set():
                during.append(time.monotonic() - t)
        future.result()
        took = time.monotonic() - started
        after = []  # with every program in place: what a reply of N entries costs by itself
        for _ in range(20):
            t = time.monotonic()
            status()
            after.append(time.monotonic() - t)
        channel.close()
    finally:
        daemon.stop()
    name = "XML-RPC getAllProcessInfo" if via == "xmlrpc" else "gRPC ListProcesses"
    print(f"apply of {count} programs took {took:.2f} s")
    print(summary(name, during))
    print(summary(f"after the apply, {name}", after).replace(" during the apply", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=5000)
    parser.add_argument("--via", choices=("grpc", "xmlrpc", "both"), default="both")
    args = parser.parse_args()
    for via in ("grpc", "xmlrpc") if args.via == "both" else (args.via,):
        run(args.programs, via)


if __name__ == "__main__":
    main()
