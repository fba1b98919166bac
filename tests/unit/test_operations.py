"""The face-neutral pieces of operations and the core's reread diff, without processes."""

from __future__ import annotations

import signal
import time

import pytest

from fleetvisor.agent.config.model import GroupConfig, ProcessConfig
from fleetvisor.agent.faults import Fault, FaultError
from fleetvisor.agent.operations import (ProcessResult, describe, make_namespec, signal_number,
                                         split_namespec)
from fleetvisor.agent.states import ProcessState
from fleetvisor.agent.supervisor import diff_groups


@pytest.mark.parametrize("spec, expected", [
    ("foo", ("foo", "foo")), ("grp:foo", ("grp", "foo")), ("grp:*", ("grp", None)),
    ("grp:", ("grp", None)), ("a:b:c", ("a", "b:c")), ("", ("", "")),
])
def test_split_namespec(spec, expected):
    assert split_namespec(spec) == expected


def test_make_namespec():
    assert make_namespec("foo", "foo") == "foo"
    assert make_namespec("grp", "foo") == "grp:foo"


@pytest.mark.parametrize("value, number", [
    ("HUP", signal.SIGHUP), ("sighup", signal.SIGHUP), (" term ", signal.SIGTERM),
    ("9", 9), (15, 15), ("0", 0), (True, 1), ("SIGCLD", signal.SIGCHLD),
])
def test_signal_number(value, number):
    assert signal_number(value) == number


@pytest.mark.parametrize("value", ["BOGUS", "SIG", "999", -1, None, [1], "1.5"])
def test_signal_number_refuses(value):
    with pytest.raises(ValueError):
        signal_number(value)


def test_describe_running():
    assert describe(ProcessState.RUNNING, start=1000, stop=0, now=1062, pid=7, spawnerr="",
                    name="x") == "pid 7, uptime 0:01:02"
    assert describe(ProcessState.RUNNING, start=0, stop=0, now=90061, pid=7, spawnerr="",
                    name="x") == "pid 7, uptime 1 day, 1:01:01"
    # the clock went back
    assert describe(ProcessState.RUNNING, start=2000, stop=0, now=1000, pid=7, spawnerr="",
                    name="x") == "pid 7, uptime 0:00:00"


def test_describe_failures_and_stops():
    assert describe(ProcessState.FATAL, start=1, stop=2, now=3, pid=0, spawnerr="boom",
                    name="x") == "boom"
    assert describe(ProcessState.BACKOFF, start=1, stop=2, now=3, pid=0, spawnerr="",
                    name="x") == 'unknown error (try "tail x")'
    assert describe(ProcessState.STOPPED, start=0, stop=0, now=3, pid=0, spawnerr="",
                    name="x") == "Not started"
    stop = int(time.mktime((2026, 3, 4, 17, 5, 0, 0, 0, -1)))
    assert describe(ProcessState.EXITED, start=1, stop=stop, now=3, pid=0, spawnerr="",
                    name="x") == "Mar 04 05:05 PM"
    assert describe(ProcessState.EXITED, start=1, stop=stop, now=3, pid=0, spawnerr="", name="x",
                    waiting="dependency db is STOPPED") == "start held: dependency db is STOPPED"
    for state in (ProcessState.STARTING, ProcessState.STOPPING, ProcessState.UNKNOWN):
        assert describe(state, start=1, stop=2, now=3, pid=9, spawnerr="e", name="x") == ""


def test_fault_error_text():
    assert FaultError(Fault.BAD_NAME, "foo").text == "BAD_NAME: foo"
    assert FaultError(Fault.SHUTDOWN_STATE).text == "SHUTDOWN_STATE"
    assert FaultError(Fault.NO_FILE, None).text == "NO_FILE"


def test_process_result_struct():
    result = ProcessResult("a", "g", Fault.SUCCESS, "OK", ProcessState.RUNNING)
    assert result.as_dict() == {"name": "a", "group": "g", "status": 80, "description": "OK"}
    assert result.ok and result.namespec == "g:a"
    assert not ProcessResult("a", "a", Fault.NOT_RUNNING, "NOT_RUNNING: a", ProcessState.STOPPED).ok


def group(name: str, command: str = "sleep 1", priority: int = 999) -> GroupConfig:
    return GroupConfig(name=name, priority=priority,
                       processes=(ProcessConfig(name=name, command=command, group=name),))


def test_diff_groups():
    current = [group("kept"), group("changed"), group("gone"), group("moved", priority=5)]
    new = [group("added"), group("kept"), group("changed", "sleep 2"), group("moved", priority=6)]
    assert diff_groups(new, current) == (["added"], ["changed", "moved"], ["gone"])
    assert diff_groups(current, current) == ([], [], [])
