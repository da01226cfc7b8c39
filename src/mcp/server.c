/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MCP server core: sessions, the lifecycle and version negotiation, the method table,
 * tools/call on threads, cancellation, progress and logging. Transport-neutral: a transport hands
 * messages to obx_mcp_session_handle() and gives the session a send() callback.
 *
 * Threads and ownership. The transport's thread(s) call obx_mcp_session_handle(); quick methods
 * answer on that thread before it returns. Each tools/call that passes validation gets its own
 * thread (struct obx_mcp_call, owned by the session), which blocks in executor->exec() and sends
 * the response itself. The executor may call on_output from its own threads; that is where
 * progress notifications come from. Two locks:
 *   s->lock       initialization state and the lists of calls (inflight, finished);
 *   s->send_lock  serialises send() and guards everything that decides whether a message may still
 *                 go out: s->muted, each call's responded/dropped flags and progress counters.
 * Order: s->lock may be held while taking send_lock or a call's obx_call lock (cancel); never the
 * other way round, so on_output (which may run under executor locks) takes only send_lock. The
 * negotiated version and log level are atomics for the same reason.
 * A call thread, when done, moves its call from inflight to finished and signals s->idle; whoever
 * handles the next message, or obx_mcp_session_free(), joins finished threads and frees their
 * calls. free() mutes the session first (nothing is sent from then on), cancels every call in
 * flight, waits for inflight to drain and joins every thread, so send() is never called after it
 * returns and no thread outlives the session.
 */
#include "mcp-internal.h"

#include <stdarg.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/utf8.h"

struct obx_mcp_server {
    char *name;
    char *version;
    char *account;
    struct obx_executor *executor;
    size_t page_size;
    unsigned max_inflight;
    struct obx_mcp_catalog catalog;
};

/* A JSON-RPC batch being answered: responses collect here until the last pending entry is done. */
struct batch {
    json_t *responses;
    unsigned pending; /* under send_lock */
};

struct obx_mcp_call {
    struct obx_mcp_session *s;
    struct obx_mcp_call *next; /* in s->inflight or s->finished, under s->lock */
    pthread_t thread;
    json_t *id;
    const struct obx_mcp_tool_entry *tool;
    json_t *payload;        /* NULL for fixtures */
    json_t *progress_token; /* NULL: the client asked for no progress */
    struct batch *batch;    /* NULL unless the request came in a batch */
    struct obx_call call;

    /* under s->send_lock */
    bool responded; /* the response went out (or into the batch): no more progress */
    bool dropped;   /* cancelled by the client: no response at all */
    uint64_t progress_bytes;
    char carry[2][4]; /* an incomplete UTF-8 sequence at the end of the last chunk, per stream */
    size_t carry_len[2];
};

struct obx_mcp_session {
    struct obx_mcp_server *srv;
    void (*send)(void *userdata, const char *json);
    void *userdata;

    pthread_mutex_t lock;
    pthread_cond_t idle;
    bool initialized;
    struct obx_mcp_call *inflight;
    struct obx_mcp_call *finished;
    unsigned n_inflight;

    int version;   /* enum obx_mcp_version; atomic */
    int log_level; /* enum obx_mcp_log_level, -1 until logging/setLevel; atomic */

    pthread_mutex_t send_lock;
    bool muted;
};

/* ---- versions ---- */

static const char *const version_names[] = {
    [OBX_MCP_V2024_11_05] = "2024-11-05",
    [OBX_MCP_V2025_03_26] = "2025-03-26",
    [OBX_MCP_V2025_06_18] = "2025-06-18",
    [OBX_MCP_V2025_11_25] = "2025-11-25",
};

int obx_mcp_version_parse(const char *s, enum obx_mcp_version *ret)
{
    for (size_t i = 0; s && i < OBX_ARRAY_SIZE(version_names); i++)
        if (strcmp(s, version_names[i]) == 0) {
            *ret = (enum obx_mcp_version)i;
            return 0;
        }
    return -EINVAL;
}

const char *obx_mcp_version_name(enum obx_mcp_version v)
{
    return (size_t)v < OBX_ARRAY_SIZE(version_names) ? version_names[v] : "unknown";
}

enum obx_mcp_version obx_mcp_version_negotiate(const char *requested)
{
    enum obx_mcp_version v;
    return obx_mcp_version_parse(requested, &v) == 0 ? v : OBX_MCP_VERSION_LATEST;
}

static enum obx_mcp_version session_version(struct obx_mcp_session *s)
{
    return (enum obx_mcp_version)__atomic_load_n(&s->version, __ATOMIC_ACQUIRE);
}

/* ---- sending ---- */

static void send_locked(struct obx_mcp_session *s, const json_t *msg)
{
    if (s->muted)
        return;
    _cleanup_free_ char *text = obx_json_dumps(msg);
    s->send(s->userdata, text);
}

/* Sends msg (stolen). */
static void session_send(struct obx_mcp_session *s, json_t *msg)
{
    pthread_mutex_lock(&s->send_lock);
    send_locked(s, msg);
    pthread_mutex_unlock(&s->send_lock);
    json_decref(msg);
}

/* Sends a response now, or adds it to the batch being answered. Steals resp (may be NULL). */
static void deliver(struct obx_mcp_session *s, struct batch *b, json_t *resp)
{
    if (!resp)
        return;
    if (!b) {
        session_send(s, resp);
        return;
    }
    pthread_mutex_lock(&s->send_lock);
    json_array_append_new(b->responses, resp);
    pthread_mutex_unlock(&s->send_lock);
}

static void batch_release_locked(struct obx_mcp_session *s, struct batch *b)
{
    if (--b->pending > 0)
        return;
    if (json_array_size(b->responses) > 0)
        send_locked(s, b->responses);
    json_decref(b->responses);
    free(b);
}

static const char *const level_names[] = {"debug", "info",     "notice", "warning",
                                          "error", "critical", "alert",  "emergency"};

void obx_mcp_session_log(struct obx_mcp_session *s, enum obx_mcp_log_level level, const char *fmt,
                         ...)
{
    int min = __atomic_load_n(&s->log_level, __ATOMIC_ACQUIRE);
    if (min < 0 || (int)level < min || (size_t)level >= OBX_ARRAY_SIZE(level_names))
        return;
    va_list ap;
    va_start(ap, fmt);
    char *text = obx_xvasprintf(fmt, ap);
    va_end(ap);
    json_t *params = json_pack("{ssssso}", "level", level_names[level], "logger", "onlyboxes",
                               "data", obx_json_string_bytes(text, strlen(text)));
    free(text);
    session_send(s, obx_rpc_notification("notifications/message", params));
}

/* ---- calls ---- */

static void call_free(struct obx_mcp_call *c)
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
    return session_version(c->s);
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

void obx_mcp_call_log(struct obx_mcp_call *c, enum obx_mcp_log_level level, const char *text)
{
    obx_mcp_session_log(c->s, level, "%s", text);
}

/* Sends notifications/progress with params (borrowed) unless the call was answered or dropped:
 * progress never follows the response. The caller holds send_lock. */
static void progress_send_locked(struct obx_mcp_call *c, json_t *params)
{
    if (c->responded || c->dropped)
        return;
    json_t *n = obx_rpc_notification("notifications/progress", json_incref(params));
    send_locked(c->s, n);
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
    if (!c->progress_token)
        return;
    enum obx_mcp_version v = session_version(c->s);
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

/* Bytes at the end of s[0..len) that start a UTF-8 sequence the next chunk may complete. */
static size_t incomplete_tail(const char *s, size_t len)
{
    for (size_t i = 1; i <= 3 && i <= len; i++) {
        unsigned char b = (unsigned char)s[len - i];
        if ((b & 0xc0) == 0x80)
            continue;
        if (b < 0xc0)
            return 0;
        size_t need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
        return need > i ? i : 0;
    }
    return 0;
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
    bool with_text = session_version(s) >= OBX_MCP_V2025_03_26;

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
        size_t tail = incomplete_tail(joined, n);
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
    obx_mcp_session_log(c->s, map[i], "%s", message);
    if (!c->progress_token)
        return;
    bool with_text = session_version(c->s) >= OBX_MCP_V2025_03_26;
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

/* Sends the call's response (result stolen) unless the client cancelled it, and finishes the
 * call's share of its batch. */
static void call_reply(struct obx_mcp_call *c, json_t *result)
{
    struct obx_mcp_session *s = c->s;
    pthread_mutex_lock(&s->send_lock);
    if (!c->dropped && !s->muted) {
        json_t *resp = obx_rpc_result(c->id, result);
        if (c->batch) {
            json_array_append_new(c->batch->responses, resp);
        } else {
            send_locked(s, resp);
            json_decref(resp);
        }
    } else {
        json_decref(result);
    }
    c->responded = true;
    if (c->batch)
        batch_release_locked(s, TAKE_PTR(c->batch));
    pthread_mutex_unlock(&s->send_lock);
}

static json_t *call_execute(struct obx_mcp_call *c)
{
    struct obx_mcp_session *s = c->s;
    struct obx_executor *ex = s->srv->executor;
    const char *name = c->tool->def->name;
    if (!ex)
        return obx_mcp_result_error("%s: no executor configured", OBX_ERR_RUNTIME_UNAVAILABLE);

    obx_mcp_session_log(s, OBX_MCP_LOG_DEBUG, "%s: started", name);
    _cleanup_json_ json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = ex->exec(ex, c->tool->def->capability, c->payload, &c->call, &res, &err);
    if (r < 0 || !res) {
        if (obx_call_is_cancelled(&c->call))
            obx_mcp_session_log(s, OBX_MCP_LOG_NOTICE, "%s: cancelled", name);
        else if (obx_streq(err.code, OBX_ERR_DEADLINE_EXCEEDED))
            obx_mcp_session_log(s, OBX_MCP_LOG_WARNING, "%s: timed out", name);
        else
            obx_mcp_session_log(s, OBX_MCP_LOG_ERROR, "%s: failed (%s)", name,
                                err.code[0] ? err.code : "no code");
        if (!err.code[0])
            snprintf(err.code, sizeof(err.code), "%s", OBX_ERR_EXECUTION_FAILED);
        if (!err.message[0])
            snprintf(err.message, sizeof(err.message), "%s", "the call failed");
        char text[sizeof(err.code) + sizeof(err.message) + 4];
        return obx_mcp_result_error("%s", obx_error_text(&err, text, sizeof(text)));
    }
    obx_mcp_session_log(s, OBX_MCP_LOG_DEBUG, "%s: finished", name);
    return c->tool->def->shape_result(c->tool, res, session_version(s));
}

static void *call_main(void *userdata)
{
    struct obx_mcp_call *c = userdata;
    struct obx_mcp_session *s = c->s;
    json_t *result = c->tool->def->run ? c->tool->def->run(c) : call_execute(c);
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
static void reap(struct obx_mcp_session *s)
{
    pthread_mutex_lock(&s->lock);
    struct obx_mcp_call *list = TAKE_PTR(s->finished);
    pthread_mutex_unlock(&s->lock);
    while (list) {
        struct obx_mcp_call *c = list;
        list = c->next;
        pthread_join(c->thread, NULL);
        call_free(c);
    }
}

/* ---- methods ---- */

struct request {
    struct obx_mcp_session *s;
    const struct obx_rpc_msg *m;
    struct batch *batch;
};

#define INSTRUCTIONS                                                                              \
    "Onlyboxes runs code in isolated sandboxes. Use pythonExec for a self-contained Python "      \
    "snippet (a fresh sandbox every call) and terminalExec for shell commands in a terminal "     \
    "session that keeps its files, working directory and exported variables between calls (pass " \
    "back its session_id); readImage shows you an image file from such a session."

static json_t *m_initialize(struct request *rq)
{
    struct obx_mcp_session *s = rq->s;
    const char *requested = obx_json_get_str(rq->m->params, "protocolVersion", NULL);
    if (!requested)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"protocolVersion\" is required");
    enum obx_mcp_version v = obx_mcp_version_negotiate(requested);
    pthread_mutex_lock(&s->lock);
    bool again = s->initialized;
    if (!again) {
        s->initialized = true;
        __atomic_store_n(&s->version, (int)v, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&s->lock);
    if (again)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_REQUEST,
                             "invalid request: the session is already initialized");

    json_t *info = json_pack("{ssss}", "name", s->srv->name, "version", s->srv->version);
    if (v >= OBX_MCP_V2025_06_18)
        json_object_set_new(info, "title", json_string("Onlyboxes"));
    json_t *result = json_pack("{sss{s{sb}s{}}soss}", "protocolVersion", obx_mcp_version_name(v),
                               "capabilities", "tools", "listChanged", 0, "logging", "serverInfo",
                               info, "instructions", INSTRUCTIONS);
    obx_debug("mcp: initialized with protocol version %s (client asked for %s)",
              obx_mcp_version_name(v), requested);
    return obx_rpc_result(rq->m->id, result);
}

static json_t *m_ping(struct request *rq)
{
    return obx_rpc_result(rq->m->id, json_object());
}

static json_t *m_tools_list(struct request *rq)
{
    json_t *cursor = json_object_get(rq->m->params, "cursor");
    if (cursor && !json_is_string(cursor) && !json_is_null(cursor))
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS, "invalid params: invalid cursor");
    json_t *r = obx_mcp_catalog_list(&rq->s->srv->catalog, session_version(rq->s),
                                     json_string_value(cursor), rq->s->srv->page_size);
    if (!r)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS, "invalid params: invalid cursor");
    return obx_rpc_result(rq->m->id, r);
}

static json_t *m_set_level(struct request *rq)
{
    const char *level = obx_json_get_str(rq->m->params, "level", NULL);
    if (!level)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"level\" is required");
    for (size_t i = 0; i < OBX_ARRAY_SIZE(level_names); i++)
        if (strcmp(level, level_names[i]) == 0) {
            __atomic_store_n(&rq->s->log_level, (int)i, __ATOMIC_RELEASE);
            return obx_rpc_result(rq->m->id, json_object());
        }
    return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                         "invalid params: invalid log level \"%s\"", level);
}

/* The call in flight with this id that has not been answered yet (a call stays on the list for a
 * moment after its response went out, and the client may reuse the id by then). Caller holds
 * s->lock. */
static struct obx_mcp_call *find_unanswered(struct obx_mcp_session *s, const json_t *id)
{
    for (struct obx_mcp_call *c = s->inflight; c; c = c->next) {
        if (!obx_rpc_id_equal(c->id, id))
            continue;
        pthread_mutex_lock(&s->send_lock);
        bool answered = c->responded;
        pthread_mutex_unlock(&s->send_lock);
        if (!answered)
            return c;
    }
    return NULL;
}

/* Registers and starts the call; returns the response to send now, or NULL when the call's thread
 * will answer. */
static json_t *start_call(struct request *rq, struct obx_mcp_call *c)
{
    struct obx_mcp_session *s = rq->s;
    unsigned max = s->srv->max_inflight;
    json_t *resp = NULL;
    pthread_mutex_lock(&s->lock);
    if (find_unanswered(s, c->id))
        resp = obx_rpc_error(c->id, OBX_RPC_INVALID_REQUEST,
                             "invalid request: a request with this id is still in progress");
    if (!resp && s->n_inflight >= max)
        resp = obx_rpc_result(c->id, obx_mcp_result_error("too many calls in flight (at most %u "
                                                          "per session); wait for one to finish",
                                                          max));
    if (!resp) {
        if (c->batch) {
            pthread_mutex_lock(&s->send_lock);
            c->batch->pending++;
            pthread_mutex_unlock(&s->send_lock);
        }
        c->next = s->inflight;
        s->inflight = c;
        s->n_inflight++;
        int r = pthread_create(&c->thread, NULL, call_main, c);
        if (r != 0) {
            s->inflight = c->next;
            s->n_inflight--;
            if (c->batch) {
                pthread_mutex_lock(&s->send_lock);
                c->batch->pending--; /* handle() still holds the batch, so never zero here */
                pthread_mutex_unlock(&s->send_lock);
            }
            resp = obx_rpc_result(
                c->id, obx_mcp_result_error("%s: cannot start a thread for this call: %s",
                                            OBX_ERR_INTERNAL, strerror(r)));
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (resp)
        call_free(c);
    return resp;
}

static json_t *m_tools_call(struct request *rq)
{
    struct obx_mcp_session *s = rq->s;
    json_t *id = rq->m->id, *params = rq->m->params;
    const char *name = obx_json_get_str(params, "name", NULL);
    if (!name)
        return obx_rpc_error(id, OBX_RPC_INVALID_PARAMS, "invalid params: \"name\" is required");
    const struct obx_mcp_tool_entry *t = obx_mcp_catalog_find(&s->srv->catalog, name);
    if (!t)
        return obx_rpc_error(id, OBX_RPC_INVALID_PARAMS, "unknown tool \"%s\"", name);
    json_t *args = json_object_get(params, "arguments");
    _cleanup_json_ json_t *empty = json_object();
    if (!args || json_is_null(args))
        args = empty;
    if (!json_is_object(args))
        return obx_rpc_error(id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"arguments\" must be an object");

    json_t *payload = NULL;
    uint64_t timeout_ms = 0;
    char msg[600];
    if (obx_mcp_tool_prepare(t, args, &payload, &timeout_ms, msg, sizeof(msg)) < 0)
        return obx_rpc_result(id, obx_mcp_result_error("%s", msg));

    struct obx_mcp_call *c = obx_xcalloc(1, sizeof(*c));
    c->s = s;
    c->id = json_incref(id);
    c->tool = t;
    c->payload = payload;
    c->batch = rq->batch;
    obx_call_init(&c->call);
    c->call.account = s->srv->account;
    if (timeout_ms)
        c->call.deadline = obx_now_ms() + timeout_ms + OBX_MCP_DEADLINE_GRACE_MS;
    json_t *token = json_object_get(json_object_get(params, "_meta"), "progressToken");
    if (json_is_string(token) || json_is_integer(token)) {
        c->progress_token = json_incref(token);
        c->call.on_output = call_on_output;
        c->call.output_userdata = c;
    }
    c->call.on_log = call_on_log;
    c->call.log_userdata = c;
    return start_call(rq, c);
}

static void n_initialized(struct request *rq)
{
}

static void n_cancelled(struct request *rq)
{
    struct obx_mcp_session *s = rq->s;
    json_t *id = json_object_get(rq->m->params, "requestId");
    pthread_mutex_lock(&s->lock);
    struct obx_mcp_call *c = find_unanswered(s, id);
    if (c) {
        /* The response may go out between the lookup and here; then this is a no-op, which is
         * the race the spec tells us to expect. */
        pthread_mutex_lock(&s->send_lock);
        if (!c->responded)
            c->dropped = true;
        pthread_mutex_unlock(&s->send_lock);
        obx_call_cancel(&c->call);
    }
    pthread_mutex_unlock(&s->lock);
}

static const struct {
    const char *name;
    json_t *(*fn)(struct request *rq);
} methods[] = {
    {"initialize", m_initialize}, {"logging/setLevel", m_set_level}, {"ping", m_ping},
    {"tools/call", m_tools_call}, {"tools/list", m_tools_list},
};

static const struct {
    const char *name;
    void (*fn)(struct request *rq);
} notifications[] = {
    {"notifications/cancelled", n_cancelled},
    {"notifications/initialized", n_initialized},
};

/* Handles one message that is not an array; b is the batch it belongs to, if any. */
static void handle_one(struct obx_mcp_session *s, json_t *msg, struct batch *b)
{
    struct obx_rpc_msg m;
    json_t *err = NULL;
    struct request rq = {.s = s, .m = &m, .batch = b};
    switch (obx_rpc_classify(msg, &m, &err)) {
    case OBX_RPC_INVALID:
        deliver(s, b, err);
        return;
    case OBX_RPC_RESPONSE:
        return;
    case OBX_RPC_NOTIFICATION:
        /* Never answered, not even when unknown or malformed. */
        if (m.params && !json_is_object(m.params))
            return;
        for (size_t i = 0; i < OBX_ARRAY_SIZE(notifications); i++)
            if (strcmp(m.method, notifications[i].name) == 0)
                notifications[i].fn(&rq);
        return;
    case OBX_RPC_REQUEST:
        break;
    }
    if (m.params && !json_is_object(m.params)) {
        deliver(s, b,
                obx_rpc_error(m.id, OBX_RPC_INVALID_PARAMS,
                              "invalid params: \"params\" must be an object"));
        return;
    }
    if (b && strcmp(m.method, "initialize") == 0) {
        deliver(s, b,
                obx_rpc_error(m.id, OBX_RPC_INVALID_REQUEST,
                              "invalid request: initialize must not be part of a batch"));
        return;
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(methods); i++)
        if (strcmp(m.method, methods[i].name) == 0) {
            deliver(s, b, methods[i].fn(&rq));
            return;
        }
    deliver(s, b, obx_rpc_error(m.id, OBX_RPC_METHOD_NOT_FOUND, "method not found: %s", m.method));
}

void obx_mcp_session_handle(struct obx_mcp_session *s, const char *text, size_t len)
{
    reap(s);
    json_t *err = NULL;
    _cleanup_json_ json_t *msg = obx_rpc_parse(text, len, &err);
    if (!msg) {
        session_send(s, err);
        return;
    }
    if (!json_is_array(msg)) {
        handle_one(s, msg, NULL);
        return;
    }
    /* Batches exist only in 2025-03-26, which is also what a session speaks before initialize. */
    enum obx_mcp_version v = session_version(s);
    if (v != OBX_MCP_V2025_03_26) {
        session_send(s, obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                                      "invalid request: batches are not supported in protocol "
                                      "version %s",
                                      obx_mcp_version_name(v)));
        return;
    }
    if (json_array_size(msg) == 0) {
        session_send(s,
                     obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST, "invalid request: empty batch"));
        return;
    }
    struct batch *b = obx_xcalloc(1, sizeof(*b));
    b->responses = json_array();
    b->pending = 1; /* ours, until every entry was handled */
    size_t i;
    json_t *e;
    json_array_foreach(msg, i, e)
    {
        handle_one(s, e, b);
    }
    pthread_mutex_lock(&s->send_lock);
    batch_release_locked(s, b);
    pthread_mutex_unlock(&s->send_lock);
}

/* For transports: sends msg (stolen) on the session, e.g. an error for a line too long to read. */
void obx_mcp_session_send_json(struct obx_mcp_session *s, json_t *msg)
{
    session_send(s, msg);
}

/* ---- lifetimes ---- */

struct obx_mcp_server *obx_mcp_server_new(const struct obx_mcp_server_config *cfg)
{
    struct obx_mcp_server *srv = obx_xcalloc(1, sizeof(*srv));
    srv->name = obx_xstrdup(cfg->name ? cfg->name : "onlyboxes");
    srv->version = obx_xstrdup(cfg->version ? cfg->version : OBX_VERSION);
    srv->account = obx_xstrdup(cfg->account ? cfg->account : "local");
    srv->executor = cfg->executor;
    srv->page_size = cfg->page_size;
    srv->max_inflight = cfg->max_inflight ? cfg->max_inflight : OBX_MCP_DEFAULT_MAX_INFLIGHT;
    obx_mcp_catalog_init(&srv->catalog, cfg->fixtures);
    return srv;
}

void obx_mcp_server_free(struct obx_mcp_server *srv)
{
    if (!srv)
        return;
    obx_mcp_catalog_done(&srv->catalog);
    free(srv->name);
    free(srv->version);
    free(srv->account);
    free(srv);
}

struct obx_mcp_session *obx_mcp_session_new(struct obx_mcp_server *srv,
                                            void (*send)(void *userdata, const char *json),
                                            void *userdata)
{
    struct obx_mcp_session *s = obx_xcalloc(1, sizeof(*s));
    s->srv = srv;
    s->send = send;
    s->userdata = userdata;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_mutex_init(&s->send_lock, NULL);
    s->version = OBX_MCP_VERSION_DEFAULT;
    s->log_level = -1;
    return s;
}

void obx_mcp_session_free(struct obx_mcp_session *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->send_lock);
    s->muted = true;
    pthread_mutex_unlock(&s->send_lock);

    pthread_mutex_lock(&s->lock);
    for (struct obx_mcp_call *c = s->inflight; c; c = c->next)
        obx_call_cancel(&c->call);
    while (s->n_inflight > 0)
        pthread_cond_wait(&s->idle, &s->lock);
    pthread_mutex_unlock(&s->lock);
    reap(s);

    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->send_lock);
    free(s);
}
