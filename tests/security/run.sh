#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the security suite (escape attempts and resource abuse, tests/security/*.test.mjs) against
# each runtime named, and prints one summary line per runtime:
#   security suite (bubblewrap): 41 attempts, 40 contained, 0 not contained, 1 skipped in 85 s
# Every test is one attempt; "contained" means it passed (the escape failed, the abuse was stopped
# by its limit and another session kept answering). Skipped attempts are listed with their reason.
#
# usage: tests/security/run.sh [bubblewrap|docker]...
#   Without arguments: bubblewrap, and docker too when `onlyboxes doctor` says it is ready.
# Environment: OBX_BIN (default build/onlyboxes). Needs tests/integration/node_modules (npm ci).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export OBX_BIN="${OBX_BIN:-$root/build/onlyboxes}"

runtimes=("$@")
if ((${#runtimes[@]} == 0)); then
    runtimes=(bubblewrap)
    # Not grep -q: doctor, still writing when grep would leave, would die of SIGPIPE.
    if "$OBX_BIN" doctor 2>&1 | grep '^docker: *ok' >/dev/null; then
        runtimes+=(docker)
    fi
fi

tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
status=0
summaries=()
for rt in "${runtimes[@]}"; do
    t0=$SECONDS
    rc=0
    (cd "$here" && ONLYBOXES_RUNTIME="$rt" node --test --test-concurrency=1 --test-timeout=240000 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$tap" \
        ./escape.test.mjs ./syscalls.test.mjs ./abuse.test.mjs) || rc=$?
    count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -n 1; }
    tests="$(count tests)" pass="$(count pass)" fail="$(count fail)" skipped="$(count skipped)"
    cancelled="$(count cancelled)"
    line="security suite ($rt): ${tests:-0} attempts, ${pass:-0} contained, $((${fail:-0} + ${cancelled:-0})) not contained, ${skipped:-0} skipped in $((SECONDS - t0)) s"
    summaries+=("$line")
    # "ok 4 - name # SKIP reason" for each skipped attempt.
    while IFS= read -r skip; do
        summaries+=("  skipped: $skip")
    done < <(sed -n 's/^ *ok [0-9]* - \(.*\) # SKIP \(.*\)$/\1: \2/p' "$tap")
    if ((rc != 0)) || [[ -z "$tests" || "${fail:-1}" != 0 || "${cancelled:-0}" != 0 ]]; then
        status=1
    fi
done

echo
for s in "${summaries[@]}"; do
    echo "$s"
done
exit $status
