/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One tools/call: its thread, the executor call, the response, and what the call sends while it
 * runs (progress notifications with output chunks, log messages). Locking as in server.c.
 */
#include "session.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/utf8.h"

void obx_mcp_call_free(struct obx_mcp_call *c)
{
    if (!c)
        return;
    json_decref(c->id);
    json_decref(c->payload);
    json_decref(c->progress_token);
    obx_call_done(&c->call);
    free(c);
}

enum obx_mcp_version obx_mcp_call_version(struct obx_mcp_call *c)
{
    return c->version;
}

const json_t *obx_mcp_call_args(struct obx_mcp_call *c)
{
    return c->payload;
}

void obx_mcp_call_fail(struct obx_mcp_call *c, int code, const char *message)
{
    c->rpc_code = code;
    snprintf(c->rpc_message, sizeof(c->rpc_message), "%s", message);
}

/* The lowest level the client wants log messages of, or -1. */
static int log_min(struct obx_mcp_call *c)
{
    if (!c->s)
        return -1;
    if (c->modern)
        return c->log_level;
    return __atomic_load_n(&c->s->log_level, __ATOMIC_ACQUIRE);
}

bool obx_mcp_call_sleep(struct obx_mcp_call *c, unsigned ms)
{
    uint64_t end = obx_now_ms() + ms;
    for (;;) {
        if (obx_call_is_cancelled(&c->call))
            return false;
        uint64_t now = obx_now_ms();
        if (now >= end)
            return true;
        usleep((useconds_t)OBX_MIN(end - now, 10) * 1000);
    }
}

/* Logs to the client through the call's sink, until the call was answered (a cancelled call
 * still says that it stopped). */
static void call_log(struct obx_mcp_call *c, enum obx_mcp_log_level level, const char *fmt, ...)
    OBX_PRINTF(3, 4);
static void call_log(struct obx_mcp_call *c, enum obx_mcp_log_level level, const char *fmt, ...)
{
    if (!c->s && c->watch && c->watch->message) {
        va_list aq;
        va_start(aq, fmt);
        _cleanup_free_ char *text = obx_xvasprintf(fmt, aq);
        va_end(aq);
        c->watch->message(c->watch->userdata, (int)level, text);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    _cleanup_json_ json_t *msg = obx_mcp_log_message(log_min(c), level, fmt, ap);
    va_end(ap);
    if (!msg)
        return;
    pthread_mutex_lock(&c->s->send_lock);
    if (!c->responded)
        obx_mcp_send_locked(c->s, c->sink, msg, false);
    pthread_mutex_unlock(&c->s->send_lock);
}

void obx_mcp_call_log(struct obx_mcp_call *c, enum obx_mcp_log_level level, const char *text)
{
    call_log(c, level, "%s", text);
}

/* Sends notifications/progress with params (borrowed) unless the call was answered or dropped:
 * progress never follows the response. The caller holds send_lock. */
static void progress_send_locked(struct obx_mcp_call *c, json_t *params)
{
    if (c->responded || c->dropped)
        return;
    json_t *n = obx_rpc_notification("notifications/progress", json_incref(params));
    obx_mcp_send_locked(c->s, c->sink, n, false);
    json_decref(n);
}

static json_t *number(double d)
{
    if (d >= -9.0e15 && d <= 9.0e15 && (double)(json_int_t)d == d)
        return json_integer((json_int_t)d);
    return json_real(d);
}

void obx_mcp_call_progress(struct obx_mcp_call *c, double progress, double total,
                           const char *message)
{
    if (!c->s && c->watch && c->watch->progress) {
        c->watch->progress(c->watch->userdata, progress, total, message);
        return;
    }
    if (!c->progress_token || !c->s)
        return;
    enum obx_mcp_version v = c->version;
    _cleanup_json_ json_t *params =
        json_pack("{sOso}", "progressToken", c->progress_token, "progress", number(progress));
    if (total >= 0)
        json_object_set_new(params, "total", number(total));
    if (message && v >= OBX_MCP_V2025_03_26)
        json_object_set_new(params, "message", obx_json_string_bytes(message, strlen(message)));
    pthread_mutex_lock(&c->s->send_lock);
    progress_send_locked(c, params);
    pthread_mutex_unlock(&c->s->send_lock);
}

/* call.on_output: each chunk becomes one progress notification whose progress is the number of
 * output bytes so far and whose message is the chunk as text, capped. */
static void call_on_output(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    struct obx_mcp_call *c = userdata;
    struct obx_mcp_session *s = c->s;
    if (len == 0)
        return;
    int si = stream == OBX_STREAM_STDERR ? 1 : 0;
    bool with_text = c->version >= OBX_MCP_V2025_03_26;

    pthread_mutex_lock(&s->send_lock);
    if (c->responded || c->dropped || s->muted) {
        pthread_mutex_unlock(&s->send_lock);
        return;
    }
    c->progress_bytes += len;
    json_t *params = json_pack("{sOsI}", "progressToken", c->progress_token, "progress",
                               (json_int_t)c->progress_bytes);
    if (with_text) {
        size_t n = c->carry_len[si] + len;
        _cleanup_free_ char *joined = obx_xmalloc(n);
        memcpy(joined, c->carry[si], c->carry_len[si]);
        memcpy(joined + c->carry_len[si], data, len);
        size_t tail = obx_utf8_incomplete_tail(joined, n);
        memcpy(c->carry[si], joined + n - tail, tail);
        c->carry_len[si] = tail;
        size_t tlen = 0;
        _cleanup_free_ char *text = obx_utf8_sanitize(joined, n - tail, &tlen);
        tlen = obx_utf8_cut(text, tlen, OBX_MCP_PROGRESS_MAX_TEXT);
        if (tlen > 0)
            json_object_set_new(params, "message", json_stringn_nocheck(text, tlen));
    }
    progress_send_locked(c, params);
    pthread_mutex_unlock(&s->send_lock);
    json_decref(params);
}

/* call.on_log: what the executor says while the call waits for something slow (an image pull)
 * goes out as notifications/message (subject to logging/setLevel) and, when the client asked for
 * progress, as a progress message too, so the caller hears it either way. Progress then counts
 * output bytes plus these lines, which keeps it increasing. */
static void call_on_log(void *userdata, int level, const char *message)
{
    struct obx_mcp_call *c = userdata;
    static const enum obx_mcp_log_level map[] = {OBX_MCP_LOG_DEBUG, OBX_MCP_LOG_INFO,
                                                 OBX_MCP_LOG_WARNING, OBX_MCP_LOG_ERROR};
    size_t i = level >= 0 && (size_t)level < OBX_ARRAY_SIZE(map) ? (size_t)level : 1;
    call_log(c, map[i], "%s", message);
    if (!c->progress_token || !c->s)
        return;
    bool with_text = c->version >= OBX_MCP_V2025_03_26;
    pthread_mutex_lock(&c->s->send_lock);
    if (!c->s->muted) {
        c->progress_bytes++;
        json_t *params = json_pack("{sOsI}", "progressToken", c->progress_token, "progress",
                                   (json_int_t)c->progress_bytes);
        if (with_text)
            json_object_set_new(params, "message", obx_json_string_bytes(message, strlen(message)));
        progress_send_locked(c, params);
        json_decref(params);
    }
    pthread_mutex_unlock(&c->s->send_lock);
}

/* Sends the call's response (result stolen; NULL: the JSON-RPC error of obx_mcp_call_fail())
 * unless the client cancelled it, and finishes the call's share of its batch. */
static void call_reply(struct obx_mcp_call *c, json_t *result)
{
    struct obx_mcp_session *s = c->s;
    if (result && c->modern)
        obx_mcp_modern_result(result, c->srv->name, c->srv->version);
    pthread_mutex_lock(&s->send_lock);
    if (!c->dropped && !s->muted) {
        json_t *resp = result ? obx_rpc_result(c->id, result)
                              : obx_rpc_error(c->id, c->rpc_code, "%s", c->rpc_message);
        if (c->batch) {
            json_array_append_new(c->batch->responses, resp);
        } else {
            obx_mcp_send_locked(s, c->sink, resp, true);
            json_decref(resp);
        }
    } else {
        json_decref(result);
    }
    c->responded = true;
    if (c->batch)
        obx_mcp_batch_release_locked(s, TAKE_PTR(c->batch));
    obx_mcp_sink_release_locked(TAKE_PTR(c->sink));
    pthread_mutex_unlock(&s->send_lock);
}

static json_t *call_execute(struct obx_mcp_call *c)
{
    struct obx_executor *ex = c->srv->executor;
    const char *name = c->tool->def->name;
    if (!ex)
        return obx_mcp_result_error("%s: no executor configured", OBX_ERR_RUNTIME_UNAVAILABLE);

    call_log(c, OBX_MCP_LOG_DEBUG, "%s: started", name);
    _cleanup_json_ json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = ex->exec(ex, c->tool->def->capability, c->payload, &c->call, &res, &err);
    if (r < 0 || !res) {
        if (obx_call_is_cancelled(&c->call))
            call_log(c, OBX_MCP_LOG_NOTICE, "%s: cancelled", name);
        else if (obx_streq(err.code, OBX_ERR_DEADLINE_EXCEEDED))
            call_log(c, OBX_MCP_LOG_WARNING, "%s: timed out", name);
        else
            call_log(c, OBX_MCP_LOG_ERROR, "%s: failed (%s)", name,
                     err.code[0] ? err.code : "no code");
        if (!err.code[0])
            snprintf(err.code, sizeof(err.code), "%s", OBX_ERR_EXECUTION_FAILED);
        if (!err.message[0])
            snprintf(err.message, sizeof(err.message), "%s", "the call failed");
        char text[sizeof(err.code) + sizeof(err.message) + 4];
        return obx_mcp_result_error("%s", obx_error_text(&err, text, sizeof(text)));
    }
    call_log(c, OBX_MCP_LOG_DEBUG, "%s: finished", name);
    return c->tool->def->shape_result(c->tool, res, c->version);
}

json_t *obx_mcp_call_run(struct obx_mcp_call *c)
{
    if (!c->tool->def->run)
        return call_execute(c);
    json_t *r = c->tool->def->run(c);
    if (!r && !c->rpc_code)
        obx_mcp_call_fail(c, OBX_RPC_INTERNAL_ERROR, "internal error: the tool gave no result");
    return r;
}

/* While a call waits for the task it started, the task's output and log lines reach the call's
 * client as they would for a call run directly (progress notifications, log messages). Held by
 * the waiting call and by the task's backend; the call stops watching before it answers. */
struct relay {
    struct obx_mcp_task_watch watch;
    pthread_mutex_t lock;
    struct obx_mcp_call *watcher; /* NULL once the call answered */
    int refs;
};

static void relay_output(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    struct relay *r = userdata;
    pthread_mutex_lock(&r->lock);
    if (r->watcher && r->watcher->call.on_output)
        r->watcher->call.on_output(r->watcher->call.output_userdata, stream, data, len);
    pthread_mutex_unlock(&r->lock);
}

static void relay_log(void *userdata, int level, const char *message)
{
    struct relay *r = userdata;
    pthread_mutex_lock(&r->lock);
    if (r->watcher && r->watcher->call.on_log)
        r->watcher->call.on_log(r->watcher->call.log_userdata, level, message);
    pthread_mutex_unlock(&r->lock);
}

static void relay_progress(void *userdata, double progress, double total, const char *message)
{
    struct relay *r = userdata;
    pthread_mutex_lock(&r->lock);
    if (r->watcher)
        obx_mcp_call_progress(r->watcher, progress, total, message);
    pthread_mutex_unlock(&r->lock);
}

static void relay_message(void *userdata, int level, const char *text)
{
    struct relay *r = userdata;
    pthread_mutex_lock(&r->lock);
    if (r->watcher)
        call_log(r->watcher, (enum obx_mcp_log_level)level, "%s", text);
    pthread_mutex_unlock(&r->lock);
}

static void relay_release(void *userdata)
{
    struct relay *r = userdata;
    pthread_mutex_lock(&r->lock);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->lock);
    if (!last)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static struct relay *relay_new(struct obx_mcp_call *watcher)
{
    struct relay *r = obx_xcalloc(1, sizeof(*r));
    r->watch = (struct obx_mcp_task_watch){
        .output = relay_output,
        .log = relay_log,
        .release = relay_release,
        .userdata = r,
        .progress = relay_progress,
        .message = relay_message,
    };
    pthread_mutex_init(&r->lock, NULL);
    r->watcher = watcher;
    r->refs = 2; /* the call's and the backend's */
    return r;
}

/* The call answers: nothing more goes to it. */
static void relay_stop(struct relay *r)
{
    pthread_mutex_lock(&r->lock);
    r->watcher = NULL;
    pthread_mutex_unlock(&r->lock);
    relay_release(r);
}

/* The answer of a call that is turned into a task: the tool's result when the task ends within
 * the tool's patience, else the CreateTaskResult of the extension (the task runs on). NULL after
 * obx_mcp_call_fail(). */
static json_t *call_task(struct obx_mcp_call *c)
{
    struct obx_mcp_server *srv = c->srv;
    char id[64];
    struct obx_error err = OBX_ERROR_INIT;
    struct relay *relay = relay_new(c);
    if (obx_mcp_task_start(srv, c->call.account, c->tool, c->payload, c->timeout_ms, &relay->watch,
                           id, &err) < 0) {
        relay_release(relay); /* the backend's: it never took it */
        relay_stop(relay);
        char text[sizeof(err.code) + sizeof(err.message) + 4];
        return obx_mcp_result_error("%s", obx_error_text(&err, text, sizeof(text)));
    }
    int after = c->tool->def->task_after_ms;
    uint64_t patience = after == OBX_MCP_TASK_AT_ONCE ? 0
                        : after > 0                   ? (uint64_t)after
                                                      : (uint64_t)srv->task_after_ms;
    uint64_t end = obx_now_ms() + patience;
    bool ended = false;
    for (;;) {
        if (obx_call_is_cancelled(&c->call)) {
            relay_stop(relay);
            obx_mcp_task_cancel(srv, NULL, id);
            return obx_mcp_result_error("%s: the call was cancelled", OBX_ERR_CANCELED);
        }
        uint64_t now = obx_now_ms();
        if (ended || now >= end)
            break;
        ended = obx_mcp_task_wait(srv, id, OBX_MIN(end - now, 100));
    }
    relay_stop(relay);
    struct obx_mcp_task_info info;
    if (obx_mcp_task_get(srv, NULL, id, &info) < 0)
        return obx_mcp_result_error("%s: the task %s is gone", OBX_ERR_INTERNAL, id);
    json_t *r = NULL;
    /* A tool that is a task at once answers with the task even when it has already ended (a
     * fast one can, on another thread, before this reads it): the client asks tasks/result. */
    if (info.status == OBX_MCP_TASK_WORKING || after == OBX_MCP_TASK_AT_ONCE) {
        r = obx_mcp_task_json(srv, id, &info, false);
        json_object_set_new(r, "resultType", json_string("task"));
        obx_debug("mcp: %s runs on as task %s", c->tool->def->name, id);
    } else if (info.status == OBX_MCP_TASK_COMPLETED) {
        r = obx_mcp_task_tool_result(srv, &info);
    } else if (info.status == OBX_MCP_TASK_CANCELLED) {
        r = obx_mcp_result_error("%s: the task was cancelled", OBX_ERR_CANCELED);
    } else {
        obx_mcp_call_fail(c, info.rpc_code ? info.rpc_code : OBX_RPC_INTERNAL_ERROR,
                          info.message[0] ? info.message : "internal error");
    }
    obx_mcp_task_info_done(&info);
    return r;
}

struct obx_mcp_call *obx_mcp_call_new(struct obx_mcp_server *srv, struct obx_mcp_session *s,
                                      const char *account, json_t *id,
                                      const struct obx_mcp_tool_entry *tool, json_t *payload,
                                      uint64_t timeout_ms, json_t *progress_token,
                                      struct batch *batch, struct sink *sink)
{
    struct obx_mcp_call *c = obx_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->s = s;
    c->id = json_incref(id);
    c->tool = tool;
    c->payload = payload;
    c->batch = batch;
    c->sink = sink;
    c->timeout_ms = timeout_ms;
    c->version = s ? obx_mcp_session_version(s) : OBX_MCP_VERSION_FIRST_MODERN;
    c->log_level = -1;
    obx_call_init(&c->call);
    c->call.account = account;
    if (timeout_ms)
        c->call.deadline = obx_now_ms() + timeout_ms + OBX_MCP_DEADLINE_GRACE_MS;
    if (progress_token) {
        c->progress_token = json_incref(progress_token);
        c->call.on_output = call_on_output;
        c->call.output_userdata = c;
    }
    c->call.on_log = call_on_log;
    c->call.log_userdata = c;
    return c;
}

void *obx_mcp_call_main(void *userdata)
{
    struct obx_mcp_call *c = userdata;
    struct obx_mcp_session *s = c->s;
    json_t *result = c->as_task ? call_task(c) : obx_mcp_call_run(c);
    call_reply(c, result);

    pthread_mutex_lock(&s->lock);
    for (struct obx_mcp_call **p = &s->inflight; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    s->n_inflight--;
    c->next = s->finished;
    s->finished = c;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Joins the threads of finished calls and frees them. */
void obx_mcp_reap(struct obx_mcp_session *s)
{
    pthread_mutex_lock(&s->lock);
    struct obx_mcp_call *list = TAKE_PTR(s->finished);
    pthread_mutex_unlock(&s->lock);
    while (list) {
        struct obx_mcp_call *c = list;
        list = c->next;
        pthread_join(c->thread, NULL);
        obx_mcp_call_free(c);
    }
}
