"""The same config under stock supervisord 4.3.0 and under the agent: the same lifecycle lines."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
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
command=sleep 1000
startsecs=1

[program:crasher]
command=/bin/sh -c "exit 1"
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


def run(command, tmp_path) -> list[str]:
    config = write_config(tmp_path, textwrap.dedent(CONFIG))
    d = Daemon(config, command)
    try:
        d.wait_line(r"gave up: crasher entered FATAL", timeout=20)
        d.wait_line(r"exited: oneshot \(exit status 0; expected\)", timeout=20)
        d.wait_line(r"success: steady entered RUNNING", timeout=20)
        assert d.stop(30) == 0
    finally:
        d.kill()
    return d.messages()


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, list[str]]:
    """Both daemons run the config once; every test below compares what they logged."""
    return {"stock": run(SUPERVISORD, tmp_path_factory.mktemp("stock")),
            "ours": run(AGENT, tmp_path_factory.mktemp("agent"))}


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
                          timeout=20)


def option_flags(text: str) -> list[str]:
    return re.findall(r"^((?:-\w/)?--\w+)", text, re.M)


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
    result = subprocess.run([str(AGENT_ENTRY), "-h"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("fleetvisor-agent -- ")
    assert lines[2] == f"Usage: {AGENT_ENTRY} [options]"
    bad = subprocess.run([str(AGENT_ENTRY), "--bogus"], capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and bad.stderr.endswith(f"For help, use {AGENT_ENTRY} -h\n")
