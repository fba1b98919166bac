"""The pure process state machine, driven with an explicit clock and a recording host."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from fleetvisor.agent.config.model import AutoRestart, ProcessConfig
from fleetvisor.agent.lifecycle import Lifecycle, SpawnError, describe_wait_status
from fleetvisor.agent.states import ProcessState as S
from fleetvisor.agent.states import SupervisorState

RUNNING = SupervisorState.RUNNING


def exit_status(code: int) -> int:
    return code << 8


def killed_by(sig: int) -> int:
    return sig


class Host:
    """Records what the lifecycle asks for; spawn outcomes are scripted."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []
        self.changes: list[tuple[S, S, bool | None]] = []
        self.kills: list[tuple[int, int]] = []
        self.spawn_results: list[int | str] = []
        self.next_pid = 100
        self.kill_error: OSError | None = None

    def spawn(self) -> int:
        if self.spawn_results:
            result = self.spawn_results.pop(0)
            if isinstance(result, str):
                raise SpawnError(result)
            return result
        self.next_pid += 1
        return self.next_pid

    def kill(self, pid: int, sig: int) -> None:
        if self.kill_error:
            raise self.kill_error
        self.kills.append((pid, sig))

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def state_changed(self, old, new, expected) -> None:
        self.changes.append((old, new, expected))

    def messages(self) -> list[str]:
        return [m for _, m in self.logs]


def make(**kw) -> tuple[Lifecycle, Host]:
    host = Host()
    kw.setdefault("name", "cat")
    kw.setdefault("command", "/bin/cat")
    return Lifecycle(ProcessConfig(**kw), host), host


def test_autostart_then_running_after_startsecs():
    lc, host = make(startsecs=1)
    lc.tick(100.0, RUNNING)
    assert lc.state == S.STARTING and lc.pid == 101
    assert ("info", "spawned: 'cat' with pid 101") in host.logs
    lc.tick(101.0, RUNNING)  # exactly startsecs: not yet ("more than")
    assert lc.state == S.STARTING
    lc.tick(101.01, RUNNING)
    assert lc.state == S.RUNNING
    assert host.logs[-1] == ("info", "success: cat entered RUNNING state, process has stayed up for "
                                     "> than 1 seconds (startsecs)")
    assert lc.next_tick(RUNNING) is None


def test_autostart_false_stays_stopped():
    lc, host = make(autostart=False)
    lc.tick(100.0, RUNNING)
    assert lc.state == S.STOPPED and not host.changes


def test_no_spawn_while_shutting_down():
    lc, _ = make()
    lc.tick(100.0, SupervisorState.SHUTDOWN)
    assert lc.state == S.STOPPED


def test_exit_too_quickly_backs_off_1_2_3_then_fatal():
    lc, host = make(startsecs=5, startretries=3)
    now = 100.0
    lc.tick(now, RUNNING)
    spawns = [now]
    for attempt in range(1, 5):
        lc.exited(exit_status(1), now + 0.5)
        assert lc.state == S.BACKOFF and lc.backoff == attempt
        assert host.logs[-1] == ("warn", "exited: cat (exit status 1; not expected)")
        assert lc.spawnerr == "Exited too quickly (process log may have details)"
        if attempt <= 3:
            due = lc.next_tick(RUNNING)
            assert due == pytest.approx(now + 0.5 + attempt)  # 1 s, 2 s, 3 s backoff
            lc.tick(due - 0.01, RUNNING)
            assert lc.state == S.BACKOFF  # not before the delay
            now = due + 0.01
            lc.tick(now, RUNNING)
            assert lc.state == S.STARTING
            spawns.append(now)
    assert lc.next_tick(RUNNING) == 0.0  # give up at once
    lc.tick(now + 1, RUNNING)
    assert lc.state == S.FATAL
    assert host.logs[-1] == ("info", "gave up: cat entered FATAL state, too many start retries too quickly")
    assert len(spawns) == 4  # the first start and startretries=3 retries


def test_spawn_error_goes_backoff_with_message_then_fatal():
    lc, host = make(startretries=1)
    host.spawn_results = ["can't find command '/nope'", "can't find command '/nope'"]
    lc.tick(100.0, RUNNING)
    assert lc.state == S.BACKOFF and lc.spawnerr == "can't find command '/nope'"
    assert ("info", "spawnerr: can't find command '/nope'") in host.logs
    lc.tick(101.5, RUNNING)  # the retry fails too, and the same tick gives up, as supervisord does
    assert lc.state == S.FATAL and lc.spawnerr == "can't find command '/nope'"


@pytest.mark.parametrize("policy,code,restarts", [
    (AutoRestart.UNEXPECTED, 0, False),
    (AutoRestart.UNEXPECTED, 2, True),
    (AutoRestart.ALWAYS, 0, True),
    (AutoRestart.NEVER, 2, False),
])
def test_autorestart_policies(policy, code, restarts):
    lc, host = make(autorestart=policy, startsecs=0)
    lc.tick(100.0, RUNNING)
    lc.tick(100.1, RUNNING)
    assert lc.state == S.RUNNING
    lc.exited(exit_status(code), 110.0)
    assert lc.state == S.EXITED
    expected = code == 0
    assert host.changes[-1] == (S.RUNNING, S.EXITED, expected)
    assert host.logs[-1] == ("info" if expected else "warn",
                             f"exited: cat (exit status {code}; {'expected' if expected else 'not expected'})")
    lc.tick(110.0, RUNNING)
    assert (lc.state == S.STARTING) is restarts


def test_exitcodes_decide_expected():
    lc, host = make(exitcodes=(0, 3), startsecs=0)
    lc.tick(1.0, RUNNING)
    lc.tick(1.5, RUNNING)
    lc.exited(exit_status(3), 5.0)
    assert host.changes[-1] == (S.RUNNING, S.EXITED, True)
    lc.tick(5.0, RUNNING)
    assert lc.state == S.EXITED


def test_signal_death_is_always_unexpected():
    # exitcodes only admit 0-255, and a signal death reports -1, so it never matches
    lc2, host2 = make(startsecs=0)
    lc2.tick(1.0, RUNNING)
    lc2.tick(1.5, RUNNING)
    lc2.exited(killed_by(signal.SIGSEGV), 5.0)
    assert host2.logs[-1] == ("warn", "exited: cat (terminated by SIGSEGV; not expected)")
    lc2.tick(5.0, RUNNING)
    assert lc2.state == S.STARTING  # unexpected -> restarted


def test_stop_sends_stopsignal_then_sigkill_after_stopwaitsecs():
    lc, host = make(stopsignal=int(signal.SIGINT), stopwaitsecs=7, startsecs=0)
    lc.tick(1.0, RUNNING)
    lc.tick(1.5, RUNNING)
    lc.stop(10.0)
    assert lc.state == S.STOPPING and host.kills == [(101, signal.SIGINT)]
    assert lc.next_tick(RUNNING) == 17.0
    lc.tick(16.9, RUNNING)
    assert len(host.kills) == 1
    lc.tick(17.0, RUNNING)
    assert host.kills[-1] == (101, signal.SIGKILL)
    assert ("warn", "killing 'cat' (101) with SIGKILL") in host.logs
    lc.exited(killed_by(signal.SIGKILL), 17.1)
    assert lc.state == S.STOPPED
    assert host.logs[-1] == ("warn", "stopped: cat (terminated by SIGKILL)")


def test_stopped_by_term_logs_like_supervisord():
    lc, host = make(startsecs=0)
    lc.tick(1.0, RUNNING)
    lc.tick(1.5, RUNNING)
    lc.stop(2.0)
    lc.exited(killed_by(signal.SIGTERM), 2.1)
    assert host.logs[-1] == ("warn", "stopped: cat (terminated by SIGTERM)")
    assert lc.state == S.STOPPED
    lc.tick(3.0, RUNNING)
    assert lc.state == S.STOPPED  # a stopped process is not restarted


def test_stop_exit_with_expected_code_logs_info():
    lc, host = make(startsecs=0)
    lc.tick(1.0, RUNNING)
    lc.stop(2.0)
    lc.exited(exit_status(0), 2.1)
    assert host.logs[-1] == ("info", "stopped: cat (exit status 0)")


def test_stopasgroup_and_killasgroup_signal_the_group():
    lc, host = make(stopasgroup=True, killasgroup=True, startsecs=0, stopwaitsecs=1)
    lc.tick(1.0, RUNNING)
    lc.stop(2.0)
    lc.tick(3.5, RUNNING)
    assert host.kills == [(-101, signal.SIGTERM), (-101, signal.SIGKILL)]


def test_killasgroup_only_applies_to_the_sigkill():
    lc, host = make(killasgroup=True, startsecs=0, stopwaitsecs=1)
    lc.tick(1.0, RUNNING)
    lc.stop(2.0)
    lc.tick(3.5, RUNNING)
    assert host.kills == [(101, signal.SIGTERM), (-101, signal.SIGKILL)]


def test_stop_in_backoff_goes_stopped_without_waiting_for_retries():
    lc, host = make(startsecs=10)
    lc.tick(1.0, RUNNING)
    lc.exited(exit_status(1), 1.1)
    assert lc.state == S.BACKOFF
    assert lc.stop(1.2) is None
    assert lc.state == S.STOPPED and not host.kills


def test_stop_when_not_running_reports():
    lc, _ = make(autostart=False)
    assert lc.stop(1.0) == "attempted to kill cat with sig SIGTERM but it wasn't running"


def test_kill_of_vanished_pid_waits_for_exit_notification():
    lc, host = make(startsecs=0)
    lc.tick(1.0, RUNNING)
    host.kill_error = OSError(errno.ESRCH, "No such process")
    assert lc.stop(2.0) is None
    assert lc.state == S.STOPPING


def test_kill_failure_goes_unknown():
    lc, host = make(startsecs=0)
    lc.tick(1.0, RUNNING)
    host.kill_error = OSError(errno.EPERM, "Operation not permitted")
    msg = lc.stop(2.0)
    assert msg and lc.state == S.UNKNOWN
    assert host.logs[-1][0] == "critical"


def test_exit_during_starting_after_startsecs_counts_as_ran():
    lc, host = make(startsecs=1)
    lc.tick(1.0, RUNNING)
    lc.exited(exit_status(0), 5.0)  # timer not yet fired, but it lived > startsecs
    assert [c[1] for c in host.changes] == [S.STARTING, S.RUNNING, S.EXITED]


def test_give_up_from_backoff_on_shutdown():
    lc, _ = make(startsecs=10)
    lc.tick(1.0, RUNNING)
    lc.exited(exit_status(1), 1.1)
    lc.give_up(1.2)
    assert lc.state == S.FATAL


def test_signal_running_process():
    lc, host = make(startsecs=0)
    lc.tick(1.0, RUNNING)
    lc.tick(1.5, RUNNING)
    assert lc.signal(int(signal.SIGHUP), 2.0) is None
    assert host.kills == [(101, signal.SIGHUP)] and lc.state == S.RUNNING


def test_start_from_fatal_resets_and_runs():
    lc, host = make(startretries=0)
    host.spawn_results = ["can't find command 'x'"]
    lc.tick(1.0, RUNNING)
    lc.tick(1.1, RUNNING)
    assert lc.state == S.FATAL
    lc.spawn(2.0)
    assert lc.state == S.STARTING and lc.spawnerr is None


def test_spawn_while_running_warns():
    lc, host = make()
    lc.tick(1.0, RUNNING)
    assert lc.spawn(2.0) is None
    assert host.logs[-1] == ("warn", "process 'cat' already running")


def test_describe_wait_status():
    assert describe_wait_status(exit_status(3)) == (3, "exit status 3")
    assert describe_wait_status(killed_by(signal.SIGTERM)) == (-1, "terminated by SIGTERM")
    assert describe_wait_status(killed_by(signal.SIGABRT) | 0x80) == (-1, "terminated by SIGABRT (core dumped)")
    assert os.WIFSIGNALED(killed_by(9))
