#!/usr/bin/env bash
# Runs Python as an async task and polls until it ends.
#   ONLYBOXES_TOKEN=obx_... ./run-task.sh 'print(6*7)'
set -euo pipefail
: "${CONSOLE:=http://127.0.0.1:8089}" "${ONLYBOXES_TOKEN:?set ONLYBOXES_TOKEN}"
code=${1:-print("hello from a box")}
auth=(-H "Authorization: Bearer $ONLYBOXES_TOKEN" -H 'content-type: application/json')
task=$(curl -sS "${auth[@]}" "$CONSOLE/api/v1/tasks" \
    -d "$(jq -n --arg c "$code" '{capability: "pythonExec", mode: "async", input: {code: $c}}')")
id=$(jq -r .task_id <<<"$task")
echo "task $id: $(jq -r .status <<<"$task")" >&2
while :; do
    task=$(curl -sS "${auth[@]}" "$CONSOLE/api/v1/tasks/$id")
    case $(jq -r .status <<<"$task") in
    queued | dispatched | running) sleep 0.5 ;;
    *) break ;;
    esac
done
jq . <<<"$task"
