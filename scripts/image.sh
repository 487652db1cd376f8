#!/usr/bin/env bash
# Builds shop's runtime container image with podman, without pulling from any registry:
#   1. the base `localhost/shop-base:bookworm`: Debian bookworm (minbase + ca-certificates) made
#      with debootstrap from this machine's Debian mirror and imported into podman; built once per
#      machine and reused (`--rebuild-base` makes it again; `--base-only` stops after it);
#   2. the `shop` binary: `cargo build --release` unless `--binary PATH` names one;
#   3. `localhost/shop:<git describe>` (or `--tag`) from deploy/docker/Containerfile, the runtime
#      stage of deploy/docker/Dockerfile over that base.
# Installs podman, buildah and debootstrap when missing. Prints what it did and the image's size.
# Run it (scripts/podman.sh is podman with what this machine needs, see setup.sh):
#   scripts/podman.sh run --rm --network host -e DATABASE_URL=... localhost/shop:<tag> serve
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

BASE_IMAGE=localhost/shop-base:bookworm
binary=""
tag=""
rebuild_base=0
base_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --rebuild-base) rebuild_base=1; shift ;;
    --base-only) base_only=1; shift ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--binary PATH] [--tag IMAGE:TAG] [--rebuild-base] [--base-only]" >&2; exit 2 ;;
    esac
done
tag="${tag:-localhost/shop:$(git describe --tags --always --dirty)}"
started=$(date +%s)
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

ensure_container_tools

build_base_image() {
    local rootfs mirror phase
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /var/tmp/shop-base.XXXXXX)
    scratch+=("$rootfs")
    phase=$(date +%s)
    say "debootstrap bookworm (minbase, ca-certificates) from $mirror into $rootfs"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" \
        >/var/tmp/shop-base-debootstrap.log 2>&1 || {
        tail -n 30 /var/tmp/shop-base-debootstrap.log
        say "debootstrap failed; see /var/tmp/shop-base-debootstrap.log"
        exit 1
    }
    say "debootstrap took $(elapsed "$phase")"
    # as debian:bookworm-slim: no documentation (but the copyrights), manuals or translations,
    # now and for packages installed later; no package lists or archives
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # the mirror apt uses here, so `apt-get` in a derived image finds packages
    echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
    tar --numeric-owner -C "$rootfs" -c . |
        podman import --quiet \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["/bin/bash"]' \
            --message "debootstrap --variant=minbase bookworm $mirror" - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "imported $BASE_IMAGE"
}

# Build the base under a lock: the test suite and this script may want it at the same time.
phase=$(date +%s)
mkdir -p /var/tmp
exec 9>/var/tmp/shop-base.lock
flock 9
if [ "$rebuild_base" -eq 1 ] && podman image exists "$BASE_IMAGE"; then
    podman rmi --force "$BASE_IMAGE" >/dev/null
fi
if podman image exists "$BASE_IMAGE"; then
    say "reusing $BASE_IMAGE (made $(podman image inspect --format '{{.Created}}' "$BASE_IMAGE" | cut -d' ' -f1,2 | cut -d. -f1); --rebuild-base makes it again)"
else
    build_base_image
    say "base image built in $(elapsed "$phase")"
fi
flock -u 9
[ "$base_only" -eq 1 ] && exit 0

if [ -z "$binary" ]; then
    phase=$(date +%s)
    apt_install "${BUILD_PACKAGES[@]}"
    ensure_rust
    use_build_cache
    say "cargo build --release --bin shop"
    cargo build --release --locked --bin shop
    binary="$CARGO_TARGET_DIR/release/shop"
    say "release binary built in $(elapsed "$phase")"
fi
[ -x "$binary" ] || { say "not an executable: $binary"; exit 1; }

# The build context holds the binary alone (a hard link when it can be one).
context=$(mktemp -d /var/tmp/shop-image.XXXXXX)
scratch+=("$context")
ln "$binary" "$context/shop" 2>/dev/null || cp "$binary" "$context/shop"
phase=$(date +%s)
say "building $tag from deploy/docker/Containerfile with $binary"
podman build --quiet --format docker --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f deploy/docker/Containerfile -t "$tag" "$context" >/dev/null
say "built $tag in $(elapsed "$phase"): $(podman image inspect --format '{{.Id}}' "$tag" | cut -c1-12), $(podman images --format '{{.Size}}' "$tag" | head -n 1) (binary $(du -h "$binary" | cut -f1), base $(podman images --format '{{.Size}}' "$BASE_IMAGE" | head -n 1))"
say "done in $(elapsed "$started"); run it: scripts/podman.sh run --rm --network host -e DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop $tag serve"
