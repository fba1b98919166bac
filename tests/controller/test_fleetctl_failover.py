"""fleetctl with the fleet's controllers as a list, against real controllers, agents and etcd:
controllers are killed under it and `leader`, `status`, writes and `status --watch` keep working.

What fleetctl claims is checked against the fleet itself: the controllers' own answers over
gRPC (who leads, what the agents run), the audit log (which controller carried a write out) and
the agents' main logs (whom they heartbeat to).
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from fleetvisor.cli.controllers import Memory
from fleetvisor.cli.certs import issue, make_ca

from tests.support import free_port, wait_for

from .fleet_harness import CLUSTER, FLEETCTL, SLEEPER, one_line_error, states, wait_status
from .test_fleet_tls import OPERATOR, tls_agent, tls_flags

EXTRA = "[program:extra]\ncommand=sleep 1000\nstartsecs=0\nstopwaitsecs=2\n"


class Operator:
    """fleetctl as an operator runs it: the controller list, and a state dir of its own."""

    def __init__(self, state: Path, controllers: list, flags: tuple[str, ...] = ()) -> None:
        self.state = state
        self.listed = ",".join(c.address for c in controllers)
        self.flags = flags
        self.env = {"FLEETCTL_CONFIG": "/nonexistent", "PATH": "/usr/bin:/bin", "COLUMNS": "200",
                    "XDG_STATE_HOME": str(state)}

    def argv(self, *args: str) -> list[str]:
        return [*FLEETCTL, "--controller", self.listed, *self.flags, "--timeout", "10", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=60, env=self.env)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"fleetctl {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}"
        return result.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.ok("-o", "json", *args))

    def remembered(self) -> str | None:
        return Memory(self.state / "fleetvisor" / "fleetctl-controllers.json").recall(self.listed.split(","))


def leader_of(controllers):
    leaders = [c for c in controllers if c.is_leader()]
    return leaders[0] if len(leaders) == 1 else None


def audit_by(op: Operator, action: str) -> list[str]:
    """The controllers that carried out `action`, as the audit log in etcd says."""
    return [e["controller_id"] for e in op.json("audit")["entries"] if e["action"] == action]


def test_three_controllers_the_first_then_the_leader_killed(fleet, tmp_path):
    ctls = [fleet.controller(f"ctl-{n}") for n in (1, 2, 3)]
    leader = wait_for(lambda: leader_of(ctls), 15, "exactly one leader")
    first, second = [c for c in ctls if c is not leader]
    listed = [first, second, leader]  # the first two follow: a write goes through a redirect
    agent = fleet.agent("web-1", *listed)
    agent.daemon.wait_line(rf"INFO registered with controller {first.address}$", timeout=15)
    op = Operator(tmp_path / "state", listed)

    assert op.ok("leader").strip() == f"leader: {leader.name} at {leader.address}  (answered by follower {first.name})"
    assert op.remembered() == first.address

    first.kill()
    # reads: the second of the list answers, and is remembered for the next command
    info = op.json("leader")
    assert (info["leader_id"], info["controller_id"]) == (leader.name, second.name)
    assert op.remembered() == second.address
    wait_status(second, lambda s: states(s).get("web-1:app") == "RUNNING", what="web-1 seen by the second")
    status = op.json("status")
    assert status["controller_id"] == second.name
    assert [(n["node"]["name"], n["node"]["up"], [p["statename"] for p in n["processes"]])
            for n in status["nodes"]] == [("web-1", True, ["RUNNING"])]
    # the agent went on to the next controller of its list as well
    agent.daemon.wait_line(rf"INFO registered with controller {second.address}$", timeout=15)

    # a write: sent to the second, refused there, carried out by the leader it names
    (tmp_path / "extra.conf").write_text(EXTRA)
    pushed = op.ok("config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--nodes", "web-1",
                   "-m", "with ctl-1 dead")
    assert pushed.strip() == "extra revision 1 stored; targets: web-1"
    assert audit_by(op, "config.push") == [leader.name]
    wait_status(second, lambda s: states(s).get("web-1:extra") == "RUNNING", timeout=20,
                what="the push to be applied on web-1")

    leader.kill()  # no resignation: its lease has to expire, then the second is the only one left to lead
    wait_for(lambda: op.json("leader")["leader_id"] == second.name, 20,
             f"fleetctl to report {second.name} leading")
    assert second.is_leader()
    assert op.ok("leader").strip() == f"leader: {second.name} at {second.address}  (answered by the leader)"

    stopped = op.run("stop", "web-1:app")
    assert stopped.returncode == 0, stopped.stderr
    wait_status(second, lambda s: states(s).get("web-1:app") == "STOPPED", what="web-1:app stopped")
    assert audit_by(op, "control.stop") == [second.name]
    status = op.run("status")
    assert status.returncode == 3 and "STOPPED" in status.stdout, status.stdout + status.stderr
    # the agent stuck with the controller that answered: the leader's death did not move it
    registrations = [m.rsplit(" ", 1)[-1] for m in agent.daemon.messages() if "registered with controller" in m]
    assert registrations == [first.address, second.address], registrations

    second.kill()
    for args in (("leader",), ("status",), ("config", "push", str(tmp_path / "extra.conf"), "--name", "extra",
                                           "--nodes", "web-1", "-m", "nobody")):
        nobody = op.run(*args)
        line = one_line_error(nobody)
        assert nobody.returncode == 4, (args, nobody.returncode, line)
        assert line.startswith("error: no controller answered (3 tried): "), line
        for ctl in listed:  # in the order tried: the one that answered last first
            assert f"cannot reach controller {ctl.address}: Connection refused" in line, line
        assert line.index(second.address) < line.index(first.address) < line.index(leader.address), line


class Watch:
    """`status --watch -o json` (or another stream: `args`) on a pipe, read by a thread; killed at
    the end whatever happens."""

    def __init__(self, op: Operator, *args: str) -> None:
        self.proc = subprocess.Popen(op.argv(*(args or ("-o", "json", "status", "--watch"))), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=op.env)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line)

    def statuses(self) -> list[dict]:
        with self._lock:
            return [json.loads(line) for line in self.lines]

    def wait(self, check, what: str, timeout: float = 20, parse=json.loads) -> None:
        def probe():
            assert self.proc.poll() is None, f"the watch ended ({self.proc.returncode}): {self.proc.stderr.read()}"
            with self._lock:
                return any(check(parse(line)) for line in self.lines)
        wait_for(probe, timeout, what)

    def stop(self) -> str:
        self.proc.terminate()
        _, stderr = self.proc.communicate(timeout=10)
        return stderr


def test_status_watch_goes_on_at_another_controller_of_the_list(fleet, tmp_path):
    a, b = fleet.controller("ctl-a"), fleet.controller("ctl-b")
    fleet.agent("web-1", a, b)
    for ctl in (a, b):
        wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING", what=f"web-1 seen by {ctl.name}")
    watch = Watch(Operator(tmp_path / "state", [a, b]))
    try:
        watch.wait(lambda s: s["controller_id"] == a.name, "a status from the first of the list")
        a.kill()
        watch.wait(lambda s: s["controller_id"] == b.name and s["nodes"][0]["processes"][0]["statename"] == "RUNNING",
                   "a status from the second after the first died")
    finally:
        stderr = watch.stop()
    assert [s["controller_id"] for s in watch.statuses()][-1] == b.name
    notes = [line for line in stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and a.address in notes[0] and notes[0].endswith("; reconnecting (Ctrl-C to stop)"), stderr


COUNTER = """
[program:counter]
command=sh -c 'i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.02; done'
startsecs=0
stopwaitsecs=2
"""


def test_tail_follow_goes_on_at_another_controller_without_a_gap_or_a_repeat(fleet, tmp_path):
    a, b = fleet.controller("ctl-a"), fleet.controller("ctl-b")
    fleet.agent("web-1", a, b, programs=COUNTER)
    for ctl in (a, b):
        wait_status(ctl, lambda s: states(s).get("web-1:counter") == "RUNNING", what=f"web-1 seen by {ctl.name}")
    tail = Watch(Operator(tmp_path / "state", [a, b]), "tail", "-f", "web-1:counter")
    try:
        tail.wait(lambda line: line == "line-20\n", "20 lines through the first controller", parse=str)
        a.kill()
        seen = len(tail.lines)
        wait_for(lambda: tail.proc.poll() is None and len(tail.lines) > seen + 50, 20,
                 "50 more lines through the second controller")
    finally:
        stderr = tail.stop()
    numbers = [int(line.removeprefix("line-")) for line in tail.lines if line.endswith("\n")]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "a gap or a repeat across the failover"
    notes = [line for line in stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and a.address in notes[0] and notes[0].endswith("; reconnecting (Ctrl-C to stop)"), stderr


def test_tls_options_apply_to_every_controller_of_the_list(fleet, tmp_path):
    pki = tmp_path / "pki"
    make_ca(pki)
    for name in ("ctl-1", "ctl-2"):
        issue(pki, name, ["127.0.0.1"], role="controller", cluster=CLUSTER)
    issue(pki, "web-1", ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(pki, OPERATOR, [], role="operator", groups=["admins"], cluster=CLUSTER)
    ctls = [fleet.controller(name, extra=tls_flags(pki, name)) for name in ("ctl-1", "ctl-2")]
    nobody = f"127.0.0.1:{free_port()}"
    agent = tls_agent(fleet.base, "web-1", ctls[0].address, pki, programs=SLEEPER.format(name="app"))
    fleet.agents.append(agent)
    op = Operator(tmp_path / "state", ctls, tls_flags(pki, OPERATOR))
    op.listed = ",".join([nobody, *(c.address for c in ctls)])  # a dead one first, then both over mutual TLS
    leader = wait_for(lambda: (info := op.json("leader"))["leader_id"] and info, 15, "a leader, over TLS")
    follower = next(c for c in ctls if c.name != leader["leader_id"])
    op = Operator(tmp_path / "fresh", ctls, tls_flags(pki, OPERATOR))  # nothing remembered: the list's order
    op.listed = ",".join([nobody, follower.address, leader["leader_address"]])

    assert op.json("leader")["controller_id"] == follower.name  # the dead one passed over, the follower over TLS
    wait_for(lambda: [n["node"]["name"] for n in op.json("status")["nodes"]] == ["web-1"], 15, "web-1 over TLS")
    (tmp_path / "extra.conf").write_text(EXTRA)
    pushed = op.ok("config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--nodes", "web-1", "-m", "tls")
    assert pushed.strip() == "extra revision 1 stored; targets: web-1"  # redirected to the leader, over TLS too
    assert audit_by(op, "config.push") == [leader["leader_id"]]

    plain = Operator(tmp_path / "plain", ctls)  # no certificates: every one refuses, each named
    refused = plain.run("leader")
    line = one_line_error(refused)
    assert refused.returncode == 1 and line.startswith("error: no controller answered (2 tried): "), line
    assert all(f"controller {c.address}" in line for c in ctls) and "--tls-cert" in line, line
