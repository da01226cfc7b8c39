/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tasks of /mcp (the io.modelcontextprotocol/tasks extension) are the console's own tasks:
 * a tools/call that becomes a task is a row of the task table like one POSTed to /api/v1/tasks,
 * read back with GET /api/v1/tasks/{id} and canceled with its cancel route, kept for the
 * retention period, and still readable after a console restart; tasks/get and tasks/cancel find
 * a REST task of the same account as well. The MCP core calls these functions on its own threads.
 */
#include "api.h"

#include "common/clock.h"
#include "common/log.h"
#include "mcp/mcp.h"

#define MSG_NO_CAPACITY "no online worker capacity for requested capability"

static int task_start(void *userdata, const char *account, const char *capability, json_t *payload,
                      uint64_t timeout_ms, const struct obx_mcp_task_watch *watch, char id[64],
                      struct obx_error *err)
{
    struct obx_console *c = userdata;
    struct obx_task t = {0};
    snprintf(t.owner_id, sizeof(t.owner_id), "%s", account);
    snprintf(t.capability, sizeof(t.capability), "%s", capability);
    obx_task_input_hash(c->cfg->hash_key, capability, payload, t.input_hash);
    _cleanup_json_ json_t *scoped = obx_task_scope_input(capability, payload, account);
    struct obx_task_observer obs = {0};
    if (watch)
        obs =
            (struct obx_task_observer){watch->output, watch->log, watch->release, watch->userdata};
    int r = obx_tasks_create(c->tasks, &t, scoped, timeout_ms ? timeout_ms : 60000,
                             watch ? &obs : NULL, err);
    if (r < 0) {
        if (obx_streq(err->code, OBX_ERR_NO_CAPACITY) && !strstr(err->message, "session"))
            snprintf(err->message, sizeof(err->message), "%s", MSG_NO_CAPACITY);
        return r;
    }
    snprintf(id, 64, "%s", t.id);
    return 0;
}

static bool task_wait(void *userdata, const char *id, uint64_t ms)
{
    struct obx_console *c = userdata;
    return obx_tasks_wait_end(c->tasks, id, ms);
}

/* The task when it exists and (account given) is the account's. */
static int lookup(struct obx_console *c, const char *account, const char *id, struct obx_task *t)
{
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_task_get(c->store, id, t, &err);
    if (r == -ENOENT)
        return r;
    if (r < 0) {
        obx_err("mcp: reading task %s: %s", id, err.message);
        return r;
    }
    if (account && !obx_streq(t->owner_id, account)) {
        obx_task_done(t);
        return -ENOENT;
    }
    return 0;
}

static int task_get(void *userdata, const char *account, const char *id,
                    struct obx_mcp_task_info *ret)
{
    struct obx_console *c = userdata;
    struct obx_task t;
    int r = lookup(c, account, id, &t);
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    ret->created_ms = t.created_ms;
    ret->updated_ms = t.updated_ms;
    ret->ttl_ms = t.expires_ms > 0 ? t.expires_ms - t.created_ms
                                   : t.deadline_ms - t.created_ms +
                                         (int64_t)c->cfg->task_retention_days * 24 * 3600 * 1000;
    snprintf(ret->capability, sizeof(ret->capability), "%s", t.capability);
    const char *msg = t.error_message ? t.error_message : "";
    if (!obx_task_status_terminal(t.status)) {
        ret->status = OBX_MCP_TASK_WORKING;
    } else if (obx_streq(t.status, "succeeded")) {
        ret->status = OBX_MCP_TASK_COMPLETED;
        ret->result = obx_json_parse(t.result_json, strlen(t.result_json), NULL);
        if (!ret->result)
            obx_error_set(&ret->error, EINVAL, OBX_ERR_INTERNAL, "unreadable task result");
    } else if (obx_streq(t.status, "canceled")) {
        ret->status = OBX_MCP_TASK_CANCELLED;
        snprintf(ret->message, sizeof(ret->message), "%s", "the task was canceled");
    } else if (obx_streq(t.error_code, "console_restarted")) {
        /* Not the tool's doing: a JSON-RPC error of the server. */
        ret->status = OBX_MCP_TASK_FAILED;
        ret->rpc_code = obx_error_jsonrpc_code(OBX_ERR_INTERNAL);
        snprintf(ret->message, sizeof(ret->message), "%s", msg);
    } else {
        /* A timeout or a failure of the tool (worker_lost, session_not_found ...) reads as the
         * tool error a call that did not become a task would have answered. */
        ret->status = OBX_MCP_TASK_COMPLETED;
        const char *code = obx_streq(t.status, "timeout") ? OBX_ERR_DEADLINE_EXCEEDED
                           : t.error_code[0]              ? t.error_code
                                                          : OBX_ERR_EXECUTION_FAILED;
        obx_error_set(&ret->error, EIO, code, "%s", msg[0] ? msg : "the task failed");
        snprintf(ret->message, sizeof(ret->message), "%s", msg);
    }
    obx_task_done(&t);
    return 0;
}

static int task_cancel(void *userdata, const char *account, const char *id)
{
    struct obx_console *c = userdata;
    struct obx_task t;
    int r = lookup(c, account, id, &t);
    if (r < 0)
        return r;
    obx_task_done(&t);
    struct obx_error err = OBX_ERROR_INIT;
    r = obx_tasks_cancel(c->tasks, id, &err);
    if (r < 0)
        obx_err("mcp: canceling task %s: %s", id, err.message);
    return 0; /* canceled now, or it had ended: acknowledged either way */
}

void obx_console_mcp_task_backend(struct obx_console *c, struct obx_mcp_task_backend *ret)
{
    *ret = (struct obx_mcp_task_backend){
        .start = task_start,
        .wait = task_wait,
        .get = task_get,
        .cancel = task_cancel,
        .userdata = c,
    };
}
