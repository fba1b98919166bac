"""AgentService against a real agent: random requests and raw bytes for every method.

Every call ends within its bound with a status that names the problem (never UNKNOWN or a
traceback), the agent keeps answering GetInfo, and a refused call leaves the process table,
the pids and the applied config as they were.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc
from tests.integration.harness import Daemon, write_config
from tests.support import free_port, wait_for

from .fleet_strategies import (
    CONFIG_TEXT,
    SIGNALS,
    Method,
    budget,
    call,
    check_outcome,
    corrupt,
    message,
    methods,
    requests,
)

CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s

[fleetvisor]
node=fz-node
labels=role=fuzz
grpc_listen=127.0.0.1:{port}
state_dir=%(here)s/state

[program:local]
command=sleep 1000
startsecs=0
stopwaitsecs=1

[program:talker]
command=/bin/sh -c "echo first-line; exec sleep 1000"
startsecs=0
stopwaitsecs=1
stdout_logfile=%(here)s/talker.log

[group:web]
programs=w1,w2

[program:w1]
command=sleep 1000
startsecs=0
stopwaitsecs=1

[program:w2]
command=sleep 1000
startsecs=0
stopwaitsecs=1
"""

NAMES = ["local", "talker", "web:w1", "web:w2", "web:*", "w1", "web", "all"]
# Reexec replaces the agent's process (same pid, a moment without gRPC): tests/integration/test_agent_reexec.py
METHODS = [m for m in methods(pb.DESCRIPTOR.services_by_name["AgentService"]) if m.name != "Reexec"]
HINTS = {"signal": SIGNALS, "config_text": CONFIG_TEXT}
SETTLED = {"RUNNING", "STOPPED", "EXITED", "FATAL"}
COMMANDS = {"Start", "Stop", "Restart", "Signal", "ApplyConfig"}  # what moves processes when accepted
QUIET = 0.3  # seconds without a change that count as settled, after an accepted command
# examples per method (ci); TailLog with follow may wait out its stream bound
EXAMPLES = {"TailLog": 20, "WatchEvents": 20}


class FuzzAgent:
    def __init__(self, directory: Path) -> None:
        port = free_port()
        self.daemon = Daemon(write_config(directory, textwrap.dedent(CONFIG).replace("{port}", str(port))))
        self.daemon.wait_line(r"gRPC AgentService listening on")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.AgentServiceStub(self.channel)
        self.moved = False  # an accepted command may still be moving processes
        self.settle()

    def processes(self) -> dict[str, tuple[str, int]]:
        listed = self.stub.ListProcesses(pb.ListProcessesRequest(), timeout=5).processes
        return {p.namespec: (p.statename, p.pid) for p in listed}

    def settle(self) -> None:
        """Until no process is between states. After an accepted command, also until nothing
        changed for a moment: a restart without wait may not have begun when it was answered."""
        wait_for(lambda: all(state in SETTLED for state, _ in self.processes().values()), 15, "settled processes")
        if self.moved:
            wait_for(self._quiet, 15, "processes that stay as they are")
            self.moved = False

    def _quiet(self) -> bool:
        first = self.processes()
        time.sleep(QUIET)
        return first == self.processes() and all(state in SETTLED for state, _ in first.values())

    def state(self) -> tuple[dict[str, tuple[str, int]], str, str]:
        config = self.stub.GetConfig(pb.GetConfigRequest(), timeout=5)
        return self.processes(), config.revision, config.config_text

    def exercise(self, method: Method, raw: bytes) -> None:
        self.settle()
        before = self.state()
        outcome = call(self.channel, method, raw)
        check_outcome(method.name, outcome)
        self.moved = not outcome.refused and method.name in COMMANDS
        assert self.stub.GetInfo(pb.GetInfoRequest(), timeout=5).pid == self.daemon.proc.pid
        if outcome.refused:
            assert self.state() == before, f"{method.name} was refused ({outcome.details}) but changed state"

    def stop(self) -> None:
        self.channel.close()
        self.daemon.stop()
        log = "\n".join(self.daemon.messages())
        assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    a = FuzzAgent(tmp_path_factory.mktemp("fuzz-agent"))
    yield a
    a.stop()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_random_requests(agent, method):
    @settings(max_examples=budget(EXAMPLES.get(method.name, 40)))
    @given(requests(method.request, HINTS, NAMES))
    def check(request):
        agent.exercise(method, request.SerializeToString())
    check()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_raw_bytes(agent, method):
    @settings(max_examples=budget(EXAMPLES.get(method.name, 40)))
    @given(corrupt(message(method.request, HINTS, NAMES)))
    def check(raw):
        agent.exercise(method, raw)
    check()

