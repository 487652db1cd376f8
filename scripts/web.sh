#!/usr/bin/env bash
# The browser front-end (web/): storefront at /, console at /console, served by `shop serve` from
# SHOP_WEB_DIR.
#   scripts/web.sh build   npm ci when the lock changed, then vite build into target/web
#   scripts/web.sh test    build, Debian's chromium, then the Playwright run (web/e2e) against a
#                          `shop serve` of its own (the debug binary: SHOP_BIN to choose another);
#                          screenshots in target/screenshots/
# npm packages only; the browser is Debian's /usr/bin/chromium, never a downloaded one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

ensure_node() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        say "node $major found; the front-end's build needs node 20 or newer"
        exit 1
    fi
}

web_build() {
    ensure_node
    # npm ci only when the lock moved since the last install
    if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
        say "npm ci (web/)"
        (cd web && npm ci --no-audit --no-fund --loglevel=error)
    fi
    say "building the front-end into target/web"
    (cd web && npx vite build --logLevel warn)
}

web_test() {
    web_build
    apt_install chromium
    ensure_postgres
    ensure_redis
    export SHOP_BIN="${SHOP_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shop/target}/debug/shop}"
    [ -x "$SHOP_BIN" ] || { say "no shop binary at $SHOP_BIN: cargo build first"; exit 1; }
    say "Playwright (chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')) against $SHOP_BIN"
    (cd web && node --test --test-reporter=spec e2e/shop.test.mjs)
}

case "${1:-}" in
    build) web_build ;;
    test) web_test ;;
    *) echo "usage: scripts/web.sh build|test" >&2; exit 2 ;;
esac
