#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), then runs
# the Rust tests (unit, conformance and end-to-end against real nats-server
# and redis-server processes; tests/openapi.rs runs schemathesis from
# .tools/schemathesis against a live edge), the JS client's tests (Node, and the browser
# test in Chromium), the front-end protocols with the real AI SDK and AG-UI
# clients (clients/frontends) and the Python adapter's tests (real AutoGen).
set -euo pipefail
cd "$(dirname "$0")/.."
# A missing prerequisite fails the JS and Python end-to-end suites here
# instead of skipping them.
export WEIR_E2E_REQUIRED=1
scripts/setup.sh
cargo build --workspace --bins
# Rust tests under cargo-nextest: a per-test time limit (.config/nextest.toml)
# so a hang fails in minutes; doctests, which nextest does not run, after.
cargo nextest run --workspace --no-tests=warn
cargo test --workspace --doc
(cd clients/js && npm test)
(cd clients/frontends && npm test)
clients/python/.venv/bin/pytest -q clients/python/tests
