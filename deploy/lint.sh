#!/usr/bin/env bash
# Static checks on agent/, controller/ and cli/: ruff (lint, import order) and mypy (types).
# Their settings are in pyproject.toml; deploy/test.sh runs this before the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$root/.venv/bin/python}
status=0
(cd "$root" && "$PY" -m ruff check agent controller cli) || status=1

# The folders install as one package (package-dir in pyproject.toml), which mypy cannot see through the
# editable install; a tree of links in the installed layout gives it the modules' real names.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/fleetvisor"
for part in agent controller cli; do ln -s "$root/$part" "$tree/fleetvisor/$part"; done
ln -s "$root/proto/fleetvisor/v1" "$tree/fleetvisor/v1"
(cd "$tree" && "$PY" -m mypy --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" \
    fleetvisor/agent fleetvisor/controller fleetvisor/cli) || status=1
exit $status
