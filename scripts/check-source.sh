#!/usr/bin/env bash
# Source rules a compiler does not check: each third-party library is included only by the module
# that owns it, a few unsafe libc calls are banned, and nothing but the stdio transport and the CLI
# writes to stdout (stdout is the MCP channel). Prints every violation; exits 1 if there is any.
#
#   scripts/check-source.sh            every rule
#   scripts/check-source.sh --layers   only the layering rule (what the build runs, see CMakeLists.txt)
set -u
cd "$(dirname "$0")/.."
fail=0
only_layers=0
[[ ${1:-} == --layers ]] && only_layers=1

report() { # file:line: message
    echo "check-source: $1"
    fail=1
}

# library include pattern | allowed path regex
rules=(
    '#include <curl/|^src/(docker|client)/'
    '#include <libwebsockets.h>|^src/console/http/'
    '#include <openssl/|^src/console/http/'
    '#include <grpc/|^src/rpc/'
    '#include <protobuf-c/|^src/rpc/'
    '#include <sqlite3.h>|^src/console/store/'
    '#include <sodium.h>|^src/console/auth/'
    '#include <crypt.h>|^src/console/auth/'
    '#include <seccomp.h>|^src/sandbox/bwrap-seccomp\.c$'
)
files=$(git ls-files -co --exclude-standard 'src/*.c' 'src/*.h' | grep -v '\.pb-c\.' |
    while read -r f; do [ -f "$f" ] && echo "$f"; done)
((only_layers)) && rules=()
for rule in "${rules[@]}"; do
    pat=${rule%%|*}
    allow=${rule#*|}
    for f in $files; do
        [[ $f =~ $allow ]] && continue
        grep -n -F "$pat" "$f" /dev/null | while IFS= read -r hit; do
            echo "check-source: ${hit%%:*}: '$pat' belongs to $allow only"
        done | grep . && fail=1
    done
done

# Layering (DESIGN.md, docs/internals.md): a file may include, besides its own folder's headers,
# only the modules below it. "dir|allowed include prefixes" (a file's own folder is always allowed).
layers=(
    'src/common/|common/'
    'src/agent/|common/ agent/'
    'src/rpc/|common/ rpc/ onlyboxes/registry/'
    'src/sandbox/|common/'
    'src/docker/|common/'
    'src/client/|common/'
    'src/mcp/|common/ mcp/'
    'src/worker/|common/ agent/protocol.h docker/docker.h sandbox/sandbox.h rpc/ worker/'
    'src/console/http/|common/'
    'src/console/store/|common/'
    'src/console/auth/|common/'
    'src/console/util/|common/'
    'src/console/registry/|common/ rpc/ console/registry/ console/store/store.h console/util/ console/auth/auth.h'
    'src/console/tasks/|common/ console/registry/ console/store/store.h console/http/http.h console/util/ console/auth/auth.h'
    'src/console/api/|common/ mcp/ worker/worker.h console/console.h console/api/ console/auth/ console/http/ console/registry/ console/store/ console/tasks/ console/util/ console/web/'
    'src/console/|common/ mcp/ worker/worker.h console/'
    'src/cli/|common/ mcp/ worker/worker.h console/console.h client/ cli/'
    'src/main.c|common/ cli/'
)
for f in $files; do
    allowed=""
    for l in "${layers[@]}"; do
        if [[ $f == ${l%%|*}* ]]; then
            allowed=${l#*|}
            break
        fi
    done
    [[ -z $allowed ]] && continue
    grep -n '#include "[^"]*/' "$f" | while IFS= read -r hit; do
        inc=$(sed 's/.*#include "\([^"]*\)".*/\1/' <<<"$hit")
        ok=0
        for a in $allowed; do
            [[ $inc == "$a"* ]] && ok=1 && break
        done
        ((ok)) || echo "check-source: $f:${hit%%:*}: includes $inc, which its module may not use (allowed: $allowed)"
    done | grep . && fail=1
done

if ((only_layers)); then
    [ $fail = 0 ] && echo "check-source: layering ok"
    exit $fail
fi

# Banned calls: unbounded or unchecked string and number handling, and shelling out.
banned='\b(sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|atoll|system|popen|tmpnam)[[:space:]]*\('
for f in $files; do
    grep -nE "$banned" "$f" | while IFS= read -r hit; do
        echo "check-source: $f:$hit: banned call (use snprintf, obx_parse_int64, posix_spawn)"
    done | grep . && fail=1
done

# stdout belongs to the MCP stdio transport (and the CLI's own output, and the agent's stream).
for f in $files; do
    case $f in
    src/cli/* | src/main.c | src/mcp/stdio.c | src/agent/*) continue ;;
    esac
    # String literals and comments removed first: "stdout" as a JSON field name is fine.
    sed -e 's/"\([^"\\]\|\\.\)*"/""/g' -e 's|/\*.*||' -e 's|^\s*\*.*||' "$f" |
        grep -nE '\b(printf|puts|putchar)[[:space:]]*\(|\bstdout\b|STDOUT_FILENO' |
        while IFS= read -r hit; do
        echo "check-source: $f:$hit: writes to stdout outside the stdio transport"
    done | grep . && fail=1
done

[ $fail = 0 ] && echo "check-source: ok"
exit $fail
