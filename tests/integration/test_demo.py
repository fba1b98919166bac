"""README's first command: the demo fleet comes up, shows its status, and stops cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = (7400, 7401, 7402, 7403, 9001, 9002, 9003)


def in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_fleet_starts_and_stops(tmp_path):
    busy = [p for p in PORTS if in_use(p)]
    if busy:
        pytest.skip(f"the demo's fixed ports are in use here: {busy}")
    env = {**os.environ, "FLEETVISOR_DEMO_DIR": str(tmp_path / "run")}
    try:
        up = subprocess.run(["bash", "deploy/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "nodes: 3 up, 0 down, 0 unreachable" in up.stdout
        for line in ("demo-1", "demo-2", "demo-3", "web:web_00", "flaky", "bash deploy/demo.sh stop"):
            assert line in up.stdout
    finally:
        down = subprocess.run(["bash", "deploy/demo.sh", "stop"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [p for p in PORTS if in_use(p)], "the demo left something listening"
