"""The agent soak command's short mode, end to end, so that it cannot rot."""

import pytest

from .soak_run import soak


@pytest.mark.timeout(900)
def test_agent_soak_short(tmp_path):
    report = soak("benchmarks.soak_agent", tmp_path)
    figures = report["figures"]
    assert figures["programs"] == 1000 and figures["transitions_checked"] > 1000
    assert figures["xmlrpc_restarts"] > 0 and figures["grpc_restarts"] > 0 and figures["updates"] > 0
