#!/usr/bin/env bash
# Runs every pvio test: unit tests, socket-level backend tests and the tests
# that boot real guests under QEMU. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The end-to-end tests run the real `pvio` binary: build it before they start.
cargo build --workspace --bins
cargo test --workspace "$@"
