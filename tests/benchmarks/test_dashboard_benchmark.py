"""The dashboard benchmark's quick mode runs end to end against a real controller, the fleet
simulator and headless Chromium, so it cannot rot. It checks that the page showed the whole
fleet, that each figure was measured and that an update redraws a small part of the page;
speed targets live in the benchmark, not here."""

from __future__ import annotations

import pytest

from benchmarks import chromium

from .test_quick_benchmark import run_quick

NODES, PROGRAMS = 50, 20


@pytest.mark.skipif(not chromium.HAVE_CHROMIUM, reason=chromium.MISSING)
@pytest.mark.timeout(600)
def test_quick_dashboard_benchmark_renders_the_whole_fleet(tmp_path):
    report = run_quick("dashboard", tmp_path / "dashboard.json", "--nodes", str(NODES), "--programs", str(PROGRAMS),
                       "--views", "2", "--window", "5")
    # the benchmark itself refuses a page that does not show every node, row and process
    assert report["processes"] == NODES * PROGRAMS
    assert 0 < report["first_view_ms"]["median"] <= report["first_view_ms"]["max"]
    assert report["all_rows_ms"]["max"] >= report["first_view_ms"]["max"]  # the rows mark comes after the view
    payload = report["payload"]
    assert 0 < payload["first_message_bytes"] <= payload["first_view_bytes"] and payload["messages"] >= 1
    churn = report["churn"]
    assert churn["status_messages"] > 0 and churn["elements_created_per_message"] >= 0
    # a flap redraws the rows it touches, not the page (a count of elements, not a time)
    assert churn["elements_created_per_message"] < churn["page_elements"] / 4, churn
    assert report["loop_probe"]["quiet"]["calls"] > 0 and report["loop_probe"]["during_first_view"]["calls"] > 0
    assert report["tick"]["processes"] == NODES * PROGRAMS
    assert report["tick"]["admin"]["first_ms"]["total"] > 0
    assert isinstance(report["targets_met"], bool)
