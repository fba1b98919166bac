"""The soak commands' short mode, end to end, so that they cannot rot. The bounds are the commands'
own (their exit code); here they run for a minute and a half instead of thirty."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def soak(module: str, out: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", module, "--minutes", "1.5", "--seed", "1", "--out", str(out), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    kind = module.rsplit("_", 1)[1]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"{kind} soak, 1.5 min" in result.stdout and "every bound held" in result.stdout
    assert (out / f"{kind}.png").stat().st_size > 1000
    report = json.loads((out / f"{kind}.json").read_text())
    assert report["ok"] and report["checks"] and all(c["ok"] for c in report["checks"])
    return report


@pytest.mark.timeout(900)
def test_agent_soak_short(tmp_path):
    report = soak("benchmarks.soak_agent", tmp_path)
    figures = report["figures"]
    assert figures["programs"] == 1000 and figures["transitions_checked"] > 1000
    assert figures["xmlrpc_restarts"] > 0 and figures["grpc_restarts"] > 0 and figures["updates"] > 0


@pytest.mark.timeout(900)
def test_controller_soak_short(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the controller soak runs hosts in network namespaces: root only")
    report = soak("benchmarks.soak_controller", tmp_path)
    figures = report["figures"]
    assert figures["ops_succeeded"] > 0 and figures["pushes"] > 0 and figures["kills"]
    assert figures["compactions"] > 0
