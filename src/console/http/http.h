/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console's HTTP transport, with libwebsockets kept behind this header. One service thread
 * owns every connection and never blocks: it assembles a request (bounded headers and body), hands
 * it to the dispatch callback, and later writes the response that some other thread finished with
 * obx_http_request_complete(). Completion may happen at once (a handler on the pool) or much later
 * (a task waiting for a worker), from any thread.
 *
 * A request is reference counted. The dispatch callback receives one reference (the "completion
 * reference"), which obx_http_request_complete() consumes. If the client goes away first, the
 * completed response is simply dropped.
 */
#ifndef OBX_CONSOLE_HTTP_H
#define OBX_CONSOLE_HTTP_H

#include <jansson.h>
#include <pthread.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/error.h"

enum obx_http_method {
    OBX_HTTP_GET,
    OBX_HTTP_HEAD,
    OBX_HTTP_POST,
    OBX_HTTP_PUT,
    OBX_HTTP_PATCH,
    OBX_HTTP_DELETE,
    OBX_HTTP_OPTIONS,
    OBX_HTTP_OTHER,
};

#define OBX_HTTP_MAX_RESP_HEADERS 8
#define OBX_HTTP_MAX_QUERY 32
#define OBX_HTTP_MAX_CAPTURED 8

struct obx_http_response {
    int status;
    const char *content_type; /* static string or NULL (no body) */
    char *body;               /* owned */
    size_t body_len;
    size_t n_headers;
    char *headers[OBX_HTTP_MAX_RESP_HEADERS][2]; /* owned name, value */
};

struct obx_http_request {
    /* Set by the service thread before dispatch, read-only afterwards. */
    enum obx_http_method method;
    char *path; /* percent-decoded by the transport */
    size_t n_query;
    char *query[OBX_HTTP_MAX_QUERY][2]; /* decoded name, value; value "" when absent */
    bool query_nul;                     /* a decoded query parameter held a NUL (%00) */
    char *body;                         /* NUL-terminated, may contain NULs */
    size_t body_len;
    char *cookie;          /* Cookie header or NULL */
    char *authorization;   /* Authorization header or NULL */
    char *forwarded_proto; /* X-Forwarded-Proto or NULL */
    char *forwarded_for;   /* X-Forwarded-For or NULL */
    char *host;            /* Host header or NULL */
    char *origin;          /* Origin or NULL */
    char *accept;          /* Accept or NULL */
    char *content_type;    /* Content-Type or NULL */
    char *mcp_session_id;  /* Mcp-Session-Id or NULL */
    char *mcp_protocol;    /* MCP-Protocol-Version or NULL */
    char *mcp_method;      /* Mcp-Method or NULL */
    char *mcp_name;        /* Mcp-Name or NULL */
    /* The headers named by the server's capture_headers, in that order (NULL when absent). */
    char *captured[OBX_HTTP_MAX_CAPTURED];
    char *accept_encoding; /* Accept-Encoding or NULL */
    char *if_none_match;   /* If-None-Match or NULL */
    char remote_ip[64];
    bool tls;

    /* Filled by whoever completes the request. */
    struct obx_http_response resp;

    /* Private to http.c. */
    int refs;
    struct http_conn *conn; /* service thread only */
    struct obx_http_server *srv;
    struct obx_http_request *next_done;
    /* Under the server's lock: on the done list; a response (or more of a streamed one) to
     * write; a streamed response, its bytes not written yet, whether it ended or is to be cut;
     * the client went away. */
    bool queued, ready, streaming, stream_ended, stream_abort, gone;
    int64_t stream_length; /* a streamed response's Content-Length, -1: none */
    struct obx_buf stream;
    /* A streamed request body (stream_body said so): its length, what arrived and is not read
     * yet, whether all of it arrived, whether reading from the client is paused (too much
     * waits) and a resume was asked of the service thread. cond: more body, or less response
     * waiting. Under the server's lock. */
    bool body_streamed, in_done, in_paused, in_resume;
    int64_t content_length;
    uint64_t in_received;
    struct obx_buf in;
    pthread_cond_t cond;
};

/* Runs on the service thread: must not block. Owns the completion reference. */
typedef void (*obx_http_dispatch_fn)(struct obx_http_request *req, void *userdata);

/* ---- WebSockets (http-ws.c) ----
 * A server configured with a subprotocol name takes WebSocket upgrades that ask for it; the
 * callbacks below see each connection. Every message is binary; a message is whole when a
 * callback sees it (fragments are put together, up to max_message bytes: a larger one closes the
 * connection with 1009). An idle connection is pinged, and closed when the pings go unanswered.
 * Sends and closes may come from any thread: they are queued (at most max_pending bytes per
 * connection) and written by the service thread. */
struct obx_http_ws;

struct obx_http_ws_config {
    const char *protocol; /* the subprotocol clients ask for; NULL: no WebSockets */
    size_t max_message;
    size_t max_pending;
    /* Service thread, before the handshake, with the upgrade request (its path, query, cookie,
     * Origin and Host): 0 lets it go on, or an HTTP status (and *message, a static string) to
     * answer instead. Must not block. */
    int (*check)(void *userdata, const struct obx_http_request *req, const char **message);
    /* Service thread: the connection is open. req (the upgrade request) stays valid and readable
     * while the connection lives (obx_http_ws_request()). Must not block. */
    void (*on_open)(void *userdata, struct obx_http_ws *ws);
    /* Service thread: a whole message. Must not block. */
    void (*on_message)(void *userdata, struct obx_http_ws *ws, const void *data, size_t len);
    /* Service thread, once: the connection is gone (either side closed it, or the server stops);
     * no message comes after it and sends are dropped. */
    void (*on_closed)(void *userdata, struct obx_http_ws *ws);
    void *userdata;
};

struct obx_http_ws *obx_http_ws_ref(struct obx_http_ws *ws);
void obx_http_ws_unref(struct obx_http_ws *ws);
/* The caller's own pointer for this connection (service thread, or under the caller's locks). */
void obx_http_ws_set_user(struct obx_http_ws *ws, void *user);
void *obx_http_ws_user(const struct obx_http_ws *ws);
/* The upgrade request, for the connection's life. */
const struct obx_http_request *obx_http_ws_request(const struct obx_http_ws *ws);
/* Queues one binary message made of a one-byte type and data (copied); any thread. -ENOBUFS when
 * more than max_pending bytes wait already (nothing is queued), -EPIPE once closed. */
int obx_http_ws_send(struct obx_http_ws *ws, uint8_t type, const void *data, size_t len);
/* Closes after what is queued, with a close code (4000-4999 are the application's) and a
 * reason of at most 123 bytes; any thread, once (later calls do nothing). */
void obx_http_ws_close(struct obx_http_ws *ws, int code, const char *reason);

struct obx_http_server_config {
    const char *host; /* NULL or "" = every interface; else every address it resolves to */
    int port;         /* 0 = kernel-chosen */
    size_t max_body_bytes;
    size_t max_header_bytes;
    int header_timeout_sec; /* to receive the request head and each body chunk */
    int idle_timeout_sec;   /* keep-alive idle */
    /* Both set: the port speaks HTTPS only (PEM files, read at creation). Both NULL: plain HTTP. */
    const char *tls_cert_file;
    const char *tls_key_file;
    /* More request headers to keep, lower-case names, NULL-terminated (at most
     * OBX_HTTP_MAX_CAPTURED); read with obx_http_request_header(). */
    const char *const *capture_headers;
    obx_http_dispatch_fn dispatch;
    /* Optional, on the service thread once a request's head arrived: -1, or when its body is to
     * be streamed to the handler (obx_http_body_read()) rather than collected up to
     * max_body_bytes, the largest body the handler takes; the request is then dispatched at
     * once. Such a body needs a Content-Length (411 without one). A client that asks
     * "Expect: 100-continue" is told to go on only when the length is within that limit (else
     * the handler's refusal is its answer). */
    int64_t (*stream_body)(const struct obx_http_request *req, void *userdata);
    void *userdata;
    struct obx_http_ws_config ws;
    /* Headers added to every response ({name, value} pairs ending with {NULL, NULL}), or NULL. */
    const char *const (*fixed_headers)[2];
};

int obx_http_server_new(const struct obx_http_server_config *cfg, struct obx_http_server **ret,
                        struct obx_error *err);
/* The port actually bound (the first listener's). */
int obx_http_server_port(const struct obx_http_server *srv);
/* Writes "SCHEME://ADDR:PORT" for every address bound, space-separated; returns how many. */
size_t obx_http_server_addrs(const struct obx_http_server *srv, char *buf, size_t size,
                             const char *scheme);
/* Serves on the calling thread (which becomes the service thread) until stop. */
int obx_http_server_run(struct obx_http_server *srv);
/* Thread-safe; makes run() return. */
void obx_http_server_stop(struct obx_http_server *srv);
void obx_http_server_free(struct obx_http_server *srv);

struct obx_http_request *obx_http_request_ref(struct obx_http_request *req);
void obx_http_request_unref(struct obx_http_request *req);
/* Any thread, once per request: queues req->resp for writing and consumes the completion ref. */
void obx_http_request_complete(struct obx_http_request *req);

/* A streamed response (server-sent events): obx_http_stream_start() sends req->resp's status,
 * content type and headers without a length (HTTP/1.1 then closes the connection after the body),
 * obx_http_stream_write() queues body bytes (copied) to go out as they come, and
 * obx_http_stream_end() ends the body and consumes the completion reference in place of
 * obx_http_request_complete(). Any thread; calls for one request must not overlap. Bytes for a
 * client that went away are dropped. */
void obx_http_stream_start(struct obx_http_request *req);
void obx_http_stream_write(struct obx_http_request *req, const char *data, size_t len);
void obx_http_stream_end(struct obx_http_request *req);

/* A streamed response of a known length (a file): as obx_http_stream_start(), with a
 * Content-Length, so the connection stays open for the next request and a client can tell a
 * body cut short. Write exactly length bytes, or end it with obx_http_stream_abort(). */
void obx_http_stream_start_length(struct obx_http_request *req, uint64_t length);
/* Blocks (never on the service thread) until fewer than max bytes of a streamed response wait to
 * be written; false when the client went away or timeout_ms passed first. */
bool obx_http_stream_drain(struct obx_http_request *req, size_t max, int timeout_ms);
/* Ends a streamed response by closing the connection, its body incomplete (the client sees it
 * cut), and consumes the completion reference. */
void obx_http_stream_abort(struct obx_http_request *req);

/* A streamed request body (stream_body): its Content-Length, and its bytes, read from any
 * thread but the service thread. obx_http_body_read() blocks until bytes arrive: it returns how
 * many it put in buf, 0 once the whole body was read, -EPIPE when the client went away (the body
 * is then incomplete) or -ETIMEDOUT when none came for timeout_ms. Reading from the client
 * pauses while more than about a megabyte waits here. */
int64_t obx_http_body_length(const struct obx_http_request *req);
ssize_t obx_http_body_read(struct obx_http_request *req, void *buf, size_t cap, int timeout_ms);

/* A header kept by capture_headers (name as listed there, any case), or NULL. */
const char *obx_http_request_header(const struct obx_http_request *req, const char *name);
const char *const *obx_http_server_capture_headers(const struct obx_http_server *srv);
/* True once the client closed its connection (before or while its answer was written). Any
 * thread, while the caller holds a reference. */
bool obx_http_request_gone(struct obx_http_request *req);

/* Query value by name (first match) or NULL. */
const char *obx_http_request_query(const struct obx_http_request *req, const char *name);

/* Response helpers (http-response.c). They replace any body already set. */
void obx_http_respond_json(struct obx_http_request *req, int status, json_t *body /* stolen */);
void obx_http_respond_error(struct obx_http_request *req, int status, const char *message);
void obx_http_respond_empty(struct obx_http_request *req, int status);
/* A body of the given type; steals body (malloc'd, len bytes). */
void obx_http_respond_raw(struct obx_http_request *req, int status, const char *content_type,
                          char *body, size_t len);
/* Adds a response header (copied). Silently ignored past OBX_HTTP_MAX_RESP_HEADERS. */
void obx_http_response_add_header(struct obx_http_request *req, const char *name,
                                  const char *value);
void obx_http_response_done(struct obx_http_response *resp);

/* The libwebsockets log texts the 431 answer depends on (http.c), for the test that checks the
 * linked library still writes them. */
extern const char *const obx_http_lws_log_texts[];
extern const size_t obx_http_lws_log_n_texts;

#endif
