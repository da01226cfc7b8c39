/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A worker's side of the protocol: one channel to the console (plaintext, or TLS with the system's
 * or a given CA and an optional client certificate) and its Connect streams, on one
 * completion-queue thread. Reconnecting is the caller's loop: each obx_rpc_client_open() is a new
 * stream on the same channel, which reconnects underneath with no backoff of its own left over.
 */
#include "rpc-internal.h"

#include "common/log.h"

#define SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"
#define KEEPALIVE_MS 20000 /* a dead console is found by pings before TCP would notice */
#define KEEPALIVE_TIMEOUT_MS 10000

struct obx_rpc_client {
    grpc_channel *channel;
    grpc_completion_queue *cq;
    pthread_t thread;
    struct rpc_owner owner;
    pthread_mutex_t lock;
    struct obx_rpc_stream *streams;
};

static void stream_closed(struct rpc_owner *o, struct obx_rpc_stream *s)
{
    struct obx_rpc_client *c =
        (struct obx_rpc_client *)((char *)o - offsetof(struct obx_rpc_client, owner));
    pthread_mutex_lock(&c->lock);
    for (struct obx_rpc_stream **pp = &c->streams; *pp; pp = &(*pp)->owner_next)
        if (*pp == s) {
            *pp = s->owner_next;
            obx_rpc_stream_unref(s);
            break;
        }
    pthread_mutex_unlock(&c->lock);
}

static void *cq_main(void *arg)
{
    obx_rpc_cq_run(((struct obx_rpc_client *)arg)->cq);
    return NULL;
}

static grpc_channel_credentials *client_creds(const struct obx_rpc_client_config *cfg,
                                              struct obx_error *err)
{
    if (cfg->insecure)
        return grpc_insecure_credentials_create();
    const char *ca_path = obx_str_empty(cfg->ca_file) ? SYSTEM_ROOTS : cfg->ca_file;
    _cleanup_free_ char *roots = obx_rpc_read_pem(
        obx_str_empty(cfg->ca_file) ? "the system's CA bundle" : "WORKER_CONSOLE_CA_FILE", ca_path,
        err);
    if (!roots)
        return NULL;
    _cleanup_free_ char *cert = NULL, *key = NULL;
    if (!obx_str_empty(cfg->cert_file)) {
        cert = obx_rpc_read_pem("WORKER_CONSOLE_CERT_FILE", cfg->cert_file, err);
        key = cert ? obx_rpc_read_pem("WORKER_CONSOLE_KEY_FILE", cfg->key_file, err) : NULL;
        if (!key)
            return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    grpc_channel_credentials *c =
        grpc_ssl_credentials_create(roots, key ? &pair : NULL, NULL, NULL);
    if (key)
        explicit_bzero(key, strlen(key));
    if (!c)
        obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "the TLS settings are not usable");
    return c;
}

int obx_rpc_client_new(const struct obx_rpc_client_config *cfg, struct obx_rpc_client **ret,
                       struct obx_error *err)
{
    obx_rpc_global_init();
    grpc_channel_credentials *creds = client_creds(cfg, err);
    if (!creds) {
        obx_rpc_global_done();
        return -(err->errnum ? err->errnum : EINVAL);
    }
    grpc_arg a[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = OBX_RPC_MAX_MESSAGE_BYTES},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = OBX_RPC_MAX_MESSAGE_BYTES},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_KEEPALIVE_TIME_MS,
         .value.integer = KEEPALIVE_MS},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
         .value.integer = KEEPALIVE_TIMEOUT_MS},
        /* Our own loop backs off between attempts; gRPC's would add to it. */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
         .value.integer = 1000},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, .value.integer = 1000},
    };
    grpc_channel_args args = {.num_args = OBX_ARRAY_SIZE(a), .args = a};
    struct obx_rpc_client *c = obx_xcalloc(1, sizeof(*c));
    c->owner.stream_closed = stream_closed;
    pthread_mutex_init(&c->lock, NULL);
    c->channel = grpc_channel_create(cfg->target, creds, &args);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&c->thread, NULL, cq_main, c) != 0) {
        grpc_channel_destroy(c->channel);
        grpc_completion_queue_shutdown(c->cq);
        obx_rpc_cq_run(c->cq);
        grpc_completion_queue_destroy(c->cq);
        pthread_mutex_destroy(&c->lock);
        free(c);
        obx_rpc_global_done();
        return obx_error_set(err, EAGAIN, OBX_ERR_INTERNAL, "cannot start the gRPC thread");
    }
    *ret = c;
    return 0;
}

/* The call's final status: the stream is over. */
static void on_status(struct rpc_tag *t, bool ok)
{
    (void)ok;
    struct obx_rpc_stream *s = t->s;
    char *details = grpc_slice_to_c_string(s->status_details);
    obx_rpc_stream_finish(s, (int)s->status, details ? details : "");
    gpr_free(details);
    obx_rpc_stream_op_done(s);
}

static void on_meta(struct rpc_tag *t, bool ok)
{
    (void)ok;
    obx_rpc_stream_op_done(t->s);
}

int obx_rpc_client_open(struct obx_rpc_client *c, const struct obx_rpc_stream_ops *ops,
                        void *userdata, struct obx_rpc_stream **ret, struct obx_error *err)
{
    grpc_channel_reset_connect_backoff(c->channel);
    grpc_slice method = grpc_slice_from_static_string(OBX_RPC_METHOD);
    grpc_call *call =
        grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, method, NULL,
                                 gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (!call)
        return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot create a gRPC call");
    struct obx_rpc_stream *s = obx_rpc_stream_new(call, false, &c->owner);
    s->ops_cb = *ops;
    s->userdata = userdata;
    s->reading = true;
    pthread_mutex_lock(&c->lock);
    s->owner_next = c->streams;
    c->streams = obx_rpc_stream_ref(s);
    pthread_mutex_unlock(&c->lock);

    grpc_op start[2] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
                        {.op = GRPC_OP_RECV_INITIAL_METADATA}};
    start[1].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    s->t_meta.fn = on_meta;
    grpc_op status = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    status.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    status.data.recv_status_on_client.status = &s->status;
    status.data.recv_status_on_client.status_details = &s->status_details;
    s->t_status.fn = on_status;
    if (!obx_rpc_stream_batch(s, &status, 1, &s->t_status) ||
        !obx_rpc_stream_batch(s, start, 2, &s->t_meta)) {
        obx_rpc_stream_close(s, OBX_RPC_INTERNAL, "cannot start the stream");
        obx_rpc_stream_unref(s);
        return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot start the Connect stream");
    }
    obx_rpc_stream_read(s);
    *ret = s;
    return 0;
}

void obx_rpc_client_free(struct obx_rpc_client *c)
{
    if (!c)
        return;
    size_t n;
    struct obx_rpc_stream **list = obx_rpc_streams_snapshot(&c->lock, c->streams, &n);
    for (size_t i = 0; i < n; i++) {
        obx_rpc_stream_close(list[i], OBX_RPC_CANCELLED, "the worker is stopping");
        obx_rpc_stream_unref(list[i]);
    }
    free(list);
    /* The streams' status operations complete once their calls are cancelled; the queue drains
     * them before it reports its shutdown. */
    grpc_channel_destroy(c->channel);
    grpc_completion_queue_shutdown(c->cq);
    pthread_join(c->thread, NULL);
    grpc_completion_queue_destroy(c->cq);
    pthread_mutex_destroy(&c->lock);
    free(c);
    obx_rpc_global_done();
}
