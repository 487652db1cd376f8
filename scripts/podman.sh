#!/usr/bin/env bash
# podman with what this machine needs (scripts/setup.sh's podman_environment: the OCI runtime and
# the limits a sandbox allows), e.g. `scripts/podman.sh run --rm --network host localhost/shop:TAG`.
# Where podman's defaults work this is plain podman. The container test drives podman through it.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
podman_environment
exec podman "$@"
