"""A fleet agent that was SIGKILLed does not leave its programs running twice after a restart."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.support import free_port, pid_alive, wait_for

from .harness import Daemon, write_config

CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/agent.pid
childlogdir=%(here)s

[fleetvisor]
node=n1
grpc_listen=127.0.0.1:{port}
state_dir=%(here)s/state

[program:app]
command=sh -c 'sleep 100071 & exec sleep 100070'
startsecs=0
stopwaitsecs=2

[program:stubborn]
command=sh -c 'trap "" TERM; exec sleep 100072'
startsecs=0
stopwaitsecs=1
"""


def processes_running(command: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"^{command}$"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def group_of(pid: int) -> list[int]:
    """The live processes of the process group `pid` leads."""
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and _pgid(int(e.name)) == pid]


def _pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[2]) if fields[0] != "Z" else None


@pytest.fixture(autouse=True)
def no_strays():
    """This file's programs have their own command lines; none may outlive a test."""
    yield
    for command in ("sleep 100070", "sleep 100071", "sleep 100072"):
        for pid in processes_running(command):
            os.kill(pid, signal.SIGKILL)


def test_survivors_of_a_killed_agent_are_stopped_before_the_programs_start_again(tmp_path):
    config = write_config(tmp_path, CONFIG.format(port=free_port()))
    first = Daemon(config)
    second = None
    try:
        app = first.pid_of("app")
        stubborn = first.pid_of("stubborn")
        old_group = wait_for(lambda: len(group_of(app)) == 2 and group_of(app), 5, "app and its own child")
        first.kill()  # SIGKILL: no chance to stop its children
        assert pid_alive(app) and pid_alive(stubborn)

        second = Daemon(config)
        second.wait_line(r"stopping app:app \(pid %d\), left running by a previous run" % app)
        second.wait_line(r"stopping stubborn:stubborn \(pid %d\)" % stubborn)  # it ignores SIGTERM
        new_app = second.pid_of("app")
        new_stubborn = second.pid_of("stubborn")
        assert not any(pid_alive(p) for p in [*old_group, stubborn]), "every survivor was stopped"
        assert not group_of(app), "the old app's own child went with its group"
        assert processes_running("sleep 100070") == [new_app]
        assert processes_running("sleep 100072") == [new_stubborn]
    finally:
        for daemon in (second, first):
            if daemon is not None and daemon.proc.poll() is None:
                daemon.stop()


def test_a_reused_pid_is_left_alone(tmp_path):
    """The ledger names a pid whose process is another one now (another start time)."""
    config = write_config(tmp_path, CONFIG.format(port=free_port()))
    bystander = subprocess.Popen(["sleep", "1003"])
    try:
        (tmp_path / "state").mkdir()
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        (tmp_path / "state" / "children.json").write_text(
            '{"boot": "%s", "children": [{"namespec": "app:app", "pid": %d, "started": 1}]}'
            % (boot, bystander.pid))
        daemon = Daemon(config)
        try:
            daemon.pid_of("app")
            assert bystander.poll() is None
            assert not any("left running" in m for m in daemon.messages())
        finally:
            daemon.stop()
    finally:
        bystander.kill()
        bystander.wait()
