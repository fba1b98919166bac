"""/metrics on the agent (issue 17): the Prometheus text format on its HTTP server, behind the
same basic auth, read from the live state of real processes."""

from __future__ import annotations

import base64
import os
import signal
import textwrap
import urllib.error
import urllib.request
from xmlrpc.client import ServerProxy

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from tests.support import free_port, wait_for

from .events_helpers import recorder
from .harness import write_config

CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
[inet_http_server]
port=127.0.0.1:{port}
username=ops
password=s3cret
[fleetvisor]
node=metrics-1
grpc_listen=127.0.0.1:{grpc_port}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:talker]
command=sh -c 'echo hello; echo oops >&2; exec sleep 1000'
startsecs=0
stdout_logfile=%(here)s/talker.out
stderr_logfile=%(here)s/talker.err
[program:checked]
command=sleep 1000
startsecs=0
healthcheck=exec:true
healthcheck_interval=0.2
healthcheck_retries=1
[program:idle]
command=sleep 1000
autostart=false
[eventlistener:rec]
command={recorder}
events=PROCESS_STATE_RUNNING
startsecs=0
"""


def scrape(port: int, auth: str | None = "ops:s3cret") -> dict[tuple[str, tuple], float]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, metric: str, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


@pytest.fixture
def agent(tmp_path, daemons):
    port, grpc_port = free_port(), free_port()
    config = write_config(tmp_path, textwrap.dedent(CONFIG.format(port=port, grpc_port=grpc_port,
                                                                  recorder=recorder(tmp_path / "events"))))
    daemon = daemons(config)
    rpc = ServerProxy(f"http://ops:s3cret@127.0.0.1:{port}/RPC2")
    wait_for(lambda: daemon.proc.poll() is None and _answers(rpc), 20, "the agent answering")
    return daemon, rpc, port, grpc_port


def _answers(rpc: ServerProxy) -> bool:
    try:
        return rpc.supervisor.getState()["statename"] == "RUNNING"
    except OSError:
        return False


def test_process_series_follow_the_processes(agent):
    daemon, rpc, port, grpc_port = agent
    node = {"node": "metrics-1"}
    wait_for(lambda: rpc.supervisor.getProcessInfo("checked")["statename"] == "RUNNING", 10, "checked running")
    wait_for(lambda: value(scrape(port), "fleetvisor_process_health", **node, group="checked", name="checked",
                           health="healthy") == 1, 10, "checked healthy in the metrics")
    samples = scrape(port)
    talker = {**node, "group": "talker", "name": "talker"}
    assert value(samples, "fleetvisor_process_state", **talker, state="RUNNING") == 1
    assert value(samples, "fleetvisor_process_state", **talker, state="STOPPED") == 0
    assert value(samples, "fleetvisor_process_state", **node, group="idle", name="idle", state="STOPPED") == 1
    assert value(samples, "fleetvisor_process_health", **node, group="talker", name="talker",
                 health="healthy") is None  # no check, no health series
    info = rpc.supervisor.getProcessInfo("talker")
    assert int(value(samples, "fleetvisor_process_start_time_seconds", **talker)) == info["start"]
    assert value(samples, "fleetvisor_process_resident_memory_bytes", **talker) > 0
    assert value(samples, "fleetvisor_process_cpu_seconds_total", **talker) >= 0
    wait_for(lambda: value(scrape(port), "fleetvisor_process_log_bytes_total", **talker, channel="stdout") == 6,
             10, "hello\\n counted")
    assert value(scrape(port), "fleetvisor_process_log_bytes_total", **talker, channel="stderr") == 5
    assert value(samples, "fleetvisor_process_restarts_total", **talker) == 0

    rpc.supervisor.stopProcess("talker")
    rpc.supervisor.startProcess("talker")
    os.kill(rpc.supervisor.getProcessInfo("talker")["pid"], signal.SIGKILL)  # an unexpected exit
    wait_for(lambda: value(scrape(port), "fleetvisor_process_exits_total", **talker, expected="false") == 1,
             10, "the unexpected exit counted")
    wait_for(lambda: rpc.supervisor.getProcessInfo("talker")["statename"] == "RUNNING", 10, "autorestarted")
    samples = scrape(port)
    assert value(samples, "fleetvisor_process_restarts_total", **talker) == 2
    assert value(samples, "fleetvisor_process_exits_total", **talker, expected="true") == 0
    assert value(samples, "fleetvisor_process_state", **talker, state="RUNNING") == 1


def test_agent_series_and_auth(agent, tmp_path):
    daemon, rpc, port, grpc_port = agent
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        apb_grpc.AgentServiceStub(channel).GetInfo(apb.GetInfoRequest(), timeout=5)
    rpc.supervisor.getState()
    samples = scrape(port)
    assert value(samples, "fleetvisor_agent_rpc_calls_total", face="grpc",
                 method="fleetvisor.v1.AgentService/GetInfo") == 1
    assert value(samples, "fleetvisor_agent_rpc_calls_total", face="xmlrpc", method="supervisor.getState") >= 2
    assert 0 <= value(samples, "fleetvisor_agent_event_loop_lag_seconds") < 1
    events = tmp_path / "events"
    wait_for(lambda: events.exists() and events.read_text().count("\n") >= 1, 10, "the listener heard an event")
    assert value(scrape(port), "fleetvisor_agent_events_delivered_total") >= events.read_text().count("\n")
    build = [k for k in samples if k[0] == "fleetvisor_build_info"]
    assert len(build) == 1 and ("component", "agent") in build[0][1]
    for auth in (None, "ops:wrong"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(port, auth)
        assert refused.value.code == 401
