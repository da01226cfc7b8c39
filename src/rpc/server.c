/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console's gRPC server: binds exactly the configured addresses (common/net.h resolves them,
 * gRPC binds each numeric address), plaintext or TLS with an optional required client
 * certificate, and accepts Connect streams on one completion-queue thread. A call to any other
 * method is answered UNIMPLEMENTED; streams over max_streams RESOURCE_EXHAUSTED.
 */
#include "rpc-internal.h"

#include "common/log.h"
#include "common/net.h"

struct obx_rpc_server {
    struct obx_rpc_server_config cfg;
    struct rpc_owner owner;
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool thread_started;
    char addrs[OBX_NET_MAX_ADDRS * 64];
    int port;

    /* the pending request for the next call */
    grpc_call *new_call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    struct rpc_tag t_request, t_shutdown;
    bool shutting_down; /* under lock */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool shutdown_done;
    unsigned n_streams;
    struct obx_rpc_stream *streams;
};

static void request_next(struct obx_rpc_server *srv);

static void stream_closed(struct rpc_owner *o, struct obx_rpc_stream *s)
{
    struct obx_rpc_server *srv =
        (struct obx_rpc_server *)((char *)o - offsetof(struct obx_rpc_server, owner));
    pthread_mutex_lock(&srv->lock);
    for (struct obx_rpc_stream **pp = &srv->streams; *pp; pp = &(*pp)->owner_next)
        if (*pp == s) {
            *pp = s->owner_next;
            srv->n_streams--;
            obx_rpc_stream_unref(s); /* the list's reference */
            break;
        }
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

/* The call ended: the client went away, or our status went out. */
static void on_end(struct rpc_tag *t, bool ok)
{
    (void)ok;
    struct obx_rpc_stream *s = t->s;
    pthread_mutex_lock(&s->lock);
    /* A client that cancels also shows up as the end of its messages, which we answer OK:
     * the end op knows which it was. */
    bool ours = s->closing && s->close_code >= 0 && !(s->cancelled && s->close_code == 0);
    int code = ours ? s->close_code : OBX_RPC_CANCELLED;
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", ours ? s->close_msg : "the peer went away");
    pthread_mutex_unlock(&s->lock);
    obx_rpc_stream_finish(s, code, msg);
    obx_rpc_stream_op_done(s);
}

static void on_meta_sent(struct rpc_tag *t, bool ok)
{
    (void)ok;
    obx_rpc_stream_op_done(t->s);
}

static void refuse(grpc_call *call, grpc_status_code code, const char *message)
{
    grpc_call_cancel_with_status(call, code, message, NULL);
    grpc_call_unref(call);
}

static void on_request(struct rpc_tag *t, bool ok)
{
    struct obx_rpc_server *srv =
        (struct obx_rpc_server *)((char *)t - offsetof(struct obx_rpc_server, t_request));
    grpc_call *call = TAKE_PTR(srv->new_call);
    bool method_ok = grpc_slice_str_cmp(srv->details.method, OBX_RPC_METHOD) == 0;
    grpc_call_details_destroy(&srv->details);
    grpc_metadata_array_destroy(&srv->request_md);
    if (!ok) { /* shutting down */
        if (call)
            grpc_call_unref(call);
        return;
    }
    request_next(srv);
    if (!call)
        return;
    if (!method_ok) {
        refuse(call, GRPC_STATUS_UNIMPLEMENTED,
               "unknown method: this server serves " OBX_RPC_METHOD);
        return;
    }
    pthread_mutex_lock(&srv->lock);
    bool full = srv->n_streams >= srv->cfg.max_streams || srv->shutting_down;
    if (!full)
        srv->n_streams++;
    pthread_mutex_unlock(&srv->lock);
    if (full) {
        refuse(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
               "too many worker connections at once; try again later");
        return;
    }
    struct obx_rpc_stream *s = obx_rpc_stream_new(call, true, &srv->owner);
    s->close_code = -1;
    pthread_mutex_lock(&srv->lock);
    s->owner_next = srv->streams;
    srv->streams = obx_rpc_stream_ref(s);
    pthread_mutex_unlock(&srv->lock);

    grpc_op meta = {.op = GRPC_OP_SEND_INITIAL_METADATA};
    s->t_meta.fn = on_meta_sent;
    grpc_op end = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
    end.data.recv_close_on_server.cancelled = &s->cancelled;
    s->t_end.fn = on_end;
    if (!obx_rpc_stream_batch(s, &end, 1, &s->t_end)) {
        obx_rpc_stream_finish(s, OBX_RPC_INTERNAL, "cannot start the stream");
        obx_rpc_stream_unref(s);
        return;
    }
    (void)obx_rpc_stream_batch(s, &meta, 1, &s->t_meta);
    obx_debug("rpc: a worker connected from %s", s->peer);
    if (srv->cfg.on_stream)
        srv->cfg.on_stream(srv->cfg.userdata, s);
    obx_rpc_stream_unref(s);
}

static void request_next(struct obx_rpc_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    bool stop = srv->shutting_down;
    pthread_mutex_unlock(&srv->lock);
    if (stop)
        return;
    grpc_call_details_init(&srv->details);
    grpc_metadata_array_init(&srv->request_md);
    srv->t_request.fn = on_request;
    OBX_RPC_TAG_GIVEN(&srv->t_request);
    if (grpc_server_request_call(srv->server, &srv->new_call, &srv->details, &srv->request_md,
                                 srv->cq, srv->cq, &srv->t_request) != GRPC_CALL_OK)
        obx_warn("rpc: cannot wait for the next worker connection");
}

static void on_shutdown(struct rpc_tag *t, bool ok)
{
    (void)ok;
    struct obx_rpc_server *srv =
        (struct obx_rpc_server *)((char *)t - offsetof(struct obx_rpc_server, t_shutdown));
    pthread_mutex_lock(&srv->lock);
    srv->shutdown_done = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static void *cq_main(void *arg)
{
    struct obx_rpc_server *srv = arg;
    obx_rpc_cq_run(srv->cq);
    return NULL;
}

static grpc_server_credentials *server_creds(const struct obx_rpc_server_config *cfg,
                                             struct obx_error *err)
{
    if (obx_str_empty(cfg->tls_cert_file))
        return grpc_insecure_server_credentials_create();
    _cleanup_free_ char *cert = obx_rpc_read_pem("TLS certificate", cfg->tls_cert_file, err);
    _cleanup_free_ char *key = cert ? obx_rpc_read_pem("TLS key", cfg->tls_key_file, err) : NULL;
    _cleanup_free_ char *ca = NULL;
    if (key && !obx_str_empty(cfg->client_ca_file))
        ca = obx_rpc_read_pem("client CA", cfg->client_ca_file, err);
    if (!key || (!obx_str_empty(cfg->client_ca_file) && !ca))
        return NULL;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    grpc_server_credentials *c = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1,
        ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    explicit_bzero(key, strlen(key));
    if (!c)
        obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "the TLS certificate or key is not usable");
    return c;
}

static grpc_channel_args *server_args(grpc_arg *a)
{
    static grpc_channel_args args;
    a[0] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                      .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                      .value.integer = OBX_RPC_MAX_MESSAGE_BYTES};
    a[1] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                      .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                      .value.integer = OBX_RPC_MAX_MESSAGE_BYTES};
    /* Workers ping to find a dead connection sooner than TCP would; allow it. */
    a[2] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                      .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                      .value.integer = 5000};
    a[3] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                      .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                      .value.integer = 1};
    /* gRPC sets SO_REUSEPORT by default: a second console on the same port would share it. */
    a[4] =
        (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0};
    args = (grpc_channel_args){.num_args = 5, .args = a};
    return &args;
}

/* gRPC says only that the port could not be added: find out whether the address is taken or
 * the TLS certificate and key are not usable. */
static int listen_failure(const struct obx_rpc_server_config *cfg, const struct obx_sockaddr *a,
                          const char *where, struct obx_error *err)
{
    char host[80];
    snprintf(host, sizeof(host), "%s", where);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    const char *h = host[0] == '[' ? host + 1 : host;
    if (host[0] == '[' && strchr(host, ']'))
        *strchr(host, ']') = '\0';
    int fds[OBX_NET_MAX_ADDRS];
    struct obx_sockaddr got[OBX_NET_MAX_ADDRS];
    struct obx_error berr = OBX_ERROR_INIT;
    int n = obx_net_listen(h, obx_net_port(a), 1, fds, got, OBX_NET_MAX_ADDRS, &berr);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    if (n < 0)
        return obx_error_set(err, berr.errnum, OBX_ERR_INTERNAL, "%s", berr.message);
    if (!obx_str_empty(cfg->tls_cert_file))
        return obx_error_set(err, EINVAL, OBX_ERR_INTERNAL,
                             "cannot listen on %s with TLS: the certificate %s and the key %s are "
                             "not usable together (does the key belong to the certificate?)",
                             where, cfg->tls_cert_file, cfg->tls_key_file);
    return obx_error_set(err, EADDRNOTAVAIL, OBX_ERR_INTERNAL, "cannot listen on %s", where);
}

int obx_rpc_server_new(const struct obx_rpc_server_config *cfg, struct obx_rpc_server **ret,
                       struct obx_error *err)
{
    struct obx_sockaddr addrs[OBX_NET_MAX_ADDRS];
    int n = obx_net_resolve_listen(cfg->host, cfg->port, addrs, OBX_NET_MAX_ADDRS, err);
    if (n < 0)
        return n;
    obx_rpc_global_init();
    struct obx_rpc_server *srv = obx_xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    if (srv->cfg.max_streams == 0)
        srv->cfg.max_streams = 1024;
    srv->owner.stream_closed = stream_closed;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    srv->t_shutdown.fn = on_shutdown;

    grpc_server_credentials *creds = server_creds(cfg, err);
    if (!creds) {
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->cond);
        free(srv);
        obx_rpc_global_done();
        return -(err->errnum ? err->errnum : EINVAL);
    }
    grpc_arg a[5];
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    srv->server = grpc_server_create(server_args(a), NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    int r = 0;
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        /* With port 0 the first bind picks the port and the others take it too. */
        if (i > 0 && cfg->port == 0)
            obx_net_set_port(&addrs[i], srv->port);
        char where[80];
        obx_net_format(&addrs[i], where, sizeof(where));
        /* gRPC reads "[::]:P" as every interface, IPv4 included, like ":PORT" means. */
        int port = grpc_server_add_http2_port(srv->server, where, creds);
        if (port <= 0) {
            r = listen_failure(cfg, &addrs[i], where, err);
            break;
        }
        if (i == 0)
            srv->port = port;
        char shown[80];
        obx_net_set_port(&addrs[i], port);
        obx_net_format(&addrs[i], shown, sizeof(shown));
        int k = snprintf(srv->addrs + used, sizeof(srv->addrs) - used, "%s%s", i ? " " : "", shown);
        if (k > 0)
            used = OBX_MIN(used + (size_t)k, sizeof(srv->addrs) - 1);
    }
    grpc_server_credentials_release(creds);
    if (r < 0) {
        grpc_server_destroy(srv->server);
        grpc_completion_queue_shutdown(srv->cq);
        obx_rpc_cq_run(srv->cq);
        grpc_completion_queue_destroy(srv->cq);
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->cond);
        free(srv);
        obx_rpc_global_done();
        return r;
    }
    grpc_server_start(srv->server);
    request_next(srv);
    srv->thread_started = pthread_create(&srv->thread, NULL, cq_main, srv) == 0;
    if (!srv->thread_started) {
        obx_rpc_server_free(srv);
        return obx_error_set(err, EAGAIN, OBX_ERR_INTERNAL, "cannot start the gRPC thread");
    }
    *ret = srv;
    return 0;
}

void obx_rpc_server_addrs(const struct obx_rpc_server *srv, char *buf, size_t size)
{
    snprintf(buf, size, "%s", srv->addrs);
}

int obx_rpc_server_port(const struct obx_rpc_server *srv)
{
    return srv->port;
}

void obx_rpc_server_free(struct obx_rpc_server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->shutting_down = true;
    pthread_mutex_unlock(&srv->lock);
    /* Every stream ends with a status the worker can show. */
    size_t n;
    struct obx_rpc_stream **list = obx_rpc_streams_snapshot(&srv->lock, srv->streams, &n);
    for (size_t i = 0; i < n; i++) {
        obx_rpc_stream_close(list[i], OBX_RPC_UNAVAILABLE, "the console is shutting down");
        obx_rpc_stream_unref(list[i]);
    }
    free(list);
    OBX_RPC_TAG_GIVEN(&srv->t_shutdown);
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);
    if (!srv->thread_started)
        obx_rpc_cq_run(srv->cq); /* cannot happen after new() succeeded, but never hang */
    pthread_mutex_lock(&srv->lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (!srv->shutdown_done &&
           pthread_cond_timedwait(&srv->cond, &srv->lock, &until) != ETIMEDOUT)
        ;
    bool clean = srv->shutdown_done;
    pthread_mutex_unlock(&srv->lock);
    if (!clean) {
        grpc_server_cancel_all_calls(srv->server);
        pthread_mutex_lock(&srv->lock);
        while (!srv->shutdown_done)
            pthread_cond_wait(&srv->cond, &srv->lock);
        pthread_mutex_unlock(&srv->lock);
    }
    grpc_server_destroy(srv->server);
    grpc_completion_queue_shutdown(srv->cq);
    if (srv->thread_started)
        pthread_join(srv->thread, NULL);
    grpc_completion_queue_destroy(srv->cq);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    free(srv);
    obx_rpc_global_done();
}
