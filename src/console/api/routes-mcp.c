/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MCP over Streamable HTTP at /mcp (MCP 2025-03-26 .. 2025-11-25 transports): the same MCP core
 * as stdio (src/mcp/), with a session per initialize, owned by the account of the bearer token.
 *
 * Threads. Handlers run on console pool threads: they check Host and Origin, the token and the
 * headers, find the session and hand the POST body to it with a sink of its own (an exchange).
 * Quick methods answer through the sink before the handler returns; tools/call answers from the
 * call's own thread, so the handler returns OBX_ROUTE_ASYNC and no thread waits for a tool. An
 * exchange holds its answer back until the first notification or the response: a response alone
 * goes out as application/json, anything else turns the answer into an SSE stream (progress and
 * log notifications while the call runs, then the response), which ends with the last message.
 *
 * Sessions. The table (m->lock) maps a random id to the session, its account, how many POSTs of
 * it are unanswered (busy) and when it was last used. A handler holds a reference while it uses
 * a session; the last reference frees it, always on a pool thread (obx_mcp_session_free() cancels
 * calls in flight and waits for their threads, which answer their POSTs on the way out). Idle
 * sessions expire; a new one beyond the limits replaces the account's (or anyone's) least
 * recently used idle session. Lock order: a session's send lock, then m->lock, then the HTTP
 * server's; m->lock is never held while calling into a session.
 */
#include "console/console-internal.h"

#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "common/random.h"
#include "console/util/console-util.h"
#include "mcp/mcp.h"

#define SESSION_ID_BYTES 16 /* 32 hex characters */
#define MSG_NO_CAPACITY "no online worker capacity for requested capability"
/* The account of /mcp requests without a token under CONSOLE_MCP_TEST_FIXTURES. */
#define TEST_ACCOUNT "mcp-test"

struct entry {
    char id[2 * SESSION_ID_BYTES + 1];
    char account[sizeof(((struct obx_account *)0)->id)];
    struct obx_mcp_session *s;
    struct entry *next;
    /* under m->lock */
    unsigned refs;      /* the table's while listed, and each handler's */
    unsigned busy;      /* POSTs not answered yet */
    uint64_t last_used; /* monotonic ms, for the idle timeout */
    uint64_t use_seq;   /* m->use_clock at the last use: orders by recency even within one ms */
    bool ready;         /* initialized: lookups find it */
    bool listed;        /* in the table */
};

struct obx_console_mcp {
    struct obx_console *console;
    struct obx_executor executor; /* mcp_exec() finds m from it by offsetof */
    struct obx_mcp_server *srv;
    bool loopback;  /* listening on loopback only: Host must name this host */
    bool open;      /* tests: no token needed */
    char **origins; /* CONSOLE_MCP_ALLOWED_ORIGINS, lower-cased, NULL-terminated */
    unsigned max_sessions, max_per_account;
    uint64_t idle_ms;

    pthread_mutex_t lock;
    struct entry *entries;
    unsigned n_entries;
    uint64_t use_clock;

    /* Keepalive: POSTs still open, so that a long silent call does not leave the client (or a
     * proxy) waiting for headers or bytes until it gives up. Lock order: xlock, then an
     * exchange's lock. */
    uint64_t keepalive_ms; /* 0: off */
    pthread_mutex_t xlock;
    pthread_cond_t xcond;
    struct exchange *open_exchanges; /* under xlock */
    bool stopping;                   /* under xlock */
    pthread_t keepalive_thread;
    bool keepalive_started;
};

/* Marks e used now; m->lock held. */
static void touch_locked(struct obx_console_mcp *m, struct entry *e)
{
    e->last_used = obx_now_ms();
    e->use_seq = ++m->use_clock;
}

/* ---- the executor: the console's dispatcher, with terminal sessions scoped to the account ---- */

static bool scoped_capability(const char *capability)
{
    return obx_streq(capability, "terminalexec") || obx_streq(capability, "terminalresource");
}

/* The payload with session_id "obx:<account>:<id>", the form the REST API uses too, so another
 * account's id names no session of this one. */
static json_t *scope_payload(const char *capability, json_t *payload, const char *account)
{
    const char *sid = obx_json_get_str(payload, "session_id", NULL);
    if (!scoped_capability(capability) || !sid)
        return json_incref(payload);
    json_t *out = json_copy(payload);
    json_object_set_new(out, "session_id", json_sprintf("obx:%s:%s", account, sid));
    return out;
}

static int mcp_exec(struct obx_executor *self, const char *capability, json_t *payload,
                    struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    struct obx_console_mcp *m =
        (struct obx_console_mcp *)((char *)self - offsetof(struct obx_console_mcp, executor));
    _cleanup_json_ json_t *scoped = scope_payload(capability, payload, call->account);
    int r = obx_dispatch_exec(m->console->dispatch, capability, scoped, call, ret_result, err);
    if (r < 0 && obx_streq(err->code, OBX_ERR_NO_CAPACITY) && !strstr(err->message, "session"))
        snprintf(err->message, sizeof(err->message), "%s", MSG_NO_CAPACITY);
    if (r >= 0 && obx_task_unscope_result(capability, *ret_result, call->account) < 0) {
        json_decref(TAKE_PTR(*ret_result));
        return obx_error_set(err, EPERM, OBX_ERR_SESSION_NOT_FOUND, "session not found");
    }
    return r;
}

/* ---- session table ---- */

/* Drops a reference; the last one frees the session. Not under m->lock. */
static void entry_unref(struct obx_console_mcp *m, struct entry *e)
{
    pthread_mutex_lock(&m->lock);
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&m->lock);
    if (!last)
        return;
    obx_mcp_session_free(e->s);
    free(e);
}

/* Takes e out of the table; the caller drops the table's reference afterwards. */
static void unlist_locked(struct obx_console_mcp *m, struct entry *e)
{
    for (struct entry **p = &m->entries; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            break;
        }
    e->listed = false;
    m->n_entries--;
}

static bool idle_locked(const struct entry *e)
{
    return e->busy == 0 && e->refs == 1;
}

/* Expires idle sessions (the conformance suite and crashed clients never say goodbye). */
static void sweep(struct obx_console_mcp *m)
{
    struct entry *expired = NULL;
    pthread_mutex_lock(&m->lock);
    /* Read the clock under the lock: a request that ended just before we took it may have set
     * last_used after a clock read taken earlier, and now - last_used would wrap around and
     * expire a session in use. */
    uint64_t now = obx_now_ms();
    for (struct entry *e = m->entries, *next; e; e = next) {
        next = e->next;
        if (e->ready && idle_locked(e) && now - e->last_used > m->idle_ms) {
            unlist_locked(m, e);
            e->next = expired;
            expired = e;
        }
    }
    pthread_mutex_unlock(&m->lock);
    while (expired) {
        struct entry *e = expired;
        expired = e->next;
        obx_debug("mcp: session of account %s expired after %llu s idle", e->account,
                  (unsigned long long)(m->idle_ms / 1000));
        entry_unref(m, e);
    }
}

/* The least recently used idle session, of account when it is not NULL. */
static struct entry *lru_idle_locked(struct obx_console_mcp *m, const char *account)
{
    struct entry *best = NULL;
    for (struct entry *e = m->entries; e; e = e->next)
        if (e->ready && idle_locked(e) && (!account || obx_streq(e->account, account)) &&
            (!best || e->use_seq < best->use_seq))
            best = e;
    return best;
}

/* Takes the least recently used idle session (of account, unless NULL) out of the table onto
 * *victims; false when there is none. */
static bool evict_locked(struct obx_console_mcp *m, const char *account, struct entry **victims)
{
    struct entry *v = lru_idle_locked(m, account);
    if (!v)
        return false;
    unlist_locked(m, v);
    v->next = *victims;
    *victims = v;
    return true;
}

/* A new, not yet visible session for account, with a reference for the caller and one busy POST;
 * NULL when the limits are reached and every session in the way is busy. */
static struct entry *session_create(struct obx_console_mcp *m, const char *account)
{
    struct entry *victims = NULL, *e = NULL;
    pthread_mutex_lock(&m->lock);
    unsigned mine = 0;
    for (struct entry *x = m->entries; x; x = x->next)
        mine += obx_streq(x->account, account);
    bool room = mine < m->max_per_account || evict_locked(m, account, &victims);
    room = room && (m->n_entries < m->max_sessions || evict_locked(m, NULL, &victims));
    if (room) {
        e = obx_xcalloc(1, sizeof(*e));
        obx_random_hex(e->id, SESSION_ID_BYTES);
        snprintf(e->account, sizeof(e->account), "%s", account);
        struct obx_mcp_session_config sc = {.account = account};
        e->s = obx_mcp_session_new_with(m->srv, &sc);
        e->refs = 2; /* the table's and the caller's */
        e->busy = 1;
        touch_locked(m, e);
        e->listed = true;
        e->next = m->entries;
        m->entries = e;
        m->n_entries++;
    }
    pthread_mutex_unlock(&m->lock);
    while (victims) {
        struct entry *v = victims;
        victims = v->next;
        obx_info("mcp: too many sessions; closing the least recently used one of account %s",
                 v->account);
        entry_unref(m, v);
    }
    return e;
}

/* The account's initialized session with this id, with a reference (and, for a POST, one more
 * busy request); NULL for an unknown id, a terminated session or another account's. */
static struct entry *session_find(struct obx_console_mcp *m, const char *id, const char *account,
                                  bool post)
{
    struct entry *found = NULL;
    pthread_mutex_lock(&m->lock);
    for (struct entry *e = m->entries; e && !found; e = e->next)
        if (e->ready && obx_streq(e->id, id) && obx_streq(e->account, account))
            found = e;
    if (found) {
        found->refs++;
        found->busy += post;
        touch_locked(m, found);
    }
    pthread_mutex_unlock(&m->lock);
    return found;
}

/* Makes a new session visible, or removes it when initialize failed. */
static void session_publish(struct obx_console_mcp *m, struct entry *e, bool ok)
{
    pthread_mutex_lock(&m->lock);
    bool drop = !ok && e->listed;
    if (ok)
        e->ready = true;
    else if (drop)
        unlist_locked(m, e);
    pthread_mutex_unlock(&m->lock);
    if (drop)
        entry_unref(m, e); /* the table's; the caller still holds its own */
}

/* DELETE: terminated at once; calls in flight are cancelled when the last reference goes. */
static bool session_terminate(struct obx_console_mcp *m, struct entry *e)
{
    pthread_mutex_lock(&m->lock);
    bool was = e->listed;
    if (was)
        unlist_locked(m, e);
    pthread_mutex_unlock(&m->lock);
    if (was)
        entry_unref(m, e);
    return was;
}

/* ---- one POST: an exchange and its sink ---- */

struct exchange {
    struct obx_console_mcp *m;
    struct obx_http_request *req; /* the completion reference */
    struct entry *e;              /* one of e->busy */
    pthread_mutex_t lock;
    unsigned holds;      /* the handler's and the sink's */
    bool sse_only;       /* Accept admits text/event-stream but not application/json */
    bool sse_ok;         /* Accept admits text/event-stream */
    bool streaming;      /* the SSE head went out */
    uint64_t last_write; /* monotonic ms: the POST came, or the stream last carried bytes */
    struct exchange *prev, *next; /* in m->open_exchanges, under m->xlock */
    char *held;                   /* the response, held for an application/json answer */
    char session_id[40];          /* Mcp-Session-Id for the answer, "" for none */
};

static void stream_event(struct exchange *x, const char *json)
{
    _cleanup_free_ char *ev = obx_xasprintf("event: message\ndata: %s\n\n", json);
    obx_http_stream_write(x->req, ev, strlen(ev));
    x->last_write = obx_now_ms();
}

static void add_session_header(struct exchange *x)
{
    if (x->session_id[0])
        obx_http_response_add_header(x->req, "mcp-session-id", x->session_id);
}

/* Under x->lock. */
static void stream_start_locked(struct exchange *x)
{
    struct obx_http_response *r = &x->req->resp;
    r->status = 200;
    r->content_type = "text/event-stream";
    obx_http_response_add_header(x->req, "cache-control", "no-cache");
    obx_http_response_add_header(x->req, "x-accel-buffering", "no");
    add_session_header(x);
    obx_http_stream_start(x->req);
    x->streaming = true;
    if (x->held)
        stream_event(x, x->held);
    free(TAKE_PTR(x->held));
}

static void sink_send(void *userdata, const char *json, bool response)
{
    struct exchange *x = userdata;
    pthread_mutex_lock(&x->lock);
    if (!x->streaming && response && !x->held && !x->sse_only) {
        x->held = obx_xstrdup(json);
    } else {
        if (!x->streaming)
            stream_start_locked(x);
        stream_event(x, json);
    }
    pthread_mutex_unlock(&x->lock);
}

static void respond_rpc_error(struct obx_http_request *req, int status, int code, const char *msg)
{
    /* msg may quote a header, and a header is any bytes: json_pack() would refuse invalid UTF-8
     * (a NULL body, which aborts), so the text goes through obx_json_string_bytes(). */
    obx_http_respond_json(req, status,
                          json_pack("{s:s, s:{s:i, s:o}, s:n}", "jsonrpc", "2.0", "error", "code",
                                    code, "message", obx_json_string_bytes(msg, strlen(msg)),
                                    "id"));
}

/* Answers the POST once the sink closed and the handler let go. */
static void exchange_finish(struct exchange *x)
{
    struct obx_console_mcp *m = x->m;
    pthread_mutex_lock(&m->xlock);
    if (x->prev)
        x->prev->next = x->next;
    else
        m->open_exchanges = x->next;
    if (x->next)
        x->next->prev = x->prev;
    pthread_mutex_unlock(&m->xlock);

    pthread_mutex_lock(&m->lock);
    x->e->busy--;
    touch_locked(m, x->e);
    bool gone = !x->e->listed;
    pthread_mutex_unlock(&m->lock);

    if (x->streaming) {
        obx_http_stream_end(x->req);
    } else {
        if (x->held) {
            char *body = TAKE_PTR(x->held);
            obx_http_respond_raw(x->req, 200, "application/json", body, strlen(body));
            add_session_header(x);
        } else if (gone) {
            /* The session was terminated while the request ran: it got no answer. */
            respond_rpc_error(x->req, 404, -32001, "Session not found");
        } else {
            obx_http_respond_empty(x->req, 202); /* notifications and responses only */
        }
        obx_http_request_complete(x->req);
    }
    pthread_mutex_destroy(&x->lock);
    free(x);
}

static void exchange_release(struct exchange *x)
{
    pthread_mutex_lock(&x->lock);
    bool last = --x->holds == 0;
    pthread_mutex_unlock(&x->lock);
    if (last)
        exchange_finish(x);
}

static void sink_close(void *userdata)
{
    exchange_release(userdata);
}

/* ---- requests ---- */

static bool local_host(const struct obx_console_mcp *m, const char *host)
{
    return obx_streq(host, "localhost") || obx_streq(host, "127.0.0.1") || obx_streq(host, "::1") ||
           obx_streq(host, m->console->cfg->http_host);
}

static bool origin_listed(const struct obx_console_mcp *m, const char *origin, bool by_host)
{
    char want[256], have[256];
    if (by_host && obx_console_authority_host(origin, want, sizeof(want)) < 0)
        return false;
    for (char **o = m->origins; *o; o++) {
        if (!by_host && strcasecmp(*o, origin) == 0)
            return true;
        const char *a = strstr(*o, "://");
        if (by_host && a && obx_console_authority_host(a + 3, have, sizeof(have)) == 0 &&
            strcmp(want, have) == 0)
            return true;
    }
    return false;
}

/* DNS rebinding protection (MCP transports, Security Warning): the reason for a 403, or NULL. */
static const char *check_origin(const struct obx_console_mcp *m, const struct obx_http_request *r)
{
    char host[256];
    if (m->loopback && r->host &&
        (obx_console_authority_host(r->host, host, sizeof(host)) < 0 ||
         !(local_host(m, host) || origin_listed(m, r->host, true))))
        return "Forbidden: invalid Host header";
    if (!r->origin || origin_listed(m, r->origin, false))
        return NULL;
    const char *a = strstr(r->origin, "://");
    if (a && r->host && strcasecmp(a + 3, r->host) == 0)
        return NULL; /* same origin */
    return "Forbidden: invalid Origin header";
}

/* True when the Content-Type is application/json, with or without parameters. */
static bool json_content(const char *ct)
{
    size_t n = strlen("application/json");
    return ct && strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static enum obx_route_result mcp_post(struct obx_route_ctx *ctx, struct obx_console_mcp *m,
                                      const char *account)
{
    struct obx_http_request *req = ctx->req;
    bool json_ok = !req->accept || obx_console_accepts(req->accept, "application/json");
    bool sse_ok = req->accept && obx_console_accepts(req->accept, "text/event-stream");
    if (!json_ok && !sse_ok) {
        respond_rpc_error(req, 406, -32000,
                          "Not Acceptable: Client must accept application/json and "
                          "text/event-stream");
        return OBX_ROUTE_DONE;
    }
    if (!json_content(req->content_type)) {
        respond_rpc_error(req, 415, -32000,
                          "Unsupported Media Type: Content-Type must be application/json");
        return OBX_ROUTE_DONE;
    }
    char why[200];
    enum obx_mcp_message_kind kind =
        obx_mcp_message_kind(req->body, req->body_len, why, sizeof(why));
    if (kind == OBX_MCP_MESSAGE_UNPARSABLE) {
        /* The parser's words ("parse error: invalid UTF-8", "...: JSON nesting deeper than 64
         * levels") after the transport's "Parse error: ". */
        const char *reason = strncmp(why, "parse error: ", 13) == 0 ? why + 13 : why;
        _cleanup_free_ char *msg = obx_xasprintf("Parse error: %s", reason);
        respond_rpc_error(req, 400, -32700, msg);
        return OBX_ROUTE_DONE;
    }
    struct entry *e;
    bool fresh = !req->mcp_session_id;
    if (fresh) {
        if (kind != OBX_MCP_MESSAGE_INITIALIZE) {
            respond_rpc_error(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
            return OBX_ROUTE_DONE;
        }
        e = session_create(m, account);
        if (!e) {
            respond_rpc_error(req, 503, -32000,
                              "Service Unavailable: too many MCP sessions in use; end one "
                              "(HTTP DELETE) or try again later");
            return OBX_ROUTE_DONE;
        }
    } else {
        e = session_find(m, req->mcp_session_id, account, true);
        if (!e) {
            respond_rpc_error(req, 404, -32001, "Session not found");
            return OBX_ROUTE_DONE;
        }
        if (req->mcp_protocol && !obx_mcp_version_supported(req->mcp_protocol)) {
            _cleanup_free_ char *msg = obx_xasprintf(
                "Bad Request: Unsupported protocol version: %.64s (supported versions: %s)",
                req->mcp_protocol, obx_mcp_versions_text());
            respond_rpc_error(req, 400, -32000, msg);
            pthread_mutex_lock(&m->lock);
            e->busy--;
            pthread_mutex_unlock(&m->lock);
            entry_unref(m, e);
            return OBX_ROUTE_DONE;
        }
    }

    struct exchange *x = obx_xcalloc(1, sizeof(*x));
    x->m = m;
    x->req = req;
    x->e = e;
    pthread_mutex_init(&x->lock, NULL);
    x->holds = 2;
    x->sse_only = !json_ok;
    x->sse_ok = sse_ok;
    x->last_write = obx_now_ms();
    pthread_mutex_lock(&m->xlock);
    x->next = m->open_exchanges;
    if (x->next)
        x->next->prev = x;
    m->open_exchanges = x;
    pthread_mutex_unlock(&m->xlock);
    if (fresh)
        snprintf(x->session_id, sizeof(x->session_id), "%s", e->id);
    struct obx_mcp_sink sink = {.send = sink_send, .close = sink_close, .userdata = x};
    obx_mcp_session_handle_sink(e->s, req->body, req->body_len, &sink);
    if (fresh) {
        bool ok = obx_mcp_session_initialized(e->s);
        if (ok)
            obx_debug("mcp: new session for account %s", account);
        else {
            pthread_mutex_lock(&x->lock);
            x->session_id[0] = '\0'; /* unless already streamed: then the id names nothing */
            pthread_mutex_unlock(&x->lock);
        }
        session_publish(m, e, ok);
    }
    exchange_release(x);
    entry_unref(m, e);
    return OBX_ROUTE_ASYNC;
}

static enum obx_route_result mcp_delete(struct obx_route_ctx *ctx, struct obx_console_mcp *m,
                                        const char *account)
{
    struct obx_http_request *req = ctx->req;
    if (!req->mcp_session_id) {
        respond_rpc_error(req, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
        return OBX_ROUTE_DONE;
    }
    struct entry *e = session_find(m, req->mcp_session_id, account, false);
    if (!e || !session_terminate(m, e)) {
        if (e)
            entry_unref(m, e);
        respond_rpc_error(req, 404, -32001, "Session not found");
        return OBX_ROUTE_DONE;
    }
    entry_unref(m, e); /* the last one, unless a POST still runs: it ends the session then */
    obx_http_respond_empty(req, 200);
    return OBX_ROUTE_DONE;
}

static enum obx_route_result mcp_route(struct obx_route_ctx *ctx)
{
    struct obx_console_mcp *m = ctx->console->mcp;
    struct obx_http_request *req = ctx->req;
    const char *why = check_origin(m, req);
    if (why) {
        respond_rpc_error(req, 403, -32000, why);
        return OBX_ROUTE_DONE;
    }
    const char *account = TEST_ACCOUNT;
    if (!m->open || req->authorization) {
        if (!obx_route_auth_bearer(ctx))
            return OBX_ROUTE_DONE;
        account = ctx->account.id;
    }
    sweep(m);
    switch (req->method) {
    case OBX_HTTP_POST:
        return mcp_post(ctx, m, account);
    case OBX_HTTP_DELETE:
        return mcp_delete(ctx, m, account);
    default:
        /* No server-initiated stream: every message answers a POST (GET may be 405). */
        respond_rpc_error(req, 405, -32000, "Method Not Allowed");
        obx_http_response_add_header(req, "allow", "POST, DELETE");
        return OBX_ROUTE_DONE;
    }
}

const struct obx_route obx_mcp_routes[] = {
    {OBX_HTTP_POST, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
    {OBX_HTTP_GET, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
    {OBX_HTTP_DELETE, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
    {OBX_HTTP_HEAD, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
    {OBX_HTTP_PUT, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
    {OBX_HTTP_PATCH, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
    {OBX_HTTP_OPTIONS, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
    {OBX_HTTP_OTHER, "/mcp", OBX_ROUTE_AUTH_NONE, mcp_route},
};
const size_t obx_mcp_routes_n = OBX_ARRAY_SIZE(obx_mcp_routes);

/* ---- keepalive ---- */

/* Every open POST whose client accepts SSE and that carried nothing for keepalive_ms becomes an
 * event stream (its head goes out) and gets an SSE comment line, which clients ignore; the answer
 * follows as an event when it comes. */
static void keepalive_tick(struct obx_console_mcp *m)
{
    for (struct exchange *x = m->open_exchanges; x; x = x->next) {
        pthread_mutex_lock(&x->lock);
        /* Read under x->lock: last_write is never later than now. */
        uint64_t now = obx_now_ms();
        if (x->sse_ok && !x->held && now - x->last_write >= m->keepalive_ms) {
            if (!x->streaming)
                stream_start_locked(x);
            static const char comment[] = ": keepalive\n\n";
            obx_http_stream_write(x->req, comment, sizeof(comment) - 1);
            x->last_write = now;
        }
        pthread_mutex_unlock(&x->lock);
    }
}

static void *keepalive_main(void *arg)
{
    struct obx_console_mcp *m = arg;
    uint64_t step = m->keepalive_ms / 4 > 1000 ? 1000 : m->keepalive_ms / 4 + 1;
    pthread_mutex_lock(&m->xlock);
    while (!m->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(step / 1000);
        ts.tv_nsec += (long)(step % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&m->xcond, &m->xlock, &ts);
        if (!m->stopping)
            keepalive_tick(m);
    }
    pthread_mutex_unlock(&m->xlock);
    return NULL;
}

/* ---- lifetime ---- */

static char **parse_origins(const char *list)
{
    size_t n = 0;
    char **out = obx_xcalloc(1, sizeof(*out));
    _cleanup_free_ char *copy = obx_xstrdup(list ? list : "");
    char *save = NULL;
    for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        size_t len = strlen(t);
        while (len > 0 && t[len - 1] == '/')
            t[--len] = '\0';
        if (!len)
            continue;
        out = obx_xrealloc(out, (n + 2) * sizeof(*out));
        out[n++] = obx_console_lower(t);
        out[n] = NULL;
    }
    return out;
}

struct obx_console_mcp *obx_console_mcp_new(struct obx_console *c)
{
    const struct obx_console_config *cfg = c->cfg;
    struct obx_console_mcp *m = obx_xcalloc(1, sizeof(*m));
    m->console = c;
    m->executor.exec = mcp_exec;
    struct obx_mcp_server_config sc = {
        .name = "onlyboxes-console",
        .executor = &m->executor,
        .fixtures = cfg->mcp_test_fixtures,
    };
    m->srv = obx_mcp_server_new(&sc);
    m->loopback = obx_net_host_is_loopback(cfg->http_host);
    m->open = cfg->mcp_test_fixtures;
    m->origins = parse_origins(cfg->mcp_allowed_origins);
    m->max_sessions = (unsigned)cfg->mcp_max_sessions;
    m->max_per_account = (unsigned)cfg->mcp_max_sessions_per_account;
    m->idle_ms = (uint64_t)cfg->mcp_session_idle_sec * 1000;
    pthread_mutex_init(&m->lock, NULL);
    m->keepalive_ms = (uint64_t)cfg->mcp_keepalive_sec * 1000;
    pthread_mutex_init(&m->xlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->xcond, &ca);
    pthread_condattr_destroy(&ca);
    if (m->keepalive_ms)
        m->keepalive_started = pthread_create(&m->keepalive_thread, NULL, keepalive_main, m) == 0;
    if (m->open)
        obx_warn("CONSOLE_MCP_TEST_FIXTURES: /mcp accepts requests without a token (tests only)");
    return m;
}

void obx_console_mcp_free(struct obx_console_mcp *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->xlock);
    m->stopping = true;
    pthread_cond_broadcast(&m->xcond);
    pthread_mutex_unlock(&m->xlock);
    if (m->keepalive_started)
        pthread_join(m->keepalive_thread, NULL);
    pthread_mutex_lock(&m->lock);
    struct entry *list = TAKE_PTR(m->entries);
    for (struct entry *e = list; e; e = e->next)
        e->listed = false;
    m->n_entries = 0;
    pthread_mutex_unlock(&m->lock);
    while (list) {
        struct entry *e = list;
        list = e->next;
        entry_unref(m, e);
    }
    obx_mcp_server_free(m->srv);
    for (char **o = m->origins; *o; o++)
        free(*o);
    free(m->origins);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->xcond);
    pthread_mutex_destroy(&m->xlock);
    free(m);
}
