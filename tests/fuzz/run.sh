#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets (clang-14, ASan + UBSan) into build-fuzz/ and runs each for a while
# from its seed corpus, two at a time. One summary line per target (runs, corpus, findings) and a
# final line; exits non-zero when any target found a crash, a leak, a timeout or ran out of memory.
#
#   tests/fuzz/run.sh [TARGET...]        all targets when none is named
#
# Environment:
#   OBX_FUZZ_SECONDS=N   seconds per target (default 30)
#   OBX_FUZZ_JOBS=N      targets run at once (default 2)
#   OBX_FUZZ_BUILD=DIR   build directory (default build-fuzz)
# New inputs and findings go to $OBX_FUZZ_BUILD/fuzz-runs/<target>/ (fresh on every run); the
# repository's corpus is only read. docs/fuzzing.md says how to keep a finding as a seed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${OBX_FUZZ_BUILD:-$root/build-fuzz}"
seconds="${OBX_FUZZ_SECONDS:-30}"
jobs="${OBX_FUZZ_JOBS:-2}"
t_start=$SECONDS

# Target -> largest input (bytes): enough for a few messages, frames or requests.
declare -A max_len=(
    [mcp_session]=16384
    [mcp_tools]=4096
    [agent_frames]=16384
    [worker_frames]=16384
    [console_http]=16384
    [rpc_frames]=16384
)
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(mcp_session mcp_tools agent_frames worker_frames console_http rpc_frames)
fi
for t in "${targets[@]}"; do
    if [[ -z "${max_len[$t]:-}" ]]; then
        echo "fuzz: unknown target '$t' (known: ${!max_len[*]})" >&2
        exit 2
    fi
done

if ! command -v clang-14 >/dev/null; then
    echo "fuzz: clang-14 not found (scripts/install-deps.sh installs it)" >&2
    exit 1
fi
mkdir -p "$build"
CC=clang-14 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOBX_WERROR=ON \
    -DOBX_FUZZ=ON -DOBX_TESTS=OFF >"$build/configure.log" 2>&1 || {
    cat "$build/configure.log" >&2
    exit 1
}
cmake --build "$build" --target fuzzers --parallel "$(nproc 2>/dev/null || echo 2)" >"$build/build.log" 2>&1 || {
    cat "$build/build.log" >&2
    exit 1
}
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - t_start)) s; ${seconds} s each, $jobs at a time"

runs_dir="$build/fuzz-runs"
run_one() {
    local t="$1" dir="$runs_dir/$1"
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/findings"
    local rc=0
    # -timeout: one input taking longer is a finding (the worker and console targets wait for
    # answers); the rss limit leaves room for ASan's quarantine.
    (cd "$dir" && "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" \
        -timeout=25 -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$dir/findings/" \
        "$dir/corpus" "$root/tests/fuzz/corpus/$t" >"$dir/log" 2>&1) || rc=$?
    echo "$rc" >"$dir/rc"
}

pids=()
for t in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do
        wait -n || true
    done
    run_one "$t" &
    pids+=($!)
done
wait "${pids[@]}" || true

total_runs=0
failed=0
for t in "${targets[@]}"; do
    dir="$runs_dir/$t"
    rc="$(cat "$dir/rc" 2>/dev/null || echo 1)"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)"
    runs="${runs:-0}"
    seeds="$(find "$root/tests/fuzz/corpus/$t" -type f | wc -l)"
    new="$(find "$dir/corpus" -type f | wc -l)"
    findings="$(find "$dir/findings" -type f | wc -l)"
    if [[ "$rc" != 0 ]] && ((findings == 0)); then
        findings=1 # it died without leaving an input (e.g. out of memory in set-up)
    fi
    total_runs=$((total_runs + runs))
    echo "fuzz: $t: $runs runs, corpus $((seeds + new)) inputs ($seeds seeds, $new new), crashes $findings"
    if ((findings > 0)); then
        failed=$((failed + 1))
        echo "---- $t: last lines of $dir/log" >&2
        grep -v -E '^#[0-9]+' "$dir/log" | tail -40 >&2 || true
        for f in "$dir"/findings/*; do
            [[ -e "$f" ]] && echo "fuzz: $t: finding $f (replay: $build/tests/fuzz/fuzz_$t $f)" >&2
        done
    fi
done
echo "fuzz: ${#targets[@]} targets, $total_runs runs, $failed with findings, in $((SECONDS - t_start)) s"
((failed == 0))
