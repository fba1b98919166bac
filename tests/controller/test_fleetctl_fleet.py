"""fleetctl's fleet mode end to end: the real `fleetctl` process against a real controller,
real agents and a real etcd.

The fleet is set up and waited for over gRPC (as the other controller tests do); what is
judged is only what fleetctl prints and how it exits, as an operator or a script sees it.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support import wait_for

from .fleet_harness import FLEETCTL, SLEEPER, fleetctl, fleetctl_json, one_line_error, states, wait_status

ENV = {"FLEETCTL_CONFIG": "/nonexistent", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
# fleetctl runs with no USER/LOGNAME in its environment, so getpass falls back to the passwd entry
ME = f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()} (unverified)"

# `ticker` prints a marker naming its node at start and another on every SIGUSR1 (sent with
# `fleetctl signal`), so tail and tail -f have something known to wait for. stopasgroup takes
# its `sleep` child down with it.
TICKER = """
[program:ticker]
command=sh -c 'trap "echo later-{node}" USR1; echo ready-{node}; while :; do sleep 1000 & c=$!; wait $c; kill $c 2>/dev/null; done'
startsecs=0
stopwaitsecs=2
stopasgroup=true
"""

EXTRA_V1 = "[program:extra]\ncommand=sleep 1000\nstartsecs=0\nstopwaitsecs=2\n"
EXTRA_V2 = "[program:extra]\ncommand=sleep 1001\nstartsecs=0\nstopwaitsecs=2\n"
BROKEN = "[program:broken]\ncommand=sleep 1000\nnumprocs=abc\n"


def programs(node: str) -> str:
    return SLEEPER.format(name="app") + SLEEPER.format(name="worker") + TICKER.format(node=node)


# -- helpers -----------------------------------------------------------------------------------

def ok(ctl, *args: str) -> str:
    result = fleetctl(ctl.address, *args)
    assert result.returncode == 0, f"fleetctl {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def node_block(output: str, node: str) -> list[str]:
    """The header line of `node` in a status table and the process lines under it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(node + " "))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        block.append(line)
    return block


def process_rows(block: list[str]) -> dict[str, str]:
    """{"app": "RUNNING", ...} from a node's process lines (its error line, if any, has no state)."""
    rows = {}
    for line in block[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isupper():
            rows[parts[0]] = parts[1]
    return rows


def table_rows(output: str) -> dict[str, list[str]]:
    """A fleetctl table keyed by its first column (header row dropped); cells split on 2+ spaces."""
    rows = {}
    for line in output.splitlines()[1:]:
        if line.strip() and not line.startswith(" "):
            cells = re.split(r"\s{2,}", line.strip())
            rows[cells[0]] = cells
    return rows


def control_rows(output: str) -> dict[str, tuple[str, str, str]]:
    """The per-node result table of start/stop/restart/signal: {node: (RESULT, PROCESS, OUTCOME)}."""
    rows = {}
    for line in output.splitlines()[1:]:
        if line.strip() and not line.startswith(" "):
            node, result, _seconds, process, outcome = re.split(r"\s{2,}", line.strip(), maxsplit=4)
            rows[node] = (result, process, outcome)
    return rows


class Streaming:
    """A long-running fleetctl (tail -f, status --watch) on a pipe, read by a thread so a test
    can wait for a line with a deadline; killed at the end of the test whatever happens."""

    def __init__(self, controller: str, *args: str) -> None:
        self.proc = subprocess.Popen([*FLEETCTL, "--controller", controller, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=ENV)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def wait(self, check, timeout: float, what: str, start: int = 0) -> list[str]:
        """Wait until `check(lines[start:])` holds; returns those lines."""
        def probe():
            if self.proc.poll() is not None and not check(self.output()[start:]):
                raise AssertionError(f"fleetctl exited ({self.proc.returncode}) before {what}:\n"
                                     + "\n".join(self.output()) + self.proc.stderr.read())
            return check(self.output()[start:])
        try:
            wait_for(probe, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; fleetctl printed:\n" + "\n".join(self.output())) from None
        return self.output()[start:]

    def interrupt(self, timeout: float = 10) -> tuple[int, str]:
        """Ctrl-C, as an operator stops it; returns (exit status, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def streaming():
    started: list[Streaming] = []

    def start(controller, *args: str) -> Streaming:
        s = Streaming(controller.address, *args)
        started.append(s)
        return s
    yield start
    for s in started:
        s.kill()


@pytest.fixture
def kill_agent():
    """SIGKILL an agent (heartbeats just stop, no goodbye). Its children outlive it, being their
    own processes; they are killed at the end of the test."""
    orphans: list[int] = []

    def kill(agent) -> None:
        pid = agent.daemon.proc.pid
        for task in Path(f"/proc/{pid}/task").iterdir():
            orphans.extend(int(c) for c in (task / "children").read_text().split())
        agent.kill()
    yield kill
    for pid in orphans:
        try:
            os.killpg(pid, signal.SIGKILL)  # each child leads its own process group
        except ProcessLookupError:
            pass


@pytest.fixture
def three_nodes(fleet):
    ctl = fleet.controller(node_ttl=2)
    for name, role in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        fleet.agent(name, ctl, labels=f"role={role},dc=east", programs=programs(name))
    wait_status(ctl, lambda s: len(states(s)) == 9 and all(v == "RUNNING" for v in states(s).values())
                and all(n.node.reachable for n in s.nodes), what="nine running processes on three live nodes")
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    return ctl


def agent_named(fleet, node: str):
    return next(a for a in fleet.agents if a.node == node)


def config_in_sync(ctl, expected: dict[str, str | None]) -> bool:
    """Whether `config status` says every node named is in sync (at that revision, unless None)."""
    nodes = {n["node"]: n for n in fleetctl_json(ctl.address, "config", "status")["nodes"]}
    return all(nodes[name]["in_sync"] and rev in (None, nodes[name]["applied_revision"])
               for name, rev in expected.items())


# -- status ------------------------------------------------------------------------------------

def test_status_table_filters_and_exit_codes(three_nodes):
    ctl = three_nodes
    result = fleetctl(ctl.address, "status")
    assert result.returncode == 0 and not result.stderr, result.stderr
    for node in ("web-1", "web-2", "db-1"):
        block = node_block(result.stdout, node)
        address = ctl.node(node).address
        assert re.match(rf"{node}\s+{re.escape(address)}\s+up\s+reachable\s+live\s+rev -$", block[0]), block[0]
        assert process_rows(block) == {"app": "RUNNING", "ticker": "RUNNING", "worker": "RUNNING"}
        assert all(re.search(r"pid \d+, uptime \d+:\d\d:\d\d", line) for line in block[1:])
    assert result.stdout.splitlines()[-1] == \
        "nodes: 3 up, 0 down, 0 unreachable   processes: 9 (9 RUNNING)"

    one = fleetctl(ctl.address, "status", "web-1:app")
    assert one.returncode == 0
    assert [line.split()[0] for line in one.stdout.splitlines()] == ["web-1", "app", "nodes:"]
    assert one.stdout.splitlines()[-1] == "nodes: 1 up, 0 down, 0 unreachable   processes: 1 (1 RUNNING)"

    for pattern, message in (("nosuch", "no such node: nosuch"), ("nosuch:app", "no such node: nosuch"),
                             ("web-1:nosuch", "no such process: web-1:nosuch")):
        unknown = fleetctl(ctl.address, "status", pattern)
        assert unknown.returncode == 4, (pattern, unknown.stdout, unknown.stderr)
        assert message in one_line_error(unknown) and not unknown.stdout

    as_json = fleetctl_json(ctl.address, "status")
    assert as_json["controller_id"] == "ctl-1"
    assert {f"{n['node']['name']}:{p['namespec']}": p["statename"] for n in as_json["nodes"]
            for p in n["processes"]} == {f"{n}:{p}": "RUNNING" for n in ("web-1", "web-2", "db-1")
                                         for p in ("app", "ticker", "worker")}
    assert all(n["node"]["up"] and n["node"]["reachable"] for n in as_json["nodes"])
    trailing = json.loads(ok(ctl, "status", "-o", "json"))  # -o after the command, as kubectl users type it
    assert sorted(n["node"]["name"] for n in trailing["nodes"]) == ["db-1", "web-1", "web-2"]

    web = fleetctl(ctl.address, "status", "--label", "role=web")
    assert web.returncode == 0
    assert [line.split()[0] for line in web.stdout.splitlines() if not line.startswith(" ")] == \
        ["web-1", "web-2", "nodes:"]
    both = fleetctl(ctl.address, "status", "--label", "role=web", "--label", "dc=east", "*:app")
    assert both.returncode == 0 and both.stdout.splitlines()[-1].endswith("processes: 2 (2 RUNNING)")
    nobody = fleetctl(ctl.address, "status", "--label", "role=nosuch")
    assert nobody.returncode == 4 and "no node has labels role=nosuch" in one_line_error(nobody)

    ok(ctl, "stop", "web-1:worker")
    wait_status(ctl, lambda s: states(s)["web-1:worker"] == "STOPPED")
    stopped = fleetctl(ctl.address, "status")
    assert stopped.returncode == 3, stopped.stdout
    assert process_rows(node_block(stopped.stdout, "web-1"))["worker"] == "STOPPED"
    assert stopped.stdout.splitlines()[-1].endswith("processes: 9 (8 RUNNING, 1 STOPPED)")
    assert fleetctl(ctl.address, "status", "web-1:worker").returncode == 3
    assert fleetctl(ctl.address, "status", "web-1:app").returncode == 0  # the filter leaves the stopped one out


def test_killed_node_is_flagged_not_hidden_and_fanout_exits_1(fleet, three_nodes, kill_agent):
    ctl = three_nodes
    kill_agent(agent_named(fleet, "web-2"))
    wait_status(ctl, lambda s: not next(n for n in s.nodes if n.node.name == "web-2").node.reachable,
                what="web-2 unreachable")

    # the fan-out goes on where it can and says where it could not, exit 1
    restart = fleetctl(ctl.address, "restart", "*:app")
    assert restart.returncode == 1, restart.stdout + restart.stderr
    rows = control_rows(restart.stdout)
    assert rows["web-1"] == ("ok", "app", "restarted") and rows["db-1"] == ("ok", "app", "restarted")
    assert rows["web-2"][0] == "failed" and "unreachable" in rows["web-2"][2]

    wait_status(ctl, lambda s: not next(n for n in s.nodes if n.node.name == "web-2").node.up, timeout=10,
                what="web-2 down once its lease expired")
    status = fleetctl(ctl.address, "status")
    assert status.returncode == 3, status.stdout  # a node whose state is only a memory is not "all running"
    header = node_block(status.stdout, "web-2")[0]
    assert re.search(r"DOWN \(last heartbeat \d+s ago\)\s+UNREACHABLE\s+stale \d+s", header), header
    assert process_rows(node_block(status.stdout, "web-2"))  # its last known processes are still listed
    # counted as its header shows it: down and unreachable
    assert status.stdout.splitlines()[-1].startswith("nodes: 2 up, 1 down, 1 unreachable   processes: 9")
    assert fleetctl(ctl.address, "status", "web-1:app").returncode == 0  # the rest of the fleet is fine

    nodes = table_rows(ok(ctl, "nodes"))
    assert nodes["web-2"][2] == "DOWN" and nodes["web-1"][2] == "up"
    stop = fleetctl(ctl.address, "stop", "*:worker", "--label", "role=web")
    assert stop.returncode == 1 and control_rows(stop.stdout)["web-1"] == ("ok", "worker", "stopped")
    assert set(control_rows(stop.stdout)) == {"web-1", "web-2"}


# -- nodes ---------------------------------------------------------------------------------------

def test_nodes_lists_labels_versions_and_revisions(three_nodes, tmp_path):
    ctl = three_nodes
    version = ctl.node("web-1").agent_version
    assert version
    (tmp_path / "extra.conf").write_text(EXTRA_V1)
    ok(ctl, "config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--label", "role=web", "-m", "x")
    wait_for(lambda: config_in_sync(ctl, {"web-1": "extra@1", "web-2": "extra@1", "db-1": None}), 20,
             "web-1 and web-2 to apply extra@1")

    output = ok(ctl, "nodes")
    assert output.splitlines()[0].split() == ["NAME", "ADDRESS", "UP", "LABELS", "AGENT", "APPLIED", "DESIRED",
                                              "HEARTBEAT"]
    rows = table_rows(output)
    assert sorted(rows) == ["db-1", "web-1", "web-2"]
    for name, role, rev in (("web-1", "web", "extra@1"), ("web-2", "web", "extra@1"), ("db-1", "db", "-")):
        assert rows[name][:7] == [name, ctl.node(name).address, "up", f"dc=east,role={role}", version, rev, rev]
        assert re.fullmatch(r"\d+s ago", rows[name][7])

    assert sorted(table_rows(ok(ctl, "nodes", "--label", "role=db"))) == ["db-1"]
    listed = {n["name"]: n for n in fleetctl_json(ctl.address, "nodes")["nodes"]}
    assert {n["name"] for n in json.loads(ok(ctl, "nodes", "--output", "json"))["nodes"]} == set(listed)
    assert listed["web-1"]["labels"] == {"role": "web", "dc": "east"}
    assert listed["web-1"]["applied_revision"] == listed["web-1"]["desired_revision"] == "extra@1"
    assert listed["db-1"]["applied_revision"] == listed["db-1"]["desired_revision"] == ""


# -- config --------------------------------------------------------------------------------------

def test_config_push_history_show_diff_rollback_and_status(three_nodes, tmp_path):
    ctl = three_nodes
    broken = tmp_path / "extra-broken.conf"
    broken.write_text(BROKEN)
    refused = fleetctl(ctl.address, "config", "push", str(broken), "--name", "extra", "--label", "role=web",
                       "-m", "broken")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = one_line_error(refused)
    # the operator's file and the line in it, not the name the controller parsed it under
    assert "option 'numprocs'" in line and f"(file: '{broken}', line: 3)" in line, line
    assert fleetctl_json(ctl.address, "config", "list") == {"configs": []}

    v1, v2 = tmp_path / "extra.conf", tmp_path / "extra-v2.conf"
    v1.write_text(EXTRA_V1)
    v2.write_text(EXTRA_V2)
    unknown = fleetctl(ctl.address, "config", "push", str(v1), "--name", "extra", "--nodes", "web-1,nosuch",
                       "-m", "typo")
    assert unknown.returncode == 2
    assert "unknown node(s): nosuch (known: db-1, web-1, web-2)" in one_line_error(unknown)
    missing = fleetctl(ctl.address, "config", "push", str(tmp_path / "nope.conf"), "--name", "extra",
                       "--label", "role=web", "-m", "x")
    assert missing.returncode == 2 and "cannot read" in one_line_error(missing)
    assert fleetctl_json(ctl.address, "config", "list") == {"configs": []}

    assert ok(ctl, "config", "push", str(v1), "--name", "extra", "--label", "role=web", "-m", "first").strip() \
        == "extra revision 1 stored; targets: web-1, web-2"
    assert ok(ctl, "config", "push", str(v2), "--name", "extra", "-m", "second").strip() \
        == "extra revision 2 stored; targets: web-1, web-2"  # the assignment is kept
    assert ok(ctl, "config", "push", str(v2), "--name", "extra", "-m", "again").strip() \
        == "extra unchanged (revision 2 is current); targets: web-1, web-2"

    listing = table_rows(ok(ctl, "config", "list"))
    assert listing["extra"][:4] == ["extra", "2", "labels role=web", "web-1, web-2"]

    history = ok(ctl, "config", "history", "extra").splitlines()
    assert history[0].split() == ["REV", "TIME", "AUTHOR", "MESSAGE", "NOTE"]
    rows = [re.split(r"\s{2,}", h.strip()) for h in history[1:]]
    assert [(r[0], r[2:]) for r in rows] == [("1", [ME, "first"]), ("2", [ME, "second", "current"])]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r[1]) for r in rows)

    shown = fleetctl(ctl.address, "config", "show", "extra")
    assert shown.returncode == 0 and shown.stdout == EXTRA_V2  # exactly the text, nothing else on stdout
    assert shown.stderr.startswith("extra revision 2 ") and f"by {ME}" in shown.stderr
    first = fleetctl(ctl.address, "config", "show", "extra", "--rev", "1")
    assert first.returncode == 0 and first.stdout == EXTRA_V1 and first.stderr.startswith("extra revision 1 ")
    no_rev = fleetctl(ctl.address, "config", "show", "extra", "--rev", "9")
    assert no_rev.returncode == 4 and "config extra has no revision 9" in one_line_error(no_rev)
    no_config = fleetctl(ctl.address, "config", "history", "nosuch")
    assert no_config.returncode == 4 and "no such config: nosuch" in one_line_error(no_config)

    diff = ok(ctl, "config", "diff", "extra", "1", "2").splitlines()
    assert diff[:2] == ["--- extra@1", "+++ extra@2"]
    assert "-command=sleep 1000" in diff and "+command=sleep 1001" in diff
    assert " [program:extra]" in diff

    assert ok(ctl, "config", "rollback", "extra", "--to", "1").strip() == \
        "extra revision 3 stored (rollback to revision 1); targets: web-1, web-2"
    assert fleetctl(ctl.address, "config", "show", "extra").stdout == EXTRA_V1
    assert "rollback to 1" in ok(ctl, "config", "history", "extra").splitlines()[3]

    wait_for(lambda: config_in_sync(ctl, {"web-1": "extra@3", "web-2": "extra@3", "db-1": None}), 20,
             "web-1 and web-2 to apply extra@3")
    rows = table_rows(ok(ctl, "config", "status"))
    assert rows["web-1"][:5] == ["web-1", "yes", "extra@3", "extra@3", "yes"]
    assert rows["web-2"][:5] == ["web-2", "yes", "extra@3", "extra@3", "yes"]
    assert rows["db-1"][:5] == ["db-1", "yes", "-", "-", "yes"]
    wait_status(ctl, lambda s: states(s).get("web-1:extra") == "RUNNING" and states(s).get("web-2:extra") == "RUNNING"
                and "db-1:extra" not in states(s), what="extra running where it was sent")


# -- process control -----------------------------------------------------------------------------

def test_start_stop_restart_signal_fan_out(three_nodes):
    ctl = three_nodes
    stop = fleetctl(ctl.address, "stop", "*:worker")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.splitlines()[0].split() == ["NODE", "RESULT", "TIME", "PROCESS", "OUTCOME"]
    assert control_rows(stop.stdout) == {n: ("ok", "worker", "stopped") for n in ("web-1", "web-2", "db-1")}
    wait_status(ctl, lambda s: all(v == "STOPPED" for k, v in states(s).items() if k.endswith(":worker")))

    start = fleetctl(ctl.address, "start", "*:worker", "--label", "role=web")
    assert start.returncode == 0
    assert control_rows(start.stdout) == {n: ("ok", "worker", "started") for n in ("web-1", "web-2")}
    wait_status(ctl, lambda s: (states(s)["web-1:worker"], states(s)["web-2:worker"], states(s)["db-1:worker"])
                == ("RUNNING", "RUNNING", "STOPPED"))

    before = {f"{n.node.name}:{p.namespec}": p.pid for n in ctl.status().nodes for p in n.processes}
    restart = fleetctl(ctl.address, "restart", "web-*:app")
    assert restart.returncode == 0
    assert control_rows(restart.stdout) == {n: ("ok", "app", "restarted") for n in ("web-1", "web-2")}
    after = {f"{n.node.name}:{p.namespec}": p.pid for n in ctl.status().nodes for p in n.processes}
    assert after["db-1:app"] == before["db-1:app"]

    sig = fleetctl(ctl.address, "signal", "USR1", "*:ticker", "--label", "role=db")
    assert sig.returncode == 0 and control_rows(sig.stdout) == {"db-1": ("ok", "ticker", "signalled")}
    as_json = fleetctl_json(ctl.address, "stop", "db-1:app")
    assert [(n["node"], n["ok"], [r["name"] for r in n["results"]]) for n in as_json["nodes"]] == \
        [("db-1", True, ["app"])]

    nothing = fleetctl(ctl.address, "stop", "nosuch:app")
    assert nothing.returncode == 4 and "no such node: nosuch" in one_line_error(nothing)
    bare = fleetctl(ctl.address, "stop")
    assert bare.returncode == 2 and "name required" in one_line_error(bare)


# -- logs ----------------------------------------------------------------------------------------

def test_tail_follow_ends_in_one_line_when_the_node_dies(fleet, three_nodes, streaming, kill_agent):
    ctl = three_nodes
    follow = streaming(ctl, "tail", "-f", "db-1:ticker")
    follow.wait(lambda lines: "ready-db-1" in lines, 10, "tail -f to start")
    kill_agent(agent_named(fleet, "db-1"))
    wait_for(lambda: follow.proc.poll() is not None, 15, "tail -f to end after its node died")
    stderr = follow.proc.stderr.read()
    assert follow.proc.returncode == 1 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and "db-1: unreachable" in stderr, stderr


def test_tail_and_tail_follow(three_nodes, streaming):
    ctl = three_nodes
    tail = fleetctl(ctl.address, "tail", "web-1:ticker")
    assert tail.returncode == 0 and tail.stdout.splitlines() == ["ready-web-1"], tail.stdout + tail.stderr

    follow = streaming(ctl, "tail", "-f", "web-2:ticker")
    follow.wait(lambda lines: "ready-web-2" in lines, 10, "tail -f to print what is already there")
    ok(ctl, "signal", "USR1", "web-2:ticker")
    follow.wait(lambda lines: "later-web-2" in lines, 10, "tail -f to print a line written after it started")
    ok(ctl, "signal", "USR1", "web-2:ticker")
    lines = follow.wait(lambda lines: lines.count("later-web-2") == 2, 10, "a second line")
    assert lines == ["ready-web-2", "later-web-2", "later-web-2"]
    assert follow.proc.poll() is None  # still following
    code, stderr = follow.interrupt()
    assert code == 130 and not stderr, (code, stderr)  # Ctrl-C: the shell's 128+SIGINT, no traceback

    for target, code, message in (("nosuch:ticker", 4, "no such node: nosuch"),
                                  ("web-1", 2, "give NODE:NAME")):
        bad = fleetctl(ctl.address, "tail", target)
        assert bad.returncode == code and message in one_line_error(bad), bad.stderr


# -- audit ---------------------------------------------------------------------------------------

def test_audit_lists_pushes_and_fan_outs(three_nodes, tmp_path):
    ctl = three_nodes
    (tmp_path / "extra.conf").write_text(EXTRA_V1)
    ok(ctl, "config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--nodes", "web-1", "-m", "why")
    between = datetime.datetime.now(datetime.timezone.utc).isoformat()
    ok(ctl, "stop", "*:worker", "--label", "role=web")
    ok(ctl, "signal", "HUP", "db-1:app")
    assert fleetctl(ctl.address, "stop", "nosuch:worker").returncode == 4

    output = ok(ctl, "audit")
    assert output.splitlines()[0].split() == ["TIME", "WHO", "ACTION", "DETAIL", "RESULT"]
    actions = re.findall(rf"^\S+ \S+\s+{re.escape(ME)}\s+(\S+)", output, re.MULTILINE)
    assert actions == ["config.push", "control.stop", "control.signal", "control.stop"]
    assert "ok extra revision 1 for web-1" in output and "ok 2 of 2 nodes ok" in output
    assert "failed no such node: nosuch" in output

    # `fleetctl audit | cat` with 80 columns: a pipe gets each entry on one line, every value whole
    piped = subprocess.run([*FLEETCTL, "--controller", ctl.address, "audit"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30, env={**ENV, "COLUMNS": "80"})
    assert piped.returncode == 0, piped.stderr
    rows = piped.stdout.splitlines()
    assert len(rows) == 5 and rows[0].split() == ["TIME", "WHO", "ACTION", "DETAIL", "RESULT"]
    assert max(len(row) for row in rows) > 80  # wider than the pipe's columns, and still not folded
    for row, action in zip(rows[1:], ["config.push", "control.stop", "control.signal", "control.stop"]):
        assert re.match(rf"\S+ \S+  {re.escape(ME)}  {action} ", row), row
    assert "message=why name=extra nodes=web-1" in rows[1] and rows[1].endswith("ok extra revision 1 for web-1")
    assert rows[4].endswith("failed no such node: nosuch")

    entries = fleetctl_json(ctl.address, "audit", "--since", "1h")["entries"]
    assert [(e["action"], e["ok"], e["who"], e["controller_id"]) for e in entries] == [
        ("config.push", True, ME, "ctl-1"), ("control.stop", True, ME, "ctl-1"),
        ("control.signal", True, ME, "ctl-1"), ("control.stop", False, ME, "ctl-1")]
    pushed = json.loads(entries[0]["detail"])
    assert {k: pushed[k] for k in ("labels", "message", "name", "nodes")} == \
        {"labels": {}, "message": "why", "name": "extra", "nodes": ["web-1"]}
    assert json.loads(entries[1]["detail"])["labels"] == {"role": "web"}
    assert json.loads(entries[2]["detail"])["signal"] == "HUP"

    later = fleetctl_json(ctl.address, "audit", "--since", between)["entries"]
    assert [e["action"] for e in later] == ["control.stop", "control.signal", "control.stop"]
    assert [e["action"] for e in fleetctl_json(ctl.address, "audit", "--limit", "1")["entries"]] == ["control.stop"]
    assert [e["action"] for e in json.loads(ok(ctl, "audit", "--limit", "1", "-o", "json"))["entries"]] == \
        ["control.stop"]
    bad = fleetctl(ctl.address, "audit", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in one_line_error(bad)


# -- leader --------------------------------------------------------------------------------------

def test_leader_and_writes_sent_to_a_follower_reach_the_leader(fleet, tmp_path):
    a = fleet.controller("ctl-a")
    b = fleet.controller("ctl-b")
    fleet.agent("web-1", a, b, programs=programs("web-1"))
    leader = wait_for(lambda: next((c for c in (a, b) if c.is_leader()), None), 10, "a leader")
    follower = b if leader is a else a
    for ctl in (a, b):
        wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING", what=f"web-1 seen by {ctl.name}")

    assert ok(leader, "leader").strip() == f"leader: {leader.name} at {leader.address}  (answered by the leader)"
    assert ok(follower, "leader").strip() == \
        f"leader: {leader.name} at {leader.address}  (answered by follower {follower.name})"
    info = fleetctl_json(follower.address, "leader")
    assert info.pop("asyncio_tasks") > 0  # a diagnostic of the answering controller (soak tests)
    # the two share the one agent's state stream: one of them follows it
    shares = {c["id"]: (c["address"], c.get("nodes", 0)) for c in info.pop("controllers")}
    assert shares in ({a.name: (a.address, 1), b.name: (b.address, 0)},
                      {a.name: (a.address, 0), b.name: (b.address, 1)})
    assert info.pop("followed_nodes", 0) == shares[follower.name][1]
    assert info == {"leader_id": leader.name, "leader_address": leader.address, "controller_id": follower.name,
                    "is_leader": False}

    (tmp_path / "extra.conf").write_text(EXTRA_V1)
    pushed = ok(follower, "config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--nodes", "web-1",
                "-m", "sent to the follower")
    assert pushed.strip() == "extra revision 1 stored; targets: web-1"
    stopped = fleetctl(follower.address, "stop", "web-1:worker")
    assert stopped.returncode == 0 and control_rows(stopped.stdout) == {"web-1": ("ok", "worker", "stopped")}

    entries = fleetctl_json(follower.address, "audit")["entries"]
    assert [(e["action"], e["controller_id"], e["who"]) for e in entries] == \
        [("config.push", leader.name, ME), ("control.stop", leader.name, ME)]
    wait_status(follower, lambda s: states(s).get("web-1:extra") == "RUNNING", timeout=20,
                what="the push made through the follower to be applied")

    leader.stop()
    wait_for(follower.is_leader, 15, f"{follower.name} to lead after {leader.name} stopped")
    assert ok(follower, "leader").strip() == \
        f"leader: {follower.name} at {follower.address}  (answered by the leader)"
    gone = fleetctl(leader.address, "status")
    assert gone.returncode == 4 and f"cannot reach controller {leader.address}" in one_line_error(gone)


# -- status --watch --------------------------------------------------------------------------------

def frames(lines: list[str]) -> list[list[str]]:
    """`status --watch` on a pipe prints each state in full, followed by an empty line."""
    result, current = [], []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            result.append(current)
            current = []
    return result


def test_status_watch_on_a_pipe_prints_every_change(fleet, streaming):
    ctl = fleet.controller()
    fleet.agent("web-1", ctl, programs=programs("web-1"))
    wait_status(ctl, lambda s: len(states(s)) == 3 and all(v == "RUNNING" for v in states(s).values()))
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")

    watch = streaming(ctl, "status", "--watch")
    first = watch.wait(lambda lines: frames(lines), 10, "a first full status")
    frame = frames(first)[0]
    assert frame[0].startswith("web-1  ") and "up  reachable  live" in frame[0]
    assert process_rows(frame) == {"app": "RUNNING", "ticker": "RUNNING", "worker": "RUNNING"}
    assert frame[-1] == "nodes: 1 up, 0 down, 0 unreachable   processes: 3 (3 RUNNING)"
    assert not any("\x1b" in line for line in first)  # a pipe gets no colours or cursor moves

    mark = len(watch.output())
    ok(ctl, "stop", "web-1:app")
    changed = watch.wait(lambda lines: any(process_rows(f).get("app") == "STOPPED" for f in frames(lines)),
                         10, "a status showing app STOPPED", start=mark)
    assert frames(changed)[-1][-1] == "nodes: 1 up, 0 down, 0 unreachable   processes: 3 (2 RUNNING, 1 STOPPED)"
    assert watch.proc.poll() is None
    code, stderr = watch.interrupt()
    assert code == 0 and "Traceback" not in stderr, (code, stderr)

    as_json = streaming(ctl, "-o", "json", "status", "--watch", "web-1:app")
    as_json.wait(lambda lines: lines, 10, "a first JSON status")
    mark = len(as_json.output())
    ok(ctl, "start", "web-1:app")
    later = as_json.wait(lambda lines: any(json.loads(line)["nodes"][0]["processes"][0]["statename"] == "RUNNING"
                                           for line in lines), 10, "a JSON status showing app RUNNING", start=mark)
    assert all(json.loads(line)["nodes"][0]["node"]["name"] == "web-1" for line in later)
    as_json.kill()


def test_status_watch_rides_out_a_controller_restart(fleet, streaming):
    ctl = fleet.controller()
    fleet.agent("web-1", ctl, programs=programs("web-1"))
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")

    def live_app(line: str, since: float = 0.0) -> bool:
        status = json.loads(line)
        node = status["nodes"][0]
        return status["now"] > since and node["node"]["reachable"] and node["processes"][0]["statename"] == "RUNNING"

    watch = streaming(ctl, "status", "--watch", "web-1:app", "-o", "json")
    watch.wait(lambda lines: any(live_app(line) for line in lines), 10, "a first live JSON status")
    ctl.stop()  # the stream breaks with the process: the watch must not end
    restarted = time.time()
    ctl.start()
    watch.wait(lambda lines: any(live_app(line, since=restarted) for line in lines), 30,
               "a live status from the restarted controller")
    assert all(json.loads(line)["nodes"][0]["node"]["name"] == "web-1" for line in watch.output())  # whole lines
    assert watch.proc.poll() is None
    code, stderr = watch.interrupt()
    lines = stderr.splitlines()
    assert code == 0 and len(lines) == 1, stderr  # one line for the outage, none per attempt
    assert lines[0].startswith(f"cannot reach controller {ctl.address}") or \
        lines[0].startswith(f"controller {ctl.address}"), lines[0]
    assert lines[0].endswith("; reconnecting (Ctrl-C to stop)")


def test_node_mode_pointed_at_a_controller_says_so(fleet, etcd):
    """A new user's slip: the controller's address given to --node. gRPC answers UNIMPLEMENTED
    ("Method not found!"); fleetctl says what the address is and which option it wants."""
    ctl = fleet.controller()
    for command in (["status"], ["info"], ["tail", "app"]):
        result = subprocess.run([*FLEETCTL, "--node", ctl.address, *command], capture_output=True, text=True,
                                timeout=60, env=ENV)
        assert result.returncode == 2, result.stderr
        line = one_line_error(result)
        assert line == (f"error: {ctl.address} is a fleetvisor controller, not an agent; "
                        f"use --controller {ctl.address}"), line
        assert "Method not found" not in result.stderr
    # a gRPC server that is neither (etcd) is not called a controller
    result = subprocess.run([*FLEETCTL, "--node", etcd.endpoint, "info"], capture_output=True, text=True,
                            timeout=60, env=ENV)
    assert result.returncode == 2
    assert "does not serve fleetvisor's AgentService" in one_line_error(result)
