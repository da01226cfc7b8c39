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
#include <strings.h>

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

json_t *obx_mcp_log_message(int min, enum obx_mcp_log_level level, const char *fmt, va_list ap)
{
    if (min < 0 || (int)level < min || (int)level > OBX_MCP_LOG_EMERGENCY)
        return NULL;
    char *text = obx_xvasprintf(fmt, ap);
    json_t *params = json_pack("{ssssso}", "level", obx_mcp_log_level_name((int)level), "logger",
                               "onlyboxes", "data", obx_json_string_bytes(text, strlen(text)));
    free(text);
    return obx_rpc_notification("notifications/message", params);
}

/* ---- methods ---- */

struct request {
    struct obx_mcp_session *s;
    const struct obx_rpc_msg *m;
    struct batch *batch;
    struct sink *sink;
    struct obx_mcp_envelope env; /* env.modern false: legacy, by the session's version */
};

#define INSTRUCTIONS                                                                              \
    "Onlyboxes runs code in isolated sandboxes. Use pythonExec for a self-contained Python "      \
    "snippet (a fresh sandbox every call) and terminalExec for shell commands in a terminal "     \
    "session that keeps its files, working directory and exported variables between calls (pass " \
    "back its session_id); readImage shows you an image file from such a session."

/* How long clients may keep a list or discover result (the tool list changes only when the
 * server is restarted with other settings). */
#define CACHE_TTL_MS 300000

static enum obx_mcp_version rq_version(struct request *rq)
{
    return rq->env.modern ? rq->env.version : obx_mcp_session_version(rq->s);
}

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

static json_t *m_discover(struct request *rq)
{
    struct obx_mcp_server *srv = rq->s->srv;
    json_t *caps = json_pack("{s{sb}s{}s{s{}}}", "tools", "listChanged", 0, "logging", "extensions",
                             OBX_MCP_EXT_TASKS);
    if (srv->task_after_ms == OBX_MCP_TASKS_OFF)
        json_object_del(caps, "extensions");
    json_t *r = json_pack("{sosossssso}", "supportedVersions", obx_mcp_modern_versions(),
                          "capabilities", caps, "instructions", INSTRUCTIONS, "cacheScope",
                          srv->cache_scope, "ttlMs", json_integer(CACHE_TTL_MS));
    return obx_rpc_result(rq->m->id, r);
}

static json_t *m_ping(struct request *rq)
{
    return obx_rpc_result(rq->m->id, json_object());
}

static json_t *m_tools_list(struct request *rq)
{
    struct obx_mcp_server *srv = rq->s->srv;
    json_t *cursor = json_object_get(rq->m->params, "cursor");
    if (cursor && !json_is_string(cursor) && !json_is_null(cursor))
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS, "invalid params: invalid cursor");
    json_t *r = obx_mcp_catalog_list(&srv->catalog, rq_version(rq), json_string_value(cursor),
                                     srv->page_size);
    if (!r)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS, "invalid params: invalid cursor");
    if (rq->env.modern) {
        json_object_set_new(r, "ttlMs", json_integer(CACHE_TTL_MS));
        json_object_set_new(r, "cacheScope", json_string(srv->cache_scope));
    }
    return obx_rpc_result(rq->m->id, r);
}

static json_t *m_set_level(struct request *rq)
{
    const char *level = obx_json_get_str(rq->m->params, "level", NULL);
    if (!level)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"level\" is required");
    int l = obx_mcp_log_level_parse(level);
    if (l < 0)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: invalid log level \"%s\"", level);
    __atomic_store_n(&rq->s->log_level, l, __ATOMIC_RELEASE);
    return obx_rpc_result(rq->m->id, json_object());
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
    if (resp) {
        if (c->modern && json_object_get(resp, "result"))
            obx_mcp_modern_result(json_object_get(resp, "result"), s->srv->name, s->srv->version);
        obx_mcp_call_free(c);
    }
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
    if (obx_mcp_tool_prepare(t, args, &payload, &timeout_ms, msg, sizeof(msg)) < 0) {
        json_t *r = obx_mcp_result_error("%s", msg);
        if (rq->env.modern)
            obx_mcp_modern_result(r, s->srv->name, s->srv->version);
        return obx_rpc_result(id, r);
    }

    json_t *token = json_object_get(json_object_get(params, "_meta"), "progressToken");
    if (!json_is_string(token) && !json_is_integer(token))
        token = NULL;
    struct obx_mcp_call *c = obx_mcp_call_new(s->srv, s, s->account, id, t, payload, timeout_ms,
                                              token, rq->batch, rq->sink);
    if (rq->env.modern) {
        c->modern = true;
        c->version = rq->env.version;
        c->log_level = rq->env.log_level;
        c->as_task = rq->env.tasks && s->srv->task_after_ms != OBX_MCP_TASKS_OFF &&
                     t->def->task_support != OBX_MCP_TASK_FORBIDDEN;
    }
    return start_call(rq, c);
}

/* params.taskId of a tasks/ request, or NULL after setting *err. */
static const char *task_id_param(struct request *rq, json_t **err)
{
    json_t *v = json_object_get(rq->m->params, "taskId");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        *err = obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"taskId\" (a string) is required");
        return NULL;
    }
    return json_string_value(v);
}

static json_t *task_not_found(struct request *rq, const char *id)
{
    return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                         "Failed to retrieve task: task %.64s not found (unknown, expired, or "
                         "another account's)",
                         id);
}

/* The task the request names, of the caller's account: its id, or NULL with *err set. */
static const char *task_lookup(struct request *rq, struct obx_mcp_task_info *info, json_t **err)
{
    const char *id = task_id_param(rq, err);
    if (id && obx_mcp_task_get(rq->s->srv, rq->s->account, id, info) < 0) {
        *err = task_not_found(rq, id);
        return NULL;
    }
    return id;
}

static json_t *m_tasks_get(struct request *rq)
{
    json_t *err = NULL;
    struct obx_mcp_task_info info;
    const char *id = task_lookup(rq, &info, &err);
    if (!id)
        return err;
    json_t *r = obx_mcp_task_json(rq->s->srv, id, &info, true);
    obx_mcp_task_info_done(&info);
    return obx_rpc_result(rq->m->id, r);
}

/* tasks/update: no tool of ours asks for input, so there is never an outstanding request to
 * answer; the responses are acknowledged and ignored, as the extension says for unknown keys. */
static json_t *m_tasks_update(struct request *rq)
{
    json_t *err = NULL;
    struct obx_mcp_task_info info;
    if (!task_lookup(rq, &info, &err))
        return err;
    obx_mcp_task_info_done(&info);
    return obx_rpc_result(rq->m->id, json_object());
}

static json_t *m_tasks_cancel(struct request *rq)
{
    json_t *err = NULL;
    const char *id = task_id_param(rq, &err);
    if (!id)
        return err;
    if (obx_mcp_task_cancel(rq->s->srv, rq->s->account, id) < 0)
        return task_not_found(rq, id);
    return obx_rpc_result(rq->m->id, json_object());
}

/* subscriptions/listen: the stream carries notifications/tasks for the task ids asked for (of
 * this account) and nothing else; the server offers no list-changed notifications. The request
 * stays open until the client ends it. */
static json_t *m_listen(struct request *rq)
{
    struct obx_mcp_session *s = rq->s;
    json_t *want = json_object_get(rq->m->params, "notifications");
    if (want && !json_is_object(want))
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"notifications\" must be an object");
    json_t *ids = json_object_get(want, "taskIds");
    if (ids && !json_is_array(ids))
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: \"notifications.taskIds\" must be an array");
    if (json_array_size(ids) > OBX_MCP_MAX_LISTEN_TASKS)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_PARAMS,
                             "invalid params: at most %u task ids per subscription",
                             OBX_MCP_MAX_LISTEN_TASKS);
    if (rq->batch)
        return obx_rpc_error(rq->m->id, OBX_RPC_INVALID_REQUEST,
                             "invalid request: subscriptions/listen cannot be part of a batch");
    _cleanup_json_ json_t *agreed = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        struct obx_mcp_task_info info;
        const char *id = json_string_value(v);
        if (id && obx_mcp_task_get(s->srv, s->account, id, &info) == 0) {
            json_array_append(agreed, v);
            obx_mcp_task_info_done(&info);
        }
    }
    json_t *ack_params =
        json_pack("{s{sO}s{}}", "_meta", OBX_MCP_META_SUBSCRIPTION, rq->m->id, "notifications");
    if (ids)
        json_object_set(json_object_get(ack_params, "notifications"), "taskIds", agreed);
    pthread_mutex_lock(&s->send_lock);
    rq->sink->pending++;
    pthread_mutex_unlock(&s->send_lock);
    obx_mcp_session_send(
        s, rq->sink, obx_rpc_notification("notifications/subscriptions/acknowledged", ack_params),
        false);
    obx_mcp_listen_add(s->srv, s, rq->sink, rq->m->id, agreed);
    return NULL;
}

static void n_initialized(struct request *rq)
{
}

/* Cancels a call and drops its answer unless it went out already; s->lock held. */
static void drop_call_locked(struct obx_mcp_session *s, struct obx_mcp_call *c)
{
    pthread_mutex_lock(&s->send_lock);
    if (!c->responded)
        c->dropped = true;
    pthread_mutex_unlock(&s->send_lock);
    obx_call_cancel(&c->call);
}

static void n_cancelled(struct request *rq)
{
    struct obx_mcp_session *s = rq->s;
    json_t *id = json_object_get(rq->m->params, "requestId");
    pthread_mutex_lock(&s->lock);
    struct obx_mcp_call *c = find_unanswered(s, id);
    /* The response may go out between the lookup and here; then this is a no-op, which is the
     * race the spec tells us to expect. */
    if (c)
        drop_call_locked(s, c);
    pthread_mutex_unlock(&s->lock);
    if (!c && id)
        obx_mcp_listen_end(s->srv, s, id);
}

struct method {
    const char *name;
    json_t *(*fn)(struct request *rq);
};

static const struct method legacy_methods[] = {
    {"initialize", m_initialize}, {"logging/setLevel", m_set_level}, {"ping", m_ping},
    {"tools/call", m_tools_call}, {"tools/list", m_tools_list},
};

static const struct method modern_methods[] = {
    {"server/discover", m_discover},  {"subscriptions/listen", m_listen},
    {"tasks/cancel", m_tasks_cancel}, {"tasks/get", m_tasks_get},
    {"tasks/update", m_tasks_update}, {"tools/call", m_tools_call},
    {"tools/list", m_tools_list},
};

static const struct {
    const char *name;
    void (*fn)(struct request *rq);
} notifications[] = {
    {"notifications/cancelled", n_cancelled},
    {"notifications/initialized", n_initialized},
};

static const struct method *find_method(const struct method *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, table[i].name) == 0)
            return &table[i];
    return NULL;
}

/* The checks of a modern request that come before its method runs: the method exists (-32601,
 * 404 over HTTP) and the client declared the capabilities the request needs (-32021, 400). */
static json_t *modern_precheck(struct obx_mcp_server *srv, const struct obx_rpc_msg *m,
                               const struct obx_mcp_envelope *env, int *status)
{
    *status = 404;
    if (!find_method(modern_methods, OBX_ARRAY_SIZE(modern_methods), m->method))
        return obx_rpc_error(m->id, OBX_RPC_METHOD_NOT_FOUND,
                             "Method not found: %.128s (not a method of protocol %s)", m->method,
                             obx_mcp_version_name(env->version));
    *status = 400;
    bool tasks_on = srv->task_after_ms != OBX_MCP_TASKS_OFF;
    if (strncmp(m->method, "tasks/", 6) == 0 && (!env->tasks || !tasks_on)) {
        if (!tasks_on)
            return obx_rpc_error(m->id, OBX_RPC_METHOD_NOT_FOUND,
                                 "Method not found: %.128s (tasks are turned off on this server)",
                                 m->method);
        return obx_mcp_missing_tasks_capability(m->id, "tasks/* needs the tasks extension in "
                                                       "the request's clientCapabilities");
    }
    if (strcmp(m->method, "subscriptions/listen") == 0 && !env->tasks &&
        json_array_size(json_object_get(json_object_get(m->params, "notifications"), "taskIds")) >
            0)
        return obx_mcp_missing_tasks_capability(m->id, "task notifications need the tasks "
                                                       "extension");
    if (strcmp(m->method, "tools/call") == 0) {
        const struct obx_mcp_tool_entry *t = obx_mcp_catalog_find(
            &srv->catalog, json_string_value(json_object_get(m->params, "name")));
        if (t && t->requires && !obx_mcp_caps_have(env->caps, t->requires))
            return obx_mcp_missing_capability(m->id, json_deep_copy(t->requires), t->def->name);
        if (t && t->def->task_support == OBX_MCP_TASK_REQUIRED && (!env->tasks || !tasks_on))
            return obx_mcp_missing_tasks_capability(m->id, "this tool always runs as a task");
    }
    *status = 200;
    return NULL;
}

/* Handles one modern request (env read and valid, version served). */
static json_t *handle_modern(struct request *rq)
{
    int status;
    json_t *err = modern_precheck(rq->s->srv, rq->m, &rq->env, &status);
    if (err)
        return err;
    const struct method *fn =
        find_method(modern_methods, OBX_ARRAY_SIZE(modern_methods), rq->m->method);
    json_t *resp = fn->fn(rq);
    json_t *result = json_object_get(resp, "result");
    if (result)
        obx_mcp_modern_result(result, rq->s->srv->name, rq->s->srv->version);
    return resp;
}

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
    /* initialize opens the legacy era unless the request claims a modern version. */
    bool hint = strcmp(m.method, "server/discover") == 0;
    bool init = strcmp(m.method, "initialize") == 0 && !obx_mcp_envelope_claimed(m.params);
    if (!init) {
        int r = obx_mcp_envelope_read(m.params, m.id, hint, &rq.env, &err);
        if (r < 0) {
            deliver(s, b, k, err);
            return;
        }
        if (r > 0 && b) {
            deliver(s, b, k,
                    obx_rpc_error(m.id, OBX_RPC_INVALID_REQUEST,
                                  "invalid request: requests of protocol %s cannot be part of a "
                                  "batch",
                                  obx_mcp_version_name(rq.env.version)));
            return;
        }
        if (r > 0 && !rq.env.supported) {
            deliver(s, b, k, obx_mcp_unsupported_version(m.id, rq.env.requested));
            return;
        }
        if (r > 0) {
            deliver(s, b, k, handle_modern(&rq));
            return;
        }
    }
    if (b && init) {
        deliver(s, b, k,
                obx_rpc_error(m.id, OBX_RPC_INVALID_REQUEST,
                              "invalid request: initialize must not be part of a batch"));
        return;
    }
    const struct method *fn = find_method(legacy_methods, OBX_ARRAY_SIZE(legacy_methods), m.method);
    if (fn) {
        deliver(s, b, k, fn->fn(&rq));
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

int obx_mcp_session_assume(struct obx_mcp_session *s, const char *version)
{
    enum obx_mcp_version v;
    if (obx_mcp_version_parse(version, &v) < 0 || obx_mcp_version_modern(v))
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    s->initialized = true;
    __atomic_store_n(&s->version, (int)v, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

const char *obx_mcp_session_version_name(struct obx_mcp_session *s)
{
    return obx_mcp_session_initialized(s) ? obx_mcp_version_name(obx_mcp_session_version(s)) : "";
}

void obx_mcp_session_cancel_all(struct obx_mcp_session *s)
{
    pthread_mutex_lock(&s->lock);
    for (struct obx_mcp_call *c = s->inflight; c; c = c->next)
        drop_call_locked(s, c);
    pthread_mutex_unlock(&s->lock);
    obx_mcp_listen_end(s->srv, s, NULL);
}

/* ---- what Streamable HTTP decides before a session sees a POST ---- */

static void reject(struct obx_mcp_inbound *ret, int status, json_t *error)
{
    ret->kind = OBX_MCP_INBOUND_REJECT;
    ret->status = status;
    ret->error = obx_json_dumps(error);
    json_decref(error);
}

static bool header_names_modern(const char *v)
{
    if (!v)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    enum obx_mcp_version ver;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    _cleanup_free_ char *t = obx_xstrndup(v, n);
    return obx_mcp_version_parse(t, &ver) == 0 && obx_mcp_version_modern(ver);
}

static void classify_request(struct obx_mcp_server *srv, const struct obx_rpc_msg *m,
                             const struct obx_mcp_http_meta *h, struct obx_mcp_inbound *ret)
{
    bool header_modern = header_names_modern(h->protocol_version);
    if (m->params && !json_is_object(m->params)) {
        /* Legacy sessions answer this in-band, as they always did. */
        ret->kind = header_modern ? OBX_MCP_INBOUND_MODERN : OBX_MCP_INBOUND_LEGACY;
        return;
    }
    if (strcmp(m->method, "initialize") == 0 && !obx_mcp_envelope_claimed(m->params)) {
        if (header_modern)
            reject(ret, 400,
                   obx_mcp_error_data(m->id, OBX_RPC_HEADER_MISMATCH,
                                      json_pack("{ss}", "header", "MCP-Protocol-Version"),
                                      "Header mismatch: initialize (the legacy handshake) was "
                                      "sent with a modern MCP-Protocol-Version header"));
        else
            ret->kind = OBX_MCP_INBOUND_INITIALIZE;
        return;
    }
    struct obx_mcp_envelope env;
    json_t *err = NULL;
    bool hint = header_modern || strcmp(m->method, "server/discover") == 0;
    int r = obx_mcp_envelope_read(m->params, m->id, hint, &env, &err);
    if (r < 0) {
        reject(ret, 400, err);
        return;
    }
    if (r == 0) {
        ret->kind = OBX_MCP_INBOUND_LEGACY;
        return;
    }
    if ((err = obx_mcp_http_version_check(m, &env, h))) {
        reject(ret, 400, err);
        return;
    }
    if (!env.supported) {
        reject(ret, 400, obx_mcp_unsupported_version(m->id, env.requested));
        return;
    }
    /* A method this version does not have is 404 whatever its headers say. */
    int status;
    if (!find_method(modern_methods, OBX_ARRAY_SIZE(modern_methods), m->method) &&
        (err = modern_precheck(srv, m, &env, &status))) {
        reject(ret, status, err);
        return;
    }
    if ((err = obx_mcp_http_check(&srv->catalog, m, &env, h))) {
        reject(ret, 400, err);
        return;
    }
    if ((err = modern_precheck(srv, m, &env, &status))) {
        reject(ret, status, err);
        return;
    }
    ret->kind = OBX_MCP_INBOUND_MODERN;
}

void obx_mcp_inbound_classify(struct obx_mcp_server *srv, const char *body, size_t len,
                              const struct obx_mcp_http_meta *h, struct obx_mcp_inbound *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->legacy_version = -1;
    enum obx_mcp_version lv;
    if (h->protocol_version && obx_mcp_version_parse(h->protocol_version, &lv) == 0 &&
        !obx_mcp_version_modern(lv))
        ret->legacy_version = (int)lv;

    json_t *err = NULL;
    _cleanup_json_ json_t *msg = obx_rpc_parse(body, len, &err);
    if (!msg) {
        /* "Parse error: <why>", the wording of the reference transports. */
        json_t *e = json_object_get(err, "error");
        const char *why = obx_json_get_str(e, "message", "parse error");
        if (strncmp(why, "parse error: ", 13) == 0)
            why += 13;
        _cleanup_free_ char *text = obx_xasprintf("Parse error: %s", why);
        json_object_set_new(e, "message", obx_json_string_bytes(text, strlen(text)));
        reject(ret, 400, err);
        return;
    }
    if (json_is_array(msg)) {
        size_t i;
        json_t *e;
        json_array_foreach(msg, i, e)
        {
            if (obx_mcp_envelope_claimed(json_object_get(e, "params"))) {
                reject(ret, 400,
                       obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                                     "invalid request: requests of protocol 2026-07-28 cannot "
                                     "be part of a batch"));
                return;
            }
        }
        ret->kind = OBX_MCP_INBOUND_LEGACY;
        return;
    }
    struct obx_rpc_msg m;
    switch (obx_rpc_classify(msg, &m, &err)) {
    case OBX_RPC_INVALID:
        reject(ret, 400, err);
        return;
    case OBX_RPC_RESPONSE:
        ret->kind = OBX_MCP_INBOUND_LEGACY;
        return;
    case OBX_RPC_NOTIFICATION:
        ret->kind = obx_mcp_envelope_claimed(m.params) || header_names_modern(h->protocol_version)
                        ? OBX_MCP_INBOUND_MODERN
                        : OBX_MCP_INBOUND_LEGACY;
        return;
    case OBX_RPC_REQUEST:
        classify_request(srv, &m, h, ret);
        return;
    }
}

void obx_mcp_inbound_done(struct obx_mcp_inbound *in)
{
    free(in->error);
    in->error = NULL;
}

static char *param_headers[8];
static pthread_once_t param_headers_once = PTHREAD_ONCE_INIT;

static char *lower_dup(const char *s);

static void param_headers_init(void)
{
    struct obx_mcp_catalog cat;
    obx_mcp_catalog_init(&cat, false, NULL);
    size_t n = 0;
    for (size_t i = 0; i < cat.n; i++)
        for (size_t j = 0; j < cat.tools[i].n_header_params; j++) {
            _cleanup_free_ char *h =
                obx_xasprintf("mcp-param-%s", cat.tools[i].header_params[j].header);
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++)
                seen = strcasecmp(param_headers[k], h) == 0;
            if (!seen && n + 1 < OBX_ARRAY_SIZE(param_headers))
                param_headers[n++] = lower_dup(h);
        }
    obx_mcp_catalog_done(&cat);
}

const char *const *obx_mcp_param_headers(void)
{
    pthread_once(&param_headers_once, param_headers_init);
    return (const char *const *)param_headers;
}

/* For transports: sends msg (stolen) on the session, e.g. an error for a line too long to read. */
void obx_mcp_session_send_json(struct obx_mcp_session *s, json_t *msg)
{
    obx_mcp_session_send(s, &s->default_sink, msg, true);
}

/* ---- lifetimes ---- */

static char *lower_dup(const char *s)
{
    char *d = obx_xstrdup(s);
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

struct obx_mcp_server *obx_mcp_server_new(const struct obx_mcp_server_config *cfg)
{
    struct obx_mcp_server *srv = obx_xcalloc(1, sizeof(*srv));
    srv->name = obx_xstrdup(cfg->name ? cfg->name : "onlyboxes");
    srv->version = obx_xstrdup(cfg->version ? cfg->version : OBX_VERSION);
    srv->account = obx_xstrdup(cfg->account ? cfg->account : "local");
    srv->executor = cfg->executor;
    srv->page_size = cfg->page_size;
    srv->max_inflight = cfg->max_inflight ? cfg->max_inflight : OBX_MCP_DEFAULT_MAX_INFLIGHT;
    srv->task_after_ms = cfg->task_after_ms == 0 ? OBX_MCP_TASK_AFTER_DEFAULT_MS
                         : cfg->task_after_ms < 0
                             ? OBX_MCP_TASKS_OFF
                             : OBX_MIN(cfg->task_after_ms, OBX_MCP_TASK_AFTER_MAX_MS);
    srv->task_backend = cfg->tasks;
    srv->cache_scope = obx_streq(cfg->cache_scope, "private") ? "private" : "public";
    struct obx_mcp_tool_settings settings;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_mcp_tool_settings_read(cfg->hidden_tools, cfg->hidden_tools_var, cfg->tool_env_prefix,
                                   cfg->env, cfg->fixtures, &settings, &err) < 0)
        obx_warn("mcp: tool settings ignored: %s", err.message);
    obx_mcp_catalog_init(&srv->catalog, cfg->fixtures, &settings);
    obx_mcp_tool_settings_done(&settings);
    srv->tasks = obx_mcp_tasks_new(srv);
    return srv;
}

int obx_mcp_server_config_check(const struct obx_mcp_server_config *cfg, struct obx_error *err)
{
    struct obx_mcp_tool_settings settings;
    int r =
        obx_mcp_tool_settings_read(cfg->hidden_tools, cfg->hidden_tools_var, cfg->tool_env_prefix,
                                   cfg->env, cfg->fixtures, &settings, err);
    if (r == 0)
        obx_mcp_tool_settings_done(&settings);
    return r;
}

void obx_mcp_server_free(struct obx_mcp_server *srv)
{
    if (!srv)
        return;
    obx_mcp_tasks_free(srv->tasks);
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
    obx_mcp_listen_end(s->srv, s, NULL);

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
