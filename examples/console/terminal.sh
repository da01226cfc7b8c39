#!/usr/bin/env bash
# Two commands in one terminal session: the second sees the first one's working directory.
#   ONLYBOXES_TOKEN=obx_... ./terminal.sh
set -euo pipefail
: "${CONSOLE:=http://127.0.0.1:8089}" "${ONLYBOXES_TOKEN:?set ONLYBOXES_TOKEN}"
auth=(-H "Authorization: Bearer $ONLYBOXES_TOKEN" -H 'content-type: application/json')
first=$(curl -fsS "${auth[@]}" "$CONSOLE/api/v1/commands/terminal" -d '{"command":"mkdir -p demo && cd demo"}')
sid=$(jq -r .session_id <<<"$first")
curl -fsS "${auth[@]}" "$CONSOLE/api/v1/commands/terminal" \
    -d "$(jq -n --arg s "$sid" '{command: "pwd", session_id: $s}')" | jq .
