#!/usr/bin/env bash
# Creates an API token for the signed-in account (run login.sh first). The value is shown once:
# this prints only the token, ready for `export ONLYBOXES_TOKEN=$(./create-token.sh NAME)`.
set -euo pipefail
: "${CONSOLE:=http://127.0.0.1:8089}"
name=${1:?usage: create-token.sh NAME}
curl -fsS -b cookies.txt -H 'content-type: application/json' \
    -d "$(jq -n --arg n "$name" '{name: $n}')" "$CONSOLE/api/v1/console/tokens" | jq -r .token
