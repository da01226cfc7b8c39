/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WebSockets on the console's HTTP server (http.h). lws runs every connection on the service
 * thread: the handshake (which check() may refuse with an HTTP answer), messages (put together
 * from their fragments, bounded), writes (one message per writeable callback, as lws wants),
 * pings of idle connections (the vhost's validity policy) and closes.
 *
 * Other threads send through a queue per connection under the WebSocket lock: a send appends the
 * message and puts the connection on the wake list once, lws_cancel_service() wakes the loop, and
 * the loop (LWS_CALLBACK_EVENT_WAIT_CANCELLED) asks for a writeable callback on every connection
 * of the list. A connection object is reference counted: the lws connection holds one until it
 * closes, the wake list one while it is on it, the application its own; wsi is touched on the
 * service thread only and cleared at the close, so late sends are dropped, never written to a
 * connection that is gone.
 */
#include "http-internal.h"

#include <pthread.h>

#include "common/buf.h"
#include "common/log.h"

struct ws_msg {
    struct ws_msg *next;
    size_t len;     /* type byte and payload */
    uint8_t data[]; /* LWS_PRE bytes of room for lws's header, then the message */
};

struct obx_http_ws {
    int refs; /* __atomic */
    struct http_ws_server *w;
    struct obx_http_server *srv;
    struct obx_http_request *req; /* the upgrade request */
    void *user;
    size_t max_pending;
    /* service thread only */
    struct lws *wsi;
    struct obx_buf rx;
    /* under w->lock */
    struct ws_msg *head, *tail;
    size_t pending;
    bool closing, closed, queued;
    int close_code;
    char close_reason[124];
    struct obx_http_ws *next_wake;
};

/* Outlives the HTTP server while a connection object is held (each holds a reference), so that a
 * send after the server stopped finds its connection closed instead of freed memory. */
struct http_ws_server {
    int refs; /* __atomic */
    pthread_mutex_t lock;
    struct obx_http_ws *wake_head, *wake_tail;
};

/* lws's per-connection data for this protocol. */
struct ws_pss {
    struct obx_http_request *req; /* from the check to the handshake's end */
    struct obx_http_ws *ws;       /* once established */
};

size_t http_ws_pss_size(void)
{
    return sizeof(struct ws_pss);
}

struct http_ws_server *http_ws_server_new(void)
{
    struct http_ws_server *w = obx_xcalloc(1, sizeof(*w));
    w->refs = 1;
    pthread_mutex_init(&w->lock, NULL);
    return w;
}

static void server_unref(struct http_ws_server *w)
{
    if (!w || __atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void http_ws_server_free(struct http_ws_server *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    struct obx_http_ws *list = w->wake_head;
    w->wake_head = w->wake_tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (list) {
        struct obx_http_ws *ws = list;
        list = ws->next_wake;
        obx_http_ws_unref(ws);
    }
    server_unref(w);
}

struct obx_http_ws *obx_http_ws_ref(struct obx_http_ws *ws)
{
    __atomic_add_fetch(&ws->refs, 1, __ATOMIC_RELAXED);
    return ws;
}

static void queue_free(struct obx_http_ws *ws)
{
    while (ws->head) {
        struct ws_msg *m = ws->head;
        ws->head = m->next;
        free(m);
    }
    ws->tail = NULL;
    ws->pending = 0;
}

void obx_http_ws_unref(struct obx_http_ws *ws)
{
    if (!ws || __atomic_sub_fetch(&ws->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    queue_free(ws);
    obx_buf_free(&ws->rx);
    obx_http_request_unref(ws->req);
    server_unref(ws->w);
    free(ws);
}

void obx_http_ws_set_user(struct obx_http_ws *ws, void *user)
{
    ws->user = user;
}

void *obx_http_ws_user(const struct obx_http_ws *ws)
{
    return ws->user;
}

const struct obx_http_request *obx_http_ws_request(const struct obx_http_ws *ws)
{
    return ws->req;
}

/* Under w->lock: puts ws on the wake list (once); returns true when the loop must be woken. */
static bool wake_locked(struct obx_http_ws *ws)
{
    struct http_ws_server *w = ws->w;
    if (ws->queued)
        return false;
    ws->queued = true;
    obx_http_ws_ref(ws);
    ws->next_wake = NULL;
    if (w->wake_tail)
        w->wake_tail->next_wake = ws;
    else
        w->wake_head = ws;
    w->wake_tail = ws;
    return true;
}

int obx_http_ws_send(struct obx_http_ws *ws, uint8_t type, const void *data, size_t len)
{
    struct ws_msg *m = obx_xmalloc(sizeof(*m) + LWS_PRE + 1 + len);
    m->next = NULL;
    m->len = 1 + len;
    m->data[LWS_PRE] = type;
    if (len)
        memcpy(m->data + LWS_PRE + 1, data, len);
    struct http_ws_server *w = ws->w;
    int r = 0;
    bool wake = false;
    pthread_mutex_lock(&w->lock);
    if (ws->closed || ws->closing) {
        r = -EPIPE;
    } else if (ws->pending + m->len > ws->max_pending) {
        r = -ENOBUFS;
    } else {
        if (ws->tail)
            ws->tail->next = m;
        else
            ws->head = m;
        ws->tail = m;
        ws->pending += m->len;
        wake = wake_locked(ws);
    }
    pthread_mutex_unlock(&w->lock);
    if (r < 0)
        free(m);
    if (wake)
        http_server_wake(ws->srv);
    return r;
}

void obx_http_ws_close(struct obx_http_ws *ws, int code, const char *reason)
{
    struct http_ws_server *w = ws->w;
    bool wake = false;
    pthread_mutex_lock(&w->lock);
    if (!ws->closing && !ws->closed) {
        ws->closing = true;
        ws->close_code = code;
        snprintf(ws->close_reason, sizeof(ws->close_reason), "%s", reason ? reason : "");
        wake = wake_locked(ws);
    }
    pthread_mutex_unlock(&w->lock);
    if (wake)
        http_server_wake(ws->srv);
}

/* The loop was woken: every connection on the wake list gets a writeable callback. */
static void drain_wake(struct http_ws_server *w)
{
    pthread_mutex_lock(&w->lock);
    struct obx_http_ws *list = w->wake_head;
    w->wake_head = w->wake_tail = NULL;
    for (struct obx_http_ws *ws = list; ws; ws = ws->next_wake)
        ws->queued = false;
    pthread_mutex_unlock(&w->lock);
    while (list) {
        struct obx_http_ws *ws = list;
        list = ws->next_wake;
        if (ws->wsi)
            lws_callback_on_writable(ws->wsi);
        obx_http_ws_unref(ws);
    }
}

/* One queued message out, or the close once the queue is empty. -1 ends the connection. */
static int on_writeable(struct obx_http_ws *ws)
{
    struct http_ws_server *w = ws->w;
    pthread_mutex_lock(&w->lock);
    struct ws_msg *m = ws->head;
    if (m) {
        ws->head = m->next;
        if (!ws->head)
            ws->tail = NULL;
        ws->pending -= m->len;
    }
    bool more = ws->head != NULL, closing = ws->closing;
    int code = ws->close_code;
    char reason[sizeof(ws->close_reason)];
    memcpy(reason, ws->close_reason, sizeof(reason));
    pthread_mutex_unlock(&w->lock);
    if (m) {
        int n = lws_write(ws->wsi, m->data + LWS_PRE, m->len, LWS_WRITE_BINARY);
        bool ok = n >= 0 && (size_t)n >= m->len;
        free(m);
        if (!ok)
            return -1;
        if (more || closing)
            lws_callback_on_writable(ws->wsi);
        return 0;
    }
    if (!closing)
        return 0;
    lws_close_reason(ws->wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

static const char *status_text(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 429:
        return "Too Many Requests";
    default:
        return "Service Unavailable";
    }
}

int http_ws_refuse_unknown(struct lws *wsi)
{
    struct obx_http_server *srv = lws_context_user(lws_get_context(wsi));
    const struct obx_http_ws_config *cfg = &http_server_config(srv)->ws;
    if (cfg->protocol)
        http_answer_before_close(wsi, 400, status_text(400),
                                 "a WebSocket here must ask for the subprotocol %s", cfg->protocol);
    else
        http_answer_before_close(wsi, 404, status_text(404), "no WebSocket is served here");
    return -1;
}

/* A whole message has arrived (it may come in many fragments and reads). */
static int on_receive(const struct obx_http_ws_config *cfg, struct obx_http_ws *ws, void *in,
                      size_t len)
{
    if (obx_buf_append(&ws->rx, in, len) < 0) {
        static const char why[] = "message too large";
        lws_close_reason(ws->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)why,
                         sizeof(why) - 1);
        return -1;
    }
    if (lws_remaining_packet_payload(ws->wsi) > 0 || !lws_is_final_fragment(ws->wsi))
        return 0;
    cfg->on_message(cfg->userdata, ws, ws->rx.data, ws->rx.len);
    obx_buf_reset(&ws->rx);
    return 0;
}

int http_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    struct ws_pss *pss = user;
    struct obx_http_server *srv = lws_context_user(lws_get_context(wsi));
    if (!srv)
        return 0;
    const struct obx_http_ws_config *cfg = &http_server_config(srv)->ws;
    struct obx_http_ws *ws = pss ? pss->ws : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        struct obx_http_request *req = http_request_new(srv, wsi);
        if (!req)
            return -1;
        const char *message = "refused";
        int status = cfg->check ? cfg->check(cfg->userdata, req, &message) : 0;
        if (status) {
            http_answer_before_close(wsi, status, status_text(status), "%s", message);
            obx_http_request_unref(req);
            return -1;
        }
        pss->req = req;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        if (!pss->req)
            return -1;
        ws = obx_xcalloc(1, sizeof(*ws));
        ws->refs = 1; /* the connection's */
        ws->w = http_server_ws(srv);
        __atomic_add_fetch(&ws->w->refs, 1, __ATOMIC_RELAXED);
        ws->srv = srv;
        ws->req = TAKE_PTR(pss->req);
        ws->wsi = wsi;
        ws->max_pending = cfg->max_pending;
        ws->rx = (struct obx_buf)OBX_BUF_INIT(cfg->max_message);
        pss->ws = ws;
        cfg->on_open(cfg->userdata, ws);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return ws ? on_receive(cfg, ws, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ws ? on_writeable(ws) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return 0; /* lws answers the close */
    case LWS_CALLBACK_CLOSED:
        if (!ws)
            return 0;
        pthread_mutex_lock(&ws->w->lock);
        ws->closed = true;
        queue_free(ws);
        pthread_mutex_unlock(&ws->w->lock);
        ws->wsi = NULL;
        pss->ws = NULL;
        cfg->on_closed(cfg->userdata, ws);
        obx_http_ws_unref(ws);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* A handshake that failed after the check. */
        if (pss && pss->req)
            obx_http_request_unref(TAKE_PTR(pss->req));
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        drain_wake(http_server_ws(srv));
        return 0;
    default:
        return 0;
    }
}
