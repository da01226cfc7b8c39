/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MCP server core: sessions, the lifecycle and version negotiation, the method table,
 * tools/call on threads, cancellation, progress and logging. Transport-neutral: a transport hands
 * messages to obx_mcp_session_handle() and gives the session a send() callback, or hands each
 * message with a sink of its own (obx_mcp_session_handle_sink(), Streamable HTTP): the responses
 * and the notifications of the calls that message starts then go to that sink, which is closed
 * once the last of them went out.
 *
 * Threads and ownership. The transport's thread(s) call obx_mcp_session_handle(); quick methods
 * answer on that thread before it returns. Each tools/call that passes validation gets its own
 * thread (struct obx_mcp_call, owned by the session), which blocks in executor->exec() and sends
 * the response itself. The executor may call on_output from its own threads; that is where
 * progress notifications come from. Two locks:
 *   s->lock       initialization state and the lists of calls (inflight, finished);
 *   s->send_lock  serialises send() and guards everything that decides whether a message may still
 *                 go out: s->muted, each call's responded/dropped flags and progress counters,
 *                 and the pending counts of sinks and batches.
 * Order: s->lock may be held while taking send_lock or a call's obx_call lock (cancel); never the
 * other way round, so on_output (which may run under executor locks) takes only send_lock. The
 * negotiated version and log level are atomics for the same reason.
 * A call thread, when done, moves its call from inflight to finished and signals s->idle; whoever
 * handles the next message, or obx_mcp_session_free(), joins finished threads and frees their
 * calls. free() mutes the session first (nothing is sent from then on), cancels every call in
 * flight, waits for inflight to drain and joins every thread, so send() is never called after it
 * returns and no thread outlives the session.
 */
#include "session.h"

#include <stdarg.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/utf8.h"

/* ---- sending ---- */

void obx_mcp_send_locked(struct obx_mcp_session *s, struct sink *k, const json_t *msg,
                         bool response)
{
    if (s->muted || (k->is_default && !s->send))
        return;
    _cleanup_free_ char *text = obx_json_dumps(msg);
    if (k->is_default)
        s->send(s->userdata, text);
    else
        k->out.send(k->out.userdata, text, response);
}

void obx_mcp_session_send(struct obx_mcp_session *s, struct sink *k, json_t *msg, bool response)
{
    pthread_mutex_lock(&s->send_lock);
    obx_mcp_send_locked(s, k, msg, response);
    pthread_mutex_unlock(&s->send_lock);
    json_decref(msg);
}

void obx_mcp_sink_release_locked(struct sink *k)
{
    if (!k || k->is_default || --k->pending > 0)
        return;
    if (k->out.close)
        k->out.close(k->out.userdata);
    free(k);
}

/* Sends a response now, or adds it to the batch being answered. Steals resp (may be NULL). */
static void deliver(struct obx_mcp_session *s, struct batch *b, struct sink *k, json_t *resp)
{
    if (!resp)
        return;
    if (!b) {
        obx_mcp_session_send(s, k, resp, true);
        return;
    }
    pthread_mutex_lock(&s->send_lock);
    json_array_append_new(b->responses, resp);
    pthread_mutex_unlock(&s->send_lock);
}

void obx_mcp_batch_release_locked(struct obx_mcp_session *s, struct batch *b)
{
    if (--b->pending > 0)
        return;
    if (json_array_size(b->responses) > 0)
        obx_mcp_send_locked(s, b->sink, b->responses, true);
    json_decref(b->responses);
    free(b);
}

static const char *const level_names[] = {"debug", "info",     "notice", "warning",
                                          "error", "critical", "alert",  "emergency"};

json_t *obx_mcp_log_message(struct obx_mcp_session *s, enum obx_mcp_log_level level,
                            const char *fmt, va_list ap)
{
    int min = __atomic_load_n(&s->log_level, __ATOMIC_ACQUIRE);
    if (min < 0 || (int)level < min || (size_t)level >= OBX_ARRAY_SIZE(level_names))
        return NULL;
    char *text = obx_xvasprintf(fmt, ap);
    json_t *params = json_pack("{ssssso}", "level", level_names[level], "logger", "onlyboxes",
                               "data", obx_json_string_bytes(text, strlen(text)));
    free(text);
    return obx_rpc_notification("notifications/message", params);
}

void obx_mcp_session_log(struct obx_mcp_session *s, enum obx_mcp_log_level level, const char *fmt,
                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *msg = obx_mcp_log_message(s, level, fmt, ap);
    va_end(ap);
    if (msg)
        obx_mcp_session_send(s, &s->default_sink, msg, false);
}

/* ---- methods ---- */

struct request {
    struct obx_mcp_session *s;
    const struct obx_rpc_msg *m;
    struct batch *batch;
    struct sink *sink;
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
    json_t *r = obx_mcp_catalog_list(&rq->s->srv->catalog, obx_mcp_session_version(rq->s),
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
        pthread_mutex_lock(&s->send_lock);
        if (c->batch)
            c->batch->pending++;
        c->sink->pending++;
        pthread_mutex_unlock(&s->send_lock);
        c->next = s->inflight;
        s->inflight = c;
        s->n_inflight++;
        int r = pthread_create(&c->thread, NULL, obx_mcp_call_main, c);
        if (r != 0) {
            s->inflight = c->next;
            s->n_inflight--;
            /* handle() still holds the batch and the sink, so neither reaches zero here. */
            pthread_mutex_lock(&s->send_lock);
            if (c->batch)
                c->batch->pending--;
            c->sink->pending--;
            pthread_mutex_unlock(&s->send_lock);
            resp = obx_rpc_result(
                c->id, obx_mcp_result_error("%s: cannot start a thread for this call: %s",
                                            OBX_ERR_INTERNAL, strerror(r)));
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (resp)
        obx_mcp_call_free(c);
    return resp;
}

static json_t *m_tools_call(struct request *rq)
{
    struct obx_mcp_session *s = rq->s;
    json_t *id = rq->m->id, *params = rq->m->params;
    json_t *jname = json_object_get(params, "name");
    if (!jname)
        return obx_rpc_error(id, OBX_RPC_INVALID_PARAMS, "invalid params: \"name\" is required");
    if (!json_is_string(jname))
        return obx_rpc_error(id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"name\" must be a string");
    const char *name = json_string_value(jname);
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

    json_t *token = json_object_get(json_object_get(params, "_meta"), "progressToken");
    if (!json_is_string(token) && !json_is_integer(token))
        token = NULL;
    struct obx_mcp_call *c =
        obx_mcp_call_new(s, id, t, payload, timeout_ms, token, rq->batch, rq->sink);
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

/* Handles one message that is not an array; b is the batch it belongs to, if any, and k the sink
 * of the incoming message. */
static void handle_one(struct obx_mcp_session *s, json_t *msg, struct batch *b, struct sink *k)
{
    struct obx_rpc_msg m;
    json_t *err = NULL;
    struct request rq = {.s = s, .m = &m, .batch = b, .sink = k};
    switch (obx_rpc_classify(msg, &m, &err)) {
    case OBX_RPC_INVALID:
        deliver(s, b, k, err);
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
        deliver(s, b, k,
                obx_rpc_error(m.id, OBX_RPC_INVALID_PARAMS,
                              "invalid params: \"params\" must be an object"));
        return;
    }
    if (b && strcmp(m.method, "initialize") == 0) {
        deliver(s, b, k,
                obx_rpc_error(m.id, OBX_RPC_INVALID_REQUEST,
                              "invalid request: initialize must not be part of a batch"));
        return;
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(methods); i++)
        if (strcmp(m.method, methods[i].name) == 0) {
            deliver(s, b, k, methods[i].fn(&rq));
            return;
        }
    deliver(s, b, k,
            obx_rpc_error(m.id, OBX_RPC_METHOD_NOT_FOUND, "method not found: %s", m.method));
}

static void handle(struct obx_mcp_session *s, const char *text, size_t len, struct sink *k)
{
    obx_mcp_reap(s);
    json_t *err = NULL;
    _cleanup_json_ json_t *msg = obx_rpc_parse(text, len, &err);
    if (!msg) {
        obx_mcp_session_send(s, k, err, true);
        return;
    }
    if (!json_is_array(msg)) {
        handle_one(s, msg, NULL, k);
        return;
    }
    /* Batches exist only in 2025-03-26, which is also what a session speaks before initialize. */
    enum obx_mcp_version v = obx_mcp_session_version(s);
    if (v != OBX_MCP_V2025_03_26) {
        obx_mcp_session_send(s, k,
                             obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                                           "invalid request: batches are not supported in protocol "
                                           "version %s",
                                           obx_mcp_version_name(v)),
                             true);
        return;
    }
    if (json_array_size(msg) == 0) {
        obx_mcp_session_send(
            s, k, obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST, "invalid request: empty batch"),
            true);
        return;
    }
    /* Each entry costs an answer of a hundred bytes or more: a megabyte of "0," would otherwise
     * turn into half a million error responses held in memory at once. */
    if (json_array_size(msg) > OBX_MCP_MAX_BATCH) {
        obx_mcp_session_send(s, k,
                             obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                                           "invalid request: a batch of %zu messages; at most %u "
                                           "are allowed",
                                           json_array_size(msg), OBX_MCP_MAX_BATCH),
                             true);
        return;
    }
    struct batch *b = obx_xcalloc(1, sizeof(*b));
    b->responses = json_array();
    b->sink = k;
    b->pending = 1; /* ours, until every entry was handled */
    size_t i;
    json_t *e;
    json_array_foreach(msg, i, e)
    {
        handle_one(s, e, b, k);
    }
    pthread_mutex_lock(&s->send_lock);
    obx_mcp_batch_release_locked(s, b);
    pthread_mutex_unlock(&s->send_lock);
}

void obx_mcp_session_handle(struct obx_mcp_session *s, const char *text, size_t len)
{
    handle(s, text, len, &s->default_sink);
}

void obx_mcp_session_handle_sink(struct obx_mcp_session *s, const char *text, size_t len,
                                 const struct obx_mcp_sink *sink)
{
    struct sink *k = obx_xcalloc(1, sizeof(*k));
    k->out = *sink;
    k->pending = 1; /* ours, until the message was handled; each call it starts holds one more */
    handle(s, text, len, k);
    pthread_mutex_lock(&s->send_lock);
    obx_mcp_sink_release_locked(k);
    pthread_mutex_unlock(&s->send_lock);
}

bool obx_mcp_session_initialized(struct obx_mcp_session *s)
{
    pthread_mutex_lock(&s->lock);
    bool r = s->initialized;
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* For transports: sends msg (stolen) on the session, e.g. an error for a line too long to read. */
void obx_mcp_session_send_json(struct obx_mcp_session *s, json_t *msg)
{
    obx_mcp_session_send(s, &s->default_sink, msg, true);
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
    struct obx_mcp_session_config cfg = {.send = send, .userdata = userdata};
    return obx_mcp_session_new_with(srv, &cfg);
}

struct obx_mcp_session *obx_mcp_session_new_with(struct obx_mcp_server *srv,
                                                 const struct obx_mcp_session_config *cfg)
{
    struct obx_mcp_session *s = obx_xcalloc(1, sizeof(*s));
    s->srv = srv;
    s->send = cfg->send;
    s->userdata = cfg->userdata;
    s->account = obx_xstrdup(cfg->account ? cfg->account : srv->account);
    s->default_sink.is_default = true;
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
    obx_mcp_reap(s);

    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->send_lock);
    free(s->account);
    free(s);
}
