/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote workers: the console's side of the worker protocol. A new stream must say hello first
 * (within REG_HELLO_TIMEOUT_MS); the event thread checks the hello as the original console does
 * (reference §3.2, same gRPC statuses and messages), registers the node, restores its routes and
 * answers with the ack. Then, on the rpc thread: heartbeats are answered at once and written to the
 * store by the event thread; results end their calls; output frames go to the caller's hook. A
 * worker whose heartbeats stop for two intervals is ended and its calls fail with worker_lost, so
 * a paused or cut-off worker cannot hold calls until their deadlines.
 *
 * Everything a worker sends is untrusted: frames are bounded by gRPC (4 MiB), strings are checked
 * UTF-8 by the decoder, capability and label lists are bounded here, a result must be JSON, and a
 * worker can answer only the calls sent to it (calls are looked up on its own node).
 */
#include "registry-internal.h"

#include <ctype.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"
#include "console/auth/auth.h"

#define DEFAULT_MAX_INFLIGHT 4
#define MAX_INFLIGHT_CAP 1024

static char *const console_extensions[] = {OBX_RPC_EXT_CANCEL,   OBX_RPC_EXT_OUTPUT,
                                           OBX_RPC_EXT_RECOVERY, OBX_RPC_EXT_FILES,
                                           OBX_RPC_EXT_DRAIN,    OBX_RPC_EXT_PTY};

static void conn_free(struct reg_conn *c)
{
    obx_rpc_stream_unref(c->stream);
    free(c);
}

void reg_conn_unref(struct obx_dispatch *d, struct reg_conn *c)
{
    if (c && --c->refs == 0) {
        reg_node_unref(d, c->node);
        conn_free(c);
    }
}

static uint64_t lost_after_ms(const struct obx_dispatch *d)
{
    return (uint64_t)d->cfg.heartbeat_interval_sec * 2000 + 1000;
}

/* ---- frames on the rpc thread ---- */

static void on_heartbeat(struct obx_dispatch *d, struct reg_conn *conn,
                         const struct obx_rpc_heartbeat *hb)
{
    struct reg_node *n = conn->node;
    if (obx_str_blank(hb->session_id)) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT, "session_id is required");
        return;
    }
    if (strcmp(hb->node_id, n->id) != 0) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT, "node_id mismatch");
        return;
    }
    if (strcmp(hb->session_id, n->session_id) != 0) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_FAILED_PRECONDITION, "session is outdated");
        return;
    }
    n->last_seen = obx_now_ms();
    if (hb->active_session_count >= 0)
        n->active_sessions = hb->active_session_count;
    if (hb->draining && !n->draining) {
        n->draining = true;
        obx_info("worker %s is stopping: it finishes what it runs and gets no new work", n->id);
    }
    struct obx_rpc_frame ack = {.kind = OBX_RPC_HEARTBEAT_ACK};
    ack.u.heartbeat_ack.heartbeat_interval_sec = d->cfg.heartbeat_interval_sec;
    (void)obx_rpc_stream_send(conn->stream, &ack, true);
    if (conn->eof)
        obx_rpc_stream_close(conn->stream, OBX_RPC_OK, "");
    struct reg_event *ev = obx_xcalloc(1, sizeof(*ev));
    ev->kind = EV_SEEN;
    snprintf(ev->node_id, sizeof(ev->node_id), "%s", n->id);
    snprintf(ev->session_id, sizeof(ev->session_id), "%s", n->session_id);
    reg_event_post(d, ev);
}

struct reg_call *reg_call_find(struct reg_node *n, const char *id)
{
    for (struct reg_call *c = n->calls; c; c = c->next)
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

static void on_result(struct obx_dispatch *d, struct reg_conn *conn, struct obx_rpc_result *res)
{
    struct reg_node *n = conn->node;
    if (!res->command_id[0]) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT, "command_id is required");
        return;
    }
    struct reg_call *c = reg_call_find(n, res->command_id);
    if (!c || c->finished) {
        obx_debug("worker %s answered command %.40s, which is not waiting (ended already)", n->id,
                  res->command_id);
        return;
    }
    struct obx_error err = OBX_ERROR_INIT;
    if (res->has_error) {
        obx_error_set(&err, EIO, res->error_code[0] ? "" : "execution_failed", "%s",
                      res->error_message);
        if (res->error_code[0])
            snprintf(err.code, sizeof(err.code), "%.39s", res->error_code);
        reg_call_finish(d, c, -EIO, NULL, &err);
        return;
    }
    if (res->payload_len == 0) {
        obx_error_set(&err, EIO, "empty_result", "worker returned empty command result");
        reg_call_finish(d, c, -EIO, NULL, &err);
        return;
    }
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *j = obx_json_parse((const char *)res->payload, res->payload_len, &perr);
    if (!j) {
        obx_error_set(&err, EBADMSG, "invalid_result",
                      "worker %s answered with a result that is not JSON: %s", n->id, perr.message);
        reg_call_finish(d, c, -EBADMSG, NULL, &err);
        return;
    }
    reg_call_finish(d, c, 0, j, NULL);
}

static void on_output(struct obx_dispatch *d, struct reg_conn *conn, struct obx_rpc_output *o)
{
    struct reg_node *n = conn->node;
    if (!n->ext_output) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT, "unsupported frame type");
        return;
    }
    struct reg_call *c = reg_call_find(n, o->command_id);
    if (!c || c->finished || !c->call)
        return;
    struct obx_call *call = c->call;
    if (o->stream != OBX_RPC_OUTPUT_LOG) {
        if (o->data_len > 0)
            reg_call_output(
                d, c, o->stream == OBX_RPC_OUTPUT_STDERR ? OBX_STREAM_STDERR : OBX_STREAM_STDOUT,
                o->data, o->data_len);
        return;
    }
    /* The hook runs without the lock; the call's end waits for it (deliver()). */
    c->hooks++;
    pthread_mutex_unlock(&d->lock);
    if (call->on_log) {
        _cleanup_free_ char *line = obx_xstrndup((const char *)o->data, o->data_len);
        call->on_log(call->log_userdata, o->log_level, line);
    }
    pthread_mutex_lock(&d->lock);
    c->hooks--;
    pthread_cond_broadcast(&d->cond);
}

void reg_call_output(struct obx_dispatch *d, struct reg_call *c, enum obx_stream stream,
                     const void *data, size_t len)
{
    struct obx_call *call = c->call;
    if (!call || !call->on_output)
        return;
    c->hooks++;
    pthread_mutex_unlock(&d->lock);
    call->on_output(call->output_userdata, stream, data, len);
    pthread_mutex_lock(&d->lock);
    c->hooks--;
    pthread_cond_broadcast(&d->cond);
}

/* "files": a chunk of a read, or the worker's acknowledgement of a write's bytes, for the thread
 * that moves them (registry.c). Only for the worker's own calls that move a file. */
static void on_file_frame(struct obx_dispatch *d, struct reg_conn *conn, struct obx_rpc_frame *f)
{
    (void)d;
    struct reg_node *n = conn->node;
    bool chunk = f->kind == OBX_RPC_FILE_CHUNK;
    if (!n->ext_files) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT, "unsupported frame type");
        return;
    }
    struct reg_call *c = reg_call_find(n, chunk ? f->u.chunk.command_id : f->u.file_ack.command_id);
    if (!c || c->finished)
        return; /* it ended already */
    if (!c->xfer) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT,
                             "a file frame for a command that moves no file");
        return;
    }
    struct reg_xfer *x = c->xfer;
    pthread_mutex_lock(&x->lock);
    if (chunk) {
        if (f->u.chunk.data_len > OBX_RPC_FILE_CHUNK_BYTES ||
            obx_buf_append(&x->in, f->u.chunk.data, f->u.chunk.data_len) < 0)
            x->overrun = true;
    } else if (f->u.file_ack.received > (int64_t)x->worker_taken) {
        x->worker_taken = (uint64_t)f->u.file_ack.received;
    }
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

static void on_frame(void *userdata, struct obx_rpc_stream *s, struct obx_rpc_frame *f)
{
    (void)s;
    struct reg_conn *conn = userdata;
    struct obx_dispatch *d = conn->d;
    pthread_mutex_lock(&d->lock);
    switch (conn->state) {
    case CONN_HELLO:
        if (f->kind != OBX_RPC_HELLO) {
            obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT,
                                 "first frame must be hello");
            break;
        }
        conn->state = CONN_CHECKING;
        struct reg_event *ev = obx_xcalloc(1, sizeof(*ev));
        ev->kind = EV_HELLO;
        ev->hello = f->u.hello; /* taken: the frame is left empty */
        f->kind = OBX_RPC_NONE;
        conn->refs++;
        ev->conn = conn;
        reg_event_post(d, ev);
        break;
    case CONN_CHECKING:
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT,
                             "a frame came before the connect ack; wait for it");
        break;
    case CONN_READY:
        switch (f->kind) {
        case OBX_RPC_HEARTBEAT:
            on_heartbeat(d, conn, &f->u.heartbeat);
            break;
        case OBX_RPC_RESULT:
            on_result(d, conn, &f->u.result);
            break;
        case OBX_RPC_OUTPUT:
            on_output(d, conn, &f->u.output);
            break;
        case OBX_RPC_PTY_OUTPUT:
            reg_pty_output(d, conn, &f->u.pty_output);
            break;
        case OBX_RPC_FILE_CHUNK:
        case OBX_RPC_FILE_ACK:
            on_file_frame(d, conn, f);
            break;
        default:
            obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT, "unsupported frame type");
            break;
        }
        break;
    case CONN_CLOSED:
        break;
    }
    pthread_mutex_unlock(&d->lock);
}

static void on_closed(void *userdata, struct obx_rpc_stream *s, int status, const char *message)
{
    (void)s;
    struct reg_conn *conn = userdata;
    struct obx_dispatch *d = conn->d;
    pthread_mutex_lock(&d->lock);
    if (conn->state == CONN_HELLO || conn->state == CONN_CHECKING)
        d->n_handshakes--;
    conn->state = CONN_CLOSED;
    struct reg_node *n = conn->node;
    if (n && n->conn == conn) {
        char why[320];
        snprintf(why, sizeof(why), "%s: %s", obx_rpc_status_name(status), message);
        obx_info("worker %s disconnected (%s)", n->id, why);
        reg_node_fail_calls(d, n, why);
        if (n->live)
            reg_node_unlink(d, n);
        n->conn = NULL;
        struct reg_event *ev = obx_xcalloc(1, sizeof(*ev));
        ev->kind = EV_ENDED;
        snprintf(ev->node_id, sizeof(ev->node_id), "%s", n->id);
        snprintf(ev->session_id, sizeof(ev->session_id), "%s", n->session_id);
        reg_event_post(d, ev);
    }
    for (struct reg_conn **pp = &d->conns; *pp; pp = &(*pp)->next)
        if (*pp == conn) {
            *pp = conn->next;
            reg_conn_unref(d, conn);
            break;
        }
    pthread_mutex_unlock(&d->lock);
}

/* The worker sent its last frame: before a hello that is the original's refusal, after it the
 * end of a session. */
static void on_eof(void *userdata, struct obx_rpc_stream *s)
{
    struct reg_conn *conn = userdata;
    struct obx_dispatch *d = conn->d;
    pthread_mutex_lock(&d->lock);
    if (conn->state == CONN_HELLO)
        obx_rpc_stream_close(s, OBX_RPC_INVALID_ARGUMENT, "first frame must be hello");
    else if (conn->state == CONN_CHECKING)
        conn->eof = true; /* the hello's answer (a refusal) comes first */
    else
        obx_rpc_stream_close(s, OBX_RPC_OK, "");
    pthread_mutex_unlock(&d->lock);
}

static const struct obx_rpc_stream_ops conn_ops = {on_frame, on_closed, on_eof};

static void on_stream(void *userdata, struct obx_rpc_stream *s)
{
    struct obx_dispatch *d = userdata;
    pthread_mutex_lock(&d->lock);
    const char *refusal = d->stopping ? "the console is shutting down"
                          : d->n_handshakes >= d->cfg.max_handshakes
                              ? "too many connections are waiting to say hello; try again later"
                              : NULL;
    struct reg_conn *conn = NULL;
    if (!refusal) {
        conn = obx_xcalloc(1, sizeof(*conn));
        conn->refs = 1;
        conn->d = d;
        conn->stream = obx_rpc_stream_ref(s);
        conn->state = CONN_HELLO;
        conn->hello_deadline = obx_now_ms() + REG_HELLO_TIMEOUT_MS;
        conn->next = d->conns;
        d->conns = conn;
        d->n_handshakes++;
        d->next_scan = OBX_MIN(d->next_scan, conn->hello_deadline);
    }
    pthread_mutex_unlock(&d->lock);
    if (refusal) {
        obx_rpc_stream_close(s, d->stopping ? OBX_RPC_UNAVAILABLE : OBX_RPC_RESOURCE_EXHAUSTED,
                             refusal);
        return;
    }
    obx_rpc_stream_set_ops(s, &conn_ops, conn);
}

/* ---- the hello, on the event thread ---- */

static void trim(const char *s, char *out, size_t size)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    snprintf(out, size, "%.*s", (int)OBX_MIN(n, size - 1), s);
}

static const char *label_value(const struct obx_store_worker_label *l, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (obx_streq(l[i].key, key))
            return l[i].value;
    return "";
}

/* Capabilities as dispatched: trimmed, lower-cased, one per name, max_inflight defaulted and
 * bounded. A worker-sys is held to its two. Returns a gRPC status, OK when accepted. */
static int node_caps(struct reg_node *n, const struct obx_rpc_hello *h, bool worker_sys,
                     const char **why)
{
    if (h->n_capabilities > REG_MAX_CAPS) {
        *why = "too many capabilities (at most 16)";
        return OBX_RPC_INVALID_ARGUMENT;
    }
    bool has_cu = false, has_ri = false;
    for (size_t i = 0; i < h->n_capabilities; i++) {
        char name[64];
        trim(h->capabilities[i].name, name, sizeof(name));
        if (!name[0])
            continue;
        char lower[64];
        size_t len = strlen(name);
        for (size_t k = 0; k <= len; k++)
            lower[k] = (char)tolower((unsigned char)name[k]);
        if (worker_sys) {
            if (strcmp(lower, "computeruse") != 0 && strcmp(lower, "readimage") != 0) {
                *why = "worker-sys supports only computerUse and readImage capabilities";
                return OBX_RPC_PERMISSION_DENIED;
            }
            has_cu = has_cu || strcmp(lower, "computeruse") == 0;
            has_ri = has_ri || strcmp(lower, "readimage") == 0;
            continue;
        }
        struct reg_cap *c = NULL;
        for (size_t k = 0; k < n->n_caps && !c; k++)
            if (strcmp(n->caps[k].name, lower) == 0)
                c = &n->caps[k];
        if (!c)
            c = &n->caps[n->n_caps++];
        snprintf(c->name, sizeof(c->name), "%s", lower);
        snprintf(c->declared, sizeof(c->declared), "%s", name);
        int32_t max = h->capabilities[i].max_inflight;
        c->max_inflight =
            max <= 0 ? DEFAULT_MAX_INFLIGHT : (unsigned)OBX_MIN(max, MAX_INFLIGHT_CAP);
    }
    if (worker_sys) {
        if (!has_cu || !has_ri) {
            *why = "worker-sys requires computerUse and readImage capabilities";
            return OBX_RPC_PERMISSION_DENIED;
        }
        n->n_caps = 2;
        n->caps[0] = (struct reg_cap){"computeruse", "computerUse", 1, 0};
        n->caps[1] = (struct reg_cap){"readimage", "readImage", 1, 0};
    }
    return OBX_RPC_OK;
}

static int hello_labels(const struct obx_rpc_hello *h, const char **why)
{
    if (h->n_labels > REG_MAX_LABELS) {
        *why = "too many labels (at most 64)";
        return OBX_RPC_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < h->n_labels; i++)
        if (strlen(h->labels[i].key) > REG_LABEL_MAX_BYTES ||
            strlen(h->labels[i].value) > REG_LABEL_MAX_BYTES || !h->labels[i].key[0]) {
            *why = "a label key is empty, or a label is longer than 256 bytes";
            return OBX_RPC_INVALID_ARGUMENT;
        }
    return OBX_RPC_OK;
}

/* Checks the hello against the store: the credential and the stored type. Fills n's caps. */
static int check_hello(struct obx_dispatch *d, const struct obx_rpc_hello *h, struct reg_node *n,
                       const char **why)
{
    char id[OBX_WORKER_NODE_ID_MAX + 2];
    trim(h->node_id, id, sizeof(id));
    if (!id[0]) {
        *why = "node_id is required";
        return OBX_RPC_INVALID_ARGUMENT;
    }
    if (strlen(h->node_id) > OBX_WORKER_NODE_ID_MAX) {
        *why = "node_id is too long";
        return OBX_RPC_INVALID_ARGUMENT;
    }
    if (obx_streq(id, OBX_DISPATCH_EMBEDDED_ID)) {
        *why = "unknown worker_id";
        return OBX_RPC_UNAUTHENTICATED;
    }
    char stored[65];
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_worker_secret_hash(d->store, id, stored, &err);
    if (r == -ENOENT) {
        *why = "unknown worker_id";
        return OBX_RPC_UNAUTHENTICATED;
    }
    if (r < 0) {
        obx_warn("worker handshake: %s", err.message);
        *why = "failed to read the worker credential";
        return OBX_RPC_INTERNAL;
    }
    char secret[512];
    trim(h->worker_secret, secret, sizeof(secret));
    if (!secret[0]) {
        *why = "worker_secret is required";
        return OBX_RPC_UNAUTHENTICATED;
    }
    char got[OBX_AUTH_HEX_LEN + 1];
    obx_auth_hmac_hex(d->cfg.hash_key, secret, strlen(secret), got);
    explicit_bzero(secret, sizeof(secret));
    if (!obx_auth_equal(got, stored, OBX_AUTH_HEX_LEN)) {
        *why = "invalid worker credential";
        return OBX_RPC_UNAUTHENTICATED;
    }
    int code = hello_labels(h, why);
    if (code != OBX_RPC_OK)
        return code;
    struct obx_store_worker_label *labels = NULL;
    size_t n_labels = 0;
    if (obx_store_worker_labels(d->store, id, &labels, &n_labels, &err) < 0) {
        obx_warn("worker handshake: %s", err.message);
        *why = "failed to read the worker's labels";
        return OBX_RPC_INTERNAL;
    }
    bool sys = obx_streq(label_value(labels, n_labels, OBX_WORKER_LABEL_TYPE), OBX_WORKER_TYPE_SYS);
    obx_store_worker_labels_free(labels, n_labels);
    memcpy(n->id, id, strlen(id) + 1); /* at most OBX_WORKER_NODE_ID_MAX bytes, checked above */
    return node_caps(n, h, sys, why);
}

static void refuse(struct obx_dispatch *d, struct reg_conn *conn, int code, const char *why)
{
    obx_info("worker handshake from %s refused: %s %s", obx_rpc_stream_peer(conn->stream),
             obx_rpc_status_name(code), why);
    pthread_mutex_lock(&d->lock);
    obx_rpc_stream_close(conn->stream, code, why);
    pthread_mutex_unlock(&d->lock);
}

void reg_remote_hello(struct obx_dispatch *d, struct reg_event *ev)
{
    struct reg_conn *conn = ev->conn;
    struct obx_rpc_hello *h = &ev->hello;
    struct reg_node *n = obx_xcalloc(1, sizeof(*n));
    n->refs = 1;
    const char *why = "";
    int code = check_hello(d, h, n, &why);
    if (code == OBX_RPC_OK) {
        obx_random_uuid(n->session_id);
        struct obx_store_worker_cap caps[REG_MAX_CAPS];
        for (size_t i = 0; i < n->n_caps; i++)
            caps[i] =
                (struct obx_store_worker_cap){n->caps[i].declared, (int)n->caps[i].max_inflight};
        struct obx_store_worker_label labels[REG_MAX_LABELS];
        for (size_t i = 0; i < h->n_labels; i++)
            labels[i] = (struct obx_store_worker_label){h->labels[i].key, h->labels[i].value};
        char name[256];
        trim(h->node_name, name, sizeof(name));
        struct obx_store_registration reg = {
            .node_id = n->id,
            .session_id = n->session_id,
            .node_name = name,
            .executor_kind = h->executor_kind,
            .version = h->version,
            .caps = caps,
            .n_caps = n->n_caps,
            .labels = labels,
            .n_labels = h->n_labels,
            .now_ms = obx_unix_ms(),
        };
        struct obx_error err = OBX_ERROR_INIT;
        if (obx_store_worker_register(d->store, &reg, &err) < 0) {
            obx_warn("worker %s: %s", n->id, err.message);
            code = err.errnum == ENOENT ? OBX_RPC_UNAUTHENTICATED : OBX_RPC_INTERNAL;
            why = err.errnum == ENOENT ? "unknown worker_id"
                                       : "failed to persist worker registration";
        }
    }
    if (code != OBX_RPC_OK) {
        refuse(d, conn, code, why);
        free(n);
        pthread_mutex_lock(&d->lock);
        reg_conn_unref(d, conn);
        pthread_mutex_unlock(&d->lock);
        return;
    }
    bool speaks = h->n_extensions > 0;
    n->ext_cancel = obx_rpc_has_extension(h->extensions, h->n_extensions, OBX_RPC_EXT_CANCEL);
    n->ext_output = obx_rpc_has_extension(h->extensions, h->n_extensions, OBX_RPC_EXT_OUTPUT);
    n->ext_recovery = obx_rpc_has_extension(h->extensions, h->n_extensions, OBX_RPC_EXT_RECOVERY);
    n->ext_files = obx_rpc_has_extension(h->extensions, h->n_extensions, OBX_RPC_EXT_FILES);
    n->draining = false;
    n->ext_pty = obx_rpc_has_extension(h->extensions, h->n_extensions, OBX_RPC_EXT_PTY);
    if (h->has_terminal_capacity) {
        n->max_sessions = h->max_active_sessions > 0 ? h->max_active_sessions : 0;
        n->active_sessions = h->active_session_count > 0 ? h->active_session_count : 0;
    }
    n->last_seen = obx_now_ms();

    pthread_mutex_lock(&d->lock);
    if (conn->state == CONN_CLOSED || d->stopping) {
        pthread_mutex_unlock(&d->lock);
        free(n);
        pthread_mutex_lock(&d->lock);
        reg_conn_unref(d, conn);
        pthread_mutex_unlock(&d->lock);
        return;
    }
    struct reg_node *old = reg_node_find(d, n->id);
    if (old && old->conn) {
        obx_rpc_stream_close(old->conn->stream, OBX_RPC_FAILED_PRECONDITION,
                             "session replaced by a newer connection");
        reg_node_fail_calls(d, old, "replaced by a newer connection");
        old->conn->node = NULL;
        reg_node_unref(d, old); /* the connection's reference */
        old->conn = NULL;
    }
    if (old)
        reg_node_unlink(d, old);
    n->conn = conn;
    n->live = true;
    conn->node = reg_node_ref(n);
    conn->state = CONN_READY;
    d->n_handshakes--;
    struct reg_node **tail = &d->nodes;
    while (*tail)
        tail = &(*tail)->next;
    *tail = n;
    /* Routes: a worker that reports its sessions is believed; one that cannot keeps its routes. */
    if (n->ext_recovery) {
        char *keep[1024];
        size_t k = 0;
        for (size_t i = 0; i < h->n_live_sessions && k < OBX_ARRAY_SIZE(keep); i++) {
            const char *sid = h->live_sessions[i].session_id;
            if (strncmp(sid, "obx:", 4) != 0)
                continue; /* not one of this console's scoped ids */
            reg_route_set(d, sid, n->id, true);
            keep[k++] = h->live_sessions[i].session_id;
        }
        reg_routes_keep_only(d, n->id, keep, k);
    }
    struct obx_rpc_frame ack = {.kind = OBX_RPC_ACK};
    ack.u.ack.session_id = n->session_id;
    ack.u.ack.heartbeat_interval_sec = d->cfg.heartbeat_interval_sec;
    if (speaks) {
        ack.u.ack.extensions = (char **)console_extensions;
        ack.u.ack.n_extensions = OBX_ARRAY_SIZE(console_extensions);
    }
    (void)obx_rpc_stream_send(conn->stream, &ack, true);
    if (conn->eof)
        obx_rpc_stream_close(conn->stream, OBX_RPC_OK, "");
    obx_info("worker %s connected from %s (%zu capabilities, %s)", n->id,
             obx_rpc_stream_peer(conn->stream), n->n_caps,
             speaks ? "onlyboxes extensions" : "original protocol");
    reg_conn_unref(d, conn); /* the event's reference */
    pthread_mutex_unlock(&d->lock);
}

/* ---- calls ---- */

int reg_remote_send_call(struct obx_dispatch *d, struct reg_call *c, json_t *payload)
{
    (void)d;
    struct reg_node *n = c->node;
    if (!n->conn)
        return -EPIPE;
    _cleanup_free_ char *json = json_dumps(payload ? payload : json_object(), JSON_COMPACT);
    if (!json)
        return -EINVAL;
    struct obx_rpc_frame f = {.kind = OBX_RPC_DISPATCH};
    f.u.dispatch.command_id = c->id;
    f.u.dispatch.capability = c->capability;
    f.u.dispatch.payload = (uint8_t *)json;
    f.u.dispatch.payload_len = strlen(json);
    if (c->call && c->call->deadline) {
        uint64_t now = obx_now_ms();
        uint64_t left = c->call->deadline > now ? c->call->deadline - now : 0;
        f.u.dispatch.deadline_unix_ms = obx_unix_ms() + (int64_t)left;
    }
    if (c->xfer) { /* its bytes go on this stream, after the dispatch */
        pthread_mutex_lock(&c->xfer->lock);
        c->xfer->stream = obx_rpc_stream_ref(n->conn->stream);
        snprintf(c->xfer->command_id, sizeof(c->xfer->command_id), "%s", c->id);
        pthread_mutex_unlock(&c->xfer->lock);
    }
    return obx_rpc_stream_send(n->conn->stream, &f, false);
}

void reg_remote_send_cancel(struct obx_dispatch *d, struct reg_call *c, const char *reason)
{
    (void)d;
    struct reg_node *n = c->node;
    if (!n->ext_cancel || !n->conn || c->finished)
        return;
    struct obx_rpc_frame f = {.kind = OBX_RPC_CANCEL};
    f.u.cancel.command_id = c->id;
    f.u.cancel.reason = (char *)reason;
    (void)obx_rpc_stream_send(n->conn->stream, &f, true);
}

uint64_t reg_remote_timers(struct obx_dispatch *d, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (struct reg_conn *c = d->conns; c; c = c->next) {
        if (c->state != CONN_HELLO)
            continue;
        if (now >= c->hello_deadline)
            obx_rpc_stream_close(c->stream, OBX_RPC_DEADLINE_EXCEEDED,
                                 "no hello within 10 s of connecting");
        else
            next = OBX_MIN(next, c->hello_deadline);
    }
    uint64_t lost = lost_after_ms(d);
    for (struct reg_node *n = d->nodes, *following; n; n = following) {
        following = n->next;
        if (n->local || !n->conn)
            continue;
        if (now - n->last_seen > lost) {
            char why[128];
            snprintf(why, sizeof(why), "no heartbeat for %llu s",
                     (unsigned long long)((now - n->last_seen) / 1000));
            obx_warn("worker %s: %s; ending its stream", n->id, why);
            obx_rpc_stream_close(n->conn->stream, OBX_RPC_UNAVAILABLE, why);
            reg_node_fail_calls(d, n, why);
            reg_node_unlink(d, n);
        } else {
            next = OBX_MIN(next, n->last_seen + lost + 1);
        }
    }
    return next;
}

/* ---- the listener ---- */

int reg_remote_start(struct obx_dispatch *d, struct obx_error *err)
{
    struct obx_rpc_server_config sc = {
        .host = d->cfg.grpc_host,
        .port = d->cfg.grpc_port,
        .tls_cert_file = d->cfg.tls_cert_file,
        .tls_key_file = d->cfg.tls_key_file,
        .client_ca_file = d->cfg.client_ca_file,
        .max_streams = d->cfg.max_workers ? d->cfg.max_workers : 1024,
        .on_stream = on_stream,
        .userdata = d,
    };
    if (d->cfg.max_handshakes == 0)
        d->cfg.max_handshakes = 64;
    int r = obx_rpc_server_new(&sc, &d->rpc, err);
    if (r < 0)
        return obx_error_wrap(err, "CONSOLE_GRPC_ADDR");
    obx_rpc_server_addrs(d->rpc, d->grpc_addrs, sizeof(d->grpc_addrs));
    d->grpc_port = obx_rpc_server_port(d->rpc);
    return 0;
}

void reg_remote_stop(struct obx_dispatch *d)
{
    obx_rpc_server_free(TAKE_PTR(d->rpc)); /* closes every stream: on_closed ends its calls */
}
