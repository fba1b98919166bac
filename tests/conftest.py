"""Marks every collected test by what it needs, so a run can pick a kind (`-m "not etcd"`).

The marks come from where a test lives and what it uses, not from each file:

- `netns`: tests/multihost (Linux network namespaces; root).
- `etcd`: starts a real etcd: uses the `etcd` fixture (so every controller `fleet` test does),
  lives in tests/multihost, or its module uses the etcd harness, the fleet harness or the
  embedded etcd.
- `browser`: its module drives chromium through selenium.
- `slow`: about ten seconds or more on a 2-core machine: tests/multihost, tests/benchmarks and
  the modules in SLOW_MODULES as a whole; single long tests carry `@pytest.mark.slow`.
- `fuzz`: tests/fuzz, property-based fuzzing with Hypothesis; also `slow`.
- `unit`: tests/unit, and the tests in tests/controller that need no etcd (the pure
  controller tests): quick and self-contained, no etcd and no agent or controller running.
  `deploy/test.sh --fast` runs `unit and not slow`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

TESTS = Path(__file__).parent
# what a test module uses when it starts etcd without the `etcd` fixture
ETCD_MODULES = ("tests.controller.etcd_harness", "tests.controller.fleet_harness", "fleetvisor.controller.embedded")
# run both daemons through long scenarios, or the whole demo fleet
SLOW_MODULES = ("integration/test_supervisord_parity.py", "integration/test_events_oracle.py",
                "integration/test_demo.py")
SLOW_PATHS = {TESTS / module for module in SLOW_MODULES}


def _under(item: pytest.Item, folder: str) -> bool:
    return (TESTS / folder) in item.path.parents


def _uses(module: ModuleType | None, prefixes: tuple[str, ...]) -> bool:
    """Whether `module` holds a name (a class, a function or a module) from one of `prefixes`."""
    if module is None:
        return False
    for value in vars(module).values():
        origin = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        if isinstance(origin, str) and origin.startswith(prefixes):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        multihost = _under(item, "multihost")
        if multihost:
            item.add_marker(pytest.mark.netns)
        fuzz = _under(item, "fuzz")
        if fuzz:
            item.add_marker(pytest.mark.fuzz)
        if multihost or fuzz or _under(item, "benchmarks") or item.path in SLOW_PATHS:
            item.add_marker(pytest.mark.slow)
        etcd = multihost or "etcd" in getattr(item, "fixturenames", ()) or _uses(module, ETCD_MODULES)
        if etcd:
            item.add_marker(pytest.mark.etcd)
        if _uses(module, ("selenium",)):
            item.add_marker(pytest.mark.browser)
        if _under(item, "unit") or (_under(item, "controller") and not etcd):
            item.add_marker(pytest.mark.unit)
