/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bearer-authenticated command and task routes (reference §1.6, §1.7): echo (not persisted),
 * terminal (a sync terminalexec task), and the task API with its sync/async/auto modes,
 * request_id idempotency per account (a reused id with a different input is 409), GET and a
 * cancel that stops the running process. Handlers run on pool threads; a handler that waits for a
 * task hands the request to the task waiter (tasks.c) and returns OBX_ROUTE_ASYNC.
 */
#include "api.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"

#define WAIT_DEFAULT_MS 1500
#define WAIT_MAX_MS 60000
#define TASK_TIMEOUT_DEFAULT_MS 60000
#define TASK_TIMEOUT_MAX_MS 600000
#define ECHO_TIMEOUT_DEFAULT_MS 5000
#define ECHO_TIMEOUT_MAX_MS 60000

#define MSG_NO_WORKER "no online worker supports requested capability"
#define MSG_NO_CAPACITY "no online worker capacity for requested capability"

enum mode {
    MODE_AUTO,
    MODE_SYNC,
    MODE_ASYNC,
};

/* An integer member: absent or null gives def; another type is -EINVAL. */
static int body_int(json_t *obj, const char *key, int64_t def, int64_t *ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    if (!json_is_integer(v))
        return -EINVAL;
    *ret = json_integer_value(v);
    return 0;
}

static int body_bool(json_t *obj, const char *key, bool *ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *ret = false;
        return 0;
    }
    if (!json_is_boolean(v))
        return -EINVAL;
    *ret = json_is_true(v);
    return 0;
}

/* "network": false (or absent), true or "allowlist", as the worker takes it; *ret is what goes
 * into the payload (NULL for false). */
static int body_network(json_t *obj, json_t **ret)
{
    json_t *v = json_object_get(obj, "network");
    *ret = NULL;
    if (!v || json_is_null(v) || json_is_false(v))
        return 0;
    if (json_is_true(v) || (json_is_string(v) && obx_streq(json_string_value(v), "allowlist"))) {
        *ret = v;
        return 0;
    }
    return -EINVAL;
}

/* The task snapshot of §1.7. The input is never echoed back. */
static json_t *snapshot_json(const struct obx_task *t)
{
    json_t *j = json_object();
    json_object_set_new(j, "task_id", json_string(t->id));
    if (t->request_id[0])
        json_object_set_new(j, "request_id", json_string(t->request_id));
    if (t->command_id[0])
        json_object_set_new(j, "command_id", json_string(t->command_id));
    json_object_set_new(j, "capability", json_string(t->capability));
    json_object_set_new(j, "status", json_string(t->status));
    if (t->result_json && t->result_json[0]) {
        json_t *res = obx_json_parse(t->result_json, strlen(t->result_json), NULL);
        json_object_set_new(j, "result", res ? res : json_pack("{s:s}", "message", t->result_json));
    }
    if (t->error_code[0] || (t->error_message && t->error_message[0])) {
        json_t *e = json_object();
        if (t->error_code[0])
            json_object_set_new(e, "code", json_string(t->error_code));
        json_object_set_new(e, "message", json_string(t->error_message ? t->error_message : ""));
        json_object_set_new(j, "error", e);
    }
    json_object_set_new(j, "created_at", obx_route_time(t->created_ms));
    json_object_set_new(j, "updated_at", obx_route_time(t->updated_ms));
    json_object_set_new(j, "deadline_at", obx_route_time(t->deadline_ms));
    if (t->completed_ms > 0)
        json_object_set_new(j, "completed_at", obx_route_time(t->completed_ms));
    return j;
}

/* The submit response: 202 with status_url while live, else the terminal status mapping. */
static void respond_task(struct obx_http_request *req, const struct obx_task *t)
{
    if (!t) {
        obx_route_fail(req, OBX_ERR_BAD_GATEWAY, "failed to submit task");
        return;
    }
    json_t *snap = snapshot_json(t);
    int status = 502;
    if (!obx_task_status_terminal(t->status)) {
        json_object_set_new(snap, "status_url", json_sprintf("/api/v1/tasks/%s", t->id));
        status = 202;
    } else if (obx_streq(t->status, "succeeded")) {
        status = 200;
    } else if (obx_streq(t->status, "timeout")) {
        status = 504;
    } else if (obx_streq(t->status, "canceled")) {
        status = 409;
    } else {
        status = obx_error_http_status_at(t->error_code, OBX_ERROR_AT_SNAPSHOT, 502);
    }
    obx_http_respond_json(req, status, snap);
}

/* The original's fixed texts for the two availability errors; anything else says itself. */
static const char *fixed_message(const char *code, const char *msg)
{
    if (obx_streq(code, "no_worker"))
        return MSG_NO_WORKER;
    if (obx_streq(code, "no_capacity"))
        return MSG_NO_CAPACITY;
    return msg;
}

/* POST /api/v1/commands/terminal: the task mapped to the command's own statuses (§1.6). */
static void respond_terminal(struct obx_http_request *req, const struct obx_task *t)
{
    if (!t || !obx_task_status_terminal(t->status) || obx_streq(t->status, "timeout")) {
        obx_route_fail(req, t ? OBX_ERR_TIMEOUT : OBX_ERR_BAD_GATEWAY,
                       t ? "task timed out" : "failed to submit task");
        return;
    }
    if (obx_streq(t->status, "canceled")) {
        obx_route_fail(req, OBX_ERR_CONFLICT, "task canceled");
        return;
    }
    if (obx_streq(t->status, "succeeded")) {
        _cleanup_json_ json_t *res = obx_json_parse(t->result_json, strlen(t->result_json), NULL);
        if (!json_is_object(res) || !json_is_string(json_object_get(res, "session_id"))) {
            obx_route_fail(req, OBX_ERR_BAD_GATEWAY, "invalid terminalExec result payload");
            return;
        }
        json_t *out = json_object();
        json_object_set_new(out, "session_id",
                            json_string(obx_json_get_str(res, "session_id", "")));
        json_object_set_new(out, "created", json_boolean(obx_json_get_bool(res, "created", false)));
        json_object_set_new(out, "stdout", json_string(obx_json_get_str(res, "stdout", "")));
        json_object_set_new(out, "stderr", json_string(obx_json_get_str(res, "stderr", "")));
        json_object_set_new(out, "exit_code", json_integer(obx_json_get_int(res, "exit_code", 0)));
        json_object_set_new(out, "stdout_truncated",
                            json_boolean(obx_json_get_bool(res, "stdout_truncated", false)));
        json_object_set_new(out, "stderr_truncated",
                            json_boolean(obx_json_get_bool(res, "stderr_truncated", false)));
        json_object_set_new(out, "lease_expires_unix_ms",
                            json_integer(obx_json_get_int(res, "lease_expires_unix_ms", 0)));
        obx_http_respond_json(req, 200, out);
        return;
    }
    if (!obx_streq(t->status, "failed")) {
        obx_route_fail(req, OBX_ERR_BAD_GATEWAY, "unexpected task status");
        return;
    }
    const char *msg =
        t->error_message && t->error_message[0] ? t->error_message : "terminal command failed";
    obx_http_respond_error(req, obx_error_http_status_at(t->error_code, OBX_ERROR_AT_TASK, 502),
                           fixed_message(t->error_code, msg));
}

struct submit {
    char *capability; /* trimmed, lower-case; owned */
    json_t *input;    /* borrowed; NULL = {} */
    enum mode mode;
    int64_t wait_ms, timeout_ms;
    char *request_id; /* trimmed; owned */
};

static void submit_done(struct submit *s)
{
    free(s->capability);
    free(s->request_id);
}

/* Parse → validate → act: the steps of a submit below, then submit() that runs them. */

/* What a step left to do: answer with the task in t_id, or nothing (it already answered). */
enum step {
    STEP_NEW,      /* no earlier task: create one */
    STEP_TASK,     /* the task is there (created, or an earlier one replayed): answer with it */
    STEP_ANSWERED, /* the request was answered (an error) */
};

/* §1.7 steps 5-6: what a submit must hold before anything is looked up; answers otherwise. */
/* Capabilities the console runs for its own routes, on a session id it has scoped to the
 * caller's account already: a task names its session as the caller wrote it, which for these
 * would reach any account's session. */
static const char *const internal_caps[][2] = {
    {"terminalfiles", "/api/v1/sessions/{id}/files"},
    {"terminalsession", "/api/v1/sessions"},
    {"terminalpty", "the dashboard's live terminal"},
};

static bool submit_valid(struct obx_http_request *req, const struct submit *s)
{
    if (!s->capability[0]) {
        obx_route_fail(req, OBX_ERR_BAD_REQUEST, "capability is required");
        return false;
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(internal_caps); i++)
        if (obx_streq(s->capability, internal_caps[i][0])) {
            _cleanup_free_ char *msg = obx_xasprintf("capability %s is not run as a task: use %s",
                                                     s->capability, internal_caps[i][1]);
            obx_route_fail(req, OBX_ERR_BAD_REQUEST, msg);
            return false;
        }
    if (strlen(s->capability) >= sizeof(((struct obx_task *)0)->capability)) {
        obx_route_fail(req, OBX_ERR_UNAVAILABLE, MSG_NO_WORKER);
        return false;
    }
    if (strlen(s->request_id) > OBX_TASK_REQUEST_ID_MAX) {
        obx_route_fail(req, OBX_ERR_BAD_REQUEST, "request_id length must be <= 256");
        return false;
    }
    return true;
}

/* The idempotency hash: of what the caller sent, before scoping adds a generated session id. */
/* The task an earlier submit with the same request_id created: replayed when its input was the
 * same (its id into t_id), else 409. */
static enum step find_earlier(struct obx_route_ctx *ctx, const struct submit *s, const char *hash,
                              char *t_id, size_t t_id_size)
{
    struct obx_task found = {0};
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_task_by_request(ctx->console->store, ctx->account.id, s->request_id, &found,
                                      &err);
    if (r == -ENOENT)
        return STEP_NEW;
    if (r < 0) {
        obx_err("task lookup: %s", err.message);
        obx_route_fail(ctx->req, OBX_ERR_BAD_GATEWAY, "failed to submit task");
        return STEP_ANSWERED;
    }
    /* A task the original console made has no input hash: it is replayed as the original
     * replays every earlier task. */
    bool same = obx_streq(found.input_hash, hash) || !found.input_hash[0];
    if (same)
        snprintf(t_id, t_id_size, "%s", found.id);
    else
        obx_route_fail(ctx->req, OBX_ERR_CONFLICT,
                       "request_id already used with a different input");
    obx_task_done(&found);
    return same ? STEP_TASK : STEP_ANSWERED;
}

/* §1.7 steps 7-8: a worker slot, the task row, then the call. A row another console wrote first
 * for the same request_id is replayed as find_earlier() does. */
static enum step create(struct obx_route_ctx *ctx, const struct submit *s, json_t *payload,
                        const char *hash, struct obx_task *t)
{
    struct obx_console *c = ctx->console;
    struct obx_error err = OBX_ERROR_INIT;
    snprintf(t->owner_id, sizeof(t->owner_id), "%s", ctx->account.id);
    snprintf(t->request_id, sizeof(t->request_id), "%s", s->request_id);
    snprintf(t->capability, sizeof(t->capability), "%s", s->capability);
    snprintf(t->input_hash, sizeof(t->input_hash), "%s", hash);
    int r = obx_tasks_create(c->tasks, t, payload, (uint64_t)s->timeout_ms, NULL, &err);
    if (r == 0)
        return STEP_TASK;
    if (!t->id[0]) { /* no worker took it */
        obx_http_respond_error(ctx->req, obx_error_http_status_at(err.code, OBX_ERROR_AT_TASK, 503),
                               fixed_message(err.code, err.message));
        return STEP_ANSWERED;
    }
    if (r == -EEXIST && s->request_id[0]) {
        enum step earlier = find_earlier(ctx, s, hash, t->id, sizeof(t->id));
        if (earlier != STEP_NEW)
            return earlier;
    }
    obx_err("task insert: %s", err.message);
    if (r == -ENOSPC)
        obx_route_store_error(ctx, r, "failed to submit task");
    else
        obx_route_fail(ctx->req, OBX_ERR_BAD_GATEWAY, "failed to submit task");
    return STEP_ANSWERED;
}

/* async: the task as it is now; sync and auto: when it ends (auto: or after wait_ms). */
static enum obx_route_result answer(struct obx_route_ctx *ctx, const struct submit *s,
                                    const char *t_id, obx_tasks_respond_fn respond)
{
    struct obx_console *c = ctx->console;
    if (s->mode != MODE_ASYNC) {
        obx_tasks_wait(c->tasks, t_id, ctx->req, s->mode == MODE_AUTO ? (uint64_t)s->wait_ms : 0,
                       respond);
        return OBX_ROUTE_ASYNC;
    }
    struct obx_task found = {0};
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_task_get(c->store, t_id, &found, &err);
    respond(ctx->req, r < 0 ? NULL : &found);
    if (r >= 0)
        obx_task_done(&found);
    return OBX_ROUTE_DONE;
}

/* Validates, scopes and creates the task (§1.7 steps 5-8, idempotency, availability), then
 * answers or waits according to the mode. A request_id is held in memory from the lookup to the
 * insert, so two submits with it cannot both create a task. */
static enum obx_route_result submit(struct obx_route_ctx *ctx, struct submit *s,
                                    obx_tasks_respond_fn respond)
{
    struct obx_console *c = ctx->console;
    if (!submit_valid(ctx->req, s))
        return OBX_ROUTE_DONE;
    _cleanup_json_ json_t *empty = json_object();
    json_t *input = s->input && !json_is_null(s->input) ? s->input : empty;
    char hash[65];
    obx_task_input_hash(c->cfg->hash_key, s->capability, input, hash);
    _cleanup_json_ json_t *payload = obx_task_scope_input(s->capability, input, ctx->account.id);
    if (s->mode == MODE_AUTO && s->wait_ms > s->timeout_ms)
        s->wait_ms = s->timeout_ms;
    obx_tasks_maybe_prune(c->tasks);

    bool reserved = s->request_id[0] != '\0';
    if (reserved && !obx_tasks_reserve(c->tasks, ctx->account.id, s->request_id)) {
        obx_route_fail(ctx->req, OBX_ERR_CONFLICT, "task request already in progress");
        return OBX_ROUTE_DONE;
    }
    struct obx_task t = {0};
    enum step step = reserved ? find_earlier(ctx, s, hash, t.id, sizeof(t.id)) : STEP_NEW;
    if (step == STEP_NEW)
        step = create(ctx, s, payload, hash, &t);
    if (reserved)
        obx_tasks_unreserve(c->tasks, ctx->account.id, s->request_id);
    if (step == STEP_ANSWERED)
        return OBX_ROUTE_DONE;
    return answer(ctx, s, t.id, respond);
}

static enum obx_route_result submit_task(struct obx_route_ctx *ctx)
{
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    const char *cap, *mode, *rid;
    int64_t wait, timeout;
    if (obx_route_body_string(body, "capability", "", &cap) < 0 ||
        obx_route_body_string(body, "mode", "", &mode) < 0 ||
        obx_route_body_string(body, "request_id", "", &rid) < 0 ||
        body_int(body, "wait_ms", WAIT_DEFAULT_MS, &wait) < 0 ||
        body_int(body, "timeout_ms", TASK_TIMEOUT_DEFAULT_MS, &timeout) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return OBX_ROUTE_DONE;
    }
    if (wait < 1 || wait > WAIT_MAX_MS) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "wait_ms must be between 1 and 60000");
        return OBX_ROUTE_DONE;
    }
    if (timeout < 1 || timeout > TASK_TIMEOUT_MAX_MS) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "timeout_ms must be between 1 and 600000");
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *mt = obx_console_trim(mode);
    _cleanup_free_ char *ml = obx_console_lower(mt);
    struct submit s = {.wait_ms = wait, .timeout_ms = timeout};
    if (!ml[0] || obx_streq(ml, "auto")) {
        s.mode = MODE_AUTO;
    } else if (obx_streq(ml, "sync")) {
        s.mode = MODE_SYNC;
    } else if (obx_streq(ml, "async")) {
        s.mode = MODE_ASYNC;
    } else {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "mode must be one of sync|async|auto");
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *ct = obx_console_trim(cap);
    s.capability = obx_console_lower(ct);
    s.request_id = obx_console_trim(rid);
    s.input = json_object_get(body, "input");
    enum obx_route_result res = submit(ctx, &s, respond_task);
    submit_done(&s);
    return res;
}

static enum obx_route_result terminal_command(struct obx_route_ctx *ctx)
{
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    const char *command, *sid, *rid;
    int64_t timeout, lease;
    bool create;
    json_t *jlease = json_object_get(body, "lease_ttl_sec");
    if (obx_route_body_string(body, "command", "", &command) < 0 ||
        obx_route_body_string(body, "session_id", "", &sid) < 0 ||
        obx_route_body_string(body, "request_id", "", &rid) < 0 ||
        body_bool(body, "create_if_missing", &create) < 0 ||
        body_int(body, "lease_ttl_sec", 0, &lease) < 0 ||
        body_int(body, "timeout_ms", TASK_TIMEOUT_DEFAULT_MS, &timeout) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return OBX_ROUTE_DONE;
    }
    if (obx_str_blank(command)) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "command is required");
        return OBX_ROUTE_DONE;
    }
    if (timeout < 1 || timeout > TASK_TIMEOUT_MAX_MS) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "timeout_ms must be between 1 and 600000");
        return OBX_ROUTE_DONE;
    }
    json_t *network;
    if (body_network(body, &network) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST,
                       "network must be true, false or \"allowlist\"");
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *session = obx_console_trim(sid);
    _cleanup_json_ json_t *input = json_pack("{s:s}", "command", command);
    if (session[0])
        json_object_set_new(input, "session_id", json_string(session));
    if (create)
        json_object_set_new(input, "create_if_missing", json_true());
    if (jlease && !json_is_null(jlease))
        json_object_set_new(input, "lease_ttl_sec", json_integer(lease));
    if (network)
        json_object_set(input, "network", network);
    struct submit s = {
        .capability = obx_xstrdup("terminalexec"),
        .input = input,
        .mode = MODE_SYNC,
        .wait_ms = WAIT_DEFAULT_MS,
        .timeout_ms = timeout,
        .request_id = obx_console_trim(rid),
    };
    enum obx_route_result res = submit(ctx, &s, respond_terminal);
    submit_done(&s);
    return res;
}

/* The caller's task or -ENOENT (another account's task is "not found" too). */
static int own_task(struct obx_route_ctx *ctx, struct obx_task *t)
{
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_task_get(ctx->console->store, ctx->params[0], t, &err);
    if (r == 0 && !obx_streq(t->owner_id, ctx->account.id)) {
        obx_task_done(t);
        return -ENOENT;
    }
    if (r < 0 && r != -ENOENT)
        obx_err("task lookup: %s", err.message);
    return r;
}

static enum obx_route_result get_task(struct obx_route_ctx *ctx)
{
    struct obx_task t;
    int r = own_task(ctx, &t);
    if (r == -ENOENT) {
        obx_route_fail(ctx->req, OBX_ERR_NOT_FOUND, "task not found");
    } else if (r < 0) {
        obx_route_fail(ctx->req, OBX_ERR_INTERNAL, "failed to get task");
    } else {
        obx_http_respond_json(ctx->req, 200, snapshot_json(&t));
        obx_task_done(&t);
    }
    return OBX_ROUTE_DONE;
}

static enum obx_route_result cancel_task(struct obx_route_ctx *ctx)
{
    struct obx_task t;
    int r = own_task(ctx, &t);
    if (r == -ENOENT) {
        obx_route_fail(ctx->req, OBX_ERR_NOT_FOUND, "task not found");
        return OBX_ROUTE_DONE;
    }
    if (r < 0) {
        obx_route_store_error(ctx, r, "failed to cancel task");
        return OBX_ROUTE_DONE;
    }
    int status = 409;
    if (!obx_task_status_terminal(t.status)) {
        struct obx_error err = OBX_ERROR_INIT;
        r = obx_tasks_cancel(ctx->console->tasks, t.id, &err);
        obx_task_done(&t);
        if (r >= 0)
            r = own_task(ctx, &t);
        if (r < 0) {
            obx_err("cancel task: %s", err.message);
            obx_route_store_error(ctx, r, "failed to cancel task");
            return OBX_ROUTE_DONE;
        }
        if (obx_streq(t.status, "canceled"))
            status = 200;
    }
    obx_http_respond_json(ctx->req, status, snapshot_json(&t));
    obx_task_done(&t);
    return OBX_ROUTE_DONE;
}

struct echo_job {
    struct obx_http_request *req;
    char account[40];
    struct obx_call call;
};

/* The worker's answer, on a registry thread. */
static void echo_done(void *userdata, int r, json_t *result, const struct obx_error *err)
{
    struct echo_job *j = userdata;
    if (r >= 0) {
        const char *m = obx_json_get_str(result, "message", NULL);
        if (m)
            obx_http_respond_json(j->req, 200, json_pack("{s:s}", "message", m));
        else
            obx_route_fail(j->req, OBX_ERR_BAD_GATEWAY,
                           "empty_result: worker returned empty echo result");
    } else if (obx_streq(err->code, OBX_ERR_DEADLINE_EXCEEDED)) {
        obx_route_fail(j->req, OBX_ERR_TIMEOUT, "echo command timed out");
    } else if (err->code[0] || err->message[0]) {
        char buf[1200];
        obx_route_fail(j->req, OBX_ERR_BAD_GATEWAY, obx_error_text(err, buf, sizeof(buf)));
    } else {
        obx_route_fail(j->req, OBX_ERR_BAD_GATEWAY, "failed to execute echo command");
    }
    json_decref(result);
    obx_http_request_complete(j->req);
    obx_call_done(&j->call);
    free(j);
}

static enum obx_route_result echo_command(struct obx_route_ctx *ctx)
{
    struct obx_console *c = ctx->console;
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    const char *message;
    int64_t timeout;
    if (obx_route_body_string(body, "message", "", &message) < 0 ||
        body_int(body, "timeout_ms", ECHO_TIMEOUT_DEFAULT_MS, &timeout) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return OBX_ROUTE_DONE;
    }
    if (obx_str_blank(message)) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "message is required");
        return OBX_ROUTE_DONE;
    }
    if (timeout < 1 || timeout > ECHO_TIMEOUT_MAX_MS) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "timeout_ms must be between 1 and 60000");
        return OBX_ROUTE_DONE;
    }
    _cleanup_json_ json_t *payload = json_pack("{s:s}", "message", message);
    struct obx_dispatch_slot *slot = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_dispatch_acquire(c->dispatch, "echo", payload, &slot, &err) < 0) {
        obx_http_respond_error(ctx->req, obx_error_http_status_at(err.code, OBX_ERROR_AT_TASK, 503),
                               obx_streq(err.code, "no_worker")
                                   ? "no online worker supports echo"
                                   : fixed_message(err.code, err.message));
        return OBX_ROUTE_DONE;
    }
    struct echo_job *j = obx_xcalloc(1, sizeof(*j));
    j->req = ctx->req;
    snprintf(j->account, sizeof(j->account), "%s", ctx->account.id);
    obx_call_init(&j->call);
    j->call.account = j->account;
    j->call.deadline = obx_now_ms() + (uint64_t)timeout;
    obx_dispatch_start(slot, payload, &j->call, echo_done, j);
    return OBX_ROUTE_ASYNC;
}

/* GET /api/v1/tasks?page&page_size&status: the account's tasks, newest first. */
static enum obx_route_result list_tasks(struct obx_route_ctx *ctx)
{
    int64_t page, page_size, offset;
    if (!obx_route_page(ctx, &page, &page_size, &offset))
        return OBX_ROUTE_DONE;
    const char *status = obx_http_request_query(ctx->req, "status");
    static const char *const statuses[] = {"all",       "queued", "dispatched", "running",
                                           "succeeded", "failed", "timeout",    "canceled"};
    bool known = !status;
    for (size_t i = 0; status && i < OBX_ARRAY_SIZE(statuses); i++)
        known = known || obx_streq(status, statuses[i]);
    if (!known) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST,
                       "status must be one of "
                       "all|queued|dispatched|running|succeeded|failed|timeout|canceled");
        return OBX_ROUTE_DONE;
    }
    struct obx_task *v = NULL;
    size_t n = 0;
    int64_t total = 0;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_task_list(ctx->console->store, ctx->account.id,
                                status && !obx_streq(status, "all") ? status : NULL, page_size,
                                offset, &v, &n, &total, &err);
    if (r < 0) {
        obx_err("list tasks: %s", err.message);
        obx_route_fail(ctx->req, OBX_ERR_INTERNAL, "failed to list tasks");
        return OBX_ROUTE_DONE;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(items, snapshot_json(&v[i]));
        obx_task_done(&v[i]);
    }
    free(v);
    obx_http_respond_json(ctx->req, 200,
                          json_pack("{s:o, s:I, s:I, s:I}", "items", items, "total",
                                    (json_int_t)total, "page", (json_int_t)page, "page_size",
                                    (json_int_t)page_size));
    return OBX_ROUTE_DONE;
}

const struct obx_route obx_task_routes[] = {
    /* The dashboard's Tasks page lists them with its cookie; scripts with a token. */
    {OBX_HTTP_GET, "/api/v1/tasks", OBX_ROUTE_AUTH_ACCOUNT, list_tasks},
    {OBX_HTTP_POST, "/api/v1/commands/echo", OBX_ROUTE_AUTH_BEARER, echo_command},
    {OBX_HTTP_POST, "/api/v1/commands/terminal", OBX_ROUTE_AUTH_BEARER, terminal_command},
    {OBX_HTTP_POST, "/api/v1/tasks", OBX_ROUTE_AUTH_BEARER, submit_task},
    {OBX_HTTP_GET, "/api/v1/tasks/:task_id", OBX_ROUTE_AUTH_ACCOUNT, get_task},
    {OBX_HTTP_POST, "/api/v1/tasks/:task_id/cancel", OBX_ROUTE_AUTH_ACCOUNT, cancel_task},
};
const size_t obx_task_routes_n = OBX_ARRAY_SIZE(obx_task_routes);
