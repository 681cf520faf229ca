#!/usr/bin/env bash
# Make sure the base image fahr's generated Dockerfiles start FROM exists locally.
# Idempotent: nothing happens when the image is already there or can be pulled.
# No container registry is reachable on some machines (CI here among them), so when
# `python:3.11-slim` is absent and cannot be pulled, build a faithful stand-in once:
# a debootstrap of Debian bookworm (whose Python is 3.11) with pip and venv, the PEP 668
# marker removed so pip behaves as in the official image, and the host's CA bundle trusted
# so pip works behind a TLS-intercepting proxy.
set -euo pipefail
IMAGE="${1:-python:3.11-slim}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA=/etc/ssl/certs/ca-certificates.crt

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi
if timeout 60 docker pull -q "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

echo "ensure-base-image: $IMAGE cannot be pulled; building a stand-in with debootstrap (about a minute, once) ..." >&2
if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

root=$(mktemp -d /var/tmp/fahr-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 3; }
rm -f "$root.log"
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
if [ -f "$HOST_CA" ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp "$HOST_CA" "$root/usr/local/share/ca-certificates/host-ca-bundle.crt"
    cp "$HOST_CA" "$root/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_ROOT_USER_ACTION=ignore' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
echo "ensure-base-image: built $IMAGE" >&2
