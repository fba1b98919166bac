"""Soak: a controller pair on a real etcd and four agents, each on its own network namespace host,
under churn; nothing may leak, no operation step may be lost or done twice, and etcd's database
must stay bounded once compacted.

    python -m benchmarks.soak_controller [--minutes 30] [--out DIR] [--seed N]      (root: ip netns)

The fleet is tests/multihost's (conftest.Fleet on netns.Topology: etcd, ctl-a and ctl-b, agents
n1-n4 with programs alpha and beta, a driver host whose probe makes every call, mutual TLS).
While the run lasts, at random: a host's link goes down for 1-5 s and comes back; a config
(program `worker`, changed each time) is pushed to every node; a rolling restart of alpha runs
(batch 1 or 2), one at a time; and at fixed points (a fifth, 45 % and 70 % of a full run, a
third of a short one) the leading controller is killed with SIGKILL and started again 2 s later.
An operation paused because its node was cut off at the step's start is resumed once the link
is back (that is what an operator does); any other pause or failure counts as a lost step.

Checked at the end:
- every rolling restart succeeded and restarted alpha exactly once on every node: one more
  `spawned: 'alpha'` line in each agent's main log per operation, a new pid, one process;
- every pushed revision reached every node (the last one is applied everywhere);
- each controller process (a restarted one is a new process) did not leak: RSS (5 %, or the
  short-run bound of soak.py), open fds and asyncio tasks (GetLeader's asyncio_tasks) the same
  after its warm-up and at its end, compared in the role it ended in and on quiet samples (no
  link down, no operation in flight, no push or controller start in the last seconds, since
  those hold connections and tasks for a moment);
- the leader compacted etcd (`--compact-interval`/`--compact-retention`, by default the controller's
  300 s and 1000 revisions; 20 s and 100 in a short run, which makes fewer revisions) and the
  space etcd uses (dbSizeInUse, from its maintenance status) is bounded: after the warm-up, its
  peak in the second half of the run is at most 30 % over its peak in the first half.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.multihost.conftest import AGENTS, CONTROLLERS, HOSTS, Fleet
from tests.multihost.netns import NetnsUnavailable, Topology, wait_for

from .soak import RESULTS, Every, Report, footprint, rss_bound, warmup_seconds

WORKER = "[program:worker]\ncommand=sleep {seconds}\nstartsecs=0\nstopwaitsecs=2\n"
FD_SLACK = 4
TASK_SLACK = 2
# etcd's space in use may grow with what the run adds for good (an operation record, an audit
# line and a config revision each: a few kB); history must not add to it once compacted
DB_GROWTH_BOUND = 0.3
FULL_KILLS = (0.2, 0.45, 0.7)
SHORT_KILLS = (1 / 3,)
QUIET_AFTER = 5.0  # seconds after a push, a heal or an operation's end before a sample counts as quiet
START_SETTLE = 15.0  # seconds after a controller starts or changes role


@dataclass
class RollingRestart:
    id: str
    started: float
    spawned_before: dict[str, int]
    pids_before: dict[str, list[int]]
    resumes: int = 0


@dataclass
class Tally:
    ops_started: int = 0
    ops_succeeded: int = 0
    resumes: int = 0
    pushes: int = 0
    push_retries: int = 0
    flaps: int = 0
    kills: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    last_revision: int = 0


class Soak:
    def __init__(self, args: argparse.Namespace, topo: Topology, base: Path) -> None:
        self.args = args
        self.short = args.minutes < 15
        self.rng = random.Random(args.seed)
        self.topo = topo
        self.fleet = Fleet(topo, base)
        self.fleet.controller_args = ("--compact-interval", str(args.compact_interval),
                                      "--compact-retention", str(args.compact_retention))
        self.tally = Tally()
        self.op: RollingRestart | None = None
        self.cut: tuple[str, float] | None = None  # the host cut off, and when to heal it
        self.restart_at: dict[str, float] = {}  # killed controllers, when to start them again
        self.started_at: dict[str, float] = {}
        self.last_stir = 0.0

    @property
    def driver(self):
        assert self.fleet.driver is not None
        return self.fleet.driver

    # -- who leads ------------------------------------------------------------------------------

    def leader(self) -> str | None:
        for name in CONTROLLERS:
            if name not in self.restart_at:
                info = self.driver.poll("leader", ctl=self.fleet.controllers[name])
                if info and info["is_leader"]:
                    return name
        return None

    def any_controller(self) -> str:
        live = [c for c in CONTROLLERS if c not in self.restart_at]
        return self.fleet.controllers[(self.leader() or live[0]) if live else CONTROLLERS[0]]

    # -- churn ----------------------------------------------------------------------------------

    def flap(self) -> None:
        if self.cut is None:
            node = self.rng.choice(AGENTS)
            self.topo.cut(node)
            self.cut = (node, time.monotonic() + self.rng.uniform(1, 5))
            self.tally.flaps += 1

    def heal(self, force: bool = False) -> None:
        if self.cut is not None and (force or time.monotonic() >= self.cut[1]):
            self.topo.heal(self.cut[0])
            self.cut = None
            self.stirred()

    def push(self) -> None:
        leader = self.leader()
        if leader is None:
            self.tally.push_retries += 1
            return
        answer = self.driver.call("push", ctl=self.fleet.controllers[leader], name="soak",
                                  text=WORKER.format(seconds=86500 + self.tally.pushes), labels={"role": "web"})
        if answer["ok"]:
            self.tally.pushes += 1
            self.tally.last_revision = answer["result"]["revision"]
            self.stirred()
        else:
            self.tally.push_retries += 1  # the leader just died or stepped down: the next tick retries

    def start_operation(self) -> None:
        leader = self.leader()
        if self.op is not None or leader is None:
            return
        spawned = {n: len(a.spawned("alpha")) for n, a in self.fleet.agents.items()}
        pids = {n: a.programs()["alpha"] for n, a in self.fleet.agents.items()}
        answer = self.driver.call("start_op", ctl=self.fleet.controllers[leader], group="alpha",
                                  batch=self.rng.randint(1, 2), healthy_for=1.0, op_timeout=30.0)
        if answer["ok"]:
            self.op = RollingRestart(answer["result"]["id"], time.monotonic(), spawned, pids)
            self.tally.ops_started += 1

    def follow_operation(self) -> None:
        op = self.op
        if op is None:
            return
        answer = self.driver.call("get_op", ctl=self.any_controller(), id=op.id)
        if not answer["ok"]:
            return  # the controller asked is going or coming back
        state = answer["result"]
        if state["state"] == "OP_RUNNING":
            if time.monotonic() - op.started > 300:
                self.lost(f"operation {op.id} still running after 300 s: {state}")
            return
        if state["state"] == "OP_PAUSED":
            errors = [s["error"] for b in state["batches"] for s in b if s["state"] == "STEP_FAILED"]
            if errors and all("reachable" in e for e in errors):
                if self.cut is None and (leader := self.leader()):
                    if self.driver.call("resume_op", ctl=self.fleet.controllers[leader], id=op.id)["ok"]:
                        op.resumes += 1
                        self.tally.resumes += 1
                return
            self.lost(f"operation {op.id} paused: {state['reason']} {errors}")
            return
        if state["state"] != "OP_SUCCEEDED":
            self.lost(f"operation {op.id} ended {state['state']}: {state['reason']}")
            return
        for node, agent in self.fleet.agents.items():
            more = len(agent.spawned("alpha")) - op.spawned_before[node]
            pids = agent.programs()["alpha"]
            if more != 1 or len(pids) != 1 or pids == op.pids_before[node]:
                self.tally.problems.append(f"operation {op.id}: {node} spawned alpha {more} times, "
                                           f"pids {op.pids_before[node]} -> {pids}")
        self.tally.ops_succeeded += 1
        self.op = None
        self.stirred()

    def lost(self, why: str) -> None:
        self.tally.problems.append(why)
        if (leader := self.leader()) and self.op is not None:
            self.driver.call("abort_op", ctl=self.fleet.controllers[leader], id=self.op.id)
        self.op = None

    def kill_leader(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        self.fleet.ctl_procs[leader].kill()
        self.restart_at[leader] = time.monotonic() + 2.0
        self.tally.kills.append(leader)

    def restart_killed(self) -> None:
        for name, due in list(self.restart_at.items()):
            if time.monotonic() >= due:
                self.fleet.start_controller(name)
                del self.restart_at[name]
                self.started_at[name] = time.monotonic()

    def stirred(self) -> None:
        self.last_stir = time.monotonic()

    # -- measuring ------------------------------------------------------------------------------

    def quiet(self) -> bool:
        now = time.monotonic()
        return (self.cut is None and self.op is None and not self.restart_at and now - self.last_stir > QUIET_AFTER
                and all(now - t > START_SETTLE for t in self.started_at.values()))

    def measure(self, report: Report) -> None:
        values: dict[str, float] = {"quiet": int(self.quiet()), "flaps": self.tally.flaps,
                                    "ops_succeeded": self.tally.ops_succeeded, "pushes": self.tally.pushes,
                                    "kills": len(self.tally.kills)}
        for name in CONTROLLERS:
            proc = self.fleet.ctl_procs.get(name)
            if proc is None or not proc.running() or name in self.restart_at:
                continue
            info = self.driver.poll("leader", ctl=self.fleet.controllers[name])
            if info is None:
                continue
            try:
                values.update({f"{name}.{k}": v for k, v in footprint(proc.pid).items()})
            except OSError:
                continue
            values.update({f"{name}.pid": proc.pid, f"{name}.tasks": info["asyncio_tasks"],
                           f"{name}.leader": int(info["is_leader"])})
        status = self.driver.poll("etcd_status", etcd=self.fleet.etcd_endpoint)
        if status:
            values.update(db_mib=int(status["dbSize"]) / 2**20, db_in_use_mib=int(status["dbSizeInUse"]) / 2**20,
                          etcd_revision=int(status["header"]["revision"]))
        report.sample(values)

    # -- the run --------------------------------------------------------------------------------

    def run(self, report: Report) -> None:
        self.fleet.start()
        report.started = time.monotonic()
        self.started_at = {c: report.started for c in CONTROLLERS}
        duration = self.args.minutes * 60
        kills = [report.started + f * duration for f in (SHORT_KILLS if self.short else FULL_KILLS)]
        sample = Every(2.0 if self.short else 5.0, self.rng)
        churn = [(Every(8.0 if self.short else 20.0, self.rng), self.flap),
                 (Every(6.0 if self.short else 30.0, self.rng), self.push),
                 (Every(3.0 if self.short else 10.0, self.rng), self.start_operation)]
        end = report.started + duration
        while time.monotonic() < end:
            self.heal()
            self.restart_killed()
            if kills and time.monotonic() >= kills[0]:
                kills.pop(0)
                self.kill_leader()
            for timer, action in churn:
                if timer.ready():
                    action()
            self.follow_operation()
            if sample.ready():
                self.measure(report)
            time.sleep(0.1)
        # the end: links up, both controllers back, the last operation done, the last push applied
        self.heal(force=True)
        wait_for(lambda: (self.restart_killed(), not self.restart_at)[1], 10, "the killed controller started again")
        wait_for(lambda: (self.follow_operation(), self.op is None)[1], 300, "the last rolling restart to end")
        self.fleet.wait_converged(timeout=60)
        wait_for(lambda: self.applied_everywhere(), 60, f"soak@{self.tally.last_revision} applied on every node")
        wait_for(lambda: self.quiet(), 60, "a quiet fleet")
        for _ in range(6):
            self.measure(report)
            time.sleep(2.0 if self.short else 5.0)

    def applied_everywhere(self) -> bool:
        if not self.tally.last_revision:
            return True
        status = self.driver.poll("config_status", ctl=self.any_controller())
        want = f"soak@{self.tally.last_revision}"
        return bool(status) and all(want in status.get(n, {}).get("applied", "").split(",") for n in AGENTS)

    def compactions(self) -> int:
        return sum(p.text().count("compacted etcd history up to revision") for p in self.fleet.ctl_procs.values())


def judge_controllers(report: Report, short: bool) -> None:
    """Each controller process, in the role it ended in, after its warm-up, on quiet samples."""
    judged = []
    for name in CONTROLLERS:
        pids = list(dict.fromkeys(s[f"{name}.pid"] for s in report.samples if f"{name}.pid" in s))
        for pid in pids:
            life = [s for s in report.samples if s.get(f"{name}.pid") == pid]
            role = life[-1][f"{name}.leader"]
            changed = max((s["t"] for s, before in zip(life[1:], life[:-1], strict=True)
                           if s[f"{name}.leader"] != before[f"{name}.leader"]), default=life[0]["t"])
            since = max(life[0]["t"] + report.warmup_s, changed + START_SETTLE)
            window = [s for s in life if s["t"] >= since and s["quiet"] and s[f"{name}.leader"] == role]
            label = (f"{name} pid {pid} ({'leader' if role else 'follower'}, "
                     f"{life[0]['t'] / 60:.1f}-{life[-1]['t'] / 60:.1f} min)")
            if len(window) < 6:
                report.figures.setdefault("not_judged", []).append(f"{label}: {len(window)} quiet samples")
                continue
            judged.append(label)
            first, last = window[:3], window[-3:]
            figures = {}
            for key in ("rss_mib", "fds", "tasks"):
                a = statistics.median(s[f"{name}.{key}"] for s in first)
                b = statistics.median(s[f"{name}.{key}"] for s in last)
                figures[key] = (a, b)
            rss, fds, tasks = figures["rss_mib"], figures["fds"], figures["tasks"]
            growth = rss[1] / rss[0] - 1
            bound = rss_bound(report.minutes)
            report.check(f"{label} no leak", growth <= bound and fds[1] - fds[0] <= FD_SLACK
                         and tasks[1] - tasks[0] <= TASK_SLACK,
                         f"{label} over {(window[-1]['t'] - window[0]['t']) / 60:.1f} min: RSS {rss[0]:.1f} -> "
                         f"{rss[1]:.1f} MiB ({growth:+.1%}, bound {bound:.0%}), fds {fds[0]:.0f} -> {fds[1]:.0f}, "
                         f"tasks {tasks[0]:.0f} -> {tasks[1]:.0f} (slack {FD_SLACK}/{TASK_SLACK})")
            report.figures.setdefault("controllers", []).append({"label": label, **figures, "samples": len(window)})
    report.check("controllers judged", bool(judged), f"{len(judged)} controller process(es) judged for leaks")


def db_peaks(report: Report) -> tuple[float, float]:
    """etcd's space in use peaks just before each compaction; after the warm-up, the peak of the
    second half may exceed the first half's by DB_GROWTH_BOUND (records kept for good). Without
    compaction it grows with every revision, from the start: 70 % over these halves in a full run
    (warm-up 5 of 30 minutes), 50 % in a short one (a third)."""
    after = [s for s in report.samples if s["t"] >= report.warmup_s and "db_in_use_mib" in s]
    # the samples after the last compaction (space in use dropped) are a cycle the run's end cut
    # short: its peak is wherever the run stopped, and what the run wrote last (a short run ended
    # 18 s into a cycle, after its last push, 31 % over the first half's peak)
    drops = [i for i in range(1, len(after)) if after[i]["db_in_use_mib"] < after[i - 1]["db_in_use_mib"]]
    if drops and after[drops[-1]]["t"] > (after[0]["t"] + after[-1]["t"]) / 2:
        after = after[:drops[-1]]
    middle = (after[0]["t"] + after[-1]["t"]) / 2
    first = max(s["db_in_use_mib"] for s in after if s["t"] <= middle)
    second = max(s["db_in_use_mib"] for s in after if s["t"] > middle)
    growth = second / first - 1
    report.check("etcd space bounded", growth <= DB_GROWTH_BOUND,
                 f"etcd space in use peaked at {first:.2f} MiB in the first half after warm-up, {second:.2f} MiB "
                 f"in the second ({growth:+.0%}, bound {DB_GROWTH_BOUND:.0%})")
    return first, second


def judge(report: Report, soak: Soak) -> None:
    t = soak.tally
    report.figures.update(ops_started=t.ops_started, ops_succeeded=t.ops_succeeded, resumes=t.resumes,
                          pushes=t.pushes, push_retries=t.push_retries, flaps=t.flaps, kills=t.kills,
                          compactions=soak.compactions(), problems=t.problems[:20])
    report.check("operations exactly once", t.ops_started > 0 and t.ops_succeeded == t.ops_started and not t.problems,
                 f"{t.ops_succeeded} of {t.ops_started} rolling restarts succeeded ({t.resumes} resumed after a "
                 f"node was cut off at its step), alpha restarted exactly once per node per operation"
                 + (f"; problems: {t.problems[:3]}" if t.problems else ""))
    report.check("pushes applied", t.pushes > 0, f"{t.pushes} config pushes, the last (soak@{t.last_revision}) "
                 f"applied on every node; {t.flaps} link flaps, leader kills: {', '.join(t.kills) or 'none'}")
    judge_controllers(report, soak.short)
    used = db_peaks(report)
    size = (report.at(report.warmup_s, "db_mib"), report.last("db_mib"))
    report.figures.update(db_in_use_mib_peak_first_half=used[0], db_in_use_mib_peak_second_half=used[1],
                          db_in_use_mib_end=report.last("db_in_use_mib", count=1), db_mib_after_warmup=size[0],
                          db_mib_end=size[1], etcd_revision_end=report.last("etcd_revision", count=1))
    report.check("etcd compacted", report.figures["compactions"] > 0,
                 f"{report.figures['compactions']} compactions by the leader; etcd db file {size[0]:.2f} -> "
                 f"{size[1]:.2f} MiB at revision {report.figures['etcd_revision_end']:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_controller", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--compact-interval", type=float, default=None,
                        help="the controllers' --compact-interval (default: theirs, 300 s; 20 s under 15 minutes)")
    parser.add_argument("--compact-retention", type=int, default=None,
                        help="the controllers' --compact-retention (default: theirs, 1000; 100 under 15 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if args.compact_interval is None:
        args.compact_interval = 20.0 if args.minutes < 15 else 300.0
    if args.compact_retention is None:
        args.compact_retention = 100 if args.minutes < 15 else 1000
    report = Report("controller", args.minutes, warmup_seconds(args.minutes))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still remove the namespaces
    topo = Topology(HOSTS)
    try:
        topo.create()
    except NetnsUnavailable as exc:
        print(f"cannot run the controller soak: {exc}", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="fleetvisor-soak-controller-"))
    soak = Soak(args, topo, base)
    finished = False
    try:
        soak.run(report)
        judge(report, soak)
        finished = True
    finally:
        if not finished:
            report.check("run completed", False, "the run stopped early (see the traceback)")
        try:
            soak.fleet.close()
        finally:
            topo.destroy()
        if report.ok:
            shutil.rmtree(base, ignore_errors=True)
        report.write(args.out, [("controller RSS (MiB)", [f"{c}.rss_mib" for c in CONTROLLERS]),
                                ("open fds", [f"{c}.fds" for c in CONTROLLERS]),
                                ("asyncio tasks", [f"{c}.tasks" for c in CONTROLLERS]),
                                ("etcd (MiB)", ["db_mib", "db_in_use_mib"]),
                                ("operations", ["ops_succeeded", "pushes", "flaps", "kills"])])
    print(report.verdict())
    print(f"wrote {args.out / 'controller.json'} and {args.out / 'controller.png'}"
          + ("" if report.ok else f"; the fleet's logs are in {base}"))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
