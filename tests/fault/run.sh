#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the fault suite (tests/fault/*.test.mjs) and prints one summary line:
#   fault suite: 14 faults injected, 14 survived, 0 failed, 0 skipped in 95 s
# Every test injects one fault for real (a killed server, console or remote worker, a worker cut
# off from its console or sent SIGTERM mid-command, a stopped Docker daemon, a full disk, corrupt
# frames on the agent stream or the gRPC port, a client that goes away) and passes when the
# product survived it as a user would check: nothing stored lost, no task left running, no box
# left behind, a clear error meanwhile, service back afterwards. Skipped faults are listed with
# their reason (no Docker daemon, no root for a mount, ...).
#
# usage: tests/fault/run.sh [FILE.test.mjs]...   (default: every file here)
# Environment: OBX_BIN (default build/onlyboxes). Needs tests/integration/node_modules (npm ci).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export OBX_BIN="${OBX_BIN:-$root/build/onlyboxes}"

files=("$@")
if ((${#files[@]} == 0)); then
    mapfile -t files < <(cd "$here" && ls ./*.test.mjs)
fi

tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
t0=$SECONDS
rc=0
(cd "$here" && node --test --test-concurrency=1 --test-timeout=300000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "${files[@]}") || rc=$?
count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -n 1; }
tests="$(count tests)" pass="$(count pass)" fail="$(count fail)" skipped="$(count skipped)"
cancelled="$(count cancelled)"
echo
echo "fault suite: ${tests:-0} faults injected, ${pass:-0} survived, $((${fail:-0} + ${cancelled:-0})) failed, ${skipped:-0} skipped in $((SECONDS - t0)) s"
# "ok 4 - name # SKIP reason" for each skipped fault.
sed -n 's/^ *ok [0-9]* - \(.*\) # SKIP \(.*\)$/  skipped: \1: \2/p' "$tap"
if ((rc != 0)) || [[ -z "$tests" || "${fail:-1}" != 0 || "${cancelled:-0}" != 0 ]]; then
    exit 1
fi
