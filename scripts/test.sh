#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The one test command, for developers and CI alike:
#   dependencies, formatting, source checks, the dashboard (web/: unit tests, and its committed
#   build checked against its sources), build + unit tests, integration tests through the MCP SDK
#   client, the gRPC interoperability tests, the dashboard in Chromium, the conformance suite, the
#   security suite, then build + unit + integration + interoperability tests again under ASan/UBSan.
# Stops at the first failing stage and names it. Each stage prints its duration.
#
# Environment:
#   OBX_SKIP_DEPS=1     do not run scripts/install-deps.sh
#   OBX_SKIP_ASAN=1     skip the sanitizer stages (quicker local runs; CI runs them)
#   OBX_SKIP_NODE22=1   skip what needs Node 22 from npx (Inspector, Claude Code, conformance suite)
#   OBX_SKIP_DOCKER=1   skip the docker runtime stages (they also skip, with a warning, when no
#                       Docker daemon can be started)
#   OBX_JOBS=N          parallel build jobs (default: number of CPUs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

jobs="${OBX_JOBS:-$(nproc 2>/dev/null || echo 2)}"
suite_start=$SECONDS
current=""

docker_bg_pid=""
on_exit() {
    local rc=$?
    # The background preparation of Docker (below) goes with a run that stops early.
    if [[ -n "$docker_bg_pid" ]]; then
        kill -- "-$docker_bg_pid" 2>/dev/null || true
    fi
    if ((rc != 0)) && [[ -n "$current" ]]; then
        echo
        echo "test.sh: FAILED at stage '$current' (exit $rc) after $((SECONDS - suite_start)) s" >&2
    fi
}
trap on_exit EXIT

# stage NAME CMD...: runs CMD, reports its duration, and stops everything on failure.
stage() {
    local name="$1"
    shift
    current="$name"
    local t0=$SECONDS
    echo
    echo "=== stage: $name ==="
    "$@"
    echo "=== stage: $name: ok ($((SECONDS - t0)) s) ==="
    current=""
}

install_deps() {
    bash scripts/install-deps.sh
}

check_format() {
    local cf
    cf="$(command -v clang-format-14 || true)"
    if [[ -z "$cf" ]]; then
        echo "clang-format-14 not found (scripts/install-deps.sh installs it)" >&2
        return 1
    fi
    local files=()
    mapfile -t files < <(find src tests/unit -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null | sort)
    if ((${#files[@]} == 0)); then
        echo "no C sources found"
        return 0
    fi
    "$cf" --dry-run --Werror "${files[@]}"
    echo "${#files[@]} files formatted"
}

check_source() {
    if [[ -f scripts/check-source.sh ]]; then
        bash scripts/check-source.sh
    else
        echo "scripts/check-source.sh not present; skipped"
    fi
}

# build DIR CMAKE_ARGS...
build() {
    local dir="$1"
    shift
    mkdir -p "$dir"
    cmake -S . -B "$dir" -DOBX_WERROR=ON "$@" >"$dir/configure.log" 2>&1 || {
        cat "$dir/configure.log" >&2
        return 1
    }
    cmake --build "$dir" --parallel "$jobs"
}

unit_tests() {
    local dir="$1"
    ctest --test-dir "$dir" --output-on-failure --timeout 300 -j "$jobs"
}

npm_ci() {
    (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
}

# The dashboard's sources (web/): its logic's unit tests, then a fresh build compared byte for byte
# with the committed web/dist/, which is what the console embeds.
web_checks() {
    (cd web && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run -s check)
}

# The dashboard in Debian's Chromium against the real console and workers (tests/browser/); the
# screenshots of each page go to build/dashboard-screenshots/.
browser_tests() {
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error &&
        OBX_BIN="$1" ONLYBOXES_RUNTIME=bubblewrap npm test)
}

# The bubblewrap runtime, named explicitly: `auto` picks docker once a daemon answers.
integration_tests() {
    local bin="$1"
    (cd tests/integration && OBX_BIN="$bin" ONLYBOXES_RUNTIME=bubblewrap npm test)
}

# The worker protocol against independent peers (tests/integration/interop/): an original worker
# and an original console over real gRPC (@grpc/grpc-js), first against each other, then the
# console with the original worker and `onlyboxes worker` with the original console. The last two
# skip themselves, saying why, while the binary has no worker or no gRPC port.
interop_tests() {
    local bin="$1"
    (cd tests/integration && OBX_BIN="$bin" ONLYBOXES_RUNTIME=bubblewrap npm run -s test:interop)
}

# The MCP conformance suite, 0.2.0-alpha.12 and 0.1.16, in the legacy (2025-11-25) and modern
# (2026-07-28) eras, over stdio (through a relay) and the console's /mcp; what is not run, and why:
# tests/integration/conformance-not-run.txt.
conformance() {
    if [[ "${OBX_SKIP_NODE22:-}" == 1 ]]; then
        echo "OBX_SKIP_NODE22=1: conformance suite skipped"
        return 0
    fi
    OBX_BIN="$1" ONLYBOXES_RUNTIME=bubblewrap bash tests/integration/conformance.sh stdio
    OBX_BIN="$1" ONLYBOXES_RUNTIME=bubblewrap bash tests/integration/conformance.sh http
}

# The docker runtime against a real daemon. When no daemon can be started on this machine the
# stages say so loudly and are skipped; once one answers, every failure counts.
docker_up() {
    if [[ "${OBX_SKIP_DOCKER:-}" == 1 ]]; then
        echo "OBX_SKIP_DOCKER=1: docker stages skipped"
        docker_ok=0
        return 0
    fi
    local rc=0
    if [[ -n "$docker_bg_pid" ]]; then
        wait "$docker_bg_pid" || rc=$?
        docker_bg_pid=""
        cat build/docker-up.log
    else
        bash scripts/docker-up.sh || rc=$?
    fi
    if ((rc == 0)); then
        docker_ok=1
    else
        echo "test.sh: WARNING: no Docker daemon could be started; docker stages SKIPPED" >&2
        docker_ok=0
    fi
}

docker_unit_tests() {
    ctest --test-dir "$1" -R '^test_docker' --output-on-failure --timeout 300
}

docker_integration_tests() {
    (cd tests/integration && OBX_BIN="$1" ONLYBOXES_RUNTIME=docker npm test)
}

# Escape attempts and resource abuse against one runtime; ends with a one-line summary
# (attempts, contained, skipped).
security_suite() {
    OBX_BIN="$1" bash tests/security/run.sh "$2"
}

# The sanitizer build: every ASan report is fatal, leaks included; UBSan stops at the first
# finding (the build uses -fno-sanitize-recover).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

if [[ "${OBX_SKIP_DEPS:-}" != 1 ]]; then
    stage "install dependencies" install_deps
fi
# The Docker daemon and the work images take minutes on a fresh machine (debootstrap), mostly
# waiting on the network and the disk: they are prepared in the background from here on, while
# the stages below run, and the docker stage waits for them (its log: build/docker-up.log).
if [[ "${OBX_SKIP_DOCKER:-}" != 1 ]]; then
    mkdir -p build
    setsid -w bash scripts/docker-up.sh >build/docker-up.log 2>&1 </dev/null &
    docker_bg_pid=$!
fi
stage "clang-format" check_format
stage "source checks" check_source
stage "dashboard: unit tests and web/dist rebuilt from web/" web_checks
stage "build (build/)" build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# The README's quick start: -O3 finds warnings that -O2 does not.
stage "build (build-release/, as the README's quick start)" build build-release \
    -DCMAKE_BUILD_TYPE=Release -DOBX_TESTS=OFF
# The stdio-only build: no console, so none of libwebsockets, SQLite, libsodium and OpenSSL as
# direct dependencies; `onlyboxes console` says how it was built.
noconsole_build() {
    build build-noconsole -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOBX_CONSOLE=OFF -DOBX_TESTS=OFF
    local needed
    needed=$(readelf -d build-noconsole/onlyboxes | grep NEEDED || true)
    if grep -E 'websockets|sqlite|sodium|libssl|libcrypto' <<<"$needed"; then
        echo "the build without the console still links the libraries above" >&2
        return 1
    fi
    local out
    out=$(build-noconsole/onlyboxes console 2>&1 || true)
    grep -q "built without the console" <<<"$out" || {
        echo "onlyboxes console in that build said: $out" >&2
        return 1
    }
    build-noconsole/onlyboxes doctor >/dev/null || true
}
stage "build (build-noconsole/, -DOBX_CONSOLE=OFF)" noconsole_build
stage "unit tests (build/)" unit_tests build
stage "npm ci (tests/integration)" npm_ci
stage "integration tests (build/)" integration_tests "$root/build/onlyboxes"
stage "interop tests (build/)" interop_tests "$root/build/onlyboxes"
stage "browser tests (build/, Chromium)" browser_tests "$root/build/onlyboxes"
stage "conformance suite (build/)" conformance "$root/build/onlyboxes"
stage "security suite (build/)" security_suite "$root/build/onlyboxes" bubblewrap
# libFuzzer targets (tests/fuzz): clang build in build-fuzz/, each target from its seed corpus.
fuzz_run() { bash tests/fuzz/run.sh; }
stage "fuzzing (build-fuzz/, 30 s per target)" fuzz_run
docker_ok=0
# Malformed, oversized and hostile input over stdio and the console's HTTP; ends with a summary
# line (inputs, answered with a clear error, known limits, crashed).
bad_input_suite() {
    OBX_BIN="$1" ONLYBOXES_RUNTIME=bubblewrap bash tests/security/bad-input.sh
}
# 50 clients on `console --with-worker` for OBX_LOAD_SECONDS; ends with a summary (requests and
# errors per kind, the console's RSS after the warm-up and at the end).
load_test() {
    OBX_BIN="$1" ONLYBOXES_RUNTIME=bubblewrap OBX_LOAD_SECONDS="${OBX_LOAD_SECONDS:-120}" \
        OBX_LOAD_CLIENTS=50 bash tests/load/run.sh
}
# The same 50 clients on a console whose work runs on two remote `onlyboxes worker` processes
# connected over gRPC (also checked: the workers' RSS, their exit 0 on SIGTERM, nothing they
# started left), for OBX_LOAD_REMOTE_SECONDS.
load_test_remote() {
    OBX_BIN="$1" ONLYBOXES_RUNTIME=bubblewrap OBX_LOAD_WORKERS=remote \
        OBX_LOAD_SECONDS="${OBX_LOAD_REMOTE_SECONDS:-60}" OBX_LOAD_CLIENTS=50 bash tests/load/run.sh
}
stage "bad-input suite (build/)" bad_input_suite "$root/build/onlyboxes"
stage "load test (build/, 50 clients)" load_test "$root/build/onlyboxes"
stage "load test (build/, 50 clients, two remote workers)" load_test_remote "$root/build/onlyboxes"
stage "docker daemon and test image" docker_up
if ((docker_ok)); then
    stage "docker runtime unit tests (build/)" docker_unit_tests build
    stage "integration tests on docker (build/)" docker_integration_tests "$root/build/onlyboxes"
    stage "security suite on docker (build/)" security_suite "$root/build/onlyboxes" docker
fi
# Faults caused for real (killed server and console, a stopped Docker daemon, a full disk, corrupt
# agent frames, clients that go away); ends with a summary line. Its docker faults skip themselves,
# with the reason, when no daemon is usable.
fault_suite() { OBX_BIN="$1" bash tests/fault/run.sh; }
stage "fault suite (build/)" fault_suite "$root/build/onlyboxes"
# The benchmark harness, a few repetitions of each row, so it cannot rot (its numbers are not
# judged here: bench/run.sh on a quiet machine measures).
bench_smoke() {
    OBX_BIN="$1" OBX_BENCH_DOCKER="$docker_ok" timeout 900 bash bench/run.sh --smoke >/dev/null
}
stage "benchmark harness smoke (build/)" bench_smoke "$root/build/onlyboxes"

if [[ "${OBX_SKIP_ASAN:-}" != 1 ]]; then
    stage "build (build-asan/, ASan+UBSan)" build build-asan -DCMAKE_BUILD_TYPE=Debug -DOBX_SANITIZE=ON
    stage "unit tests (build-asan/)" unit_tests build-asan
    stage "integration tests (build-asan/)" integration_tests "$root/build-asan/onlyboxes"
    stage "interop tests (build-asan/)" interop_tests "$root/build-asan/onlyboxes"
fi

# ThreadSanitizer over the threaded parts: every unit test (the console store hammer among them)
# and the integration suites that drive the most threads (tests/tsan/run.sh names them). The first
# race report fails the stage; tests/tsan.supp holds the justified third-party suppressions.
# OBX_SKIP_TSAN=1 skips these stages.
if [[ "${OBX_SKIP_TSAN:-}" != 1 ]]; then
    tsan() { bash tests/tsan/run.sh "$@"; }
    stage "build (build-tsan/, TSan)" build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOBX_TSAN=ON
    stage "unit tests (build-tsan/)" tsan unit build-tsan
    stage "integration tests under TSan (build-tsan/)" tsan integration "$root/build-tsan/onlyboxes"
fi

echo
echo "test.sh: all stages passed in $((SECONDS - suite_start)) s"
