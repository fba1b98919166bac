"""Mutual TLS across the whole fleet: fleetctl -> controller -> agents, and agents -> controller.

Certificates come from `fleetctl certs`' own functions (cli/certs.py): one CA, a node
certificate (serves and dials) for the controller and for each agent, a client-only
certificate for the operator. Everything is judged through the real `fleetctl` process,
since the harness's plaintext gRPC stub cannot talk to a TLS controller (which is the point).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fleetvisor.cli.certs import issue, make_ca

from tests.support import wait_for

from .fleet_harness import CLUSTER, FLEETCTL, SLEEPER, Agent, one_line_error

ENV = {"FLEETCTL_CONFIG": "/nonexistent", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
OPERATOR = "alice"
TALKER = """
[program:talker]
command=sh -c 'echo hello-over-tls; exec sleep 1000'
startsecs=0
stopwaitsecs=2
"""


def tls_flags(directory: Path, name: str, ca: Path | None = None) -> tuple[str, ...]:
    return ("--tls-cert", str(directory / f"{name}.pem"), "--tls-key", str(directory / f"{name}.key"),
            "--tls-ca", str(ca or directory / "ca.pem"))


def tls_agent(base: Path, node: str, controller: str, pki: Path, *, cert_dir: Path | None = None,
              programs: str = SLEEPER.format(name="app") + TALKER) -> Agent:
    """An agent whose [fleetvisor] section names its certificate, key and CA: its gRPC face then
    requires client certificates, and its heartbeats dial the controller with its own."""
    cert_dir = cert_dir or pki
    tls = f"tls_cert={cert_dir / node}.pem\ntls_key={cert_dir / node}.key\ntls_ca={pki / 'ca.pem'}\n"
    return Agent(base, node, [controller], labels="role=web", programs=programs, fleetvisor_extra=tls)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    make_ca(directory)
    issue(directory, "ctl-1", ["127.0.0.1"], role="controller", cluster=CLUSTER)
    for name in ("web-1", "web-2"):
        issue(directory, name, ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(directory, OPERATOR, [], role="operator", groups=["admins"], cluster=CLUSTER)
    return directory


@pytest.fixture
def rogue_pki(tmp_path: Path) -> Path:
    """Another CA, with certificates that look right but that the fleet must not trust."""
    directory = tmp_path / "rogue"
    make_ca(directory, "rogue CA")
    issue(directory, "mallory", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(directory, "web-9", ["127.0.0.1"], role="agent", cluster=CLUSTER)
    return directory


class TLSFleet:
    def __init__(self, fleet, pki: Path) -> None:
        self.fleet = fleet
        self.pki = pki
        self.ctl = fleet.controller("ctl-1", node_ttl=3, extra=tls_flags(pki, "ctl-1"))

    def agent(self, node: str, **kwargs) -> Agent:
        agent = tls_agent(self.fleet.base, node, self.ctl.address, self.pki, **kwargs)
        self.fleet.agents.append(agent)  # stopped with the rest of the fleet, also on failure
        return agent

    def run(self, *args: str, flags: tuple[str, ...] | None = None) -> subprocess.CompletedProcess:
        """fleetctl as the operator (alice's certificate), or with other `flags`."""
        flags = tls_flags(self.pki, OPERATOR) if flags is None else flags
        return subprocess.run([*FLEETCTL, "--controller", self.ctl.address, *flags, *args], capture_output=True,
                              text=True, timeout=30, env=ENV)

    def json(self, *args: str):
        result = self.run("-o", "json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_running(self, nodes: list[str], timeout: float = 20.0) -> dict:
        holder: list[dict] = []

        def probe():
            result = self.run("-o", "json", "status")
            if result.returncode not in (0, 3):
                return False
            holder[:] = [json.loads(result.stdout)]
            seen = {n["node"]["name"]: n for n in holder[0]["nodes"]}
            return sorted(seen) == sorted(nodes) and all(
                n["node"]["up"] and n["node"]["reachable"] and n["processes"]
                and all(p["statename"] == "RUNNING" for p in n["processes"]) for n in seen.values())
        wait_for(probe, timeout, f"{', '.join(nodes)} live over mutual TLS")
        return holder[0]


@pytest.fixture
def tls_fleet(fleet, pki) -> TLSFleet:
    f = TLSFleet(fleet, pki)
    f.agent("web-1")
    f.agent("web-2")
    f.wait_running(["web-1", "web-2"])
    wait_for(lambda: f.json("leader")["is_leader"], 10, "ctl-1 to lead")
    return f


def test_status_control_and_tail_work_end_to_end_over_mutual_tls(tls_fleet):
    f = tls_fleet
    assert "(mutual TLS)" in f.ctl.log()
    for agent in f.fleet.agents:
        agent.daemon.wait_line(r"gRPC AgentService listening on .* \(mutual TLS\)")
        agent.daemon.wait_line(r"registered with controller")

    status = f.run("status")
    assert status.returncode == 0 and not status.stderr, status.stderr
    assert status.stdout.splitlines()[-1] == "nodes: 2 up, 0 down, 0 unreachable   processes: 4 (4 RUNNING)"
    assert [line.split()[:5] for line in status.stdout.splitlines() if line.startswith("web-")] == \
        [[n, a.address, "up", "reachable", "live"] for n, a in (("web-1", f.fleet.agents[0]),
                                                                 ("web-2", f.fleet.agents[1]))]

    # the controller dials the agents with its own certificate for commands and logs
    stop = f.run("stop", "*:app")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.count("stopped") == 2
    wait_for(lambda: f.run("status", "web-1:app").returncode == 3, 10, "web-1:app shown stopped")
    assert f.run("start", "*:app").returncode == 0
    tail = f.run("tail", "web-2:talker")
    assert tail.returncode == 0 and tail.stdout == "hello-over-tls\n", tail.stdout + tail.stderr
    assert f.run("leader").stdout.startswith(f"leader: ctl-1 at {f.ctl.address}")


def test_a_pushed_config_reaches_the_agents_over_mutual_tls(tls_fleet, tmp_path):
    f = tls_fleet
    (tmp_path / "extra.conf").write_text("[program:extra]\ncommand=sleep 1000\nstartsecs=0\n")
    pushed = f.run("config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--label", "role=web",
                   "-m", "over TLS")
    assert pushed.returncode == 0 and "extra revision 1 stored; targets: web-1, web-2" in pushed.stdout

    def in_sync():
        nodes = f.json("config", "status")["nodes"]
        return len(nodes) == 2 and all(n["in_sync"] and n["applied_revision"] == "extra@1" for n in nodes)
    wait_for(in_sync, 20, "both agents to apply extra@1")
    status = f.wait_running(["web-1", "web-2"])
    assert all("extra" in [p["name"] for p in n["processes"]] for n in status["nodes"])


def test_fleetctl_without_a_trusted_client_certificate_is_refused_in_one_line(tls_fleet, rogue_pki, tmp_path):
    f = tls_fleet
    plaintext = f.run("status", flags=())
    assert plaintext.returncode != 0 and not plaintext.stdout
    line = one_line_error(plaintext)
    assert f"controller {f.ctl.address}" in line and "TLS" in line and "--tls-cert" in line, line

    # a certificate the controller's CA did not sign: the controller hangs up in the handshake
    stranger = f.run("status", flags=tls_flags(rogue_pki, "mallory", ca=f.pki / "ca.pem"))
    assert stranger.returncode != 0 and not stranger.stdout
    line = one_line_error(stranger)
    assert f"controller {f.ctl.address}" in line and "TLS handshake" in line and "signed by its CA" in line, line

    # fleetctl itself refuses a controller whose certificate its CA did not sign, or that names another host
    wrong_ca = f.run("status", flags=tls_flags(f.pki, OPERATOR, ca=rogue_pki / "ca.pem"))
    assert wrong_ca.returncode != 0
    assert f"TLS handshake with controller {f.ctl.address} failed: its certificate is not signed by the CA " \
        "fleetctl trusts (--tls-ca)" in one_line_error(wrong_ca)
    issue(f.pki, "ctl-elsewhere", ["10.9.9.9"], role="controller", cluster=CLUSTER)
    elsewhere = f.fleet.controller("ctl-elsewhere", extra=tls_flags(f.pki, "ctl-elsewhere"))
    misnamed = subprocess.run([*FLEETCTL, "--controller", elsewhere.address, *tls_flags(f.pki, OPERATOR), "leader"],
                              capture_output=True, text=True, timeout=30, env=ENV)
    assert misnamed.returncode == 1
    assert "its certificate does not name 127.0.0.1 (issue it with --host 127.0.0.1)" in one_line_error(misnamed)

    # writes are refused as well, and leave nothing behind (not even an audit entry)
    (tmp_path / "extra.conf").write_text("[program:extra]\ncommand=sleep 1000\n")
    for flags in ((), tls_flags(rogue_pki, "mallory", ca=f.pki / "ca.pem")):
        push = f.run("config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--nodes", "web-1",
                     "-m", "sneaky", flags=flags)
        assert push.returncode == 1 and "Traceback" not in push.stderr
        one_line_error(push)
    assert f.json("config", "list") == {"configs": []}
    assert f.json("audit")["entries"] == []

    incomplete = f.run("status", flags=("--tls-cert", str(f.pki / f"{OPERATOR}.pem")))
    assert incomplete.returncode == 2 and "all three" in one_line_error(incomplete)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    bad_file = f.run("status", flags=("--tls-cert", str(not_pem), "--tls-key", str(f.pki / f"{OPERATOR}.key"),
                                      "--tls-ca", str(f.pki / "ca.pem")))
    assert bad_file.returncode == 2 and f"{not_pem} is not a PEM file" in one_line_error(bad_file)


def test_audit_names_the_client_certificate_not_the_claimed_user(tls_fleet, tmp_path):
    f = tls_fleet
    (tmp_path / "extra.conf").write_text("[program:extra]\ncommand=sleep 1000\nstartsecs=0\n")
    assert f.run("config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--nodes", "web-1",
                 "-m", "by alice").returncode == 0
    assert f.run("stop", "web-2:app").returncode == 0
    entries = f.json("audit")["entries"]
    assert [(e["action"], e["who"], e["ok"]) for e in entries] == \
        [("config.push", OPERATOR, True), ("control.stop", OPERATOR, True)]
    assert not any("unverified" in e["who"] for e in entries)
    table = f.run("audit").stdout
    assert "(unverified)" not in table and " alice " in table

    history = f.run("config", "history", "extra").stdout.splitlines()
    assert history[1].split()[3] == OPERATOR  # REV DATE TIME AUTHOR: the revision's author is the CN too


def test_an_agent_with_a_foreign_certificate_does_not_join(tls_fleet, rogue_pki):
    f = tls_fleet
    rogue = tls_agent(f.fleet.base, "web-9", f.ctl.address, f.pki, cert_dir=rogue_pki)
    f.fleet.agents.append(rogue)
    rogue.daemon.wait_line(r"cannot reach any controller .*; retrying", timeout=15)
    assert "registered with controller" not in "\n".join(rogue.daemon.messages())
    assert [n["name"] for n in f.json("nodes")["nodes"]] == ["web-1", "web-2"]
