"""Many virtual agents against a real controller: `python -m benchmarks.simulator`.

    python -m benchmarks.simulator --nodes 500 --procs 2 --controller 127.0.0.1:7400 \\
        [--flaps-per-second 2] [--outages-per-minute 6 --outage-seconds 20] [--duration 300] \\
        [--out benchmarks/results/simulator.json] [--control] [--pki DIR --cluster NAME]

Every virtual node heartbeats to the controller as an agent does and serves AgentService on a
port of its own on loopback (plaintext, or mutual TLS with --pki), with about 20 programs that exist only as state. The
nodes are spread over --procs worker processes, each one asyncio loop. The run ends after
--duration seconds, or on SIGINT/SIGTERM; it then prints and writes a JSON report (nodes,
flaps, outages, RPCs served by method, each worker's CPU, RSS and loop lag).

With --control, lines on stdin drive it (for tests, or by hand):

    flap NODE NAMESPEC [backoff]     a RUNNING process crashes (and, with backoff, once more on the way back)
    away NODE SECONDS [reboot]       the node goes away and comes back (as a new agent run with reboot)
    rates FLAPS_PER_S OUTAGES_PER_MIN   change the churn rates (fleet-wide)
    streams                          each worker prints {"streams": {NODE: open WatchEvents streams}}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetvisor.cli.certs import issue

from .churn import ChurnRates
from .configs import DEFAULT_PROGRAMS
from .worker import WorkerSpec

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 300.0
STOP_TIMEOUT = 60.0


def parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise argparse.ArgumentTypeError(f"label {item!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.simulator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, required=True, help="virtual nodes in all")
    p.add_argument("--controller", action="append", required=True, metavar="HOST:PORT",
                   help="a controller to heartbeat to (repeat for several, as [fleetvisor] controllers=)")
    p.add_argument("--procs", type=int, default=1, help="worker processes (default %(default)s)")
    p.add_argument("--prefix", default="sim", help="node names are PREFIX-0001 ... (default %(default)s)")
    p.add_argument("--labels", type=parse_labels, default={}, metavar="K=V,...",
                   help="labels every node has, besides sim=yes, zone=z0..z3, role=web|api|batch")
    p.add_argument("--programs-file", type=Path, metavar="FILE",
                   help="the program sections of each node's own file (default: about 20 typical programs)")
    p.add_argument("--flaps-per-second", type=float, default=0.0, help="process crashes per second, fleet-wide")
    p.add_argument("--outages-per-minute", type=float, default=0.0, help="nodes going away per minute, fleet-wide")
    p.add_argument("--outage-seconds", type=float, default=20.0, help="mean time a node stays away")
    p.add_argument("--backoff-share", type=float, default=0.3, help="flaps that go through BACKOFF")
    p.add_argument("--reboot-share", type=float, default=0.5, help="outages that end as a new agent run")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (default: until a signal)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the JSON report here too")
    p.add_argument("--control", action="store_true", help="read control lines from stdin (see above)")
    p.add_argument("--pki", type=Path, metavar="DIR",
                   help="mutual TLS: the fleet's CA (ca.pem, ca.key, as `fleetctl certs` makes it); an agent "
                        "certificate is issued there for each node (NODE.pem, NODE.key)")
    p.add_argument("--cluster", default="default", help="with --pki: the cluster the controller's certificate names")
    args = p.parse_args(argv)
    if args.nodes < 1 or args.procs < 1:
        p.error("--nodes and --procs must be at least 1")
    args.procs = min(args.procs, args.nodes)
    return args


def node_names(prefix: str, total: int) -> list[str]:
    width = max(4, len(str(total)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, total + 1)]


def issue_certificates(pki: Path, names: list[str], cluster: str) -> None:
    """An agent certificate for each node, by the project's own tooling (`fleetctl certs`);
    one already there is kept (EC keys: a few milliseconds each)."""
    for name in names:
        if not (pki / f"{name}.pem").exists():
            issue(pki, name, ["127.0.0.1"], role="agent", cluster=cluster)


def merge(reports: list[dict]) -> dict:
    """The fleet's report from the workers' (sums, and every worker's own figures)."""
    rpcs: dict[str, int] = {}
    for r in reports:
        for method, count in r["rpcs"].items():
            rpcs[method] = rpcs.get(method, 0) + count
    total = {key: sum(r[key] for r in reports)
             for key in ("nodes", "processes", "flaps", "flaps_through_backoff", "outages", "returns", "reboots",
                         "heartbeats")}
    return {**total, "rpcs": rpcs, "rpcs_total": sum(rpcs.values()), "workers": reports}


@dataclass
class WorkerProc:
    spec: WorkerSpec
    proc: asyncio.subprocess.Process
    ready: asyncio.Future[dict]


class Simulator:
    def __init__(self, args: argparse.Namespace, reports: Path) -> None:
        self.args = args
        self.reports = reports
        self.workers: list[WorkerProc] = []
        self.owner: dict[str, WorkerProc] = {}
        self.stop = asyncio.Event()
        self.readers: list[asyncio.Task[None]] = []

    def specs(self) -> list[WorkerSpec]:
        a = self.args
        programs = a.programs_file.read_text() if a.programs_file else DEFAULT_PROGRAMS
        rates = ChurnRates(a.flaps_per_second, a.outages_per_minute, a.outage_seconds, a.backoff_share,
                           a.reboot_share).share(a.procs)
        names = node_names(a.prefix, a.nodes)
        if a.pki:
            issue_certificates(a.pki, names, a.cluster)
        return [WorkerSpec(index=i, nodes=names[i::a.procs], controllers=a.controller,
                           report=str(self.reports / f"worker-{i}.json"), labels=a.labels, rates=rates,
                           seed=a.seed, programs=programs, pki=str(a.pki.resolve()) if a.pki else "")
                for i in range(a.procs)]

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        began = time.monotonic()
        for spec in self.specs():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.simulator.worker", spec.to_json(), cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            worker = WorkerProc(spec, proc, loop.create_future())
            self.workers.append(worker)
            self.owner.update(dict.fromkeys(spec.nodes, worker))
            self.readers.append(loop.create_task(self._read(worker)))
        ok = await self._wait_ready(began)
        if ok:
            if self.args.control:
                threading.Thread(target=self._stdin, args=(loop,), daemon=True).start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.duration or None)
        return await self._finish(ok)

    async def _wait_ready(self, began: float) -> bool:
        waiting: asyncio.Future[Any] = asyncio.gather(*(w.ready for w in self.workers))
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait([waiting, stopped], timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if waiting not in done or waiting.exception() is not None:
            print(f"simulator: workers not ready: {waiting.exception() if waiting.done() else 'timed out'}",
                  file=sys.stderr, flush=True)
            waiting.cancel()
            return False
        print(json.dumps({"ready": self.args.nodes, "procs": len(self.workers),
                          "seconds": round(time.monotonic() - began, 2)}), flush=True)
        return True

    async def _read(self, worker: WorkerProc) -> None:
        """The worker's stdout: its ready line, then anything else it says, passed on."""
        assert worker.proc.stdout is not None
        while line := await worker.proc.stdout.readline():
            text = line.decode().strip()
            if not worker.ready.done() and text.startswith('{"ready"'):
                worker.ready.set_result(json.loads(text))
            elif text:
                print(f"worker {worker.spec.index}: {text}", flush=True)
        if not worker.ready.done():
            worker.ready.set_exception(RuntimeError(f"worker {worker.spec.index} exited before it was ready"))
        self.stop.set()  # a worker that ends on its own ends the run

    def _stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(self.route, line)

    def route(self, line: str) -> None:
        """A control line to the worker of the node it names (`rates`: to every worker, its share)."""
        words = line.split()
        if not words:
            return
        if words[0] == "rates" and len(words) == 3:
            share = len(self.workers)
            targets = [(w, f"rates {float(words[1]) / share} {float(words[2]) / share}\n") for w in self.workers]
        elif words == ["streams"]:
            targets = [(w, "streams\n") for w in self.workers]
        elif len(words) >= 2 and words[1] in self.owner:
            targets = [(self.owner[words[1]], line if line.endswith("\n") else line + "\n")]
        else:
            print(f"simulator: bad control line {line.strip()!r}", file=sys.stderr, flush=True)
            return
        for worker, text in targets:
            if worker.proc.stdin is not None and worker.proc.returncode is None:
                worker.proc.stdin.write(text.encode())

    async def _finish(self, ok: bool) -> int:
        for w in self.workers:
            if w.proc.returncode is None:
                w.proc.terminate()
        for w in self.workers:
            try:
                await asyncio.wait_for(w.proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
                ok = False
        reports = []
        for w in self.workers:
            try:
                reports.append(json.loads(Path(w.spec.report).read_text()))
            except (OSError, ValueError):
                print(f"simulator: worker {w.spec.index} left no report (exit status {w.proc.returncode})",
                      file=sys.stderr, flush=True)
                ok = False
        report = merge(reports) if reports else {}
        text = json.dumps(report, indent=2)
        print(text, flush=True)
        if self.args.out:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            self.args.out.write_text(text + "\n")
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleetvisor-sim-reports-") as tmp:
        return asyncio.run(Simulator(args, Path(tmp)).run())
