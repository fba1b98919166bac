"""The agent at its file descriptor limit: more programs than fit under a low RLIMIT_NOFILE.

Spawn errors read as supervisord's (its own run on the same config and limit is the judge),
the processes go BACKOFF then FATAL, and the daemon keeps enough descriptors back to answer
XML-RPC, HTTP and gRPC. Connections that take the last descriptors are refused until some
close, without the loop spinning.
"""

from __future__ import annotations

import http.client
import re
import resource
import socket
import time
import xmlrpc.client
from pathlib import Path

import grpc
import pytest

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from tests.support import free_port, wait_for

from .exhaustion import LOGS_HERE, LatencyProbe, cpu_seconds, get_state, probed_config
from .harness import SUPERVISORD

FD_LIMIT = 64
PROGRAMS = 20


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def config(directory: Path, http_port: int, grpc_port: int | None = None, per_client: int = 32) -> Path:
    fleetvisor = (f"[fleetvisor]\nnode=n1\ngrpc_listen=127.0.0.1:{grpc_port}\nstate_dir=%(here)s/state\n"
                  f"http_max_connections_per_client={per_client}\n") if grpc_port else ""
    programs = "".join(f"[program:p{i:02d}]\ncommand=sleep 1000\nstartsecs=0\nstartretries=1\n"
                       for i in range(PROGRAMS))
    return probed_config(directory, http_port, fleetvisor, programs,
                         supervisord=f"{LOGS_HERE}minfds={FD_LIMIT}\n")


def rpc(port: int) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")


def spawn_errors(messages: list[str]) -> set[str]:
    """The spawnerr lines with the program name masked."""
    return {re.sub(r"'p\d+'", "'P'", m) for m in messages if "spawnerr:" in m}


def settle(daemon, count: int) -> None:
    """Until every program that could not start has given up."""
    daemon.wait_line(r"gave up: p\d+ entered FATAL state", timeout=30, count=count)


def test_spawn_errors_match_stock_and_the_daemon_keeps_answering(tmp_path, daemons):
    stock_dir, agent_dir = tmp_path / "stock", tmp_path / "agent"
    stock_dir.mkdir()
    agent_dir.mkdir()
    stock_port = free_port()
    stock = daemons(config(stock_dir, stock_port), command=SUPERVISORD, preexec=low_fd_limit)
    stock.wait_line(r"spawnerr: too many open files to spawn", timeout=20)
    settle(stock, 1)

    http_port, grpc_port = free_port(), free_port()
    agent = daemons(config(agent_dir, http_port, grpc_port), preexec=low_fd_limit)
    agent.wait_line(r"gRPC AgentService listening on", timeout=20)
    with LatencyProbe(http_port) as probe:
        agent.wait_line(r"spawnerr: too many open files to spawn", timeout=20)
        wait_for(lambda: all(p["statename"] in ("RUNNING", "FATAL")
                             for p in rpc(http_port).supervisor.getAllProcessInfo()), 30, "all settled")
        infos = rpc(http_port).supervisor.getAllProcessInfo()
    probe.assert_bounded()

    fatal = [p for p in infos if p["statename"] == "FATAL"]
    running = [p for p in infos if p["statename"] == "RUNNING"]
    assert fatal and running
    assert all(p["description"] == f"too many open files to spawn '{p['name']}'" for p in fatal)
    # The same words as stock, and the same BACKOFF -> FATAL path.
    assert spawn_errors(agent.messages()) == spawn_errors(stock.messages()) == {
        "INFO spawnerr: too many open files to spawn 'P'"}
    name = fatal[0]["name"]
    assert f"INFO gave up: {name} entered FATAL state, too many start retries too quickly" in agent.messages()
    with pytest.raises(xmlrpc.client.Fault) as fault:
        rpc(http_port).supervisor.startProcess(name)
    assert fault.value.faultCode == 50 and fault.value.faultString == f"SPAWN_ERROR: {name}"

    # The reserve is kept: connections held open meanwhile do not stop the faces answering.
    held = [socket.create_connection(("127.0.0.1", http_port)) for _ in range(8)]
    try:
        assert get_state(http_port, timeout=5) == "RUNNING"
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            info = pb_grpc.AgentServiceStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
            assert info.state == pb.SUPERVISOR_RUNNING
    finally:
        for sock in held:
            sock.close()

    # Descriptors freed: a process that could not start now starts.
    rpc(http_port).supervisor.stopProcess(running[0]["name"])
    rpc(http_port).supervisor.stopProcess(running[1]["name"])
    # (The SPAWN_ERROR above left it in BACKOFF: its retry may be what starts it.)
    state = wait_for(lambda: _settled(http_port, name), 15, f"{name} settled")
    if state == "FATAL":
        assert rpc(http_port).supervisor.startProcess(name) is True
    assert rpc(http_port).supervisor.getProcessInfo(name)["statename"] == "RUNNING"


def _settled(port: int, name: str) -> str | None:
    state = rpc(port).supervisor.getProcessInfo(name)["statename"]
    return None if state in ("STARTING", "BACKOFF") else state


def test_connections_past_the_limit_wait_without_spinning_and_recover(tmp_path, daemons):
    http_port, grpc_port = free_port(), free_port()
    # No per-client cap on connections here: this test is one client taking them all.
    agent = daemons(config(tmp_path, http_port, grpc_port, per_client=10 * FD_LIMIT), preexec=low_fd_limit)
    agent.wait_line(r"gave up: p\d+ entered FATAL state", timeout=30)
    wait_for(lambda: get_state(http_port) == "RUNNING", 10, "an answer")
    pid = agent.proc.pid

    # Take every descriptor the daemon has left with idle connections (the listen backlog
    # holds those it cannot accept).
    held = [socket.create_connection(("127.0.0.1", http_port)) for _ in range(FD_LIMIT)]
    held.append(socket.create_connection(("127.0.0.1", grpc_port)))  # gRPC's accept fails too
    try:
        wait_for(lambda: len(list(Path(f"/proc/{pid}/fd").iterdir())) >= FD_LIMIT - 1, 10, "the table full")
        began, cpu_before = time.monotonic(), cpu_seconds(pid)
        with pytest.raises(OSError):
            get_state(http_port, timeout=2)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - began)))  # a window to measure CPU over
        busy = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - began)
        assert busy < 0.5, f"the daemon used {busy:.0%} of a core while it could not accept"
        assert agent.proc.poll() is None
    finally:
        for sock in held:
            sock.close()
    # Descriptors are back: the daemon answers again.
    assert wait_for(lambda: _answers(http_port), 15, "answers after the connections closed")
    # It said so once in the main log (asyncio retried every second), and no tracebacks.
    said = [m for m in agent.messages() if "cannot accept" in m]
    assert said == [f"WARN cannot accept connections on 127.0.0.1:{http_port}: [Errno 24] Too many open files; "
                    "retrying every second (said once a minute while it lasts)"]
    assert not any("Traceback" in m for m in agent.messages())
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        info = pb_grpc.AgentServiceStub(channel).GetInfo(pb.GetInfoRequest(), timeout=15)
        assert info.state == pb.SUPERVISOR_RUNNING


def _answers(port: int) -> bool:
    try:
        return get_state(port, timeout=2) == "RUNNING"
    except OSError:
        return False
