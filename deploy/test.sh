#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh --test
bash deploy/lint.sh
exec .venv/bin/python -m pytest "$@"
