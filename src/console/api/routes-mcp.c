/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MCP over Streamable HTTP at /mcp: the same MCP core as stdio (src/mcp/), both eras on one
 * endpoint. Every request is owned by the account of its bearer token.
 *
 * Eras. The core classifies each POST (obx_mcp_inbound_classify()): a modern request (protocol
 * 2026-07-28, its version and capabilities in _meta) is served on a session of its own that
 * lives as long as the exchange (stateless; closing its stream cancels it); a legacy initialize
 * opens a session (Mcp-Session-Id) as in 2025-03-26 .. 2025-11-25; any other legacy request is
 * served in the session it names or, without Mcp-Session-Id, on a session of its own as the
 * version its MCP-Protocol-Version header names (hand-written callers and proxies rely on this).
 *
 * Session ids carry a MAC of the account under the console's hash key, so after a restart (or
 * once a session expired) a request naming an id this console minted for the account is served
 * in a fresh session as if nothing happened; only an id that was never minted for the account, or
 * one the client ended with DELETE, answers 404.
 *
 * Threads. Handlers run on console pool threads: they check Host and Origin, the token and the
 * headers, find or make the session and hand the POST body to it with a sink of its own (an
 * exchange). Quick methods answer through the sink before the handler returns; tools/call answers
 * from the call's own thread, so the handler returns OBX_ROUTE_ASYNC and no thread waits for a
 * tool. An exchange holds its answer back until the first notification or the response: a
 * response alone goes out as application/json, anything else turns the answer into an SSE stream
 * (progress and log notifications while the call runs, then the response), which ends with the
 * last message.
 *
 * The table (m->lock) maps ids to sessions with their account, how many POSTs of them are
 * unanswered (busy) and when they were last used; stateless sessions are in it too, invisible to
 * lookups. A holder (the table, a handler, an exchange) keeps a reference; the last one frees the
 * session, never on a call's thread: an exchange that ends hands its reference to the janitor
 * thread, which also cancels the modern requests whose clients went away, expires idle sessions
 * and keeps silent streams alive. Lock order: a session's send lock, then m->xlock or m->lock,
 * then the HTTP server's; m->lock is never held while calling into a session.
 */
#include "api.h"

#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "common/random.h"
#include "common/thread.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"
#include "mcp/mcp.h"

#define SESSION_RANDOM_BYTES 16 /* 32 hex characters, then 24 of MAC */
#define SESSION_MAC_HEX 24
#define SESSION_ID_LEN (2 * SESSION_RANDOM_BYTES + SESSION_MAC_HEX)
#define DELETED_KEPT 256  /* ended ids remembered, to answer 404 for them */
#define MAX_STATELESS 256 /* requests without a session in flight, per account */
#define JANITOR_STEP_MS 200
#define STOP_WAIT_MS 30000 /* at shutdown, for cancelled calls to end */
#define MSG_NO_CAPACITY "no online worker capacity for requested capability"
#define MSG_SESSION_NOT_FOUND                                                               \
    "Session not found: it was ended, or was never opened for this token; send initialize " \
    "without Mcp-Session-Id to start a new one"
/* The account of /mcp requests without a token under CONSOLE_MCP_TEST_FIXTURES. */
#define TEST_ACCOUNT "mcp-test"

struct entry {
    char id[SESSION_ID_LEN + 1]; /* "" for a stateless one */
    char account[sizeof(((struct obx_account *)0)->id)];
    struct obx_mcp_session *s;
    struct entry *next;
    /* under m->lock */
    unsigned refs;      /* the table's while listed, and each handler's */
    unsigned busy;      /* POSTs not answered yet */
    unsigned buried;    /* references of answered POSTs the janitor has yet to drop */
    uint64_t last_used; /* monotonic ms, for the idle timeout */
    uint64_t use_seq;   /* m->use_clock at the last use: orders by recency even within one ms */
    bool ready;         /* initialized: lookups find it */
    bool listed;        /* in the table */
    bool stateless;     /* one request's session: never found, never counted as a session */
};

/* A reference to drop: one per ended exchange (a session may have several). */
struct grave {
    struct entry *e;
    struct grave *next;
};

struct obx_console_mcp {
    struct obx_console *console;
    struct obx_executor executor; /* mcp_exec() finds m from it by offsetof */
    struct obx_mcp_task_backend tasks;
    struct obx_mcp_server *srv;
    bool loopback;  /* listening on loopback only: Host must name this host */
    bool open;      /* tests: no token needed */
    char **origins; /* CONSOLE_MCP_ALLOWED_ORIGINS, lower-cased, NULL-terminated */
    unsigned max_sessions, max_per_account;
    uint64_t idle_ms;

    pthread_mutex_t lock;
    struct entry *entries;
    unsigned n_entries; /* sessions, not counting stateless ones */
    uint64_t use_clock;
    char deleted[DELETED_KEPT][SESSION_ID_LEN + 1]; /* ended with DELETE, a ring */
    unsigned deleted_next;

    /* The janitor: POSTs still open (keepalive comments for silent ones, so a long call does not
     * leave the client or a proxy waiting for bytes until it gives up; cancels for modern ones
     * whose client left) and references to drop. Lock order: xlock, then an exchange's lock. */
    uint64_t keepalive_ms; /* 0: off */
    pthread_mutex_t xlock;
    pthread_cond_t xcond;
    struct exchange *open_exchanges; /* under xlock */
    struct grave *graveyard;         /* under xlock: references ended exchanges held */
    bool stopping;                   /* under xlock */
    pthread_t janitor;
    bool janitor_started;
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
    return obx_streq(capability, "terminalexec") || obx_streq(capability, "terminalresource") ||
           obx_streq(capability, "pythonexec");
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
    if (obx_streq(capability, "exportfile")) /* the console keeps the file (routes-export.c) */
        return obx_console_export_run(m->console, payload, call, ret_result, err);
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

/* Drops a reference; the last one frees the session. Not under m->lock, never on a call's
 * thread. */
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
    if (!e->stateless)
        m->n_entries--;
}

static bool idle_locked(const struct entry *e)
{
    return e->busy == 0 && e->refs == 1 + e->buried;
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

/* The MAC part of a session id: binds the random part to the account under the hash key. */
static void session_mac(const struct obx_console_mcp *m, const char *account, const char *random,
                        char mac[SESSION_MAC_HEX + 1])
{
    _cleanup_free_ char *msg = obx_xasprintf("mcp-session\n%s\n%s", account, random);
    char full[65];
    obx_auth_hmac_hex(m->console->cfg->hash_key, msg, strlen(msg), full);
    memcpy(mac, full, SESSION_MAC_HEX);
    mac[SESSION_MAC_HEX] = '\0';
}

static void session_id_new(const struct obx_console_mcp *m, const char *account,
                           char id[SESSION_ID_LEN + 1])
{
    char random[2 * SESSION_RANDOM_BYTES + 1], mac[SESSION_MAC_HEX + 1];
    obx_random_hex(random, SESSION_RANDOM_BYTES);
    session_mac(m, account, random, mac);
    snprintf(id, SESSION_ID_LEN + 1, "%s%s", random, mac);
}

/* True for an id this console (or one with the same hash key) minted for the account. */
static bool session_id_ours(const struct obx_console_mcp *m, const char *account, const char *id)
{
    if (strlen(id) != SESSION_ID_LEN)
        return false;
    char random[2 * SESSION_RANDOM_BYTES + 1], mac[SESSION_MAC_HEX + 1];
    memcpy(random, id, 2 * SESSION_RANDOM_BYTES);
    random[2 * SESSION_RANDOM_BYTES] = '\0';
    session_mac(m, account, random, mac);
    return obx_auth_equal(mac, id + 2 * SESSION_RANDOM_BYTES, SESSION_MAC_HEX);
}

static bool deleted_locked(const struct obx_console_mcp *m, const char *id)
{
    for (size_t i = 0; i < DELETED_KEPT; i++)
        if (strcmp(m->deleted[i], id) == 0)
            return true;
    return false;
}

/* A new entry listed for account, with a reference for the table and one for the caller, and
 * one busy POST; m->lock held. */
static struct entry *entry_new_locked(struct obx_console_mcp *m, const char *account,
                                      bool stateless)
{
    struct entry *e = obx_xcalloc(1, sizeof(*e));
    snprintf(e->account, sizeof(e->account), "%s", account);
    struct obx_mcp_session_config sc = {.account = account};
    e->s = obx_mcp_session_new_with(m->srv, &sc);
    e->refs = 2;
    e->busy = 1;
    e->stateless = stateless;
    touch_locked(m, e);
    e->listed = true;
    e->next = m->entries;
    m->entries = e;
    m->n_entries += !stateless;
    return e;
}

/* A new session for account (id: the one it had before, or NULL for a new one), listed with a
 * reference for the caller and one busy POST, visible to lookups only when ready. NULL when the
 * limits are reached and every session in the way is busy. */
static struct entry *session_create(struct obx_console_mcp *m, const char *account, const char *id,
                                    bool ready)
{
    struct entry *victims = NULL, *e = NULL;
    pthread_mutex_lock(&m->lock);
    unsigned mine = 0;
    for (struct entry *x = m->entries; x; x = x->next)
        mine += !x->stateless && obx_streq(x->account, account);
    bool room = mine < m->max_per_account || evict_locked(m, account, &victims);
    room = room && (m->n_entries < m->max_sessions || evict_locked(m, NULL, &victims));
    if (room) {
        e = entry_new_locked(m, account, false);
        if (id)
            snprintf(e->id, sizeof(e->id), "%s", id);
        else
            session_id_new(m, account, e->id);
        e->ready = ready;
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

/* A session for one request, for account: listed (so shutdown finds it) but never looked up,
 * with a reference for the caller and one busy POST. NULL past MAX_STATELESS in flight. */
static struct entry *stateless_create(struct obx_console_mcp *m, const char *account)
{
    struct entry *e = NULL;
    pthread_mutex_lock(&m->lock);
    unsigned mine = 0;
    for (struct entry *x = m->entries; x; x = x->next)
        mine += x->stateless && obx_streq(x->account, account);
    if (mine < MAX_STATELESS)
        e = entry_new_locked(m, account, true);
    pthread_mutex_unlock(&m->lock);
    return e;
}

/* The account's session with this id, with a reference (and, for a POST, one more busy
 * request): the one in the table, or, for an id we minted for the account that was not ended
 * with DELETE, a fresh one in its place (version: what the request's header names). NULL for
 * anything else. */
static struct entry *session_find(struct obx_console_mcp *m, const char *id, const char *account,
                                  bool post, const char *version)
{
    struct entry *found = NULL;
    pthread_mutex_lock(&m->lock);
    for (struct entry *e = m->entries; e && !found; e = e->next)
        if (e->ready && !e->stateless && obx_streq(e->id, id) && obx_streq(e->account, account))
            found = e;
    if (found) {
        found->refs++;
        found->busy += post;
        touch_locked(m, found);
    }
    bool gone = !found && deleted_locked(m, id);
    pthread_mutex_unlock(&m->lock);
    if (found || gone || !post || !session_id_ours(m, account, id))
        return found;
    found = session_create(m, account, id, false);
    if (!found)
        return NULL;
    if (obx_mcp_session_assume(found->s,
                               obx_mcp_version_supported(version) ? version : "2025-03-26") < 0)
        obx_mcp_session_assume(found->s, "2025-03-26");
    pthread_mutex_lock(&m->lock);
    found->ready = true;
    pthread_mutex_unlock(&m->lock);
    obx_debug("mcp: session of account %s resumed (%s)", account,
              obx_mcp_session_version_name(found->s));
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
    snprintf(m->deleted[m->deleted_next], sizeof(m->deleted[0]), "%s", e->id);
    m->deleted_next = (m->deleted_next + 1) % DELETED_KEPT;
    pthread_mutex_unlock(&m->lock);
    if (was)
        entry_unref(m, e);
    return was;
}

/* ---- one POST: an exchange and its sink ---- */

struct exchange {
    struct obx_console_mcp *m;
    struct obx_http_request *req; /* the completion reference */
    struct entry *e; /* one of e->busy, and a reference the janitor drops once this ends */
    bool modern;     /* a modern request: its client leaving cancels it */
    bool cancelled;  /* under m->xlock: the janitor cancelled it */
    pthread_mutex_t lock;
    unsigned holds;      /* the handler's and the sink's */
    bool sse_only;       /* Accept admits text/event-stream but not application/json */
    bool sse_ok;         /* Accept admits text/event-stream */
    bool streaming;      /* the SSE head went out */
    uint64_t last_write; /* monotonic ms: the POST came, or the stream last carried bytes */
    struct exchange *prev, *next;        /* in m->open_exchanges, under m->xlock */
    char *held;                          /* the response, held for an application/json answer */
    char session_id[SESSION_ID_LEN + 1]; /* Mcp-Session-Id for the answer, "" for none */
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

/* The id of the request in the POST body, when it is one (new reference), else NULL. */
static json_t *body_request_id(const struct obx_http_request *req)
{
    _cleanup_json_ json_t *body = obx_json_parse(req->body, req->body_len, NULL);
    json_t *id = json_object_get(body, "id");
    return json_is_string(id) || json_is_integer(id) ? json_incref(id) : NULL;
}

/* A refusal of the transport: the status of code (common/error.h's table) with a JSON-RPC error
 * response, whose error code is the one MCP clients' transports expect. */
static void respond_rpc_error(struct obx_http_request *req, const char *code, const char *msg)
{
    /* msg may quote a header, and a header is any bytes: json_pack() would refuse invalid UTF-8
     * (a NULL body, which aborts), so the text goes through obx_json_string_bytes(). An answer to
     * a request carries its id. */
    json_t *id = req->method == OBX_HTTP_POST ? body_request_id(req) : NULL;
    obx_http_respond_json(req, obx_error_http_status(code, 500),
                          json_pack("{s:s, s:{s:i, s:o}, s:o}", "jsonrpc", "2.0", "error", "code",
                                    obx_error_jsonrpc_transport_code(code), "message",
                                    obx_json_string_bytes(msg, strlen(msg)), "id",
                                    id ? id : json_null()));
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
    x->e->buried++;
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
            respond_rpc_error(x->req, OBX_ERR_SESSION_NOT_FOUND, MSG_SESSION_NOT_FOUND);
        } else {
            obx_http_respond_empty(x->req, 202); /* notifications and responses only */
        }
        obx_http_request_complete(x->req);
    }
    /* This may run on a call's thread, which must not free its own session: the janitor drops
     * the reference. */
    struct grave *g = obx_xcalloc(1, sizeof(*g));
    g->e = x->e;
    pthread_mutex_lock(&m->xlock);
    g->next = m->graveyard;
    m->graveyard = g;
    pthread_cond_signal(&m->xcond);
    pthread_mutex_unlock(&m->xlock);
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

static const char *param_header(void *userdata, const char *name)
{
    _cleanup_free_ char *h = obx_xasprintf("mcp-param-%s", name);
    return obx_http_request_header(userdata, h);
}

/* Opens the exchange of a POST in session e (whose reference and busy count it takes over) and
 * hands the body to the session. */
static void exchange_run(struct obx_console_mcp *m, struct obx_http_request *req, struct entry *e,
                         bool modern, const char *session_id)
{
    bool json_ok = !req->accept || obx_console_accepts(req->accept, "application/json");
    struct exchange *x = obx_xcalloc(1, sizeof(*x));
    x->m = m;
    x->req = req;
    x->e = e;
    x->modern = modern;
    pthread_mutex_init(&x->lock, NULL);
    x->holds = 2;
    x->sse_only = !json_ok;
    x->sse_ok = req->accept && obx_console_accepts(req->accept, "text/event-stream");
    x->last_write = obx_now_ms();
    if (session_id)
        snprintf(x->session_id, sizeof(x->session_id), "%s", session_id);
    pthread_mutex_lock(&m->xlock);
    x->next = m->open_exchanges;
    if (x->next)
        x->next->prev = x;
    m->open_exchanges = x;
    pthread_mutex_unlock(&m->xlock);
    struct obx_mcp_sink sink = {.send = sink_send, .close = sink_close, .userdata = x};
    obx_mcp_session_handle_sink(e->s, req->body, req->body_len, &sink);
    if (session_id && !obx_mcp_session_initialized(e->s)) {
        pthread_mutex_lock(&x->lock);
        x->session_id[0] = '\0'; /* unless already streamed: then the id names nothing */
        pthread_mutex_unlock(&x->lock);
    }
    exchange_release(x);
}

static void respond_raw_error(struct obx_http_request *req, int status, char *body)
{
    obx_http_respond_raw(req, status, "application/json", body, strlen(body));
}

/* The steps of a POST below (its headers checked, then parse → validate → act on its body), and
 * mcp_post() that runs them. */

/* Validate: the headers a POST must have before its body is looked at; false after answering
 * 406 or 415. */
static bool post_headers_ok(struct obx_http_request *req)
{
    bool json_ok = !req->accept || obx_console_accepts(req->accept, "application/json");
    bool sse_ok = req->accept && obx_console_accepts(req->accept, "text/event-stream");
    if (!json_ok && !sse_ok) {
        respond_rpc_error(req, OBX_ERR_NOT_ACCEPTABLE,
                          "Not Acceptable: Client must accept application/json and "
                          "text/event-stream");
        return false;
    }
    if (!json_content(req->content_type)) {
        respond_rpc_error(req, OBX_ERR_UNSUPPORTED_MEDIA_TYPE,
                          "Unsupported Media Type: Content-Type must be application/json");
        return false;
    }
    return true;
}

/* Parse: the body's era and kind, by the MCP core, with the headers that carry a modern
 * request's metadata. */
static void post_classify(struct obx_console_mcp *m, struct obx_http_request *req,
                          struct obx_mcp_inbound *ret)
{
    struct obx_mcp_http_meta meta = {
        .protocol_version = req->mcp_protocol,
        .method = req->mcp_method,
        .name = req->mcp_name,
        .param = param_header,
        .userdata = req,
    };
    obx_mcp_inbound_classify(m->srv, req->body, req->body_len, &meta, ret);
}

/* Validate: false after answering the core's refusal, or 400 for a legacy request whose
 * MCP-Protocol-Version header names a version this server does not speak. */
static bool post_inbound_ok(struct obx_http_request *req, struct obx_mcp_inbound *in)
{
    if (in->kind == OBX_MCP_INBOUND_REJECT) {
        respond_raw_error(req, in->status, TAKE_PTR(in->error));
        return false;
    }
    if (in->kind != OBX_MCP_INBOUND_MODERN && req->mcp_protocol && in->legacy_version < 0) {
        _cleanup_free_ char *msg = obx_xasprintf(
            "Bad Request: Unsupported protocol version: %.64s (supported versions: %s, and "
            "2026-07-28 with the version in each request's _meta)",
            req->mcp_protocol, obx_mcp_versions_text());
        respond_rpc_error(req, OBX_ERR_BAD_REQUEST, msg);
        return false;
    }
    return true;
}

/* Act: a modern request, or a legacy one without Mcp-Session-Id, on a session of its own (a
 * modern request ignores any Mcp-Session-Id). */
static enum obx_route_result post_stateless(struct obx_console_mcp *m, struct obx_http_request *req,
                                            const char *account, const struct obx_mcp_inbound *in)
{
    bool modern = in->kind == OBX_MCP_INBOUND_MODERN;
    struct entry *e = stateless_create(m, account);
    if (!e) {
        respond_rpc_error(req, OBX_ERR_UNAVAILABLE,
                          "Service Unavailable: too many MCP requests in flight for this "
                          "account; wait for some to finish");
        return OBX_ROUTE_DONE;
    }
    if (!modern)
        obx_mcp_session_assume(e->s, in->legacy_version >= 0
                                         ? req->mcp_protocol
                                         : "2025-03-26"); /* the spec's default */
    exchange_run(m, req, e, modern, NULL);
    return OBX_ROUTE_ASYNC;
}

/* Act: initialize without Mcp-Session-Id opens a session, visible to lookups once it
 * succeeded. */
static enum obx_route_result post_initialize(struct obx_console_mcp *m,
                                             struct obx_http_request *req, const char *account)
{
    struct entry *e = session_create(m, account, NULL, false);
    if (!e) {
        respond_rpc_error(req, OBX_ERR_UNAVAILABLE,
                          "Service Unavailable: too many MCP sessions in use; end one "
                          "(HTTP DELETE) or try again later");
        return OBX_ROUTE_DONE;
    }
    char id[SESSION_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", e->id);
    pthread_mutex_lock(&m->lock);
    e->refs++; /* the exchange's, besides ours */
    pthread_mutex_unlock(&m->lock);
    exchange_run(m, req, e, false, id);
    bool ok = obx_mcp_session_initialized(e->s);
    if (ok)
        obx_debug("mcp: new session for account %s", account);
    session_publish(m, e, ok);
    entry_unref(m, e);
    return OBX_ROUTE_ASYNC;
}

/* Act: a request in the session its Mcp-Session-Id names (resumed when this console minted the
 * id for the account but no longer holds it). */
static enum obx_route_result post_in_session(struct obx_console_mcp *m,
                                             struct obx_http_request *req, const char *account,
                                             const struct obx_mcp_inbound *in)
{
    struct entry *e = session_find(m, req->mcp_session_id, account, true,
                                   in->legacy_version >= 0 ? req->mcp_protocol : NULL);
    if (!e) {
        respond_rpc_error(req, OBX_ERR_SESSION_NOT_FOUND, MSG_SESSION_NOT_FOUND);
        return OBX_ROUTE_DONE;
    }
    exchange_run(m, req, e, false, NULL);
    return OBX_ROUTE_ASYNC;
}

static enum obx_route_result mcp_post(struct obx_route_ctx *ctx, struct obx_console_mcp *m,
                                      const char *account)
{
    struct obx_http_request *req = ctx->req;
    if (!post_headers_ok(req))
        return OBX_ROUTE_DONE;
    struct obx_mcp_inbound in;
    post_classify(m, req, &in);
    if (!post_inbound_ok(req, &in))
        return OBX_ROUTE_DONE;
    if (in.kind == OBX_MCP_INBOUND_MODERN ||
        (!req->mcp_session_id && in.kind == OBX_MCP_INBOUND_LEGACY))
        return post_stateless(m, req, account, &in);
    if (!req->mcp_session_id)
        return post_initialize(m, req, account);
    return post_in_session(m, req, account, &in);
}

static enum obx_route_result mcp_delete(struct obx_route_ctx *ctx, struct obx_console_mcp *m,
                                        const char *account)
{
    struct obx_http_request *req = ctx->req;
    if (!req->mcp_session_id) {
        respond_rpc_error(req, OBX_ERR_BAD_REQUEST,
                          "Bad Request: Mcp-Session-Id header is required");
        return OBX_ROUTE_DONE;
    }
    struct entry *e = session_find(m, req->mcp_session_id, account, false, NULL);
    if (e) {
        session_terminate(m, e);
        entry_unref(m, e); /* the last one, unless a POST still runs: it ends the session then */
        obx_http_respond_empty(req, 200);
        return OBX_ROUTE_DONE;
    }
    /* A session of ours that this console no longer holds (it restarted, or the session
     * expired) ends as well: it will not come back. */
    if (session_id_ours(m, account, req->mcp_session_id)) {
        pthread_mutex_lock(&m->lock);
        bool known = deleted_locked(m, req->mcp_session_id);
        if (!known) {
            snprintf(m->deleted[m->deleted_next], sizeof(m->deleted[0]), "%s", req->mcp_session_id);
            m->deleted_next = (m->deleted_next + 1) % DELETED_KEPT;
        }
        pthread_mutex_unlock(&m->lock);
        if (!known) {
            obx_http_respond_empty(req, 200);
            return OBX_ROUTE_DONE;
        }
    }
    respond_rpc_error(req, OBX_ERR_SESSION_NOT_FOUND, MSG_SESSION_NOT_FOUND);
    return OBX_ROUTE_DONE;
}

/* A 401 body that MCP clients show their user: what the endpoint wants and where to get it.
 * (Clients may hide the URL's path in what they print, so the text does not name it.) The
 * WWW-Authenticate header is the router's. */
static void explain_auth(struct obx_http_request *req, bool given)
{
    if (req->resp.status != 401)
        return;
    const char *msg =
        given ? "invalid token: this MCP endpoint takes an API token of this onlyboxes console "
                "as Authorization: Bearer <token> (or ?token=<token> in the URL for a client that "
                "cannot send headers), and the one sent is not one; create one in the dashboard "
                "under Tokens"
              : "token required: this MCP endpoint takes an API token of this onlyboxes console "
                "as Authorization: Bearer <token> (or ?token=<token> in the URL for a client that "
                "cannot send headers); create one in the dashboard under Tokens";
    obx_http_respond_json(req, 401, json_pack("{ss}", "error", msg)); /* headers stay */
}

/* OAuth discovery: clients that meet a 401 look for an authorization server. There is none: say
 * so in a form they show, instead of letting them try to register themselves; a client that
 * sends a token here learns whether it is one. */
static enum obx_route_result no_oauth(struct obx_route_ctx *ctx)
{
    const char *why = "onlyboxes has no OAuth authorization server: this MCP endpoint takes a "
                      "static API token. Configure your MCP client with the header "
                      "Authorization: Bearer <token> (create a token in the onlyboxes dashboard "
                      "under Tokens), or add ?token=<token> to the URL if it cannot send headers.";
    if (ctx->req->authorization) {
        bool valid = obx_route_auth_bearer(ctx);
        why = valid ? "onlyboxes has no OAuth authorization server, and needs none: the token "
                      "your client sends is a valid API token of this console. Send it as "
                      "Authorization: Bearer <token> on the MCP endpoint itself."
                    : "onlyboxes has no OAuth authorization server: this MCP endpoint takes a "
                      "static API token, and the token in the Authorization header your client "
                      "sends is not valid (check it, or create a token in the onlyboxes dashboard "
                      "under Tokens).";
    }
    obx_http_respond_json(
        ctx->req, 404, json_pack("{ssss}", "error", "invalid_request", "error_description", why));
    return OBX_ROUTE_DONE;
}

static enum obx_route_result mcp_route(struct obx_route_ctx *ctx)
{
    struct obx_console_mcp *m = ctx->console->mcp;
    struct obx_http_request *req = ctx->req;
    const char *why = check_origin(m, req);
    if (why) {
        respond_rpc_error(req, OBX_ERR_FORBIDDEN, why);
        return OBX_ROUTE_DONE;
    }
    const char *account = TEST_ACCOUNT;
    /* The token in the URL is the weaker choice (URLs end up in histories and proxy logs; ours
     * redact it), for clients that cannot send headers. */
    const char *qtoken = req->authorization ? NULL : obx_http_request_query(req, "token");
    if (!m->open || req->authorization || qtoken) {
        bool ok = qtoken ? obx_route_auth_query_token(ctx, qtoken) : obx_route_auth_bearer(ctx);
        if (!ok) {
            explain_auth(req, req->authorization || qtoken);
            return OBX_ROUTE_DONE;
        }
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
        respond_rpc_error(req, OBX_ERR_METHOD_NOT_ALLOWED, "Method Not Allowed");
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
    {OBX_HTTP_GET, "/.well-known/oauth-protected-resource", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/.well-known/oauth-protected-resource/mcp", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/.well-known/oauth-authorization-server", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/.well-known/oauth-authorization-server/mcp", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/.well-known/openid-configuration", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/.well-known/openid-configuration/mcp", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_POST, "/register", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/mcp/.well-known/oauth-protected-resource", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/mcp/.well-known/oauth-authorization-server", OBX_ROUTE_AUTH_NONE, no_oauth},
    {OBX_HTTP_GET, "/mcp/.well-known/openid-configuration", OBX_ROUTE_AUTH_NONE, no_oauth},
};
const size_t obx_mcp_routes_n = OBX_ARRAY_SIZE(obx_mcp_routes);

/* ---- the janitor ---- */

/* Every open POST whose client accepts SSE and that carried nothing for keepalive_ms becomes an
 * event stream (its head goes out) and gets an SSE comment line, which clients ignore; the answer
 * follows as an event when it comes. Under m->xlock. */
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

/* The sessions of modern requests whose client closed the connection (which cancels them in
 * this era), each with a reference; under m->xlock. */
static struct grave *gone_locked(struct obx_console_mcp *m)
{
    struct grave *list = NULL;
    for (struct exchange *x = m->open_exchanges; x; x = x->next) {
        if (!x->modern || x->cancelled || !obx_http_request_gone(x->req))
            continue;
        x->cancelled = true;
        pthread_mutex_lock(&m->lock);
        x->e->refs++;
        pthread_mutex_unlock(&m->lock);
        struct grave *g = obx_xcalloc(1, sizeof(*g));
        g->e = x->e;
        g->next = list;
        list = g;
    }
    return list;
}

/* Drops the references of ended exchanges; a stateless session leaves the table with it. */
static void bury(struct obx_console_mcp *m, struct grave *list)
{
    while (list) {
        struct grave *g = list;
        list = g->next;
        struct entry *e = g->e;
        free(g);
        pthread_mutex_lock(&m->lock);
        e->buried--;
        bool drop_table = e->stateless && e->listed;
        if (drop_table)
            unlist_locked(m, e);
        pthread_mutex_unlock(&m->lock);
        if (drop_table)
            entry_unref(m, e);
        entry_unref(m, e);
    }
}

static void *janitor_main(void *arg)
{
    struct obx_console_mcp *m = arg;
    uint64_t last_keepalive = obx_now_ms(), last_sweep = obx_now_ms();
    pthread_mutex_lock(&m->xlock);
    while (!m->stopping) {
        if (!m->graveyard) {
            struct timespec ts = obx_ms_to_timespec(obx_now_ms() + JANITOR_STEP_MS);
            pthread_cond_timedwait(&m->xcond, &m->xlock, &ts);
        }
        uint64_t now = obx_now_ms();
        if (m->keepalive_ms && now - last_keepalive >= OBX_MIN(m->keepalive_ms / 4 + 1, 1000)) {
            keepalive_tick(m);
            last_keepalive = now;
        }
        struct grave *gone = gone_locked(m);
        struct grave *dead = TAKE_PTR(m->graveyard);
        pthread_mutex_unlock(&m->xlock);
        for (struct grave *g = gone; g; g = g->next)
            obx_mcp_session_cancel_all(g->e->s);
        while (gone) {
            struct grave *g = gone;
            gone = g->next;
            entry_unref(m, g->e);
            free(g);
        }
        bury(m, dead);
        if (now - last_sweep >= 1000) {
            sweep(m);
            last_sweep = now;
        }
        pthread_mutex_lock(&m->xlock);
    }
    struct grave *dead = TAKE_PTR(m->graveyard);
    pthread_mutex_unlock(&m->xlock);
    bury(m, dead);
    return NULL;
}

/* ---- lifetime ---- */

static void task_ended(void *userdata, const char *task_id)
{
    struct obx_console_mcp *m = userdata;
    obx_mcp_server_task_changed(m->srv, task_id);
}

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
    obx_console_mcp_task_backend(c, &m->tasks);
    struct obx_mcp_server_config sc = {
        .name = "onlyboxes-console",
        .executor = &m->executor,
        .fixtures = cfg->mcp_test_fixtures,
        .task_after_ms = cfg->mcp_task_after_ms ? cfg->mcp_task_after_ms : OBX_MCP_TASKS_OFF,
        .tasks = &m->tasks,
        .hidden_tools = cfg->hidden_tools,
        .hidden_tools_var = "CONSOLE_HIDDEN_TOOLS",
        .tool_env_prefix = OBX_CONSOLE_MCP_TOOL_PREFIX,
        .env = environ,
    };
    m->srv = obx_mcp_server_new(&sc);
    obx_tasks_on_end(c->tasks, task_ended, m);
    m->loopback = obx_net_host_is_loopback(cfg->http_host);
    m->open = cfg->mcp_test_fixtures;
    m->origins = parse_origins(cfg->mcp_allowed_origins);
    m->max_sessions = (unsigned)cfg->mcp_max_sessions;
    m->max_per_account = (unsigned)cfg->mcp_max_sessions_per_account;
    m->idle_ms = (uint64_t)cfg->mcp_session_idle_sec * 1000;
    pthread_mutex_init(&m->lock, NULL);
    m->keepalive_ms = (uint64_t)cfg->mcp_keepalive_sec * 1000;
    pthread_mutex_init(&m->xlock, NULL);
    obx_cond_init_monotonic(&m->xcond);
    m->janitor_started = pthread_create(&m->janitor, NULL, janitor_main, m) == 0;
    if (!m->janitor_started)
        obx_err("mcp: cannot start the janitor thread: %s", strerror(errno));
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
    if (m->janitor_started)
        pthread_join(m->janitor, NULL);

    /* Every call still running is cancelled; its exchange ends once it stopped. */
    pthread_mutex_lock(&m->lock);
    size_t n_all = 0;
    for (struct entry *e = m->entries; e; e = e->next)
        n_all++;
    _cleanup_free_ struct entry **all = obx_xcalloc(n_all + 1, sizeof(*all));
    n_all = 0;
    for (struct entry *e = m->entries; e; e = e->next) {
        e->refs++;
        all[n_all++] = e;
    }
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; i < n_all; i++)
        obx_mcp_session_cancel_all(all[i]->s);
    pthread_mutex_lock(&m->xlock);
    uint64_t until = obx_now_ms() + STOP_WAIT_MS;
    while (m->open_exchanges && obx_now_ms() < until) {
        struct timespec ts = obx_ms_to_timespec(OBX_MIN(until, obx_now_ms() + 100));
        pthread_cond_timedwait(&m->xcond, &m->xlock, &ts);
    }
    struct grave *dead = TAKE_PTR(m->graveyard);
    pthread_mutex_unlock(&m->xlock);
    for (size_t i = 0; i < n_all; i++)
        entry_unref(m, all[i]);
    bury(m, dead);

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
    obx_tasks_on_end(m->console->tasks, NULL, NULL);
    obx_mcp_server_free(m->srv);
    for (char **o = m->origins; *o; o++)
        free(*o);
    free(m->origins);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->xcond);
    pthread_mutex_destroy(&m->xlock);
    free(m);
}
