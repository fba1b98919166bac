#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
#   bash deploy/test.sh --fast [ARGS]   only the unit tests and the pure controller tests
#                                       (marker `unit and not slow`; well under a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh --test
bash deploy/lint.sh

fast=0
args=()
for arg in "$@"; do
    if [ "$arg" = "--fast" ]; then fast=1; else args+=("$arg"); fi
done
if [ "$fast" = 1 ]; then
    paths=1
    for arg in "${args[@]}"; do
        if [ -e "${arg%%::*}" ]; then paths=0; fi  # the caller named what to run
    done
    if [ "$paths" = 1 ]; then
        args+=(tests/unit tests/controller)  # where unit tests live: collecting the rest costs time
    fi
    args=(-m "unit and not slow" "${args[@]}")
fi
exec .venv/bin/python -m pytest "${args[@]}"
