#!/usr/bin/env bash
# Time to first checkout: starts ./scripts/run.sh (set-up, release build, migrate, seed, serve) in
# the background, waits until both APIs answer, then checks out as a new guest would through the
# REST API (a guest cart with its Cart-Token, a line, the checkout) and polls the order through
# GraphQL until it is confirmed. Prints the elapsed time of every phase and stops the server.
# On a fresh machine this is the time from clone to first order; for a fresh build cache on a used
# one: CARGO_TARGET_DIR=/some/empty/dir ./scripts/first-checkout.sh
# The environment is run.sh's (DATABASE_URL, REDIS_URL, SHOP_*); it serves on 127.0.0.1:8080 (REST)
# and 127.0.0.1:8081 (GraphQL), which must be free. Log: $SHOP_CACHE_DIR/log/first-checkout.log.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

COMMAND_API=http://127.0.0.1:8080
QUERY_API=http://127.0.0.1:8081
for port in 8080 8081; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        say "something already listens on 127.0.0.1:$port (ss -ltnp | grep :$port); stop it first"
        exit 1
    fi
done
command -v curl >/dev/null 2>&1 || apt_install curl
command -v jq >/dev/null 2>&1 || apt_install jq
seconds_between() { awk -v from="$1" -v to="$2" 'BEGIN { printf "%.1f", to - from }'; }

log_dir="${SHOP_CACHE_DIR:-$HOME/.cache/shop}/log"
mkdir -p "$log_dir"
log="$log_dir/first-checkout.log"
started=$(date +%s.%N)
last=$started
# seconds since the start and since the previous phase
phase() {
    local now
    now=$(date +%s.%N)
    printf '[first-checkout] %-46s %7s s  (total %7s s)\n' "$1" \
        "$(seconds_between "$last" "$now")" "$(seconds_between "$started" "$now")"
    last=$now
}

# its own session: stopping it stops cargo during the build and shop serve after
setsid ./scripts/run.sh >"$log" 2>&1 </dev/null &
server=$!
stop_server() {
    kill -TERM -- "-$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
say "started ./scripts/run.sh (pid $server, log $log)"

# run.sh's phases, as its output shows them
wait_for_line() {
    local pattern="$1"
    until grep -q -- "$pattern" "$log"; do
        if ! kill -0 "$server" 2>/dev/null; then
            tail -n 30 "$log"
            say "run.sh stopped before \"$pattern\"; see $log"
            exit 1
        fi
        sleep 0.2
    done
}
wait_for_line 'build cache in'
phase "set-up (packages, PostgreSQL, Redis)"
wait_for_line 'Finished `release` profile'
phase "release build (cargo build --release)"
wait_for_line 'listening on'
phase "migrate and seed"
until curl -fsS -o /dev/null "$QUERY_API/health/ready" 2>/dev/null; do
    kill -0 "$server" 2>/dev/null || { tail -n 30 "$log"; exit 1; }
    sleep 0.1
done
phase "serve until /health/ready"

# POST with a JSON body; sets $status and $answer (not in a subshell: they are globals)
post() {
    local url="$1" body="$2" token="${3:-}" response
    response=$(curl -sS -X POST "$url" -H 'content-type: application/json' \
        ${token:+-H "cart-token: $token"} -d "$body" -w '\n%{http_code}')
    status="${response##*$'\n'}"
    answer="${response%$'\n'*}"
}
expect() {
    local want="$1" what="$2" body="$3"
    if [ "$status" != "$want" ]; then
        say "$what: HTTP $status, expected $want: $body"
        exit 1
    fi
}

post "$COMMAND_API/api/carts" '{}'
cart=$answer
expect 201 "create a guest cart" "$cart"
cart_id=$(jq -r .cart_id <<<"$cart")
cart_token=$(jq -r .cart_token <<<"$cart")
post "$COMMAND_API/api/carts/$cart_id/items" '{"sku": "HP-100", "quantity": 1}' "$cart_token"
added=$answer
expect 200 "add HP-100" "$added"
post "$COMMAND_API/api/carts/$cart_id/checkout" \
    '{"shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}, "payment_method": "pm_card_visa"}' \
    "$cart_token"
checkout=$answer
expect 202 "check out" "$checkout"
order_id=$(jq -r .order_id <<<"$checkout")
phase "guest cart, a line, checkout (202)"

query=$(jq -nc --arg id "$order_id" \
    '{query: "query($id: UUID!) { order(id: $id) { number status failure totals { total { amountMinor currency } } } }", variables: {id: $id}}')
for _ in $(seq 1 600); do
    post "$QUERY_API/graphql" "$query"
    order=$answer
    order_status=$(jq -r '.data.order.status // empty' <<<"$order")
    case "$order_status" in
    CONFIRMED) break ;;
    FAILED | CANCELLED) say "the order did not confirm: $order"; exit 1 ;;
    esac
    sleep 0.1
done
[ "$order_status" = CONFIRMED ] || { say "no confirmation within 60 s: $order"; exit 1; }
phase "order confirmed (checkout saga, local gateway)"
say "order $(jq -r '.data.order.number' <<<"$order") $order_id: $(jq -c '.data.order.totals.total' <<<"$order")"
total=$(seconds_between "$started" "$(date +%s.%N)")
printf '[first-checkout] time to first checkout: %s s (%dm%02ds)\n' "$total" \
    "$(( ${total%.*} / 60 ))" "$(( ${total%.*} % 60 ))"
