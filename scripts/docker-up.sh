#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes a Docker daemon available for the docker runtime's tests, then builds the work images.
# Idempotent: installs docker.io only when dockerd is missing, starts dockerd in the background
# only when no daemon answers, and build-test-image.sh reuses an image that already exists.
#
# Environment:
#   OBX_DOCKERD_LOG   where a dockerd we start logs (default /var/log/onlyboxes-dockerd.log)
#   OBX_DOCKER_WAIT   seconds to wait for a started daemon to answer /_ping (default 60)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="${OBX_DOCKERD_LOG:-/var/log/onlyboxes-dockerd.log}"
wait_sec="${OBX_DOCKER_WAIT:-60}"
sock=/var/run/docker.sock

sudo=""
if ((EUID != 0)); then
    sudo="sudo"
fi

ping_ok() {
    # The Engine API itself, not the CLI: what the runtime will talk to.
    curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
}

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-up: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

if [[ -n "${DOCKER_HOST:-}" && "${DOCKER_HOST}" != "unix://$sock" ]]; then
    echo "docker-up: DOCKER_HOST=$DOCKER_HOST is set; not starting a local daemon"
elif ping_ok; then
    echo "docker-up: a daemon already answers on $sock"
else
    echo "docker-up: starting dockerd (log: $log)"
    # setsid: the daemon outlives this script and the test run's process group.
    $sudo setsid dockerd >>"$log" 2>&1 </dev/null &
    for ((i = 0; i < wait_sec * 4; i++)); do
        ping_ok && break
        sleep 0.25
    done
    if ! ping_ok; then
        echo "docker-up: dockerd did not answer on $sock within $wait_sec s; last lines of $log:" >&2
        tail -n 20 "$log" >&2 || true
        exit 1
    fi
    echo "docker-up: dockerd answers after $((i / 4)) s"
fi

# The default image (the data stack) and the slim one, which tests and benchmarks use too.
OBX_WORK_VARIANT=data bash "$root/scripts/build-test-image.sh"
OBX_WORK_VARIANT=slim bash "$root/scripts/build-test-image.sh"
