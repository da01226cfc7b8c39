/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the console's HTTP routing and handlers, from the request as the transport hands it
 * over: method, path, query, the headers the console reads (Cookie, Authorization, Host, Origin,
 * Accept, Accept-Encoding, If-None-Match, Content-Type, X-Forwarded-*, Mcp-Session-Id,
 * MCP-Protocol-Version) and the body. Each
 * input is a fresh console (SQLite in memory with an admin and a user, each with a token and a
 * dashboard session) and up to 8 requests, in the text form
 *
 *   POST /api/v1/tasks?x=1
 *   Authorization: Bearer fuzz-token-admin
 *   Content-Type: application/json
 *
 *   {"capability":"echo","input":{"message":"hi"}}
 *   =====
 *   (the next request)
 *
 * "Mcp-Session-Id: $session" stands for the id the last response gave, so one input can
 * initialize an MCP session and use it. The requests run through obx_router_handle(), what a pool
 * thread runs for a dispatched request; capabilities reach an executor that answers at once.
 *
 * Not covered here: libwebsockets' own parsing of the request line and headers, percent-decoding
 * and the socket side of src/console/http.c (reading bodies, writing responses); this harness
 * stands in for that file's completion functions. Routes that hash passwords on purpose slowly
 * (login, password change, register) are skipped to keep the rate up.
 *
 * Checked: every request is answered exactly once within 10 s, with a status in 100..599; a JSON
 * body parses; an event stream is a sequence of "event: message" events carrying JSON-RPC.
 */
#include <pthread.h>
#include <stdbool.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "console/api/api.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"
#include "fuzz.h"
#include "mcp/mcp.h"

#define MAX_REQUESTS 8
#define ANSWER_WAIT_MS 10000

/* ---- the transport's completion side (src/console/http.c without libwebsockets) ---- */

struct tracked {
    struct obx_http_request *req;
    int completes;
    bool streaming, stream_ended;
    char *stream;
    size_t stream_len;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct tracked tracked[MAX_REQUESTS];
static size_t n_tracked;

static struct tracked *find_locked(struct obx_http_request *req)
{
    for (size_t i = 0; i < n_tracked; i++)
        if (tracked[i].req == req)
            return &tracked[i];
    FUZZ_CHECK(false, "a completion for a request the transport never dispatched");
    return NULL;
}

void obx_http_request_complete(struct obx_http_request *req)
{
    pthread_mutex_lock(&lock);
    struct tracked *t = find_locked(req);
    t->completes++;
    FUZZ_CHECK(!t->streaming, "complete() on a streamed response");
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    obx_http_request_unref(req);
}

void obx_http_stream_start(struct obx_http_request *req)
{
    pthread_mutex_lock(&lock);
    struct tracked *t = find_locked(req);
    FUZZ_CHECK(!t->streaming && t->completes == 0, "a stream started twice or after completion");
    t->streaming = true;
    pthread_mutex_unlock(&lock);
}

void obx_http_stream_write(struct obx_http_request *req, const char *data, size_t len)
{
    pthread_mutex_lock(&lock);
    struct tracked *t = find_locked(req);
    FUZZ_CHECK(t->streaming && !t->stream_ended, "stream bytes outside a stream");
    t->stream = obx_xrealloc(t->stream, t->stream_len + len + 1);
    memcpy(t->stream + t->stream_len, data, len);
    t->stream_len += len;
    t->stream[t->stream_len] = '\0';
    pthread_mutex_unlock(&lock);
}

void obx_http_stream_end(struct obx_http_request *req)
{
    pthread_mutex_lock(&lock);
    struct tracked *t = find_locked(req);
    FUZZ_CHECK(t->streaming && !t->stream_ended, "a stream ended twice or never started");
    t->stream_ended = true;
    t->completes++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    obx_http_request_unref(req);
}

void obx_http_stream_start_length(struct obx_http_request *req, uint64_t length)
{
    obx_http_stream_start(req);
}

/* A file transfer's pacing: the harness takes everything at once. */
bool obx_http_stream_drain(struct obx_http_request *req, size_t max, int timeout_ms)
{
    return true;
}

/* An incomplete streamed body counts as an answer too. */
void obx_http_stream_abort(struct obx_http_request *req)
{
    obx_http_stream_end(req);
}

/* Bodies here are collected whole; an upload reads this one. */
int64_t obx_http_body_length(const struct obx_http_request *req)
{
    return (int64_t)req->body_len;
}

ssize_t obx_http_body_read(struct obx_http_request *req, void *buf, size_t cap, int timeout_ms)
{
    size_t n = OBX_MIN(cap, req->body_len - req->in_received);
    memcpy(buf, req->body + req->in_received, n);
    req->in_received += n;
    return (ssize_t)n;
}

int obx_http_server_port(const struct obx_http_server *srv)
{
    return 8089;
}

/* The client never leaves here, and no extra headers are captured. */
bool obx_http_request_gone(struct obx_http_request *req)
{
    return false;
}

const char *const *obx_http_server_capture_headers(const struct obx_http_server *srv)
{
    return obx_mcp_param_headers(); /* header_slot() fills captured[] in this order */
}

/* No WebSocket reaches the router: the live terminal's socket calls are never made here. */
struct obx_http_ws *obx_http_ws_ref(struct obx_http_ws *ws)
{
    return ws;
}

void obx_http_ws_unref(struct obx_http_ws *ws)
{
}

void obx_http_ws_set_user(struct obx_http_ws *ws, void *user)
{
}

void *obx_http_ws_user(const struct obx_http_ws *ws)
{
    return NULL;
}

const struct obx_http_request *obx_http_ws_request(const struct obx_http_ws *ws)
{
    return NULL;
}

int obx_http_ws_send(struct obx_http_ws *ws, uint8_t type, const void *data, size_t len)
{
    return -EPIPE;
}

void obx_http_ws_close(struct obx_http_ws *ws, int code, const char *reason)
{
}

/* ---- an executor that answers at once ---- */

static int instant_exec(struct obx_executor *self, const char *capability, json_t *payload,
                        struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    const char *text = obx_json_get_str(payload, "code", obx_json_get_str(payload, "command", ""));
    if (call->on_output && *text)
        call->on_output(call->output_userdata, OBX_STREAM_STDOUT, text, strlen(text));
    if (obx_streq(capability, "echo")) {
        *ret_result = json_deep_copy(payload);
    } else if (obx_streq(capability, "pythonexec")) {
        *ret_result = json_pack("{sssssi}", "output", text, "stderr", "", "exit_code", 0);
    } else if (obx_streq(capability, "terminalexec")) {
        /* The session id comes back as the worker got it: scoped to the account. */
        const char *sid = obx_json_get_str(payload, "session_id", "obx:none:s-1");
        *ret_result =
            json_pack("{sssbsssssisbsbsI}", "session_id", sid, "created", 1, "stdout", text,
                      "stderr", "", "exit_code", 0, "stdout_truncated", 0, "stderr_truncated", 0,
                      "lease_expires_unix_ms", (json_int_t)1700000000000);
    } else if (obx_streq(capability, "terminalresource")) {
        *ret_result =
            json_pack("{sOsOsssiss}", "session_id", json_object_get(payload, "session_id"),
                      "file_path", json_object_get(payload, "file_path"), "mime_type", "image/png",
                      "size_bytes", 4, "blob", "iVBORw==");
    } else {
        return obx_error_set(err, ENODEV, "no_worker", "no worker supports %s", capability);
    }
    return 0;
}

static struct obx_executor executor = {.exec = instant_exec};

/* ---- the console ---- */

static struct obx_console_config cfg = {
    .http_host = "127.0.0.1",
    .http_port = 8089,
    .db_path = ":memory:",
    .db_busy_timeout_ms = 1000,
    .enable_registration = true,
    .hash_key = "fuzz-hash-key",
    .trust_proxy_headers = true,
    .max_body_bytes = 1024 * 1024,
    .header_timeout_sec = 10,
    .idle_timeout_sec = 60,
    .worker_threads = 2,
    .login_max_failures = 10,
    .login_window_sec = 300,
    .task_retention_days = 30,
    .grpc_host = "",
    .grpc_port = 50051,
    .offline_ttl_sec = 15,
    .mcp_max_sessions = 4,
    .mcp_max_sessions_per_account = 2,
    .mcp_session_idle_sec = 1800,
    .mcp_allowed_origins = "https://app.example.com, http://LOCALHOST:5173/",
    .max_upload_mb = 1,
    .max_transfers = 4,
    .export_url_ttl_sec = 3600,
    .export_max_mb = 1,
    .public_url = "http://127.0.0.1:8089",
};

static void seed_account(struct obx_console *c, const char *id, const char *name, bool admin)
{
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_account a = {.is_admin = admin, .created_ms = 1, .updated_ms = 1};
    snprintf(a.id, sizeof(a.id), "%s", id);
    snprintf(a.username, sizeof(a.username), "%s", name);
    enum obx_store_conflict conflict;
    FUZZ_CHECK(obx_store_account_insert(c->store, &a, name, "not-a-hash", OBX_AUTH_HASH_ALGO,
                                        &conflict, &err) == 0,
               "seed account: %s", err.message);

    /* Bearer token "fuzz-token-<name>" and dashboard cookie "fuzz-session-<name>". */
    struct obx_token t = {.generated = false, .created_ms = 1, .updated_ms = 1};
    char value[64];
    snprintf(value, sizeof(value), "fuzz-token-%s", name);
    snprintf(t.id, sizeof(t.id), "tok_%s", name);
    snprintf(t.account_id, sizeof(t.account_id), "%s", id);
    snprintf(t.name, sizeof(t.name), "seed");
    obx_auth_hmac_hex(cfg.hash_key, value, strlen(value), t.token_hash);
    obx_console_token_mask(value, t.token_masked, sizeof(t.token_masked));
    FUZZ_CHECK(obx_store_token_insert(c->store, &t, "seed", &conflict, &err) == 0, "seed token: %s",
               err.message);
    char hash[65];
    snprintf(value, sizeof(value), "fuzz-session-%s", name);
    obx_route_session_hash(c, value, hash);
    int64_t now = obx_unix_ms();
    FUZZ_CHECK(obx_store_session_insert(c->store, hash, id, now, now + 3600 * 1000, &err) == 0,
               "seed session: %s", err.message);
}

static void console_open(struct obx_console *c)
{
    memset(c, 0, sizeof(*c));
    c->cfg = &cfg;
    c->started_ms = obx_unix_ms();
    struct obx_error err = OBX_ERROR_INIT;
    FUZZ_CHECK(obx_store_open(cfg.db_path, cfg.db_busy_timeout_ms, &c->store, &err) == 0,
               "store: %s", err.message);
    seed_account(c, "acc_admin", "admin", true);
    seed_account(c, "acc_user", "user", false);
    struct obx_dispatch_config dc = {.store = c->store,
                                     .hash_key = cfg.hash_key,
                                     .offline_ttl_sec = 15,
                                     .heartbeat_interval_sec = 5,
                                     .embedded = &executor,
                                     .embedded_max_inflight = 1,
                                     .embedded_kind = "fuzz",
                                     .grpc_port = -1};
    FUZZ_CHECK(obx_dispatch_new(&dc, &c->dispatch, &err) == 0, "dispatch: %s", err.message);
    c->tasks = obx_tasks_new(c->store, c->dispatch, 24LL * 3600 * 1000);
    c->xfers = obx_console_xfers_new((unsigned)cfg.max_transfers);
    FUZZ_CHECK(obx_console_exports_new(c, &c->exports, &err) == 0, "exports: %s", err.message);
    c->mcp = obx_console_mcp_new(c);
    c->login_limit = obx_ratelimit_new(cfg.login_max_failures, 300000, 64);
}

static void console_close(struct obx_console *c)
{
    obx_console_mcp_free(c->mcp);
    obx_tasks_free(c->tasks);
    obx_console_xfers_free(c->xfers);
    obx_console_exports_free(c->exports);
    obx_dispatch_free(c->dispatch);
    obx_ratelimit_free(c->login_limit);
    obx_store_close(c->store);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(obx_auth_init() == 0, "libsodium");
    obx_log_threshold = OBX_LOG_OFF; /* handlers log every refused request */
    return 0;
}

/* ---- requests from text ---- */

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decoding, as the transport does before the router sees a path or a query. */
static char *decode(const char *s, size_t len)
{
    char *out = obx_xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out[n++] = (char)(hex(s[i + 1]) << 4 | hex(s[i + 2]));
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    return out;
}

/* The input is not NUL-terminated: strndup() may read past its end looking for one. */
static char *copy(const char *s, size_t len)
{
    char *out = obx_xmalloc(len + 1);
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

static enum obx_http_method method_of(const char *s, size_t len)
{
    static const struct {
        const char *name;
        enum obx_http_method m;
    } names[] = {{"GET", OBX_HTTP_GET},        {"HEAD", OBX_HTTP_HEAD},
                 {"POST", OBX_HTTP_POST},      {"PUT", OBX_HTTP_PUT},
                 {"PATCH", OBX_HTTP_PATCH},    {"DELETE", OBX_HTTP_DELETE},
                 {"OPTIONS", OBX_HTTP_OPTIONS}};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(names); i++)
        if (strlen(names[i].name) == len && memcmp(names[i].name, s, len) == 0)
            return names[i].m;
    return OBX_HTTP_OTHER;
}

/* One line of [p, end) without its "\r\n" or "\n"; advances *p. */
static const char *take_line(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    *len = (size_t)(e - s);
    if (*len > 0 && s[*len - 1] == '\r')
        (*len)--;
    return s;
}

static char **header_slot(struct obx_http_request *req, const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t off;
    } map[] = {
        {"cookie", offsetof(struct obx_http_request, cookie)},
        {"authorization", offsetof(struct obx_http_request, authorization)},
        {"x-forwarded-proto", offsetof(struct obx_http_request, forwarded_proto)},
        {"x-forwarded-for", offsetof(struct obx_http_request, forwarded_for)},
        {"host", offsetof(struct obx_http_request, host)},
        {"origin", offsetof(struct obx_http_request, origin)},
        {"accept", offsetof(struct obx_http_request, accept)},
        {"content-type", offsetof(struct obx_http_request, content_type)},
        {"mcp-session-id", offsetof(struct obx_http_request, mcp_session_id)},
        {"mcp-protocol-version", offsetof(struct obx_http_request, mcp_protocol)},
        {"accept-encoding", offsetof(struct obx_http_request, accept_encoding)},
        {"if-none-match", offsetof(struct obx_http_request, if_none_match)},
        {"mcp-method", offsetof(struct obx_http_request, mcp_method)},
        {"mcp-name", offsetof(struct obx_http_request, mcp_name)},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(map); i++)
        if (strlen(map[i].name) == len && strncasecmp(map[i].name, name, len) == 0)
            return (char **)((char *)req + map[i].off);
    const char *const *captured = obx_mcp_param_headers();
    for (size_t i = 0; captured[i] && i < OBX_HTTP_MAX_CAPTURED; i++)
        if (strlen(captured[i]) == len && strncasecmp(captured[i], name, len) == 0)
            return &req->captured[i];
    return NULL;
}

static struct obx_http_request *request_parse(const char *s, size_t len, const char *session_id)
{
    const char *p = s, *end = s + len;
    size_t n;
    const char *line = take_line(&p, end, &n);
    struct obx_http_request *req = obx_xcalloc(1, sizeof(*req));
    req->refs = 1;
    snprintf(req->remote_ip, sizeof(req->remote_ip), "127.0.0.1");
    const char *sp = memchr(line, ' ', n);
    req->method = method_of(line, sp ? (size_t)(sp - line) : n);
    const char *target = sp ? sp + 1 : line + n;
    size_t tlen = (size_t)(line + n - target);
    const char *sp2 = memchr(target, ' ', tlen); /* " HTTP/1.1" */
    if (sp2)
        tlen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tlen);
    req->path = decode(target, q ? (size_t)(q - target) : tlen);
    for (const char *a = q ? q + 1 : NULL;
         a && a < target + tlen && req->n_query < OBX_HTTP_MAX_QUERY;) {
        const char *amp = memchr(a, '&', (size_t)(target + tlen - a));
        const char *ae = amp ? amp : target + tlen;
        const char *eq = memchr(a, '=', (size_t)(ae - a));
        req->query[req->n_query][0] = decode(a, (size_t)((eq ? eq : ae) - a));
        req->query[req->n_query][1] = eq ? decode(eq + 1, (size_t)(ae - eq - 1)) : obx_xstrdup("");
        req->n_query++;
        a = amp ? amp + 1 : NULL;
    }
    while (p < end) {
        line = take_line(&p, end, &n);
        if (n == 0)
            break;
        const char *colon = memchr(line, ':', n);
        if (!colon)
            continue;
        char **slot = header_slot(req, line, (size_t)(colon - line));
        if (!slot)
            continue;
        const char *v = colon + 1;
        size_t vlen = (size_t)(line + n - v);
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        free(*slot);
        if (slot == &req->mcp_session_id && vlen == 8 && memcmp(v, "$session", 8) == 0)
            *slot = obx_xstrdup(session_id);
        else
            *slot = copy(v, vlen);
    }
    req->body_len = (size_t)(end - p);
    req->body = obx_xmalloc(req->body_len + 1);
    memcpy(req->body, p, req->body_len);
    req->body[req->body_len] = '\0';
    req->stream = (struct obx_buf)OBX_BUF_INIT(1 << 20);
    return req;
}

/* Routes that hash a password on purpose slowly: far too slow for a fuzzer's rate. */
static bool slow_route(const struct obx_http_request *req)
{
    static const char *const slow[] = {"/api/v1/console/login", "/api/v1/console/password",
                                       "/api/v1/console/register"};
    size_t len = strlen(req->path);
    if (len > 1 && req->path[len - 1] == '/')
        len--;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(slow); i++)
        if (strlen(slow[i]) == len && strncmp(slow[i], req->path, len) == 0)
            return true;
    return false;
}

/* ---- checks ---- */

static void check_sse(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    while (p < end) {
        static const char ev[] = "event: message\ndata: ";
        FUZZ_CHECK((size_t)(end - p) > sizeof(ev) - 1 && memcmp(p, ev, sizeof(ev) - 1) == 0,
                   "not an SSE message event: %.80s", p);
        p += sizeof(ev) - 1;
        const char *stop = strstr(p, "\n\n");
        FUZZ_CHECK(stop, "an SSE event without its blank line");
        json_error_t je;
        json_t *j = json_loadb(p, (size_t)(stop - p), JSON_ALLOW_NUL, &je);
        FUZZ_CHECK(json_is_object(j) || json_is_array(j), "SSE data is not JSON-RPC: %s", je.text);
        json_decref(j);
        p = stop + 2;
    }
}

static void check_response(const struct tracked *t, char *session_id, size_t size)
{
    const struct obx_http_response *r = &t->req->resp;
    FUZZ_CHECK(r->status >= 100 && r->status <= 599, "status %d", r->status);
    if (t->streaming) {
        FUZZ_CHECK(obx_streq(r->content_type, "text/event-stream"), "a stream of %s",
                   r->content_type ? r->content_type : "(none)");
        check_sse(t->stream ? t->stream : "", t->stream_len);
    } else if (r->content_type && strstr(r->content_type, "json")) {
        json_error_t je;
        json_t *j = json_loadb(r->body, r->body_len, JSON_ALLOW_NUL, &je);
        FUZZ_CHECK(j, "a %d response with invalid JSON (%s)", r->status, je.text);
        json_decref(j);
    }
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i][0], "mcp-session-id") == 0)
            snprintf(session_id, size, "%s", r->headers[i][1]);
}

static void run_request(struct obx_console *c, const char *s, size_t len, char *session_id,
                        size_t size)
{
    struct obx_http_request *req = request_parse(s, len, session_id);
    if (slow_route(req)) {
        obx_http_request_unref(req);
        return;
    }
    pthread_mutex_lock(&lock);
    struct tracked *t = &tracked[n_tracked++];
    *t = (struct tracked){.req = req};
    pthread_mutex_unlock(&lock);

    obx_router_handle(c, obx_http_request_ref(req)); /* the completion reference */

    uint64_t deadline = obx_now_ms() + ANSWER_WAIT_MS;
    pthread_mutex_lock(&lock);
    while (t->completes == 0 && obx_now_ms() < deadline) {
        pthread_mutex_unlock(&lock);
        usleep(200);
        pthread_mutex_lock(&lock);
    }
    FUZZ_CHECK(t->completes == 1, "%s answered %d times within %d ms", req->path, t->completes,
               ANSWER_WAIT_MS);
    pthread_mutex_unlock(&lock);
    check_response(t, session_id, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char sep[] = "\n=====\n";
    struct obx_console c;
    console_open(&c);
    char session_id[80] = "none";
    const char *p = (const char *)data, *end = p + size;
    n_tracked = 0;
    while (p < end && n_tracked < MAX_REQUESTS) {
        const char *next = memmem(p, (size_t)(end - p), sep, sizeof(sep) - 1);
        size_t len = next ? (size_t)(next - p) : (size_t)(end - p);
        run_request(&c, p, len, session_id, sizeof(session_id));
        p = next ? next + sizeof(sep) - 1 : end;
    }
    console_close(&c);
    /* Nothing may complete a request after the console is gone. */
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_tracked; i++) {
        FUZZ_CHECK(tracked[i].completes == 1, "request %zu answered %d times", i,
                   tracked[i].completes);
        free(tracked[i].stream);
        obx_http_request_unref(tracked[i].req);
    }
    n_tracked = 0;
    pthread_mutex_unlock(&lock);
    return 0;
}
