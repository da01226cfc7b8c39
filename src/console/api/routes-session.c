/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sessions API and a session's files, Bearer-authenticated (the sessions API also with the
 * dashboard's cookie, for its Sessions page): an account reaches only its own
 * terminal sessions, through the same "obx:<account_id>:" scope as terminalExec, so another
 * account's id is session_not_found. Everything goes to the worker that has the session
 * (terminalSession and terminalFiles, console/registry/dispatch.h).
 *
 * Short calls (a session's state, renew, close, a file's removal, mkdir) run on the pool thread
 * that took the request. A file's upload or download runs on a transfer thread of its own, at
 * most CONSOLE_MAX_TRANSFERS at once, so long transfers never hold the pool: an upload's body
 * streams from the HTTP connection to the box (obx_http_body_read(), paced by the box), a
 * download's bytes stream back with a Content-Length (obx_http_stream_*(), paced by the client).
 * The console stops transfers (cancelling their calls) before its HTTP server and registry go.
 */
#include "api.h"

#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/sessions-api.h"
#include "console/util/console-util.h"

#define SESSION_CALL_MS 30000
#define WAIT_SLICE_MS 1000          /* transfers look at their cancellation this often */
#define DOWNLOAD_PENDING (4u << 20) /* bytes of a download waiting for a slow client */

struct xfer;

struct obx_console_xfers {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a transfer ended */
    unsigned running, max;
    bool stopping;
    struct xfer *list;
};

enum xfer_kind {
    XFER_UPLOAD,
    XFER_DOWNLOAD,
    XFER_HOST_FILE, /* a file of the console's own (an export) */
};

struct xfer {
    struct obx_console *c;
    struct obx_http_request *req; /* the completion reference */
    enum xfer_kind kind;
    char account[40];
    char *sid;  /* scoped */
    char *user; /* the session id as the client named it */
    char *path;
    int64_t size;
    json_t *mode; /* an upload's mode, or NULL */
    json_t *meta; /* a download's stat: path, mime_type */
    bool started; /* a download's head went out */
    int fd;       /* XFER_HOST_FILE */
    uint64_t last_move;
    struct obx_call call;
    struct xfer *next;
};

/* ---- answers ---- */

/* {"error": message, "code": code} with the status the code maps to. */
static void answer_error(struct obx_http_request *req, const struct obx_error *err)
{
    int status;
    json_t *body = obx_sessions_api_error(err, &status);
    obx_http_respond_json(req, status, body);
}

static void answer(struct obx_http_request *req, const char *code, const char *message)
{
    struct obx_error err = {0};
    obx_error_set(&err, 0, code, "%s", message);
    answer_error(req, &err);
}

static void answer_bad(struct obx_http_request *req, const char *message)
{
    answer(req, OBX_ERR_BAD_REQUEST, message);
}

/* ---- a session and its calls ---- */

/* The session id of the URL, scoped to the caller; NULL after answering 400. */
static char *scoped_session(struct obx_route_ctx *ctx)
{
    const char *sid = ctx->params[0];
    if (!obx_sessions_api_id_valid(sid)) {
        answer_bad(ctx->req, "session_id must be 1 to 128 visible ASCII characters");
        return NULL;
    }
    return obx_xasprintf("obx:%s:%s", ctx->account.id, sid);
}

/* A short call to the session's worker, on this thread. */
static int session_call(struct obx_console *c, const char *account, const char *capability,
                        json_t *payload, json_t **ret, struct obx_error *err)
{
    struct obx_call call;
    obx_call_init(&call);
    call.account = account;
    call.deadline = obx_now_ms() + SESSION_CALL_MS;
    int r = obx_dispatch_exec(c->dispatch, capability, payload, &call, ret, err);
    obx_call_done(&call);
    return r;
}

struct route_row {
    char *sid, *node;
    bool connected;
    json_t *info; /* from the worker's list */
    const char *status;
};

struct route_rows {
    struct route_row *v;
    size_t n, cap;
};

static void collect_route(void *userdata, const char *sid, const char *node, bool connected)
{
    struct route_rows *rows = userdata;
    if (rows->n == rows->cap) {
        rows->cap = rows->cap ? rows->cap * 2 : 16;
        rows->v = obx_xrealloc(rows->v, rows->cap * sizeof(*rows->v));
    }
    rows->v[rows->n++] =
        (struct route_row){obx_xstrdup(sid), obx_xstrdup(node), connected, NULL, NULL};
}

static int row_by_node(const void *a, const void *b)
{
    return strcmp(((const struct route_row *)a)->node, ((const struct route_row *)b)->node);
}

static int row_newest_first(const void *a, const void *b)
{
    const struct route_row *x = a, *y = b;
    int64_t cx = obx_json_get_int(x->info, "created_unix_ms", 0);
    int64_t cy = obx_json_get_int(y->info, "created_unix_ms", 0);
    if (cx != cy)
        return cx > cy ? -1 : 1;
    return strcmp(x->sid, y->sid);
}

/* Asks each connected worker once for the state of the sessions routed to it. */
static void fill_states(struct obx_console *c, const char *account, const char *prefix,
                        struct route_rows *rows)
{
    if (rows->n > 1) /* v is NULL when there are none */
        qsort(rows->v, rows->n, sizeof(*rows->v), row_by_node);
    for (size_t i = 0; i < rows->n;) {
        size_t j = i;
        while (j < rows->n && obx_streq(rows->v[j].node, rows->v[i].node))
            j++;
        json_t *list = NULL;
        struct obx_error err = OBX_ERROR_INIT;
        bool asked = false;
        if (rows->v[i].connected) {
            _cleanup_json_ json_t *payload =
                json_pack("{s:s, s:s, s:s}", "action", "list", "session_id", rows->v[i].sid,
                          "prefix", prefix);
            asked = session_call(c, account, "terminalsession", payload, &list, &err) >= 0;
            if (!asked)
                obx_debug("sessions of worker %s: %s", rows->v[i].node, err.message);
        }
        for (size_t k = i; k < j; k++) {
            struct route_row *row = &rows->v[k];
            row->status = !row->connected ? "unavailable" : asked ? NULL : "unknown";
            size_t m;
            json_t *e;
            json_array_foreach(json_object_get(list, "sessions"), m, e)
            {
                if (obx_streq(obx_json_get_str(e, "session_id", ""), row->sid)) {
                    row->info = json_incref(e);
                    row->status = "active";
                }
            }
        }
        json_decref(list);
        i = j;
    }
}

/* GET /api/v1/sessions: the account's terminal sessions, newest first. A session whose worker
 * is not connected is listed as "unavailable", without what only its worker knows. */
static enum obx_route_result list_sessions(struct obx_route_ctx *ctx)
{
    int64_t page, page_size, offset;
    if (!obx_route_page(ctx, &page, &page_size, &offset))
        return OBX_ROUTE_DONE;
    _cleanup_free_ char *prefix = obx_xasprintf("obx:%s:", ctx->account.id);
    struct route_rows rows = {0};
    obx_dispatch_sessions(ctx->console->dispatch, prefix, collect_route, &rows);
    fill_states(ctx->console, ctx->account.id, prefix, &rows);
    size_t kept = 0;
    for (size_t i = 0; i < rows.n; i++) {
        if (rows.v[i].status) {
            rows.v[kept++] = rows.v[i];
        } else { /* its worker does not have it any more */
            free(rows.v[i].sid);
            free(rows.v[i].node);
        }
    }
    rows.n = kept;
    if (rows.n > 1)
        qsort(rows.v, rows.n, sizeof(*rows.v), row_newest_first);
    json_t *items = json_array();
    for (size_t i = 0; i < rows.n; i++) {
        if ((int64_t)i >= offset && (int64_t)i < offset + page_size)
            json_array_append_new(items, obx_sessions_api_session(rows.v[i].sid + strlen(prefix),
                                                                  rows.v[i].node, rows.v[i].info,
                                                                  rows.v[i].status));
        free(rows.v[i].sid);
        free(rows.v[i].node);
        json_decref(rows.v[i].info);
    }
    free(rows.v);
    obx_http_respond_json(ctx->req, 200,
                          json_pack("{s:o, s:I, s:I, s:I}", "items", items, "total",
                                    (json_int_t)rows.n, "page", (json_int_t)page, "page_size",
                                    (json_int_t)page_size));
    return OBX_ROUTE_DONE;
}

/* The worker that has the session, or "" (for the answer's "worker"). */
static void session_node(void *userdata, const char *sid, const char *node, bool connected)
{
    struct route_row *row = userdata;
    if (obx_streq(sid, row->sid)) {
        snprintf(row->node, 129, "%s", node);
        row->connected = connected;
    }
}

/* One terminalSession call on the session of the URL, answered with the session. */
static enum obx_route_result session_action(struct obx_route_ctx *ctx, const char *action,
                                            json_t *lease)
{
    _cleanup_free_ char *sid = scoped_session(ctx);
    if (!sid)
        return OBX_ROUTE_DONE;
    _cleanup_json_ json_t *payload = json_pack("{s:s, s:s}", "action", action, "session_id", sid);
    if (lease)
        json_object_set(payload, "lease_ttl_sec", lease);
    json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (session_call(ctx->console, ctx->account.id, "terminalsession", payload, &res, &err) < 0) {
        answer_error(ctx->req, &err);
        return OBX_ROUTE_DONE;
    }
    if (obx_streq(action, "close")) {
        obx_http_respond_empty(ctx->req, 204);
    } else {
        char node[129] = "";
        struct route_row row = {.sid = sid, .node = node};
        obx_dispatch_sessions(ctx->console->dispatch, sid, session_node, &row);
        obx_http_respond_json(ctx->req, 200,
                              obx_sessions_api_session(ctx->params[0], node, res, "active"));
    }
    json_decref(res);
    return OBX_ROUTE_DONE;
}

static enum obx_route_result get_session(struct obx_route_ctx *ctx)
{
    return session_action(ctx, "get", NULL);
}

static enum obx_route_result delete_session(struct obx_route_ctx *ctx)
{
    return session_action(ctx, "close", NULL);
}

/* POST .../renew {"lease_ttl_sec"?}: the worker's bounds apply (400 names them). */
static enum obx_route_result renew_session(struct obx_route_ctx *ctx)
{
    _cleanup_json_ json_t *body = NULL;
    if (ctx->req->body_len > 0 && !(body = obx_route_body_object(ctx)))
        return OBX_ROUTE_DONE;
    json_t *lease = json_object_get(body, "lease_ttl_sec");
    if (lease && !json_is_null(lease) && !json_is_integer(lease)) {
        answer_bad(ctx->req, "lease_ttl_sec must be an integer number of seconds");
        return OBX_ROUTE_DONE;
    }
    return session_action(ctx, "renew", lease && json_is_integer(lease) ? lease : NULL);
}

/* ---- files ---- */

/* ?path=: required, no NUL, at most OBX_SESSIONS_API_PATH_MAX; NULL after answering 400. */
static const char *path_param(struct obx_route_ctx *ctx)
{
    const char *path = obx_http_request_query(ctx->req, "path");
    if (ctx->req->query_nul) {
        answer_bad(ctx->req, "path must not contain NUL characters");
        return NULL;
    }
    if (!path || !*path) {
        answer_bad(ctx->req, "path is required: ?path=FILE (absolute, or relative to the "
                             "session's working directory)");
        return NULL;
    }
    if (strlen(path) > OBX_SESSIONS_API_PATH_MAX) {
        answer_bad(ctx->req, "path is longer than 4095 bytes");
        return NULL;
    }
    return path;
}

/* A boolean query parameter: absent false; true/false/1/0. -EINVAL after answering 400. */
static int bool_param(struct obx_route_ctx *ctx, const char *name, bool *ret)
{
    const char *v = obx_http_request_query(ctx->req, name);
    *ret = false;
    if (!v)
        return 0;
    if (!*v || obx_streq(v, "true") || obx_streq(v, "1")) {
        *ret = true;
        return 0;
    }
    if (obx_streq(v, "false") || obx_streq(v, "0"))
        return 0;
    _cleanup_free_ char *msg = obx_xasprintf("%s must be true or false", name);
    answer_bad(ctx->req, msg);
    return -EINVAL;
}

/* A short terminalFiles call (delete, mkdir), answered on this thread. */
static enum obx_route_result files_call(struct obx_route_ctx *ctx, json_t *payload, int status)
{
    json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (session_call(ctx->console, ctx->account.id, "terminalfiles", payload, &res, &err) < 0) {
        answer_error(ctx->req, &err);
        return OBX_ROUTE_DONE;
    }
    json_object_set_new(res, "session_id", json_string(ctx->params[0]));
    if (status == 204) {
        json_decref(res);
        obx_http_respond_empty(ctx->req, 204);
    } else {
        obx_http_respond_json(ctx->req, status, res);
    }
    return OBX_ROUTE_DONE;
}

static enum obx_route_result delete_file(struct obx_route_ctx *ctx)
{
    _cleanup_free_ char *sid = scoped_session(ctx);
    const char *path = sid ? path_param(ctx) : NULL;
    bool recursive;
    if (!path || bool_param(ctx, "recursive", &recursive) < 0)
        return OBX_ROUTE_DONE;
    _cleanup_json_ json_t *payload = json_pack("{s:s, s:s, s:s, s:b}", "session_id", sid, "action",
                                               "delete", "path", path, "recursive", recursive);
    return files_call(ctx, payload, 204);
}

/* The transfers table. */

struct obx_console_xfers *obx_console_xfers_new(unsigned max)
{
    struct obx_console_xfers *t = obx_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->max = max;
    return t;
}

void obx_console_xfers_free(struct obx_console_xfers *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    for (struct xfer *x = t->list; x; x = x->next)
        obx_call_cancel(&x->call);
    while (t->running > 0)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t);
}

static void xfer_free(struct xfer *x)
{
    obx_closep(&x->fd);
    obx_call_done(&x->call);
    json_decref(x->mode);
    json_decref(x->meta);
    free(x->sid);
    free(x->user);
    free(x->path);
    free(x);
}

/* The transfer is over: the request is answered, the slot goes back. */
static void xfer_end(struct xfer *x)
{
    struct obx_console_xfers *t = x->c->xfers;
    pthread_mutex_lock(&t->lock);
    for (struct xfer **pp = &t->list; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    pthread_mutex_unlock(&t->lock);
    xfer_free(x);
    pthread_mutex_lock(&t->lock);
    t->running--;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* How long to keep waiting for the client: false once the transfer is to stop. */
static bool xfer_wait_more(struct xfer *x)
{
    return !obx_call_is_cancelled(&x->call) && !obx_http_request_gone(x->req) &&
           obx_now_ms() - x->last_move < OBX_CALL_STALL_MS;
}

/* call.read_data of an upload: the request's body, as it comes. */
static ssize_t upload_read(void *userdata, void *buf, size_t cap)
{
    struct xfer *x = userdata;
    for (;;) {
        ssize_t n = obx_http_body_read(x->req, buf, cap, WAIT_SLICE_MS);
        if (n != -ETIMEDOUT) {
            x->last_move = obx_now_ms();
            return n;
        }
        if (!xfer_wait_more(x))
            return obx_call_is_cancelled(&x->call) ? -ECANCELED : -ETIMEDOUT;
    }
}

/* The head of a download, once its first bytes are there (an error before that is still a
 * JSON answer). */
static void download_start(struct xfer *x)
{
    x->req->resp.status = 200;
    x->req->resp.content_type =
        obx_sessions_api_content_type(obx_json_get_str(x->meta, "mime_type", ""));
    _cleanup_free_ char *cd =
        obx_sessions_api_content_disposition(obx_json_get_str(x->meta, "path", x->path));
    obx_http_response_add_header(x->req, "content-disposition", cd);
    obx_http_response_add_header(x->req, "x-onlyboxes-file-type", "file");
    obx_http_stream_start_length(x->req, (uint64_t)x->size);
    x->started = true;
}

/* call.on_data of a download: out to the client, at most DOWNLOAD_PENDING ahead of it. */
static int download_write(void *userdata, const void *data, size_t len)
{
    struct xfer *x = userdata;
    if (!x->started)
        download_start(x);
    while (!obx_http_stream_drain(x->req, DOWNLOAD_PENDING, WAIT_SLICE_MS)) {
        if (!xfer_wait_more(x))
            return obx_http_request_gone(x->req) ? -EPIPE : -ETIMEDOUT;
    }
    obx_http_stream_write(x->req, data, len);
    x->last_move = obx_now_ms();
    return 0;
}

static int xfer_call(struct xfer *x, json_t *payload, json_t **ret, struct obx_error *err)
{
    return obx_dispatch_exec(x->c->dispatch, "terminalfiles", payload, &x->call, ret, err);
}

static void run_upload(struct xfer *x)
{
    _cleanup_json_ json_t *payload =
        json_pack("{s:s, s:s, s:s, s:I, s:b}", "session_id", x->sid, "action", "write", "path",
                  x->path, "size_bytes", (json_int_t)x->size, "parents", true);
    if (x->mode)
        json_object_set(payload, "mode", x->mode);
    x->call.read_data = upload_read;
    x->call.data_userdata = x;
    json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (xfer_call(x, payload, &res, &err) < 0) {
        if (!obx_http_request_gone(x->req))
            obx_info("upload to session %s failed: %s", x->user, err.message);
        answer_error(x->req, &err);
        return;
    }
    bool created = obx_json_get_bool(res, "created", true);
    json_object_set_new(res, "session_id", json_string(x->user));
    obx_http_respond_json(x->req, created ? 201 : 200, res);
}

static void run_download(struct xfer *x)
{
    _cleanup_json_ json_t *stat_payload =
        json_pack("{s:s, s:s, s:s}", "session_id", x->sid, "action", "stat", "path", x->path);
    struct obx_error err = OBX_ERROR_INIT;
    if (xfer_call(x, stat_payload, &x->meta, &err) < 0) {
        answer_error(x->req, &err);
        return;
    }
    const char *type = obx_json_get_str(x->meta, "type", "");
    if (obx_streq(type, "directory")) {
        _cleanup_json_ json_t *payload =
            json_pack("{s:s, s:s, s:s}", "session_id", x->sid, "action", "list", "path", x->path);
        json_t *res = NULL;
        if (xfer_call(x, payload, &res, &err) < 0) {
            answer_error(x->req, &err);
            return;
        }
        json_object_set_new(res, "type", json_string("directory"));
        json_object_set_new(res, "session_id", json_string(x->user));
        obx_http_respond_json(x->req, 200, res);
        obx_http_response_add_header(x->req, "x-onlyboxes-file-type", "directory");
        return;
    }
    if (!obx_streq(type, "file")) {
        obx_error_set(&err, EINVAL, OBX_ERR_CONFLICT, "%s is not a regular file (%s)", x->path,
                      type);
        answer_error(x->req, &err);
        return;
    }
    x->size = obx_json_get_int(x->meta, "size_bytes", 0);
    _cleanup_json_ json_t *payload =
        json_pack("{s:s, s:s, s:s, s:I}", "session_id", x->sid, "action", "read", "path", x->path,
                  "size_bytes", (json_int_t)x->size);
    x->call.on_data = download_write;
    x->call.data_userdata = x;
    json_t *res = NULL;
    int r = xfer_call(x, payload, &res, &err);
    json_decref(res);
    if (r < 0 && x->started) {
        obx_info("download from session %s cut short: %s", x->user, err.message);
        obx_http_stream_abort(x->req); /* the client sees a body shorter than its length */
        x->req = NULL;
        return;
    }
    if (r < 0) {
        answer_error(x->req, &err);
        return;
    }
    if (!x->started) /* an empty file */
        download_start(x);
    obx_http_stream_end(x->req);
    x->req = NULL;
}

static void run_host_file(struct xfer *x)
{
    _cleanup_free_ char *buf = obx_xmalloc(256u << 10);
    uint64_t off = 0;
    while (off < (uint64_t)x->size) {
        ssize_t n =
            pread(x->fd, buf, (size_t)OBX_MIN((uint64_t)x->size - off, 256u << 10), (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || download_write(x, buf, (size_t)n) < 0)
            break;
        off += (uint64_t)n;
    }
    if (off < (uint64_t)x->size && x->started) {
        obx_http_stream_abort(x->req);
    } else if (off < (uint64_t)x->size) {
        obx_route_fail(x->req, OBX_ERR_INTERNAL, "the file could not be read");
        return;
    } else {
        if (!x->started)
            download_start(x);
        obx_http_stream_end(x->req);
    }
    x->req = NULL;
}

static void *xfer_main(void *arg)
{
    struct xfer *x = arg;
    if (x->kind == XFER_UPLOAD)
        run_upload(x);
    else if (x->kind == XFER_DOWNLOAD)
        run_download(x);
    else
        run_host_file(x);
    if (x->req)
        obx_http_request_complete(x->req);
    xfer_end(x);
    return NULL;
}

static struct xfer *xfer_new(enum xfer_kind kind)
{
    struct xfer *x = obx_xcalloc(1, sizeof(*x));
    x->kind = kind;
    x->fd = -1;
    return x;
}

/* Hands the request to a transfer thread (ASYNC), or answers 503 when there are too many. */
static enum obx_route_result xfer_start(struct obx_route_ctx *ctx, struct xfer *x)
{
    struct obx_console_xfers *t = ctx->console->xfers;
    x->c = ctx->console;
    x->req = ctx->req;
    x->last_move = obx_now_ms();
    snprintf(x->account, sizeof(x->account), "%s", ctx->account.id);
    obx_call_init(&x->call);
    x->call.account = x->account;
    pthread_mutex_lock(&t->lock);
    bool room = !t->stopping && t->running < t->max;
    if (room) {
        t->running++;
        x->next = t->list;
        t->list = x;
    }
    pthread_mutex_unlock(&t->lock);
    if (!room) {
        xfer_free(x);
        _cleanup_free_ char *msg =
            obx_xasprintf("%u file transfers run already, the console's limit "
                          "(CONSOLE_MAX_TRANSFERS); try again shortly",
                          t->max);
        obx_route_fail(ctx->req, OBX_ERR_UNAVAILABLE, msg);
        return OBX_ROUTE_DONE;
    }
    pthread_t thr;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&thr, &attr, xfer_main, x);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        x->req = NULL;
        xfer_end(x);
        obx_route_fail(ctx->req, OBX_ERR_UNAVAILABLE, "cannot start a transfer; try again");
        return OBX_ROUTE_DONE;
    }
    return OBX_ROUTE_ASYNC;
}

/* ?mode=0644 (octal): NULL when absent; -EINVAL after answering 400. */
static int mode_param(struct obx_route_ctx *ctx, json_t **ret)
{
    const char *v = obx_http_request_query(ctx->req, "mode");
    *ret = NULL;
    if (!v)
        return 0;
    char *end = NULL;
    long m = *v ? strtol(v, &end, 8) : -1;
    if (!*v || *end || m < 0 || m > 07777) {
        answer_bad(ctx->req, "mode must be an octal permission number from 0 to 7777, e.g. 0644");
        return -EINVAL;
    }
    *ret = json_integer(m);
    return 0;
}

/* PUT .../files?path=P: the body becomes the file (parents created); ?type=directory makes a
 * directory instead. */
static enum obx_route_result put_file(struct obx_route_ctx *ctx)
{
    _cleanup_free_ char *sid = scoped_session(ctx);
    const char *path = sid ? path_param(ctx) : NULL;
    if (!path)
        return OBX_ROUTE_DONE;
    const char *type = obx_http_request_query(ctx->req, "type");
    int64_t length = obx_http_body_length(ctx->req);
    if (type && obx_streq(type, "directory")) {
        if (length > 0) {
            answer_bad(ctx->req, "a directory takes no body");
            return OBX_ROUTE_DONE;
        }
        _cleanup_json_ json_t *payload =
            json_pack("{s:s, s:s, s:s}", "session_id", sid, "action", "mkdir", "path", path);
        return files_call(ctx, payload, 201);
    }
    if (type && !obx_streq(type, "file")) {
        answer_bad(ctx->req, "type must be file (the default) or directory");
        return OBX_ROUTE_DONE;
    }
    uint64_t max = (uint64_t)ctx->console->cfg->max_upload_mb << 20;
    if ((uint64_t)length > max) {
        _cleanup_free_ char *msg =
            obx_xasprintf("the file is %lld bytes; the console takes at most %d MiB per upload "
                          "(CONSOLE_MAX_UPLOAD_MB)",
                          (long long)length, ctx->console->cfg->max_upload_mb);
        answer(ctx->req, OBX_ERR_FILE_TOO_LARGE, msg);
        return OBX_ROUTE_DONE;
    }
    json_t *mode = NULL;
    if (mode_param(ctx, &mode) < 0)
        return OBX_ROUTE_DONE;
    struct xfer *x = xfer_new(XFER_UPLOAD);
    x->sid = TAKE_PTR(sid);
    x->user = obx_xstrdup(ctx->params[0]);
    x->path = obx_xstrdup(path);
    x->size = length;
    x->mode = mode;
    return xfer_start(ctx, x);
}

/* GET .../files?path=P: a file's bytes, or a directory's listing as JSON. */
static enum obx_route_result get_file(struct obx_route_ctx *ctx)
{
    _cleanup_free_ char *sid = scoped_session(ctx);
    const char *path = sid ? path_param(ctx) : NULL;
    if (!path)
        return OBX_ROUTE_DONE;
    struct xfer *x = xfer_new(XFER_DOWNLOAD);
    x->sid = TAKE_PTR(sid);
    x->user = obx_xstrdup(ctx->params[0]);
    x->path = obx_xstrdup(path);
    return xfer_start(ctx, x);
}

enum obx_route_result obx_console_send_file(struct obx_route_ctx *ctx, int fd, uint64_t size,
                                            const char *filename, const char *mime)
{
    struct xfer *x = xfer_new(XFER_HOST_FILE);
    x->fd = fd;
    x->size = (int64_t)size;
    x->path = obx_xstrdup(filename);
    x->meta = json_pack("{s:s, s:s}", "path", filename, "mime_type", mime);
    return xfer_start(ctx, x);
}

int64_t obx_router_stream_body(const struct obx_http_request *req, void *userdata)
{
    const struct obx_console *c = userdata;
    if (req->method != OBX_HTTP_PUT || strncmp(req->path, "/api/v1/sessions/", 17) != 0)
        return -1;
    const char *rest = req->path + 17, *slash = strchr(rest, '/');
    if (!slash || slash == rest || !obx_streq(slash, "/files"))
        return -1;
    return (int64_t)c->cfg->max_upload_mb << 20;
}

const struct obx_route obx_session_routes[] = {
    {OBX_HTTP_GET, "/api/v1/sessions", OBX_ROUTE_AUTH_ACCOUNT, list_sessions},
    {OBX_HTTP_GET, "/api/v1/sessions/:session_id", OBX_ROUTE_AUTH_ACCOUNT, get_session},
    {OBX_HTTP_DELETE, "/api/v1/sessions/:session_id", OBX_ROUTE_AUTH_ACCOUNT, delete_session},
    {OBX_HTTP_POST, "/api/v1/sessions/:session_id/renew", OBX_ROUTE_AUTH_ACCOUNT, renew_session},
    {OBX_HTTP_PUT, "/api/v1/sessions/:session_id/files", OBX_ROUTE_AUTH_BEARER, put_file},
    {OBX_HTTP_GET, "/api/v1/sessions/:session_id/files", OBX_ROUTE_AUTH_BEARER, get_file},
    {OBX_HTTP_DELETE, "/api/v1/sessions/:session_id/files", OBX_ROUTE_AUTH_BEARER, delete_file},
};
const size_t obx_session_routes_n = OBX_ARRAY_SIZE(obx_session_routes);
