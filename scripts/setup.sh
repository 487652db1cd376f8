#!/usr/bin/env bash
# Installs and starts what shop needs on a Debian machine, and only what is missing: PostgreSQL,
# Redis and the Debian packages the build needs. Safe to run twice. Sourced by run.sh and test.sh.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
# Debian packages the build needs (gcc/make come with the Rust toolchain's machine image).
# cmake and libcurl's headers build the static librdkafka of rdkafka's `cmake-build` (see
# DESIGN.md: Debian's librdkafka is too old to link against).
BUILD_PACKAGES=(pkg-config cmake libcurl4-openssl-dev)

say() { printf '[setup] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        as_root apt-get update -qq
        apt_updated=1
    fi
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        # rustup's default install location
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || {
        say "cargo not found: install a Rust toolchain (rustup, stable >= 1.95) first"
        exit 1
    }
}

ensure_postgres() {
    if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
        return 0
    fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql postgresql-client
        local version
        version=$(ls /etc/postgresql | sort -n | tail -n 1)
        # local development: trust connections from this machine only
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        if ! grep -q "shop: trust loopback" "$hba"; then
            as_root sed -i '1i host all all 127.0.0.1/32 trust # shop: trust loopback\nhost all all ::1/128 trust # shop: trust loopback' "$hba"
        fi
    fi
    local version
    version=$(ls /etc/postgresql | sort -n | tail -n 1)
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return 0
        sleep 1
    done
    say "PostgreSQL did not start on $PG_HOST:$PG_PORT"
    exit 1
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    say "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/shop.log
    for _ in $(seq 1 30); do
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0
        sleep 1
    done
    say "Redis did not start on 127.0.0.1:6379"
    exit 1
}

# One target directory outside the checkout, shared by every checkout and CI run on this machine.
use_build_cache() {
    export SHOP_CACHE_DIR="${SHOP_CACHE_DIR:-$HOME/.cache/shop}"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SHOP_CACHE_DIR/target}"
    mkdir -p "$CARGO_TARGET_DIR"
}

# The Kafka-protocol broker for development and tests: nisshi 0.7.0 (the renamed tansu) with its
# PostgreSQL storage engine, built once per machine into the cache (see
# DESIGN.md). Only what needs Kafka builds it: the test suite (in the background while the
# lints run) and `run.sh --kafka`, which also starts it on 127.0.0.1:9092.
KAFKA_PORT=9092
NISSHI_VERSION=0.7.0
kafka_broker_binary() {
    echo "$SHOP_CACHE_DIR/nisshi-$NISSHI_VERSION/bin/nisshi"
}

build_kafka_broker() {
    local root="$SHOP_CACHE_DIR/nisshi-$NISSHI_VERSION"
    [ -x "$(kafka_broker_binary)" ] && return 0
    say "building the Kafka broker nisshi $NISSHI_VERSION into $root (once per machine)"
    local build_started
    build_started=$(date +%s)
    # Its own target dir: the project's cache keeps only the project's artifacts. A test and
    # development broker needs no link-time optimisation: opt-level 1, no LTO and parallel codegen
    # cut its build on 2 cores to a fraction of the release profile's.
    CARGO_TARGET_DIR="$SHOP_CACHE_DIR/nisshi-build" \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=off \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_INCREMENTAL=false \
        cargo install "nisshi@$NISSHI_VERSION" --locked \
        --ignore-rust-version --no-default-features --features dynostore,postgres --root "$root"
    say "built the Kafka broker in $(( $(date +%s) - build_started )) s"
}

# Starts the broker build in the background when the binary is missing (its output goes to a
# log); `wait_for_kafka_broker` waits for it and fails with the log's tail if it failed.
KAFKA_BUILD_PID=""
build_kafka_broker_in_background() {
    [ -x "$(kafka_broker_binary)" ] && return 0
    mkdir -p "$SHOP_CACHE_DIR/log"
    say "building the Kafka broker in the background (log: $SHOP_CACHE_DIR/log/nisshi-build.log)"
    (build_kafka_broker >"$SHOP_CACHE_DIR/log/nisshi-build.log" 2>&1) &
    KAFKA_BUILD_PID=$!
}

wait_for_kafka_broker() {
    if [ -n "$KAFKA_BUILD_PID" ]; then
        say "waiting for the Kafka broker build"
        if ! wait "$KAFKA_BUILD_PID"; then
            tail -n 30 "$SHOP_CACHE_DIR/log/nisshi-build.log"
            say "the Kafka broker build failed; see $SHOP_CACHE_DIR/log/nisshi-build.log"
            exit 1
        fi
        KAFKA_BUILD_PID=""
    fi
    build_kafka_broker
}

ensure_kafka() {
    if (exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT) 2>/dev/null; then
        return 0
    fi
    wait_for_kafka_broker
    local broker
    broker="$(kafka_broker_binary)"
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -AtqX -c "SELECT 1 FROM pg_database WHERE datname = 'nisshi'" |
        grep -q 1 || psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -qX -c "CREATE DATABASE nisshi"
    say "starting the Kafka broker on 127.0.0.1:$KAFKA_PORT"
    mkdir -p "$SHOP_CACHE_DIR/log"
    nohup "$broker" broker \
        --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --storage-engine "postgres://postgres:postgres@$PG_HOST:$PG_PORT/nisshi?sslmode=disable" \
        --group-initial-rebalance-delay 0s \
        >"$SHOP_CACHE_DIR/log/nisshi.log" 2>&1 &
    for _ in $(seq 1 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT) 2>/dev/null && return 0
        sleep 0.2
    done
    say "the Kafka broker did not start; see $SHOP_CACHE_DIR/log/nisshi.log"
    exit 1
}

# An S3-compatible server for the media tests: moto's server mode (`moto[server]` from PyPI), in
# a virtual environment in the cache, installed once per machine. The media crate's S3 test
# starts `moto_server` on a free port of its own (binary: `$SHOP_CACHE_DIR/moto-$MOTO_VERSION/bin/
# moto_server`, or `SHOP_S3_TEST_SERVER_BIN`).
MOTO_VERSION=5.2.5
s3_test_server_binary() {
    echo "$SHOP_CACHE_DIR/moto-$MOTO_VERSION/bin/moto_server"
}

ensure_s3_test_server() {
    local venv="$SHOP_CACHE_DIR/moto-$MOTO_VERSION"
    [ -x "$(s3_test_server_binary)" ] && return 0
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1 ||
        apt_install python3-venv
    say "installing the S3 test server (moto $MOTO_VERSION) into $venv (once per machine)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    [ -x "$(s3_test_server_binary)" ] || { say "moto_server missing after the install"; exit 1; }
}

# The container tools of scripts/image.sh and of the container test (tests/container): podman
# and buildah build and run the image; debootstrap builds its Debian base when no registry image
# can be pulled. Not part of `setup`: running or testing shop on the host needs none of them.
CONTAINER_PACKAGES=(podman buildah debootstrap debian-archive-keyring uidmap runc)
ensure_container_tools() {
    apt_install "${CONTAINER_PACKAGES[@]}"
    podman_environment
}

# What podman needs on this machine, as a containers.conf of ours (CONTAINERS_CONF, exported; an
# explicit CONTAINERS_CONF is left alone) when the defaults do not work:
# - cgroup v1 with a cgroup v2 hierarchy that has controllers (hybrid): crun refuses to start any
#   container ("cgroups in hybrid mode not supported"), runc does not mind;
# - root without CAP_SYS_RESOURCE (a sandbox): podman's default limits (1,048,576 open files and
#   processes) cannot be set, so containers get this shell's hard limits (processes capped at
#   pid_max, as podman caps its own).
# Storage (overlay), cgroup manager (cgroupfs) and events (file) work as Debian configures them;
# containers use the host's network (`--network host`) to reach PostgreSQL and Redis on 127.0.0.1.
podman_environment() {
    [ -n "${CONTAINERS_CONF:-}" ] && return 0
    local runtime="" ulimits=""
    if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
        runtime="runc"
    fi
    local capabilities
    capabilities=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
    if [ $(( 0x$capabilities >> 24 & 1 )) -eq 0 ]; then # CAP_SYS_RESOURCE
        local files processes pid_max
        files=$(ulimit -Hn)
        processes=$(ulimit -Hu)
        pid_max=$(cat /proc/sys/kernel/pid_max)
        [ "$processes" = unlimited ] || [ "$processes" -gt "$pid_max" ] && processes=$pid_max
        ulimits="\"nofile=$files:$files\", \"nproc=$processes:$processes\""
    fi
    [ -z "$runtime$ulimits" ] && return 0
    local conf="${SHOP_CACHE_DIR:-$HOME/.cache/shop}/containers.conf"
    mkdir -p "$(dirname "$conf")"
    {
        echo "# written by scripts/setup.sh (podman_environment) for this machine"
        echo "[containers]"
        [ -n "$ulimits" ] && echo "default_ulimits = [$ulimits]"
        echo "[engine]"
        [ -n "$runtime" ] && echo "runtime = \"$runtime\""
    } >"$conf.tmp"
    mv "$conf.tmp" "$conf"
    export CONTAINERS_CONF="$conf"
}

# The Debian mirror apt uses on this machine (deb822 `URIs:` or a one-line `deb` entry for the main
# archive, not the security one); deb.debian.org when none is configured.
debian_mirror() {
    local mirror
    mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                    /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
        sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
            -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' |
        grep -E '/debian/?$' | head -n 1 || true)
    echo "${mirror:-http://deb.debian.org/debian}"
}

setup() {
    command -v pg_isready >/dev/null 2>&1 || apt_install postgresql-client
    command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
    apt_install "${BUILD_PACKAGES[@]}"
    ensure_rust
    ensure_postgres
    ensure_redis
    use_build_cache
    ensure_s3_test_server
    say "PostgreSQL on $PG_HOST:$PG_PORT, Redis on 127.0.0.1:6379, build cache in $CARGO_TARGET_DIR"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    setup
    [ "${1:-}" = "--kafka" ] && ensure_kafka
    true
fi
