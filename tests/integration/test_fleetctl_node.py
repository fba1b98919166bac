"""fleetctl in per-node mode as an operator runs it: a subprocess against a real agent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import free_port, wait_for

from .harness import Daemon, write_config

FLEETCTL = [sys.executable, "-m", "fleetvisor.cli.main"]

CONFIG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s

[fleetvisor]
node=node-b
grpc_listen=127.0.0.1:{port}
state_dir=%(here)s/state
{tls}

[program:app]
command=/bin/sh -c "echo app-started; exec sleep 1000"
stdout_logfile=%(here)s/app.log
startsecs=0

[program:worker]
command=sleep 1000
startsecs=0

[program:broken]
command=/no/such/program
autostart=false
startretries=0

[program:nodir]
command=sleep 1000
directory=/no/such/dir
autostart=false
startretries=0
"""


def fleetctl(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETCTL, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml", **(env or {})})


def start_agent(directory: Path, tls: str = "") -> tuple[Daemon, str]:
    port = free_port()
    config = write_config(directory, textwrap.dedent(CONFIG).replace("{port}", str(port)).replace("{tls}", tls))
    daemon = Daemon(config)
    daemon.wait_line(r"gRPC AgentService listening on")
    daemon.wait_line(r"success: worker entered RUNNING")
    daemon.wait_line(r"success: app entered RUNNING")
    return daemon, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    daemon, address = start_agent(tmp_path_factory.mktemp("fleetctl"))
    yield address
    daemon.stop()


def test_status_table_and_exit_codes(node):
    result = fleetctl("--node", node, "status", "app", "worker")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NODE", "NAME", "STATE", "PID", "DESCRIPTION"]
    assert any(line.split()[:3] == ["node-b", "app", "RUNNING"] for line in lines)
    everything = fleetctl("--node", node, "status")
    assert everything.returncode == 3  # `broken` is STOPPED, as supervisorctl status says with 3
    # through a pipe narrower than a row: each process stays on one line with its whole description
    narrow = fleetctl("--node", node, "status", "app", "worker", env={"COLUMNS": "40"})
    rows = narrow.stdout.splitlines()
    assert narrow.returncode == 0 and len(rows) == 3 and max(len(row) for row in rows) > 40, narrow.stdout
    assert all(re.fullmatch(r"node-b  +(app|worker) +RUNNING +\d+ +pid \d+, uptime \d+:\d\d:\d\d", row)
               for row in rows[1:]), rows
    bad = fleetctl("--node", node, "status", "ghost")
    assert bad.returncode == 4 and bad.stderr.count("\n") == 1 and "ghost" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_status_json(node):
    result = fleetctl("--node", node, "--output", "json", "status", "app")
    data = json.loads(result.stdout)
    assert data["node"] == "node-b"
    [app] = data["processes"]
    assert app["name"] == "app" and app["statename"] == "RUNNING" and app["pid"] > 0
    for trailing in (["status", "app", "-o", "json"], ["status", "-o", "json", "app"]):  # as kubectl users type it
        shown = json.loads(fleetctl("--node", node, *trailing).stdout)
        assert shown["node"] == "node-b" and [p["name"] for p in shown["processes"]] == ["app"]
    info = json.loads(fleetctl("--node", node, "info", "--output", "json").stdout)
    assert info["node"] == "node-b" and info["supervisor_version"] == "4.3.0"


def test_stop_start_restart_and_their_exit_codes(node):
    stopped = fleetctl("--node", node, "stop", "worker")
    assert (stopped.returncode, stopped.stdout.strip()) == (0, "worker: stopped")
    again = fleetctl("--node", node, "stop", "worker")
    assert again.returncode == 0 and "ERROR (not running)" in again.stdout  # ignored, as supervisorctl
    started = fleetctl("--node", node, "start", "worker")
    assert (started.returncode, started.stdout.strip()) == (0, "worker: started")
    restarted = fleetctl("--node", node, "restart", "worker")
    assert restarted.returncode == 0 and restarted.stdout.strip() == "worker: restarted"
    missing = fleetctl("--node", node, "start", "broken")
    assert missing.returncode == 1 and missing.stdout.strip() == "broken: ERROR (no such file)"
    dead = fleetctl("--node", node, "start", "nodir")
    assert dead.returncode == 7 and dead.stdout.strip() == "nodir: ERROR (spawn error)"
    noname = fleetctl("--node", node, "start")
    assert noname.returncode == 2 and "name required" in noname.stderr


def test_signal(node):
    ok = fleetctl("--node", node, "signal", "CONT", "worker")
    assert ok.returncode == 0 and "worker: signalled" in ok.stdout
    bad = fleetctl("--node", node, "signal", "NOPE", "worker")
    assert bad.returncode == 2 and "BAD_SIGNAL" in bad.stderr and "Traceback" not in bad.stderr


def test_tail_and_follow(node, tmp_path):
    result = fleetctl("--node", node, "tail", "app")
    assert result.returncode == 0 and "app-started" in result.stdout
    follower = subprocess.Popen([*FLEETCTL, "--node", node, "tail", "-f", "app"], stdout=subprocess.PIPE,
                                text=True)
    try:
        assert "app-started" in follower.stdout.readline()
    finally:
        follower.terminate()
        follower.wait(10)


def test_info_and_config_apply(node, tmp_path):
    info = fleetctl("--node", node, "info")
    assert info.returncode == 0 and "node-b" in info.stdout and "4.3.0" in info.stdout
    fleet = tmp_path / "fleet.conf"
    fleet.write_text("[program:extra]\ncommand=sleep 1000\nstartsecs=0\n")
    dry = fleetctl("--node", node, "config", "apply", str(fleet), "--dry-run")
    assert dry.returncode == 0 and "extra: would be added" in dry.stdout
    assert "extra" not in fleetctl("--node", node, "status").stdout
    applied = fleetctl("--node", node, "config", "apply", str(fleet), "--revision", "rev-7")
    assert applied.returncode == 0 and "revision rev-7 applied" in applied.stdout
    wait_for(lambda: "extra" in fleetctl("--node", node, "status", "extra").stdout, 10)
    shown = fleetctl("--node", node, "config", "show")
    assert shown.stdout.startswith("[program:extra]") and "rev-7" in shown.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text("[program:x]\nnumprocs=zero\ncommand=sleep 1\n")
    refused = fleetctl("--node", node, "config", "apply", str(broken))
    assert refused.returncode == 2 and "numprocs" in refused.stderr and refused.stderr.count("\n") == 1


def test_unreachable_node_is_one_clear_line():
    result = fleetctl("--node", f"127.0.0.1:{free_port()}", "--timeout", "3", "status")
    assert result.returncode == 4
    assert result.stderr.startswith("error: cannot reach 127.0.0.1:") and result.stderr.count("\n") == 1
    nonode = fleetctl("status")
    assert nonode.returncode == 2 and "no node given" in nonode.stderr


def test_node_from_environment_and_config_file(node, tmp_path):
    assert fleetctl("status", "app", env={"FLEETCTL_NODE": node}).returncode == 0
    settings = tmp_path / "fleetctl.toml"
    settings.write_text(f'node = "{node}"\ntimeout = 10\n')
    assert fleetctl("--config", str(settings), "status", "app").returncode == 0
    settings.write_text('nod = "typo"\n')
    bad = fleetctl("--config", str(settings), "status")
    assert bad.returncode == 2 and "unknown setting(s) nod" in bad.stderr


# -- mutual TLS --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pki = tmp_path_factory.mktemp("pki")
    other = tmp_path_factory.mktemp("other-pki")
    for directory in (pki, other):
        assert fleetctl("certs", "init", "--dir", str(directory)).returncode == 0
    assert fleetctl("certs", "issue", "--role", "agent", "--node", "node-b", "--host", "127.0.0.1",
                    "--dir", str(pki)).returncode == 0
    assert fleetctl("certs", "issue", "--role", "operator", "--user", "admin", "--group", "admins",
                    "--dir", str(pki)).returncode == 0
    assert fleetctl("certs", "issue", "--role", "operator", "--user", "intruder", "--group", "admins",
                    "--dir", str(other)).returncode == 0
    assert oct((pki / "admin.key").stat().st_mode & 0o777) == "0o600"
    return pki, other


def test_mtls_accepts_signed_client_and_refuses_others(tmp_path, pki):
    ca_dir, other = pki
    tls = (f"tls_cert={ca_dir}/node-b.pem\ntls_key={ca_dir}/node-b.key\ntls_ca={ca_dir}/ca.pem")
    daemon, address = start_agent(tmp_path, tls)
    try:
        daemon.wait_line(r"listening on 127\.0\.0\.1:\d+ \(mutual TLS\)")
        good = fleetctl("--node", address, "--tls-cert", f"{ca_dir}/admin.pem", "--tls-key", f"{ca_dir}/admin.key",
                        "--tls-ca", f"{ca_dir}/ca.pem", "status", "app")
        assert good.returncode == 0, good.stderr
        via_env = fleetctl("--node", address, "status", "app",
                           env={"FLEETCTL_TLS_CERT": f"{ca_dir}/admin.pem", "FLEETCTL_TLS_KEY": f"{ca_dir}/admin.key",
                                "FLEETCTL_TLS_CA": f"{ca_dir}/ca.pem"})
        assert via_env.returncode == 0, via_env.stderr
        plaintext = fleetctl("--node", address, "--timeout", "5", "status")
        assert plaintext.returncode == 4 and plaintext.stderr.count("\n") == 1
        stranger = fleetctl("--node", address, "--timeout", "5", "--tls-cert", f"{other}/intruder.pem",
                            "--tls-key", f"{other}/intruder.key", "--tls-ca", f"{ca_dir}/ca.pem", "status")
        assert stranger.returncode == 4 and stranger.stderr.count("\n") == 1
        assert "Traceback" not in stranger.stderr + plaintext.stderr
        partial = fleetctl("--node", address, "--tls-cert", f"{ca_dir}/admin.pem", "status")
        assert partial.returncode == 2 and "all three" in partial.stderr
    finally:
        daemon.stop()
