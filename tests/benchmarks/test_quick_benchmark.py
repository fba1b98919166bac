"""The benchmark's quick mode runs end to end so it cannot rot. Targets are not asserted here."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_produces_table_json_and_chart(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--quick", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["machine"]["cores"] and report["quick"] is True
    from benchmarks.scenarios import SCENARIOS
    assert set(report["scenarios"]) == {s.name for s in SCENARIOS}
    for name, scenario in report["scenarios"].items():
        assert not scenario["errors"], name
        for metric, entry in scenario["metrics"].items():
            # finite, not necessarily positive: RSS growth per program is a difference, and in a
            # quick run with few programs memory noise can make it negative
            assert math.isfinite(entry["supervisord"]["median"]) and math.isfinite(entry["agent"]["median"]), \
                (name, metric)
            assert "ratio" in entry
    assert (tmp_path / "ratios.png").stat().st_size > 1000
    assert "agent / supervisord" in result.stdout


def run_quick(module: str, out: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args, "--results", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def test_quick_health_check_cost(tmp_path):
    report = run_quick("health_checks", tmp_path / "health.json", "--programs", "20", "--window", "2")
    assert set(report["runs"]) == {"none", "http", "http_close", "tcp", "exec"}
    assert all(math.isfinite(v) for v in report["extra_core_percent"].values())


def test_quick_metrics_scrape(tmp_path):
    report = run_quick("metrics_scrape", tmp_path / "scrape.json", "--programs", "20", "--scrapes", "3")
    assert report["bytes"] > 0 and report["scrape_ms"]["p50"] > 0


def test_quick_dependency_tree_start(tmp_path):
    report = run_quick("dependencies", tmp_path / "deps.json", "--programs", "40", "--depth", "4", "--runs", "1")
    assert report["median"]["tree"] > 0 and report["median"]["flat"] > 0


def test_quick_fleet_scale_times_status_and_xmlrpc(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.fleet_scale", "--sizes", "3", "--samples", "5",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [row] = json.loads((tmp_path / "fleet_scale.json").read_text())["status"]
    assert row["agents"] == 3 and row["status_p99_ms"] > 0
    assert 0 < row["xmlrpc_p50_ms"] <= row["xmlrpc_p99_ms"]
    # fleetctl's summary of the real fleet, as drawn on an 80x24 terminal (at 100 agents in a full run)
    assert 0 < row["summary_p50_ms"] <= row["summary_p99_ms"]
    assert row["summary_screen"] == ["nodes: 3/3 up   processes: 9/9 RUNNING   problems: 0",
                                     "p0  3/3 RUNNING", "p1  3/3 RUNNING", "p2  3/3 RUNNING"]


def test_quick_reexec_under_load(tmp_path):
    report = run_quick("reexec", tmp_path / "reexec.json", "--programs", "20", "--writers", "2")
    # facts, not speed: nothing refused, lost or repeated, and every pid the same
    assert report["refused"] == 0 and report["pids_unchanged"]
    assert report["missing_lines"] == 0 and report["repeated_lines"] == 0 and report["writer_bytes"] > 0
