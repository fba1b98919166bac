"""The fleet summary (issue 18) with real parts: agents whose programs really die, a node that
really goes down, fleetctl as a subprocess, and scoped identities over mutual TLS."""

from __future__ import annotations

import json
import subprocess

from fleetvisor.v1 import controller_pb2 as pb
from tests.support import wait_for

from .fleet_harness import FLEETCTL, SLEEPER, one_line_error, states, wait_status
from .test_fleet_authz import ADMIN, BOB, RITA, Fleet, pki  # noqa: F401 (pki is a fixture)
from .test_fleet_tls import ENV

CRASH = """
[program:crash]
command=sh -c "sleep 0.2; exit 3"
startsecs=0
autorestart=false

[program:jobs]
command=sh -c "exit 0"
startsecs=0
autorestart=false
"""
BAD = """
[program:bad]
command=/nonexistent/bad
startretries=0
"""


def run(ctl, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETCTL, "--controller", ctl.address, *args], capture_output=True, text=True,
                          timeout=30, env={**ENV, **env})


def kinds(summary) -> list[tuple[str, str, str, str]]:
    return [(pb.Problem.Kind.Name(p.kind), p.node, p.subject, p.state) for p in summary.problems]


def test_summary_counts_problems_filters_and_fleetctl(fleet):
    ctl = fleet.controller(node_ttl=2)
    fleet.agent("web-1", ctl, programs=SLEEPER.format(name="app") + CRASH)
    fleet.agent("web-2", ctl, programs=SLEEPER.format(name="app") + BAD)
    db = fleet.agent("db-1", ctl)
    wait_status(ctl, lambda s: states(s) == {
        "db-1:app": "RUNNING", "web-1:app": "RUNNING", "web-1:crash": "EXITED", "web-1:jobs": "EXITED",
        "web-2:app": "RUNNING", "web-2:bad": "FATAL"}, what="every program settled")
    db.kill()
    wait_status(ctl, lambda s: any(n.node.name == "db-1" and not n.node.up for n in s.nodes), what="db-1 down")

    reply = ctl.stub.GetStatus(pb.StatusRequest(summary=True), timeout=5)
    s = reply.summary
    assert not reply.nodes and reply.HasField("summary")
    assert (s.nodes, s.nodes_up, s.nodes_reachable, s.processes, s.running) == (3, 2, 2, 6, 2)
    groups = {g.group: (g.total, g.running, {c.state: (c.count, list(c.nodes)) for c in g.states}) for g in s.groups}
    assert groups == {"app": (3, 2, {"UNREACHABLE": (1, ["db-1"])}), "bad": (1, 0, {"FATAL": (1, ["web-2"])}),
                      "crash": (1, 0, {"EXITED": (1, ["web-1"])}), "jobs": (1, 0, {"EXITED": (1, ["web-1"])})}
    assert [g.group for g in s.groups] == ["app", "bad", "crash", "jobs"]  # jobs exited as expected: last
    # the down node once (not its app), the FATAL one, the unexpected exit (exit 3); not jobs' exit 0
    assert kinds(s) == [("NODE_DOWN", "db-1", "", "DOWN"), ("PROCESS", "web-2", "bad", "FATAL"),
                        ("PROCESS", "web-1", "crash", "EXITED")]
    assert s.problems_total == 3 and s.problems[0].since > 0

    # WatchStatus sends the same; up to summary_above processes the rows come instead
    watching = ctl.stub.WatchStatus(pb.StatusRequest(summary=True), timeout=10)
    first = next(watching)
    watching.cancel()
    assert not first.nodes and kinds(first.summary) == kinds(s)
    small = ctl.stub.GetStatus(pb.StatusRequest(summary=True, summary_above=6), timeout=5)
    assert not small.HasField("summary") and len(states(small)) == 6
    big = ctl.stub.GetStatus(pb.StatusRequest(summary=True, summary_above=5), timeout=5)
    assert big.HasField("summary") and not big.nodes

    # patterns and labels narrow the summary
    narrowed = ctl.stub.GetStatus(pb.StatusRequest(summary=True, patterns=["web-*"]), timeout=5).summary
    assert (narrowed.nodes, narrowed.processes) == (2, 5) and "db-1" not in {p.node for p in narrowed.problems}

    # the rows filters
    fatal = ctl.stub.GetStatus(pb.StatusRequest(states=["FATAL"]), timeout=5)
    assert states(fatal) == {"web-2:bad": "FATAL"}
    problems = ctl.stub.GetStatus(pb.StatusRequest(problems=True), timeout=5)
    assert states(problems) == {"web-2:bad": "FATAL", "web-1:crash": "EXITED"}
    assert sorted(n.node.name for n in problems.nodes) == ["db-1", "web-1", "web-2"]

    # fleetctl: a fleet of 6 processes is shown whole, unless the setting or --summary says otherwise
    rows = run(ctl, "status")
    assert rows.returncode == 3 and "PROBLEMS" not in rows.stdout and "Not started" not in rows.stdout
    assert "nodes: 2 up, 1 down, 1 unreachable" in rows.stdout
    for shown in (run(ctl, "status", FLEETCTL_SUMMARY_ABOVE="5"), run(ctl, "status", "--summary")):
        assert shown.returncode == 3, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == "nodes: 2/3 up, 1 unreachable   processes: 2/6 RUNNING   problems: 3"
        assert lines[1].split() == ["app", "2/3", "RUNNING", "UNREACHABLE", "1", "(db-1)"]
        assert lines[2].split() == ["bad", "0/1", "RUNNING", "FATAL", "1", "(web-2)"]
        assert lines[5] == "PROBLEMS (3)"
        assert [line.split()[:3] for line in lines[6:]] == [
            ["DOWN", "db-1", "-"], ["FATAL", "web-2", "bad"], ["EXITED", "web-1", "crash"]]
    every = run(ctl, "status", "--all", FLEETCTL_SUMMARY_ABOVE="5")
    assert every.returncode == 3
    assert "PROBLEMS" not in every.stdout and "nodes: 2 up, 1 down, 1 unreachable" in every.stdout

    as_json = json.loads(run(ctl, "-o", "json", "status", "--summary").stdout)
    assert as_json["nodes"] == [] and as_json["summary"]["problems_total"] == 3
    assert [p["kind"] for p in as_json["summary"]["problems"]] == ["NODE_DOWN", "PROCESS", "PROCESS"]
    assert as_json["summary"]["groups"][1]["states"] == [
        {"state": "FATAL", "count": 1, "nodes": ["web-2"], "nodes_total": 1}]

    filtered = json.loads(run(ctl, "-o", "json", "status", "--state", "fatal,backoff").stdout)
    assert [(n["node"]["name"], [p["name"] for p in n["processes"]]) for n in filtered["nodes"]] == [("web-2", ["bad"])]
    only = run(ctl, "status", "--problems")
    assert only.returncode == 3 and "crash" in only.stdout and " RUNNING" not in only.stdout
    assert "db-1" in only.stdout and "(no processes)" not in only.stdout  # down: its header, no rows

    bad = run(ctl, "status", "--state", "FATAL,ASLEEP")
    assert bad.returncode == 2 and "unknown state ASLEEP" in one_line_error(bad)


def test_a_scoped_caller_sees_only_its_groups_nodes_and_operations(fleet, pki):  # noqa: F811
    f = Fleet(fleet, pki, {"web-1": "web", "db-1": "db"})
    f.put_policy("web-ops", ["read", "control"], groups=["web"], labels={"role": "web"}, programs="web:*")
    f.put_policy("db-readers", ["read"], users=[RITA], labels={"role": "db"})
    started = f.run(ADMIN, "-o", "json", "rolling-restart", "web", "--label", "role=web", "--healthy-for", "60s",
                    "--detach")
    assert started.returncode == 0, started.stderr
    op_id = json.loads(started.stdout)["id"]
    assert f.run(ADMIN, "ops", "pause", op_id, "--reason", "looking").returncode == 0
    f.agents["db-1"].kill()
    wait_for(lambda: [p["kind"] for p in f.json("status", "--summary")["summary"]["problems"]] == [
        "NODE_DOWN", "OPERATION"], 15, "db-1 down and the paused operation in the admin's summary")

    admin = f.json("status", "--summary")["summary"]
    assert [(p["kind"], p.get("node", ""), p.get("subject", "")) for p in admin["problems"]] == [
        ("NODE_DOWN", "db-1", ""), ("OPERATION", "", op_id)]
    assert admin["problems"][1]["state"] == "OP_PAUSED" and "looking" in admin["problems"][1]["detail"]
    assert sorted(g["group"] for g in admin["groups"]) == ["app", "web"]

    bob = f.json("status", "--summary", user=BOB)["summary"]  # web:* on role=web: his restart's group
    assert (bob["nodes"], bob["processes"]) == (1, 1)
    assert [g["group"] for g in bob["groups"]] == ["web"]
    assert [(p["kind"], p["subject"]) for p in bob["problems"]] == [("OPERATION", op_id)]

    rita = f.json("status", "--summary", user=RITA)["summary"]  # role=db only: no web-1, no operation
    assert (rita["nodes"], rita["processes"]) == (1, 2)
    assert [(p["kind"], p["node"]) for p in rita["problems"]] == [("NODE_DOWN", "db-1")]
    assert rita["problems_total"] == 1
    assert "web-1" not in json.dumps(rita) and op_id not in json.dumps(rita)
