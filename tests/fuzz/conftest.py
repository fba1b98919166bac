"""Hypothesis profiles for the fuzzing suite.

The full suite runs the bounded profile (`ci`: a few minutes for the whole folder). The long run is a documented
command: `FLEETVISOR_FUZZ=long .venv/bin/python -m pytest tests/fuzz -p no:timeout`. Examples that failed once
are kept in .hypothesis/ and replayed first.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# A daemon answering within its bound is a property of its own, checked by the tests; Hypothesis' per-example
# deadline would only add noise from a loaded 2-core machine.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}
settings.register_profile("ci", max_examples=int(os.environ.get("FLEETVISOR_FUZZ_EXAMPLES", "150")), **_COMMON)
settings.register_profile("long", max_examples=int(os.environ.get("FLEETVISOR_FUZZ_EXAMPLES", "20000")), **_COMMON)
settings.load_profile(os.environ.get("FLEETVISOR_FUZZ", "ci"))
