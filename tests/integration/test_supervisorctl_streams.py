"""supervisorctl tail -f, maintail -f and fg against the agent: streams that follow logs
through rotation and truncation, and stdin sent to a process."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support import wait_for

from .ctlharness import Server, Streaming, make_config
from .harness import AGENT

PROGRAMS = """
[program:counter]
; numbered lines, fast enough to rotate its small log many times while a test watches
command=/bin/sh -c "i=0; while [ $i -lt 100000 ]; do echo line-$i; i=$((i+1)); sleep 0.002; done; exec sleep 1000"
stdout_logfile=%(here)s/counter.log
stdout_logfile_maxbytes=2KB
stdout_logfile_backups=1
startsecs=0
autostart=false

[program:quiet]
command=sleep 1000
stdout_logfile=%(here)s/quiet.log
startsecs=0

[program:echo]
; answers each line of stdin, and ticks so that the client's stream thread wakes up
command=python3 -u %(here)s/echo.py
startsecs=0
"""

ECHO = """
import select, sys
while True:
    ready = select.select([sys.stdin], [], [], 0.1)[0]
    print("got " + sys.stdin.readline().strip() if ready else "tick")
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    directory = tmp_path_factory.mktemp("streams")
    (directory / "echo.py").write_text(ECHO)
    server = Server(make_config(directory, PROGRAMS), AGENT)
    try:
        server.wait_state("quiet", "RUNNING")
        server.wait_state("echo", "RUNNING")
        yield server
    finally:
        server.stop()


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"line-(\d+)\n", text)]


def test_tail_f_follows_through_rotations_without_gaps(agent):
    agent.rpc().supervisor.startProcess("counter")  # its log exists from its first start on
    stream = Streaming(agent, "tail", "-f", "counter")
    try:
        try:
            wait_for(lambda: len(numbers(stream.output)) > 1500, 60, "1500 lines")
        except AssertionError:
            raise AssertionError(stream.output[-3000:]) from None
        assert (agent.dir / "counter.log.1").exists()
        assert stream.interrupt() == 0
    finally:
        stream.kill()
        agent.rpc().supervisor.stopProcess("counter")
    seen = numbers(stream.output)
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # every line, in order, once


def test_tail_f_reports_truncation_and_goes_on(agent):
    log = agent.dir / "quiet.log"
    log.write_bytes(b"before\n")
    stream = Streaming(agent, "tail", "-f", "quiet")
    try:
        stream.wait_for_text("before\n")
        subprocess.run(["truncate", "-s", "0", str(log)], check=True)
        stream.wait_for_text("==> File truncated <==\n")
        with open(log, "ab") as f:
            f.write(b"after\n")
        stream.wait_for_text("after\n")
        assert stream.interrupt() == 0
    finally:
        stream.kill()
    assert stream.output.endswith("before\n==> File truncated <==\nafter\n\n")


def test_tail_f_follows_a_cleared_log(agent):
    stream = Streaming(agent, "tail", "-f", "quiet")
    try:
        stream.wait_for_text("==> Press Ctrl-C to exit <==")
        assert agent.rpc().supervisor.clearProcessLogs("quiet")
        with open(agent.dir / "quiet.log", "ab") as f:
            f.write(b"fresh\n")
        stream.wait_for_text("fresh\n")
        assert stream.interrupt() == 0
    finally:
        stream.kill()


def test_tail_f_starts_with_the_last_kilobyte(agent):
    (agent.dir / "quiet.log").write_bytes(b"x" * 5000 + b"\nend\n")
    stream = Streaming(agent, "tail", "-f", "quiet")
    try:
        stream.wait_for_text("end\n")
        assert stream.interrupt() == 0
    finally:
        stream.kill()
    body = stream.output.split("==> Press Ctrl-C to exit <==\n", 1)[1]
    assert body == "x" * (1024 - 5) + "\nend\n\n"


def test_maintail_f_follows_a_cleared_main_log(agent):
    stream = Streaming(agent, "maintail", "-f")
    try:
        stream.wait_for_text("==> Press Ctrl-C to exit <==")
        assert agent.rpc().supervisor.clearLog()
        agent.rpc().supervisor.stopProcess("quiet")
        stream.wait_for_text("stopped: quiet")
        agent.rpc().supervisor.startProcess("quiet")
        stream.wait_for_text("spawned: 'quiet'")
        assert stream.interrupt() == 0
    finally:
        stream.kill()


def test_fg_sends_stdin_and_shows_output(agent):
    stream = Streaming(agent, "fg", "echo", stdin=True)
    try:
        stream.wait_for_text("==> Press Ctrl-C to exit <==")
        stream.send("hello\n")
        stream.wait_for_text("got hello")
        stream.send("world\n")
        stream.wait_for_text("got world")
        stream.close_stdin()
        assert stream.wait(15) == 0
    finally:
        stream.kill()
    assert stream.output.rstrip().endswith("Exiting foreground")


def test_fg_notices_the_process_going_away(agent):
    stream = Streaming(agent, "fg", "echo", stdin=True)
    try:
        stream.wait_for_text("tick")
        agent.rpc().supervisor.stopProcess("echo")
        stream.send("anyone?\n")
        stream.wait_for_text("Exiting foreground")
        # The stock client now waits for its idle stream thread (up to 30 s, it polls with
        # that timeout), with stock supervisord just the same; no need to sit through it.
    finally:
        stream.kill()
        agent.rpc().supervisor.startProcess("echo")
    assert "Process got killed\nExiting foreground" in stream.output
