/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libwebsockets side of the console's HTTP server. Everything here runs on the one service
 * thread except obx_http_request_complete(), the obx_http_stream_*() calls and
 * obx_http_server_stop(), which other threads call.
 *
 * Life of a request: LWS_CALLBACK_HTTP copies the method, path, query and the few headers we use
 * into a struct obx_http_request (lws keeps its header buffer only for the current callback
 * chain); a body is collected up to max_body_bytes; then the dispatch callback gets the request.
 * Whoever finishes it appends it to the done list under a mutex and calls lws_cancel_service(),
 * the only lws call that is safe from another thread. The service thread wakes with
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED, drains the whole list, and asks for a writeable callback on
 * each connection that still exists; the response is written from LWS_CALLBACK_HTTP_WRITEABLE
 * only, in chunks, as lws requires. A streamed response goes the same way, once per wake-up:
 * each obx_http_stream_write() appends to the request's pending bytes under the same mutex and
 * queues the request (once) for a writeable callback, which writes what is pending.
 *
 * A connection (lws per-session data) points at its current request and the request points back;
 * both pointers are touched only on the service thread, and a close clears them, so a late
 * completion for a vanished client is dropped without touching freed memory.
 */
#include "http-internal.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"

#define HTTP_CHUNK 16384
#define STREAM_CHUNK (256u << 10) /* the most of a streamed body one writeable callback sends */
#define OVERSIZE_DRAIN_BYTES (16u << 20) /* larger bodies get their 413 at once */
#define STREAM_MAX_PENDING (64u << 20)   /* streamed bytes a slow client may leave unread */
#define HEAD_DRAIN_BYTES (1u << 20)      /* read and dropped after an answer on a closing socket */
/* A streamed request body: reading from the client pauses above IN_HIGH bytes waiting for the
 * handler and resumes below IN_LOW; IN_MAX is a ceiling for what arrives before a pause takes. */
#define IN_HIGH (1u << 20)
#define IN_LOW (256u << 10)
#define IN_MAX (16u << 20)

struct http_conn {
    struct lws *wsi;
    struct obx_http_request *req; /* current transaction, holds a reference */
    struct obx_buf body;
    bool oversize;   /* body over the limit: read and dropped, then 413 */
    bool dispatched; /* handed to the dispatch callback (lws may report a body completion for an
                      * empty POST body after we dispatched it already) */
    bool responding; /* response ready, waiting for writeable */
    bool headers_sent;
    bool close_after; /* the request was not fully read: close instead of keep-alive */
    bool drain_body;  /* a streamed body answered before its end: read and dropped, then the
                       * answer */
    size_t sent;
};

struct obx_http_server {
    struct obx_http_server_config cfg;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    /* Our own listening sockets, bound exactly as configured (lws binds the wildcard when given
     * an IPv4 address to listen on); lws polls them as raw descriptors and we accept. */
    int listen_fds[OBX_NET_MAX_ADDRS];
    struct obx_sockaddr listen_addrs[OBX_NET_MAX_ADDRS];
    size_t n_listen;
    bool stopping; /* atomic */
    pthread_mutex_t lock;
    struct obx_http_request *done_head, *done_tail;
    struct http_ws_server *ws;
    struct lws_protocols protocols[5];
};

/* The first lws error on this thread since it was cleared: when a vhost cannot be created, lws
 * says why (a TLS file it could not load, a key that does not match) only in its log. */
static __thread char first_lws_error[256];

#define LWS_LOG_LEVELS (LLL_ERR | LLL_WARN)

/* lws gives up on a request head that does not fit its header buffer (too long, or too many
 * header lines) and closes the connection without a word: it has no callback for that, it only
 * logs why. Its log and the close of that connection follow each other on this thread in one
 * call chain. So the log hook, on that error, turns on lws's info lines until the next one that
 * opens a close ("__lws_close_free_wsi: <wsi>: caller: ..."), the first step of closing that
 * connection, before lws shuts the socket down; there it answers 431. Info lines stay off
 * otherwise (lws writes about 16 of them per request), and the flag lives for one lws_service()
 * call at most. Only this thread changes lws's log level (a plain int that other threads' lws
 * calls read: at worst one of them misses or gets one info line). */
static __thread bool head_too_large;
static unsigned head_limit_bytes; /* for the 431's message */

static void head_too_large_end(void)
{
    head_too_large = false;
    lws_set_log_level(LWS_LOG_LEVELS, NULL);
}

static bool head_too_large_close(const char *line)
{
    void *p = NULL;
    if (sscanf(line, "__lws_close_free_wsi: %p: caller:", &p) != 1 || !p)
        return false;
    head_too_large_end();
    struct lws *wsi = p;
    /* An HTTP/1 connection (its own network connection): HTTP/2 refuses such a stream itself. */
    if (lws_get_network_wsi(wsi) != wsi || (lws_is_ssl(wsi) && !lws_get_ssl(wsi)))
        return true;
    http_answer_before_close(wsi, 431, "Request Header Fields Too Large",
                             "request head too large: the request line and headers together may "
                             "take at most %u bytes",
                             head_limit_bytes);
    return true;
}

/* What the above reads in lws's log: its two ways of giving up on a request head, and the start
 * of a close. tests/unit/test_console_lws_log.c checks that the linked libwebsockets still has
 * these texts, so that an upgrade that rewords them fails there, loudly, instead of the 431
 * quietly turning into a bare close. */
const char *const obx_http_lws_log_texts[] = {
    "Ran out of header data space",
    "More hdr frags than we can deal with",
    "__lws_close_free_wsi",
    "%s: %p: caller: %s",
};
const size_t obx_http_lws_log_n_texts = OBX_ARRAY_SIZE(obx_http_lws_log_texts);

static void lws_log_emit(int level, const char *line)
{
    if (level == LLL_INFO) {
        if (head_too_large)
            head_too_large_close(line);
        return;
    }
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (strstr(line, obx_http_lws_log_texts[0]) || strstr(line, obx_http_lws_log_texts[1])) {
        /* the client's fault, not ours: no error in our log */
        obx_debug("lws: %.*s", (int)n, line);
        head_too_large = true;
        lws_set_log_level(LWS_LOG_LEVELS | LLL_INFO, NULL);
        return;
    }
    if (strstr(line, "User code denied connection")) {
        /* a WebSocket refused by our own check, which logs why */
        obx_debug("lws: %.*s", (int)n, line);
        return;
    }
    if (level == LLL_ERR && !first_lws_error[0])
        snprintf(first_lws_error, sizeof(first_lws_error), "%.*s", (int)n, line);
    obx_log(level == LLL_ERR ? OBX_LOG_ERROR : OBX_LOG_WARN, "lws: %.*s", (int)n, line);
}

static char *header_dup(struct lws *wsi, enum lws_token_indexes tok)
{
    int len = lws_hdr_total_length(wsi, tok);
    if (len <= 0)
        return NULL;
    char *s = obx_xmalloc((size_t)len + 1);
    if (lws_hdr_copy(wsi, s, len + 1, tok) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static char *custom_header_dup(struct lws *wsi, const char *name)
{
    int nlen = (int)strlen(name);
    int len = lws_hdr_custom_length(wsi, name, nlen);
    if (len <= 0)
        return NULL;
    char *s = obx_xmalloc((size_t)len + 1);
    if (lws_hdr_custom_copy(wsi, s, len + 1, name, nlen) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static enum obx_http_method method_from_lws(int m)
{
    switch (m) {
    case LWSHUMETH_GET:
        return OBX_HTTP_GET;
    case LWSHUMETH_HEAD:
        return OBX_HTTP_HEAD;
    case LWSHUMETH_POST:
        return OBX_HTTP_POST;
    case LWSHUMETH_PUT:
        return OBX_HTTP_PUT;
    case LWSHUMETH_PATCH:
        return OBX_HTTP_PATCH;
    case LWSHUMETH_DELETE:
        return OBX_HTTP_DELETE;
    case LWSHUMETH_OPTIONS:
        return OBX_HTTP_OPTIONS;
    default:
        return OBX_HTTP_OTHER;
    }
}

static void read_query(struct lws *wsi, struct obx_http_request *req)
{
    char frag[8192];
    for (int i = 0; req->n_query < OBX_HTTP_MAX_QUERY; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0)
            break;
        if ((size_t)n != strlen(frag))
            req->query_nul = true; /* %00: the value would be cut short */
        char *eq = strchr(frag, '=');
        if (eq)
            *eq = '\0';
        req->query[req->n_query][0] = obx_xstrdup(frag);
        req->query[req->n_query][1] = obx_xstrdup(eq ? eq + 1 : "");
        req->n_query++;
    }
}

struct obx_http_request *http_request_new(struct obx_http_server *srv, struct lws *wsi)
{
    char *uri = NULL;
    int uri_len = 0;
    int m = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
    if (m < 0 || !uri)
        return NULL;
    struct obx_http_request *req = obx_xcalloc(1, sizeof(*req));
    req->refs = 1;
    req->srv = srv;
    req->method = method_from_lws(m);
    req->path = obx_xstrndup(uri, (size_t)uri_len);
    read_query(wsi, req);
    req->cookie = header_dup(wsi, WSI_TOKEN_HTTP_COOKIE);
    req->authorization = header_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    req->forwarded_for = header_dup(wsi, WSI_TOKEN_X_FORWARDED_FOR);
    req->forwarded_proto = custom_header_dup(wsi, "x-forwarded-proto:");
    req->host = header_dup(wsi, WSI_TOKEN_HOST);
    req->origin = header_dup(wsi, WSI_TOKEN_ORIGIN);
    req->accept = header_dup(wsi, WSI_TOKEN_HTTP_ACCEPT);
    req->content_type = header_dup(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
    req->mcp_session_id = custom_header_dup(wsi, "mcp-session-id:");
    req->mcp_protocol = custom_header_dup(wsi, "mcp-protocol-version:");
    req->mcp_method = custom_header_dup(wsi, "mcp-method:");
    req->mcp_name = custom_header_dup(wsi, "mcp-name:");
    for (size_t i = 0;
         srv->cfg.capture_headers && srv->cfg.capture_headers[i] && i < OBX_HTTP_MAX_CAPTURED;
         i++) {
        char name[128];
        snprintf(name, sizeof(name), "%s:", srv->cfg.capture_headers[i]);
        req->captured[i] = custom_header_dup(wsi, name);
    }
    req->accept_encoding = header_dup(wsi, WSI_TOKEN_HTTP_ACCEPT_ENCODING);
    req->if_none_match = header_dup(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH);
    req->stream = (struct obx_buf)OBX_BUF_INIT(STREAM_MAX_PENDING);
    req->stream_length = -1;
    req->content_length = -1;
    req->in = (struct obx_buf)OBX_BUF_INIT(IN_MAX);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&req->cond, &ca);
    pthread_condattr_destroy(&ca);
    lws_get_peer_simple(wsi, req->remote_ip, sizeof(req->remote_ip));
    req->tls = lws_is_ssl(wsi) != 0;
    return req;
}

/* The service thread answers by itself (413, 411, 503): no dispatch, write straight away. */
static void respond_local(struct http_conn *c, int status, const char *message, bool close_after)
{
    if (message)
        obx_http_respond_error(c->req, status, message);
    else
        obx_http_respond_empty(c->req, status);
    c->close_after = close_after;
    c->responding = true;
    lws_callback_on_writable(c->wsi);
}

static void dispatch(struct obx_http_server *srv, struct http_conn *c)
{
    struct obx_http_request *req = c->req;
    if (c->dispatched)
        return;
    c->dispatched = true;
    if (c->body.data) {
        req->body = obx_buf_steal(&c->body, &req->body_len);
    } else {
        req->body = obx_xstrdup("");
        req->body_len = 0;
    }
    /* The handler may take a while (a task waiting for a worker); lws must not time us out.
     * A streamed body still has its per-chunk timeout until it ended. */
    if (!req->body_streamed || req->in_done)
        lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
    srv->cfg.dispatch(obx_http_request_ref(req), srv->cfg.userdata);
}

const char *const *obx_http_server_capture_headers(const struct obx_http_server *srv)
{
    return srv ? srv->cfg.capture_headers : NULL;
}

bool obx_http_request_gone(struct obx_http_request *req)
{
    pthread_mutex_lock(&req->srv->lock);
    bool gone = req->gone;
    pthread_mutex_unlock(&req->srv->lock);
    return gone;
}

static void conn_detach(struct http_conn *c)
{
    if (c->req) {
        struct obx_http_server *srv = c->req->srv;
        pthread_mutex_lock(&srv->lock);
        c->req->gone = true;
        obx_buf_free(&c->req->stream);
        pthread_cond_broadcast(&c->req->cond); /* a body reader or a stream writer waits */
        pthread_mutex_unlock(&srv->lock);
        c->req->conn = NULL;
        obx_http_request_unref(c->req);
        c->req = NULL;
    }
    obx_buf_free(&c->body);
    c->responding = c->headers_sent = c->close_after = c->drain_body = false;
    c->sent = 0;
}

/* "HTTP/1.1 100 Continue" for a client that waits for it before it sends a body (curl does for
 * bodies over 1 MiB, for a second). lws does not answer Expect itself; nothing else is on the
 * connection yet, so the interim line goes straight to the socket (or its TLS session). Not on
 * HTTP/2, which has no such wait. */
static void send_continue(struct lws *wsi)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (lws_get_network_wsi(wsi) != wsi)
        return;
    SSL *ssl = lws_is_ssl(wsi) ? (SSL *)lws_get_ssl(wsi) : NULL;
    if (ssl)
        (void)SSL_write(ssl, line, (int)sizeof(line) - 1);
    else if (lws_get_socket_fd(wsi) >= 0)
        (void)send(lws_get_socket_fd(wsi), line, sizeof(line) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int on_http(struct obx_http_server *srv, struct http_conn *c, struct lws *wsi)
{
    conn_detach(c);
    c->wsi = wsi;
    c->req = http_request_new(srv, wsi);
    if (!c->req)
        return -1;
    c->req->conn = c;
    c->dispatched = false;
    c->oversize = false;
    c->body = (struct obx_buf)OBX_BUF_INIT(srv->cfg.max_body_bytes);

    _cleanup_free_ char *te = header_dup(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    _cleanup_free_ char *cl = header_dup(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (te) {
        respond_local(c, 411, "content-length required", true);
        return 0;
    }
    int64_t len = 0;
    if (cl && obx_parse_int64(cl, 0, INT64_MAX, &len) < 0) {
        respond_local(c, 400, "invalid content-length", true);
        return 0;
    }
    int64_t stream_max =
        srv->cfg.stream_body ? srv->cfg.stream_body(c->req, srv->cfg.userdata) : -1;
    if (stream_max >= 0) {
        /* The handler reads the body as it comes (obx_http_body_read()); it needs its length
         * to refuse one too large before any of it is taken. */
        if (!cl) {
            respond_local(c, 411, "content-length required: send the body with its length", true);
            return 0;
        }
        _cleanup_free_ char *expect = header_dup(wsi, WSI_TOKEN_HTTP_EXPECT);
        if (expect && strcasecmp(expect, "100-continue") == 0 && len <= stream_max && len > 0)
            send_continue(wsi);
        c->req->body_streamed = true;
        c->req->content_length = len;
        c->req->in_done = len == 0;
        if (len > 0)
            lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, srv->cfg.header_timeout_sec);
        dispatch(srv, c);
        return 0;
    }
    if ((uint64_t)len > srv->cfg.max_body_bytes) {
        /* Answering while the client still sends would make our close reset the connection
         * before it reads the 413; so a body of sane size is read and dropped first. */
        if ((uint64_t)len > OVERSIZE_DRAIN_BYTES) {
            respond_local(c, 413, "request body too large", true);
            return 0;
        }
        c->oversize = true;
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, srv->cfg.header_timeout_sec);
        return 0;
    }
    if (len > 0) {
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, srv->cfg.header_timeout_sec);
        return 0; /* LWS_CALLBACK_HTTP_BODY* follow */
    }
    dispatch(srv, c);
    return 0;
}

/* The response head. A streamed body has no length: lws adds "connection: close" on HTTP/1.1
 * (the body then ends with the connection) and nothing on HTTP/2 (it ends with the stream). */
static int add_header(struct http_conn *c, const char *name, const char *value, unsigned char **p,
                      unsigned char *end)
{
    _cleanup_free_ char *n = obx_xasprintf("%s:", name);
    return lws_add_http_header_by_name(c->wsi, (const unsigned char *)n,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

static int write_head(struct http_conn *c, bool streamed)
{
    struct obx_http_response *r = &c->req->resp;
    const char *const(*fixed)[2] = c->req->srv->cfg.fixed_headers;
    size_t cap = LWS_PRE + 4096;
    for (size_t i = 0; i < r->n_headers; i++)
        cap += strlen(r->headers[i][0]) + strlen(r->headers[i][1]) + 8;
    for (size_t i = 0; fixed && fixed[i][0]; i++)
        cap += strlen(fixed[i][0]) + strlen(fixed[i][1]) + 8;
    _cleanup_free_ unsigned char *buf = obx_xmalloc(cap);
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + cap;
    if (streamed) {
        lws_filepos_t length = c->req->stream_length >= 0 ? (lws_filepos_t)c->req->stream_length
                                                          : LWS_ILLEGAL_HTTP_CONTENT_LEN;
        if (lws_add_http_common_headers(c->wsi, (unsigned)r->status, r->content_type, length, &p,
                                        end))
            return -1;
    } else {
        if (lws_add_http_header_status(c->wsi, (unsigned)r->status, &p, end))
            return -1;
        if (r->content_type && lws_add_http_header_by_token(c->wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                                            (const unsigned char *)r->content_type,
                                                            (int)strlen(r->content_type), &p, end))
            return -1;
        if (r->status != 204 && r->status != 304 &&
            lws_add_http_header_content_length(c->wsi, r->body_len, &p, end))
            return -1;
    }
    for (size_t i = 0; i < r->n_headers; i++)
        if (add_header(c, r->headers[i][0], r->headers[i][1], &p, end))
            return -1;
    for (size_t i = 0; fixed && fixed[i][0]; i++)
        if (add_header(c, fixed[i][0], fixed[i][1], &p, end))
            return -1;
    if (!streamed && c->close_after &&
        lws_add_http_header_by_token(c->wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
                                     5, &p, end))
        return -1;
    if (lws_finalize_write_http_header(c->wsi, start, &p, end))
        return -1;
    c->headers_sent = true;
    return 0;
}

static int write_response(struct http_conn *c)
{
    struct obx_http_response *r = &c->req->resp;
    bool head = c->req->method == OBX_HTTP_HEAD;
    if (!c->headers_sent) {
        if (write_head(c, false) < 0)
            return -1;
        if (r->body_len > 0 && !head) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        return 1;
    }
    size_t n = OBX_MIN(r->body_len - c->sent, (size_t)HTTP_CHUNK);
    bool last = c->sent + n == r->body_len;
    unsigned char buf[LWS_PRE + HTTP_CHUNK];
    memcpy(buf + LWS_PRE, r->body + c->sent, n);
    if (lws_write(c->wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    c->sent += n;
    if (!last) {
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    return 1;
}

/* A streamed response: the head first, then whatever is pending, up to a chunk per callback.
 * Returns 1 when the body ended, 0 to wait for more, -1 on error. */
static int write_stream(struct http_conn *c)
{
    struct obx_http_request *req = c->req;
    bool h1 = lws_get_network_wsi(c->wsi) == c->wsi;
    if (!c->headers_sent) {
        if (write_head(c, true) < 0)
            return -1;
        c->close_after = h1 && req->stream_length < 0;
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    /* The service thread's alone: one buffer serves every stream. Large pieces keep a fast
     * client fed with few wake-ups (lws keeps what the socket does not take at once). */
    static unsigned char buf[LWS_PRE + STREAM_CHUNK];
    pthread_mutex_lock(&req->srv->lock);
    if (req->stream_abort) {
        pthread_mutex_unlock(&req->srv->lock);
        return -1; /* the body stays short: the client sees it cut */
    }
    size_t n = OBX_MIN(req->stream.len, (size_t)STREAM_CHUNK);
    if (n > 0)
        memcpy(buf + LWS_PRE, req->stream.data, n);
    obx_buf_consume(&req->stream, n);
    bool more = req->stream.len > 0, last = !more && req->stream_ended;
    pthread_cond_broadcast(&req->cond); /* a writer waiting for room */
    pthread_mutex_unlock(&req->srv->lock);
    if ((n > 0 || (last && !h1)) &&
        lws_write(c->wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    if (more)
        lws_callback_on_writable(c->wsi);
    return last ? 1 : 0;
}

static int on_writeable(struct http_conn *c)
{
    if (!c->req || !c->responding || c->drain_body)
        return 0;
    pthread_mutex_lock(&c->req->srv->lock);
    bool streaming = c->req->streaming;
    pthread_mutex_unlock(&c->req->srv->lock);
    int r = streaming ? write_stream(c) : write_response(c);
    if (r <= 0)
        return r;
    bool close_after = c->close_after;
    pthread_mutex_lock(&c->req->srv->lock);
    if (c->req->body_streamed && !c->req->in_done)
        close_after = true; /* the rest of the body is not read */
    pthread_mutex_unlock(&c->req->srv->lock);
    conn_detach(c);
    if (close_after)
        return -1;
    return lws_http_transaction_completed(c->wsi) ? -1 : 0;
}

/* One at a time, so a request queued again while we work goes to the tail, not into our list. */
static void drain_done(struct obx_http_server *srv)
{
    for (;;) {
        pthread_mutex_lock(&srv->lock);
        struct obx_http_request *req = srv->done_head;
        bool ready = false, resume = false, body_left = false;
        if (req) {
            srv->done_head = req->next_done;
            if (!srv->done_head)
                srv->done_tail = NULL;
            req->next_done = NULL;
            req->queued = false;
            ready = req->ready;
            resume = req->in_resume;
            req->in_resume = false;
            if (resume)
                req->in_paused = false;
            body_left = req->body_streamed && !req->in_done;
        }
        pthread_mutex_unlock(&srv->lock);
        if (!req)
            return;
        struct http_conn *c = req->conn;
        if (c && c->req == req && (resume || (ready && body_left && !c->responding))) {
            /* The handler took enough of the body (or answered before its end: the rest is read
             * and dropped, unless there is too much of it, so that the answer is not lost to a
             * reset of the connection). */
            lws_rx_flow_control(c->wsi, 1);
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_CONTENT, srv->cfg.header_timeout_sec);
        }
        if (c && c->req == req && ready) {
            if (body_left && !c->responding && !req->streaming &&
                (uint64_t)req->content_length - req->in_received <= OVERSIZE_DRAIN_BYTES)
                c->drain_body = true;
            c->responding = true;
            lws_callback_on_writable(c->wsi);
        }
        obx_http_request_unref(req); /* the list's reference; the conn keeps its own */
    }
}

/* A last answer on a connection lws is about to close, written straight to the socket (or its
 * TLS session): {"error": message}, then "connection: close". What the client still sends is
 * read and dropped, so that the close does not reset the connection before the answer is read. */
void http_answer_before_close(struct lws *wsi, int status, const char *reason, const char *fmt, ...)
{
    int fd = lws_get_socket_fd(wsi);
    if (fd < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *message = obx_xvasprintf(fmt, ap);
    va_end(ap);
    json_t *body_json = json_pack("{s:s}", "error", message);
    _cleanup_free_ char *body = json_dumps(body_json, JSON_COMPACT);
    json_decref(body_json);
    _cleanup_free_ char *resp = obx_xasprintf("HTTP/1.1 %d %s\r\nserver: onlyboxes\r\n"
                                              "content-type: application/json\r\n"
                                              "content-length: %zu\r\nconnection: close\r\n\r\n%s",
                                              status, reason, strlen(body), body);
    size_t len = strlen(resp);
    SSL *ssl = lws_is_ssl(wsi) ? (SSL *)lws_get_ssl(wsi) : NULL;
    if (ssl) {
        if (SSL_write(ssl, resp, (int)len) <= 0)
            return;
    } else if (send(fd, resp, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len) {
        return;
    }
    shutdown(fd, SHUT_WR);
    char sink[4096];
    for (size_t dropped = 0; dropped < HEAD_DRAIN_BYTES;) {
        ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n <= 0)
            break;
        dropped += (size_t)n;
    }
}

/* Bytes of a streamed body: kept for the handler, or dropped once it answered. Reading from the
 * client pauses above IN_HIGH; the handler's reads resume it (drain_done()). */
static void body_in(struct obx_http_server *srv, struct http_conn *c, const void *in, size_t len)
{
    struct obx_http_request *req = c->req;
    pthread_mutex_lock(&srv->lock);
    req->in_received += len;
    bool pause = false;
    if (!c->responding && obx_buf_append(&req->in, in, len) == 0 && req->in.len >= IN_HIGH &&
        !req->in_paused) {
        req->in_paused = pause = true;
    }
    pthread_cond_broadcast(&req->cond);
    pthread_mutex_unlock(&srv->lock);
    if (pause) {
        lws_rx_flow_control(c->wsi, 0);
        /* The handler holds the client back: no timeout while it does. */
        lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
    } else {
        /* A large body takes long: the time limit is per chunk. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_CONTENT, srv->cfg.header_timeout_sec);
    }
}

static void body_done(struct obx_http_server *srv, struct http_conn *c)
{
    struct obx_http_request *req = c->req;
    pthread_mutex_lock(&srv->lock);
    req->in_done = true;
    pthread_cond_broadcast(&req->cond);
    pthread_mutex_unlock(&srv->lock);
    lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
    if (c->drain_body) { /* the answer waited for the rest of the body to be read */
        c->drain_body = false;
        lws_callback_on_writable(c->wsi);
    }
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct http_conn *c = user;
    struct obx_http_server *srv = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(srv, c, wsi);
    case LWS_CALLBACK_HTTP_BODY:
        if (c->req && c->req->body_streamed) {
            body_in(srv, c, in, len);
            return 0;
        }
        if (!c->req || c->responding || c->oversize)
            return 0;
        if (obx_buf_append(&c->body, in, len) < 0)
            respond_local(c, 413, "request body too large", true);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c->req && c->req->body_streamed) {
            body_done(srv, c);
            return 0;
        }
        if (c->req && !c->responding && c->oversize)
            respond_local(c, 413, "request body too large", true);
        else if (c->req && !c->responding)
            dispatch(srv, c);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return on_writeable(c);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (c)
            conn_detach(c);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (srv)
            drain_done(srv);
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* A WebSocket upgrade without a subprotocol of ours lands on this, the default one. */
        return http_ws_refuse_unknown(wsi);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* What lws cannot parse as HTTP at all (a request line with no known method; plain HTTP sent
 * to the HTTPS port) it hands here as a raw socket, with the vhost option below: 400, naming why,
 * instead of lws's own 403 page or a silent close. */
static int not_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len)
{
    (void)user, (void)in, (void)len;
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT:
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE: {
        struct obx_http_server *srv = lws_context_user(lws_get_context(wsi));
        if (srv && srv->cfg.tls_cert_file && srv->cfg.tls_key_file && !lws_is_ssl(wsi))
            http_answer_before_close(wsi, 400, "Bad Request",
                                     "this port speaks HTTPS: the request was sent as plain HTTP");
        else
            http_answer_before_close(
                wsi, 400, "Bad Request",
                "not an HTTP/1.1 request: the request line has no known method");
        return -1;
    }
    default:
        return 0;
    }
}

/* A listening socket's readiness: accept what is queued and hand each connection to lws as its
 * own listener would (HTTP, TLS when the vhost has it, the not-http fallback). */
static int listener_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len)
{
    (void)user, (void)in, (void)len;
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return 0;
    struct obx_http_server *srv = lws_context_user(lws_get_context(wsi));
    int lfd = lws_get_socket_fd(wsi);
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                obx_warn("http: accept failed: %s", strerror(errno));
            break;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int opts = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;
        if (srv->cfg.tls_cert_file && srv->cfg.tls_key_file)
            opts |= LWS_ADOPT_ALLOW_SSL;
        lws_sock_file_fd_type desc = {.sockfd = fd};
        /* On failure lws has closed the descriptor itself. */
        if (!lws_adopt_descriptor_vhost(srv->vhost, opts, desc, "not-http", NULL))
            obx_debug("http: a new connection could not be taken on");
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"http", http_callback, sizeof(struct http_conn), 0, 0, NULL, 0},
    /* lws allocates a new connection's data by this protocol's size before it binds the
     * connection to "http": the same size, so "http" always finds a whole (zeroed) http_conn. */
    {"not-http", not_http_callback, sizeof(struct http_conn), 0, 0, NULL, 0},
    {"listener", listener_callback, sizeof(struct http_conn), 0, 0, NULL, 0},
};

/* An idle WebSocket is pinged after this long, and closed when nothing came back for the second;
 * the browser answers pings by itself. */
static const lws_retry_bo_t ws_idle_policy = {.secs_since_valid_ping = 30,
                                              .secs_since_valid_hangup = 75};

struct http_ws_server *http_server_ws(struct obx_http_server *srv)
{
    return srv->ws;
}

const struct obx_http_server_config *http_server_config(const struct obx_http_server *srv)
{
    return &srv->cfg;
}

void http_server_wake(struct obx_http_server *srv)
{
    lws_cancel_service(srv->ctx);
}

static int listen_start(struct obx_http_server *srv, struct obx_error *err)
{
    int n = obx_net_listen(srv->cfg.host, srv->cfg.port, 512, srv->listen_fds, srv->listen_addrs,
                           OBX_NET_MAX_ADDRS, err);
    if (n < 0)
        return n;
    srv->n_listen = (size_t)n;
    for (size_t i = 0; i < srv->n_listen; i++) {
        lws_sock_file_fd_type desc = {.filefd = srv->listen_fds[i]};
        if (!lws_adopt_descriptor_vhost(srv->vhost, LWS_ADOPT_RAW_FILE_DESC, desc, "listener",
                                        NULL))
            return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot watch the listening socket");
        srv->listen_fds[i] = -1; /* lws owns it now and closes it with the context */
    }
    return 0;
}

int obx_http_server_new(const struct obx_http_server_config *cfg, struct obx_http_server **ret,
                        struct obx_error *err)
{
    lws_set_log_level(LWS_LOG_LEVELS, lws_log_emit);
    struct obx_http_server *srv = obx_xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(srv->listen_fds); i++)
        srv->listen_fds[i] = -1;
    pthread_mutex_init(&srv->lock, NULL);
    srv->ws = http_ws_server_new();
    /* The table lives in the server: the WebSocket protocol's name is the configuration's. */
    memcpy(srv->protocols, protocols, sizeof(protocols));
    if (cfg->ws.protocol)
        srv->protocols[OBX_ARRAY_SIZE(protocols)] = (struct lws_protocols){
            cfg->ws.protocol, http_ws_callback, http_ws_pss_size(), 4096, 0, NULL, 0};

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    bool tls = cfg->tls_cert_file && cfg->tls_key_file;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.max_http_header_data = (unsigned short)OBX_MIN(cfg->max_header_bytes, 65535u);
    head_limit_bytes = info.max_http_header_data;
    info.max_http_header_pool = 256;
    info.server_string = "onlyboxes";
    info.user = srv;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        obx_http_server_free(srv);
        return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot create the HTTP context");
    }

    memset(&info, 0, sizeof(info));
    info.vhost_name = "onlyboxes";
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* listen_start() binds */
    info.protocols = srv->protocols;
    info.retry_and_idle_policy = &ws_idle_policy;
    info.timeout_secs = (unsigned)cfg->header_timeout_sec;
    info.options = LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG;
    info.listen_accept_role = "raw-skt";
    info.listen_accept_protocol = "not-http";
    info.keepalive_timeout = cfg->idle_timeout_sec;
    if (tls) {
        /* HTTPS only. ALLOW_NON_SSL_ON_SSL_PORT makes lws look at the first bytes: plain HTTP
         * goes to the fallback above (a 400 naming the mistake) instead of a failed handshake;
         * it is never served. */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | /* lws reads it per vhost too */
                        LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT;
        info.ssl_cert_filepath = cfg->tls_cert_file;
        info.ssl_private_key_filepath = cfg->tls_key_file;
    }
    first_lws_error[0] = '\0';
    srv->vhost = lws_create_vhost(srv->ctx, &info);
    if (!srv->vhost) {
        obx_http_server_free(srv);
        /* lws sets up TLS before it binds; its first error says which step failed. */
        if (tls && first_lws_error[0])
            return obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "TLS setup failed: %s",
                                 first_lws_error);
        return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot set up the HTTP server");
    }
    int r = listen_start(srv, err);
    if (r < 0) {
        obx_http_server_free(srv);
        return r;
    }
    *ret = srv;
    return 0;
}

int obx_http_server_port(const struct obx_http_server *srv)
{
    return srv->n_listen > 0 ? obx_net_port(&srv->listen_addrs[0]) : 0;
}

size_t obx_http_server_addrs(const struct obx_http_server *srv, char *buf, size_t size,
                             const char *scheme)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < srv->n_listen && used < size; i++) {
        char a[INET6_ADDRSTRLEN + 16];
        obx_net_format(&srv->listen_addrs[i], a, sizeof(a));
        int n = snprintf(buf + used, size - used, "%s%s://%s", i ? " " : "", scheme, a);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return srv->n_listen;
}

int obx_http_server_run(struct obx_http_server *srv)
{
    while (!__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE)) {
        if (lws_service(srv->ctx, 0) < 0)
            return -EIO;
        /* The close that follows a head too large comes in the same service call; a flag left
         * over (lws took another way out) must not answer some later connection's close. */
        if (head_too_large)
            head_too_large_end();
    }
    return 0;
}

void obx_http_server_stop(struct obx_http_server *srv)
{
    __atomic_store_n(&srv->stopping, true, __ATOMIC_RELEASE);
    lws_cancel_service(srv->ctx);
}

/* Sets *flag (a field of req, or NULL), queues req for the service thread (once: the list holds
 * a reference) and wakes the loop. consume: the caller's completion reference becomes the list's,
 * or is dropped when req is queued already. */
static void enqueue(struct obx_http_request *req, bool consume, bool *flag)
{
    struct obx_http_server *srv = req->srv;
    pthread_mutex_lock(&srv->lock);
    if (flag)
        *flag = true;
    bool unref = consume && req->queued;
    if (!req->queued) {
        if (!consume)
            obx_http_request_ref(req);
        req->queued = true;
        if (srv->done_tail)
            srv->done_tail->next_done = req;
        else
            srv->done_head = req;
        srv->done_tail = req;
    }
    pthread_mutex_unlock(&srv->lock);
    lws_cancel_service(srv->ctx);
    if (unref)
        obx_http_request_unref(req); /* the list holds another */
}

void obx_http_request_complete(struct obx_http_request *req)
{
    enqueue(req, true, &req->ready);
}

void obx_http_stream_start(struct obx_http_request *req)
{
    pthread_mutex_lock(&req->srv->lock);
    req->streaming = true;
    pthread_mutex_unlock(&req->srv->lock);
    enqueue(req, false, &req->ready);
}

void obx_http_stream_start_length(struct obx_http_request *req, uint64_t length)
{
    pthread_mutex_lock(&req->srv->lock);
    req->stream_length = (int64_t)length;
    pthread_mutex_unlock(&req->srv->lock);
    obx_http_stream_start(req);
}

void obx_http_stream_write(struct obx_http_request *req, const char *data, size_t len)
{
    pthread_mutex_lock(&req->srv->lock);
    bool queue = !req->gone && obx_buf_append(&req->stream, data, len) == 0;
    if (!queue && !req->gone)
        obx_warn("http: a slow client left %zu bytes unread; dropping %zu more", req->stream.len,
                 len);
    pthread_mutex_unlock(&req->srv->lock);
    if (queue)
        enqueue(req, false, &req->ready);
}

void obx_http_stream_end(struct obx_http_request *req)
{
    pthread_mutex_lock(&req->srv->lock);
    req->stream_ended = true;
    pthread_mutex_unlock(&req->srv->lock);
    enqueue(req, true, &req->ready);
}

void obx_http_stream_abort(struct obx_http_request *req)
{
    pthread_mutex_lock(&req->srv->lock);
    req->stream_abort = true;
    pthread_mutex_unlock(&req->srv->lock);
    enqueue(req, true, &req->ready);
}

bool obx_http_stream_drain(struct obx_http_request *req, size_t max, int timeout_ms)
{
    struct timespec ts = obx_ms_to_timespec(obx_now_ms() + (uint64_t)timeout_ms);
    pthread_mutex_lock(&req->srv->lock);
    while (!req->gone && req->stream.len >= max &&
           pthread_cond_timedwait(&req->cond, &req->srv->lock, &ts) != ETIMEDOUT)
        ;
    bool ok = !req->gone && req->stream.len < max;
    pthread_mutex_unlock(&req->srv->lock);
    return ok;
}

int64_t obx_http_body_length(const struct obx_http_request *req)
{
    return req->body_streamed ? req->content_length : (int64_t)req->body_len;
}

ssize_t obx_http_body_read(struct obx_http_request *req, void *buf, size_t cap, int timeout_ms)
{
    if (!req->body_streamed) { /* a collected body reads the same way */
        size_t n = (size_t)OBX_MIN((uint64_t)cap, req->body_len - req->in_received);
        memcpy(buf, req->body + req->in_received, n);
        req->in_received += n;
        return (ssize_t)n;
    }
    struct timespec ts = obx_ms_to_timespec(obx_now_ms() + (uint64_t)timeout_ms);
    pthread_mutex_lock(&req->srv->lock);
    int w = 0;
    while (!req->gone && req->in.len == 0 && !req->in_done && w != ETIMEDOUT)
        w = pthread_cond_timedwait(&req->cond, &req->srv->lock, &ts);
    ssize_t n;
    bool resume = false;
    if (req->in.len > 0) {
        n = (ssize_t)OBX_MIN(cap, req->in.len);
        memcpy(buf, req->in.data, (size_t)n);
        obx_buf_consume(&req->in, (size_t)n);
        resume = req->in_paused && !req->in_resume && req->in.len < IN_LOW;
        req->in_resume = req->in_resume || resume;
    } else if (req->in_done) {
        n = 0;
    } else {
        n = req->gone ? -EPIPE : -ETIMEDOUT;
    }
    pthread_mutex_unlock(&req->srv->lock);
    if (resume)
        enqueue(req, false, NULL);
    return n;
}

void obx_http_server_free(struct obx_http_server *srv)
{
    if (!srv)
        return;
    if (srv->ctx)
        lws_context_destroy(srv->ctx); /* closes every connection: CLOSED_HTTP detaches */
    http_ws_server_free(srv->ws);
    for (size_t i = 0; i < OBX_ARRAY_SIZE(srv->listen_fds); i++)
        obx_closep(&srv->listen_fds[i]);
    /* Completions that arrived after the loop stopped. */
    struct obx_http_request *list = srv->done_head;
    while (list) {
        struct obx_http_request *req = list;
        list = req->next_done;
        req->conn = NULL;
        obx_http_request_unref(req);
    }
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}
