#!/usr/bin/env bash
# Set up (if needed) and run the demo: one agent in the foreground with example programs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
mkdir -p deploy/demo/run
echo "Starting the agent with deploy/demo/supervisord.conf (Ctrl-C stops it and its programs)."
exec .venv/bin/fleetvisor-agent -c deploy/demo/supervisord.conf
