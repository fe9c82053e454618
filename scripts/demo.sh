#!/usr/bin/env bash
# pvio's main job on its built-in test guest: installs what is missing,
# builds pvio, then `pvio create` starts the test guest (Debian's kernel with
# a busybox initramfs) from an xl-style config with a PV disk served by
# pvio's block backend and an emulated IDE disk; the guest reads what the
# host wrote to the PV disk and writes an answer that the host reads back
# from the image, then reads both disks the same way: PV against emulated.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
target/debug/pvio host-check || true
exec cargo run -q -p pvio-tests --bin pvio-demo -- "$@"
