"""A fleet agent that was SIGKILLed does not leave its programs running twice after a restart."""

from __future__ import annotations

import os
import signal
import subprocess

from .harness import Daemon, free_port, pid_alive, wait_for, write_config

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


def test_survivors_of_a_killed_agent_are_stopped_before_the_programs_start_again(tmp_path):
    config = write_config(tmp_path, CONFIG.format(port=free_port()))
    first = Daemon(config)
    second = None
    try:
        app = first.pid_of("app")
        stubborn = first.pid_of("stubborn")
        wait_for(lambda: processes_running("sleep 100071"), 5, "app's own child")
        first.kill()  # SIGKILL: no chance to stop its children
        assert pid_alive(app) and pid_alive(stubborn)

        second = Daemon(config)
        second.wait_line(r"stopping app:app \(pid %d\), left running by a previous run" % app)
        second.wait_line(r"stopping stubborn:stubborn \(pid %d\)" % stubborn)
        new_app = second.pid_of("app")
        second.pid_of("stubborn")
        assert not pid_alive(app) and not pid_alive(stubborn), "the survivors were stopped"
        wait_for(lambda: len(processes_running("sleep 100070")) == 1, 5, "exactly one app")
        assert processes_running("sleep 100070") == [new_app]
        assert len(processes_running("sleep 100071")) == 1, "the old app's child went with its group"
        assert len(processes_running("sleep 100072")) == 1
    finally:
        for daemon in (second, first):
            if daemon is not None and daemon.proc.poll() is None:
                daemon.stop()
        for command in ("sleep 100070", "sleep 100071", "sleep 100072"):
            for pid in processes_running(command):
                os.kill(pid, signal.SIGKILL)


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
