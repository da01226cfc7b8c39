#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Adds a console's /mcp endpoint to Claude Code (MCP over Streamable HTTP). ONLYBOXES_TOKEN is an API
# token made in the dashboard or with POST /api/v1/console/tokens; ONLYBOXES_CONSOLE the console's
# base URL. --scope user makes it available in every project (default: this project only).
set -eu
: "${ONLYBOXES_TOKEN:?set ONLYBOXES_TOKEN to a console API token}"
console="${ONLYBOXES_CONSOLE:-http://127.0.0.1:8089}"
exec claude mcp add --transport http onlyboxes "$console/mcp" \
    --header "Authorization: Bearer $ONLYBOXES_TOKEN" "$@"
