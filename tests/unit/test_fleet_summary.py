"""controller/summary.py: the fleet's per-group counts and problems, from hand-built states."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetvisor.controller import summary
from fleetvisor.controller.opmodel import Batch, Operation, OpState, Spec, Step
from fleetvisor.controller.opmodel import Kind as OpKind
from fleetvisor.controller.processes import ProcessList
from fleetvisor.controller.service import summary_message
from fleetvisor.controller.views import NodeInfo, NodeProcesses
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb

NOW = 1_700_000_000.0


def proc(group: str, name: str, state: str = "RUNNING", *, unhealthy: bool = False,
         unexpected: bool = False) -> apb.ProcessInfo:
    return apb.ProcessInfo(group=group, name=name, namespec=f"{group}:{name}", state=apb.ProcessState.Value(state),
                           statename=state, description=f"{state.lower()} {name}", stop=NOW - 5,
                           health=apb.UNHEALTHY if unhealthy else apb.HEALTH_UNSPECIFIED,
                           health_message="HTTP 500" if unhealthy else "", exited_unexpectedly=unexpected)


def node(name: str, *procs: apb.ProcessInfo, up: bool = True, reachable: bool = True, **facts) -> NodeProcesses:
    facts.setdefault("applied_revision", "app@1")
    facts.setdefault("desired_revision", "app@1")
    return NodeProcesses(NodeInfo(name, f"{name}:7401", up=up, reachable=reachable, last_heartbeat=NOW - 60,
                                  **facts), list(procs))


def op(op_id: str, state: OpState, *, updated: float = NOW - 10, nodes: tuple[str, ...] = ("web-1",)) -> Operation:
    return Operation(op_id, Spec(kind=OpKind.ROLLING_RESTART, group="app"), state=state, reason="step failed",
                     batches=[Batch([Step(n) for n in nodes])], updated_at=updated)


def test_counts_per_group_and_the_problems_worst_first():
    fleet = [
        node("web-1", proc("app", "a"), proc("app", "b", "FATAL"), proc("jobs", "j", "EXITED")),
        node("web-2", proc("app", "a"), proc("app", "b", "BACKOFF"), proc("jobs", "j", "EXITED", unexpected=True)),
        node("web-3", proc("app", "a", unhealthy=True), proc("app", "b", "STOPPED")),
        node("web-4", proc("app", "a"), proc("app", "b"), up=False, error="no heartbeat"),
    ]
    got = summary.summarize(fleet, [], NOW)
    assert (got.nodes, got.nodes_up, got.nodes_reachable, got.processes, got.running) == (4, 3, 4, 10, 3)
    app, jobs = got.groups  # both have problems: by name
    assert (app.group, app.total, app.running, app.problems) == ("app", 8, 3, 5)
    assert {s: (c.count, sorted(c.nodes)) for s, c in app.states.items()} == {
        "FATAL": (1, ["web-1"]), "BACKOFF": (1, ["web-2"]), "UNHEALTHY": (1, ["web-3"]),
        "STOPPED": (1, ["web-3"]), summary.UNREACHABLE: (2, ["web-4"])}
    assert {s: c.count for s, c in jobs.states.items()} == {"EXITED": 2} and jobs.problems == 1
    assert [(p.kind, p.node, p.subject, p.state) for p in got.problems] == [
        (summary.Kind.NODE_DOWN, "web-4", "", "DOWN"),
        (summary.Kind.PROCESS, "web-1", "app:b", "FATAL"),
        (summary.Kind.PROCESS, "web-2", "app:b", "BACKOFF"),
        (summary.Kind.PROCESS, "web-2", "jobs:j", "EXITED"),
        (summary.Kind.PROCESS, "web-3", "app:a", "UNHEALTHY"),
    ]
    assert got.problems_total == 5
    assert got.problems[0].since == NOW - 60 and got.problems[-1].detail == "HTTP 500"


def test_a_down_nodes_processes_are_not_problems_one_by_one():
    got = summary.summarize([node("db-1", proc("db", "x", "FATAL"), up=False)], [], NOW)
    assert [p.kind for p in got.problems] == [summary.Kind.NODE_DOWN]
    got = summary.summarize([node("db-1", proc("db", "x", "FATAL"), reachable=False)], [], NOW)
    assert [p.kind for p in got.problems] == [summary.Kind.NODE_UNREACHABLE]


def test_stopped_and_expected_exits_and_healthy_groups_are_no_problem():
    got = summary.summarize([node("a", proc("z", "1"), proc("y", "1", "STOPPED"), proc("x", "1", "EXITED"))], [], NOW)
    assert got.problems == [] and [g.group for g in got.groups] == ["x", "y", "z"]
    assert all(g.problems == 0 for g in got.groups)


def test_node_facts_drift_refusal_foreign_and_edits():
    fleet = [node("n1", desired_revision="app@2", error="config refused: line 3"),
             node("n2", local_revision=True, pinned=True), node("n3", foreign="cluster other"),
             node("n4", edited_by_hand=True), node("n5")]
    got = summary.summarize(fleet, [], NOW)
    assert [(p.kind, p.node) for p in got.problems] == [
        (summary.Kind.FOREIGN, "n3"), (summary.Kind.DRIFT, "n1"), (summary.Kind.DRIFT, "n2"),
        (summary.Kind.EDITED_BY_HAND, "n4")]
    drift = got.problems[1]
    assert drift.subject == "app@1" and "app@2" in drift.detail and "config refused: line 3" in drift.detail


def test_paused_and_recently_failed_operations_only():
    ops = [op("running", OpState.RUNNING), op("paused", OpState.PAUSED), op("failed", OpState.FAILED),
           op("old", OpState.FAILED, updated=NOW - 2 * summary.FAILED_OPERATION_WINDOW),
           op("done", OpState.SUCCEEDED), op("aborted", OpState.ABORTED)]
    got = summary.summarize([], ops, NOW)
    assert [(p.subject, p.state) for p in got.problems] == [("failed", "OP_FAILED"), ("paused", "OP_PAUSED")]
    assert got.problems[0].detail == "rolling restart of app: step failed"


def test_problems_are_bounded_and_counted():
    fleet = [node(f"n{i:03}", proc("app", "a", "FATAL")) for i in range(30)]
    got = summary.summarize(fleet, [], NOW, limit=7)
    assert got.problems_total == 30 and [p.node for p in got.problems] == [f"n{i:03}" for i in range(7)]


def test_select_by_state_and_problems():
    fleet = [node("web-1", proc("app", "a"), proc("app", "b", "FATAL")),
             node("web-2", proc("app", "a", unhealthy=True), proc("app", "b", "STOPPED")),
             node("web-3", proc("app", "a", "FATAL"), up=False), node("web-4", edited_by_hand=True)]
    by_state = summary.select(fleet, frozenset({"FATAL", "UNHEALTHY"}), False)
    assert [(n.node.name, [p.namespec for p in n.processes]) for n in by_state] == [
        ("web-1", ["app:b"]), ("web-2", ["app:a"]), ("web-3", ["app:a"])]
    problems = summary.select(fleet, frozenset(), True)
    assert [(n.node.name, [p.namespec for p in n.processes]) for n in problems] == [
        ("web-1", ["app:b"]), ("web-2", ["app:a"]), ("web-3", []), ("web-4", [])]
    assert summary.select(fleet, frozenset(), False) == fleet
    assert summary.unknown_states(["FATAL", "fatal", "UNHEALTHY", "NOPE"]) == ["fatal", "NOPE"]


def test_the_wire_message_caps_the_node_names_and_keeps_the_contract_names():
    fleet = [node(f"n{i:03}", proc("app", "a", "STOPPED")) for i in range(summary.NODES_PER_STATE + 5)]
    message = summary_message(summary.summarize(fleet, [op("p", OpState.PAUSED)], NOW))
    state = message.groups[0].states[0]
    assert (state.state, state.count, state.nodes_total, len(state.nodes)) == (
        "STOPPED", summary.NODES_PER_STATE + 5, summary.NODES_PER_STATE + 5, summary.NODES_PER_STATE)
    assert state.nodes[0] == "n000" and list(state.nodes) == sorted(state.nodes)
    assert message.problems[0].kind == pb.Problem.OPERATION and message.problems_total == 1


STATES = ["RUNNING", "STOPPED", "STARTING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"]
procs = st.builds(lambda g, n, s, h, u: proc(g, n, s, unhealthy=h and s == "RUNNING", unexpected=u and s == "EXITED"),
                  st.sampled_from("abc"), st.sampled_from("xyz"), st.sampled_from(STATES), st.booleans(), st.booleans())
nodes = st.builds(lambda i, ps, up, reach: node(f"n{i}", *ps, up=up, reachable=reach),
                  st.integers(0, 50), st.lists(procs, max_size=6), st.booleans(), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(nodes, max_size=12), st.integers(1, 20))
def test_counts_add_up_whatever_the_fleet(fleet, limit):
    got = summary.summarize(fleet, [], NOW, limit=limit)
    all_procs = [(n, p) for n in fleet for p in n.processes]
    assert got.processes == sum(g.total for g in got.groups) == len(all_procs)
    assert got.running == sum(g.running for g in got.groups)
    for g in got.groups:  # every process is RUNNING or counted in a state (UNHEALTHY ones in both)
        assert g.total == g.running + sum(c.count for s, c in g.states.items() if s != summary.UNHEALTHY)
    problems = summary.select(fleet, frozenset(), True)
    process_problems = sum(len(n.processes) for n in problems)
    node_problems = sum(len(summary.node_problems(n.node)) for n in fleet)
    assert got.problems_total == process_problems + node_problems
    assert len(got.problems) == min(limit, got.problems_total)
    assert [p.rank() for p in got.problems] == sorted(p.rank() for p in got.problems)
    flagged = sorted(g.group for g in got.groups if g.problems)
    calm = sorted(g.group for g in got.groups if not g.problems)
    assert [g.group for g in got.groups] == flagged + calm


@settings(max_examples=100, deadline=None)
@given(st.lists(nodes, max_size=12, unique_by=lambda n: n.node.name), st.lists(st.booleans(), min_size=12, max_size=12))
def test_counts_kept_on_a_process_list_are_those_worked_out_anew(fleet, flips):
    """A node's counts are kept on its process list (processes.ProcessList, the same object
    until a process changes): summaries from kept counts, also after the node's liveness
    changed, equal those from plain lists."""
    kept = [NodeProcesses(n.node, ProcessList(n.processes)) for n in fleet]

    def message(entries):
        return summary_message(summary.summarize(entries, [], NOW))

    assert message(kept) == message(fleet)
    assert message(kept) == message(fleet), "again, from the kept counts"
    moved = [replace(n.node, reachable=not n.node.reachable) if flip else n.node for n, flip in zip(fleet, flips)]
    assert message([NodeProcesses(m, n.processes) for m, n in zip(moved, kept)]) == \
        message([NodeProcesses(m, n.processes) for m, n in zip(moved, fleet)])
