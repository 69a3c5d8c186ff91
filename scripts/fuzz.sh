#!/usr/bin/env bash
# Runs every cargo fuzz target under fuzz/ for a bounded time (default 30 s
# each), on the nightly toolchain with libFuzzer. New inputs go to a scratch
# corpus (the seeds in fuzz/corpus/<target>/ stay as committed); a crash is
# written to fuzz/artifacts/<target>/ and fails the run.
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 300        # 5 minutes per target
#   FUZZ_TARGETS="bus_message" scripts/fuzz.sh 60
# Reproduce a crash: cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-…
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
cargo +nightly --version >/dev/null 2>&1 || { echo "fuzz: needs the nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
cargo fuzz --version >/dev/null 2>&1 || { echo "fuzz: needs cargo-fuzz (scripts/setup.sh installs it)" >&2; exit 1; }
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
scratch=$(mktemp -d /tmp/weir-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cargo +nightly fuzz build
for target in $targets; do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${seconds}s"
  # -max_len: inputs up to 8 KiB (client frames may be 64 KiB; longer inputs
  # mostly slow the search down).
  rc=0
  cargo +nightly fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len=8192 >"$scratch/$target.log" 2>&1 || rc=$?
  grep -E '^Done|panicked|SUMMARY|Test unit written' "$scratch/$target.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$scratch/$target.log" >&2
    echo "fuzz: $target failed (exit $rc): the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds}s without a failure"
