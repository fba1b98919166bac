"""The controller's /metrics (--metrics-listen), scraped from a real controller with an agent and etcd."""

from __future__ import annotations

import subprocess
import urllib.request

import grpc

from prometheus_client.parser import text_string_to_metric_families

from fleetvisor.v1 import controller_pb2 as pb
from tests.support import free_port, wait_for

from .conftest import Fleet
from .fleet_harness import CONTROLLER


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def grpc_count(samples: dict, method: str) -> float:
    return sum(v for (name, labels), v in samples.items()
               if name == "fleetvisor_controller_grpc_request_duration_seconds_count"
               and dict(labels).get("method") == method and dict(labels).get("code") == "OK")


FLAPPER = """
[program:flapper]
command=sh -c "sleep 0.2; exit 1"
startsecs=0
autorestart=true
stdout_logfile=NONE
"""


def test_a_flapping_process_does_not_make_the_reconciler_read_the_fleet_again(fleet: Fleet) -> None:
    """Process states are no input of config reconciliation: the leader's reconciler passes over
    every node when something it reads changed, not on every event of a live stream."""
    port = free_port()
    ctl = fleet.controller(extra=("--metrics-listen", f"127.0.0.1:{port}"))
    fleet.agent("node-a", ctl, programs=FLAPPER)
    passes = ("fleetvisor_controller_reconcile_passes_total", ())
    wait_for(lambda: scrape(port).get(passes, 0) > 0, 15, "the leader's first reconcile pass")

    pids: set[int] = set()

    def runs() -> int:
        try:
            status = ctl.status("node-a:flapper")
        except grpc.RpcError:  # not registered yet
            return 0
        pids.update(p.pid for n in status.nodes for p in n.processes if p.pid)
        return len(pids)
    wait_for(lambda: runs() >= 2, 30, "node-a followed, its process flapping")
    before, seen = scrape(port)[passes], len(pids)
    wait_for(lambda: runs() >= seen + 10, 60, "ten more runs of the flapping process")
    assert scrape(port)[passes] - before <= 2, "a process flap woke a reconcile pass"


def test_controller_metrics_follow_the_fleet(fleet: Fleet) -> None:
    port = free_port()
    ctl = fleet.controller(extra=("--metrics-listen", f"127.0.0.1:{port}"))
    fleet.agent("node-a", ctl)
    wait_for(lambda: scrape(port).get(("fleetvisor_controller_leader", ())) == 1, 15, "the leader flag")
    wait_for(lambda: scrape(port).get(("fleetvisor_controller_nodes", (("state", "up"),))) == 1, 15, "node-a up")
    samples = scrape(port)
    assert samples[("fleetvisor_controller_nodes", (("state", "down"),))] == 0
    assert ("fleetvisor_controller_node_heartbeat_age_seconds", (("node", "node-a"),)) in samples
    assert samples[("fleetvisor_build_info", (("component", "controller"), ("version", "0.1.0")))] == 1
    assert any(name == "fleetvisor_controller_etcd_request_duration_seconds_count" and v > 0
               for (name, _), v in samples.items())
    assert samples[("fleetvisor_controller_operations", (("kind", "ROLLING_RESTART"), ("state", "running")))] == 0
    method = "/fleetvisor.v1.ControllerService/ListNodes"
    before = grpc_count(samples, method)
    ctl.stub.ListNodes(pb.ListNodesRequest(), timeout=5)
    assert grpc_count(scrape(port), method) == before + 1
    wait_for(lambda: ("fleetvisor_controller_node_config_drift", (("node", "node-a"),)) in scrape(port), 15,
             "node-a's drift series")


def test_metrics_listen_off_loopback_needs_the_explicit_opt_in(fleet: Fleet) -> None:
    result = subprocess.run([*CONTROLLER, "--etcd", fleet.etcd.endpoint, "--listen", f"127.0.0.1:{free_port()}",
                             "--metrics-listen", f"0.0.0.0:{free_port()}", "--state-dir", str(fleet.base / "x")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--metrics-insecure" in result.stderr
