#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what is missing, then checks
# formatting and lints and runs every test against the real PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup

started=$(date +%s)
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "[test] cargo test"
cargo test --workspace --locked
echo "[test] done in $(( $(date +%s) - started )) s"
