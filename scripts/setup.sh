#!/usr/bin/env bash
# Installs what weir's test suite needs on a fresh Debian/Ubuntu machine:
# nats-server and redis-server (the tests start their own on free ports),
# Chromium for the browser test, Node packages of the JS client and a
# Python venv for the AutoGen adapter. Skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium chromium-driver)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if [ -f clients/js/package.json ]; then
  (cd clients/js && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -f clients/python/pyproject.toml ]; then
  PY=$(command -v python3.11 || command -v python3)
  [ -x clients/python/.venv/bin/python ] || "$PY" -m venv clients/python/.venv
  clients/python/.venv/bin/pip install -q -r clients/python/requirements-test.txt ./clients/python
fi
echo "setup: done"
