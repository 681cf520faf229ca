#!/usr/bin/env bash
# Make sure a Docker engine answers. Idempotent: does nothing when one already does.
# When none answers and we are root on Debian, install Debian's docker.io and start dockerd
# in the background with its data on disk. Otherwise, say how to start one and fail (exit 3,
# fahr's "environment problem" code).
set -euo pipefail

answers() { docker info >/dev/null 2>&1 || python3 - <<'PY' 2>/dev/null
import sys, docker
try:
    docker.from_env().ping()
except Exception:
    sys.exit(1)
PY
}

if answers; then
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
    echo "ensure-docker: DOCKER_HOST=$DOCKER_HOST does not answer; start that engine, or unset DOCKER_HOST." >&2
    exit 3
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure-docker: no Docker engine answers. Start one (e.g. 'sudo systemctl start docker') and retry." >&2
    exit 3
fi

if ! command -v dockerd >/dev/null; then
    echo "ensure-docker: installing Debian's docker.io ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

if ! pgrep -x dockerd >/dev/null; then
    echo "ensure-docker: starting dockerd in the background (log: /var/log/fahr-dockerd.log) ..." >&2
    mkdir -p /var/lib/docker
    # dockerd outlives this script: it must not inherit the caller's open files beyond stdio (a
    # `flock LOCK make test` would otherwise leave LOCK held by dockerd for as long as it runs,
    # and every later flock on it would wait for ever).
    (
        for fd in /proc/$BASHPID/fd/*; do
            n=${fd##*/}
            if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-" 2>/dev/null || true; fi
        done
        exec nohup dockerd --data-root /var/lib/docker >/var/log/fahr-dockerd.log 2>&1 </dev/null
    ) &
fi

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
echo "ensure-docker: dockerd did not answer within 60 s; see /var/log/fahr-dockerd.log" >&2
tail -n 20 /var/log/fahr-dockerd.log >&2 || true
exit 3
