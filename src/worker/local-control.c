/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control socket of `onlyboxes mcp`: a terminal session of a local agent lives in the process
 * that made it, and this socket is how this user's other commands (`onlyboxes cp`, `onlyboxes
 * sessions`) reach it. It speaks a small part of HTTP/1.1, the console's sessions and files
 * routes (control-routes.c), so the CLI's console client serves both; where the socket is and
 * who may connect is control-dir.c.
 *
 * One accept thread, and a thread per connection (at most MAX_CONNS at once; one more is told
 * 503 and closed). A connection carries one request: its head (at most OBX_CONTROL_HEAD_MAX
 * bytes, within HEAD_TIMEOUT_MS), a body of Content-Length bytes (Expect: 100-continue is
 * answered when the body is first wanted), and a response that closes it. Bodies stream: an
 * upload is read from the socket as the box takes it, a download written as the box sends it,
 * so a file of any size costs a buffer. Stopping cancels the calls in progress, shuts the
 * connections down and waits for their threads.
 */
#include "control-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/thread.h"

#define MAX_CONNS 8
#define HEAD_TIMEOUT_MS 30000
#define DRAIN_TIMEOUT_MS 5000 /* an unread body is read and dropped this long at most */

struct obx_worker_control {
    struct obx_worker *w;
    int listen_fd;
    int wake[2]; /* the accept thread's stop pipe */
    pthread_t accept_thr;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

    pthread_mutex_t lock; /* guards the fields below */
    pthread_cond_t cond;  /* a connection ended */
    unsigned n_conns;
    bool stopping;
    struct obx_control_conn *conns;
};

/* The socket of this process, for obx_worker_control_unlink() on a signal. */
static char signal_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static bool signal_path_set; /* __atomic */

/* ---- I/O on one connection ---- */

/* Waits for events on the connection; -ETIMEDOUT after timeout_ms. */
static int conn_wait(struct obx_control_conn *c, short events, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int obx_control_send(struct obx_control_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -errno;
        int r = conn_wait(c, POLLOUT, OBX_CALL_STALL_MS);
        if (r < 0)
            return r;
    }
    return 0;
}

/* One recv of at most cap bytes, waiting up to timeout_ms: -ECONNRESET at the peer's end. */
static ssize_t conn_recv(struct obx_control_conn *c, void *buf, size_t cap, int timeout_ms)
{
    for (;;) {
        ssize_t n = recv(c->fd, buf, cap, MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int r = conn_wait(c, POLLIN, timeout_ms);
        if (r < 0)
            return r;
    }
}

ssize_t obx_control_body_read(struct obx_control_conn *c, void *buf, size_t cap)
{
    if (c->body_left == 0 || cap == 0)
        return 0;
    if (c->expect_continue && !c->continue_sent) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->continue_sent = true;
        int r = obx_control_send(c, cont, sizeof(cont) - 1);
        if (r < 0)
            return r;
    }
    size_t want = (size_t)OBX_MIN((uint64_t)cap, c->body_left);
    ssize_t n;
    if (c->body_off < c->len) {
        n = (ssize_t)OBX_MIN(want, c->len - c->body_off);
        memcpy(buf, c->buf + c->body_off, (size_t)n);
        c->body_off += (size_t)n;
    } else {
        n = conn_recv(c, buf, want, OBX_CALL_STALL_MS);
        if (n < 0)
            return n;
    }
    c->body_left -= (uint64_t)n;
    return n;
}

/* The reason phrase of each status, and the message of those a connection answers by itself. */
static const struct status_row {
    int status;
    const char *text, *why;
} statuses[] = {
    {200, "OK", NULL},
    {201, "Created", NULL},
    {204, "No Content", NULL},
    {400, "Bad Request", "malformed request"},
    {403, "Forbidden", NULL},
    {404, "Not Found", "no such route"},
    {405, "Method Not Allowed", NULL},
    {408, "Request Timeout", "the request's head did not come in time"},
    {409, "Conflict", NULL},
    {411, "Length Required", "a body needs a Content-Length (chunked bodies are not taken)"},
    {413, "Content Too Large", NULL},
    {417, "Expectation Failed", "the only expectation taken is 100-continue"},
    {429, "Too Many Requests", NULL},
    {431, "Request Header Fields Too Large", "the request's head is larger than 16 KiB"},
    {500, "Internal Server Error", NULL},
    {501, "Not Implemented", NULL},
    {502, "Bad Gateway", NULL},
    {503, "Service Unavailable", NULL},
    {504, "Gateway Timeout", NULL},
    {505, "HTTP Version Not Supported", "only HTTP/1.0 and HTTP/1.1 are spoken"},
    {507, "Insufficient Storage", NULL},
};

static const struct status_row *status_row(int status)
{
    static const struct status_row other = {0, "Unknown", "request refused"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(statuses); i++)
        if (statuses[i].status == status)
            return &statuses[i];
    return &other;
}

int obx_control_respond_head(struct obx_control_conn *c, int status, const char *extra,
                             int64_t length)
{
    char len_line[48] = "";
    if (length >= 0)
        snprintf(len_line, sizeof(len_line), "Content-Length: %lld\r\n", (long long)length);
    _cleanup_free_ char *head =
        obx_xasprintf("HTTP/1.1 %d %s\r\n%s%sConnection: close\r\n\r\n", status,
                      status_row(status)->text, extra ? extra : "", len_line);
    c->responded = true;
    return obx_control_send(c, head, strlen(head));
}

int obx_control_respond_json(struct obx_control_conn *c, int status, json_t *body,
                             const char *extra)
{
    _cleanup_json_ json_t *j = body;
    _cleanup_free_ char *text = j ? obx_json_dumps(j) : NULL;
    _cleanup_free_ char *headers =
        obx_xasprintf("%s%s", text ? "Content-Type: application/json\r\n" : "", extra ? extra : "");
    int r = obx_control_respond_head(c, status, headers, text ? (int64_t)strlen(text) : -1);
    return r < 0 || !text ? r : obx_control_send(c, text, strlen(text));
}

int obx_control_respond_error(struct obx_control_conn *c, int status, const char *code,
                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = obx_xvasprintf(fmt, ap);
    va_end(ap);
    return obx_control_respond_json(c, status, json_pack("{s:s, s:s}", "error", msg, "code", code),
                                    NULL);
}

const char *obx_control_query(const struct obx_control_conn *c, const char *name)
{
    for (size_t i = 0; i < c->n_query; i++)
        if (obx_streq(c->query[i][0], name))
            return c->query[i][1];
    return NULL;
}

/* ---- the request's head ---- */

static int hex(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

/* Percent-decodes s in place (plus: '+' is a space, as in a query); -EINVAL for a bad escape,
 * *ret_nul set when it decoded a NUL. */
static int pct_decode(char *s, bool plus, bool *ret_nul)
{
    char *out = s;
    for (const char *p = s; *p; p++) {
        if (*p == '%') {
            int hi = hex(p[1]), lo = hi < 0 ? -1 : hex(p[2]);
            if (lo < 0)
                return -EINVAL;
            *out = (char)(hi << 4 | lo);
            if (!*out)
                *ret_nul = true;
            out++;
            p += 2;
        } else {
            *out++ = plus && *p == '+' ? ' ' : *p;
        }
    }
    *out = '\0';
    return 0;
}

/* Reads until the head is whole; 0, or the status to answer (0 < r), or -1 to close quietly. */
static int head_read(struct obx_control_conn *c)
{
    uint64_t deadline = obx_now_ms() + HEAD_TIMEOUT_MS;
    for (;;) {
        for (size_t i = c->head_len; i + 1 < c->len; i++) {
            if (c->buf[i] == '\n' &&
                (c->buf[i + 1] == '\n' ||
                 (c->buf[i + 1] == '\r' && i + 2 < c->len && c->buf[i + 2] == '\n'))) {
                c->head_len = i + (c->buf[i + 1] == '\n' ? 2 : 3);
                return 0;
            }
        }
        c->head_len = c->len > 2 ? c->len - 2 : 0; /* where to look again */
        if (c->len == sizeof(c->buf))
            return 431;
        uint64_t now = obx_now_ms();
        if (now >= deadline)
            return c->len ? 408 : -1;
        ssize_t n = conn_recv(c, c->buf + c->len, sizeof(c->buf) - c->len, (int)(deadline - now));
        if (n == -ETIMEDOUT)
            return c->len ? 408 : -1;
        if (n < 0)
            return -1;
        c->len += (size_t)n;
    }
}

/* The request's target: the path's parts and the query, decoded. 0 or a status. */
static int target_parse(struct obx_control_conn *c, char *target)
{
    if (target[0] != '/')
        return 400;
    char *query = strchr(target, '?');
    if (query)
        *query++ = '\0';
    bool nul = false;
    for (char *seg = target + 1, *next; seg; seg = next) {
        next = strchr(seg, '/');
        if (next)
            *next++ = '\0';
        if (!*seg && !next) /* a trailing slash */
            break;
        if (c->n_segs == OBX_CONTROL_SEGS_MAX || pct_decode(seg, false, &nul) < 0 || nul)
            return 404;
        c->segs[c->n_segs++] = seg;
    }
    for (char *q = query, *next; q && *q; q = next) {
        next = strchr(q, '&');
        if (next)
            *next++ = '\0';
        if (!*q)
            continue;
        if (c->n_query == OBX_CONTROL_QUERY_MAX)
            return 400;
        char *eq = strchr(q, '=');
        if (eq)
            *eq++ = '\0';
        if (pct_decode(q, true, &nul) < 0 || (eq && pct_decode(eq, true, &c->query_nul) < 0))
            return 400;
        c->query[c->n_query][0] = q;
        c->query[c->n_query][1] = eq ? eq : "";
        c->n_query++;
    }
    return 0;
}

/* One header line; 0 or a status. */
static int header_take(struct obx_control_conn *c, char *line)
{
    if (*line == ' ' || *line == '\t') /* obsolete line folding */
        return 400;
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return 400;
    *colon = '\0';
    char *v = colon + 1;
    v += strspn(v, " \t");
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    if (strcasecmp(line, "content-length") == 0) {
        int64_t len;
        if (v[0] < '0' || v[0] > '9' || obx_parse_int64(v, 0, INT64_MAX, &len) < 0 ||
            (c->length >= 0 && c->length != len))
            return 400;
        c->length = len;
    } else if (strcasecmp(line, "transfer-encoding") == 0) {
        return 411;
    } else if (strcasecmp(line, "expect") == 0) {
        if (strcasecmp(v, "100-continue") != 0)
            return 417;
        c->expect_continue = true;
    }
    return 0;
}

/* Splits the head into the request line and headers; 0 or a status to answer. */
static int head_parse(struct obx_control_conn *c)
{
    char *end = c->buf + c->head_len;
    c->length = -1;
    if (memchr(c->buf, '\0', c->head_len))
        return 400;
    for (char *p = c->buf; p < end; p++)
        if (*p == '\n' || *p == '\r')
            *p = '\0';
    char *line = c->buf, *headers = line + strlen(line) + 1;
    /* METHOD SP TARGET SP HTTP/1.x */
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' '))
        return 400;
    *sp1 = *sp2 = '\0';
    const char *version = sp2 + 1;
    if (strncmp(version, "HTTP/1.", 7) != 0 || (version[7] != '0' && version[7] != '1') ||
        version[8])
        return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    c->method = line;
    int status = 0;
    for (char *p = headers, *next; !status && p < end; p = next) {
        next = p + strlen(p) + 1; /* before header_take() cuts the line at its colon */
        if (*p)
            status = header_take(c, p);
    }
    if (!status)
        status = target_parse(c, sp1 + 1);
    c->body_left = c->length > 0 ? (uint64_t)c->length : 0;
    c->body_off = c->head_len;
    return status;
}

/* ---- connections ---- */

static void conn_answer_status(struct obx_control_conn *c, int status)
{
    const char *why = status_row(status)->why;
    obx_control_respond_error(c, status,
                              status == 404   ? OBX_ERR_NOT_FOUND
                              : status == 408 ? OBX_ERR_TIMEOUT
                                              : OBX_ERR_BAD_REQUEST,
                              "%s", why ? why : "request refused");
}

/* A body the request did not use is read and dropped (for a while), so that a client still
 * sending it reads the answer instead of failing to send. One that waits for 100 Continue
 * sends nothing. */
static void conn_drain(struct obx_control_conn *c)
{
    if (c->expect_continue && !c->continue_sent)
        return;
    char scratch[16384];
    uint64_t deadline = obx_now_ms() + DRAIN_TIMEOUT_MS;
    c->body_off = c->len;
    while (c->body_left > 0 && obx_now_ms() < deadline) {
        ssize_t n =
            conn_recv(c, scratch, (size_t)OBX_MIN(c->body_left, sizeof(scratch)), DRAIN_TIMEOUT_MS);
        if (n <= 0)
            break;
        c->body_left -= (uint64_t)n;
    }
}

static void conn_serve(struct obx_control_conn *c)
{
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_control_peer_check(c->fd, &err) < 0) {
        obx_warn("control socket: %s; refused", err.message);
        obx_control_respond_error(c, 403, OBX_ERR_FORBIDDEN, "%s", err.message);
        return;
    }
    int status = head_read(c);
    if (status < 0)
        return;
    if (status == 0)
        status = head_parse(c);
    if (status > 0)
        conn_answer_status(c, status);
    else
        obx_control_route(c);
    if (c->body_left > 0)
        conn_drain(c);
}

static void conn_end(struct obx_control_conn *c)
{
    struct obx_worker_control *ctl = c->ctl;
    pthread_mutex_lock(&ctl->lock);
    for (struct obx_control_conn **pp = &ctl->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    ctl->n_conns--;
    pthread_cond_broadcast(&ctl->cond);
    pthread_mutex_unlock(&ctl->lock);
    obx_closep(&c->fd);
    obx_call_done(&c->call);
    free(c);
}

static void *conn_main(void *arg)
{
    struct obx_control_conn *c = arg;
    conn_serve(c);
    conn_end(c);
    return NULL;
}

/* A connection over the limit: a short answer, without waiting for the peer. */
static void conn_refuse(int fd)
{
    static const char body[] =
        "{\"error\":\"too many connections to this onlyboxes mcp; try again shortly\","
        "\"code\":\"unavailable\"}";
    char head[160];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     sizeof(body) - 1);
    (void)!send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)!send(fd, body, sizeof(body) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void conn_start(struct obx_worker_control *ctl, int fd)
{
    pthread_mutex_lock(&ctl->lock);
    bool room = !ctl->stopping && ctl->n_conns < MAX_CONNS;
    struct obx_control_conn *c = NULL;
    if (room) {
        c = obx_xcalloc(1, sizeof(*c));
        c->ctl = ctl;
        c->w = ctl->w;
        c->fd = fd;
        obx_call_init(&c->call);
        c->call.account = "local";
        c->next = ctl->conns;
        ctl->conns = c;
        ctl->n_conns++;
    }
    pthread_mutex_unlock(&ctl->lock);
    if (!room) {
        conn_refuse(fd);
        close(fd);
        return;
    }
    pthread_t thr;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thr, &attr, conn_main, c) != 0)
        conn_end(c);
    pthread_attr_destroy(&attr);
}

static void *accept_main(void *arg)
{
    struct obx_worker_control *ctl = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = ctl->listen_fd, .events = POLLIN},
                              {.fd = ctl->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                poll(NULL, 0, 100); /* let descriptors free up rather than spin */
            continue;
        }
        conn_start(ctl, fd);
    }
    return NULL;
}

/* ---- the server ---- */

/* Binds and listens on dir/mcp-PID.new, then renames it to mcp-PID.sock: a client never finds
 * a socket that is not listening yet. */
static int listen_socket(struct obx_worker_control *ctl, const char *dir, struct obx_error *err)
{
    char tmp[sizeof(ctl->path)];
    int n1 = snprintf(tmp, sizeof(tmp), "%s/mcp-%d.new", dir, (int)getpid());
    int n2 = snprintf(ctl->path, sizeof(ctl->path), "%s/mcp-%d.sock", dir, (int)getpid());
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(tmp) || (size_t)n2 >= sizeof(ctl->path))
        return obx_error_set(err, ENAMETOOLONG, OBX_ERR_INTERNAL,
                             "%s is too long a directory for a socket", dir);
    ctl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (ctl->listen_fd < 0)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "socket: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", tmp);
    (void)unlink(tmp);
    if (bind(ctl->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(tmp, 0600) < 0 ||
        listen(ctl->listen_fd, 16) < 0 || rename(tmp, ctl->path) < 0) {
        int e = errno;
        (void)unlink(tmp);
        return obx_error_set(err, e, OBX_ERR_INTERNAL, "cannot serve on %s: %s", ctl->path,
                             strerror(e));
    }
    return 0;
}

struct obx_worker_control *obx_worker_control_start(struct obx_worker *w, struct obx_error *err)
{
    if (__atomic_load_n(&signal_path_set, __ATOMIC_ACQUIRE)) {
        obx_error_set(err, EBUSY, OBX_ERR_INTERNAL, "this process serves a control socket already");
        return NULL;
    }
    char dir[sizeof(signal_path)];
    if (obx_control_dir_own(dir, sizeof(dir), err) < 0 || obx_control_dir_check(dir, true, err) < 0)
        return NULL;
    obx_control_dir_prune(dir);
    struct obx_worker_control *ctl = obx_xcalloc(1, sizeof(*ctl));
    ctl->w = w;
    ctl->wake[0] = ctl->wake[1] = -1;
    pthread_mutex_init(&ctl->lock, NULL);
    obx_cond_init_monotonic(&ctl->cond);
    if (listen_socket(ctl, dir, err) < 0)
        goto fail;
    memcpy(signal_path, ctl->path, sizeof(signal_path));
    __atomic_store_n(&signal_path_set, true, __ATOMIC_RELEASE);
    if (pipe2(ctl->wake, O_CLOEXEC) < 0 ||
        pthread_create(&ctl->accept_thr, NULL, accept_main, ctl) != 0) {
        obx_error_set(err, errno ? errno : EAGAIN, OBX_ERR_INTERNAL,
                      "cannot start the control socket's thread");
        (void)unlink(ctl->path);
        __atomic_store_n(&signal_path_set, false, __ATOMIC_RELEASE);
        goto fail;
    }
    return ctl;
fail:
    obx_closep(&ctl->listen_fd);
    obx_closep(&ctl->wake[0]);
    obx_closep(&ctl->wake[1]);
    pthread_mutex_destroy(&ctl->lock);
    pthread_cond_destroy(&ctl->cond);
    free(ctl);
    return NULL;
}

const char *obx_worker_control_path(const struct obx_worker_control *ctl)
{
    return ctl->path;
}

void obx_worker_control_stop(struct obx_worker_control *ctl)
{
    if (!ctl)
        return;
    (void)unlink(ctl->path);
    __atomic_store_n(&signal_path_set, false, __ATOMIC_RELEASE);
    (void)!write(ctl->wake[1], "x", 1);
    pthread_join(ctl->accept_thr, NULL);
    pthread_mutex_lock(&ctl->lock);
    ctl->stopping = true;
    for (struct obx_control_conn *c = ctl->conns; c; c = c->next) {
        obx_call_cancel(&c->call);
        shutdown(c->fd, SHUT_RDWR);
    }
    while (ctl->n_conns > 0)
        pthread_cond_wait(&ctl->cond, &ctl->lock);
    pthread_mutex_unlock(&ctl->lock);
    obx_closep(&ctl->listen_fd);
    obx_closep(&ctl->wake[0]);
    obx_closep(&ctl->wake[1]);
    pthread_mutex_destroy(&ctl->lock);
    pthread_cond_destroy(&ctl->cond);
    free(ctl);
}

void obx_worker_control_unlink(void)
{
    if (__atomic_load_n(&signal_path_set, __ATOMIC_ACQUIRE))
        (void)unlink(signal_path);
}
