"""The controller soak command's short mode, end to end, so that it cannot rot."""

import os

import pytest

from .soak_run import soak


@pytest.mark.timeout(900)
def test_controller_soak_short(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the controller soak runs hosts in network namespaces: root only")
    report = soak("benchmarks.soak_controller", tmp_path)
    figures = report["figures"]
    assert figures["ops_succeeded"] > 0 and figures["pushes"] > 0 and figures["kills"]
    assert figures["compactions"] > 0
