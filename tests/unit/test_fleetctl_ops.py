"""fleetctl's fleet operations without a controller: argument checks, plans, progress views,
the plain change log, exit statuses, and the commands' flow against a stand-in client.

The stand-in replaces only fleetctl's `Controller` object (what a call returns); the gRPC
wire and the real engine are covered by the end-to-end tests once the engine exists.
"""

from __future__ import annotations

import io
import json
import os

import pytest
from click.testing import CliRunner
from rich.console import Console

from fleetvisor.cli import ops as ops_module
from fleetvisor.cli import opsrender as view
from fleetvisor.cli.client import CommandError
from fleetvisor.cli.context import Ctx
from fleetvisor.cli.main import cli
from fleetvisor.cli.opsargs import (RolloutArgs, operation_id, pacing_spec, parse_max_unavailable, restart_spec,
                                    rollout_spec)
from fleetvisor.v1 import controller_pb2 as cpb

NOW = 1_700_000_000.0
P, A, W, D, F, R, S = (cpb.STEP_PENDING, cpb.STEP_ACTING, cpb.STEP_WAITING, cpb.STEP_DONE, cpb.STEP_FAILED,
                       cpb.STEP_REVERTED, cpb.STEP_SKIPPED)


def text_of(renderable, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def restart_op(*batches: dict[str, int], state: int = cpb.OP_RUNNING, current: int = 0, reason: str = "",
               op_id: str = "op-1", **spec_fields) -> cpb.Operation:
    """An operation from batches written as {node: step state}."""
    spec = cpb.OperationSpec(kind=cpb.ROLLING_RESTART, group="app", max_unavailable="1", healthy_for_seconds=5,
                             timeout_seconds=300, on_failure=cpb.PAUSE)
    for key, value in spec_fields.items():
        setattr(spec, key, value)
    op = cpb.Operation(id=op_id, spec=spec, state=state, current_batch=current, reason=reason, author="ann@box",
                       created_at=NOW - 60, updated_at=NOW)
    for batch in batches:
        op.batches.add().nodes.extend(cpb.NodeStep(node=n, state=s) for n, s in batch.items())
    return op


def rollout_op(*batches: dict[str, int], canary: int = 1, **kwargs) -> cpb.Operation:
    op = restart_op(*batches, **kwargs)
    op.spec.kind, op.spec.group = cpb.CONFIG_ROLLOUT, ""
    op.spec.config_name, op.spec.config_revision, op.spec.previous_revision = "web", 4, 3
    op.spec.canary = canary
    return op


# -- arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, canonical", [
    ("1", "1"), (" 3 ", "3"), ("007", "7"), ("25%", "25%"), ("25 %", "25%"), ("100%", "100%"), ("1%", "1%"),
])
def test_max_unavailable_is_a_count_or_a_percentage(text, canonical):
    assert parse_max_unavailable(text) == canonical


@pytest.mark.parametrize("text, words", [
    ("0", "at least 1 node"), ("0%", "from 1% to 100%"), ("101%", "from 1% to 100%"), ("12.5%", "whole percentage"),
    ("-1", "node count"), ("two", "node count"), ("", "node count"), ("%", "node count"),
])
def test_bad_max_unavailable_is_a_usage_error(text, words):
    with pytest.raises(CommandError) as info:
        parse_max_unavailable(text)
    assert info.value.exit_code == 2 and words in str(info.value) and "--max-unavailable" in str(info.value)


def test_pacing_defaults_are_one_node_at_a_time_healthy_5s_timeout_5m_pause():
    spec = pacing_spec(RolloutArgs(), cpb.ROLLING_RESTART)
    assert (spec.batch, spec.max_unavailable, spec.healthy_for_seconds, spec.timeout_seconds, spec.on_failure) == (
        0, "1", 5.0, 300.0, cpb.PAUSE)


def test_pacing_options_as_given():
    spec = pacing_spec(RolloutArgs(batch=3, healthy_for="1m30s", timeout="10m", on_failure="continue"),
                       cpb.ROLLING_RESTART)
    assert (spec.batch, spec.max_unavailable, spec.healthy_for_seconds, spec.timeout_seconds, spec.on_failure) == (
        3, "", 90.0, 600.0, cpb.CONTINUE)
    assert pacing_spec(RolloutArgs(max_unavailable="50%", on_failure="abort"), 1).max_unavailable == "50%"
    assert pacing_spec(RolloutArgs(healthy_for="0s"), 1).healthy_for_seconds == 0  # no soak: allowed


@pytest.mark.parametrize("args, words", [
    (RolloutArgs(batch=2, max_unavailable="1"), "either --batch or --max-unavailable"),
    (RolloutArgs(batch=0), "at least 1 node"),
    (RolloutArgs(healthy_for="10"), "--healthy-for: '10' is not a duration"),
    (RolloutArgs(timeout="0s"), "--timeout '0s': must be longer than 0s"),
    (RolloutArgs(timeout="soon"), "--timeout: 'soon' is not a duration"),
])
def test_bad_pacing_is_a_usage_error(args, words):
    with pytest.raises(CommandError) as info:
        pacing_spec(args, cpb.ROLLING_RESTART)
    assert info.value.exit_code == 2 and words in str(info.value)


def test_restart_spec_selects_nodes_by_name_or_label():
    spec = restart_spec("app", "web-1, web-2,", (), RolloutArgs())
    assert spec.kind == cpb.ROLLING_RESTART and spec.group == "app" and list(spec.selector.nodes) == ["web-1", "web-2"]
    spec = restart_spec(" app ", None, ("role=web", "dc=east"), RolloutArgs())
    assert spec.group == "app" and dict(spec.selector.labels) == {"role": "web", "dc": "east"}
    assert not restart_spec("app", None, (), RolloutArgs()).selector.nodes  # every node with the group


@pytest.mark.parametrize("group, nodes, labels, words", [
    ("app", "a", ("b=c",), "either --nodes or --label"),
    ("web-1:app", None, (), "not a namespec"),
    (" ", None, (), "process group name"),
    ("app", None, ("role",), "expected KEY=VALUE"),
])
def test_bad_restart_selection_is_a_usage_error(group, nodes, labels, words):
    with pytest.raises(CommandError) as info:
        restart_spec(group, nodes, labels, RolloutArgs())
    assert info.value.exit_code == 2 and words in str(info.value)


def test_rollout_spec_only_with_rolling():
    assert rollout_spec(RolloutArgs()) is None
    spec = rollout_spec(RolloutArgs(rolling=True, canary=2, auto_revert=True, max_unavailable="25%"))
    assert spec.kind == cpb.CONFIG_ROLLOUT and spec.canary == 2 and spec.auto_revert and spec.max_unavailable == "25%"
    assert rollout_spec(RolloutArgs(rolling=True)).canary == 0


def test_pacing_without_rolling_is_refused_naming_every_option_given():
    with pytest.raises(CommandError) as info:
        rollout_spec(RolloutArgs(canary=1, batch=2, detach=True))
    assert info.value.exit_code == 2
    assert str(info.value).startswith("--batch, --detach, --canary only with --rolling")
    with pytest.raises(CommandError, match="a canary is at least 1 node"):
        rollout_spec(RolloutArgs(rolling=True, canary=0))


def test_operation_id_must_not_be_blank():
    assert operation_id(" op-1 ") == "op-1"
    with pytest.raises(CommandError) as info:
        operation_id("  ")
    assert info.value.exit_code == 2 and "ops list" in str(info.value)


# -- plans -------------------------------------------------------------------------------------

def test_plan_lists_the_batches_in_order():
    plan = restart_op({"web-1": P, "web-2": P}, {"web-3": P}, op_id="", state=0, batch=2, max_unavailable="")
    plan.spec.selector.labels["role"] = "web"
    lines = text_of(view.plan_view(plan)).splitlines()
    assert lines[0] == "plan: rolling restart of group app on labels role=web, 3 nodes in 2 batches"
    assert lines[1].strip() == "batches of 2, healthy for 5s, timeout 5m per batch, on failure pause"
    assert lines[2:] == ["  batch 1: web-1, web-2", "  batch 2: web-3"]


def test_plan_marks_the_canary_and_an_empty_plan_says_so():
    lines = text_of(view.plan_view(rollout_op({"web-1": P}, {"web-2": P, "web-3": P}, state=0))).splitlines()
    assert lines[0].startswith("plan: config rollout of config web revision 4 (from 3), 3 nodes in 2 batches")
    assert "canary 1" in lines[1] and "at most 1 unavailable" in lines[1]
    assert lines[2] == "  batch 1: web-1  (canary: then pause until promoted)" and lines[3] == "  batch 2: web-2, web-3"
    assert "nothing to do" in text_of(view.plan_view(restart_op()))


def test_ten_batches_keep_their_numbers_aligned():
    lines = text_of(view.plan_view(restart_op(*({f"n{i}": P} for i in range(10))))).splitlines()
    assert lines[2] == "  batch  1: n0" and lines[11] == "  batch 10: n9"


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (5, "5s"), (0.25, "0.2s"), (1.5, "1.5s"), (12.4, "12s"), (60, "1m"), (90, "1m30s"), (300, "5m"),
    (3900, "1h5m"), (7200, "2h"),
])
def test_format_seconds_reads_like_the_options(seconds, text):
    assert view.format_seconds(seconds) == text


# -- progress ----------------------------------------------------------------------------------

def test_counts_follow_the_current_batch():
    op = restart_op({"a": D, "b": F}, {"c": D, "d": W, "e": A}, {"f": P}, current=1)
    c = view.counts(op)
    assert (c.total, c.done, c.failed, c.skipped, c.settled) == (6, 2, 1, 0, 3)
    assert (c.batch, c.batches, c.batch_total, c.batch_settled) == (1, 3, 3, 1)
    assert view.counts_text(c) == "2/6 done, 1 failed"


def test_a_current_batch_past_the_end_is_the_last_one():
    op = restart_op({"a": D}, {"b": D}, current=2, state=cpb.OP_SUCCEEDED)
    assert view.current_batch(op) == 1 and view.counts(op).batch_settled == 1
    assert view.current_batch(restart_op()) == 0


def test_live_view_shows_title_bars_nodes_and_the_pause():
    op = restart_op({"web-1": D, "web-2": D}, {"web-3": W, "web-4": A}, {"web-5": P}, current=1)
    op.batches[1].nodes[0].healthy_at = NOW - 2
    op.batches[1].nodes[1].started_at = NOW - 4
    live = view.LiveView(lambda: NOW)
    assert "waiting for the controller" in text_of(live)
    live.update(op)
    out = text_of(live)
    assert "rolling restart of group app on every node with the group  op-1  running" in out
    assert "nodes" in out and "2/5" in out and "2/5 done" in out
    assert "batch 2/3" in out and "0/2" in out
    rows = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith(("1 ", "2 ", "3 "))}
    assert rows["web-1"][0] == "done" and rows["web-3"] == ["waiting", "healthy", "2s/5s"]
    assert rows["web-4"] == ["acting", "since", "4s", "ago"] and rows["web-5"] == ["pending"]
    live.update(restart_op({"web-1": F}, state=cpb.OP_PAUSED, reason="web-1 failed"))
    assert "paused: web-1 failed — fleetctl ops resume op-1 | fleetctl ops abort op-1" in text_of(live)


def test_live_view_of_a_large_operation_shows_the_current_batch_and_failures():
    batches = [{f"n{b}-{i}": (D if b < 3 else P) for i in range(5)} for b in range(10)]
    batches[1]["n1-0"] = F
    op = restart_op(*batches, current=3)
    steps, hidden = view.visible_steps(op)
    assert [s.node for _, s in steps] == ["n1-0"] + [f"n3-{i}" for i in range(5)] and hidden == 44
    live = view.LiveView(lambda: NOW)
    live.update(op)
    assert "... and 44 more nodes not shown (fleetctl ops show op-1)" in text_of(live)
    assert view.visible_steps(restart_op({"a": P}))[1] == 0


# -- paused, and how it ends -------------------------------------------------------------------

def test_a_canary_pause_says_how_to_promote():
    op = rollout_op({"web-1": D, "web-2": D}, {"web-3": P}, canary=2, state=cpb.OP_PAUSED, current=1,
                    reason="canary is up")
    assert view.canary_nodes(op) == ["web-1", "web-2"]
    assert text_of(view.paused_text(op)).strip() == ("canary on web-1, web-2 is up; promote with: fleetctl ops "
                                                     "resume op-1, or: fleetctl ops abort op-1")


@pytest.mark.parametrize("op", [
    rollout_op({"web-1": F}, {"web-2": P}, state=cpb.OP_PAUSED, reason="web-1 failed"),     # a failed canary
    rollout_op({"web-1": D}, {"web-2": D}, state=cpb.OP_PAUSED, reason="operator"),         # paused later
    rollout_op({"web-1": D}, {"web-2": P}, state=cpb.OP_RUNNING),                           # not paused
    rollout_op({"web-1": D}, {"web-2": P}, canary=0, state=cpb.OP_PAUSED, reason="x"),      # no canary asked
    restart_op({"web-1": D}, {"web-2": P}, canary=1, state=cpb.OP_PAUSED, reason="x"),      # restarts have none
])
def test_other_pauses_are_not_a_canary(op):
    assert view.canary_nodes(op) == []
    assert text_of(view.paused_text(op)).strip().startswith("paused: ")


def test_a_pause_without_a_reason_still_says_how_to_go_on():
    op = restart_op({"a": D}, state=cpb.OP_PAUSED)
    assert text_of(view.paused_text(op)).strip() == ("paused: (no reason given) — fleetctl ops resume op-1 | "
                                                     "fleetctl ops abort op-1")


def test_outcome_lines():
    ok = restart_op({"a": D}, {"b": D}, state=cpb.OP_SUCCEEDED)
    assert text_of(view.outcome_text(ok)).strip() == "operation op-1 succeeded: 2/2 done in 1m"
    failed = restart_op({"a": D}, {"b": F}, {"c": S}, state=cpb.OP_FAILED, reason="b: app FATAL")
    assert text_of(view.outcome_text(failed)).strip() == ("operation op-1 failed: 1/3 done, 1 failed, 1 skipped — "
                                                          "b: app FATAL (failed: b)")
    aborted = restart_op({"a": D}, {"b": S}, state=cpb.OP_ABORTED, reason="bad build")
    assert text_of(view.outcome_text(aborted)).strip() == "operation op-1 aborted: 1/2 done, 1 skipped — bad build"
    paused = restart_op({"a": D}, state=cpb.OP_PAUSED, reason="why")
    assert text_of(view.outcome_text(paused)).strip().startswith("paused: why")


@pytest.mark.parametrize("state, interrupted, code", [
    (cpb.OP_SUCCEEDED, False, 0), (cpb.OP_FAILED, False, 1), (cpb.OP_ABORTED, False, 1), (cpb.OP_PAUSED, False, 1),
    (cpb.OP_PAUSED, True, 1), (cpb.OP_RUNNING, True, 130), (cpb.OP_RUNNING, False, 1), (cpb.OP_SUCCEEDED, True, 0),
])
def test_exit_code_decisions(state, interrupted, code):
    assert view.exit_code(restart_op({"a": D}, state=state), interrupted=interrupted) == code


# -- the plain change log ----------------------------------------------------------------------

def plain(lines) -> list[str]:
    return [text_of(line).rstrip("\n") for line in lines]


def test_change_lines_report_each_change_once():
    first = restart_op({"web-1": A, "web-2": P}, {"web-3": P})
    stamp = view.format_time(NOW)[-8:]
    assert plain(view.change_lines(None, first)) == [f"{stamp} operation op-1 running",
                                                      f"{stamp} batch 1/2: web-1, web-2", f"{stamp} web-1: acting"]
    assert view.change_lines(first, first) == []
    second = restart_op({"web-1": W, "web-2": A}, {"web-3": P})
    assert plain(view.change_lines(first, second)) == [f"{stamp} web-1: waiting (to stay healthy for 5s)",
                                                        f"{stamp} web-2: acting"]
    third = restart_op({"web-1": D, "web-2": F}, {"web-3": A}, current=1)
    third.batches[0].nodes[0].started_at, third.batches[0].nodes[0].done_at = NOW - 7, NOW
    third.batches[0].nodes[1].error = "app: FATAL"
    assert plain(view.change_lines(second, third)) == [
        f"{stamp} batch 2/2: web-3", f"{stamp} web-1: done (took 7s)", f"{stamp} web-2: failed: app: FATAL",
        f"{stamp} web-3: acting"]


def test_change_lines_for_pause_resume_and_the_end():
    running = rollout_op({"web-1": D}, {"web-2": P})
    paused = rollout_op({"web-1": D}, {"web-2": P}, state=cpb.OP_PAUSED, current=1, reason="canary")
    lines = plain(view.change_lines(running, paused))
    assert len(lines) == 2 and "canary on web-1 is up; promote with: fleetctl ops resume op-1" in lines[0]
    assert lines[1].endswith("batch 2/2: web-2")
    resumed = rollout_op({"web-1": D}, {"web-2": A}, current=1)
    assert plain(view.change_lines(paused, resumed))[0].endswith("operation op-1 resumed")
    ended = rollout_op({"web-1": D}, {"web-2": D}, current=1, state=cpb.OP_SUCCEEDED)
    assert plain(view.change_lines(resumed, ended)) == [plain([view.Text(view._stamp(ended))])[0] + "web-2: done"]


# -- ops list and ops show ---------------------------------------------------------------------

def test_operations_table_fits_80_columns():
    ops = [restart_op({"a": D}, {"b": A}, current=1),
           rollout_op({"a": D}, {"b": P}, state=cpb.OP_PAUSED, reason="canary is up", op_id="op-2")]
    lines = text_of(view.operations_table(ops, NOW), width=80).splitlines()
    assert lines[0].split() == ["ID", "WHAT", "STATE", "PROGRESS", "BATCH", "STARTED", "REASON"]
    assert lines[1].split() == ["op-1", "restart", "app", "running", "1/2", "done", "2/2", "1m00s", "ago", "-"]
    assert lines[2].split()[:4] == ["op-2", "rollout", "web@4", "paused"] and lines[2].endswith("canary is up")


def test_detail_view_has_the_spec_state_and_every_step():
    op = restart_op({"web-1": D}, {"web-2": F}, state=cpb.OP_FAILED, reason="web-2 failed", on_failure=cpb.ABORT)
    op.batches[1].nodes[0].error = "app: FATAL (exited too quickly)"
    op.batches[1].nodes[0].started_at, op.batches[1].nodes[0].done_at = NOW - 30, NOW - 10
    out = text_of(view.detail_view(op, NOW))
    assert "    id  op-1" in out and "target  group app on every node with the group" in out
    assert "on failure abort" in out and "state  failed  1/2 done, 1 failed" in out and "reason  web-2 failed" in out
    row = next(line for line in out.splitlines() if line.startswith("2 "))
    assert row.split()[:3] == ["2", "web-2", "failed"] and "after 20s" in row and "app: FATAL" in row
    paused = rollout_op({"web-1": D}, {"web-2": P}, state=cpb.OP_PAUSED)
    shown = text_of(view.detail_view(paused, NOW))
    assert "canary on web-1 is up" in shown and "1 canary" in shown
    assert "no nodes in the plan" in text_of(view.detail_view(restart_op(), NOW))


# -- the commands, against a stand-in controller -----------------------------------------------

class FakeController:
    """What fleetctl's Controller does: `call` answers in turn, `stream` plays the watches in turn
    (a watch is a list of Operations, ending early with a CommandError if one is in it)."""

    address = "ctl:1"

    def __init__(self, answers=(), watches=()):
        self.answers = list(answers)
        self.watches = list(watches)
        self.calls: list[tuple[str, object]] = []

    def call(self, method, request, *, timeout=None):
        self.calls.append((method, request))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def stream(self, method, request, *, timeout=None):
        self.calls.append((method, request))
        for item in self.watches.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


@pytest.fixture
def run():
    clean = {key: None for key in os.environ if key.startswith("FLEETCTL_")}
    runner = CliRunner(env={**clean, "FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml"})

    def invoke(*args: str):
        return runner.invoke(cli, ["--controller", "127.0.0.1:1", *args], catch_exceptions=False)
    return invoke


@pytest.fixture
def fake(monkeypatch):
    holder = FakeController()
    monkeypatch.setattr(Ctx, "controller", lambda self, command="": holder)
    monkeypatch.setattr(ops_module.time, "sleep", lambda seconds: None)
    return holder


def test_rolling_restart_shows_the_plan_starts_and_watches_to_success(run, fake):
    plan = restart_op({"web-1": P}, {"web-2": P}, op_id="", state=0)
    fake.answers = [plan, restart_op({"web-1": P}, {"web-2": P})]
    fake.watches = [[restart_op({"web-1": A}, {"web-2": P}),
                     restart_op({"web-1": D}, {"web-2": D}, current=1, state=cpb.OP_SUCCEEDED)]]
    result = run("rolling-restart", "app", "--label", "role=web", "--batch", "1", "-m", "new build")
    assert result.exit_code == 0, result.output
    (_, dry), (_, real) = fake.calls[:2]
    assert dry.dry_run and not real.dry_run and real.message == "new build" and real.spec.batch == 1
    assert dict(real.spec.selector.labels) == {"role": "web"} and real.spec.group == "app"
    assert fake.calls[2] == ("WatchOperation", cpb.GetOperationRequest(id="op-1"))
    out = result.stdout
    assert out.index("plan: rolling restart") < out.index("started operation op-1") < out.index("web-1: acting")
    assert out.rstrip().endswith("operation op-1 succeeded: 2/2 done in 1m")


def test_dry_run_stops_at_the_plan(run, fake):
    fake.answers = [restart_op({"web-1": P}, op_id="", state=0)]
    result = run("rolling-restart", "app", "--dry-run")
    assert result.exit_code == 0 and "batch 1: web-1" in result.stdout and len(fake.calls) == 1
    fake.answers = [restart_op({"web-1": P}, op_id="", state=0)]
    shown = json.loads(run("-o", "json", "rolling-restart", "app", "--dry-run").stdout)
    assert shown["batches"][0]["nodes"][0]["node"] == "web-1"


def test_an_empty_plan_is_a_failure_before_anything_starts(run, fake):
    fake.answers = [restart_op(op_id="", state=0)]
    result = run("rolling-restart", "app", "--nodes", "db-1")
    assert result.exit_code == 1 and "no selected node has group app (nodes db-1)" in result.stderr
    assert len(fake.calls) == 1


def test_detach_returns_once_started(run, fake):
    fake.answers = [restart_op({"a": P}, op_id="", state=0), restart_op({"a": P}, op_id="op-9")]
    result = run("rolling-restart", "app", "--detach")
    assert result.exit_code == 0 and "watch it with: fleetctl ops watch op-9" in result.stdout
    assert [method for method, _ in fake.calls] == ["StartOperation", "StartOperation"]


@pytest.mark.parametrize("state, code", [(cpb.OP_FAILED, 1), (cpb.OP_ABORTED, 1)])
def test_a_watch_ends_with_the_operations_outcome(run, fake, state, code):
    fake.watches = [[restart_op({"a": A}), restart_op({"a": F}, state=state, reason="a broke")]]
    result = run("ops", "watch", "op-1")
    assert result.exit_code == code and "a broke" in result.stdout.splitlines()[-1]


def test_a_watch_reconnects_after_losing_the_controller(run, fake):
    fake.watches = [[restart_op({"a": A}), CommandError("cannot reach controller ctl:1: Connection refused")],
                    [restart_op({"a": A})],  # closed early: also reopened
                    [restart_op({"a": D}, state=cpb.OP_SUCCEEDED)]]
    result = run("ops", "watch", "op-1")
    assert result.exit_code == 0 and result.stdout.count("a: acting") == 1 and "succeeded" in result.stdout
    assert "Connection refused; retrying in 0.5s" in result.stderr
    assert "ended the watch before the operation ended; retrying in 0.5s" in result.stderr


def test_a_watch_that_never_answered_fails_at_once(run, fake):
    fake.watches = [[CommandError("no such operation: op-7", 4)]]
    result = run("ops", "watch", "op-7")
    assert result.exit_code == 4 and result.stderr == "error: no such operation: op-7\n"


def test_json_watch_is_one_object_per_line(run, fake):
    fake.watches = [[restart_op({"a": A}), restart_op({"a": D}, state=cpb.OP_SUCCEEDED)]]
    result = run("-o", "json", "ops", "watch", "op-1")
    states = [json.loads(line)["state"] for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and states == ["OP_RUNNING", "OP_SUCCEEDED"]


def test_ctrl_c_detaches_without_stopping(run, fake):
    def interrupted():
        yield restart_op({"a": A})
        raise KeyboardInterrupt
    fake.watches = [interrupted()]
    result = run("ops", "watch", "op-1")
    assert result.exit_code == 130 and "detached; the operation continues: fleetctl ops watch op-1" in result.stderr
    assert [method for method, _ in fake.calls] == ["WatchOperation"]  # no pause, no abort


def test_a_paused_operation_keeps_the_watch_open_until_it_goes_on(run, fake):
    fake.watches = [[rollout_op({"a": D}, {"b": P}, state=cpb.OP_PAUSED, current=1),
                     rollout_op({"a": D}, {"b": A}, current=1),
                     rollout_op({"a": D}, {"b": D}, current=1, state=cpb.OP_SUCCEEDED)]]
    result = run("ops", "watch", "op-1")
    assert result.exit_code == 0 and "canary on a is up; promote with: fleetctl ops resume op-1" in result.stdout
    assert "operation op-1 resumed" in result.stdout


def test_rolling_config_push_sets_the_rollout_and_watches_it(run, fake, tmp_path):
    conf = tmp_path / "web.conf"
    conf.write_text("[program:web]\ncommand=sleep 9\n")
    reply = cpb.PushConfigResponse(revision=cpb.ConfigRevision(name="web", revision=4), target_nodes=["a", "b"],
                                   operation_id="op-1")
    fake.answers = [reply]
    fake.watches = [[rollout_op({"a": D}, {"b": D}, current=1, state=cpb.OP_SUCCEEDED)]]
    result = run("config", "push", str(conf), "--name", "web", "-m", "x", "--rolling", "--canary", "1",
                 "--auto-revert", "--max-unavailable", "50%", "--on-failure", "abort")
    assert result.exit_code == 0, result.output
    request = fake.calls[0][1]
    assert request.HasField("rollout") and request.rollout.kind == cpb.CONFIG_ROLLOUT
    assert (request.rollout.canary, request.rollout.auto_revert, request.rollout.max_unavailable,
            request.rollout.on_failure) == (1, True, "50%", cpb.ABORT)
    out = result.stdout
    assert out.index("web revision 4 stored") < out.index("started operation op-1") < out.index("plan: config rollout")


def test_a_plain_config_push_sets_no_rollout(run, fake):
    fake.answers = [cpb.PushConfigResponse(revision=cpb.ConfigRevision(name="web", revision=4))]
    result = run("config", "push", "/dev/null", "--name", "web", "-m", "x")
    assert result.exit_code == 0 and not fake.calls[0][1].HasField("rollout") and len(fake.calls) == 1


def test_a_rolling_push_the_controller_did_not_roll_out_is_a_failure(run, fake):
    fake.answers = [cpb.PushConfigResponse(revision=cpb.ConfigRevision(name="web", revision=4))]
    result = run("config", "push", "/dev/null", "--name", "web", "-m", "x", "--rolling")
    assert result.exit_code == 1 and "started no rollout" in result.stderr
    fake.answers = [cpb.PushConfigResponse(revision=cpb.ConfigRevision(name="web", revision=4), unchanged=True)]
    assert run("config", "push", "/dev/null", "--name", "web", "-m", "x", "--rolling").exit_code == 0


def test_pause_resume_abort_send_the_id_and_reason(run, fake):
    fake.answers = [restart_op({"a": A}, state=cpb.OP_PAUSED, reason="error rate"),
                    restart_op({"a": A}), restart_op({"a": S}, state=cpb.OP_ABORTED, reason="bad build")]
    paused = run("ops", "pause", "op-1", "--reason", "error rate")
    assert paused.exit_code == 0 and "operation op-1 paused — error rate" in paused.stdout
    assert run("ops", "resume", "op-1").exit_code == 0
    aborted = run("ops", "abort", "op-1", "--reason", "bad build")
    assert aborted.exit_code == 0 and "aborted — bad build" in aborted.stdout and "follow it" not in aborted.stdout
    assert fake.calls == [("PauseOperation", cpb.GetOperationRequest(id="op-1", reason="error rate")),
                          ("ResumeOperation", cpb.GetOperationRequest(id="op-1")),
                          ("AbortOperation", cpb.GetOperationRequest(id="op-1", reason="bad build"))]


def test_ops_list_and_show(run, fake):
    fake.answers = [cpb.ListOperationsResponse(), cpb.ListOperationsResponse(operations=[restart_op({"a": A})]),
                    restart_op({"a": A})]
    assert "no running or paused operations (--all" in run("ops", "list").stdout
    listed = run("ops", "list", "--all")
    assert "restart app" in listed.stdout and fake.calls[1][1].all
    assert "group app on every node" in run("ops", "show", "op-1").stdout


def test_a_controller_without_operations_is_named(run, fake):
    fake.answers = [CommandError("controller ctl:1: Method not implemented!")]
    result = run("ops", "list")
    assert result.exit_code == 1 and "does not run fleet operations yet" in result.stderr


# -- usage errors before any call --------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["rolling-restart", "app", "--batch", "2", "--max-unavailable", "1"], "either --batch or --max-unavailable"),
    (["rolling-restart", "app", "--max-unavailable", "0"], "at least 1 node"),
    (["rolling-restart", "app", "--max-unavailable", "150%"], "from 1% to 100%"),
    (["rolling-restart", "app", "--healthy-for", "10"], "--healthy-for: '10' is not a duration"),
    (["rolling-restart", "app", "--timeout", "0s"], "must be longer than 0s"),
    (["rolling-restart", "app", "--nodes", "a", "--label", "b=c"], "either --nodes or --label"),
    (["rolling-restart", "web-1:app"], "not a namespec"),
    (["rolling-restart", "app", "--on-failure", "retry"], "'retry' is not one of"),
    (["rolling-restart"], "Missing argument 'GROUP'"),
    (["config", "push", "/dev/null", "--name", "web", "-m", "x", "--canary", "1"], "--canary only with --rolling"),
    (["config", "push", "/dev/null", "--name", "web", "-m", "x", "--rolling", "--canary", "0"], "at least 1 node"),
    (["ops", "show", " "], "operation id required"),
    (["ops", "pause", ""], "operation id required"),
])
def test_usage_errors_are_one_line_before_any_call(run, args, words):
    result = run(*args)
    assert result.exit_code == 2 and words in result.stderr, result.stderr
    if "Missing" not in words and "not one of" not in words:  # click's own carry its usage line
        assert result.stderr.count("\n") == 1, result.stderr


def test_operations_need_the_controller():
    runner = CliRunner(env={key: None for key in os.environ if key.startswith("FLEETCTL_")})
    for args in (["rolling-restart", "app"], ["ops", "list"], ["ops", "watch", "op-1"], ["ops", "abort", "op-1"]):
        result = runner.invoke(cli, ["--node", "127.0.0.1:1", *args], catch_exceptions=False)
        assert result.exit_code == 2 and "talks to the controller" in result.stderr, args


def test_every_operations_command_has_an_example_in_its_help(run):
    for args in (["rolling-restart"], ["ops"], ["ops", "list"], ["ops", "show"], ["ops", "watch"], ["ops", "pause"],
                 ["ops", "resume"], ["ops", "abort"], ["config", "push"]):
        result = run(*args, "--help")
        assert result.exit_code == 0 and "Example" in result.stdout and "fleetctl " in result.stdout, args
