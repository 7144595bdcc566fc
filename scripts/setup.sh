#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine (as root) for the builder and its tests: the Python package and its
# dependencies, Debian's Docker Engine, debootstrap and Chromium (the report pages' browser tests), a running
# dockerd, and a local base image. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq docker.io debootstrap chromium >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check -e ".[dev]"

docker_cli=/usr/bin/docker  # Debian's client; it matches Debian's engine
if ! "$docker_cli" info >/dev/null 2>&1; then
    # No registry and no bridge network here: containers run with --network none.
    nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 60); do
        "$docker_cli" info >/dev/null 2>&1 && break
        sleep 1
    done
    "$docker_cli" info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

if ! "$docker_cli" image inspect submission-base:bookworm >/dev/null 2>&1; then
    builder base --tag submission-base:bookworm
fi
