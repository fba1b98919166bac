"""The pure parts of a rolling agent upgrade: the gate, the expected version, the node pick, the
record and the transitions, and fleetctl's arguments."""

from __future__ import annotations

import pytest

from fleetvisor.cli.client import CommandError
from fleetvisor.cli.opsargs import RolloutArgs, upgrade_spec
from fleetvisor.controller import opmodel, transitions, upgradegate
from fleetvisor.controller.errors import FailedPrecondition, NotFound
from fleetvisor.controller.opmodel import AgentMark, Held, Kind, StepState
from fleetvisor.controller.planning import Health, select_nodes
from fleetvisor.controller.upgradegate import AgentSeen, VersionRefused, expected_version, judge
from fleetvisor.v1 import controller_pb2 as cpb

BEFORE = AgentMark(version_before="0.1.0", version_expected="0.2.0", pid=100, run_id="run-a",
                   held=[Held("web:web_1", 11, "RUNNING"), Held("web:web_0", 10, "RUNNING"), Held("job", 0, "STOPPED")])
SAME = (Held("job", 0, "STOPPED"), Held("web:web_0", 10, "RUNNING"), Held("web:web_1", 11, "RUNNING"))


def seen(version="0.2.0", pid=100, run_id="run-a", processes=SAME) -> AgentSeen:
    return AgentSeen(version, pid, run_id, tuple(processes))


@pytest.mark.parametrize("after, failure", [
    (seen(), ""),
    (seen(processes=(*SAME, Held("new:one", 12, "RUNNING"))), ""),  # a process it did not have is no concern
    (seen(run_id=""), ""),  # a run it does not say is not held against it
    (seen(pid=101), "the agent came back as pid 101, not 100: it restarted instead of re-exec'ing"),
    (seen(run_id="run-b"), "the agent came back with a new journal run: it restarted instead of re-exec'ing"),
    (seen(version=""), "the agent reports no version"),
    (seen(version="0.1.0"), "the agent reports version 0.1.0, expected 0.2.0"),
    (seen(processes=SAME[:2]), "web:web_1 (pid 11, RUNNING) is gone"),
    (seen(processes=(SAME[0], Held("web:web_0", 20, "RUNNING"), Held("web:web_1", 21, "RUNNING"))),
     "web:web_0 has pid 20, had 10"),  # the first that differs, by name
    (seen(processes=(SAME[0], SAME[1], Held("web:web_1", 11, "STOPPING"))), "web:web_1 is STOPPING, was RUNNING"),
    (seen(processes=(Held("job", 0, "FATAL"), *SAME[1:])), "job is FATAL, was STOPPED"),
])
def test_the_gate_compares_before_and_after(after, failure):
    assert judge(BEFORE, after) == failure
    assert upgradegate.health(BEFORE, after) == Health(not failure, failure)


def test_without_an_expected_version_any_reported_one_passes():
    unknown = AgentMark(pid=100, held=[])
    assert judge(unknown, seen(version="0.3.0", processes=())) == ""
    assert judge(unknown, seen(version="", processes=())) == "the agent reports no version"


@pytest.mark.parametrize("expect, installed, expected", [
    ("", "0.2.0", "0.2.0"), ("0.2.0", "0.2.0", "0.2.0"), ("0.2.0", "", "0.2.0"), ("", "", ""),
])
def test_the_expected_version(expect, installed, expected):
    assert expected_version(expect, installed) == expected


def test_an_installed_agent_of_another_version_is_refused_before_the_reexec():
    with pytest.raises(VersionRefused, match="the installed agent is version 0.1.9, not 0.2.0; nothing was changed"):
        expected_version("0.2.0", "0.1.9")


def test_the_mark_is_what_the_agent_was():
    before = AgentSeen("0.1.0", 7, "run", SAME)
    assert upgradegate.mark(before, "0.2.0") == AgentMark("0.1.0", "0.2.0", 7, "run", list(SAME))


MEMBERS = {"web-1": {"role": "web", "dc": "eu"}, "web-2": {"role": "web", "dc": "us"}, "db-1": {"role": "db"}}


@pytest.mark.parametrize("globs, labels, picked", [
    ((), {}, ["db-1", "web-1", "web-2"]),
    (("web-*",), {}, ["web-1", "web-2"]),
    (("web-2", "db-?"), {}, ["db-1", "web-2"]),
    ((), {"dc": "eu"}, ["web-1"]),
    (("web-*",), {"role": "web", "dc": "us"}, ["web-2"]),
])
def test_select_nodes(globs, labels, picked):
    assert select_nodes(MEMBERS, globs, labels) == picked


@pytest.mark.parametrize("globs, labels, error", [
    (("web-3",), {}, "no such node: web-3"),
    (("web-1", "cache-*"), {}, "no node matches cache-*"),
    (("db-*",), {"role": "web"}, "no node matches db-* role=web"),
    ((), {"role": "cache"}, "no node matches role=cache"),
])
def test_select_nodes_refuses_what_picks_nothing(globs, labels, error):
    with pytest.raises(NotFound, match=error.replace("*", r"\*")):
        select_nodes(MEMBERS, globs, labels)
    with pytest.raises(NotFound, match="no node is registered"):
        select_nodes({}, (), {})


def test_select_nodes_leaves_out_the_nodes_that_are_down():
    assert select_nodes(MEMBERS, (), {}, down={"web-2"}) == ["db-1", "web-1"]
    assert select_nodes(MEMBERS, ("web-*",), {}, down={"web-2"}) == ["web-1"]
    with pytest.raises(FailedPrecondition, match="^node web-2 is down; once it is back, try again"):
        select_nodes(MEMBERS, ("web-1", "web-2"), {}, down={"web-2"})
    with pytest.raises(FailedPrecondition, match=r"^every node that matches web-\* role=web is down$"):
        select_nodes(MEMBERS, ("web-*",), {"role": "web"}, down={"web-1", "web-2"})
    with pytest.raises(FailedPrecondition, match="^every node is down$"):
        select_nodes(MEMBERS, (), {}, down=set(MEMBERS))


def test_an_upgrade_step_records_the_agent_and_its_return():
    op = opmodel.Operation("op", opmodel.Spec(kind=Kind.AGENT_UPGRADE, expect_version="0.2.0").with_defaults(),
                           batches=[opmodel.Batch([opmodel.Step("web-1")])])
    op, _ = transitions.apply(op, transitions.StepStarted("web-1", 1.0, agent=BEFORE))
    op, _ = transitions.apply(op, transitions.AgentBack("web-1", "0.2.0"))
    step = op.step("web-1")
    assert step.state == StepState.ACTING and step.agent is not None and step.agent.version_after == "0.2.0"
    assert BEFORE.version_after == ""  # the event's mark is copied, not shared
    assert opmodel.decode(opmodel.encode(op)) == op
    op, _ = transitions.apply(op, transitions.StepFailed("web-1", "web:web_0 has pid 20, had 10", 2.0))
    assert op.state == opmodel.OpState.PAUSED and op.reason == "web-1: web:web_0 has pid 20, had 10"


def test_a_record_without_an_agent_mark_reads_as_none():
    op = opmodel.Operation("op", opmodel.Spec(kind=Kind.ROLLING_RESTART), batches=[opmodel.Batch([opmodel.Step("a")])])
    assert opmodel.decode(opmodel.encode(op)).step("a").agent is None


def test_fleetctl_upgrade_arguments():
    spec = upgrade_spec(("web-*",), ("role=web",), "0.2.0", RolloutArgs(batch=2))
    assert (spec.kind, list(spec.selector.nodes), dict(spec.selector.labels), spec.expect_version, spec.batch) == \
        (cpb.AGENT_UPGRADE, ["web-*"], {"role": "web"}, "0.2.0", 2)
    for globs, version, said in ((("web-1:app",), "", "not namespecs"), (("",), "", "give node names"),
                                 ((), " 0.2", "a version has no spaces")):
        with pytest.raises(CommandError, match=said):
            upgrade_spec(globs, (), version, RolloutArgs())


def test_fleetctl_shows_an_upgrade_plan_and_each_node_s_versions():
    from rich.console import Console

    from fleetvisor.cli import opsrender as view

    op = cpb.Operation(spec=cpb.OperationSpec(kind=cpb.AGENT_UPGRADE, batch=1, healthy_for_seconds=5,
                                              selector=cpb.Assignment(nodes=["a", "b"])),
                       batches=[cpb.OperationBatch(nodes=[cpb.NodeStep(node="a")]),
                                cpb.OperationBatch(nodes=[cpb.NodeStep(node="b")])])
    console = Console(width=200, record=True)
    console.print(view.plan_view(op))
    text = console.export_text()
    assert "plan: rolling agent upgrade of the agent on nodes a,b to the installed agent's version" in text
    assert "gate per node: the agent back with the same pid and the expected version" in text
    assert view.short_target(op.spec) == "upgrade agent"
    step = cpb.NodeStep(node="a", agent_version_before="0.1.0", agent_version_expected="0.2.0")
    assert view.agent_versions(step) == "0.1.0 -> 0.2.0?"
    step.agent_version_after = "0.2.0"
    assert view.agent_versions(step) == "0.1.0 -> 0.2.0"
    assert view.agent_versions(cpb.NodeStep(node="b")) == ""
