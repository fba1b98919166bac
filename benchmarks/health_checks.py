"""What health checks cost the agent (issue 16): N programs with a check every second.

Runs the agent on N sleepers without checks, then with a check each, every second
(healthcheck_interval=1): HTTP against a server that keeps connections open (HTTP/1.1, as nginx,
Go or any production server does), HTTP against one that closes each (`Connection: close`, so
every probe connects anew), TCP, and exec (`true`). Once every process is RUNNING (and, with
checks, healthy), it measures the agent's CPU seconds over a window and its RSS, and reports the
difference from the run without checks. The target is at most +5 % of one core (3 CPU seconds
per minute). A new TCP connection a second costs the kernel about as much again as the probe's
own Python, and an exec check forks a process a second: those are reported, not held to the
target. The HTTP servers are a separate process, so their work is not counted; each answers on
one event loop, as nginx or a Go server would (a thread-per-connection server answers in a
trickle, which wakes the agent more often: about +5.4 % for the kept HTTP checks).

    .venv/bin/python -m benchmarks.health_checks                 # 1000 programs, 60 s windows
    .venv/bin/python -m benchmarks.health_checks --programs 200 --window 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from pathlib import Path

from .daemons import Daemon, usage

RESULTS = Path(__file__).parent / "results" / "health_checks.json"


def serve(keep: bool, port_out: multiprocessing.Queue) -> None:
    """An HTTP server on one event loop, the model of nginx and Go servers: it answers 200 to
    every request, and closes the connection after each answer unless `keep`."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + (b"\r\n" if keep else b"Connection: close\r\n\r\n")

    class Ok(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport, self.received = transport, b""

        def data_received(self, data: bytes) -> None:
            self.received += data
            while b"\r\n\r\n" in self.received:
                _, self.received = self.received.split(b"\r\n\r\n", 1)
                self.transport.write(answer)
                if not keep:
                    self.transport.close()
                    return

    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(Ok, "127.0.0.1", 0, backlog=4096)
        port_out.put((keep, server.sockets[0].getsockname()[1]))
        await server.serve_forever()
    asyncio.run(run())


def programs(count: int, check: str) -> str:
    extra = f"healthcheck={check}\nhealthcheck_interval=1\nhealthcheck_timeout=5\n" if check else ""
    return "".join(f"[program:p{i}]\ncommand=sleep 100000\nstartsecs=0\nstdout_logfile=NONE\n"
                   f"stderr_logfile=NONE\n{extra}\n" for i in range(count))


def measure(count: int, check: str, window: float) -> dict[str, float]:
    with Daemon("agent", programs(count, check)) as daemon:
        daemon.all_running(count)
        if check:  # until every check has passed once: the agent logs each first success
            deadline = time.monotonic() + 120
            log = daemon.workdir / "supervisord.log"
            while log.read_text().count("INFO healthy: ") < count:
                if time.monotonic() > deadline:
                    raise TimeoutError("not every process turned healthy within 120 s")
                time.sleep(0.5)
        time.sleep(2)  # past the start-up burst
        before, started = usage(daemon.pid), time.monotonic()
        time.sleep(window)
        after, took = usage(daemon.pid), time.monotonic() - started
    return {"cpu_seconds_per_minute": (after.cpu_seconds - before.cpu_seconds) * 60 / took,
            "rss_mib": after.rss_bytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of each measurement")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    ports: multiprocessing.Queue = multiprocessing.Queue()
    servers = [multiprocessing.Process(target=serve, args=(keep, ports), daemon=True) for keep in (True, False)]
    for server in servers:
        server.start()
    port = dict(ports.get(timeout=10) for _ in servers)
    kept, closed = port[True], port[False]
    try:
        runs = {"none": measure(args.programs, "", args.window),
                "http": measure(args.programs, f"http://127.0.0.1:{kept}/health", args.window),
                "http_close": measure(args.programs, f"http://127.0.0.1:{closed}/health", args.window),
                "tcp": measure(args.programs, f"tcp:127.0.0.1:{kept}", args.window),
                "exec": measure(args.programs, "exec:true", args.window)}
    finally:
        for server in servers:
            server.terminate()
    base = runs["none"]["cpu_seconds_per_minute"]
    report = {"programs": args.programs, "window_seconds": args.window, "runs": runs,
              "extra_core_percent": {kind: (r["cpu_seconds_per_minute"] - base) / 60 * 100
                                     for kind, r in runs.items() if kind != "none"}}
    for kind, r in runs.items():
        extra = report["extra_core_percent"].get(kind)
        print(f"{kind:>10}: {r['cpu_seconds_per_minute']:6.2f} CPU s/min, RSS {r['rss_mib']:6.1f} MiB"
              + (f", +{extra:.1f} % of a core over no checks" if extra is not None else ""))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
