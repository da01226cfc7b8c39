/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Connect stream both sides share: the receive loop that decodes frames, the two send queues
 * with one send in flight, and the end of the stream (rpc-internal.h has the life cycle).
 */
#include "rpc-internal.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count;

static void grpc_log(gpr_log_func_args *a)
{
    enum obx_log_level l = a->severity == GPR_LOG_SEVERITY_ERROR ? OBX_LOG_WARN : OBX_LOG_DEBUG;
    obx_log(l, "grpc: %s", a->message);
}

void obx_rpc_global_init(void)
{
    pthread_mutex_lock(&init_lock);
    if (init_count++ == 0) {
        gpr_set_log_function(grpc_log);
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
        grpc_init();
    }
    pthread_mutex_unlock(&init_lock);
}

void obx_rpc_global_done(void)
{
    pthread_mutex_lock(&init_lock);
    if (--init_count == 0)
        grpc_shutdown();
    pthread_mutex_unlock(&init_lock);
}

char *obx_rpc_read_pem(const char *what, const char *path, struct obx_error *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f) {
        obx_error_set(err, errno, OBX_ERR_INTERNAL, "%s=%s: cannot read: %s", what, path,
                      strerror(errno));
        return NULL;
    }
    struct obx_buf b = OBX_BUF_INIT(1u << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (obx_buf_append(&b, chunk, n) < 0) {
            obx_buf_free(&b);
            obx_error_set(err, EFBIG, OBX_ERR_INTERNAL, "%s=%s: larger than 1 MiB", what, path);
            return NULL;
        }
    }
    size_t len;
    char *pem = obx_buf_steal(&b, &len);
    if (!pem || !strstr(pem, "-----BEGIN ")) {
        free(pem);
        obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "%s=%s: not a PEM file", what, path);
        return NULL;
    }
    return pem;
}

void obx_rpc_cq_run(grpc_completion_queue *cq)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return;
        if (ev.type != GRPC_OP_COMPLETE || !ev.tag)
            continue;
        struct rpc_tag *t = ev.tag;
        OBX_RPC_TAG_TAKEN(t);
        t->fn(t, ev.success != 0);
    }
}

/* ---- life cycle ---- */

struct obx_rpc_stream **obx_rpc_streams_snapshot(pthread_mutex_t *lock, struct obx_rpc_stream *head,
                                                 size_t *ret_n)
{
    pthread_mutex_lock(lock);
    size_t n = 0;
    for (struct obx_rpc_stream *s = head; s; s = s->owner_next)
        n++;
    struct obx_rpc_stream **v = obx_xcalloc(n + 1, sizeof(*v));
    n = 0;
    for (struct obx_rpc_stream *s = head; s; s = s->owner_next)
        v[n++] = obx_rpc_stream_ref(s);
    pthread_mutex_unlock(lock);
    *ret_n = n;
    return v;
}

struct obx_rpc_stream *obx_rpc_stream_ref(struct obx_rpc_stream *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

static void queue_free(struct rpc_queue *q)
{
    while (q->head) {
        struct rpc_out *o = q->head;
        q->head = o->next;
        grpc_byte_buffer_destroy(o->buf);
        free(o);
    }
    q->tail = NULL;
}

void obx_rpc_stream_unref(struct obx_rpc_stream *s)
{
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    queue_free(&s->control);
    queue_free(&s->data);
    if (s->call)
        grpc_call_unref(s->call);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->status_details);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* With the lock held: once the stream closed and nothing is in flight, gRPC's call goes. */
static grpc_call *take_call_if_idle(struct obx_rpc_stream *s)
{
    if (s->closed && s->ops == 0 && s->call)
        return TAKE_PTR(s->call);
    return NULL;
}

void obx_rpc_stream_op_done(struct obx_rpc_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->ops--;
    grpc_call *c = take_call_if_idle(s);
    pthread_mutex_unlock(&s->lock);
    if (c)
        grpc_call_unref(c);
    obx_rpc_stream_unref(s);
}

bool obx_rpc_stream_batch(struct obx_rpc_stream *s, const grpc_op *ops, size_t n, struct rpc_tag *t)
{
    t->s = s;
    obx_rpc_stream_ref(s);
    pthread_mutex_lock(&s->lock);
    OBX_RPC_TAG_GIVEN(t);
    bool ok = s->call && grpc_call_start_batch(s->call, ops, n, t, NULL) == GRPC_CALL_OK;
    if (ok)
        s->ops++;
    pthread_mutex_unlock(&s->lock);
    if (!ok)
        obx_rpc_stream_unref(s);
    return ok;
}

void obx_rpc_stream_finish(struct obx_rpc_stream *s, int code, const char *message)
{
    pthread_mutex_lock(&s->lock);
    bool first = !s->closed;
    s->closed = s->closing = true;
    queue_free(&s->control);
    queue_free(&s->data);
    s->output_bytes = 0;
    struct obx_rpc_stream_ops cb = s->ops_cb;
    void *ud = s->userdata;
    grpc_call *c = take_call_if_idle(s);
    pthread_mutex_unlock(&s->lock);
    if (c)
        grpc_call_unref(c);
    if (!first)
        return;
    obx_debug("rpc: stream from %s ended: %s %s", s->peer, obx_rpc_status_name(code), message);
    if (s->owner)
        s->owner->stream_closed(s->owner, s);
    if (cb.on_closed)
        cb.on_closed(ud, s, code, message);
}

/* ---- receiving ---- */

static void on_recv(struct rpc_tag *t, bool ok)
{
    struct obx_rpc_stream *s = t->s;
    grpc_byte_buffer *bb = TAKE_PTR(s->recv_buf);
    if (!ok || !bb) {
        /* The peer half-closed, or the call ended. A server answers a half-close with OK; the
         * end itself is reported by the wait for the call's end. */
        if (s->server_side && ok) {
            pthread_mutex_lock(&s->lock);
            struct obx_rpc_stream_ops cb = s->ops_cb;
            void *ud = s->userdata;
            pthread_mutex_unlock(&s->lock);
            if (cb.on_eof)
                cb.on_eof(ud, s);
            else
                obx_rpc_stream_close(s, OBX_RPC_OK, "");
        }
        obx_rpc_stream_op_done(s);
        return;
    }
    grpc_byte_buffer_reader r;
    grpc_slice sl = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&r, bb)) {
        sl = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
    }
    grpc_byte_buffer_destroy(bb);
    struct obx_rpc_frame f;
    int rr = obx_rpc_decode(s->server_side, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), &f);
    grpc_slice_unref(sl);
    if (rr < 0) {
        obx_rpc_stream_close(s, OBX_RPC_INVALID_ARGUMENT,
                             "malformed frame: not a valid protobuf message of this protocol");
    } else {
        pthread_mutex_lock(&s->lock);
        struct obx_rpc_stream_ops cb = s->ops_cb;
        void *ud = s->userdata;
        bool closing = s->closing;
        pthread_mutex_unlock(&s->lock);
        if (!closing && cb.on_frame)
            cb.on_frame(ud, s, &f);
        obx_rpc_frame_done(&f);
        obx_rpc_stream_read(s);
    }
    obx_rpc_stream_op_done(s);
}

void obx_rpc_stream_read(struct obx_rpc_stream *s)
{
    pthread_mutex_lock(&s->lock);
    bool closing = s->closing;
    pthread_mutex_unlock(&s->lock);
    if (closing)
        return;
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &s->recv_buf;
    s->t_recv.fn = on_recv;
    (void)obx_rpc_stream_batch(s, &op, 1, &s->t_recv);
}

/* ---- sending ---- */

static void send_next_locked(struct obx_rpc_stream *s);

static void on_sent(struct rpc_tag *t, bool ok)
{
    struct obx_rpc_stream *s = t->s;
    pthread_mutex_lock(&s->lock);
    grpc_byte_buffer_destroy(TAKE_PTR(s->send_buf));
    s->sending = false;
    if (ok)
        send_next_locked(s);
    pthread_mutex_unlock(&s->lock);
    obx_rpc_stream_op_done(s);
}

static struct rpc_out *pop(struct rpc_queue *q)
{
    struct rpc_out *o = q->head;
    if (o) {
        q->head = o->next;
        if (!q->head)
            q->tail = NULL;
    }
    return o;
}

/* With the lock held: starts the next queued send, control frames first. */
static void send_next_locked(struct obx_rpc_stream *s)
{
    if (s->sending || s->closing || !s->call)
        return;
    struct rpc_out *o = pop(&s->control);
    if (!o)
        o = pop(&s->data);
    if (!o)
        return;
    if (o->output)
        s->output_bytes -= o->len;
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = o->buf;
    s->send_buf = o->buf;
    free(o);
    s->t_send.fn = on_sent;
    s->t_send.s = s;
    obx_rpc_stream_ref(s);
    OBX_RPC_TAG_GIVEN(&s->t_send);
    if (grpc_call_start_batch(s->call, &op, 1, &s->t_send, NULL) == GRPC_CALL_OK) {
        s->sending = true;
        s->ops++;
    } else {
        grpc_byte_buffer_destroy(TAKE_PTR(s->send_buf));
        __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL); /* the caller holds another */
    }
}

int obx_rpc_stream_send(struct obx_rpc_stream *s, const struct obx_rpc_frame *f, bool control)
{
    uint8_t *data;
    size_t len;
    int r = obx_rpc_encode(f, &data, &len);
    if (r < 0)
        return r;
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)data, len);
    free(data);
    struct rpc_out *o = obx_xcalloc(1, sizeof(*o));
    o->buf = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    o->len = len;
    o->output = f->kind == OBX_RPC_OUTPUT;

    pthread_mutex_lock(&s->lock);
    if (s->closing || !s->call)
        r = -EPIPE;
    else if (o->output && s->output_bytes + len > OBX_RPC_OUTPUT_BUDGET)
        r = -ENOBUFS;
    if (r < 0) {
        pthread_mutex_unlock(&s->lock);
        grpc_byte_buffer_destroy(o->buf);
        free(o);
        return r;
    }
    if (o->output)
        s->output_bytes += len;
    struct rpc_queue *q = control ? &s->control : &s->data;
    if (q->tail)
        q->tail->next = o;
    else
        q->head = o;
    q->tail = o;
    send_next_locked(s);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- the end ---- */

static void on_status_sent(struct rpc_tag *t, bool ok)
{
    (void)ok;
    obx_rpc_stream_op_done(t->s);
}

void obx_rpc_stream_close(struct obx_rpc_stream *s, int code, const char *message)
{
    pthread_mutex_lock(&s->lock);
    if (s->closing || !s->call) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    s->closing = true;
    s->close_code = code;
    snprintf(s->close_msg, sizeof(s->close_msg), "%s", message ? message : "");
    queue_free(&s->control);
    queue_free(&s->data);
    s->output_bytes = 0;
    grpc_call *call = s->call;
    grpc_call_ref(call);
    pthread_mutex_unlock(&s->lock);

    if (s->server_side) {
        grpc_slice details = grpc_slice_from_copied_string(s->close_msg);
        grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER};
        op.data.send_status_from_server.status = (grpc_status_code)code;
        op.data.send_status_from_server.status_details = &details;
        s->t_status.fn = on_status_sent;
        if (!obx_rpc_stream_batch(s, &op, 1, &s->t_status))
            grpc_call_cancel_with_status(call, (grpc_status_code)code, s->close_msg, NULL);
        grpc_slice_unref(details);
    } else {
        grpc_call_cancel_with_status(call, (grpc_status_code)code, s->close_msg, NULL);
    }
    grpc_call_unref(call);
}

static void on_half_closed(struct rpc_tag *t, bool ok)
{
    (void)ok;
    obx_rpc_stream_op_done(t->s);
}

/* Polls (a stopping worker's last act, so 5 ms steps cost nothing) until done(s) or deadline. */
static bool wait_until(struct obx_rpc_stream *s, bool (*done)(const struct obx_rpc_stream *),
                       uint64_t deadline)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool ok = done(s);
        pthread_mutex_unlock(&s->lock);
        if (ok || obx_now_ms() >= deadline)
            return ok;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static bool all_sent(const struct obx_rpc_stream *s)
{
    return s->closing || (!s->sending && !s->control.head && !s->data.head);
}

static bool is_closed(const struct obx_rpc_stream *s)
{
    return s->closed;
}

void obx_rpc_stream_end(struct obx_rpc_stream *s, int timeout_ms, int code, const char *message)
{
    uint64_t deadline = obx_now_ms() + (uint64_t)OBX_MAX(timeout_ms, 0);
    if (!s->server_side && wait_until(s, all_sent, deadline)) {
        pthread_mutex_lock(&s->lock);
        bool open = !s->closing;
        pthread_mutex_unlock(&s->lock);
        grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
        s->t_half.fn = on_half_closed;
        if (open && obx_rpc_stream_batch(s, &op, 1, &s->t_half) &&
            wait_until(s, is_closed, deadline))
            return;
    }
    obx_rpc_stream_close(s, code, message);
}

const char *obx_rpc_stream_peer(const struct obx_rpc_stream *s)
{
    return s->peer;
}

void obx_rpc_stream_set_ops(struct obx_rpc_stream *s, const struct obx_rpc_stream_ops *ops,
                            void *userdata)
{
    pthread_mutex_lock(&s->lock);
    s->ops_cb = *ops;
    s->userdata = userdata;
    bool start = !s->reading;
    s->reading = true;
    pthread_mutex_unlock(&s->lock);
    if (start)
        obx_rpc_stream_read(s);
}

struct obx_rpc_stream *obx_rpc_stream_new(grpc_call *call, bool server_side,
                                          struct rpc_owner *owner)
{
    struct obx_rpc_stream *s = obx_xcalloc(1, sizeof(*s));
    s->refs = 1;
    s->call = call;
    s->server_side = server_side;
    s->owner = owner;
    pthread_mutex_init(&s->lock, NULL);
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->status_details = grpc_empty_slice();
    char *peer = grpc_call_get_peer(call);
    snprintf(s->peer, sizeof(s->peer), "%s", peer ? peer : "?");
    gpr_free(peer);
    return s;
}
