#!/usr/bin/env bash
# Add-to-cart over HTTP: `shop command-api` (release) on a fresh database, 1,000 guest carts,
# wrk with 2 threads and 32 connections for 15 s posting items round robin across the carts.
# Prints requests/s and p50/p99 latency. Usage: ./scripts/bench-cart.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup
command -v wrk >/dev/null 2>&1 || apt_install wrk

seconds="${1:-15}"
connections="${2:-32}"
db=shop_bench_http
port=18080
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export SHOP_JWT_SECRET="bench-only-secret-bench-only-secret-0123"
psql -h 127.0.0.1 -U postgres -qX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
cargo build --release --locked --bin shop
shop="$CARGO_TARGET_DIR/release/shop"
"$shop" migrate >/dev/null
"$shop" seed >/dev/null
RUST_LOG=warn "$shop" command-api --command-api-addr "127.0.0.1:$port" > /dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done

work=$(mktemp -d)
echo "creating 1000 carts"
# one line per cart: its id and its secret (the Cart-Token every later request sends)
for _ in $(seq 1 1000); do
    curl -fs -X POST "http://127.0.0.1:$port/api/carts" \
        | sed -E 's/.*"cart_id":"([^"]+)".*"cart_token":"([^"]+)".*/\1 \2/'; echo
done > "$work/carts.txt"
echo "wrk: ${seconds}s, $connections connections, POST /api/carts/{id}/items"
CARTS_FILE="$work/carts.txt" wrk -t2 -c"$connections" -d"${seconds}s" --latency \
    -s scripts/bench/add-to-cart.lua "http://127.0.0.1:$port"
rm -rf "$work"
