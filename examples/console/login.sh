#!/usr/bin/env bash
# Signs in to the dashboard API and keeps the session cookie in ./cookies.txt.
#   CONSOLE=http://127.0.0.1:8089 USERNAME=admin PASSWORD=... ./login.sh
set -euo pipefail
: "${CONSOLE:=http://127.0.0.1:8089}" "${USERNAME:?set USERNAME}" "${PASSWORD:?set PASSWORD}"
body=$(jq -n --arg u "$USERNAME" --arg p "$PASSWORD" '{username: $u, password: $p}')
curl -fsS -c cookies.txt -H 'content-type: application/json' -d "$body" \
    "$CONSOLE/api/v1/console/login" | jq .
