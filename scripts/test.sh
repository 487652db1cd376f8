#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what is missing, then checks
# formatting and lints and runs every test against the real PostgreSQL and Redis (and Kafka
# brokers of the tests' own: the broker is built in the background while the lints run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup

# databases left behind by earlier interrupted runs
psql -h 127.0.0.1 -U postgres -AtqX -c \
  "SELECT datname FROM pg_database WHERE datname LIKE 'shop\_test\_%' OR datname LIKE 'shop\_cli\_%'" |
  while read -r stale; do psql -h 127.0.0.1 -U postgres -qX -c "DROP DATABASE IF EXISTS \"$stale\" WITH (FORCE)"; done

started=$(date +%s)
build_kafka_broker_in_background
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
wait_for_kafka_broker
echo "[test] cargo test"
cargo test --workspace --locked
echo "[test] done in $(( $(date +%s) - started )) s"
