#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Load test of the console (tests/load/load.mjs): `onlyboxes console --with-worker` with a fresh
# database (or, with OBX_LOAD_WORKERS=remote, the console and two `onlyboxes worker` processes
# connected to it over gRPC) and OBX_LOAD_CLIENTS clients (50) mixing REST and MCP over HTTP for
# OBX_LOAD_SECONDS (120). Prints a summary (requests and errors per kind, the RSS of the console
# and of each worker after the warm-up and at the end) and exits non-zero on an undocumented error,
# a task that never ended, memory that keeps growing, an unclean exit, or a process left behind.
#
# usage: tests/load/run.sh
# Environment: OBX_BIN (default build/onlyboxes), ONLYBOXES_RUNTIME (default bubblewrap),
# OBX_LOAD_SECONDS, OBX_LOAD_CLIENTS, OBX_LOAD_WORKERS (embedded, the default, or remote). Needs
# tests/integration/node_modules (npm ci).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export OBX_BIN="${OBX_BIN:-$root/build/onlyboxes}"
export ONLYBOXES_RUNTIME="${ONLYBOXES_RUNTIME:-bubblewrap}"

if [[ ! -x "$OBX_BIN" ]]; then
    echo "load: binary not found: $OBX_BIN (build it, or set OBX_BIN)" >&2
    exit 2
fi
if [[ ! -d "$root/tests/integration/node_modules/@modelcontextprotocol/sdk" ]]; then
    echo "load: run 'npm ci' in tests/integration first" >&2
    exit 2
fi
# The run's length plus time to start, drain and stop; a hang fails instead of blocking CI.
limit=$((${OBX_LOAD_SECONDS:-120} + 180))
exec timeout --kill-after=10 "$limit" node "$here/load.mjs"
