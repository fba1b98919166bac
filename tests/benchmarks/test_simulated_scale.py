"""`python -m benchmarks.fleet_scale --simulated` at a size the suite can afford: every figure
of issue 20 is measured with 1 and with 3 controllers, and the JSON and the chart are written.
The speed targets are the benchmark's business; this checks that the measurement is whole and
sane (a crash shows in status, a killed leader is replaced, writes stay flat at rest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("converged_s", "controller_cpu", "controller_rss_mib", "simulator_cpu", "etcd_revisions_per_s",
           "etcd_db_mib", "summary_p99_ms", "whole_p99_ms", "glob_p99_ms", "change_p50_ms", "change_p99_ms",
           "propagation_s", "plan_p50_ms", "writes_back_s", "live_back_s")


@pytest.mark.timeout(600)
def test_quick_simulated_scale_run(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.fleet_scale", "--simulated", "20", "--controllers", "1,3",
                          "--window", "3", "--samples", "4", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=580)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    runs = json.loads((tmp_path / "simulated_scale.json").read_text())["runs"]
    assert [(r["nodes"], r["controllers"]) for r in runs] == [(20, 1), (20, 3)]
    for r in runs:
        missing = [f for f in FIGURES if f not in r]
        assert not missing, (missing, r)
        assert len(r["controller_cpu"]) == len(r["controller_rss_mib"]) == r["controllers"]
        assert r["change_samples"] >= 3 and 0 < r["change_p50_ms"] <= r["change_p99_ms"]
        assert 0 < r["summary_p99_ms"] and 0 < r["whole_p99_ms"] and 0 < r["glob_p99_ms"]
        assert r["propagation_s"] > 0 and r["writes_back_s"] > 0 and r["live_back_s"] >= r["writes_back_s"]
        # at rest nothing but churn is written: heartbeats are lease renewals, not writes
        assert r["etcd_revisions_per_s"] < r["nodes"] / 10, r
    svg = (tmp_path / "simulated_scale.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") >= 4
    assert "simulated fleet" in run.stdout
