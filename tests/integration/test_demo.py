"""README's first command: the demo fleet comes up over mutual TLS, README's examples work
against it as shown, a fleetctl without a certificate is refused, a second run reuses the
certificates, and it stops cleanly."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = (7400, 7401, 7402, 7403, 9001, 9002, 9003)
SHOWN_RUN = "deploy/demo/run"  # the run dir README's examples name


def in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def readme_examples() -> list[str]:
    """The command lines of README's block after "While the demo runs"."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"While the demo runs.*?^```sh\n(.*?)^```", text, re.S | re.M)
    assert block, "README has no example block after 'While the demo runs'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def run_example(line: str, env: dict[str, str], run: Path) -> tuple[list[str], subprocess.CompletedProcess | None]:
    """One README line, with the demo's run dir pointed at this test's: `export` sets `env`."""
    argv = [word.replace(SHOWN_RUN, str(run)) for word in shlex.split(line, comments=True)]
    if argv[0] == "export":
        key, _, value = argv[1].partition("=")
        env[key] = value
        return argv, None
    return argv, subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "deploy/demo.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_demo_fleet_runs_readmes_examples_over_mutual_tls(tmp_path):
    busy = [p for p in PORTS if in_use(p)]
    if busy:
        pytest.skip(f"the demo's fixed ports are in use here: {busy}")
    run = tmp_path / "run"
    env = {**os.environ, "FLEETVISOR_DEMO_DIR": str(run)}
    for key in [k for k in env if k.startswith("FLEETCTL_")]:
        del env[key]  # only what README says to set
    try:
        up = demo(env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "nodes: 3 up, 0 down, 0 unreachable" in up.stdout
        for line in ("demo-1", "demo-2", "demo-3", "web:web_00", "flaky", "bash deploy/demo.sh stop",
                     "mutual TLS"):
            assert line in up.stdout
        log = (run / "controller.log").read_text()
        assert "(mutual TLS)" in log, log

        shell = {**env}
        ran = []
        for line in readme_examples():
            argv, result = run_example(line, shell, run)
            if result is None:
                continue
            assert result.returncode == 0, f"{line}: {result.stdout}{result.stderr}"
            ran.append(Path(argv[0]).name)
            if argv[1:2] == ["restart"]:
                assert result.stdout.count("restarted") == 6, result.stdout  # 3 web processes on 2 nodes
            if argv[-1] == "status":
                assert "RUNNING" in result.stdout, result.stdout
        assert ran.count("fleetctl") >= 3 and "supervisorctl" in ran
        assert shell.get("FLEETCTL_CONFIG") == str(run / "fleetctl.toml")
        audit = subprocess.run([".venv/bin/fleetctl", "audit"], cwd=ROOT, env=shell, capture_output=True,
                               text=True, timeout=60)
        assert re.search(r"\badmin\s+control\.restart\b", audit.stdout), audit.stdout

        # the viewer reads, and is refused a restart in one line
        viewer = {**env, "FLEETCTL_CONFIG": str(run / "fleetctl-guest.toml")}
        nodes = subprocess.run([".venv/bin/fleetctl", "nodes"], cwd=ROOT, env=viewer, capture_output=True,
                               text=True, timeout=60)
        assert nodes.returncode == 0 and "demo-3" in nodes.stdout, nodes.stderr
        refused = subprocess.run([".venv/bin/fleetctl", "restart", "all"], cwd=ROOT, env=viewer,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "viewer guest may not control" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

        # plaintext fleetctl: refused by the controller and by an agent, in one line, no traceback
        for target in (["--controller", "127.0.0.1:7400"], ["--node", "127.0.0.1:7401"]):
            plain = subprocess.run([".venv/bin/fleetctl", *target, "status"], cwd=ROOT,
                                   env={**env, "FLEETCTL_CONFIG": "/nonexistent"}, capture_output=True, text=True,
                                   timeout=60)
            assert plain.returncode != 0 and not plain.stdout, plain.stdout
            assert "mutual TLS" in plain.stderr and "Traceback" not in plain.stderr, plain.stderr
            assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr

        # a second run reuses the CA and every certificate
        pems = {p.name: p.read_bytes() for p in (run / "pki").glob("*.pem")}
        assert set(pems) == {"ca.pem", "ctl-1.pem", "demo-1.pem", "demo-2.pem", "demo-3.pem", "admin.pem",
                             "guest.pem"}
        assert demo(env, "stop").returncode == 0
        again = demo(env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "making the demo's CA" not in again.stdout
        assert {p.name: p.read_bytes() for p in (run / "pki").glob("*.pem")} == pems
        assert "nodes: 3 up, 0 down, 0 unreachable" in again.stdout
    finally:
        down = demo(env, "stop")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [p for p in PORTS if in_use(p)], "the demo left something listening"
