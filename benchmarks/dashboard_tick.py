"""What one status tick of the dashboard's stream costs the controller's event loop, in process:
the summary of the rows, the rows themselves (controller/dashboard/rows.py), the diff and the
JSON encoding of the message, with the controller's own functions on a synthetic fleet of
agent records (apb.ProcessInfo, as livestate.py keeps them). Each figure is the longest of
`repeat` runs, in CPU time of the thread (time.thread_time: a machine busy with other work
stretches wall time, not this). The rule is that nothing blocks the loop for more than 100 ms: a big view is
built in slices and sent in parts, so the longest slice and the longest encode of one part are
the figures to hold against it (the summary is one piece too).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from fleetvisor.agent.security.identity import Identity
from fleetvisor.agent.security.policy import Authorizer, make
from fleetvisor.controller import summary
from fleetvisor.controller.dashboard.calls import to_json
from fleetvisor.controller.dashboard.rows import ControlScope, RowCache, diff, split
from fleetvisor.controller.service import summary_message
from fleetvisor.controller.views import FleetStatus, NodeInfo, NodeProcesses
from fleetvisor.v1 import agent_pb2 as apb

STATES = ((apb.RUNNING, "RUNNING"), (apb.STOPPED, "STOPPED"), (apb.BACKOFF, "BACKOFF"), (apb.FATAL, "FATAL"))


@dataclass
class Fleet:
    nodes: list[NodeProcesses]

    @classmethod
    def make(cls, nodes: int, procs: int) -> Fleet:
        now = time.time()
        out = []
        for n in range(nodes):
            name = f"sim-{n + 1:04d}"
            info = NodeInfo(name, f"127.0.0.1:{20000 + n}", {"zone": f"z{n % 4}", "role": "web"}, "bench", True, True,
                            now, now, "3", "3")
            rows = []
            for i in range(procs):
                state, statename = STATES[0] if i % 10 else STATES[(n + i) % len(STATES)]
                rows.append(apb.ProcessInfo(name=f"p{i:02d}", group=f"g{i % 8}", namespec=f"g{i % 8}:p{i:02d}",
                                            state=state, statename=statename, pid=1000 + i, start=now - 60,
                                            now=now, description="pid 1, uptime 0:01:00"))
            out.append(NodeProcesses(info, rows))
        return cls(out)

    def flap(self, count: int, generation: int) -> None:
        """`count` processes get a new record, as an agent's state event replaces one."""
        for k in range(count):
            entry = self.nodes[(generation * 7919 + k * 104729) % len(self.nodes)]
            i = (generation + k) % len(entry.processes)
            old = entry.processes[i]
            fresh = apb.ProcessInfo()
            fresh.CopyFrom(old)
            fresh.pid = old.pid + 1
            entry.processes[i] = fresh


def _tick(fleet: Fleet, cache: RowCache, last: Any, scope: ControlScope) -> tuple[Any, dict[str, float], int]:
    """One tick as api.py runs it: the longest slice of the rows and the longest encode of one
    message are what the loop waits on; the totals are the CPU of the tick."""
    t0 = time.thread_time()
    status = FleetStatus(fleet.nodes, time.time(), "bench")
    digest = to_json(summary_message(summary.summarize(status.nodes, [], status.now)))
    t1 = time.thread_time()
    longest_slice, mark, model = 0.0, t1, None
    for model in cache.steps(status, digest, None, scope):
        now = time.thread_time()
        longest_slice, mark = max(longest_slice, now - mark), now
    t2 = time.thread_time()
    change = diff(last, model, cache.rebuilt)
    t3 = time.thread_time()
    size, longest_encode = 0, 0.0
    for message in split(change):
        began = time.thread_time()
        size += len(json.dumps(message, separators=(",", ":")))
        longest_encode = max(longest_encode, time.thread_time() - began)
    t4 = time.thread_time()
    times = {"summary": t1 - t0, "rows": t2 - t1, "diff": t3 - t2, "encode": t4 - t3, "total": t4 - t0,
             "longest_rows_slice": longest_slice, "longest_message_encode": longest_encode}
    return model, times, size


def measure(nodes: int, procs: int, repeat: int = 3, flaps: int = 5) -> dict[str, Any]:
    """The first (full) tick and a tick after `flaps` changed records, for an admin and for an
    operator whose policy names programs (its flags are asked per process)."""
    fleet = Fleet.make(nodes, procs)
    result: dict[str, Any] = {"nodes": nodes, "processes": nodes * procs}
    scoped = Authorizer([make("scoped", ["read", "control"], groups=["ops"], programs="g1:*")])
    for who, authorizer in (("admin", Authorizer()), ("scoped", scoped)):
        identity = Identity("operator", who, frozenset({"admins"} if who == "admin" else {"ops"}), "bench")
        first: dict[str, float] = {}
        later: dict[str, float] = {}
        size = 0
        for r in range(repeat):
            cache, scope = RowCache(), ControlScope(authorizer, identity)
            model, times, size = _tick(fleet, cache, None, scope)
            first = {k: max(v, first.get(k, 0.0)) for k, v in times.items()}
            fleet.flap(flaps, r)
            _, times, _ = _tick(fleet, cache, model, scope)
            later = {k: max(v, later.get(k, 0.0)) for k, v in times.items()}
        result[who] = {"first_ms": {k: round(v * 1000, 1) for k, v in first.items()}, "first_bytes": size,
                       f"after_{flaps}_flaps_ms": {k: round(v * 1000, 1) for k, v in later.items()}}
    return result
