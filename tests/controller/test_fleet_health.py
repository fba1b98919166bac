"""Health checks as the fleet sees them (issue 16): a process's health reaches the controller's
status through the agent's event stream, and fleetctl status shows it in a column of its own."""

from __future__ import annotations

from pathlib import Path

from fleetvisor.v1 import agent_pb2 as apb

from .fleet_harness import fleetctl, states, wait_status

CHECKED = """
[program:api]
command=sleep 1000
startsecs=0
stopwaitsecs=2
healthcheck=exec:test ! -e {flag}
healthcheck_interval=0.2
healthcheck_retries=1
[program:plain]
command=sleep 1000
startsecs=0
stopwaitsecs=2
"""


def health_of(status, spec: str) -> tuple[int, str]:
    found = {p.namespec: p for n in status.nodes for p in n.processes}[spec]
    return found.health, found.health_message


def test_health_reaches_fleet_status_and_fleetctl(fleet, tmp_path: Path):
    flag = tmp_path / "broken"
    ctl = fleet.controller()
    fleet.agent("web-1", ctl, programs=CHECKED.format(flag=flag))
    wait_status(ctl, lambda s: health_of(s, "api")[0] == apb.HEALTHY if "web-1:api" in states(s) else False,
                what="api healthy in the controller's status")
    assert health_of(ctl.status(), "plain")[0] == apb.HEALTH_UNSPECIFIED
    shown = fleetctl(ctl.address, "status")
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line.startswith("  ")}
    assert rows["api"][1:3] == ["RUNNING", "healthy"], shown.stdout
    assert rows["plain"][1] == "RUNNING" and "healthy" not in rows["plain"]

    flag.touch()
    status = wait_status(ctl, lambda s: health_of(s, "api")[0] == apb.UNHEALTHY, what="api unhealthy")
    assert health_of(status, "api")[1] == "test exited with status 1"
    assert states(status)["web-1:api"] == "RUNNING"  # health is not a state
    shown = fleetctl(ctl.address, "status")
    assert "unhealthy (test exited with status 1)" in shown.stdout, shown.stdout
