"""What a Prometheus scrape of the agent's /metrics costs (issue 17): N programs running, the
time for one GET of /metrics over the agent's unix socket, and how long a status call waits
when it arrives during scrapes. The target is a scrape under 100 ms at 1000 programs.

    .venv/bin/python -m benchmarks.metrics_scrape                    # 1000 programs, 30 scrapes
    .venv/bin/python -m benchmarks.metrics_scrape --programs 100 --scrapes 5
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from pathlib import Path

from .daemons import Daemon, sleepers

RESULTS = Path(__file__).parent / "results" / "metrics_scrape.json"


def get(path: Path, target: str) -> bytes:
    """One HTTP/1.0 GET over the agent's unix socket: the answer's body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"GET {target}: {head.splitlines()[0]!r}")
    return body


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    with Daemon("agent", sleepers(args.programs)) as daemon:
        daemon.all_running(args.programs)
        sock = daemon.workdir / "supervisor.sock"
        server = daemon.rpc()
        get(sock, "/metrics")  # the first one imports and warms up
        took, size = [], 0
        for _ in range(args.scrapes):
            started = time.perf_counter()
            size = len(get(sock, "/metrics"))
            took.append(time.perf_counter() - started)
        # status calls while scrapes run back to back: what a scrape costs everyone else
        waited: list[float] = []
        done = threading.Event()

        def scraping() -> None:
            while not done.is_set():
                get(sock, "/metrics")
        scraper = threading.Thread(target=scraping)
        scraper.start()
        try:
            for _ in range(args.scrapes):
                started = time.perf_counter()
                server.supervisor.getState()
                waited.append(time.perf_counter() - started)
                time.sleep(0.02)
        finally:
            done.set()
            scraper.join()
    report = {"programs": args.programs, "scrapes": args.scrapes, "bytes": size,
              "scrape_ms": {"p50": statistics.median(took) * 1000, "p99": percentile(took, 0.99) * 1000,
                            "max": max(took) * 1000},
              "status_during_scrapes_ms": {"p50": statistics.median(waited) * 1000,
                                           "max": max(waited) * 1000}}
    print(f"{args.programs} programs: /metrics {size / 1024:.0f} KiB, scrape p50 {report['scrape_ms']['p50']:.1f} ms, "
          f"p99 {report['scrape_ms']['p99']:.1f} ms; getState during scrapes p50 "
          f"{report['status_during_scrapes_ms']['p50']:.1f} ms, max {report['status_during_scrapes_ms']['max']:.1f} ms")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
