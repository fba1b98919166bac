"""Soak: one real agent with many programs under churn; memory, descriptors and tasks must stay flat
and every state change an event listener hears must match the main log.

    python -m benchmarks.soak_agent [--minutes 30] [--programs 1000] [--out DIR] [--seed N]

The programs: most are quiet sleepers; a share flap (exit after 2-21 s, autorestart); a few write
a line every 50 ms into a 20 kB stdout log with two backups, so it rotates every few seconds.
An event listener (state_listener.py) subscribed to PROCESS_STATE writes down what it is sent.
While the run lasts, at random: restarts over XML-RPC (stopProcess + startProcess), restarts
over gRPC (Restart), and `update` over XML-RPC after editing the file (a few extra programs
added, then removed again). Every few seconds: the agent's RSS and open fds from /proc and its
asyncio task count (gRPC GetInfo's asyncio_tasks).

Checked at the end (see soak.py for the warm-up and the short-run RSS bound):
- RSS grew by less than 5 % between minute 5 and the end of the churn (medians of 5 samples, both
  taken while the churn runs);
- open fds and tasks are what they were after the warm-up, compared on samples with the same
  set of programs (the extras out), medians of 5 so that a flapper caught between exit and
  respawn does not count;
- with churn stopped and every program stopped, the listener's transitions equal the main log's
  transition lines (spawned, success, exited, stopped, gave up), in the same order per process;
- every update added and removed exactly the programs the edit did, and no call failed
  unexpectedly.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import xmlrpc.client
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from .daemons import Daemon, config_text
from .fleet_scale import free_port, wait
from .soak import RESULTS, Every, Report, footprint, rss_bound, warmup_seconds

LISTENER = Path(__file__).with_name("state_listener.py")
EXTRAS = 20  # the pool of programs updates add and remove
FD_SLACK = 4  # a flapper in the middle of a restart in every one of the 5 end samples
TASK_SLACK = 2
SAMPLE_EVERY = {True: 2.0, False: 5.0}  # short run, full run

SLEEPER = "[program:{name}]\ncommand=sleep 100000\nstartsecs=0\nstdout_logfile=NONE\nstderr_logfile=NONE\n\n"
FLAPPER = ("[program:{name}]\ncommand=bash -c 'sleep $((RANDOM %% 20 + 2))'\nstartsecs=1\nautorestart=true\n"
           "startretries=100\nstdout_logfile=NONE\nstderr_logfile=NONE\n\n")
# `read -t` on a pipe nobody writes is a sleep without a fork per line
WRITER = ("[program:{name}]\ncommand=bash -c 'exec 3< <(exec sleep 100000); "
          "while :; do echo \"{name} $SECONDS soak line 0123456789abcdefghijklmnopqrstuvwxyz\"; "
          "read -t 0.05 -u 3; done'\n"
          "startsecs=0\nstopasgroup=true\nkillasgroup=true\nstdout_logfile_maxbytes=20KB\nstdout_logfile_backups=2\n"
          "stderr_logfile=NONE\n\n")
LISTENER_SECTION = ("[eventlistener:soaklistener]\ncommand={python} {script} {out}\nevents=PROCESS_STATE\n"
                    "buffer_size=100000\npriority=1\nstderr_logfile=NONE\n\n")
FLEETVISOR = "[fleetvisor]\nnode=soak\ngrpc_listen=127.0.0.1:{port}\nstate_dir={dir}/state\n\n"

# The main-log lines that stand for a transition, by the state they report.
LOG_LINE = re.compile(r"(?:spawned: '(?P<STARTING>[^']+)' with pid|success: (?P<RUNNING>\S+) entered RUNNING|"
                      r"exited: (?P<EXIT>\S+) \(|stopped: (?P<STOPPED>\S+) \(|gave up: (?P<FATAL>\S+) entered FATAL)")


@dataclass
class Mix:
    sleepers: list[str]
    flappers: list[str]
    writers: list[str]

    @classmethod
    def of(cls, total: int) -> Mix:
        flappers, writers = max(2, total * 5 // 100), max(2, total * 2 // 100)
        return cls([f"s{i}" for i in range(total - flappers - writers)], [f"f{i}" for i in range(flappers)],
                   [f"w{i}" for i in range(writers)])

    def text(self, extras: set[str]) -> str:
        return "".join([*(SLEEPER.format(name=n) for n in (*self.sleepers, *sorted(extras))),
                        *(FLAPPER.format(name=n) for n in self.flappers),
                        *(WRITER.format(name=n) for n in self.writers)])

    @property
    def count(self) -> int:
        return len(self.sleepers) + len(self.flappers) + len(self.writers)


@dataclass
class Counts:
    xmlrpc_restarts: int = 0
    grpc_restarts: int = 0
    updates: int = 0
    programs_added: int = 0
    programs_removed: int = 0
    unexpected: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.mix = Mix.of(args.programs)
        self.extras: set[str] = set()
        self.port = free_port()
        self.counts = Counts()
        self.churn_end = 0.0  # seconds into the run when the churn stopped
        self.daemon = Daemon("agent", "", "logfile_maxbytes=0")
        self.events = self.daemon.workdir / "listener.events"
        self.write_config()
        self.server = self.daemon.rpc()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.AgentServiceStub(self.channel)

    def write_config(self) -> None:
        extra = (LISTENER_SECTION.format(python=sys.executable, script=LISTENER, out=self.events)
                 + FLEETVISOR.format(port=self.port, dir=self.daemon.workdir) + self.mix.text(self.extras))
        self.daemon.config.write_text(config_text(self.daemon.workdir, extra, "logfile_maxbytes=0"))

    # -- churn ------------------------------------------------------------------------------------

    def _tolerate(self, call, name: str, fault_ok: int) -> None:
        try:
            call(name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != fault_ok:
                self.counts.unexpected.append(f"{fault.faultString}")

    def restart_xmlrpc(self) -> None:
        names = self.rng.sample([*self.mix.sleepers, *self.mix.writers, *self.mix.flappers], self.rng.randint(1, 5))
        for name in names:
            # a flapper may be between runs: NOT_RUNNING (70) on stop, ALREADY_STARTED (60) on start
            self._tolerate(self.server.supervisor.stopProcess, name, 70)
            self._tolerate(self.server.supervisor.startProcess, name, 60)
            self.counts.xmlrpc_restarts += 1

    def restart_grpc(self) -> None:
        names = self.rng.sample([*self.mix.sleepers, *self.mix.writers], self.rng.randint(1, 5))
        try:
            self.stub.Restart(pb.ProcessCommand(names=names, wait=True), timeout=60)
            self.counts.grpc_restarts += len(names)
        except grpc.RpcError as exc:
            self.counts.unexpected.append(f"gRPC Restart {names}: {exc.code().name} {exc.details()}")

    def set_extras(self, extras: set[str]) -> None:
        """Edit the file, then what `supervisorctl update` does over XML-RPC."""
        before = self.extras
        self.extras = extras
        self.write_config()
        added, changed, removed = self.server.supervisor.reloadConfig()[0]
        for name in [*removed, *changed]:
            self.server.supervisor.stopProcessGroup(name)
            self.server.supervisor.removeProcessGroup(name)
        for name in [*changed, *added]:
            self.server.supervisor.addProcessGroup(name)
        self.counts.updates += 1
        self.counts.programs_added += len(added)
        self.counts.programs_removed += len(removed)
        if (set(added), set(removed), changed) != (extras - before, before - extras, []):
            self.counts.unexpected.append(f"update: added {added}, changed {changed}, removed {removed}; the edit "
                                          f"added {sorted(extras - before)}, removed {sorted(before - extras)}")

    def update(self) -> None:
        if self.extras:
            self.set_extras(set())
        else:
            self.set_extras(set(self.rng.sample([f"x{i}" for i in range(EXTRAS)], self.rng.randint(2, 8))))

    # -- measuring --------------------------------------------------------------------------------

    def measure(self, report: Report) -> dict[str, float]:
        # /proc first: answering getAllProcessInfo for 1000 programs holds a few MiB for a moment
        used = footprint(self.daemon.pid)
        infos = self.server.supervisor.getAllProcessInfo()
        tasks = self.stub.GetInfo(pb.GetInfoRequest(), timeout=30).asyncio_tasks
        return report.sample({**used, "tasks": tasks, "programs": len(infos) - 1,
                              "running": sum(i["statename"] == "RUNNING" for i in infos),
                              "transitions": self.heard(), "xmlrpc_restarts": self.counts.xmlrpc_restarts,
                              "grpc_restarts": self.counts.grpc_restarts, "updates": self.counts.updates})

    def heard(self) -> int:
        try:
            with open(self.events, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    # -- the run ----------------------------------------------------------------------------------

    def run(self, report: Report) -> None:
        self.daemon.start()
        begun = time.monotonic()
        self.daemon.wait_until(self._started, timeout=300, interval=0.2)
        report.figures["start_s"] = round(time.monotonic() - begun, 1)
        report.started = time.monotonic()
        short = self.args.minutes < 15
        sample = Every(SAMPLE_EVERY[short], self.rng)
        churn = [(Every(2.0, self.rng), self.restart_xmlrpc), (Every(2.0, self.rng), self.restart_grpc),
                 (Every(10.0 if short else 30.0, self.rng), self.update)]
        end = report.started + self.args.minutes * 60
        self.measure(report)
        while time.monotonic() < end:
            if sample.ready():
                self.measure(report)
            for timer, action in churn:
                if timer.ready():
                    action()
            time.sleep(0.05)
        self.churn_end = time.monotonic() - report.started
        # the end: the extras out, so the last samples have the program set of the reference ones
        if self.extras:
            self.set_extras(set())
        wait(lambda: self._settled(), 60, "every sleeper and writer RUNNING again")
        for _ in range(5):
            time.sleep(SAMPLE_EVERY[short])  # spaced as during the run, not right after the polling above
            self.measure(report)

    def _started(self, server: xmlrpc.client.ServerProxy) -> bool:
        """All programs and the listener up, and the listener has heard something."""
        infos = server.supervisor.getAllProcessInfo()
        return len(infos) == self.mix.count + 1 and self._settled(infos) and self.heard() > 0

    def _settled(self, infos: list[dict] | None = None) -> bool:
        steady = {*self.mix.sleepers, *self.mix.writers, "soaklistener"}
        infos = infos if infos is not None else self.server.supervisor.getAllProcessInfo()
        return all(i["statename"] == "RUNNING" for i in infos if i["name"] in steady)

    def quiesce(self) -> None:
        """Stop every program but the listener, then wait until it has heard all the news."""
        groups = [*self.mix.sleepers, *self.mix.flappers, *self.mix.writers]
        self.server.system.multicall([{"methodName": "supervisor.stopProcessGroup", "params": [g, False]}
                                      for g in groups])
        wait(lambda: all(i["statename"] in ("STOPPED", "EXITED", "FATAL") for i in
                         self.server.supervisor.getAllProcessInfo() if i["name"] != "soaklistener"),
             120, "every program stopped")
        wait(lambda: self._caught_up(), 120, "the listener to hear every transition the main log has")

    def _caught_up(self) -> bool:
        heard, logged = self.sequences()
        return sum(map(len, heard.values())) >= sum(map(len, logged.values()))

    def sequences(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Per process, the transitions the listener heard and the main log's transition lines,
        both as STARTING/RUNNING/EXIT/STOPPED/FATAL (EXIT: exited, to EXITED or BACKOFF)."""
        heard: dict[str, list[str]] = defaultdict(list)
        for line in self.events.read_text().splitlines():
            name, _, old, new = line.split()
            kind = {"STARTING": "STARTING", "RUNNING": "RUNNING", "EXITED": "EXIT", "FATAL": "FATAL"}.get(new)
            if new == "BACKOFF" and old == "STARTING":
                kind = "EXIT"
            if new == "STOPPED" and old == "STOPPING":
                kind = "STOPPED"
            if kind:  # STOPPING and STOPPED out of BACKOFF have no info line
                heard[name].append(kind)
        logged: dict[str, list[str]] = defaultdict(list)
        for line in (self.daemon.workdir / "supervisord.log").read_text().splitlines():
            if match := LOG_LINE.search(line):
                kind = match.lastgroup
                assert kind is not None
                logged[match.group(kind)].append(kind)
        return heard, logged

    def compare(self, report: Report) -> None:
        heard, logged = self.sequences()
        mismatched, unlogged_running = [], 0
        for name in sorted(set(heard) | set(logged)):
            h, g = heard.get(name, []), logged.get(name, [])
            # STARTING -> RUNNING -> EXITED in one go (the exit noticed before the startsecs timer)
            # has no success line; supervisord does the same
            i = j = 0
            while i < len(h) and j < len(g):
                if h[i] == g[j]:
                    i, j = i + 1, j + 1
                elif h[i] == "RUNNING" and g[j] == "EXIT" and i + 1 < len(h) and h[i + 1] == "EXIT":
                    i, unlogged_running = i + 1, unlogged_running + 1
                else:
                    break
            if i < len(h) or j < len(g):
                mismatched.append(f"{name}: heard {h[max(0, i - 2):i + 3]} "
                                  f"where the log has {g[max(0, j - 2):j + 3]}")
        total = sum(map(len, heard.values()))
        report.figures.update(transitions_checked=total, processes_checked=len(set(heard) | set(logged)),
                              unlogged_running=unlogged_running)
        report.check("listener matches main log", not mismatched and total > 0,
                     f"{total} transitions of {len(heard)} processes heard by the listener"
                     + (f", {len(mismatched)} processes differ from the main log, e.g. {mismatched[:3]}"
                        if mismatched else ", each process's sequence the same as in the main log"))

    def close(self, keep: bool) -> None:
        """Stop the agent; its directory (main log, listener's file, child logs) is kept after a failure."""
        self.channel.close()
        if keep and self.daemon.proc is not None:
            self.daemon.proc.terminate()
            self.daemon.proc.wait(120)
            print(f"the agent's directory is kept: {self.daemon.workdir}")
        else:
            self.daemon.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.programs < 20:
        parser.error("--minutes must be positive and --programs at least 20")
    report = Report("agent", args.minutes, warmup_seconds(args.minutes))
    soak = Soak(args)
    finished = False
    try:
        soak.run(report)
        c = soak.counts
        report.figures.update(programs=soak.mix.count, flappers=len(soak.mix.flappers), writers=len(soak.mix.writers),
                              xmlrpc_restarts=c.xmlrpc_restarts, grpc_restarts=c.grpc_restarts, updates=c.updates,
                              programs_added=c.programs_added, programs_removed=c.programs_removed,
                              unexpected=c.unexpected[:20])
        base = soak.mix.count

        def same_programs(s: dict) -> bool:
            return s["programs"] == base
        rss = report.check_growth("rss_mib", rss_bound(args.minutes), "RSS MiB", soak.churn_end)
        fds = report.check_flat("fds", FD_SLACK, "open fds", same_programs, ", same programs")
        tasks = report.check_flat("tasks", TASK_SLACK, "asyncio tasks", same_programs, ", same programs")
        report.figures.update(rss_mib_after_warmup=rss[0], rss_mib_end=rss[1], fds_after_warmup=fds[0],
                              fds_end=fds[1], tasks_after_warmup=tasks[0], tasks_end=tasks[1])
        report.check("no unexpected errors", not c.unexpected,
                     f"{c.xmlrpc_restarts} XML-RPC and {c.grpc_restarts} gRPC restarts, {c.updates} updates "
                     f"(+{c.programs_added}/-{c.programs_removed} programs), {len(c.unexpected)} unexpected errors"
                     + (f": {c.unexpected[:3]}" if c.unexpected else ""))
        soak.quiesce()
        soak.compare(report)
        finished = True
    finally:
        if not finished:
            report.check("run completed", False, "the run stopped early (see the traceback)")
        soak.close(keep=not report.ok)
        report.write(args.out, [("agent RSS (MiB)", ["rss_mib"]), ("open fds", ["fds"]),
                                ("asyncio tasks", ["tasks"]), ("programs / running", ["programs", "running"]),
                                ("transitions heard by the listener", ["transitions"]),
                                ("operations", ["xmlrpc_restarts", "grpc_restarts", "updates"])])
    print(report.verdict())
    print(f"wrote {args.out / 'agent.json'} and {args.out / 'agent.png'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
