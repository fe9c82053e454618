#!/usr/bin/env bash
# Builds the block request parser's fuzz target (backends/fuzz, a workspace of
# its own) and runs it briefly; `.ci/run` calls it.
#
#   scripts/fuzz-check.sh          lock file current, target builds, short run
#   scripts/fuzz-check.sh --quick  lock file current and the target compiles
#                                  (cargo check: seconds once cached)
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. The sanitizer is
# AddressSanitizer (cargo-fuzz's default): it needs no instrumented standard
# library, unlike MemorySanitizer (which needs -Zbuild-std and rust-src).
set -euo pipefail
cd "$(dirname "$0")/../backends/fuzz"
export RUSTC_BOOTSTRAP=1

# --locked: a fuzz lock file that no longer matches the crates fails here.
cargo check --locked --bins --quiet
if [ "${1:-}" = "--quick" ]; then
  exit 0
fi

cargo fuzz build --sanitizer address blk_request
# A short run from an empty corpus: a few seconds at ~20 000 inputs a second.
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
if ! cargo fuzz run --sanitizer address blk_request "$corpus" -- \
  -runs=50000 -print_final_stats=1 >"$corpus/log" 2>&1; then
  tail -n 40 "$corpus/log" >&2
  echo "fuzz-check: blk_request failed; its input is in backends/fuzz/artifacts/blk_request" >&2
  exit 1
fi
grep -E '^stat::(number_of_executed_units|new_units_added)' "$corpus/log"
