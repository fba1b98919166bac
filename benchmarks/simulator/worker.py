"""One simulator process: an asyncio loop with its share of the virtual nodes, the churn among
them, and the control lines main.py forwards to it.

    python -m benchmarks.simulator.worker SPEC_JSON   (started by main.py, not by hand)

It prints one JSON line when every node serves and heartbeats (`{"ready": ...}`), stops on
SIGTERM or SIGINT (every node leaves as an agent does: heartbeats stop, servers close) and
writes its report to the spec's `report` path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

from fleetvisor.agent.security.tlsfiles import TlsFiles

from .churn import Churn, ChurnRates
from .configs import DEFAULT_PROGRAMS, ConfigCache
from .node import Identity, VirtualNode
from .process_table import flappable
from .service import VirtualAgentServicer

START_BATCH = 50      # nodes started before yielding to the loop (their first heartbeats go out meanwhile)
LAG_PERIOD = 0.25     # the loop-lag probe's period
FDS_PER_NODE = 3      # its listening socket, the controller's connection to it, a spare for reconnects


@dataclass
class WorkerSpec:
    index: int
    nodes: list[str]
    controllers: list[str]
    report: str
    labels: dict[str, str] = field(default_factory=dict)
    rates: ChurnRates = field(default_factory=ChurnRates)
    seed: int = 0
    programs: str = DEFAULT_PROGRAMS
    host: str = "127.0.0.1"
    pki: str = ""  # node certificates NODE.pem/NODE.key and ca.pem here: mutual TLS

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        raw = json.loads(text)
        raw["rates"] = ChurnRates(**raw["rates"])
        return cls(**raw)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class Tally:
    """What this process did, for the report."""

    flaps: int = 0
    flaps_through_backoff: int = 0
    outages: int = 0
    reboots: int = 0
    returns: int = 0
    lag_ms: list[float] = field(default_factory=list)


def node_labels(index: int, extra: dict[str, str]) -> dict[str, str]:
    """A few labels to select by, spread over the fleet as racks and roles are."""
    roles = ("web", "api", "batch")
    return {"sim": "yes", "zone": f"z{index % 4}", "role": roles[index % len(roles)], **extra}


def raise_fd_limit() -> int:
    """RLIMIT_NOFILE up to its hard limit: each node holds a listening socket and the
    controller's connection, so a few thousand nodes need more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed * 1000 + spec.index)
        self.churn = Churn(spec.rates, self.rng)
        self.configs = ConfigCache(spec.programs)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.tally = Tally()
        self.nodes: dict[str, VirtualNode] = {}
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = time.time()
        self.heartbeats = 0

    def _task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        limit = raise_fd_limit()
        if len(self.spec.nodes) * FDS_PER_NODE > limit:
            print(f"worker {self.spec.index}: {len(self.spec.nodes)} nodes need about "
                  f"{len(self.spec.nodes) * FDS_PER_NODE} file descriptors, over the limit of {limit}: "
                  "use more --procs", file=sys.stderr, flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        node = self.configs.node
        for i, name in enumerate(self.spec.nodes):
            number = int(name.rsplit("-", 1)[-1]) if name.rsplit("-", 1)[-1].isdigit() else i
            pki = self.spec.pki
            tls = TlsFiles(f"{pki}/{name}.pem", f"{pki}/{name}.key", f"{pki}/ca.pem") if pki else None
            identity = Identity(name, node_labels(number, self.spec.labels), tuple(self.spec.controllers),
                                self.spec.host, tls)
            self.nodes[name] = VirtualNode(identity, node.groups, node.local_sections, rng=self.rng, calls=self.calls,
                                           make_servicer=lambda n: VirtualAgentServicer(n, self.configs),
                                           state_dir=os.path.join(self.configs.dir, "nodes", name))
        began = time.monotonic()
        names = list(self.nodes)
        for i in range(0, len(names), START_BATCH):
            await asyncio.gather(*(self.nodes[n].start() for n in names[i:i + START_BATCH]))
        print(json.dumps({"ready": len(self.nodes), "worker": self.spec.index, "seconds": time.monotonic() - began,
                          "fd_limit": limit}), flush=True)
        self._task(self._flaps(), "flaps")
        self._task(self._outages(), "outages")
        self._task(self._lag(), "lag")
        self._task(self._control(), "control")
        await self.stopping.wait()
        await self.close()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.heartbeats = sum(n.heartbeats for n in self.nodes.values())  # before close() ends them
        await asyncio.gather(*(n.close() for n in self.nodes.values()), return_exceptions=True)
        self.configs.close()
        self.write_report()

    # -- churn ----------------------------------------------------------------------------------

    async def _flaps(self) -> None:
        while True:
            gap = self.churn.next_flap()
            if gap is None:
                await asyncio.sleep(1.0)  # rates may be changed by a control line
                continue
            await asyncio.sleep(gap)
            node = self.churn.pick([n for n in self.nodes.values() if n.up])
            if node is not None:
                self.flap(node, None)

    def flap(self, node: VirtualNode, namespec: str | None, through_backoff: bool | None = None) -> bool:
        if namespec is None:
            proc = self.churn.pick(flappable(node.table.processes()))
        else:
            proc = next(iter(node.table.resolve([namespec])), None)
        if proc is None:
            return False
        backoff = self.churn.through_backoff() if through_backoff is None else through_backoff
        if not node.flap(proc, through_backoff=backoff):
            return False
        self.tally.flaps += 1
        self.tally.flaps_through_backoff += backoff
        return True

    async def _outages(self) -> None:
        while True:
            gap = self.churn.next_outage()
            if gap is None:
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(gap)
            outage = self.churn.outage([n for n in self.nodes.values() if n.up])
            if outage is not None:
                self._task(self.away(outage.node, outage.seconds, reboot=outage.reboot), f"away {outage.node.name}")

    async def away(self, node: VirtualNode, seconds: float, *, reboot: bool) -> None:
        if not node.up:
            return
        self.tally.outages += 1
        await node.go_away()
        await asyncio.sleep(seconds)
        await node.come_back(reboot=reboot)
        self.tally.returns += 1
        self.tally.reboots += reboot

    async def _lag(self) -> None:
        """How late the loop wakes: the sign that a process holds too many nodes."""
        while True:
            began = time.monotonic()
            await asyncio.sleep(LAG_PERIOD)
            self.tally.lag_ms.append((time.monotonic() - began - LAG_PERIOD) * 1000)

    # -- control lines --------------------------------------------------------------------------

    async def _control(self) -> None:
        """Lines from main.py (see its docstring); a bad line is reported on stderr. The end of
        stdin means main.py is gone: the worker stops too, rather than heartbeat on orphaned."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            try:
                self.command(line.decode().split())
            except (ValueError, KeyError, IndexError) as exc:
                print(f"worker {self.spec.index}: bad control line {line.decode().strip()!r}: {exc}",
                      file=sys.stderr, flush=True)
        self.stopping.set()

    def command(self, words: list[str]) -> None:
        if not words:
            return
        verb, args = words[0], words[1:]
        if verb == "flap":
            self.flap(self.nodes[args[0]], args[1], through_backoff="backoff" in args[2:])
        elif verb == "away":
            node = self.nodes[args[0]]
            self._task(self.away(node, float(args[1]), reboot="reboot" in args[2:]), f"away {node.name}")
        elif verb == "streams":
            print(json.dumps({"streams": {name: n.watchers for name, n in self.nodes.items()}}), flush=True)
        elif verb == "rates":
            rates = self.churn.rates
            rates.flaps_per_second, rates.outages_per_minute = float(args[0]), float(args[1])
        else:
            raise ValueError(f"unknown command {verb!r}")

    # -- report ---------------------------------------------------------------------------------

    def write_report(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        lags = sorted(self.tally.lag_ms) or [0.0]
        report = {
            "worker": self.spec.index, "nodes": len(self.nodes),
            "processes": sum(len(n.table.processes()) for n in self.nodes.values()),
            "seconds": time.time() - self.started, "flaps": self.tally.flaps,
            "flaps_through_backoff": self.tally.flaps_through_backoff, "outages": self.tally.outages,
            "returns": self.tally.returns, "reboots": self.tally.reboots, "heartbeats": self.heartbeats,
            "rpcs": {method: count for (_, method), count in sorted(self.calls.items())},
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024,
            "loop_lag_ms": {"p50": lags[len(lags) // 2], "p99": lags[int(len(lags) * 0.99)], "max": lags[-1]},
        }
        tmp = f"{self.spec.report}.tmp"
        with open(tmp, "w") as f:
            json.dump(report, f)
        os.replace(tmp, self.spec.report)


def main() -> int:
    spec = WorkerSpec.from_json(sys.argv[1])
    # as the controller's GC_THRESHOLDS (controller/main.py): at 2500 virtual nodes a worker's
    # full collections took over 1 s each, most of its loop lag
    gc.set_threshold(50_000, 20, 100)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Worker(spec).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
