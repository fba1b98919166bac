#!/usr/bin/env bash
# Regenerate the committed Python code from proto/fleetvisor/v1/*.proto with the pinned grpcio-tools.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
"$PY" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. fleetvisor/v1/*.proto
# Generated modules import "fleetvisor.v1.x_pb2", which is how the package installs.
