"""The same config under stock supervisord 4.3.0 and under the agent: the same lifecycle lines."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import AGENT, SUPERVISORD, Daemon, write_config

AGENT_ENTRY = Path(sys.executable).parent / "fleetvisor-agent"

CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s

[program:steady]
command=/bin/sh -c "echo hello; exec sleep 1000"
startsecs=1

[program:crasher]
command=/bin/sh -c "echo oops >&2; exit 1"
startsecs=1
startretries=1

[program:oneshot]
command=/bin/sh -c "sleep 1.2; exit 0"
startsecs=1
autorestart=unexpected

[program:stubborn]
; stopwaitsecs > 1: stock reaps up to 1 s late (its poll timeout) and would log a second SIGKILL
command=/bin/sh -c "trap '' TERM; sleep 1000 & wait; sleep 1000"
stopwaitsecs=2
killasgroup=true
startsecs=0

[program:pair]
command=sleep 1000
process_name=%(program_name)s_%(process_num)d
numprocs=2
startsecs=0
"""

PROGRAMS = ("steady", "crasher", "oneshot", "stubborn", "pair_0", "pair_1")


def lifecycle(messages: list[str], name: str) -> list[str]:
    """The lines about one process, with pids masked."""
    pattern = re.compile(rf"(spawned: '{name}'|success: {name} |exited: {name} |gave up: {name} |"
                         rf"stopped: {name} |killing '{name}'|spawnerr: .*{name})")
    return [re.sub(r"\d{2,}", "N", m) for m in messages if pattern.search(m)]


def run(command, tmp_path, body: str, scenario: Callable[[Daemon, Path], None],
        extra_args: tuple[str, ...] = ()) -> list[str]:
    """The main-log messages of one daemon run through `scenario` and stopped with SIGTERM."""
    config = write_config(tmp_path, textwrap.dedent(body))
    d = Daemon(config, command, extra_args)
    try:
        scenario(d, config)
        assert d.stop(30) == 0
    finally:
        d.kill()
    return d.messages()


def lifecycle_scenario(d: Daemon, config: Path) -> None:
    d.wait_line(r"gave up: crasher entered FATAL", timeout=20)
    d.wait_line(r"exited: oneshot \(exit status 0; expected\)", timeout=20)
    d.wait_line(r"success: steady entered RUNNING", timeout=20)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, list[str]]:
    """Both daemons run the config once; every test below compares what they logged."""
    return {"stock": run(SUPERVISORD, tmp_path_factory.mktemp("stock"), CONFIG, lifecycle_scenario),
            "ours": run(AGENT, tmp_path_factory.mktemp("agent"), CONFIG, lifecycle_scenario)}


@pytest.mark.parametrize("name", PROGRAMS)
def test_lifecycle_lines_match_supervisord(logs, name):
    ours = lifecycle(logs["ours"], name)
    assert ours == lifecycle(logs["stock"], name)
    assert len(ours) >= 2  # the comparison saw something


def test_shutdown_lines_match(logs):
    for messages in logs.values():
        assert "WARN received SIGTERM indicating exit request" in messages
    first = {k: [m for m in v if m.startswith("INFO waiting for")][0] for k, v in logs.items()}
    assert first["ours"] == first["stock"]


# -- started as supervisord -----------------------------------------------------------------------

def usage_of(program: Path, flag: str) -> subprocess.CompletedProcess:
    """`./supervisord <flag>` run from the program's folder, so argv[0] is the same for both."""
    return subprocess.run(["./supervisord", flag], cwd=program.parent, capture_output=True, text=True,
                          timeout=20, check=False)


def option_flags(text: str) -> list[str]:
    return re.findall(r"^((?:-\w/)?--\w+)", text, re.MULTILINE)


@pytest.mark.parametrize("how", ["symlink", "copy"])
@pytest.mark.parametrize("flag", ["-h", "-?", "--help"])
def test_usage_as_supervisord_begins_as_stock(tmp_path, how, flag):
    (tmp_path / "stock").mkdir()
    (tmp_path / "ours").mkdir()
    stock, ours = tmp_path / "stock" / "supervisord", tmp_path / "ours" / "supervisord"
    stock.symlink_to(SUPERVISORD[0])
    if how == "symlink":
        ours.symlink_to(AGENT_ENTRY)
    else:
        shutil.copy(AGENT_ENTRY, ours)
    expected, got = usage_of(stock, flag), usage_of(ours, flag)
    assert got.returncode == expected.returncode == 0
    head = expected.stdout.splitlines()[:6]
    assert head[0] == "supervisord -- run a set of applications as daemons."
    assert head[2] == "Usage: ./supervisord [options]"
    assert got.stdout.splitlines()[:6] == head
    assert option_flags(got.stdout) == option_flags(expected.stdout)


def test_usage_under_its_own_name_names_the_agent():
    result = subprocess.run([str(AGENT_ENTRY), "-h"], capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("fleetvisor-agent -- ")
    assert lines[2] == f"Usage: {AGENT_ENTRY} [options]"
    bad = subprocess.run([str(AGENT_ENTRY), "--bogus"], capture_output=True, text=True, timeout=20,
                         check=False)
    assert bad.returncode == 2 and bad.stderr.endswith(f"For help, use {AGENT_ENTRY} -h\n")


# -- debug, trace and blather lines ---------------------------------------------------------------

RECORDER = Path(__file__).parent / "listeners" / "recorder.py"
SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")

# The lifecycle config, driven by supervisorctl and watched by an event listener.
VERBOSE_CONFIG = """
[unix_http_server]
file=%(here)s/sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/sock
""" + CONFIG + f"""
[eventlistener:lis]
command={sys.executable} {RECORDER} %(here)s/events.jsonl
events=PROCESS_STATE
"""

# The verbose lines supervisord writes for what happens in the run below, each reduced to what
# does not depend on timing or on the implementation (pids, fds, object addresses, serials).
DISPATCHER = r"<(\w+) at \d+ for <Subprocess at \d+ with name (\S+) in state ([A-Z]+)> \((\w+)\)>"
VERBOSE_LINES = {
    "fd closed": rf"^DEBG fd \d+ closed, stopped monitoring {DISPATCHER}$",
    "child quit": r"^DEBG (received SIGCHLD indicating a child quit)$",
    "kill": r"^DEBG killing (\S+) \(pid \d+\) (process group )?with signal (\w+)$",
    "signal": r"^DEBG sending (\S+) \(pid \d+\) sig (\w+)$",
    "output": r"^DEBG '(\S+)' (stdout|stderr) output:",
    "event sent": r"^DEBG event \d+ sent to listener (\S+)$",
    "event processed": r"^DEBG (\S+): event was processed$",
    "listener state": r"^DEBG (\S+): ([A-Z]+) -> ([A-Z]+)$",
    "xml-rpc": r"^TRAC XML-RPC method (?:called: )?(supervisor\.signalProcess)\(\)( returned successfully)?$",
    "shutdown state": r"^BLAT (\S+) state: [A-Z]+$",
    "http request": r'^TRAC (localhost):0 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                    r'"(POST /RPC2 HTTP/1\.1)" (200) \d+$',
}
# Read events come from the poll loop, so which pipes get one is a race with the exit; these
# two are written while the process runs (state left out: it is STARTING or RUNNING).
SURE_READS = {("POutputDispatcher", "steady", "stdout"), ("PEventListenerDispatcher", "lis", "stdout")}
EXIT_LINE = re.compile(r"^(WARN|INFO) (exited|stopped): ")


def verbose_shapes(messages: list[str]) -> dict[str, set[tuple]]:
    shapes: dict[str, set[tuple]] = {family: set() for family in VERBOSE_LINES}
    for message in messages:
        for family, pattern in VERBOSE_LINES.items():
            m = re.match(pattern, message)
            if m:
                groups = m.groups()
                if family == "fd closed" and groups[1] == "oneshot":
                    # it exits 0.2 s after startsecs, and stock (checking once a poll) may not
                    # have seen it RUNNING yet
                    groups = (*groups[:2], "*", *groups[3:])
                shapes[family].add(groups)
    return shapes


def read_events(messages: list[str]) -> set[tuple]:
    matches = (re.match(rf"^BLAT read event caused by {DISPATCHER}$", line) for line in messages)
    return {(m[1], m[2], m[4]) for m in matches if m}


def verbose_scenario(d: Daemon, config: Path) -> None:
    d.wait_line(r"gave up: crasher entered FATAL", timeout=20)
    d.wait_line(r"success: steady entered RUNNING", timeout=20)
    d.wait_line(r"success: lis entered RUNNING", timeout=20)
    subprocess.run([SUPERVISORCTL, "-c", str(config), "signal", "HUP", "steady"], check=True,
                   capture_output=True, timeout=20)
    d.wait_line(r"success: steady entered RUNNING", timeout=20, count=2)


@pytest.fixture(scope="module")
def verbose_logs(tmp_path_factory) -> dict[str, list[str]]:
    """Both daemons run the verbose config once at loglevel=blather (which logs every level)."""
    return {name: run(command, tmp_path_factory.mktemp(f"verbose-{name}"), VERBOSE_CONFIG, verbose_scenario,
                      ("-e", "blather"))
            for name, command in (("stock", SUPERVISORD), ("ours", AGENT))}


@pytest.mark.parametrize("family", VERBOSE_LINES)
def test_verbose_lines_carry_what_supervisord_writes(verbose_logs, family):
    stock = verbose_shapes(verbose_logs["stock"])[family]
    ours = verbose_shapes(verbose_logs["ours"])[family]
    assert stock, f"stock wrote no {family} line: the scenario no longer covers it"
    # supervisord skips some of these when an exit wins a race; the agent writes them all
    assert stock <= ours


def test_read_events_name_the_pipe_as_supervisord_does(verbose_logs):
    for name, messages in verbose_logs.items():
        assert SURE_READS <= read_events(messages), name


def test_child_quit_follows_each_exit_line(verbose_logs):
    ours = verbose_logs["ours"]
    exits = [i for i, m in enumerate(ours) if EXIT_LINE.match(m)]
    assert len(exits) >= 4  # crasher twice, steady on SIGHUP, the shutdown
    for i in exits:
        assert ours[i + 1] == "DEBG received SIGCHLD indicating a child quit", ours[i:i + 2]
