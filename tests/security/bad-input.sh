#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the bad-input suite (tests/security/bad-input.test.mjs) and prints one summary line:
#   bad input: 112 inputs, 112 answered with a clear error, 0 known limits, 0 crashed in 3 s
# Each input is one test: "a clear error" means its answer named what is wrong (the asserted code
# and message); "crashed" counts inputs after which the server no longer answered a normal request
# (it exited or hung). "Known limits" are inputs whose answer is libwebsockets' own (a request head
# over the limit: the connection is closed without an answer); the test asserts that answer, and
# each is listed under the summary. Any other input not answered clearly, or any crash, fails.
#
# usage: tests/security/bad-input.sh
# Environment: OBX_BIN (default build/onlyboxes), ONLYBOXES_RUNTIME (default bubblewrap).
# Needs tests/integration/node_modules (npm ci).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export OBX_BIN="${OBX_BIN:-$root/build/onlyboxes}"
export ONLYBOXES_RUNTIME="${ONLYBOXES_RUNTIME:-bubblewrap}"

if [[ ! -d "$root/tests/integration/node_modules/@modelcontextprotocol/sdk" ]]; then
    echo "bad-input.sh: run 'npm ci' in tests/integration first" >&2
    exit 2
fi

report="$(mktemp)"
tap="$(mktemp)"
trap 'rm -f "$report" "$tap"' EXIT
t0=$SECONDS
rc=0
(cd "$here" && OBX_BAD_INPUT_REPORT="$report" node --test --test-concurrency=1 --test-timeout=120000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    ./bad-input.test.mjs) || rc=$?

# The report's counts, and the names of the inputs that were not answered clearly or crashed.
summary="$(node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const n = (f) => lines.filter(f).length;
console.log(lines.length, n((l) => l.clear), n((l) => l.known), n((l) => !l.alive));
for (const l of lines) if (l.known) console.log("  known limit: " + l.name + " (" + l.known + ")");
for (const l of lines) if (!l.clear && !l.known) console.log("  not clear: " + l.name);
for (const l of lines) if (!l.alive) console.log("  crashed: " + l.name);
' "$report")"
read -r inputs clear known crashed <<<"$(head -n 1 <<<"$summary")"
tests="$(sed -n 's/^# tests \([0-9]*\)$/\1/p' "$tap" | tail -n 1)"
echo
echo "bad input: $inputs inputs, $clear answered with a clear error, $known known limits, $crashed crashed in $((SECONDS - t0)) s"
tail -n +2 <<<"$summary"
# A test that failed outside an input (setup) leaves fewer report lines than tests.
if ((rc != 0)) || [[ "$inputs" == 0 || $((clear + known)) != "$inputs" || "$crashed" != 0 || "${tests:-0}" != "$inputs" ]]; then
    if [[ "${tests:-0}" != "$inputs" ]]; then
        echo "  $((${tests:-0} - inputs)) tests did not get as far as their input (setup failed)"
    fi
    exit 1
fi
