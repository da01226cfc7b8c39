/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dashboard's live terminal: a WebSocket at /api/v1/sessions/{session_id}/terminal (the
 * subprotocol OBX_TERMINAL_PROTOCOL) relayed to a terminalPty call on the worker that has the
 * session, embedded or remote, through the registry like any other call.
 *
 * Who may open one: the handshake is refused on the service thread when its Origin names another
 * site (403) or it carries no session cookie (401); then, on a pool thread, the cookie is looked
 * up like the dashboard's API does (an unknown or expired one closes the socket with 4401), and
 * the session id is scoped to the signed-in account ("obx:<account>:<id>"), so another account's
 * session is not found (4404) exactly as over REST. Terminals are bounded per session, per
 * account and in all (4429).
 *
 * Messages are binary with a type byte. To the browser: 'o' what the terminal printed, 'e' an
 * event (JSON: the terminal opened, a terminalExec command of the session started, printed or
 * ended), 'x' the end (JSON: why), then the close. From the browser: 'i' typed bytes (at most
 * 64 KiB each, INPUT_RATE bytes a second with a burst as large), 'r' a new size (u16 cols, u16
 * rows), 'a' how many output bytes it has shown (a decimal running total), which lets the
 * terminal send more: a slow browser slows the shell, never fills the console's memory.
 *
 * Threads: the service thread opens, receives and closes; a pool thread authenticates and starts
 * the call; the call's output hook runs on the registry's or the box's threads and only queues
 * messages; the call's end comes on the registry's event thread. Input goes to the call from a
 * pool job that takes a terminal's pending input in order (one job per terminal at a time), so
 * the service thread never waits for a box. Each terminal is reference counted; t->lock guards
 * its state, the list's lock its place in the list.
 */
#include "api.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/thread.h"
#include "console/util/console-util.h"
#include "console/web/web.h"

#define PATH_PREFIX "/api/v1/sessions/"
#define PATH_SUFFIX "/terminal"
#define MAX_MESSAGE (64u * 1024)
#define MAX_PENDING (8u << 20) /* to one browser: the window plus a command's shown output */
#define INPUT_RATE (1u << 20)  /* typed bytes a second, and the burst */
#define INPUT_QUEUE (2u << 20) /* input not yet handed to the call */

enum term_state {
    T_AUTH,  /* the cookie is being checked */
    T_OPEN,  /* the call runs */
    T_ENDED, /* the call ended, or never started */
};

struct term_in {
    struct term_in *next;
    struct obx_call_input in;
    uint8_t data[];
};

struct term {
    int refs; /* __atomic */
    struct obx_console *c;
    struct obx_console_terms *list;
    struct obx_http_ws *ws; /* a reference */
    char account[40];
    char *sid; /* scoped */
    unsigned cols, rows;
    struct obx_call call;
    pthread_mutex_t lock; /* guards what follows */
    enum term_state state;
    bool ws_closed; /* the browser went */
    bool input_job; /* a pool job takes the pending input */
    struct term_in *in_head, *in_tail;
    size_t in_bytes;
    uint64_t sent, acked; /* output bytes to the browser; shown by it */
    double tokens;        /* input allowance */
    uint64_t tokens_at;   /* monotonic ms */
    struct term *next;    /* in the list, under its lock */
};

struct obx_console_terms {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a call ended */
    struct term *list;
    unsigned calls; /* calls started and not ended */
    bool stopping;
};

static struct term *term_ref(struct term *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

static void term_unref(struct term *t)
{
    if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    while (t->in_head) {
        struct term_in *x = t->in_head;
        t->in_head = x->next;
        free(x);
    }
    obx_http_ws_unref(t->ws);
    obx_call_done(&t->call);
    pthread_mutex_destroy(&t->lock);
    free(t->sid);
    free(t);
}

/* The session id of a terminal's path ("" when the path is not one), into out. */
static bool path_session(const char *path, char *out, size_t size)
{
    size_t n = strlen(path), pre = strlen(PATH_PREFIX), suf = strlen(PATH_SUFFIX);
    if (n <= pre + suf || strncmp(path, PATH_PREFIX, pre) != 0 ||
        strcmp(path + n - suf, PATH_SUFFIX) != 0)
        return false;
    size_t len = n - pre - suf;
    bool ok = len <= 128 && len < size;
    for (size_t i = 0; ok && i < len; i++)
        ok = path[pre + i] > 0x20 && path[pre + i] < 0x7f;
    if (ok)
        snprintf(out, size, "%.*s", (int)len, path + pre);
    return ok;
}

/* ---- messages to the browser ---- */

static void send_end(struct term *t, const char *reason, const char *code, const char *message,
                     json_t *result, int close_code)
{
    json_t *o = json_pack("{s:s}", "reason", reason);
    if (code)
        json_object_set_new(o, "code", json_string(code));
    if (message)
        json_object_set_new(o, "message", json_string(message));
    json_t *v = result ? json_object_get(result, "exit_code") : NULL;
    if (v)
        json_object_set(o, "exit_code", v);
    _cleanup_free_ char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    (void)obx_http_ws_send(t->ws, 'x', s, strlen(s));
    obx_http_ws_close(t->ws, close_code, reason);
}

/* The call's output, on whichever thread the worker's bytes arrive. */
static void on_output(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    struct term *t = userdata;
    bool output = stream != OBX_STREAM_EVENT;
    /* Counted before it can reach the browser: its acknowledgement may come back (on the
     * service thread) before this thread runs again after the send. */
    if (output) {
        pthread_mutex_lock(&t->lock);
        t->sent += len;
        pthread_mutex_unlock(&t->lock);
    }
    int r = obx_http_ws_send(t->ws, output ? 'o' : 'e', data, len);
    if (output && r < 0) {
        pthread_mutex_lock(&t->lock);
        t->sent -= len;
        t->acked = OBX_MIN(t->acked, t->sent);
        pthread_mutex_unlock(&t->lock);
    }
    if (r == -ENOBUFS) {
        /* Only a browser that does not acknowledge what it shows gets here. */
        obx_info("terminal of session %s: the browser fell %u bytes behind; closing it", t->sid,
                 MAX_PENDING);
        obx_call_cancel(&t->call);
    }
}

/* ---- the call ---- */

static void call_done(void *userdata, int r, json_t *result, const struct obx_error *err)
{
    struct term *t = userdata;
    struct obx_console_terms *l = t->list;
    pthread_mutex_lock(&t->lock);
    t->state = T_ENDED;
    bool gone = t->ws_closed;
    pthread_mutex_unlock(&t->lock);
    if (r >= 0 || obx_streq(err->code, OBX_ERR_CANCELED))
        obx_info("terminal on %s closed: %s", t->sid,
                 r >= 0 ? obx_json_get_str(result, "reason", "exited") : "canceled");
    else
        obx_info("terminal on %s ended: %s", t->sid, err->message);
    if (!gone) {
        if (r >= 0)
            send_end(t, obx_json_get_str(result, "reason", "exited"), NULL,
                     obx_json_get_str(result, "message", NULL), result, 1000);
        else if (obx_streq(err->code, OBX_ERR_SESSION_NOT_FOUND))
            send_end(t, "error", err->code, err->message, NULL, 4404);
        else
            send_end(t, "error", err->code[0] ? err->code : OBX_ERR_EXECUTION_FAILED, err->message,
                     NULL, 4500);
    }
    json_decref(result);
    pthread_mutex_lock(&l->lock);
    l->calls--;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
    term_unref(t); /* the call's */
}

/* Counts terminals like t (open or opening) of its account and of its session; the list's lock
 * held. */
static void count_like(struct obx_console_terms *l, const struct term *t, unsigned *all,
                       unsigned *account, unsigned *session)
{
    *all = *account = *session = 0;
    for (struct term *x = l->list; x; x = x->next) {
        if (x == t)
            continue;
        (*all)++;
        if (obx_streq(x->account, t->account)) {
            (*account)++;
            if (x->sid && t->sid && obx_streq(x->sid, t->sid))
                (*session)++;
        }
    }
}

static void list_remove(struct obx_console_terms *l, struct term *t)
{
    pthread_mutex_lock(&l->lock);
    for (struct term **pp = &l->list; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            pthread_mutex_unlock(&l->lock);
            term_unref(t); /* the list's */
            return;
        }
    pthread_mutex_unlock(&l->lock);
}

/* Pool thread: who is this, may they open one more, and start the call. */
static void open_job(void *arg)
{
    struct term *t = arg;
    struct obx_console *c = t->c;
    const struct obx_console_config *cfg = c->cfg;
    const struct obx_http_request *req = obx_http_ws_request(t->ws);
    char cookie[160], name[130], hash[65];
    struct obx_account acc;
    struct obx_error err = OBX_ERROR_INIT;
    int r =
        obx_console_cookie_value(req->cookie, OBX_CONSOLE_SESSION_COOKIE, cookie, sizeof(cookie));
    if (r == 0 && !obx_str_blank(cookie)) {
        obx_route_session_hash(c, cookie, hash);
        r = obx_store_session_lookup(c->store, hash, obx_unix_ms(), &acc, &err);
        if (r < 0 && r != -ENOENT)
            obx_err("terminal: session lookup: %s", err.message);
    } else {
        r = -ENOENT;
    }
    explicit_bzero(cookie, sizeof(cookie));
    const char *refused = NULL;
    int close_code = 0;
    if (r < 0) {
        refused = "authentication required";
        close_code = 4401;
    }
    if (!refused) {
        (void)path_session(req->path, name, sizeof(name));
        snprintf(t->account, sizeof(t->account), "%s", acc.id);
        t->sid = obx_xasprintf("obx:%s:%s", acc.id, name);
        t->call.account = t->account;
        struct obx_console_terms *l = c->terms;
        unsigned all, account, session;
        pthread_mutex_lock(&l->lock);
        count_like(l, t, &all, &account, &session);
        pthread_mutex_unlock(&l->lock);
        if (session >= (unsigned)cfg->terminals_per_session)
            refused = "this session has as many live terminals open as it may "
                      "(CONSOLE_TERMINALS_PER_SESSION); close one";
        else if (account >= (unsigned)cfg->terminals_per_account)
            refused = "this account has as many live terminals open as it may "
                      "(CONSOLE_TERMINALS_PER_ACCOUNT); close one";
        else if (all >= (unsigned)cfg->terminals_max)
            refused = "the console has as many live terminals open as it may "
                      "(CONSOLE_TERMINALS_MAX); try again later";
        if (refused)
            close_code = 4429;
    }
    struct obx_dispatch_slot *slot = NULL;
    _cleanup_json_ json_t *payload = NULL;
    if (!refused) {
        payload = json_pack("{s:s, s:i, s:i}", "session_id", t->sid, "cols", (int)t->cols, "rows",
                            (int)t->rows);
        r = obx_dispatch_acquire(c->dispatch, "terminalPty", payload, &slot, &err);
        if (r < 0) {
            refused = err.message;
            close_code = obx_streq(err.code, OBX_ERR_SESSION_NOT_FOUND) ? 4404 : 4503;
        }
    }
    pthread_mutex_lock(&t->lock);
    bool gone = t->ws_closed;
    if (!refused && !gone)
        t->state = T_OPEN;
    else
        t->state = T_ENDED;
    pthread_mutex_unlock(&t->lock);
    if (refused && !gone)
        send_end(t, "refused", close_code == 4404 ? OBX_ERR_SESSION_NOT_FOUND : NULL, refused, NULL,
                 close_code);
    if (refused || gone) {
        obx_dispatch_release(slot);
        list_remove(c->terms, t);
        term_unref(t); /* the job's */
        return;
    }
    pthread_mutex_lock(&c->terms->lock);
    c->terms->calls++;
    pthread_mutex_unlock(&c->terms->lock);
    obx_info("terminal opened on session %s of account %s", name, acc.username);
    /* The job's reference becomes the call's; done() drops it. */
    obx_dispatch_start(slot, payload, &t->call, call_done, t);
}

/* ---- input ---- */

/* Pool thread: hands the pending input to the call, in order. */
static void input_job(void *arg)
{
    struct term *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        struct term_in *x = t->in_head;
        if (x) {
            t->in_head = x->next;
            if (!t->in_head)
                t->in_tail = NULL;
            t->in_bytes -= x->in.len;
        } else {
            t->input_job = false;
        }
        pthread_mutex_unlock(&t->lock);
        if (!x)
            break;
        (void)obx_call_input(&t->call, &x->in);
        free(x);
    }
    term_unref(t);
}

/* Service thread: queues one piece of input; false when it is refused (the queue is full). */
static bool input_queue(struct term *t, const struct obx_call_input *in)
{
    struct term_in *x = obx_xmalloc(sizeof(*x) + in->len);
    x->next = NULL;
    x->in = *in;
    if (in->len)
        memcpy(x->data, in->data, in->len);
    x->in.data = x->data;
    pthread_mutex_lock(&t->lock);
    bool ok = t->state == T_OPEN && t->in_bytes + in->len <= INPUT_QUEUE;
    bool start = ok && !t->input_job;
    if (ok) {
        if (t->in_tail)
            t->in_tail->next = x;
        else
            t->in_head = x;
        t->in_tail = x;
        t->in_bytes += in->len;
        t->input_job = true;
    }
    pthread_mutex_unlock(&t->lock);
    if (!ok)
        free(x);
    if (start && obx_console_pool_submit(t->c->pool, input_job, term_ref(t)) < 0) {
        /* The pool is full: the input waits for the next piece, which tries again. */
        pthread_mutex_lock(&t->lock);
        t->input_job = false;
        pthread_mutex_unlock(&t->lock);
        term_unref(t);
    }
    return ok;
}

/* Takes len bytes from the typing allowance; false when they exceed it. */
static bool input_allowed(struct term *t, size_t len)
{
    uint64_t now = obx_now_ms();
    pthread_mutex_lock(&t->lock);
    t->tokens =
        OBX_MIN((double)INPUT_RATE, t->tokens + (double)(now - t->tokens_at) * INPUT_RATE / 1000.0);
    t->tokens_at = now;
    bool ok = (double)len <= t->tokens;
    if (ok)
        t->tokens -= (double)len;
    pthread_mutex_unlock(&t->lock);
    return ok;
}

static void on_message(void *userdata, struct obx_http_ws *ws, const void *data, size_t len)
{
    struct term *t = obx_http_ws_user(ws);
    const uint8_t *p = data;
    if (!t || len == 0)
        return;
    struct obx_call_input in = {0};
    switch (p[0]) {
    case 'i':
        if (!input_allowed(t, len - 1)) {
            const char note[] = "{\"type\":\"input_dropped\",\"reason\":\"rate\"}";
            (void)obx_http_ws_send(ws, 'e', note, sizeof(note) - 1);
            return;
        }
        in = (struct obx_call_input){.kind = OBX_CALL_INPUT_DATA, .data = p + 1, .len = len - 1};
        break;
    case 'r':
        if (len != 5)
            return;
        in = (struct obx_call_input){.kind = OBX_CALL_INPUT_RESIZE,
                                     .cols = (unsigned)p[1] << 8 | p[2],
                                     .rows = (unsigned)p[3] << 8 | p[4]};
        if (in.cols < 1 || in.rows < 1 || in.cols > 1000 || in.rows > 1000)
            return;
        break;
    case 'a': {
        char num[24];
        int64_t v;
        if (len - 1 >= sizeof(num))
            return;
        memcpy(num, p + 1, len - 1);
        num[len - 1] = '\0';
        if (obx_parse_int64(num, 0, INT64_MAX, &v) < 0)
            return;
        pthread_mutex_lock(&t->lock);
        bool fresh = (uint64_t)v > t->acked && (uint64_t)v <= t->sent;
        if (fresh)
            t->acked = (uint64_t)v;
        pthread_mutex_unlock(&t->lock);
        if (!fresh)
            return;
        in = (struct obx_call_input){.kind = OBX_CALL_INPUT_ACK, .acked = (uint64_t)v};
        break;
    }
    default:
        return; /* a type this console does not know: ignored, for later clients */
    }
    if (!input_queue(t, &in) && in.kind == OBX_CALL_INPUT_DATA) {
        const char note[] = "{\"type\":\"input_dropped\",\"reason\":\"queue\"}";
        (void)obx_http_ws_send(ws, 'e', note, sizeof(note) - 1);
    }
}

/* ---- the WebSocket ---- */

static int ws_check(void *userdata, const struct obx_http_request *req, const char **message)
{
    char name[130], cookie[160];
    if (!path_session(req->path, name, sizeof(name))) {
        *message = "no such WebSocket: a live terminal is /api/v1/sessions/{session_id}/terminal";
        return 404;
    }
    if (req->origin && !obx_web_same_origin(req->origin, req->host)) {
        obx_info("refused a cross-site WebSocket to %.200s from Origin %.200s", req->path,
                 req->origin);
        *message = "cross-site WebSocket refused: its Origin is not this console";
        return 403;
    }
    int r =
        obx_console_cookie_value(req->cookie, OBX_CONSOLE_SESSION_COOKIE, cookie, sizeof(cookie));
    explicit_bzero(cookie, sizeof(cookie));
    if (r < 0) {
        *message = "authentication required: sign in to the dashboard first";
        return 401;
    }
    return 0;
}

/* A size from the query, within bounds, else def. */
static unsigned query_side(const struct obx_http_request *req, const char *name, unsigned def)
{
    const char *v = obx_http_request_query(req, name);
    int64_t n;
    return v && obx_parse_int64(v, 1, 1000, &n) == 0 ? (unsigned)n : def;
}

static void on_open(void *userdata, struct obx_http_ws *ws)
{
    struct obx_console *c = userdata;
    struct obx_console_terms *l = c->terms;
    const struct obx_http_request *req = obx_http_ws_request(ws);
    struct term *t = obx_xcalloc(1, sizeof(*t));
    t->refs = 2; /* the socket's and the list's */
    t->c = c;
    t->list = l;
    t->ws = obx_http_ws_ref(ws);
    t->cols = query_side(req, "cols", 80);
    t->rows = query_side(req, "rows", 24);
    t->tokens = INPUT_RATE;
    t->tokens_at = obx_now_ms();
    pthread_mutex_init(&t->lock, NULL);
    obx_call_init(&t->call);
    t->call.on_output = on_output;
    t->call.output_userdata = t;
    obx_http_ws_set_user(ws, t);
    pthread_mutex_lock(&l->lock);
    bool stopping = l->stopping;
    if (!stopping) {
        t->next = l->list;
        l->list = t;
    }
    pthread_mutex_unlock(&l->lock);
    if (stopping || obx_console_pool_submit(c->pool, open_job, term_ref(t)) < 0) {
        if (!stopping) {
            term_unref(t); /* the job's, never run */
            list_remove(l, t);
        } else {
            term_unref(t); /* the list's, never taken */
        }
        t->state = T_ENDED;
        obx_http_ws_close(ws, 4503, "the console is busy; try again");
    }
}

static void on_closed(void *userdata, struct obx_http_ws *ws)
{
    struct term *t = obx_http_ws_user(ws);
    if (!t)
        return;
    obx_http_ws_set_user(ws, NULL);
    pthread_mutex_lock(&t->lock);
    t->ws_closed = true;
    bool open = t->state == T_OPEN;
    pthread_mutex_unlock(&t->lock);
    /* The browser went: the terminal closes, and whatever runs in it is killed. */
    if (open)
        obx_call_cancel(&t->call);
    list_remove(t->list, t);
    term_unref(t); /* the socket's */
}

void obx_console_terms_ws_config(struct obx_console *c, struct obx_http_ws_config *ret)
{
    *ret = (struct obx_http_ws_config){.protocol = OBX_TERMINAL_PROTOCOL,
                                       .max_message = MAX_MESSAGE,
                                       .max_pending = MAX_PENDING,
                                       .check = ws_check,
                                       .on_open = on_open,
                                       .on_message = on_message,
                                       .on_closed = on_closed,
                                       .userdata = c};
}

struct obx_console_terms *obx_console_terms_new(void)
{
    struct obx_console_terms *l = obx_xcalloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    obx_cond_init_monotonic(&l->cond);
    return l;
}

void obx_console_terms_stop(struct obx_console_terms *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    for (struct term *t = l->list; t; t = t->next)
        obx_call_cancel(&t->call);
    uint64_t until = obx_now_ms() + 10000;
    while (l->calls > 0 && obx_now_ms() < until) {
        struct timespec ts = obx_ms_to_timespec(until);
        pthread_cond_timedwait(&l->cond, &l->lock, &ts);
    }
    if (l->calls > 0)
        obx_warn("%u live terminal(s) did not close in time", l->calls);
    pthread_mutex_unlock(&l->lock);
}

void obx_console_terms_free(struct obx_console_terms *l)
{
    if (!l)
        return;
    while (l->list) {
        struct term *t = l->list;
        l->list = t->next;
        term_unref(t);
    }
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l);
}

/* A plain request for a terminal's path: it is a WebSocket. */
static enum obx_route_result not_upgraded(struct obx_route_ctx *ctx)
{
    obx_http_respond_error(
        ctx->req, 426,
        "upgrade required: a live terminal is a WebSocket (subprotocol " OBX_TERMINAL_PROTOCOL
        "), opened by the dashboard");
    obx_http_response_add_header(ctx->req, "upgrade", "websocket");
    return OBX_ROUTE_DONE;
}

const struct obx_route obx_terminal_routes[] = {
    {OBX_HTTP_GET, "/api/v1/sessions/:session_id/terminal", OBX_ROUTE_AUTH_NONE, not_upgraded},
};
const size_t obx_terminal_routes_n = OBX_ARRAY_SIZE(obx_terminal_routes);
