#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the official MCP conformance suite against `onlyboxes mcp --stdio`, through relay.mjs
# (the suite speaks Streamable HTTP only), or against the console's own /mcp endpoint. One line
# per scenario, then a total; exits non-zero if any scenario fails.
#
#   tests/integration/conformance.sh [stdio|http]   # binary: $OBX_BIN, else build/onlyboxes
#   OBX_CONFORMANCE_SCENARIOS="ping tools-list" tests/integration/conformance.sh
#
# http starts `onlyboxes console --with-worker` on loopback with a fresh database and
# CONSOLE_MCP_TEST_FIXTURES=true (fixture tools, /mcp without a token: the suite sends none).
set -euo pipefail
export NO_COLOR=1 FORCE_COLOR=0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${OBX_BIN:-$root/build/onlyboxes}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
conformance_pkg="@modelcontextprotocol/conformance@0.1.16"
mode="${1:-stdio}"
case "$mode" in stdio | http) ;; *) echo "conformance: unknown mode '$mode' (stdio or http)" >&2; exit 2 ;; esac
default_scenarios="server-initialize ping logging-set-level tools-list
    tools-call-simple-text tools-call-image tools-call-audio tools-call-embedded-resource
    tools-call-mixed-content tools-call-with-logging tools-call-error tools-call-with-progress"
# What only the server's own HTTP transport can show (through the relay they test the relay).
if [[ "$mode" == http ]]; then
    default_scenarios+=" server-sse-multiple-streams dns-rebinding-protection"
fi
scenarios=(${OBX_CONFORMANCE_SCENARIOS:-$default_scenarios})

if [[ ! -x "$bin" ]]; then
    echo "conformance: binary not found or not executable: $bin (build it, or set OBX_BIN)" >&2
    exit 1
fi
if [[ ! -d "$here/node_modules/@modelcontextprotocol/sdk" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port/mcp"
if [[ "$mode" == http ]]; then
    CONSOLE_HTTP_ADDR="127.0.0.1:$port" CONSOLE_GRPC_ADDR=127.0.0.1:0 CONSOLE_DB_PATH="$work/console.db" \
        CONSOLE_HASH_KEY="conformance-$$" CONSOLE_DASHBOARD_USERNAME=admin \
        CONSOLE_DASHBOARD_PASSWORD="conformance-$$" CONSOLE_MCP_TEST_FIXTURES=true \
        ONLYBOXES_RUNTIME="${ONLYBOXES_RUNTIME:-bubblewrap}" \
        "$bin" console --with-worker >"$work/server.log" 2>&1 &
else
    node "$here/relay.mjs" "$port" "$bin" mcp --stdio --conformance-fixtures >"$work/server.log" 2>&1 &
fi
server_pid=$!

# Any HTTP answer means the server listens (a GET without a session is 405).
for _ in $(seq 100); do
    if curl -s -o /dev/null "$url"; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "conformance: the server exited early:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -s -o /dev/null "$url" || { echo "conformance: nothing listening on $url" >&2; cat "$work/server.log" >&2; exit 1; }

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
    echo "----- server (and relay) stderr (tail) -----"
    tail -n 80 "$work/server.log"
fi
echo "conformance ($mode): $passed passed, $failed failed"
((failed == 0))
