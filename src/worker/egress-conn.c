/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One connection through the egress proxy, on its loop thread (egress.c):
 *
 *   HEAD     read the request head (CONNECT host:port, or a plain request for http://host/...)
 *   WAIT     the box is at its connection limit: wait briefly for one of its connections to end
 *   RESOLVE  the host is allowed: a resolver thread looks it up and drops forbidden addresses
 *   CONNECT  non-blocking connect to the checked addresses, in order
 *   RELAY    bytes both ways, each direction with a bounded buffer; half-closes are passed on
 *   ANSWER   a refusal (or an upstream failure) is written, then the client's end is drained
 *   LINGER   briefly, so the answer is read before the connection closes
 *
 * Every refusal is answered at once with its reason and logged with the box's label. A box may
 * have max_conns connections past HEAD at once (one more waits up to SLOT_WAIT_MS for a slot, since
 * a connection its program just closed takes a few round trips to end on both sides, and is then
 * answered 429; beyond EXTRA_CLIENTS more, a connection is refused unread) and relay max_bytes in
 * all (at the limit its connections are closed and later requests refused). A closed connection is
 * only unlinked here; the loop frees it after the batch of events it was closed in
 * (obx_egress_bury).
 */
#include "egress-internal.h"

#include <sys/epoll.h>

#include "common/clock.h"
#include "common/log.h"

#define RELAY_BUF (32u * 1024)
#define HEAD_TIMEOUT_MS 15000
#define RESOLVE_TIMEOUT_MS 10000
#define LINGER_MS 2000
#define SLOT_WAIT_MS 2000
#define ACCEPT_BATCH 32
#define ACCEPT_PAUSE_MS 500 /* after EMFILE: the listener stays readable, so stop polling it */
#define EXTRA_CLIENTS 16    /* connections still sending their request, on top of max_conns */
#define CONNS_VAR "ONLYBOXES_EGRESS_MAX_CONNECTIONS"
#define BYTES_VAR "ONLYBOXES_EGRESS_MAX_MB"

enum conn_state {
    S_HEAD,
    S_WAIT,
    S_RESOLVE,
    S_CONNECT,
    S_RELAY,
    S_ANSWER,
    S_LINGER,
};

struct pipebuf {
    uint8_t *data; /* RELAY_BUF bytes */
    size_t off, len;
};

struct obx_egress_conn {
    struct obx_egress_box *box;
    enum conn_state state;
    int cfd, ufd;
    struct obx_egress_tag ctag, utag;
    uint32_t cev, uev; /* what epoll watches; 0: not in the set */
    char *head;
    size_t head_len;
    struct obx_egress_request req;
    struct obx_egress_job *job;
    struct sockaddr_storage addrs[OBX_EGRESS_MAX_ADDRS];
    size_t n_addrs, next_addr;
    int last_err;
    struct pipebuf up, down; /* client -> destination, destination -> client */
    bool c_eof, u_eof, c_wshut, u_wshut;
    bool active; /* counted in box->active: past HEAD, not refused */
    bool dead;
    uint64_t deadline; /* monotonic ms; 0: none */
    char *answer;
    size_t answer_len, answer_off;
    struct obx_egress_conn *prev, *next;
};

static void count(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static void conn_kill(struct obx_egress *eg, struct obx_egress_conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    if (c->job)
        c->job->conn = NULL; /* it comes back from the resolver and is freed then */
    c->job = NULL;
    struct obx_egress_box *b = c->box;
    if (c->active)
        b->active--;
    c->active = false;
    b->clients--;
    if (c->prev)
        c->prev->next = c->next;
    else
        b->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    obx_closep(&c->cfd); /* closing takes an fd out of the epoll set */
    obx_closep(&c->ufd);
    c->next = eg->graveyard;
    eg->graveyard = c;
}

static void conn_free(struct obx_egress_conn *c)
{
    free(c->head);
    free(c->req.forward);
    free(c->answer);
    free(c->up.data);
    free(c->down.data);
    free(c);
}

/* Answers the request with status and why, logs it, and closes once the answer is out. */
static void conn_answer(struct obx_egress *eg, struct obx_egress_conn *c, int status,
                        const char *why)
{
    struct obx_egress_box *b = c->box;
    bool failure = status == 502 || status == 504;
    count(failure ? &b->failed : &b->refused, 1);
    if (c->req.host[0])
        obx_info("egress: %s: %s %s %s:%u: %d %s", b->label, failure ? "failed" : "refused",
                 c->req.method, c->req.host, (unsigned)c->req.port, status, why);
    else
        obx_info("egress: %s: refused a request: %d %s", b->label, status, why);
    if (c->job)
        c->job->conn = NULL;
    c->job = NULL;
    if (c->active)
        b->active--;
    c->active = false;
    obx_closep(&c->ufd);
    c->uev = 0;
    free(c->answer);
    c->answer = obx_egress_answer(status, why, &c->answer_len);
    c->answer_off = 0;
    c->state = S_ANSWER;
    c->deadline = obx_now_ms() + LINGER_MS;
    obx_egress_watch(eg, c->cfd, &c->ctag, &c->cev, EPOLLOUT);
}

void obx_egress_box_kill_conns(struct obx_egress *eg, struct obx_egress_box *b)
{
    while (b->conns)
        conn_kill(eg, b->conns);
}

/* Counts relayed bytes; false when that used up the box's allowance (its connections are gone). */
static bool relayed(struct obx_egress *eg, struct obx_egress_conn *c, size_t n)
{
    struct obx_egress_box *b = c->box;
    uint64_t total = __atomic_add_fetch(&b->bytes, n, __ATOMIC_RELAXED);
    if (total <= eg->max_bytes)
        return true;
    if (!b->over_bytes) {
        b->over_bytes = true;
        obx_warn("egress: %s: used its %llu MiB of egress traffic (" BYTES_VAR
                 "); its connections are closed and new ones refused",
                 b->label, (unsigned long long)(eg->max_bytes >> 20));
    }
    obx_egress_box_kill_conns(eg, b);
    return false;
}

/* ---- connecting ---- */

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void connected(struct obx_egress *eg, struct obx_egress_conn *c)
{
    struct obx_egress_box *b = c->box;
    count(&b->allowed, 1);
    if (obx_log_threshold <= OBX_LOG_DEBUG) {
        char a[64];
        obx_egress_addr_text((struct sockaddr *)&c->addrs[c->next_addr - 1], a, sizeof(a));
        obx_debug("egress: %s: %s %s:%u via %s", b->label, c->req.method, c->req.host,
                  (unsigned)c->req.port, a);
    }
    c->up.data = obx_xmalloc(RELAY_BUF);
    c->down.data = obx_xmalloc(RELAY_BUF);
    const char *pending = c->head + c->req.head_len;
    size_t pending_len = c->head_len - c->req.head_len;
    if (c->req.connect) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        memcpy(c->down.data, ok, sizeof(ok) - 1);
        c->down.len = sizeof(ok) - 1;
    } else {
        memcpy(c->up.data, c->req.forward, c->req.forward_len);
        c->up.len = c->req.forward_len;
    }
    /* Bytes that came after the head (a TLS hello, a body): both fit, the head is bounded. */
    memcpy(c->up.data + c->up.len, pending, pending_len);
    c->up.len += pending_len;
    free(c->head);
    c->head = NULL;
    c->state = S_RELAY;
    c->deadline = 0;
}

/* Tries the next checked address; answers 502 when none is left. */
static void connect_next(struct obx_egress *eg, struct obx_egress_conn *c)
{
    while (c->next_addr < c->n_addrs) {
        struct sockaddr_storage *sa = &c->addrs[c->next_addr++];
        int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c->last_err = errno;
            continue;
        }
        if (connect(fd, (struct sockaddr *)sa, addr_len(sa)) == 0 || errno == EINPROGRESS) {
            c->ufd = fd;
            c->state = S_CONNECT;
            c->deadline = obx_now_ms() + eg->connect_timeout_ms;
            return;
        }
        c->last_err = errno;
        close(fd);
    }
    char a[64] = "?", why[OBX_EGRESS_WHY_MAX];
    if (c->n_addrs)
        obx_egress_addr_text((struct sockaddr *)&c->addrs[c->n_addrs - 1], a, sizeof(a));
    snprintf(why, sizeof(why), "cannot connect to %s port %u (%s): %s", c->req.host,
             (unsigned)c->req.port, a, strerror(c->last_err ? c->last_err : EHOSTUNREACH));
    conn_answer(eg, c, 502, why);
}

static void upstream_connecting(struct obx_egress *eg, struct obx_egress_conn *c)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        e = errno;
    if (e == 0) {
        connected(eg, c);
        return;
    }
    c->last_err = e;
    obx_closep(&c->ufd);
    c->uev = 0;
    connect_next(eg, c);
}

/* ---- the request ---- */

static void decide(struct obx_egress *eg, struct obx_egress_conn *c)
{
    struct obx_egress_box *b = c->box;
    char why[OBX_EGRESS_WHY_MAX];
    if (b->over_bytes) {
        snprintf(why, sizeof(why),
                 "egress: this box has used its %llu MiB of egress traffic (" BYTES_VAR ")",
                 (unsigned long long)(eg->max_bytes >> 20));
        conn_answer(eg, c, 403, why);
        return;
    }
    if (c->req.is_ip) {
        snprintf(why, sizeof(why),
                 "egress to %s is not allowed: an IP address; the allow-list names hosts (%s)",
                 c->req.host, eg->policy->var);
        conn_answer(eg, c, 403, why);
        return;
    }
    if (!obx_egress_policy_allows(eg->policy, c->req.host, c->req.port, why, sizeof(why))) {
        conn_answer(eg, c, 403, why);
        return;
    }
    if (b->active >= eg->max_conns) {
        if (c->state == S_HEAD) {
            c->state = S_WAIT; /* obx_egress_timers admits it when a slot frees */
            c->deadline = obx_now_ms() + SLOT_WAIT_MS;
            return;
        }
        snprintf(why, sizeof(why),
                 "egress: this box has %u connections open, its limit (" CONNS_VAR ")", b->active);
        conn_answer(eg, c, 429, why);
        return;
    }
    struct obx_egress_job *job = obx_xcalloc(1, sizeof(*job));
    snprintf(job->host, sizeof(job->host), "%s", c->req.host);
    job->port = c->req.port;
    job->conn = c;
    if (obx_egress_resolver_submit(eg->resolver, job) < 0) {
        free(job);
        conn_answer(eg, c, 503, "egress: too many name lookups are waiting; try again");
        return;
    }
    c->job = job;
    c->active = true;
    b->active++;
    c->state = S_RESOLVE;
    c->deadline = obx_now_ms() + RESOLVE_TIMEOUT_MS;
}

static void client_head(struct obx_egress *eg, struct obx_egress_conn *c)
{
    ssize_t n = read(c->cfd, c->head + c->head_len, OBX_EGRESS_HEAD_MAX - c->head_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_kill(eg, c);
        return;
    }
    c->head_len += (size_t)n;
    char why[OBX_EGRESS_WHY_MAX];
    int st = obx_egress_request_parse(c->head, c->head_len, &c->req, why, sizeof(why));
    if (st == -EAGAIN)
        return;
    if (st != 0)
        conn_answer(eg, c, st, why);
    else
        decide(eg, c);
}

void obx_egress_take_jobs(struct obx_egress *eg)
{
    struct obx_egress_job *j = obx_egress_resolver_take_done(eg->resolver);
    while (j) {
        struct obx_egress_job *next = j->next;
        struct obx_egress_conn *c = j->conn;
        if (c && !c->dead && c->job == j) {
            c->job = NULL;
            if (j->status) {
                conn_answer(eg, c, j->status, j->why);
            } else {
                memcpy(c->addrs, j->addrs, j->n_addrs * sizeof(j->addrs[0]));
                c->n_addrs = j->n_addrs;
                c->next_addr = 0;
                connect_next(eg, c);
                if (!c->dead && c->state == S_CONNECT && c->ufd >= 0)
                    obx_egress_watch(eg, c->ufd, &c->utag, &c->uev, EPOLLOUT);
            }
        }
        free(j);
        j = next;
    }
}

/* ---- relaying ---- */

/* Reads from fd into p; 1 data, 0 EOF, -1 error (EAGAIN is 1 with nothing). */
static int fill(int fd, struct pipebuf *p, size_t *got)
{
    *got = 0;
    if (p->off > 0 && p->off == p->len)
        p->off = p->len = 0;
    if (p->off > 0 && p->len == RELAY_BUF) {
        memmove(p->data, p->data + p->off, p->len - p->off);
        p->len -= p->off;
        p->off = 0;
    }
    if (p->len == RELAY_BUF)
        return 1;
    ssize_t n = read(fd, p->data + p->len, RELAY_BUF - p->len);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 1 : -1;
    if (n == 0)
        return 0;
    p->len += (size_t)n;
    *got = (size_t)n;
    return 1;
}

/* Writes what p holds to fd; 0 or -1 on an error other than EAGAIN. */
static int drain(int fd, struct pipebuf *p)
{
    if (p->off == p->len)
        return 0;
    ssize_t n = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    p->off += (size_t)n;
    if (p->off == p->len)
        p->off = p->len = 0; /* all room free again, for what epoll watches */
    return 0;
}

static void relay(struct obx_egress *eg, struct obx_egress_conn *c, bool client, uint32_t ev)
{
    int fd = client ? c->cfd : c->ufd;
    struct pipebuf *in = client ? &c->up : &c->down;  /* what we read from fd */
    struct pipebuf *out = client ? &c->down : &c->up; /* what we write to fd */
    bool *eof = client ? &c->c_eof : &c->u_eof;
    uint32_t watching = client ? c->cev : c->uev;
    if (!*eof && (watching & EPOLLIN) && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        size_t got;
        int r = fill(fd, in, &got);
        if (r < 0) {
            conn_kill(eg, c);
            return;
        }
        if (r == 0)
            *eof = true;
        if (got && !relayed(eg, c, got))
            return;
    }
    if ((watching & EPOLLOUT) && (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && drain(fd, out) < 0)
        conn_kill(eg, c);
}

/* Half-closes what has ended, closes what is finished and sets what epoll watches. */
static void relay_update(struct obx_egress *eg, struct obx_egress_conn *c)
{
    bool up_empty = c->up.off == c->up.len, down_empty = c->down.off == c->down.len;
    if (c->c_eof && up_empty && !c->u_wshut) {
        (void)shutdown(c->ufd, SHUT_WR);
        c->u_wshut = true;
    }
    if (c->u_eof && down_empty && !c->c_wshut) {
        (void)shutdown(c->cfd, SHUT_WR);
        c->c_wshut = true;
        /* The destination is done: the client gets a moment to finish, not forever. */
        c->deadline = obx_now_ms() + LINGER_MS;
    }
    if (c->c_eof && c->u_eof && up_empty && down_empty) {
        conn_kill(eg, c);
        return;
    }
    uint32_t cw = (!c->c_eof && c->up.len < RELAY_BUF ? EPOLLIN : 0) | (down_empty ? 0 : EPOLLOUT);
    uint32_t uw = (!c->u_eof && c->down.len < RELAY_BUF ? EPOLLIN : 0) | (up_empty ? 0 : EPOLLOUT);
    if (c->up.len == RELAY_BUF && c->up.off > 0)
        cw |= c->c_eof ? 0 : EPOLLIN; /* fill() compacts */
    if (c->down.len == RELAY_BUF && c->down.off > 0)
        uw |= c->u_eof ? 0 : EPOLLIN;
    obx_egress_watch(eg, c->cfd, &c->ctag, &c->cev, cw);
    obx_egress_watch(eg, c->ufd, &c->utag, &c->uev, uw);
}

static void client_event(struct obx_egress *eg, struct obx_egress_conn *c, uint32_t ev)
{
    switch (c->state) {
    case S_HEAD:
        client_head(eg, c);
        break;
    case S_WAIT:
    case S_RESOLVE:
    case S_CONNECT:
        if (ev & (EPOLLHUP | EPOLLERR))
            conn_kill(eg, c); /* the client gave up */
        break;
    case S_RELAY:
        relay(eg, c, true, ev);
        break;
    case S_ANSWER: {
        ssize_t n =
            send(c->cfd, c->answer + c->answer_off, c->answer_len - c->answer_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_kill(eg, c);
        } else if (n > 0 && (c->answer_off += (size_t)n) == c->answer_len) {
            (void)shutdown(c->cfd, SHUT_WR);
            c->state = S_LINGER;
            obx_egress_watch(eg, c->cfd, &c->ctag, &c->cev, EPOLLIN);
        }
        break;
    }
    case S_LINGER: {
        char sink[4096];
        ssize_t n = read(c->cfd, sink, sizeof(sink));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_kill(eg, c);
        break;
    }
    }
    if (!c->dead && c->state == S_RELAY)
        relay_update(eg, c);
    else if (!c->dead && (c->state == S_WAIT || c->state == S_RESOLVE || c->state == S_CONNECT))
        obx_egress_watch(eg, c->cfd, &c->ctag, &c->cev, 0); /* HUP and ERR still come */
    if (!c->dead && c->state == S_CONNECT)
        obx_egress_watch(eg, c->ufd, &c->utag, &c->uev, EPOLLOUT);
}

static void upstream_event(struct obx_egress *eg, struct obx_egress_conn *c, uint32_t ev)
{
    if (c->state == S_CONNECT)
        upstream_connecting(eg, c);
    else if (c->state == S_RELAY)
        relay(eg, c, false, ev);
    if (!c->dead && c->state == S_RELAY)
        relay_update(eg, c);
}

/* ---- accepting ---- */

void obx_egress_accept(struct obx_egress *eg, struct obx_egress_box *b)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(b->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                obx_warn("egress: %s: cannot accept: %s", b->label, strerror(errno));
                b->accept_paused_until = obx_now_ms() + ACCEPT_PAUSE_MS;
                obx_egress_watch(eg, b->listen_fd, &b->tag, &b->lev, 0);
            }
            return;
        }
        if (b->clients >= eg->max_conns + EXTRA_CLIENTS) {
            /* Not even the request is read: say why in one write and go. */
            char why[OBX_EGRESS_WHY_MAX];
            snprintf(why, sizeof(why),
                     "egress: this box has %u connections open, its limit (" CONNS_VAR ")",
                     b->clients);
            size_t len;
            _cleanup_free_ char *a = obx_egress_answer(429, why, &len);
            (void)!send(fd, a, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            count(&b->refused, 1);
            obx_info("egress: %s: refused a connection: 429 %s", b->label, why);
            continue;
        }
        struct obx_egress_conn *c = obx_xcalloc(1, sizeof(*c));
        c->box = b;
        c->cfd = fd;
        c->ufd = -1;
        c->ctag = (struct obx_egress_tag){OBX_EGRESS_TAG_CLIENT, c};
        c->utag = (struct obx_egress_tag){OBX_EGRESS_TAG_UPSTREAM, c};
        c->head = obx_xmalloc(OBX_EGRESS_HEAD_MAX);
        c->state = S_HEAD;
        c->deadline = obx_now_ms() + HEAD_TIMEOUT_MS;
        c->next = b->conns;
        if (b->conns)
            b->conns->prev = c;
        b->conns = c;
        b->clients++;
        obx_egress_watch(eg, fd, &c->ctag, &c->cev, EPOLLIN);
    }
}

/* ---- timers ---- */

static void expire(struct obx_egress *eg, struct obx_egress_conn *c)
{
    char why[OBX_EGRESS_WHY_MAX];
    switch (c->state) {
    case S_HEAD:
        conn_answer(eg, c, 408, "no complete request within 15 s");
        break;
    case S_WAIT:
        decide(eg, c); /* still at the limit: 429 */
        break;
    case S_RESOLVE:
        snprintf(why, sizeof(why), "resolving %s took longer than %d s", c->req.host,
                 RESOLVE_TIMEOUT_MS / 1000);
        conn_answer(eg, c, 504, why);
        break;
    case S_CONNECT:
        snprintf(why, sizeof(why), "no connection to %s port %u within %u s", c->req.host,
                 (unsigned)c->req.port, eg->connect_timeout_ms / 1000);
        conn_answer(eg, c, 504, why);
        break;
    default:
        conn_kill(eg, c);
        break;
    }
}

uint64_t obx_egress_timers(struct obx_egress *eg)
{
    uint64_t now = obx_now_ms(), next = 0;
    for (struct obx_egress_box *b = eg->boxes; b; b = b->next) {
        if (b->accept_paused_until && now >= b->accept_paused_until) {
            b->accept_paused_until = 0;
            obx_egress_watch(eg, b->listen_fd, &b->tag, &b->lev, EPOLLIN);
        }
        if (b->accept_paused_until && (!next || b->accept_paused_until < next))
            next = b->accept_paused_until;
        for (struct obx_egress_conn *c = b->conns, *cn; c; c = cn) {
            cn = c->next;
            if (c->state == S_WAIT && b->active < eg->max_conns)
                decide(eg, c);
            else if (c->deadline && now >= c->deadline)
                expire(eg, c);
            if (!c->dead && c->deadline && (!next || c->deadline < next))
                next = c->deadline;
        }
    }
    return next;
}

void obx_egress_conn_event(struct obx_egress *eg, struct obx_egress_tag *tag, uint32_t ev)
{
    struct obx_egress_conn *c = tag->obj;
    if (c->dead)
        return;
    if (tag->kind == OBX_EGRESS_TAG_CLIENT)
        client_event(eg, c, ev);
    else
        upstream_event(eg, c, ev);
}

void obx_egress_bury(struct obx_egress *eg)
{
    while (eg->graveyard) {
        struct obx_egress_conn *c = eg->graveyard;
        eg->graveyard = c->next;
        conn_free(c);
    }
}
