#!/usr/bin/env bash
# Sets up and runs shop on this machine: installs and starts what is missing, builds the release
# binary, creates and migrates the database, loads the demo catalog, and serves every role.
# Configuration: DATABASE_URL, REDIS_URL and SHOP_* (see README.md); defaults suit this machine.
# `--kafka` also builds (once) and starts the Kafka broker and turns the relay on; without it
# shop runs on PostgreSQL and Redis alone (the event log is the outbox either way).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup
if [ "${1:-}" = "--kafka" ]; then
    ensure_kafka
    export SHOP_KAFKA_BROKERS="${SHOP_KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}"
else
    say "Kafka relay off; ./scripts/run.sh --kafka builds and starts a broker and publishes the log to it"
fi
export SHOP_PAYMENT_GATEWAY="${SHOP_PAYMENT_GATEWAY:-local}"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shop}"
cargo build --release --locked --bin shop
shop="$CARGO_TARGET_DIR/release/shop"
"$shop" migrate
"$shop" seed
# the storefront (/) and console (/console) on the query API's port; without node/npm, no front-end
if [ -z "${SHOP_WEB_DIR:-}" ]; then
    if scripts/web.sh build; then
        export SHOP_WEB_DIR="$PWD/target/web"
    else
        say "the front-end did not build: serving the APIs without it"
    fi
fi
exec "$shop" serve
