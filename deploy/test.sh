#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
#   bash deploy/test.sh --fast [ARGS]   only the unit tests and the pure controller tests
#                                       (marker `unit and not slow`; well under a minute)
# The whole suite runs on FLEETVISOR_TEST_WORKERS pytest-xdist workers (default 2), a module per
# worker at a time: most tests wait on real processes, so two workers halve the time on two cores.
# Naming what to run, or passing -n yourself, runs it as asked.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh --test
bash deploy/lint.sh

fast=0
named=0    # the caller named what to run
workers=1  # the caller passed -n
args=()
for arg in "$@"; do
    if [ "$arg" = "--fast" ]; then fast=1; continue; fi
    if [ -e "${arg%%::*}" ]; then named=1; fi
    case "$arg" in -n|-n*|--numprocesses*) workers=0 ;; esac
    args+=("$arg")
done
if [ "$fast" = 1 ]; then
    if [ "$named" = 0 ]; then
        args+=(tests/unit tests/controller)  # where unit tests live: collecting the rest costs time
    fi
    args=(-m "unit and not slow" "${args[@]}")
elif [ "$named" = 0 ] && [ "$workers" = 1 ]; then
    args=(-n "${FLEETVISOR_TEST_WORKERS:-2}" --dist loadfile "${args[@]}")
fi
exec .venv/bin/python -m pytest "${args[@]}"
