/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --egress-proxy PATH, for a box with network "allowlist": the box has only its own loopback, and
 * the worker's egress proxy is the unix socket bound at PATH. Programs in the box speak HTTP proxy
 * over TCP (the agent sets HTTP_PROXY=http://127.0.0.1:OBX_BOX_EGRESS_PORT and the like for every
 * command), so a child of the agent listens on that port and joins each connection to a new
 * connection to PATH, byte for byte: what may pass is the proxy's decision, not the relay's.
 *
 * The relay is a process of its own, forked by the agent, so that the agent's loop stays as it
 * is. It runs as the box's user like everything else in the box, so the box's code can kill it;
 * the agent then starts it again, up to RELAY_STARTS times in all. One poll() loop; at most
 * RELAY_MAX_PAIRS connections, each with a bounded buffer per direction.
 */
#include "agent-internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/runtime.h"

#define RELAY_MAX_PAIRS 256
#define RELAY_BUF (16u * 1024)
#define RELAY_STARTS 20
#define RELAY_LINGER_MS 5000 /* the proxy is done: the client gets this long to close */

struct half {
    uint8_t *data;
    size_t off, len;
};

struct pair {
    int t, u; /* the client's TCP connection, ours to the proxy */
    struct half t2u, u2t;
    bool t_eof, u_eof, t_wshut, u_wshut;
    uint64_t deadline; /* 0: none */
};

static void pair_close(struct pair *p)
{
    if (p->t >= 0)
        close(p->t);
    if (p->u >= 0)
        close(p->u);
    free(p->t2u.data);
    free(p->u2t.data);
    memset(p, 0, sizeof(*p));
    p->t = p->u = -1;
}

/* A new connection to the proxy's socket, or -1 (errno set). */
static int proxy_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void accept_one(int lfd, const char *path, struct pair *pairs)
{
    int t = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (t < 0)
        return;
    struct pair *p = NULL;
    for (size_t i = 0; i < RELAY_MAX_PAIRS && !p; i++)
        if (pairs[i].t < 0)
            p = &pairs[i];
    int u = p ? proxy_connect(path) : -1;
    if (u < 0) {
        char msg[256];
        int n = snprintf(msg, sizeof(msg),
                         "HTTP/1.1 502 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                         p ? "the box's egress proxy does not answer"
                           : "too many connections to the box's egress proxy");
        (void)!send(t, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(t);
        return;
    }
    p->t = t;
    p->u = u;
    p->t2u.data = obx_xmalloc(RELAY_BUF);
    p->u2t.data = obx_xmalloc(RELAY_BUF);
}

/* Moves bytes from fd into h; false on an error. */
static bool half_fill(int fd, struct half *h, bool *eof)
{
    if (h->off == h->len)
        h->off = h->len = 0;
    if (h->len == RELAY_BUF)
        return true;
    ssize_t n = read(fd, h->data + h->len, RELAY_BUF - h->len);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    if (n == 0)
        *eof = true;
    h->len += n > 0 ? (size_t)n : 0;
    return true;
}

static bool half_drain(int fd, struct half *h)
{
    if (h->off == h->len)
        return true;
    ssize_t n = send(fd, h->data + h->off, h->len - h->off, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    h->off += (size_t)n;
    if (h->off == h->len)
        h->off = h->len = 0; /* all room free again, for the reader's poll */
    return true;
}

/* After poll: moves what can move, passes half-closes on, and closes what is finished. */
static void pair_step(struct pair *p, short tev, short uev)
{
    bool ok = true;
    if (tev & (POLLIN | POLLHUP | POLLERR))
        ok = ok && half_fill(p->t, &p->t2u, &p->t_eof);
    if (uev & (POLLIN | POLLHUP | POLLERR))
        ok = ok && half_fill(p->u, &p->u2t, &p->u_eof);
    if (uev & (POLLOUT | POLLERR))
        ok = ok && half_drain(p->u, &p->t2u);
    if (tev & (POLLOUT | POLLERR))
        ok = ok && half_drain(p->t, &p->u2t);
    if (!ok) {
        pair_close(p);
        return;
    }
    bool t2u_empty = p->t2u.off == p->t2u.len, u2t_empty = p->u2t.off == p->u2t.len;
    if (p->t_eof && t2u_empty && !p->u_wshut) {
        (void)shutdown(p->u, SHUT_WR);
        p->u_wshut = true;
    }
    if (p->u_eof && u2t_empty && !p->t_wshut) {
        (void)shutdown(p->t, SHUT_WR);
        p->t_wshut = true;
        p->deadline = agent_now_ms() + RELAY_LINGER_MS;
    }
    if ((p->t_eof && p->u_eof && t2u_empty && u2t_empty) ||
        (p->deadline && agent_now_ms() >= p->deadline))
        pair_close(p);
}

static short want_t(const struct pair *p)
{
    return (short)((!p->t_eof && p->t2u.len < RELAY_BUF ? POLLIN : 0) |
                   (p->u2t.off < p->u2t.len ? POLLOUT : 0));
}

static short want_u(const struct pair *p)
{
    return (short)((!p->u_eof && p->u2t.len < RELAY_BUF ? POLLIN : 0) |
                   (p->t2u.off < p->t2u.len ? POLLOUT : 0));
}

static int relay_listen(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(OBX_BOX_EGRESS_PORT)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void relay_main(int lfd, const char *path) __attribute__((noreturn));

static void relay_main(int lfd, const char *path)
{
    static struct pair pairs[RELAY_MAX_PAIRS];
    static struct pollfd pfd[1 + 2 * RELAY_MAX_PAIRS];
    for (size_t i = 0; i < RELAY_MAX_PAIRS; i++)
        pairs[i].t = pairs[i].u = -1;
    for (;;) {
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        uint64_t next = 0;
        for (size_t i = 0; i < RELAY_MAX_PAIRS; i++) {
            struct pair *p = &pairs[i];
            pfd[1 + 2 * i] = (struct pollfd){.fd = p->t, .events = p->t >= 0 ? want_t(p) : 0};
            pfd[2 + 2 * i] = (struct pollfd){.fd = p->u, .events = p->u >= 0 ? want_u(p) : 0};
            if (p->t >= 0 && p->deadline && (!next || p->deadline < next))
                next = p->deadline;
        }
        n = 1 + 2 * RELAY_MAX_PAIRS;
        uint64_t now = agent_now_ms();
        int timeout = next ? (int)(next > now ? OBX_MIN(next - now, 60000u) : 0) : -1;
        if (poll(pfd, n, timeout) < 0 && errno != EINTR)
            _exit(1);
        if (pfd[0].revents & POLLIN)
            accept_one(lfd, path, pairs);
        for (size_t i = 0; i < RELAY_MAX_PAIRS; i++)
            if (pairs[i].t >= 0 && pfd[1 + 2 * i].fd == pairs[i].t)
                pair_step(&pairs[i], pfd[1 + 2 * i].revents, pfd[2 + 2 * i].revents);
    }
}

/* The port is bound before the fork: once the agent goes on (and runs a command), connections
 * to it queue in the backlog even if the relay has not reached its loop yet. */
static void relay_start(struct agent *a)
{
    int lfd = relay_listen();
    if (lfd < 0) {
        agent_log("egress relay: cannot listen on 127.0.0.1:%d: %s", OBX_BOX_EGRESS_PORT,
                  strerror(errno));
        return;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        close(lfd);
    if (pid < 0) {
        agent_log("egress relay: fork: %s", strerror(errno));
        return;
    }
    if (pid > 0) {
        a->relay_pid = pid;
        a->relay_starts++;
        return;
    }
    /* The child: nothing of the agent's (its stream to the worker least of all) but the port,
     * default signal handling, and gone with the agent. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
    }
    if (lfd != 3 && (dup2(lfd, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0))
        _exit(1);
    agent_proc_close_from(4);
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    (void)prctl(PR_SET_NAME, "egress-relay"); /* what ps and pgrep show for it */
    if (getppid() != parent)
        _exit(0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(sigs); i++)
        signal(sigs[i], SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    relay_main(3, a->cfg.egress_socket);
}

void agent_relay_init(struct agent *a)
{
    if (a->cfg.egress_socket)
        relay_start(a);
}

bool agent_relay_reaped(struct agent *a, pid_t pid, int status)
{
    if (!a->relay_pid || pid != a->relay_pid)
        return false;
    a->relay_pid = 0;
    if (a->quit)
        return true;
    if (a->relay_starts >= RELAY_STARTS) {
        agent_log("egress relay ended (status 0x%x) for the %uth time; not starting it again",
                  (unsigned)status, a->relay_starts);
        return true;
    }
    relay_start(a);
    return true;
}
