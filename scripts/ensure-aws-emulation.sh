#!/usr/bin/env bash
# System parts of the emulated AWS that fahr's SageMaker tests and `make demo-sagemaker` run against.
# Idempotent: each step is skipped when already done. Needs root on Debian the first time.
#
# The processes themselves (moto server, the registry, the SageMaker emulator) are not started
# here: pytest fixtures and scripts/demo-sagemaker.sh start them on 127.0.0.1 and stop them.
#
# What it sets up, for the ECR registry host moto's GetAuthorizationToken names
# (<account>.dkr.ecr.<region>.amazonaws.com; moto's account is 123456789012):
#   - Debian's docker-registry (a real registry) and htpasswd (apache2-utils);
#   - /etc/hosts: the registry host -> 127.0.0.1 (nothing ever leaves loopback);
#   - a self-signed TLS certificate for that host, trusted by the Docker engine through
#     /etc/docker/certs.d/<host>/ca.crt;
#   - an htpasswd file (bcrypt) with user AWS and moto's token password <account>-auth-token.
# Prints the state folder (certificate, key, htpasswd) on stdout.
set -euo pipefail
ACCOUNT="${FAHR_EMU_ACCOUNT:-123456789012}"
REGION="${FAHR_EMU_REGION:-us-east-1}"
HOST="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
STATE="${FAHR_EMU_STATE:-/var/lib/fahr-aws-emulation}/$HOST"

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "ensure-aws-emulation: need ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
        exit 3
    fi
    echo "ensure-aws-emulation: installing ${need[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # The package's service is not wanted: the tests start their own registry process.
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

need_root() {
    if [ ! -w "$1" ]; then
        echo "ensure-aws-emulation: cannot write $1; run this script once as root ($2)" >&2
        exit 3
    fi
}

if ! grep -qE "^127\.0\.0\.1[[:space:]]+$HOST([[:space:]]|$)" /etc/hosts; then
    need_root /etc/hosts "it maps $HOST to 127.0.0.1"
    echo "127.0.0.1 $HOST" >>/etc/hosts
fi

mkdir -p "$STATE" 2>/dev/null || need_root "$(dirname "$STATE")" "it keeps the registry's certificate there"
if [ ! -s "$STATE/cert.pem" ] || [ ! -s "$STATE/key.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$HOST" \
        -addext "subjectAltName=DNS:$HOST" \
        -keyout "$STATE/key.pem" -out "$STATE/cert.pem" >/dev/null 2>&1
fi
if ! cmp -s "$STATE/cert.pem" "/etc/docker/certs.d/$HOST/ca.crt"; then
    mkdir -p "/etc/docker/certs.d/$HOST" 2>/dev/null || true
    need_root "/etc/docker/certs.d/$HOST" "the Docker engine trusts the registry's certificate from there"
    cp "$STATE/cert.pem" "/etc/docker/certs.d/$HOST/ca.crt"
fi
if [ ! -s "$STATE/htpasswd" ] || ! htpasswd -vb "$STATE/htpasswd" AWS "$ACCOUNT-auth-token" >/dev/null 2>&1; then
    htpasswd -Bbc "$STATE/htpasswd" AWS "$ACCOUNT-auth-token" >/dev/null 2>&1
fi
echo "$STATE"
