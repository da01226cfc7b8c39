/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tasks (the io.modelcontextprotocol/tasks extension): a tools/call that runs longer than the
 * client should wait is answered with a task the client polls with tasks/get, stops with
 * tasks/cancel, or hears about on a subscriptions/listen stream.
 *
 * Where tasks live. Each runs on a thread of the server's own, never on a session's, so a task
 * outlives the request (and the HTTP exchange, and the stateless session) that started it. The
 * server keeps its tasks in memory (this file) unless it was given a backend for executor tools
 * (the console's task table, where a task started over MCP is an ordinary task of the REST API);
 * the conformance fixtures always run here. A task belongs to the account that started it;
 * another account's id is "not found".
 *
 * Locks: t->lock guards the table; t->listen_lock the subscriptions. listen_lock may be held while
 * taking a session's send lock (to deliver), never the other way round; t->lock is never held
 * while calling out.
 */
#include "session.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"

#define MEM_MAX_TASKS 1000  /* kept, ended ones included */
#define MEM_MAX_RUNNING 64  /* running at once */
#define MEM_KEEP_MS 3600000 /* an ended task is kept this long after its deadline */
#define POLL_INTERVAL_MS 1000

struct mem_task {
    char id[37];
    char *account;
    const struct obx_mcp_tool_entry *tool;
    struct obx_mcp_call *call; /* the execution context, no session */
    struct mem_task *next;
    /* under t->lock */
    enum obx_mcp_task_status status;
    json_t *result; /* COMPLETED: the CallToolResult */
    int rpc_code;   /* FAILED */
    char message[256];
    int64_t created_ms, updated_ms, ttl_ms;
    bool running;                    /* its thread still uses call */
    struct obx_mcp_task_watch watch; /* release() when the thread is done with it */
};

struct listener {
    struct obx_mcp_session *s;
    struct sink *sink; /* held until the subscription ends */
    json_t *id;        /* the subscriptions/listen request's id */
    json_t *task_ids;  /* the ids agreed to */
    struct listener *next;
};

struct obx_mcp_tasks {
    struct obx_mcp_server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a task ended, or the last thread left */
    struct mem_task *list;
    unsigned n, running, threads;
    bool stopping;
    pthread_mutex_t listen_lock;
    struct listener *listeners;
};

void obx_mcp_task_info_done(struct obx_mcp_task_info *info)
{
    if (!info)
        return;
    json_decref(info->result);
    info->result = NULL;
}

struct obx_mcp_tasks *obx_mcp_tasks_new(struct obx_mcp_server *srv)
{
    struct obx_mcp_tasks *t = obx_xcalloc(1, sizeof(*t));
    t->srv = srv;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    pthread_mutex_init(&t->listen_lock, NULL);
    return t;
}

static void mem_task_free(struct mem_task *m)
{
    obx_mcp_call_free(m->call);
    json_decref(m->result);
    free(m->account);
    free(m);
}

void obx_mcp_tasks_free(struct obx_mcp_tasks *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    for (struct mem_task *m = t->list; m; m = m->next)
        obx_call_cancel(&m->call->call);
    while (t->threads > 0)
        pthread_cond_wait(&t->cond, &t->lock);
    struct mem_task *list = TAKE_PTR(t->list);
    pthread_mutex_unlock(&t->lock);
    while (list) {
        struct mem_task *m = list;
        list = m->next;
        mem_task_free(m);
    }
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->listen_lock);
    free(t);
}

/* ---- the in-memory table ---- */

static struct mem_task *find_locked(struct obx_mcp_tasks *t, const char *account, const char *id)
{
    for (struct mem_task *m = t->list; m; m = m->next)
        if (strcmp(m->id, id) == 0 && (!account || strcmp(m->account, account) == 0))
            return m;
    return NULL;
}

/* Drops ended tasks past their time, and the oldest ended ones while the table is full. */
static void prune_locked(struct obx_mcp_tasks *t)
{
    int64_t now = obx_unix_ms();
    for (struct mem_task **p = &t->list; *p;) {
        struct mem_task *m = *p;
        bool ended = m->status != OBX_MCP_TASK_WORKING && !m->running;
        if (ended && (now - m->created_ms > m->ttl_ms || t->n >= MEM_MAX_TASKS)) {
            *p = m->next;
            t->n--;
            mem_task_free(m);
            continue;
        }
        p = &m->next;
    }
}

static void *mem_task_main(void *arg)
{
    struct mem_task *m = arg;
    struct obx_mcp_tasks *t = m->call->srv->tasks;
    char id[sizeof(m->id)];
    memcpy(id, m->id, sizeof(id));
    json_t *result = obx_mcp_call_run(m->call);
    bool cancelled = obx_call_is_cancelled(&m->call->call);
    if (m->watch.release)
        m->watch.release(m->watch.userdata);

    pthread_mutex_lock(&t->lock);
    if (m->status == OBX_MCP_TASK_WORKING) {
        if (cancelled) {
            m->status = OBX_MCP_TASK_CANCELLED;
            snprintf(m->message, sizeof(m->message), "%s", "the task was cancelled");
        } else if (result) {
            m->status = OBX_MCP_TASK_COMPLETED;
            m->result = TAKE_PTR(result);
        } else {
            m->status = OBX_MCP_TASK_FAILED;
            m->rpc_code = m->call->rpc_code;
            snprintf(m->message, sizeof(m->message), "%s", m->call->rpc_message);
        }
        m->updated_ms = obx_unix_ms();
    }
    m->running = false; /* from here on m may be pruned */
    t->running--;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    json_decref(result);

    obx_mcp_server_task_changed(t->srv, id);

    pthread_mutex_lock(&t->lock);
    t->threads--;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static int mem_start(struct obx_mcp_tasks *t, const char *account,
                     const struct obx_mcp_tool_entry *tool, json_t *payload, uint64_t timeout_ms,
                     const struct obx_mcp_task_watch *watch, char id[64], struct obx_error *err)
{
    struct mem_task *m = obx_xcalloc(1, sizeof(*m));
    obx_random_uuid(m->id);
    m->account = obx_xstrdup(account);
    m->tool = tool;
    m->status = OBX_MCP_TASK_WORKING;
    m->created_ms = m->updated_ms = obx_unix_ms();
    m->ttl_ms = (int64_t)timeout_ms + MEM_KEEP_MS;
    m->call = obx_mcp_call_new(t->srv, NULL, m->account, NULL, tool, json_incref(payload),
                               timeout_ms, NULL, NULL, NULL);
    m->call->version = OBX_MCP_VERSION_FIRST_MODERN;
    if (watch) {
        m->watch = *watch;
        m->call->watch = &m->watch;
        m->call->call.on_output = watch->output;
        m->call->call.output_userdata = watch->userdata;
        m->call->call.on_log = watch->log;
        m->call->call.log_userdata = watch->userdata;
    }

    pthread_mutex_lock(&t->lock);
    prune_locked(t);
    int r = 0;
    if (t->stopping)
        r = obx_error_set(err, ESHUTDOWN, OBX_ERR_INTERNAL, "the server is shutting down");
    else if (t->running >= MEM_MAX_RUNNING)
        r = obx_error_set(err, EAGAIN, OBX_ERR_NO_CAPACITY,
                          "too many tasks running (at most %d); wait for one to end or cancel "
                          "one with tasks/cancel",
                          MEM_MAX_RUNNING);
    else if (t->n >= MEM_MAX_TASKS)
        r = obx_error_set(err, EAGAIN, OBX_ERR_NO_CAPACITY, "too many tasks kept (at most %d)",
                          MEM_MAX_TASKS);
    pthread_t thread;
    if (r == 0) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&thread, &attr, mem_task_main, m);
        pthread_attr_destroy(&attr);
        if (e != 0)
            r = obx_error_set(err, e, OBX_ERR_INTERNAL, "cannot start a thread for the task: %s",
                              strerror(e));
    }
    if (r == 0) {
        m->running = true;
        m->next = t->list;
        t->list = m;
        t->n++;
        t->running++;
        t->threads++;
        snprintf(id, 64, "%s", m->id);
    }
    pthread_mutex_unlock(&t->lock);
    if (r < 0)
        mem_task_free(m);
    return r;
}

static bool mem_wait(struct obx_mcp_tasks *t, const char *id, uint64_t ms, bool *found)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&t->lock);
    bool ended = false;
    for (;;) {
        struct mem_task *m = find_locked(t, NULL, id);
        *found = m != NULL;
        ended = !m || m->status != OBX_MCP_TASK_WORKING;
        if (ended || pthread_cond_timedwait(&t->cond, &t->lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&t->lock);
    return ended;
}

/* 1 with *ret filled, 0 when this table has no such task. */
static int mem_get(struct obx_mcp_tasks *t, const char *account, const char *id,
                   struct obx_mcp_task_info *ret)
{
    pthread_mutex_lock(&t->lock);
    struct mem_task *m = find_locked(t, account, id);
    if (m) {
        memset(ret, 0, sizeof(*ret));
        ret->status = m->status;
        ret->created_ms = m->created_ms;
        ret->updated_ms = m->updated_ms;
        ret->ttl_ms = m->ttl_ms;
        ret->result = json_incref(m->result);
        ret->rpc_code = m->rpc_code;
        snprintf(ret->message, sizeof(ret->message), "%s", m->message);
    }
    pthread_mutex_unlock(&t->lock);
    return m != NULL;
}

/* 1 when the task was found (cancelled now, or already ended), 0 when unknown here. */
static int mem_cancel(struct obx_mcp_tasks *t, const char *account, const char *id)
{
    pthread_mutex_lock(&t->lock);
    struct mem_task *m = find_locked(t, account, id);
    bool now = m && m->status == OBX_MCP_TASK_WORKING;
    if (now) {
        m->status = OBX_MCP_TASK_CANCELLED;
        m->updated_ms = obx_unix_ms();
        snprintf(m->message, sizeof(m->message), "%s", "the task was cancelled");
        obx_call_cancel(&m->call->call);
        pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
    if (now)
        obx_mcp_server_task_changed(t->srv, id);
    return m != NULL;
}

/* ---- the server's view: memory first, then the backend ---- */

static bool in_memory(const struct obx_mcp_server *srv, const struct obx_mcp_tool_entry *tool)
{
    return !srv->task_backend || tool->def->run;
}

int obx_mcp_task_start(struct obx_mcp_server *srv, const char *account,
                       const struct obx_mcp_tool_entry *tool, json_t *payload, uint64_t timeout_ms,
                       const struct obx_mcp_task_watch *watch, char id[64], struct obx_error *err)
{
    if (in_memory(srv, tool))
        return mem_start(srv->tasks, account, tool, payload, timeout_ms, watch, id, err);
    const struct obx_mcp_task_backend *b = srv->task_backend;
    return b->start(b->userdata, account, tool->def->capability, payload, timeout_ms, watch, id,
                    err);
}

bool obx_mcp_task_wait(struct obx_mcp_server *srv, const char *id, uint64_t ms)
{
    bool found = false;
    bool ended = mem_wait(srv->tasks, id, 0, &found);
    if (found)
        return ended || mem_wait(srv->tasks, id, ms, &found);
    const struct obx_mcp_task_backend *b = srv->task_backend;
    return !b || b->wait(b->userdata, id, ms);
}

int obx_mcp_task_get(struct obx_mcp_server *srv, const char *account, const char *id,
                     struct obx_mcp_task_info *ret)
{
    if (mem_get(srv->tasks, account, id, ret))
        return 0;
    const struct obx_mcp_task_backend *b = srv->task_backend;
    if (!b)
        return -ENOENT;
    memset(ret, 0, sizeof(*ret));
    return b->get(b->userdata, account, id, ret);
}

int obx_mcp_task_cancel(struct obx_mcp_server *srv, const char *account, const char *id)
{
    if (mem_cancel(srv->tasks, account, id))
        return 0;
    const struct obx_mcp_task_backend *b = srv->task_backend;
    return b ? b->cancel(b->userdata, account, id) : -ENOENT;
}

/* ---- what clients see ---- */

static const char *status_name(enum obx_mcp_task_status s)
{
    switch (s) {
    case OBX_MCP_TASK_WORKING:
        return "working";
    case OBX_MCP_TASK_COMPLETED:
        return "completed";
    case OBX_MCP_TASK_FAILED:
        return "failed";
    case OBX_MCP_TASK_CANCELLED:
        return "cancelled";
    }
    return "failed";
}

static json_t *iso_time(int64_t unix_ms)
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(unix_ms % 1000));
    return json_string(buf);
}

json_t *obx_mcp_task_tool_result(struct obx_mcp_server *srv, struct obx_mcp_task_info *info)
{
    if (info->result && !info->capability[0])
        return json_incref(info->result);
    if (!info->result) {
        char text[sizeof(info->error.code) + sizeof(info->error.message) + 4];
        if (!info->error.code[0])
            snprintf(info->error.code, sizeof(info->error.code), "%s", OBX_ERR_EXECUTION_FAILED);
        return obx_mcp_result_error("%s", obx_error_text(&info->error, text, sizeof(text)));
    }
    const struct obx_mcp_tool_entry *tool =
        obx_mcp_catalog_by_capability(&srv->catalog, info->capability);
    if (tool)
        return tool->def->shape_result(tool, info->result, OBX_MCP_VERSION_FIRST_MODERN);
    _cleanup_free_ char *text = obx_json_dumps(info->result);
    return obx_mcp_result_text(text);
}

json_t *obx_mcp_task_json(struct obx_mcp_server *srv, const char *id,
                          struct obx_mcp_task_info *info, bool detailed)
{
    json_t *j = json_object();
    json_object_set_new(j, "taskId", json_string(id));
    json_object_set_new(j, "status", json_string(status_name(info->status)));
    if (info->message[0])
        json_object_set_new(j, "statusMessage",
                            obx_json_string_bytes(info->message, strlen(info->message)));
    json_object_set_new(j, "createdAt", iso_time(info->created_ms));
    json_object_set_new(j, "lastUpdatedAt", iso_time(info->updated_ms));
    json_object_set_new(j, "ttlMs", info->ttl_ms >= 0 ? json_integer(info->ttl_ms) : json_null());
    json_object_set_new(j, "pollIntervalMs", json_integer(POLL_INTERVAL_MS));
    if (!detailed)
        return j;
    if (info->status == OBX_MCP_TASK_COMPLETED) {
        json_t *r = obx_mcp_task_tool_result(srv, info);
        if (!json_object_get(r, "resultType"))
            json_object_set_new(r, "resultType", json_string("complete"));
        json_object_set_new(j, "result", r);
    } else if (info->status == OBX_MCP_TASK_FAILED) {
        const char *msg = info->message[0] ? info->message : "internal error";
        json_object_set_new(j, "error",
                            json_pack("{siso}", "code",
                                      info->rpc_code ? info->rpc_code : OBX_RPC_INTERNAL_ERROR,
                                      "message", obx_json_string_bytes(msg, strlen(msg))));
    }
    return j;
}

/* ---- subscriptions (subscriptions/listen with taskIds) ---- */

static bool listens_to(const struct listener *l, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(l->task_ids, i, v)
    {
        if (obx_streq(json_string_value(v), id))
            return true;
    }
    return false;
}

static json_t *notification(const json_t *task, const json_t *sub_id)
{
    json_t *params = json_deep_copy(task);
    json_object_set_new(params, "_meta", json_pack("{sO}", OBX_MCP_META_SUBSCRIPTION, sub_id));
    return obx_rpc_notification("notifications/tasks", params);
}

void obx_mcp_server_task_changed(struct obx_mcp_server *srv, const char *id)
{
    struct obx_mcp_tasks *t = srv->tasks;
    pthread_mutex_lock(&t->listen_lock);
    bool wanted = false;
    for (struct listener *l = t->listeners; l && !wanted; l = l->next)
        wanted = listens_to(l, id);
    pthread_mutex_unlock(&t->listen_lock);
    if (!wanted)
        return;
    struct obx_mcp_task_info info;
    if (obx_mcp_task_get(srv, NULL, id, &info) < 0)
        return;
    _cleanup_json_ json_t *task = obx_mcp_task_json(srv, id, &info, true);
    obx_mcp_task_info_done(&info);
    pthread_mutex_lock(&t->listen_lock);
    for (struct listener *l = t->listeners; l; l = l->next)
        if (listens_to(l, id))
            obx_mcp_session_send(l->s, l->sink, notification(task, l->id), false);
    pthread_mutex_unlock(&t->listen_lock);
}

void obx_mcp_listen_add(struct obx_mcp_server *srv, struct obx_mcp_session *s, struct sink *k,
                        json_t *id, json_t *task_ids)
{
    struct listener *l = obx_xcalloc(1, sizeof(*l));
    l->s = s;
    l->sink = k;
    l->id = json_incref(id);
    l->task_ids = json_incref(task_ids);
    struct obx_mcp_tasks *t = srv->tasks;
    pthread_mutex_lock(&t->listen_lock);
    l->next = t->listeners;
    t->listeners = l;
    pthread_mutex_unlock(&t->listen_lock);
    /* Tasks that ended already are reported at once. */
    size_t i;
    json_t *v;
    json_array_foreach(task_ids, i, v)
    {
        struct obx_mcp_task_info info;
        if (obx_mcp_task_get(srv, NULL, json_string_value(v), &info) < 0)
            continue;
        if (info.status != OBX_MCP_TASK_WORKING)
            obx_mcp_server_task_changed(srv, json_string_value(v));
        obx_mcp_task_info_done(&info);
    }
}

/* Ends the session's subscriptions (all, or the one opened by request id): each releases its
 * sink. Returns how many ended. */
unsigned obx_mcp_listen_end(struct obx_mcp_server *srv, struct obx_mcp_session *s, const json_t *id)
{
    struct obx_mcp_tasks *t = srv->tasks;
    struct listener *gone = NULL;
    pthread_mutex_lock(&t->listen_lock);
    for (struct listener **p = &t->listeners; *p;) {
        struct listener *l = *p;
        if (l->s == s && (!id || obx_rpc_id_equal(l->id, id))) {
            *p = l->next;
            l->next = gone;
            gone = l;
            continue;
        }
        p = &l->next;
    }
    pthread_mutex_unlock(&t->listen_lock);
    unsigned n = 0;
    while (gone) {
        struct listener *l = gone;
        gone = l->next;
        pthread_mutex_lock(&s->send_lock);
        obx_mcp_sink_release_locked(l->sink);
        pthread_mutex_unlock(&s->send_lock);
        json_decref(l->id);
        json_decref(l->task_ids);
        free(l);
        n++;
    }
    return n;
}
