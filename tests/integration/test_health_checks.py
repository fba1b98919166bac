"""Health checks with real processes (issue 16): an HTTP server that stops answering well turns
unhealthy and, with healthcheck_action=restart, is restarted; health is a field of its own, so
stock clients keep seeing the states they know."""

from __future__ import annotations

import json
import os
import pwd
import signal
import sys
import textwrap
import urllib.request
from pathlib import Path
from xmlrpc.client import ServerProxy

import grpc
import pytest

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from tests.support import free_port, wait_for

from .harness import Daemon, write_config

SERVER = Path(__file__).parent / "programs" / "health_server.py"


def start(tmp_path: Path, daemons, action: str) -> tuple[Daemon, pb_grpc.AgentServiceStub, ServerProxy, Path]:
    web_port, http_port, grpc_port = free_port(), free_port(), free_port()
    flag = tmp_path / "fail"
    config = write_config(tmp_path, textwrap.dedent(f"""
        [supervisord]
        logfile=%(here)s/main.log
        pidfile=%(here)s/supervisord.pid
        childlogdir=%(here)s
        [inet_http_server]
        port=127.0.0.1:{http_port}
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [fleetvisor]
        node=web-1
        grpc_listen=127.0.0.1:{grpc_port}
        state_dir=%(here)s/state
        [program:web]
        command={sys.executable} {SERVER} {web_port} {flag}
        startsecs=0
        stopwaitsecs=2
        healthcheck=http://127.0.0.1:{web_port}/health
        healthcheck_interval=0.2
        healthcheck_timeout=2
        healthcheck_retries=2
        healthcheck_start_period=10
        healthcheck_action={action}
        """))
    daemon = daemons(config)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    grpc.channel_ready_future(channel).result(timeout=15)
    proxy = ServerProxy(f"http://127.0.0.1:{http_port}/RPC2")
    proxy.page = f"http://127.0.0.1:{http_port}/"  # type: ignore[attr-defined]
    return daemon, pb_grpc.AgentServiceStub(channel), proxy, flag


STOCK_FIELDS = {"name", "group", "start", "stop", "now", "state", "statename", "spawnerr", "exitstatus", "logfile",
                "stdout_logfile", "stderr_logfile", "pid", "description"}


def health(stub) -> tuple[int, str]:
    proc = stub.ListProcesses(pb.ListProcessesRequest(names=["web"]), timeout=5).processes[0]
    return proc.health, proc.health_message


def test_an_unhealthy_server_is_restarted_and_clients_see_only_supervisord_states(tmp_path, daemons):
    daemon, stub, xmlrpc, flag = start(tmp_path, daemons, "restart")
    daemon.wait_line(r"INFO healthy: web \(health check passed\)", timeout=20)
    assert health(stub)[0] == pb.HEALTHY  # its message may tell a failure of the start period
    first = xmlrpc.supervisor.getProcessInfo("web")["pid"]

    flag.touch()  # the server now answers 500
    daemon.wait_line(r"WARN unhealthy: web \(health check failed 2 times in a row: http://127\.0\.0\.1:\d+/health "
                     r"answered HTTP 500\); restarting it", timeout=20)
    flag.unlink()
    daemon.wait_line(r"INFO healthy: web", timeout=20, count=2)
    again = xmlrpc.supervisor.getProcessInfo("web")
    assert again["pid"] != first and again["statename"] == "RUNNING"
    assert set(again) == STOCK_FIELDS  # health is not sent to supervisord's clients
    assert health(stub)[0] == pb.HEALTHY


def test_without_the_restart_action_an_unhealthy_process_runs_on(tmp_path, daemons):
    daemon, stub, xmlrpc, flag = start(tmp_path, daemons, "none")
    daemon.wait_line(r"INFO healthy: web", timeout=20)
    pid = xmlrpc.supervisor.getProcessInfo("web")["pid"]
    flag.touch()
    daemon.wait_line(r"WARN unhealthy: web \(health check failed 2 times in a row: .* answered HTTP 500\)$",
                     timeout=20)
    state, message = health(stub)
    assert state == pb.UNHEALTHY and message.endswith("answered HTTP 500")
    info = xmlrpc.supervisor.getProcessInfo("web")
    assert (info["pid"], info["statename"]) == (pid, "RUNNING")

    page = urllib.request.urlopen(xmlrpc.page, timeout=10).read().decode()  # the agent's web page
    assert '<span class="state health bad" title="' in page and ">unhealthy</span>" in page

    xmlrpc.supervisor.stopProcess("web")  # health is unknown again once it is not RUNNING
    wait_for(lambda: health(stub)[0] == pb.HEALTH_UNKNOWN, 10, "health unknown after the stop")


CRASHMAIL = Path(sys.executable).parent / "crashmail"
RECORDER = Path(__file__).parent / "listeners" / "recorder.py"


def test_health_events_reach_listeners_and_superlance_crashmail_runs_on(tmp_path, daemons):
    """crashmail subscribed to every EVENT gets our health events too: it must pass over them
    and still mail the crash; a listener of FLEETVISOR_PROCESS_HEALTH gets each change."""
    mailbox, sendmail, flag, seen = tmp_path / "mailbox", tmp_path / "sendmail.sh", tmp_path / "fail", tmp_path / "seen"
    sendmail.write_text(f"#!/bin/sh\ncat >> {mailbox}\n")
    sendmail.chmod(0o755)
    config = write_config(tmp_path, textwrap.dedent(f"""
        [supervisord]
        logfile=%(here)s/main.log
        pidfile=%(here)s/supervisord.pid
        childlogdir=%(here)s
        [eventlistener:crashmail]
        command={CRASHMAIL} -a -m ops@example.com -s {sendmail}
        events=EVENT
        environment=SUPERVISOR_SERVER_URL="unix://%(here)s/unused.sock"
        [eventlistener:health]
        command={sys.executable} {RECORDER} {seen}
        events=FLEETVISOR_PROCESS_HEALTH
        [program:api]
        command=sleep 1000
        startsecs=0
        healthcheck=exec:test ! -e {flag}
        healthcheck_interval=0.2
        healthcheck_retries=1
        [program:crashy]
        command=/bin/sh -c "test -e {flag} && exit 2; sleep 1000"
        startsecs=0
        autorestart=false
        """))
    daemon = daemons(config)
    daemon.wait_line(r"INFO healthy: api", timeout=20)
    flag.touch()
    daemon.wait_line(r"WARN unhealthy: api", timeout=20)
    crashy = daemon.pid_of("crashy")
    os.kill(crashy, signal.SIGKILL)  # an unexpected exit, while health events flow
    mail = wait_for(lambda: mailbox.exists() and mailbox.read_text(), 15, "crashmail's mail")
    assert "Process crashy in group crashy exited unexpectedly" in mail
    events = wait_for(lambda: [e for e in map(json.loads, seen.read_text().splitlines())]
                      if seen.exists() and seen.read_text().count("\n") >= 2 else None, 15, "two health events")
    assert [e["headers"]["eventname"] for e in events[:2]] == ["FLEETVISOR_PROCESS_HEALTH_HEALTHY",
                                                               "FLEETVISOR_PROCESS_HEALTH_UNHEALTHY"]
    header, _, message = events[1]["payload"].partition("\n")
    assert header == "processname:api groupname:api from_health:healthy"
    assert message == "test exited with status 1"


@pytest.mark.skipif(os.getuid() != 0, reason="running a check as another user needs root")
def test_an_exec_check_runs_as_the_program_user_in_its_directory_and_environment(tmp_path, daemons):
    nobody = pwd.getpwnam("nobody")
    config = write_config(tmp_path, textwrap.dedent(f"""
        [supervisord]
        logfile=%(here)s/main.log
        pidfile=%(here)s/supervisord.pid
        childlogdir=%(here)s
        [program:api]
        command=sleep 1000
        startsecs=0
        user=nobody
        directory=/tmp
        environment=MARK="from-the-program"
        healthcheck=exec:sh -c 'test "$(id -u)" = {nobody.pw_uid} && test "$PWD" = /tmp && test "$MARK" = from-the-program'
        healthcheck_interval=0.2
        """))
    daemons(config).wait_line(r"INFO healthy: api \(health check passed\)", timeout=20)
