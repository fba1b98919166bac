"""A real Prometheus (Debian's `prometheus`) scrapes one agent and one controller from the example
config in deploy/prometheus/, and sees a process stopped through fleetctl. Needs the agent's /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, wait_for

from .conftest import Fleet
from .fleet_harness import SLEEPER, fleetctl

DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus")
USER, PASSWORD = "monitor", "scrape-secret"

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus (deploy/setup.sh --test)")


def scrape_config(deployed: str, agent: str, controller: str, password_file: Path) -> str:
    """The deploy/ config with this test's targets, password file and a short interval; the rest kept."""
    text = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", deployed)
    text = re.sub(r"password_file: \S+", f"password_file: {password_file}", text)
    text = re.sub(r"username: \S+", f"username: {USER}", text)
    agent_job, controller_job = text.split("- job_name: fleetvisor-controller")
    agent_job = re.sub(r"targets: \[.*\]", f'targets: ["{agent}"]', agent_job)
    controller_job = re.sub(r"targets: \[.*\]", f'targets: ["{controller}"]', controller_job)
    return agent_job + "- job_name: fleetvisor-controller" + controller_job


class Prometheus:
    def __init__(self, base: Path, config: str) -> None:
        base.mkdir(parents=True, exist_ok=True)
        (base / "prometheus.yml").write_text(config)
        self.port = free_port()
        self.log = open(base / "prometheus.log", "wb")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={base / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={base / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.load(resp)["data"]["result"]
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.proc.returncode})") from None
            return []

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def test_prometheus_scrapes_an_agent_and_a_controller(fleet: Fleet, tmp_path: Path) -> None:
    metrics_port, http_port = free_port(), free_port()
    ctl = fleet.controller(extra=("--metrics-listen", f"127.0.0.1:{metrics_port}"))
    programs = (f"[inet_http_server]\nport=127.0.0.1:{http_port}\nusername={USER}\npassword={PASSWORD}\n"
                + SLEEPER.format(name="app"))
    fleet.agent("node-a", ctl, programs=programs)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    config = scrape_config(DEPLOYED.read_text(), f"127.0.0.1:{http_port}", f"127.0.0.1:{metrics_port}", password_file)
    prom = Prometheus(tmp_path / "prometheus", config)
    try:
        def up() -> bool:
            return sorted((r["metric"]["job"], r["value"][1]) for r in prom.query("up")) == [
                ("fleetvisor-agent", "1"), ("fleetvisor-controller", "1")]
        wait_for(up, 30, "up == 1 for the agent and the controller")

        def state(name: str) -> bool:
            return bool(prom.query(f'fleetvisor_process_state{{node="node-a",name="app",state="{name}"}} == 1'))
        wait_for(lambda: state("RUNNING"), 30, "node-a's app RUNNING in Prometheus")
        assert prom.query('fleetvisor_controller_nodes{state="up"} == 1')
        stop = fleetctl(ctl.address, "stop", "node-a:app")
        assert stop.returncode == 0, stop.stderr
        wait_for(lambda: state("STOPPED"), 30, "node-a's app STOPPED in Prometheus")
    finally:
        prom.close()
