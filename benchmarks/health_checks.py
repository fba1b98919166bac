"""What health checks cost the agent (issue 16): N programs with a check every second.

Runs the agent three times on N sleepers: without checks, with an HTTP check each, and with an
exec check (`true`) each, all with healthcheck_interval=1. Once every process is RUNNING (and,
with checks, healthy), it measures the agent's CPU seconds over a window and its RSS, and
reports the difference from the run without checks. The target is at most +5 % of one core
(3 CPU seconds per minute) for the HTTP checks. Exec checks fork a process per check, which
costs what a fork costs; they are reported, not held to the target. The HTTP server the checks
ask is a separate process, so its work is not counted.

    .venv/bin/python -m benchmarks.health_checks                 # 1000 programs, 60 s windows
    .venv/bin/python -m benchmarks.health_checks --programs 200 --window 10
"""

from __future__ import annotations

import argparse
import http.server
import json
import multiprocessing
import time
from pathlib import Path

from .daemons import Daemon, usage

RESULTS = Path(__file__).parent / "results" / "health_checks.json"


def serve(port_out: multiprocessing.Queue) -> None:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    port_out.put(server.server_address[1])
    server.serve_forever()


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
    server = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=10)
    try:
        runs = {"none": measure(args.programs, "", args.window),
                "http": measure(args.programs, f"http://127.0.0.1:{port}/health", args.window),
                "exec": measure(args.programs, "exec:true", args.window)}
    finally:
        server.terminate()
    base = runs["none"]["cpu_seconds_per_minute"]
    report = {"programs": args.programs, "window_seconds": args.window, "runs": runs,
              "extra_core_percent": {kind: (r["cpu_seconds_per_minute"] - base) / 60 * 100
                                     for kind, r in runs.items() if kind != "none"}}
    for kind, r in runs.items():
        extra = report["extra_core_percent"].get(kind)
        print(f"{kind:>5}: {r['cpu_seconds_per_minute']:6.2f} CPU s/min, RSS {r['rss_mib']:6.1f} MiB"
              + (f", +{extra:.1f} % of a core over no checks" if extra is not None else ""))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
