#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The benchmark harness: every row of our speed next to its baseline, measured in the same run on
# the same machine, written as one table to bench/results/latest.md (with machine, commit, date)
# and printed.
#
#   bash bench/run.sh                 full run (about 15 minutes; a quiet machine, please)
#   bash bench/run.sh --smoke         a few repetitions of everything, to check the harness works;
#                                     writes bench/results/smoke.md instead of latest.md
#
# Environment: OBX_BIN (default build/onlyboxes; build it first, e.g. scripts/test.sh or
# `cmake --build build`), OBX_BENCH_DOCKER=0 to leave out the docker rows (they are also left out,
# with a note, when no daemon answers or the work image is missing: scripts/docker-up.sh).
# The console rows start remote workers with the integration tests' helpers: run `npm ci` in
# tests/integration first.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1

bin="${OBX_BIN:-$root/build/onlyboxes}"
if [[ ! -x "$bin" ]]; then
    echo "bench: $bin not found; build first (cmake -S . -B build && cmake --build build)" >&2
    exit 1
fi
command -v wrk >/dev/null || {
    echo "bench: wrk not found (apt-get install wrk)" >&2
    exit 1
}
[[ -d tests/integration/node_modules/@grpc/grpc-js ]] || {
    echo "bench: run 'npm ci' in tests/integration first (the console rows start remote workers with its helpers)" >&2
    exit 1
}

if ((smoke)); then
    n=20 wrk_s=2 sessions=10 base_n=5 concurrent=40 sleep_s=1 out=bench/results/smoke.md
    stdio_extra=(--idle 2)
    py_extra=(--n 3 --rounds 2 --burst 4 --gap 500 --pause 500 --settle 2000)
else
    n=300 wrk_s=15 sessions=100 base_n=50 concurrent=1000 sleep_s=5 out=bench/results/latest.md
    stdio_extra=()
    py_extra=(--n 50 --rounds 5)
fi
mkdir -p bench/results

docker_ok=0
# grep reads all of doctor's output: with -q it would leave at the first line, and doctor, still
# writing (it starts a box for its python line), would die of SIGPIPE, failing the pipeline.
if [[ "${OBX_BENCH_DOCKER:-1}" != 0 ]] && "$bin" doctor 2>/dev/null | grep '^docker: *ok' >/dev/null; then
    docker_ok=1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

section() {
    echo "== $1" >&2
}

section "stdio, bubblewrap"
node bench/stdio-bench.mjs --bin "$bin" --runtime bubblewrap --n "$n" "${stdio_extra[@]}" --md \
    >"$tmp/bwrap.md"
if ((docker_ok)); then
    section "stdio, docker"
    node bench/stdio-bench.mjs --bin "$bin" --runtime docker --n "$n" "${stdio_extra[@]}" --md \
        >"$tmp/docker.md"
    section "baselines, docker"
    node bench/baselines.mjs --n "$base_n" --md >"$tmp/baselines.md"
fi
section "pythonExec, bubblewrap"
node bench/python-bench.mjs --bin "$bin" --runtime bubblewrap "${py_extra[@]}" --md >"$tmp/py-bwrap.md"
if ((docker_ok)); then
    section "pythonExec, docker"
    node bench/python-bench.mjs --bin "$bin" --runtime docker "${py_extra[@]}" --md >"$tmp/py-docker.md"
fi
section "box start and stop"
boxbin="$(dirname "$bin")/bench-box-start"
runtimes=(bubblewrap)
((docker_ok)) && runtimes+=(docker)
: >"$tmp/boxes.md"
for rt in "${runtimes[@]}"; do
    if [[ -x "$boxbin" ]]; then
        "$boxbin" "$rt" "$((smoke ? 5 : 50))" >>"$tmp/boxes.md"
    else
        echo "bench: $boxbin not found (a build with OBX_TESTS=ON makes it); box rows left out" >&2
    fi
done
section "dashboard, Chromium"
if [[ -x /usr/bin/chromium && -d tests/browser/node_modules/playwright-core ]]; then
    node bench/dashboard-bench.mjs --bin "$bin" --n "$( ((smoke)) && echo 2 || echo 30)" --md \
        >"$tmp/dashboard.md"
else
    echo "| (dashboard rows left out: needs /usr/bin/chromium and npm ci in tests/browser) | | | | | |" \
        >"$tmp/dashboard.md"
fi
section "live terminal over the console's WebSocket"
node bench/terminal-bench.mjs --bin "$bin" --runtime bubblewrap \
    --keys "$( ((smoke)) && echo 20 || echo 300)" --mb "$( ((smoke)) && echo 5 || echo 200)" --md \
    >"$tmp/terminal.md"
section "console, REST: embedded worker, then remote workers"
node bench/console-bench.mjs --bin "$bin" --runtime bubblewrap --duration "$wrk_s" \
    --sessions "$sessions" --n "$n" --concurrent "$concurrent" --sleep "$sleep_s" --md \
    >"$tmp/console.md"

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
mem="$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
bw="$(bwrap --version 2>/dev/null || echo 'bubblewrap: none')"
dk="$( ((docker_ok)) && docker version --format 'Docker {{.Server.Version}}' 2>/dev/null || echo 'Docker: not used')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo ' (with local changes)' || true)"

{
    echo "# Benchmark results"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- commit: ${commit}${dirty}"
    echo "- machine: $(nproc) CPUs ($cpu), $mem, $(uname -sr), $bw, $dk"
    echo "- load average when the run ended: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- command: \`bash bench/run.sh$( ((smoke)) && echo ' --smoke')\`"
    echo
    echo "Latencies in milliseconds, measured by the client (the MCP client over stdio, or wrk"
    echo "over HTTP). Each onlyboxes row is measured in the same run as its baseline."
    echo
    echo "## Local mode: \`onlyboxes mcp --stdio\`"
    echo
    echo "### bubblewrap"
    echo
    cat "$tmp/bwrap.md"
    if ((docker_ok)); then
        echo
        echo "### docker, with the baselines on the same image"
        echo
        cat "$tmp/docker.md"
        sed -n '/^| baseline/p' "$tmp/baselines.md"
    else
        echo
        echo "(docker rows left out: no Docker daemon or work image; scripts/docker-up.sh)"
    fi
    echo
    echo "## pythonExec: a warm interpreter in every pooled box (bench/python-bench.mjs)"
    echo
    echo "A pool hit's interpreter was started, with ONLYBOXES_PYTHON_PRELOAD imported, before the"
    echo "call; the baselines run the same code without onlyboxes in the same run."
    echo
    echo "### bubblewrap"
    echo
    cat "$tmp/py-bwrap.md"
    if ((docker_ok)); then
        echo
        echo "### docker"
        echo
        cat "$tmp/py-docker.md"
    fi
    echo
    echo "## A runtime starting and stopping a box (bench/box-start.c; the warm pool hides it)"
    echo
    echo '| measurement | n | p50 ms | p90 ms | p99 ms | goal |'
    echo '|---|---|---|---|---|---|'
    cat "$tmp/boxes.md"
    echo
    echo "## Console: REST API, with the embedded worker and with remote workers (bubblewrap)"
    echo
    cat "$tmp/console.md"
    echo
    echo "## Console: the live terminal (bench/terminal-bench.mjs)"
    echo
    echo "A keystroke typed at the shell's prompt until its echo arrives, one after the other; then"
    echo "text printed by the shell until its end mark, acknowledged as a browser that draws at once."
    echo
    cat "$tmp/terminal.md"
    echo
    echo "## Console: the dashboard's cold load (Chromium, fresh profile, loopback)"
    echo
    echo "From the start of navigation (the page's own clock) to the sign-in form focused, and to"
    echo "the Workers page with its counts and table filled; the floor is the same measurement on a"
    echo "one-line static page."
    echo
    echo '| measurement | n | p50 ms | p90 ms | p99 ms | goal |'
    echo '|---|---|---|---|---|---|'
    cat "$tmp/dashboard.md"
} >"$out"

cat "$out"
echo >&2
echo "bench: written to $out" >&2
