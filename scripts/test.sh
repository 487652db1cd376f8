#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what is missing, then checks
# formatting and lints and runs every test against the real PostgreSQL and Redis (and Kafka
# brokers of the tests' own: the broker is built in the background while the lints run), and
# builds and runs the container image (podman; its Debian base is made in the background too).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup
ensure_container_tools

# databases left behind by earlier interrupted runs
psql -h 127.0.0.1 -U postgres -AtqX -c \
  "SELECT datname FROM pg_database WHERE datname LIKE 'shop\_test\_%' OR datname LIKE 'shop\_cli\_%'" |
  while read -r stale; do psql -h 127.0.0.1 -U postgres -qX -c "DROP DATABASE IF EXISTS \"$stale\" WITH (FORCE)"; done
# and the container test's containers and images
podman ps --all --format '{{.Names}}' | { grep '^shop-test-' || true; } | xargs -r podman rm --force --time 0 >/dev/null
podman images --format '{{.Repository}}:{{.Tag}}' | { grep '^localhost/shop-test:' || true; } | xargs -r podman rmi --force >/dev/null

started=$(date +%s)
build_kafka_broker_in_background
# the container test's base image (debootstrap, once per machine; about a minute)
mkdir -p "$SHOP_CACHE_DIR/log"
./scripts/image.sh --base-only >"$SHOP_CACHE_DIR/log/image-base.log" 2>&1 &
base_image_pid=$!
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
wait_for_kafka_broker
wait "$base_image_pid" || {
    tail -n 30 "$SHOP_CACHE_DIR/log/image-base.log"
    echo "[test] the container base image failed; see $SHOP_CACHE_DIR/log/image-base.log"
    exit 1
}
echo "[test] cargo test"
cargo test --workspace --locked
echo "[test] storefront and console in Debian's chromium (scripts/web.sh test; screenshots in target/screenshots/)"
scripts/web.sh test
echo "[test] done in $(( $(date +%s) - started )) s"
