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


def run(count: int) -> None:
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
        stub.ListProcesses(pb.ListProcessesRequest(), timeout=30)

        done = threading.Event()
        xml: list[float] = []

        def xmlrpc_loop() -> None:
            server = daemon.rpc()
            while not done.is_set():
                t = time.monotonic()
                server.supervisor.getAllProcessInfo()
                if not done.is_set():
                    xml.append(time.monotonic() - t)

        thread = threading.Thread(target=xmlrpc_loop, daemon=True)
        started = time.monotonic()
        future = stub.ApplyConfig.future(pb.ApplyConfigRequest(revision="big", config_text=programs(count)),
                                         timeout=600)
        future.add_done_callback(lambda _: done.set())
        thread.start()
        grpc_calls: list[float] = []
        while not done.is_set():
            t = time.monotonic()
            stub.ListProcesses(pb.ListProcessesRequest(), timeout=60)
            if not done.is_set():
                grpc_calls.append(time.monotonic() - t)
        future.result()
        took = time.monotonic() - started
        thread.join(60)
        # The same calls with every program in place: what a reply of N entries costs by itself.
        server = daemon.rpc()
        xml_after, grpc_after = [], []
        for _ in range(20):
            t = time.monotonic()
            server.supervisor.getAllProcessInfo()
            xml_after.append(time.monotonic() - t)
            t = time.monotonic()
            stub.ListProcesses(pb.ListProcessesRequest(), timeout=60)
            grpc_after.append(time.monotonic() - t)
        channel.close()
    finally:
        daemon.stop()
    print(f"apply of {count} programs took {took:.2f} s")
    print(summary("XML-RPC getAllProcessInfo", xml))
    print(summary("gRPC ListProcesses", grpc_calls))
    print(summary("after the apply, XML-RPC getAllProcessInfo", xml_after).replace(" during the apply", ""))
    print(summary("after the apply, gRPC ListProcesses", grpc_after).replace(" during the apply", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=5000)
    run(parser.parse_args().programs)


if __name__ == "__main__":
    main()
