#!/usr/bin/env bash
# Builds the fuzz targets and runs each briefly; `.ci/run` calls it. Two
# crates, each a workspace of its own:
#   backends/fuzz     blk_request   descriptor chains into the block request parser
#   hvm-runtime/fuzz  config_parse  config text into the lexer, parser and spec
#                     net_hdr_ctrl  net transmit headers, control commands,
#                                   mergeable receive spreading
#
#   scripts/fuzz-check.sh          lock files current, targets build, short runs
#   scripts/fuzz-check.sh --quick  lock files current and the targets compile
#                                  (cargo check: seconds once cached)
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. The sanitizer is
# AddressSanitizer (cargo-fuzz's default): it needs no instrumented standard
# library, unlike MemorySanitizer (which needs -Zbuild-std and rust-src).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export RUSTC_BOOTSTRAP=1

# crate dir, then its targets with the runs each gets from an empty corpus
# (a few seconds each).
targets=(
  "backends/fuzz blk_request 50000"
  "hvm-runtime/fuzz config_parse 50000"
  "hvm-runtime/fuzz net_hdr_ctrl 200000"
)

for dir in backends/fuzz hvm-runtime/fuzz; do
  # --locked: a fuzz lock file that no longer matches the crates fails here.
  (cd "$root/$dir" && cargo check --locked --bins --quiet)
done
if [ "${1:-}" = "--quick" ]; then
  exit 0
fi

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for t in "${targets[@]}"; do
  read -r dir name runs <<<"$t"
  cd "$root/$dir"
  cargo fuzz build --sanitizer address "$name"
  mkdir -p "$corpus/$name"
  if ! cargo fuzz run --sanitizer address "$name" "$corpus/$name" -- \
    -runs="$runs" -max_len=4096 -print_final_stats=1 >"$corpus/$name.log" 2>&1; then
    tail -n 40 "$corpus/$name.log" >&2
    echo "fuzz-check: $name failed; its input is in $dir/artifacts/$name" >&2
    exit 1
  fi
  echo "$name:"
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$corpus/$name.log"
done
