#!/usr/bin/env bash
# Set up (if needed) and run the demo: one agent in the foreground with example programs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
mkdir -p deploy/demo/run
cat <<'EOF'
Starting an agent with deploy/demo/supervisord.conf: a web group (numprocs=3), a worker and a
flaky program that backs off and goes FATAL. Ctrl-C stops it and its programs.
From another terminal:
  .venv/bin/supervisorctl -c deploy/demo/supervisord.conf status     # the stock client
  .venv/bin/fleetctl --node 127.0.0.1:7401 status                    # gRPC
  .venv/bin/fleetctl --node 127.0.0.1:7401 restart 'web:*'
  web page: http://127.0.0.1:9001/
EOF
exec .venv/bin/fleetvisor-agent -c deploy/demo/supervisord.conf
