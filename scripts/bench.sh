#!/usr/bin/env bash
# Every benchmark scenario in one command, each on a fresh database, with the parameters of the
# README's performance table; prints each scenario's figures (and keeps them in
# bench-results.txt). Release build. Takes about 12 minutes on the project's 2-core machine.
#   ./scripts/bench.sh            every scenario
#   ./scripts/bench.sh checkout   only the scenarios named (append, cart, browse, checkout,
#                                 hot-sku, rebuild, relay)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup

cargo build --release --locked --bin shop
shop="$CARGO_TARGET_DIR/release/shop"
results="bench-results.txt"
: > "$results"
failed=0

# fresh_db NAME: an empty, migrated database for one scenario; sets DATABASE_URL
fresh_db() {
    psql -h 127.0.0.1 -U postgres -qX -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" 2>/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$1"
    "$shop" migrate >/dev/null
}

# scenario NAME COMMAND...: runs one measurement, progress on stderr, figures to the results
scenario() {
    local name="$1"
    shift
    echo "== $name: shop $*" | tee -a "$results"
    if ! RUST_LOG=warn "$shop" "$@" | tee -a "$results"; then
        echo "!! $name failed (errors above its threshold, or an invariant broken)" | tee -a "$results"
        failed=1
    fi
}

selected=("$@")
want() { [ ${#selected[@]} -eq 0 ] || [[ " ${selected[*]} " == *" $1 "* ]]; }

if want append; then
    # the event store next to pgbench on the same box
    ./scripts/bench-append.sh 10 | tee -a "$results"
fi
if want cart; then
    fresh_db shop_bench_cart
    scenario "cart 200/s" bench cart --rate 200 --seconds 15
    scenario "cart 500/s" bench cart --rate 500 --seconds 15
fi
if want browse; then
    fresh_db shop_bench_browse
    scenario "browse 200/s" bench browse --products 100000 --rate 200 --seconds 20
fi
if want checkout; then
    fresh_db shop_bench_checkout
    scenario "checkout 100/s" bench checkout --rate 100 --seconds 15
    fresh_db shop_bench_checkout
    scenario "checkout 150/s" bench checkout --rate 150 --seconds 15 --max-error-rate 1
fi
if want hot-sku; then
    fresh_db shop_bench_hot
    scenario "hot-sku" bench hot-sku --writers 16 --seconds 10 --units 10000
fi
if want rebuild; then
    fresh_db shop_bench_rebuild
    scenario "rebuild" bench rebuild --events 1000000
fi
if want relay; then
    fresh_db shop_bench_relay
    scenario "relay" bench relay --events 200000 --rate 100 --seconds 10
fi
for db in cart browse checkout hot rebuild relay; do
    psql -h 127.0.0.1 -U postgres -qX -c "DROP DATABASE IF EXISTS shop_bench_$db WITH (FORCE)" 2>/dev/null
done
echo "figures in $results"
exit "$failed"
