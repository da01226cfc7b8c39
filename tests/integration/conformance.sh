#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the official MCP conformance suite against `onlyboxes mcp --stdio`, through relay.mjs
# (the suite speaks Streamable HTTP only). One line per scenario, then a total; exits non-zero if
# any scenario fails.
#
#   tests/integration/conformance.sh            # binary: $OBX_BIN, else build/onlyboxes
#   OBX_CONFORMANCE_SCENARIOS="ping tools-list" tests/integration/conformance.sh
set -euo pipefail
export NO_COLOR=1 FORCE_COLOR=0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${OBX_BIN:-$root/build/onlyboxes}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
conformance_pkg="@modelcontextprotocol/conformance@0.1.16"
scenarios=(${OBX_CONFORMANCE_SCENARIOS:-server-initialize ping logging-set-level tools-list
    tools-call-simple-text tools-call-image tools-call-audio tools-call-embedded-resource
    tools-call-mixed-content tools-call-with-logging tools-call-error tools-call-with-progress})

if [[ ! -x "$bin" ]]; then
    echo "conformance: binary not found or not executable: $bin (build it, or set OBX_BIN)" >&2
    exit 1
fi
if [[ ! -d "$here/node_modules/@modelcontextprotocol/sdk" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

work="$(mktemp -d)"
relay_pid=""
cleanup() {
    if [[ -n "$relay_pid" ]] && kill -0 "$relay_pid" 2>/dev/null; then
        kill -TERM "$relay_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$relay_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port/mcp"
node "$here/relay.mjs" "$port" "$bin" mcp --stdio --conformance-fixtures >"$work/relay.log" 2>&1 &
relay_pid=$!

# Any HTTP answer means the relay listens (a GET without a session is 405).
for _ in $(seq 100); do
    if curl -s -o /dev/null "$url"; then break; fi
    if ! kill -0 "$relay_pid" 2>/dev/null; then
        echo "conformance: the relay exited early:" >&2
        cat "$work/relay.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -s -o /dev/null "$url" || { echo "conformance: relay not listening on $url" >&2; cat "$work/relay.log" >&2; exit 1; }

# Fetch the suite (and a Node 22 to run it: it needs Node >= 22) once, outside the per-scenario
# timeout.
npx -y -p node@22 -p "$conformance_pkg" -- conformance --version >/dev/null 2>"$work/npx.log" || {
    echo "conformance: could not install $conformance_pkg:" >&2
    cat "$work/npx.log" >&2
    exit 1
}

passed=0
failed=0
failures=()
for s in "${scenarios[@]}"; do
    out="$work/$s.log"
    if timeout 300 npx -y -p node@22 -p "$conformance_pkg" -- \
        conformance server --url "$url" --scenario "$s" >"$out" 2>&1; then
        passed=$((passed + 1))
        echo "conformance: PASS $s ($(grep -Eo 'Passed: [0-9]+/[0-9]+' "$out" | tail -n1 || true))"
    else
        failed=$((failed + 1))
        failures+=("$s")
        echo "conformance: FAIL $s"
        grep -E 'FAILURE|Error|error' "$out" | grep -v '^npm warn' | head -n 20 | sed 's/^/    /' || true
    fi
done

if ((failed > 0)); then
    for s in "${failures[@]}"; do
        echo "----- $s -----"
        grep -v '^npm warn' "$work/$s.log" | tail -n 60
    done
    echo "----- relay and server stderr (tail) -----"
    tail -n 80 "$work/relay.log"
fi
echo "conformance: $passed passed, $failed failed"
((failed == 0))
