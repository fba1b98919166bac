"""The fleet as one supervisord: the controller's --xmlrpc-listen, judged by the stock supervisorctl
4.3 and xmlrpc.client across three real agents (real etcd, real processes)."""

from __future__ import annotations

import subprocess
import sys
import threading
import xmlrpc.client
from pathlib import Path

import pytest

from fleetvisor.v1 import controller_pb2 as pb
from tests.support import free_port, wait_for

from .fleet_harness import CONTROLLER, SLEEPER, states, wait_status

SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")
USER, PASSWORD = "ops", "s3cret-pass"
PROGRAMS = SLEEPER.format(name="app") + SLEEPER.format(name="worker") + """
[program:ticker]
command=sh -c 'i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done'
startsecs=0
"""
# getProcessInfo's keys and value types in supervisord 4.3 (rpcinterface.py getProcessInfo)
INFO_TYPES = {"name": str, "group": str, "start": int, "stop": int, "now": int, "state": int, "statename": str,
              "spawnerr": str, "exitstatus": int, "logfile": str, "stdout_logfile": str, "stderr_logfile": str,
              "pid": int, "description": str}
NODES = ("web-1", "web-2", "db-1")


class Endpoint:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port

    def ctl(self, *args: str, password: str = PASSWORD, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([SUPERVISORCTL, "-s", self.url, "-u", USER, "-p", password, *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)

    def proxy(self, password: str = PASSWORD) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(f"http://{USER}:{password}@127.0.0.1:{self.port}/RPC2")


@pytest.fixture
def fleet_rpc(fleet, tmp_path):
    secret = tmp_path / "xmlrpc.pass"
    secret.write_text(PASSWORD + "\n")
    port = free_port()
    ctl = fleet.controller(extra=("--xmlrpc-listen", f"127.0.0.1:{port}", "--xmlrpc-user", USER,
                                  "--xmlrpc-password-file", str(secret), "--xmlrpc-groups", "admins"))
    ctl.wait_line("supervisor XML-RPC on 127.0.0.1")
    for node in NODES:
        fleet.agent(node, ctl, programs=PROGRAMS)
    wait_status(ctl, lambda s: len(states(s)) == 9 and all(v == "RUNNING" for v in states(s).values()),
                what="nine running processes")
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    assert PASSWORD not in ctl.log()
    return ctl, Endpoint(port)


def status_lines(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}


def test_stock_supervisorctl_status_start_stop_restart_pid_avail(fleet_rpc):
    ctl, ep = fleet_rpc
    result = ep.ctl("status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = status_lines(result.stdout)
    assert set(lines) == {f"{n}/{p}:{p}" for n in NODES for p in ("app", "worker", "ticker")}
    assert all(words[0] == "RUNNING" and words[1] == "pid" for words in lines.values())

    result = ep.ctl("status", "web-2/app:app")
    assert result.returncode == 0 and result.stdout.split()[:2] == ["web-2/app:app", "RUNNING"]

    result = ep.ctl("stop", "web-1/worker:*")
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "web-1/worker:worker: stopped"
    wait_status(ctl, lambda s: states(s)["web-1:worker"] == "STOPPED")
    assert status_lines(ep.ctl("status", "web-1/worker:worker").stdout)["web-1/worker:worker"][0] == "STOPPED"
    assert states(ctl.status())["web-2:worker"] == "RUNNING"  # only that node's

    result = ep.ctl("start", "web-1/worker:*")
    assert result.returncode == 0 and result.stdout.strip() == "web-1/worker:worker: started", result.stdout
    wait_status(ctl, lambda s: states(s)["web-1:worker"] == "RUNNING")

    before = ep.ctl("pid", "db-1/app:app").stdout.strip()
    pids = {f"{n.node.name}:{p.namespec}": p.pid for n in ctl.status().nodes for p in n.processes}
    assert int(before) == pids["db-1:app"]
    result = ep.ctl("restart", "db-1/app:app")
    assert result.stdout.splitlines() == ["db-1/app:app: stopped", "db-1/app:app: started"], result.stdout
    after = ep.ctl("pid", "db-1/app:app").stdout.strip()
    assert after.isdigit() and after != before

    result = ep.ctl("signal", "HUP", "web-2/app:app")
    assert result.returncode == 0 and result.stdout.strip() == "web-2/app:app: signalled", result.stdout

    avail = ep.ctl("avail")
    assert avail.returncode == 0
    assert any(line.split()[:3] == ["web-2/ticker:ticker", "in", "use"] for line in avail.stdout.splitlines())
    assert len(avail.stdout.splitlines()) == 9

    # the writes went through the fleet's own path: audited under the XML-RPC user
    entries = ctl.stub.ListAudit(pb.ListAuditRequest(), timeout=5).entries
    mine = [e for e in entries if e.who == f"{USER} (xmlrpc)"]
    assert {e.action for e in mine} >= {"control.stop", "control.start"} and all(e.ok for e in mine)


def test_stock_supervisorctl_errors_are_stock(fleet_rpc):
    ctl, ep = fleet_rpc
    result = ep.ctl("status", "web-9/app:app")
    assert result.stdout.strip() == "web-9/app:app: ERROR (no such process)" and result.returncode != 0
    result = ep.ctl("start", "web-1/nope:nope")
    assert result.stdout.strip() == "web-1/nope:nope: ERROR (no such process)" and result.returncode != 0
    result = ep.ctl("start", "web-1/app:app")
    assert result.stdout.strip() == "web-1/app:app: ERROR (already started)"
    result = ep.ctl("pid", "web-1/nope:nope")
    assert result.stdout.strip() == "No such process web-1/nope:nope" and result.returncode != 0

    result = ep.ctl("shutdown")
    assert "has no fleet meaning" in result.stdout and result.returncode != 0
    assert states(ctl.status())["web-1:app"] == "RUNNING"

    refused = ep.ctl("status", password="wrong")
    assert "Server requires authentication" in refused.stdout and refused.returncode != 0
    assert "Traceback" not in refused.stdout + refused.stderr


def test_stock_supervisorctl_tail_and_tail_follow(fleet_rpc):
    _, ep = fleet_rpc
    wait_for(lambda: "tick-3" in ep.ctl("tail", "web-2/ticker:ticker").stdout, 15, "ticks in the log")

    follower = subprocess.Popen([SUPERVISORCTL, "-s", ep.url, "-u", USER, "-p", PASSWORD, "tail", "-f",
                                 "web-2/ticker:ticker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
    seen: list[str] = []

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            seen.append(line.strip())
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        def ticks() -> list[int]:
            return [int(s[5:]) for s in list(seen) if s.startswith("tick-") and s[5:].isdigit()]
        wait_for(lambda: ticks(), 15, "tail -f to print the log")
        first = max(ticks())
        # following: lines written after the stream began keep arriving
        wait_for(lambda: max(ticks()) >= first + 5, 15, "tail -f to follow new lines")
        assert follower.poll() is None
    finally:
        follower.kill()
        follower.wait(10)


def test_a_down_node_is_shown_down_never_missing(fleet, fleet_rpc):
    _, ep = fleet_rpc
    fleet.agents[2].kill()  # db-1

    def shown_down() -> bool:
        lines = status_lines(ep.ctl("status").stdout)
        return len(lines) == 9 and all(lines[f"db-1/{p}:{p}"][0] == "UNKNOWN" for p in ("app", "worker", "ticker"))
    wait_for(shown_down, 30, "db-1's processes shown UNKNOWN")
    out = ep.ctl("status", "db-1/app:app").stdout
    wait_for(lambda: "node db-1 is down: last heartbeat" in ep.ctl("status", "db-1/app:app").stdout, 30,
             "db-1 said to be down: " + out)
    info = ep.proxy().supervisor.getProcessInfo("db-1/app:app")
    assert info["statename"] == "UNKNOWN" and info["state"] == 1000 and info["pid"] == 0
    assert "web-1/app:app" in ep.ctl("status").stdout and "RUNNING" in ep.ctl("status", "web-1/app:app").stdout

    result = ep.ctl("stop", "db-1/app:app")  # supervisorctl prints a FAILED fault's string as it is
    assert result.stdout.startswith("FAILED: db-1/app:app: node db-1: unreachable"), result.stdout
    assert result.returncode != 0


def test_xmlrpc_client_sees_the_43_shapes_and_multicall(fleet_rpc):
    _, ep = fleet_rpc
    server = ep.proxy().supervisor
    infos = server.getAllProcessInfo()
    assert len(infos) == 9
    for info in infos:
        assert {k: type(v) for k, v in info.items()} == INFO_TYPES, info
        assert info["statename"] == "RUNNING" and info["state"] == 20 and info["group"].split("/")[0] in NODES
    one = server.getProcessInfo("web-1/app:app")
    assert one["name"] == "app" and one["group"] == "web-1/app" and one["pid"] > 0
    assert server.getProcessInfo("web-1/app") == {**one, "now": server.getProcessInfo("web-1/app")["now"],
                                                  "description": server.getProcessInfo("web-1/app")["description"]}
    assert server.getState() == {"statecode": 1, "statename": "RUNNING"}
    assert server.getSupervisorVersion() == "4.3.0" and server.getAPIVersion() == "3.0"
    assert server.getIdentification() == "fleetvisor controller ctl-1"

    with pytest.raises(xmlrpc.client.Fault) as fault:
        server.getProcessInfo("web-1/nope:nope")
    assert fault.value.faultCode == 10 and fault.value.faultString == "BAD_NAME: web-1/nope:nope"
    for method in ("shutdown", "restart", "reloadConfig"):
        with pytest.raises(xmlrpc.client.Fault) as fault:
            getattr(server, method)()
        assert fault.value.faultCode == 30 and "has no fleet meaning" in fault.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as fault:
        server.addProcessGroup("x")
    assert fault.value.faultCode == 30 and "fleetctl config push" in fault.value.faultString

    results = server.stopProcessGroup("web-2/worker")
    assert results == [{"name": "worker", "group": "web-2/worker", "status": 80, "description": "OK"}]
    results = server.startProcess("web-2/worker:*")
    assert [(r["group"], r["name"], r["status"]) for r in results] == [("web-2/worker", "worker", 80)]

    wait_for(lambda: len(server.readProcessStdoutLog("web-1/ticker:ticker", 0, 0)) > 40, 15, "a log of 40 bytes")
    data, offset, overflow = server.tailProcessStdoutLog("web-1/ticker:ticker", 0, 20)
    assert isinstance(data, str) and len(data) == 20 and offset > 20 and overflow is True
    assert server.tailProcessStdoutLog("web-1/ticker:ticker", 10**9, 20)[0] == ""
    assert "tick-" in server.readProcessStdoutLog("web-1/ticker:ticker", -200, 0)

    proxy = ep.proxy()
    calls = proxy.system.multicall([
        {"methodName": "supervisor.getProcessInfo", "params": ["db-1/worker:worker"]},
        {"methodName": "supervisor.getProcessInfo", "params": ["db-1/none:none"]},
        {"methodName": "supervisor.getAPIVersion", "params": []},
    ])
    assert calls[0]["group"] == "db-1/worker"
    assert calls[1] == {"faultCode": 10, "faultString": "BAD_NAME: db-1/none:none"}
    assert calls[2] == "3.0"
    methods = proxy.system.listMethods()
    assert {"supervisor.getAllProcessInfo", "supervisor.tailProcessStdoutLog", "system.multicall"} <= set(methods)
    assert proxy.system.methodSignature("supervisor.getProcessInfo") == ["struct", "string"]
    assert "NODE/GROUP:NAME" in proxy.system.methodHelp("supervisor.getProcessInfo")

    with pytest.raises(xmlrpc.client.ProtocolError) as refused:
        ep.proxy(password="nope").supervisor.getState()
    assert refused.value.errcode == 401


def test_a_follower_refuses_writes_and_serves_reads(fleet, fleet_rpc, tmp_path):
    ctl, _ = fleet_rpc
    port = free_port()
    (tmp_path / "p2").write_text(PASSWORD)
    follower = fleet.controller("ctl-2", extra=("--xmlrpc-listen", f"127.0.0.1:{port}", "--xmlrpc-user", USER,
                                                "--xmlrpc-password-file", str(tmp_path / "p2"),
                                                "--xmlrpc-groups", "admins"))
    second = Endpoint(port)
    wait_for(lambda: len(second.proxy().supervisor.getAllProcessInfo()) == 9, 20, "the follower to see the fleet")
    with pytest.raises(xmlrpc.client.Fault) as fault:
        second.proxy().supervisor.stopProcess("web-1/app:app")
    assert fault.value.faultCode == 30 and "not the leader" in fault.value.faultString
    assert ctl.address in fault.value.faultString
    assert not follower.is_leader()


def test_unauthenticated_off_loopback_is_refused_at_start(tmp_path):
    result = subprocess.run([*CONTROLLER, "--etcd", "127.0.0.1:1", "--state-dir", str(tmp_path),
                             "--xmlrpc-listen", f"0.0.0.0:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "refusing to serve XML-RPC on 0.0.0.0 without a login" in result.stderr
    assert "Traceback" not in result.stderr


def test_unix_socket_without_login(fleet, tmp_path):
    path = tmp_path / "fleet.sock"
    ctl = fleet.controller(extra=("--xmlrpc-listen", f"unix:{path}"))
    ctl.wait_line("supervisor XML-RPC on")
    fleet.agent("web-1", ctl)
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    wait_for(lambda: "web-1/app:app" in subprocess.run(
        [SUPERVISORCTL, "-s", f"unix://{path}", "status"], capture_output=True, text=True, timeout=30).stdout,
        20, "status over the unix socket")


def test_a_node_down_since_before_the_controller_started_is_listed(fleet, tmp_path):
    first = fleet.controller()
    fleet.agent("web-1", first)
    fleet.agent("db-1", first)
    wait_status(first, lambda s: len(states(s)) == 2, what="two nodes' processes")
    fleet.agents[1].kill()
    first.stop()
    port = free_port()
    (tmp_path / "pass").write_text(PASSWORD)
    fleet.controller("ctl-2", extra=("--xmlrpc-listen", f"127.0.0.1:{port}", "--xmlrpc-user", USER,
                                     "--xmlrpc-password-file", str(tmp_path / "pass"), "--xmlrpc-groups", "admins"))
    ep = Endpoint(port)

    def listed() -> bool:
        lines = status_lines(ep.ctl("status").stdout)
        return lines.get("web-1/app:app", [""])[0] == "RUNNING" and lines.get("db-1/*:*", [""])[0] == "UNKNOWN"
    wait_for(listed, 30, "web-1 running and db-1 listed as unknown")
    seen: list[str] = []

    def said_down() -> bool:
        seen[:] = [ep.ctl("status", "db-1/*:*").stdout]
        return "node db-1 is down" in seen[0]
    try:
        wait_for(said_down, 30, "db-1 said to be down")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status said {seen}") from None


def test_a_viewer_reads_and_its_writes_are_refused_and_audited(fleet, tmp_path):
    port = free_port()
    (tmp_path / "pass").write_text(PASSWORD)
    ctl = fleet.controller(extra=("--xmlrpc-listen", f"127.0.0.1:{port}", "--xmlrpc-user", USER,
                                  "--xmlrpc-password-file", str(tmp_path / "pass"), "--xmlrpc-role", "viewer"))
    fleet.agent("web-1", ctl)
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    ep = Endpoint(port)
    wait_for(lambda: "RUNNING" in ep.ctl("status", "web-1/app:app").stdout, 20, "the viewer to see web-1")
    result = ep.ctl("stop", "web-1/app:app")
    assert result.stdout.startswith("FAILED: viewer ops may not control web-1:app"), result.stdout
    assert states(ctl.status())["web-1:app"] == "RUNNING"
    denied = [e for e in ctl.stub.ListAudit(pb.ListAuditRequest(), timeout=5).entries if e.action == "denied"]
    assert any(e.who == USER and "xmlrpc/supervisor.stopProcess" in e.detail for e in denied)
