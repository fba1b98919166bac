"""fleetctl's fleet views, rendered from hand-built controller messages."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from fleetvisor.cli import fleetrender as view
from fleetvisor.cli import render
from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import controller_pb2 as cpb

NOW = 1_700_000_000.0


def text_of(renderable, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def styled(renderable) -> str:
    console = Console(file=io.StringIO(), width=160, color_system="standard", force_terminal=True, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def proc(namespec: str, state: str, description: str = "") -> pb.ProcessInfo:
    group, _, name = namespec.rpartition(":")
    return pb.ProcessInfo(group=group or name, name=name, namespec=namespec, statename=state,
                          description=description)


def fleet() -> cpb.FleetStatus:
    return cpb.FleetStatus(now=NOW, controller_id="ctl-1", nodes=[
        cpb.NodeProcesses(
            node=cpb.NodeInfo(name="web-1", address="10.0.0.5:7400", up=True, reachable=True, state_as_of=NOW,
                              applied_revision="web@3", desired_revision="web@3", last_heartbeat=NOW - 2),
            processes=[proc("app", "RUNNING", "pid 12, uptime 0:01:02"),
                       proc("workers:worker_00", "FATAL", "Exited too quickly [process log may have details]")]),
        cpb.NodeProcesses(
            node=cpb.NodeInfo(name="web-2", address="10.0.0.6:7400", up=False, reachable=False,
                              state_as_of=NOW - 12, last_heartbeat=NOW - 40, applied_revision="web@2",
                              desired_revision="web@3", error="unreachable (connection refused)"),
            processes=[proc("app", "RUNNING", "pid 99, uptime 1:00:00")]),
        cpb.NodeProcesses(
            node=cpb.NodeInfo(name="db-1", address="10.0.0.7:7400", up=True, reachable=False, state_as_of=0),
            processes=[]),
    ])


# -- status ------------------------------------------------------------------------------------

def test_status_view_groups_processes_under_node_headers():
    lines = [line.rstrip() for line in text_of(view.status_view(fleet())).splitlines()]
    assert lines[0].split() == ["web-1", "10.0.0.5:7400", "up", "reachable", "live", "rev", "web@3"]
    assert lines[1].split()[:3] == ["app", "RUNNING", "pid"] and lines[1].startswith("  ")
    assert lines[2].split()[:2] == ["workers:worker_00", "FATAL"]
    assert "[process log may have details]" in lines[2]  # user text is not taken for markup
    # the STATE column lines up across the rows
    assert lines[1].index("RUNNING") == lines[2].index("FATAL")
    assert lines[3].startswith("web-2") and "DOWN (last heartbeat 40s ago)" in lines[3]
    assert "UNREACHABLE" in lines[3] and "stale 12s" in lines[3] and "rev web@2 (desired web@3)" in lines[3]
    assert lines[4].strip() == "unreachable (connection refused)"
    assert lines[5].split()[:2] == ["app", "RUNNING"]
    assert lines[1].index("RUNNING") == lines[5].index("RUNNING")
    assert lines[6].startswith("db-1") and "UNREACHABLE" in lines[6] and "no data" in lines[6] and "rev -" in lines[6]
    assert lines[7].strip() == "(no processes)"
    assert lines[8] == "nodes: 1 up, 1 down, 2 unreachable   processes: 3 (2 RUNNING, 1 FATAL)"


def test_status_view_colours_states_and_flags_bad_nodes():
    out = styled(view.status_view(fleet()))
    assert "\x1b[32mRUNNING" in out  # green
    assert "\x1b[1;31mFATAL" in out  # bold red
    assert "\x1b[1;31mDOWN" in out and "\x1b[1;31mUNREACHABLE" in out


def test_freshness():
    node = cpb.NodeInfo(reachable=True, state_as_of=NOW - 100)
    assert view.freshness(node, NOW) == "live"  # a connected stream keeps the cache current
    assert view.freshness(cpb.NodeInfo(state_as_of=NOW - 12.7), NOW) == "stale 12s"
    assert view.freshness(cpb.NodeInfo(), NOW) == "no data"


def test_empty_fleet_says_so():
    text = text_of(view.status_view(cpb.FleetStatus(now=NOW)))
    assert "no nodes match" in text and "nodes: 0 up, 0 down, 0 unreachable   processes: 0" in text


def test_summary_counts_node_categories_and_states_in_order():
    summary = view.summarize(fleet().nodes)
    # web-2 is DOWN and UNREACHABLE: counted in both, as its header shows both
    assert (summary.up, summary.down, summary.unreachable, summary.processes) == (1, 1, 2, 3)
    summary.states.update({"STOPPED": 2, "WEIRD": 1})
    assert view.summary_text(summary).plain == (
        "nodes: 1 up, 1 down, 2 unreachable   processes: 6 (2 RUNNING, 2 STOPPED, 1 FATAL, 1 WEIRD)")


@pytest.mark.parametrize("up, reachable", [(u, r) for u in (True, False) for r in (True, False)])
def test_summary_counts_agree_with_the_node_headers(up, reachable):
    """Every combination of up and reachable, one node each and all four together: the summary's
    counts are the number of headers that say "up  reachable", "DOWN" and "UNREACHABLE"."""
    def node(name: str, up: bool, reachable: bool) -> cpb.NodeProcesses:
        return cpb.NodeProcesses(node=cpb.NodeInfo(name=name, address="10.0.0.9:7401", up=up, reachable=reachable,
                                                   state_as_of=NOW, last_heartbeat=NOW - 30))
    combos = [(u, r) for u in (True, False) for r in (True, False)]
    for nodes in ([node("n", up, reachable)], [node(f"n{i}", u, r) for i, (u, r) in enumerate(combos)]):
        status = cpb.FleetStatus(now=NOW, nodes=nodes)
        lines = text_of(view.status_view(status)).splitlines()
        headers = [line for line in lines if line.startswith("n") and "10.0.0.9:7401" in line]
        assert len(headers) == len(nodes)
        shown = (sum(" up  reachable" in h for h in headers), sum("DOWN" in h for h in headers),
                 sum("UNREACHABLE" in h for h in headers))
        assert lines[-1].startswith(f"nodes: {shown[0]} up, {shown[1]} down, {shown[2]} unreachable"), lines[-1]


# -- nodes -------------------------------------------------------------------------------------

def test_nodes_table_highlights_revision_mismatch():
    nodes = [cpb.NodeInfo(name="web-1", address="10.0.0.5:7400", up=True, reachable=True,
                          labels={"role": "web", "dc": "east"}, agent_version="0.1.0", applied_revision="web@3",
                          desired_revision="web@3", last_heartbeat=NOW - 3),
             cpb.NodeInfo(name="web-2", up=True, reachable=False, applied_revision="web@2",
                          desired_revision="web@3"),
             cpb.NodeInfo(name="web-3", up=False)]
    lines = text_of(view.nodes_table(nodes, NOW)).splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "UP", "LABELS", "AGENT", "APPLIED", "DESIRED", "HEARTBEAT"]
    assert lines[1].split() == ["web-1", "10.0.0.5:7400", "up", "dc=east,role=web", "0.1.0", "web@3", "web@3",
                                "3s", "ago"]
    assert lines[2].split() == ["web-2", "-", "unreachable", "-", "-", "web@2", "web@3", "never"]
    assert lines[3].split() == ["web-3", "-", "DOWN", "-", "-", "-", "-", "never"]
    out = styled(view.nodes_table(nodes, NOW))
    assert "\x1b[1;33mweb@2" in out and "\x1b[1;33mweb@3" in out  # the mismatched pair
    assert out.count("\x1b[1;33m") == 2


# -- control -----------------------------------------------------------------------------------

def control_reply() -> list:
    return [cpb.NodeResult(node="web-1", ok=False, seconds=0.42, results=[
                pb.ProcessResult(name="app", ok=True),
                pb.ProcessResult(name="workers:worker_00", ok=False, status="SPAWN_ERROR")]),
            cpb.NodeResult(node="web-2", ok=False, seconds=5.0, error="unreachable (connection refused)"),
            cpb.NodeResult(node="web-3", ok=False, seconds=0.1, results=[
                pb.ProcessResult(name="app", ok=False, status="ALREADY_STARTED")])]


def test_control_table_one_row_per_process_node_columns_once():
    lines = [line.rstrip() for line in text_of(view.control_table(control_reply(), "start")).splitlines()]
    assert lines[0].split() == ["NODE", "RESULT", "TIME", "PROCESS", "OUTCOME"]
    assert lines[1].split() == ["web-1", "failed", "0.4s", "app", "started"]
    assert lines[2].split() == ["workers:worker_00", "ERROR", "(spawn", "error)"]
    assert lines[3].split()[:4] == ["web-2", "failed", "5.0s", "-"] and "connection refused" in lines[3]
    # a start of a started process is not a failure, as in supervisorctl
    assert lines[4].split() == ["web-3", "ok", "0.1s", "app", "ERROR", "(already", "started)"]


def test_control_table_verbs_per_action():
    reply = [cpb.NodeResult(node="n", ok=True, results=[pb.ProcessResult(name="app", ok=True)])]
    for action, verb in (("stop", "stopped"), ("restart", "restarted"), ("signal", "signalled")):
        assert verb in text_of(view.control_table(reply, action))
    empty = [cpb.NodeResult(node="n", ok=True)]
    assert "nothing matched on this node" in text_of(view.control_table(empty, "start"))


# -- config ------------------------------------------------------------------------------------

def test_push_line():
    stored = cpb.PushConfigResponse(revision=cpb.ConfigRevision(name="web", revision=4), target_nodes=["a", "b"])
    assert view.push_line(stored).plain == "web revision 4 stored; targets: a, b"
    same = cpb.PushConfigResponse(revision=cpb.ConfigRevision(name="web", revision=3), unchanged=True)
    assert view.push_line(same).plain == "web unchanged (revision 3 is current); targets: (none)"
    rollback = cpb.PushConfigResponse(revision=cpb.ConfigRevision(name="web", revision=5, rollback_of=2),
                                      target_nodes=["a"])
    assert view.push_line(rollback).plain == "web revision 5 stored (rollback to revision 2); targets: a"


def test_history_table_marks_rollbacks_and_the_current_revision():
    reply = cpb.ConfigHistoryResponse(current_revision=3, revisions=[
        cpb.ConfigRevision(name="web", revision=1, author="alice@h", message="first", created_at=NOW - 3600),
        cpb.ConfigRevision(name="web", revision=2, author="bob@h", message="4 workers", created_at=NOW - 60),
        cpb.ConfigRevision(name="web", revision=3, author="alice@h", message="too many", created_at=NOW,
                           rollback_of=1)])
    lines = [line.rstrip() for line in text_of(view.history_table(reply)).splitlines()]
    assert lines[0].split() == ["REV", "TIME", "AUTHOR", "MESSAGE", "NOTE"]
    assert lines[1].split()[0] == "1" and lines[1].split()[3:] == ["alice@h", "first"]
    assert lines[2].split()[3:] == ["bob@h", "4", "workers"]
    assert lines[3].split()[3:] == ["alice@h", "too", "many", "rollback", "to", "1,", "current"]


def test_config_status_and_list_tables():
    status = [cpb.NodeConfigStatus(node="web-1", desired_revision="web@3", applied_revision="web@3", in_sync=True,
                                   up=True),
              cpb.NodeConfigStatus(node="web-2", desired_revision="web@3", applied_revision="web@2", in_sync=False,
                                   last_error="numprocs: not an integer", attempts=3, edited_by_hand=True)]
    lines = text_of(view.config_status_table(status)).splitlines()
    assert lines[0].split() == ["NODE", "UP", "DESIRED", "APPLIED", "IN", "SYNC", "EDITED", "BY", "HAND", "LAST",
                                "ERROR"]
    assert lines[1].split() == ["web-1", "yes", "web@3", "web@3", "yes", "-", "-"]
    assert lines[2].split()[:6] == ["web-2", "no", "web@3", "web@2", "no", "yes"]
    assert "numprocs: not an integer (3 failed attempts)" in lines[2]
    configs = [cpb.ConfigSummary(name="web", current_revision=3, assignment=cpb.Assignment(labels={"role": "web"}),
                                 target_nodes=["web-1", "web-2"], updated_at=NOW - 60),
               cpb.ConfigSummary(name="db", current_revision=1, assignment=cpb.Assignment(nodes=["db-1"]))]
    lines = text_of(view.configs_table(configs, NOW)).splitlines()
    assert lines[1].split() == ["web", "3", "labels", "role=web", "web-1,", "web-2", "1m00s", "ago"]
    assert lines[2].split() == ["db", "1", "nodes", "db-1", "-", "never"]


def test_revision_line():
    rev = cpb.ConfigRevision(name="web", revision=5, author="alice@h", message="undo", rollback_of=2)
    assert view.revision_line(rev).plain == "web revision 5  -  by alice@h  (rollback to 2)  undo"


# -- diff --------------------------------------------------------------------------------------

def test_diff_lines_are_a_unified_diff_with_revision_labels():
    old = "[program:app]\ncommand=sleep 1\n"
    new = "[program:app]\ncommand=sleep 2\nnumprocs=2"  # no final newline: no "\ No newline" noise
    assert view.diff_lines(old, new, "web@1", "web@2") == [
        "--- web@1", "+++ web@2", "@@ -1,2 +1,3 @@", " [program:app]", "-command=sleep 1", "+command=sleep 2",
        "+numprocs=2"]
    assert view.diff_lines(old, old, "a", "b") == []


def test_diff_colours():
    assert [view.diff_style(line) for line in ("--- a", "+++ b", "@@ -1 +1 @@", "+x", "-y", " z", "")] == [
        "bold", "bold", "cyan", "green", "red", "", ""]
    out = styled(view.diff_text(["@@ -1 +1 @@", "-[program:old]", "+[program:new]", " same"]))
    assert "\x1b[36m@@ -1 +1 @@" in out
    assert "\x1b[31m-[program:old]" in out  # brackets survive: config text is never markup
    assert "\x1b[32m+[program:new]" in out
    assert "\n same\n" in out


# -- audit and leader --------------------------------------------------------------------------

def test_audit_table():
    entries = [cpb.AuditEntry(time=NOW, who="alice@h", action="config.push", detail='{"name": "web"}', ok=True,
                              result="revision 4"),
               cpb.AuditEntry(time=NOW, who="", action="control.restart", ok=False, result="web-2 unreachable")]
    lines = text_of(view.audit_table(entries)).splitlines()
    assert lines[0].split() == ["TIME", "WHO", "ACTION", "DETAIL", "RESULT"]
    assert lines[1].split()[2:] == ["alice@h", "config.push", "name=web", "ok", "revision", "4"]
    assert lines[2].split()[2:] == ["-", "control.restart", "-", "failed", "web-2", "unreachable"]


def test_leader_line():
    follower = cpb.LeaderInfo(leader_id="ctl-1", leader_address="10.0.0.1:7500", controller_id="ctl-2")
    assert view.leader_line(follower).plain == "leader: ctl-1 at 10.0.0.1:7500  (answered by follower ctl-2)"
    itself = cpb.LeaderInfo(leader_id="ctl-1", leader_address="10.0.0.1:7500", controller_id="ctl-1", is_leader=True)
    assert view.leader_line(itself).plain.endswith("(answered by the leader)")
    assert "no controller leads" in view.leader_line(cpb.LeaderInfo(controller_id="ctl-2")).plain


def test_audit_detail_is_compact_key_values():
    from fleetvisor.cli.fleetrender import audit_detail
    detail = ('{"labels": {"role": "web"}, "message": "first", "name": "web", "nodes": [], "rolling": false,'
              ' "patterns": ["*:app", "db-1:worker"]}')
    assert audit_detail(detail) == "labels=role=web message=first name=web patterns=*:app,db-1:worker"
    assert audit_detail("not json") == "not json"


# -- where views go: a terminal, or a pipe -------------------------------------------------------

LONG_ENTRIES = [
    cpb.AuditEntry(time=NOW, who="operator-with-a-long-name@build-host-17.example.com (unverified)",
                   action="config.push", ok=True, result="extra revision 12 for web-1, web-2, web-3, db-1",
                   detail='{"name": "extra", "nodes": ["web-1", "web-2", "web-3", "db-1"], '
                          '"message": "raise numprocs to four because the queue backs up at noon"}'),
    cpb.AuditEntry(time=NOW, who="bob@h", action="control.restart", ok=False,
                   result="web-2: cannot reach 10.0.0.12:7400: Connection refused"),
]


def test_off_a_terminal_a_table_keeps_every_value_whole_one_row_per_line(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    render.print_view(view.audit_table(LONG_ENTRIES))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["TIME", "WHO", "ACTION", "DETAIL", "RESULT"]
    assert len(lines[1]) > 80  # wider than the 80 columns a pipe is assumed to have: nothing folded
    for entry, line in zip(LONG_ENTRIES, lines[1:]):
        for value in (entry.who, entry.action, view.audit_detail(entry.detail) or "-", entry.result):
            assert value in line
    assert all(line == line.rstrip() for line in lines)  # no padding left at line ends for diff or grep


def test_on_a_terminal_a_table_fits_the_window(monkeypatch):
    screen = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None, highlight=False)
    monkeypatch.setattr(render, "out", screen)
    render.print_view(view.audit_table(LONG_ENTRIES))
    lines = screen.file.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80 and len(lines) > 3  # long cells wrap within their column
    assert lines[0].split() == ["TIME", "WHO", "ACTION", "DETAIL", "RESULT"]  # and no column is dropped


def test_show_prints_json_or_the_view(capsys):
    reply = cpb.LeaderInfo(leader_id="ctl-1", leader_address="10.0.0.1:7500", controller_id="ctl-1", is_leader=True)
    built = []
    render.show(True, reply, lambda: built.append(1))
    assert json.loads(capsys.readouterr().out)["leader_id"] == "ctl-1" and not built  # the view is not built
    render.show(False, reply, lambda: view.leader_line(reply))
    assert capsys.readouterr().out == "leader: ctl-1 at 10.0.0.1:7500  (answered by the leader)\n"
    render.show(True, {"node": "n", "processes": [pb.ProcessInfo(name="app")]}, lambda: None)
    assert json.loads(capsys.readouterr().out)["processes"][0]["name"] == "app"  # messages inside plain values


def test_a_stale_answer_is_one_warning_line_and_a_current_one_none():
    assert view.stale_line(cpb.Staleness(), 100.0) is None
    line = view.stale_line(cpb.Staleness(etcd_unavailable=True, as_of=49.0,
                                         reason="etcd is unavailable at 127.0.0.1:2379: connection refused"), 100.0)
    assert line is not None and "\n" not in line.plain
    assert line.plain.startswith("warning: stale: etcd is unavailable at 127.0.0.1:2379: connection refused;")
    assert "(51s ago)" in line.plain
