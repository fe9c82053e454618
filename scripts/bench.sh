#!/usr/bin/env bash
# Runs every pvio benchmark, one after the other, on a release build, and
# keeps what each printed, its figures (JSON) and its charts (SVG) in
# target/bench/ (PVIO_BENCH_OUT). docs/benchmarks.md says how to read them.
#
#   scripts/bench.sh            all of them (about 30 minutes on 2 cores)
#   scripts/bench.sh blk net    only those whose name contains a word given
#
# Benchmarks measure; run them on a machine doing nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace --bins

out=${PVIO_BENCH_OUT:-$PWD/target/bench}
mkdir -p "$out"
export PVIO_BENCH_OUT=$out

WANT=("$@")

# Whether benchmark $1 was asked for (all when no word was given).
wanted() {
  [ ${#WANT[@]} -eq 0 ] && return 0
  local w
  for w in "${WANT[@]}"; do
    case $1 in *"$w"*) return 0 ;; esac
  done
  return 1
}

run() {
  local name=$1
  shift
  wanted "$name" || return 0
  echo "bench: $name" >&2
  "$@" 2>&1 | tee "$out/$name.txt"
}

test_bench() {
  cargo test --release -q -p pvio-tests --test "$1" -- --ignored --nocapture
}

# PVIO_BENCH_PEER_CH=/path/to/vhost_user_block adds Cloud Hypervisor's
# daemon (built from its own source, outside pvio) to the block rows.
run blk-backend-tmpfs test_bench blk_backend_bench
# The same on a disk filesystem (/var/tmp unless PVIO_BENCH_DIR says
# otherwise), the image opened with O_DIRECT by every backend and fio.
run blk-backend-direct env PVIO_BENCH_DIRECT=1 \
  cargo test --release -q -p pvio-tests --test blk_backend_bench -- --ignored --nocapture
run blk-guest test_bench blk_bench
run net-backend ./target/release/pvio bench net
run net-guest test_bench net_bench
run migrate test_bench migrate_bench
echo "bench: results in $out" >&2
