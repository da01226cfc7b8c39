#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what building and testing onlyboxes needs on Debian/Ubuntu. Idempotent and quiet: when
# everything is already there it touches nothing (no apt-get update).
set -euo pipefail

# Debian package -> a command or file that proves it is installed.
declare -A need=(
    [build-essential]=/usr/bin/make
    [cmake]=/usr/bin/cmake
    [pkg-config]=/usr/bin/pkg-config
    [libjansson-dev]=/usr/include/jansson.h
    [libcmocka-dev]=/usr/include/cmocka.h
    [libcurl4-openssl-dev]=/usr/bin/curl-config
    [libwebsockets-dev]=/usr/include/libwebsockets.h
    [libsodium-dev]=/usr/include/sodium.h
    [libsqlite3-dev]=/usr/include/sqlite3.h
    # bcrypt: the password hashes of a database made by the original console.
    [libcrypt-dev]=/usr/include/crypt.h
    [libseccomp-dev]=/usr/include/seccomp.h
    [bubblewrap]=/usr/bin/bwrap
    [python3]=/usr/bin/python3
    # Workloads the bubblewrap tests run in a box under its seccomp filter.
    [python3-numpy]=/usr/lib/python3/dist-packages/numpy
    [python3-pip]=/usr/lib/python3/dist-packages/pip
    [git]=/usr/bin/git
    [clang-format-14]=/usr/bin/clang-format-14
    [curl]=/usr/bin/curl
    [openssl]=/usr/bin/openssl
    [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
    [coreutils]=/usr/bin/timeout
    [wrk]=/usr/bin/wrk
    [iproute2]=/usr/bin/ss
    [systemd]=/usr/bin/systemd-analyze
    [libgrpc-dev]=/usr/include/grpc/grpc.h
    [libprotobuf-c-dev]=/usr/include/protobuf-c/protobuf-c.h
    [protobuf-c-compiler]=/usr/bin/protoc-c
    [clang-14]=/usr/bin/clang-14
    [libclang-rt-14-dev]=/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
    # The dashboard is compiled into the console with a gzip copy of each file.
    [zlib1g-dev]=/usr/include/zlib.h
    # The dashboard's browser tests (tests/browser/) drive Debian's Chromium.
    [chromium]=/usr/bin/chromium
)

missing=()
for pkg in "${!need[@]}"; do
    [[ -e "${need[$pkg]}" ]] || missing+=("$pkg")
done
# The sanitizer builds need the ASan/UBSan and TSan runtimes that come with gcc.
if ! compgen -G '/usr/lib/gcc/*/*/libasan.so' >/dev/null ||
    ! compgen -G '/usr/lib/gcc/*/*/libtsan.so' >/dev/null; then
    missing+=(build-essential)
fi
# Node >= 20 runs the integration tests (the v2 MCP SDK and mcp-remote need it); Node 22 for the
# Inspector, Claude Code and the conformance suite is fetched by npx.
if ! command -v node >/dev/null || ! command -v npm >/dev/null ||
    (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
    missing+=(nodejs npm)
fi

if ((${#missing[@]} == 0)); then
    exit 0
fi

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-deps: installing ${missing[*]}"
sudo=""
if ((EUID != 0)); then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
