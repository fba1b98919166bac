"""A real fleet for tests: controller processes against the test's etcd, and agents that
register with them. Everything is a separate OS process, as in production."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc

from benchmarks.daemons import children_of
from tests.integration.harness import Daemon, write_config
from tests.support import free_port, tried_in_order, wait_for

CLUSTER = "test"  # certificates for the harness's controllers name it
CONTROLLER = [sys.executable, "-m", "fleetvisor.controller"]
FLEETCTL = [sys.executable, "-m", "fleetvisor.cli.main"]


class Controller:
    def __init__(self, base: Path, etcd_endpoint: str, *, name: str = "ctl-1", node_ttl: int = 3,
                 leader_ttl: int = 2, port: int = 0, extra: tuple[str, ...] = ()) -> None:
        self.name = name
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.argv = [*CONTROLLER, "--etcd", etcd_endpoint, "--listen", self.address, "--cluster", CLUSTER,
                     "--state-dir", str(base / name), "--node-ttl", str(node_ttl), "--leader-ttl", str(leader_ttl),
                     "--id", name, *extra]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self._channel: grpc.Channel | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self.wait_line("serving on")

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_line(self, text: str, timeout: float = 15.0) -> None:
        def seen():
            if self.proc.poll() is not None and text not in self.log():
                raise AssertionError(f"controller {self.name} exited ({self.proc.returncode}):\n{self.log()}")
            return text in self.log()
        wait_for(seen, timeout, f"controller {self.name} to log {text!r}")

    @property
    def stub(self) -> pb_grpc.ControllerServiceStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return pb_grpc.ControllerServiceStub(self._channel)

    def is_leader(self) -> bool:
        try:
            return self.stub.GetLeader(pb.GetLeaderRequest(), timeout=2).is_leader
        except grpc.RpcError:
            return False

    def status(self, *patterns: str) -> pb.FleetStatus:
        return self.stub.GetStatus(pb.StatusRequest(patterns=list(patterns)), timeout=5)

    def node(self, name: str) -> pb.NodeInfo | None:
        nodes = self.stub.ListNodes(pb.ListNodesRequest(), timeout=5).nodes
        return next((n for n in nodes if n.name == name), None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


AGENT_CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/agent.pid
childlogdir=%(here)s
identifier={node}

[fleetvisor]
node={node}
labels={labels}
grpc_listen=127.0.0.1:{grpc_port}
controllers={controllers}
state_dir=%(here)s/state
{fleetvisor_extra}

{programs}
"""

SLEEPER = """
[program:{name}]
command=sleep 1000
startsecs=0
stopwaitsecs=2
"""


class Agent:
    def __init__(self, base: Path, node: str, controllers: list[str], *, labels: str = "",
                 programs: str | None = None, fleetvisor_extra: str = "", extra_args: tuple[str, ...] = ()) -> None:
        self.node = node
        self.extra_args = extra_args  # of the agent's command line (--reexec-command NEW, say)
        self.dir = base / node
        self.dir.mkdir(parents=True, exist_ok=True)
        self.grpc_port = free_port()
        self.address = f"127.0.0.1:{self.grpc_port}"
        body = AGENT_CONFIG.format(node=node, labels=labels, grpc_port=self.grpc_port,
                                   controllers=",".join(tried_in_order(node, controllers)),
                                   programs=SLEEPER.format(name="app") if programs is None else programs,
                                   fleetvisor_extra=fleetvisor_extra)
        self.config = write_config(self.dir, body)
        self.daemon: Daemon | None = None
        self.orphans: list[int] = []
        self.start()

    def start(self) -> None:
        self.daemon = Daemon(self.config, extra_args=self.extra_args)

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.stop()

    def kill(self) -> None:
        """SIGKILL the agent. Its children outlive it (as supervisord's do); they are killed
        when the test ends."""
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.orphans += children_of(self.daemon.proc.pid)
            self.daemon.kill()

    def reap_orphans(self) -> None:
        for pid in self.orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.orphans.clear()


def fleetctl(controller: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETCTL, "--controller", controller, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout,
                          env={"FLEETCTL_CONFIG": "/nonexistent", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """fleetctl's rule for failures: exactly one line on stderr, never a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def fleetctl_json(controller: str, *args: str) -> object:
    result = fleetctl(controller, "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_status(ctl: Controller, check: Callable[[pb.FleetStatus], object], timeout: float = 15.0,
                what: str = "fleet status") -> pb.FleetStatus:
    holder: list[pb.FleetStatus] = []

    def probe():
        try:
            holder[:] = [ctl.status()]
        except grpc.RpcError:
            return False
        return check(holder[0])
    wait_for(probe, timeout, what)
    return holder[0]


def states(status: pb.FleetStatus) -> dict[str, str]:
    """{"node:group:name": "RUNNING", ...}"""
    return {f"{n.node.name}:{p.namespec}": p.statename for n in status.nodes for p in n.processes}
