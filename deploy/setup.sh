#!/usr/bin/env bash
# Prepare a fresh machine: system packages (only those missing) and the Python environment in .venv.
#   bash deploy/setup.sh          what running fleetvisor needs
#   bash deploy/setup.sh --test   also what the test suite needs (a browser for the web page tests, Prometheus)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3-venv etcd-server)  # etcd-server: the embedded etcd of the controller
if [ "${1:-}" = "--test" ]; then
    APT_PACKAGES+=(chromium chromium-driver prometheus)  # prometheus: the real scrape test
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the project's dependencies changed since the last install.
stamp=.venv/.fleetvisor-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    echo "$want" > "$stamp"
fi
