#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the threaded parts of onlyboxes under ThreadSanitizer (a build configured with
# -DOBX_TSAN=ON) and fails on the first report:
#   unit DIR          the unit tests of DIR (ctest); the cmocka store hammer is among them
#   integration BIN   the stdio MCP suites (protocol, terminal, kill, tools), every console suite
#                     and the remote CLI suite against the TSan binary BIN, on bubblewrap
# Ends with a summary: "tsan: N passed, N failed" (integration: ", N skipped" too).
#
# Every report is fatal: halt_on_error=1 stops the process at its first race with exit code 66
# (ctest counts that as a failure; the integration helpers also fail a test whose server printed a
# ThreadSanitizer report). tests/tsan.supp holds the few suppressions for races inside third-party
# libraries, each with its reason. TSAN_OPTIONS from the environment is appended, so a developer
# can add e.g. verbosity=1.
#
# Kernels with more than 28 bits of mmap randomisation put mappings where this TSan runtime does
# not expect them ("FATAL: ThreadSanitizer: unexpected memory mapping"). The runner checks for that
# first and then runs everything with address-space randomisation off (setarch -R, for these
# processes and their children only); if that is not enough and it runs as root, it lowers
# vm.mmap_rnd_bits to 28 and says so.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

usage() {
    echo "usage: tests/tsan/run.sh unit BUILD_DIR | integration BINARY" >&2
    exit 2
}
(($# == 2)) || usage
mode="$1"
target="$2"
case "$mode" in
unit)
    [[ -f "$target/CTestTestfile.cmake" ]] || {
        echo "tsan: $target is not a configured build directory" >&2
        exit 2
    }
    probe_bin="$(cd "$target" && pwd)/onlyboxes"
    ;;
integration)
    probe_bin="$(cd "$(dirname "$target")" && pwd)/$(basename "$target")"
    ;;
*) usage ;;
esac
[[ -x "$probe_bin" ]] || {
    echo "tsan: $probe_bin not found or not executable (build with -DOBX_TSAN=ON)" >&2
    exit 2
}
if ! nm -D "$probe_bin" 2>/dev/null | grep '__tsan_init' >/dev/null; then
    echo "tsan: $probe_bin is not built with ThreadSanitizer (configure with -DOBX_TSAN=ON)" >&2
    exit 2
fi

export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:exitcode=66:history_size=4:suppressions=$root/tests/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

# The memory-mapping check: a TSan binary that cannot start prints this before main().
wrap=()
mapping_ok() {
    ! "${wrap[@]}" "$probe_bin" --version 2>&1 >/dev/null | grep 'unexpected memory mapping' >/dev/null
}
if ! mapping_ok; then
    wrap=(setarch "$(uname -m)" -R)
    echo "tsan: this kernel's mmap randomisation breaks TSan; running with setarch -R"
    if ! mapping_ok; then
        if ((EUID == 0)); then
            echo "tsan: setarch -R is not enough; setting vm.mmap_rnd_bits=28 (was $(cat /proc/sys/vm/mmap_rnd_bits))"
            sysctl -q -w vm.mmap_rnd_bits=28
            wrap=()
        fi
        mapping_ok || {
            echo "tsan: TSan binaries cannot start on this kernel (unexpected memory mapping)" >&2
            exit 1
        }
    fi
fi

t0=$SECONDS
rc=0
if [[ "$mode" == unit ]]; then
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    "${wrap[@]}" ctest --test-dir "$target" --output-on-failure --timeout 600 \
        -j "${OBX_JOBS:-$(nproc 2>/dev/null || echo 2)}" | tee "$log" || rc=$?
    total="$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\)$/\1 \2/p' "$log")"
    read -r failed all <<<"${total:-0 0}"
    echo "tsan (unit tests, $((SECONDS - t0)) s):"
    echo "tsan: $((all - failed)) passed, $failed failed"
    exit "$rc"
fi

# The suites that drive the most threads: the stdio server's call threads, cancellation, kills
# and SIGTERM, terminal sessions, the egress proxy's loop and resolver threads, the console's HTTP
# thread, pools, task runtime and /mcp, and the remote CLI's client against it.
files=(protocol.test.mjs terminal.test.mjs kill.test.mjs tools.test.mjs egress.test.mjs
    cli-remote.test.mjs)
for f in tests/integration/console*.test.mjs; do
    files+=("$(basename "$f")")
done
tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
(cd tests/integration && OBX_BIN="$probe_bin" ONLYBOXES_RUNTIME=bubblewrap \
    "${wrap[@]}" node --test --test-concurrency=1 --test-timeout=300000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" "${files[@]}") || rc=$?
count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -n 1; }
pass="$(count pass)" fail="$(count fail)" cancelled="$(count cancelled)" skipped="$(count skipped)"
echo "tsan (integration, ${#files[@]} files, $((SECONDS - t0)) s):"
echo "tsan: ${pass:-0} passed, $((${fail:-0} + ${cancelled:-0})) failed, ${skipped:-0} skipped"
exit "$rc"
