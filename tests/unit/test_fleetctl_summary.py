"""fleetctl's summary view, from FleetStatus messages that the controller's own summary code
built (controller/summary.py and service.summary_message): a 100-node fleet fits one screen."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from rich.console import Console

from fleetvisor.cli import fleet as fleet_cli
from fleetvisor.cli import render, summaryview
from fleetvisor.cli.client import CommandError
from fleetvisor.cli.exitcodes import status_code
from fleetvisor.cli.fleet import StatusShape, parse_states, status_request
from fleetvisor.cli.main import cli
from fleetvisor.cli.settings import Settings, SettingsError, resolve
from fleetvisor.controller import summary
from fleetvisor.controller.service import summary_message
from fleetvisor.controller.views import NodeInfo, NodeProcesses
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as cpb

NOW = 1_700_000_000.0
GROUPS = ("api", "cache", "jobs", "web")


def proc(group: str, i: int, state: str = "RUNNING") -> apb.ProcessInfo:
    return apb.ProcessInfo(group=group, name=f"{group}_{i:02}", namespec=f"{group}:{group}_{i:02}",
                           state=apb.ProcessState.Value(state), statename=state, stop=NOW - 120,
                           description="Exited too quickly (process log may have details)" if state != "RUNNING"
                           else "pid 1, uptime 1:00:00")


def fleet_of(nodes: int, broken: dict[tuple[int, str, int], str], down: tuple[int, ...] = ()) -> cpb.FleetStatus:
    """`nodes` nodes x 4 groups x 5 processes; `broken` maps (node, group, i) to a state."""
    entries = []
    for n in range(nodes):
        name = f"node-{n:03}"
        procs = [proc(g, i, broken.get((n, g, i), "RUNNING")) for g in GROUPS for i in range(5)]
        info = NodeInfo(name, f"10.0.{n // 250}.{n % 250}:7401", up=n not in down, reachable=n not in down,
                        last_heartbeat=NOW - (300 if n in down else 1), applied_revision="app@4",
                        desired_revision="app@4", error="unreachable (connection refused)" if n in down else "")
        entries.append(NodeProcesses(info, procs))
    message = cpb.FleetStatus(now=NOW, controller_id="ctl-1")
    message.summary.CopyFrom(summary_message(summary.summarize(entries, [], NOW)))
    return message


def screen(status: cpb.FleetStatus, width: int = 80, height: int | None = 23) -> list[str]:
    """As fleetctl draws it on an 80x24 terminal: 23 lines, the last one is for the prompt."""
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(summaryview.summary_view(status, width=width, height=height))
    return console.file.getvalue().splitlines()


def test_a_hundred_nodes_fit_one_screen_with_the_problems_on_top():
    broken = {(7, "jobs", 1): "FATAL", (42, "jobs", 3): "BACKOFF", (3, "web", 0): "STOPPED",
              (9, "web", 0): "STOPPED", (11, "web", 0): "STOPPED"}
    status = fleet_of(100, broken, down=(55,))
    lines = screen(status)
    assert len(lines) <= 23 and all(len(line) <= 80 for line in lines)
    assert lines[0] == "nodes: 99/100 up, 1 unreachable   processes: 1975/2000 RUNNING   problems: 3"
    # groups with problems first (jobs: FATAL/BACKOFF; the others: node-055 is down), then by name
    assert lines[1].split()[:2] == ["api", "495/500"] and "UNREACHABLE 5 (node-055)" in lines[1]
    jobs = next(line for line in lines if line.startswith("jobs"))
    # the worst states keep their node names, the last gives way to the width (node-055 is a problem below)
    assert jobs == "jobs   493/500 RUNNING  FATAL 1 (node-007)  BACKOFF 1 (node-042)  UNREACHABLE 5"
    web = next(line for line in lines if line.startswith("web"))
    assert web.endswith("UNREACHABLE 5 (node-055)  STOPPED 3 (node-003, +2 more)")  # 80 columns: cut
    wide = next(line for line in screen(status, width=120) if line.startswith("web"))
    assert wide.endswith("STOPPED 3 (node-003, node-009, node-011)")
    assert lines[5] == "PROBLEMS (3)"
    assert lines[6].split()[:3] == ["DOWN", "node-055", "-"] and "5m00s ago" in lines[6]
    assert lines[7].split()[:4] == ["FATAL", "node-007", "jobs:jobs_01", "2m00s"]
    assert lines[8].split()[:3] == ["BACKOFF", "node-042", "jobs:jobs_03"]
    assert len(lines) == 9
    assert status_code(status) == 3


def test_many_problems_are_cut_to_the_height_with_how_many_more():
    broken = {(n, "jobs", 0): "FATAL" for n in range(60)}
    lines = screen(fleet_of(100, broken))
    assert len(lines) == 23
    assert lines[-1] == f"... {60 - 16} more problems: fleetctl status --problems"
    assert sum(line.startswith("FATAL") for line in lines) == 16
    assert all(len(line) <= 80 for line in lines)
    assert len(screen(fleet_of(100, broken), height=None)) == 1 + 4 + 1 + 60  # off a terminal: all of it


def test_every_state_keeps_its_count_in_the_width():
    broken = {(n, "jobs", 0): "FATAL" for n in range(60)}
    jobs = next(line for line in screen(fleet_of(100, broken, down=(3,))) if line.startswith("jobs"))
    assert jobs.startswith("jobs   436/500 RUNNING  FATAL 59 (node-000, ") and jobs.endswith(" UNREACHABLE 5")
    assert len(jobs) <= 80


def test_a_states_node_list_gives_way_to_the_width():
    broken = {(n, "web", 0): "STOPPED" for n in range(40)}
    line = next(line for line in screen(fleet_of(100, broken)) if line.startswith("web"))
    assert line.startswith("web    460/500 RUNNING  STOPPED 40 (node-000, ") and line.endswith(" more)")
    shown = line.count("node-")
    assert line.endswith(f"+{40 - shown} more)") and len(line) <= 80


def test_all_running_is_one_line_per_group_and_exit_0():
    status = fleet_of(100, {})
    assert screen(status) == ["nodes: 100/100 up   processes: 2000/2000 RUNNING   problems: 0",
                              "api    500/500 RUNNING", "cache  500/500 RUNNING", "jobs   500/500 RUNNING",
                              "web    500/500 RUNNING"]
    assert status_code(status) == 0


@pytest.mark.parametrize("groups, problems, total, height, fitted", [
    (4, 3, 3, 24, (4, 3)),        # everything fits
    (4, 60, 60, 24, (4, 17)),     # 1 headline + 4 groups + title + 17 + "more" = 24
    (40, 2, 2, 24, (19, 2)),      # the groups are cut: 19 + "more groups" + title + 2
    (40, 60, 60, 24, (3, 17)),    # both: the groups keep three lines (and "more groups")
    (4, 0, 0, 3, (1, 0)),         # a tiny window: a group and "more groups"
])
def test_fit(groups, problems, total, height, fitted):
    assert summaryview.fit(groups, problems, total, height) == fitted


def test_the_request_the_options_make():
    auto = status_request([], [], StatusShape(), 100)
    assert (auto.summary, auto.summary_above) == (True, 100)
    named = status_request(["web-1"], [], StatusShape(), 100)
    assert not named.summary
    forced = status_request(["web-*"], [], StatusShape(summary=True), 100)
    assert (forced.summary, forced.summary_above) == (True, 0)
    assert not status_request([], [], StatusShape(summary=False), 100).summary
    filtered = status_request([], [], StatusShape(states=("FATAL",), problems=True), 100)
    assert (filtered.summary, list(filtered.states), filtered.problems) == (False, ["FATAL"], True)
    assert parse_states(["fatal,BACKOFF", "unhealthy", "FATAL"]) == ("FATAL", "BACKOFF", "UNHEALTHY")
    with pytest.raises(CommandError, match="unknown state NOPE"):
        parse_states(["FATAL,nope"])


def test_summary_above_is_a_setting(tmp_path, monkeypatch):
    for key in ("FLEETCTL_SUMMARY_ABOVE", "FLEETCTL_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / "fleetctl.toml"
    path.write_text("summary_above = 300\n")
    assert resolve({}, str(path)).summary_above == 300
    assert Settings().summary_above == 100
    monkeypatch.setenv("FLEETCTL_SUMMARY_ABOVE", "20")
    assert resolve({}, str(path)).summary_above == 20
    monkeypatch.setenv("FLEETCTL_SUMMARY_ABOVE", "many")
    with pytest.raises(SettingsError, match=r"summary_above \(FLEETCTL_SUMMARY_ABOVE\) must be a whole number"):
        resolve({}, str(path))


@pytest.mark.parametrize("args, error", [
    (["--summary", "--all"], "error: --summary and --all are two different views: give one of them"),
    (["--state", "FATAL,asleep"], "error: --state: unknown state ASLEEP (known: BACKOFF, EXITED, FATAL, RUNNING, "
                                  "STARTING, STOPPED, STOPPING, UNHEALTHY, UNKNOWN)"),
])
def test_bad_status_options_are_one_usage_line(args, error, monkeypatch):
    monkeypatch.setenv("FLEETCTL_CONFIG", "/nonexistent")
    result = CliRunner().invoke(cli, ["--controller", "127.0.0.1:1", "status", *args])
    assert result.exit_code == 2 and result.output.strip() == error


def test_watch_redraws_the_summary_in_place_fitted_to_the_terminal(monkeypatch):
    """On a terminal every frame is cut to the window's height (one line kept for the cursor) and
    drawn over the last one: the cursor goes back up by the frame's lines, nothing scrolls."""
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80, height=12, color_system=None)
    monkeypatch.setattr(render, "out", terminal)
    frames = [fleet_of(100, {(n, "jobs", 0): "FATAL" for n in range(k)}) for k in (5, 60)]

    def stream(*_args, **_kwargs):
        yield from frames
        raise KeyboardInterrupt  # Ctrl-C, the way a watch ends
    monkeypatch.setattr(fleet_cli.reconnect, "reconnecting", stream)
    assert fleet_cli._watch(SimpleNamespace(json=False, controller=lambda: None),
                            cpb.StatusRequest(summary=True)) == 0
    drawn = re.split(r"\r(?:\x1b\[2K\x1b\[1A)+\x1b\[2K", terminal.file.getvalue().replace("\x1b[?25l", ""))
    drawn = [frame.replace("\x1b[?25h", "").rstrip("\n").splitlines() for frame in drawn]
    assert len(drawn) == 3  # two frames, and the last one again as Live stops
    assert [len(frame) for frame in drawn] == [11, 11, 11]
    assert drawn[0][5] == "PROBLEMS (5)" and drawn[1][-1] == "... 56 more problems: fleetctl status --problems"
    moves = re.findall(r"\r((?:\x1b\[2K\x1b\[1A)+)", terminal.file.getvalue())
    assert [m.count("\x1b[1A") for m in moves] == [10, 10]  # back to the top of the last frame
