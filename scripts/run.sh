#!/usr/bin/env bash
# Sets up and runs shop on this machine: installs and starts what is missing, builds the release
# binary, creates and migrates the database, loads the demo catalog, and serves every role.
# Configuration: DATABASE_URL, REDIS_URL and SHOP_* (see README.md); defaults suit this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shop}"
cargo build --release --locked --bin shop
shop="$CARGO_TARGET_DIR/release/shop"
"$shop" migrate
"$shop" seed
exec "$shop" serve
