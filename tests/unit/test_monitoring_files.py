"""deploy/'s Prometheus config and Grafana dashboard: valid, and naming only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CODE = Path(__file__).resolve().parents[2]


def exported_names() -> set[str]:
    """Every fleetvisor_* name in the agent's and controller's metrics modules."""
    text = (CODE / "agent" / "metrics.py").read_text() + (CODE / "controller" / "metrics.py").read_text()
    return set(re.findall(r"fleetvisor_[a-z_]+", text))


def test_dashboard_names_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "fleetvisor-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    known = exported_names()
    used = {re.sub(r"_(bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"fleetvisor_[a-z_]+", e)}
    # counters are exported with _total; histograms with _bucket
    missing = {n for n in used if n not in known and n.removesuffix("_total") not in known}
    assert exprs and not missing


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus (promtool)")
def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(["promtool", "check", "config", "--syntax-only",
                             str(DEPLOY / "prometheus" / "prometheus.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
