"""The controller's metrics logic without a fleet: node states, the listen rule, reconcile figures."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetvisor.controller.metrics import MetricsConfigError, ReconcileCollector, check_listen, node_state


def test_node_state() -> None:
    assert node_state(up=True, reachable=True) == "up"
    assert node_state(up=True, reachable=False) == "unreachable"
    assert node_state(up=False, reachable=True) == "down"


def test_metrics_listen_is_loopback_unless_opted_in() -> None:
    assert check_listen("127.0.0.1:9100", insecure=False) == ("127.0.0.1", 9100)
    assert check_listen("[::1]:9100", insecure=False) == ("::1", 9100)
    with pytest.raises(MetricsConfigError, match="--metrics-insecure"):
        check_listen("0.0.0.0:9100", insecure=False)
    assert check_listen("0.0.0.0:9100", insecure=True) == ("0.0.0.0", 9100)
    with pytest.raises(MetricsConfigError, match="HOST:PORT"):
        check_listen("9100", insecure=False)


class FakeReconciler:
    def __init__(self) -> None:
        self.pushes = {("web-1", True): 3, ("web-1", False): 1}
        self.passes = 7

    def backoff(self) -> dict[str, float]:
        return {"web-1": 4.0}


def test_reconcile_figures() -> None:
    registry = CollectorRegistry()
    registry.register(ReconcileCollector(FakeReconciler()))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'fleetvisor_controller_reconcile_attempts_total{node="web-1",outcome="failure"} 3.0' in text
    assert 'fleetvisor_controller_reconcile_attempts_total{node="web-1",outcome="success"} 1.0' in text
    assert 'fleetvisor_controller_reconcile_backoff_seconds{node="web-1"} 4.0' in text
    assert "fleetvisor_controller_reconcile_passes_total 7.0" in text
