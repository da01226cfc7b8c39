#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the official MCP conformance suite, two versions of it (0.2.0-alpha.12 and 0.1.16), against
# `onlyboxes mcp --stdio` through relay.mjs (the suite speaks Streamable HTTP only), or against the
# console's own /mcp endpoint: each server scenario in the legacy era (2025-11-25, initialize) and,
# with the suite that has it, in the modern era (2026-07-28, per-request _meta). What is not run,
# and why, is conformance-not-run.txt; conformance-run.mjs runs and judges the rest. One line per
# scenario, a line per suite version and era, then a total; exits non-zero if any scenario fails.
#
#   tests/integration/conformance.sh [stdio|http]   # binary: $OBX_BIN, else build/onlyboxes
#   OBX_CONFORMANCE_SCENARIOS="ping tools-*" tests/integration/conformance.sh
#   OBX_CONFORMANCE_RESULTS=DIR   keep each scenario's output and checks.json in DIR
#
# http starts `onlyboxes console --with-worker` on loopback with a fresh database and
# CONSOLE_MCP_TEST_FIXTURES=true (fixture tools, /mcp without a token: the suite sends none).
# The suites need Node >= 22: npx fetches it with them once, before the first scenario.
set -euo pipefail
export NO_COLOR=1 FORCE_COLOR=0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${OBX_BIN:-$root/build/onlyboxes}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
suites=(0.2.0-alpha.12 0.1.16)
mode="${1:-stdio}"
case "$mode" in stdio | http) ;; *) echo "conformance: unknown mode '$mode' (stdio or http)" >&2; exit 2 ;; esac

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

# Fetch each suite (and a Node 22 to run it) once, outside any scenario's timeout, and find the
# files npx put them in: the scenarios then start Node 22 directly, which saves npx's second each.
suite_args=()
for v in "${suites[@]}"; do
    pkg="@modelcontextprotocol/conformance@$v"
    paths=""
    for attempt in 1 2 3; do
        if paths="$(npx -y -p node@22 -p "$pkg" -- sh -c \
            'command -v node && readlink -f "$(command -v conformance)" && node --version' \
            2>"$work/npx.log")"; then
            break
        fi
        paths=""
        if ((attempt < 3)); then sleep $((attempt * 5)); fi
    done
    node22="$(sed -n 1p <<<"$paths")"
    conf_js="$(sed -n 2p <<<"$paths")"
    if [[ -z "$paths" || ! -x "$node22" || ! -f "$conf_js" ]] ||
        [[ "$(sed -n 3p <<<"$paths")" != v22.* ]]; then
        echo "conformance: could not install $pkg with Node 22 through npx:" >&2
        cat "$work/npx.log" >&2
        exit 1
    fi
    got="$("$node22" "$conf_js" --version)"
    if [[ "$got" != "$v" ]]; then
        echo "conformance: npx gave $pkg version $got" >&2
        exit 1
    fi
    suite_args+=(--suite "$v=$node22:$conf_js")
done

rc=0
results="${OBX_CONFORMANCE_RESULTS:-$work/results}"
mkdir -p "$results"
node "$here/conformance-run.mjs" --transport "$mode" --url "$url" --work "$results" \
    "${suite_args[@]}" || rc=$?
# What the relay could not deliver is worth seeing even when every scenario passed; the stdio
# server's exit in the middle of the run is a failure of its own.
if [[ "$mode" == stdio ]] &&
    grep -E '^relay: (unrouted|dropped|modern child: the stdio server exited)' "$work/server.log" \
        >"$work/relay-notes"; then
    echo "conformance: the relay noted:"
    head -n 20 "$work/relay-notes" | sed 's/^/    /'
    if grep -q 'exited' "$work/relay-notes"; then
        echo "conformance (stdio): FAIL: the modern era's stdio server exited during the run"
        rc=1
    fi
fi
if ((rc != 0)); then
    echo "----- server (and relay) stderr (tail) -----"
    tail -n 80 "$work/server.log"
fi
exit "$rc"
