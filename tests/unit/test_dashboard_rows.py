"""The status stream's rows (controller/dashboard/rows.py), pure: what a change sends, which
rows are rebuilt, and the control flags a scoped operator's rows carry."""

from __future__ import annotations

import time

import pytest

from fleetvisor.agent.security.identity import Identity
from fleetvisor.agent.security.policy import Authorizer, make
from fleetvisor.controller.dashboard.rows import ALL, NONE, PROC_FIELDS, SOME, ControlScope, RowCache, diff, split
from fleetvisor.controller.views import FleetStatus, NodeInfo, NodeProcesses
from fleetvisor.v1 import agent_pb2 as apb

pytestmark = pytest.mark.unit
OPS = Identity("operator", "sam", frozenset({"ops"}), "prod")
CONTROL = PROC_FIELDS.index("control")
PID = PROC_FIELDS.index("pid")


def fleet() -> FleetStatus:
    nodes = []
    for name, role in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        procs = [apb.ProcessInfo(name=n, group=g, namespec=f"{g}:{n}", state=apb.RUNNING, statename="RUNNING", pid=7)
                 for g, n in (("app", "app_0"), ("app", "app_1"), ("cron", "cron"))]
        nodes.append(NodeProcesses(NodeInfo(name, "127.0.0.1:1", {"role": role}, up=True, reachable=True), procs))
    return FleetStatus(nodes, time.time(), "ctl-1")


def scope(*policies) -> ControlScope:
    return ControlScope(Authorizer(policies), OPS)


def test_control_flags_follow_the_policy_per_node_and_per_program() -> None:
    s = scope(make("web-app", ["control"], groups=["ops"], labels={"role": "web"}, programs="app:*"),
              make("db-all", ["control"], groups=["ops"], nodes="db-*"))
    model = RowCache().model(fleet(), {}, None, s)
    assert {n: row["control"] for n, row in model.nodes.items()} == {"web-1": SOME, "web-2": SOME, "db-1": ALL}
    assert {k for k, row in model.procs.items() if row[CONTROL]} == {
        "web-1:app:app_0", "web-1:app:app_1", "web-2:app:app_0", "web-2:app:app_1",
        "db-1:app:app_0", "db-1:app:app_1", "db-1:cron:cron"}
    # each flag is what the check Control makes says (Authorizer.allows)
    for key, row in model.procs.items():
        node, group, name = key.split(":")
        labels = {"role": "db" if node == "db-1" else "web"}
        assert bool(row[CONTROL]) == s.authorizer.allows(OPS, "control", node=node, labels=labels,
                                                         program=(group, name))
    nobody = RowCache().model(fleet(), {}, None, ControlScope(Authorizer(), None))
    assert {row["control"] for row in nobody.nodes.values()} == {NONE}
    assert {row[CONTROL] for row in nobody.procs.values()} == {0}


def test_unchanged_records_keep_their_rows_and_a_change_sends_only_its_row() -> None:
    status, cache, s = fleet(), RowCache(), scope()
    first = cache.model(status, {"n": 1}, None, s)
    full = diff(None, first)
    assert full["full"] and full["proc_fields"] == PROC_FIELDS and len(full["procs"]) == 9
    again = cache.model(status, {"n": 1}, None, s)
    assert all(again.procs[k] is first.procs[k] for k in first.procs)  # not rebuilt
    assert diff(first, again) == {"full": False}
    old = status.nodes[1].processes[2]
    status.nodes[1].processes[2] = apb.ProcessInfo(name="cron", group="cron", namespec="cron:cron",
                                                   state=apb.RUNNING, statename="RUNNING", pid=8)
    later = cache.model(status, {"n": 2}, None, s)
    change = diff(again, later)
    assert change == diff(again, later, cache.rebuilt) and cache.rebuilt == ["web-2:cron:cron"]  # the short way
    assert set(change) == {"full", "procs", "summary"} and list(change["procs"]) == ["web-2:cron:cron"]
    assert change["procs"]["web-2:cron:cron"][PID] == 8 and old.pid == 7
    del status.nodes[0].processes[0]
    after = cache.model(status, {"n": 2}, None, s)
    gone = diff(later, after)
    assert gone == diff(later, after, cache.rebuilt) and cache.rebuilt == []
    assert gone["gone_procs"] == ["web-1:app:app_0"] and "procs" not in gone
    assert list(gone["nodes"]) == ["web-1"] and gone["nodes"]["web-1"]["processes"] == 2  # its count
    # a new policy set asks every flag again
    assert cache.model(status, {}, None, scope()).procs["web-2:app:app_0"][CONTROL] == 0


def test_a_big_change_is_split_with_the_rest_first() -> None:
    change = {"full": True, "summary": {"x": 1}, "procs": {f"n:g:{i}": [i] for i in range(5)}}
    parts = split(change, rows=2)
    assert [len(p["procs"]) for p in parts] == [2, 2, 1] and [p["more"] for p in parts] == [3, 1, 0]
    assert parts[0]["full"] and parts[0]["summary"] == {"x": 1}
    assert not any(p["full"] for p in parts[1:]) and all("summary" not in p for p in parts[1:])
    assert split({"full": False, "procs": {"a": [1]}}) == [{"full": False, "procs": {"a": [1]}}]


def test_a_big_model_is_built_in_steps_that_leave_the_loop_free_between() -> None:
    status, cache, s = fleet(), RowCache(), scope()
    steps = list(cache.steps(status, {}, None, s, rows_per_step=3))
    assert steps[-1] is not None and all(step is None for step in steps[:-1]) and len(steps) == 4  # 9 rows, 3 a step
    assert len(steps[-1].procs) == 9
    unchanged = list(cache.steps(status, {}, None, s, rows_per_step=3))  # rows looked at cost less than rows built
    assert len(unchanged) == 1 and cache.rebuilt == []
