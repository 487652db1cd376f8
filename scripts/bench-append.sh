#!/usr/bin/env bash
# Append throughput of the event store next to pgbench on the same machine, in one run:
#   1 and 16 concurrent writers, each command creating a product stream, vs pgbench inserting one
#   jsonb row per transaction (measured before and after shop, the machine is noisy); shop as
#   configured by default (group commit, unknown streams decided as new) and as before group
#   commit (`--group-commit false --read-unknown-streams`: one transaction per command, the
#   stream read first); and bulk appends vs pgbench inserting 1,000 rows per transaction.
# Usage: ./scripts/bench-append.sh [seconds per run, default 10] [rounds, default 1]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup

seconds="${1:-10}"
rounds="${2:-1}"
db=shop_bench_append
url="postgres://postgres@127.0.0.1:5432/$db"
psql -h 127.0.0.1 -U postgres -qX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
cargo build --release --locked --bin shop
shop="$CARGO_TARGET_DIR/release/shop"
DATABASE_URL="$url" "$shop" migrate >/dev/null

psql -h 127.0.0.1 -U postgres -qX -d "$db" -c \
  "CREATE TABLE pgbench_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)"
work=$(mktemp -d)
payload='{"ProductCreated": {"sku": "B-1", "name": "Bench product", "description": "A product created by the append benchmark.", "category": "bench", "price": {"amount_minor": 1000, "currency": "EUR"}}}'
echo "INSERT INTO pgbench_events (payload) VALUES ('$payload');" > "$work/one-row.sql"
echo "INSERT INTO pgbench_events (payload) SELECT '$payload'::jsonb FROM generate_series(1, 1000);" > "$work/batch.sql"

pgbench_tps() { # clients script
    pgbench -n -h 127.0.0.1 -U postgres -c "$1" -j "$(( $1 < 2 ? 1 : 2 ))" -T "$seconds" -f "$2" "$db" 2>/dev/null \
        | awk '/^tps/ {print int($3)}'
}

shop_append() { # writers, extra arguments
    local writers="$1"
    shift
    DATABASE_URL="$url" "$shop" bench append --writers "$writers" --seconds "$seconds" "$@" 2>/dev/null
}

for round in $(seq "$rounds"); do
    [ "$rounds" -gt 1 ] && echo "-- round $round"
    for writers in 1 16; do
        echo "pgbench one-row insert, $writers clients: $(pgbench_tps "$writers" "$work/one-row.sql") tps"
        shop_append "$writers" --group-commit false --read-unknown-streams
        shop_append "$writers"
        echo "pgbench one-row insert, $writers clients: $(pgbench_tps "$writers" "$work/one-row.sql") tps"
    done
done
batch_tps=$(pgbench_tps 1 "$work/batch.sql")
echo "pgbench 1,000-row insert, 1 client: $(( batch_tps * 1000 )) rows/s"
DATABASE_URL="$url" "$shop" bench append-batch --events 300000 --batch 1000 2>/dev/null
rm -rf "$work"
psql -h 127.0.0.1 -U postgres -qX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
