#!/usr/bin/env bash
# pvio's main job on its built-in test guest: installs what is missing,
# builds pvio, and boots the test guest (Debian's kernel with a busybox
# initramfs) under QEMU, showing what the guest sees.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
target/debug/pvio host-check || true
exec cargo run -q -p pvio-tests --bin pvio-demo -- "$@"
