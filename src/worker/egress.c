/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress proxy's event loop: one thread and one epoll set for every box. Each box has a
 * listening unix socket, whose connections egress-conn.c carries through; this file owns the
 * loop, the boxes and the proxy's life. A box's counters (allowed, refused, failed, bytes) are
 * atomics that any thread may read, and are logged with its label when it closes.
 *
 * Threads: the loop owns the boxes' connections. Other threads open and close boxes through a
 * command list (a mutex and an eventfd); resolver threads hand back finished lookups the same way
 * (egress-resolve.c). Commands and lookups are taken after a batch of events, and dead
 * connections are freed after it too, so no event of the batch can point at freed memory.
 *
 * Lifetimes: the proxy and each box are reference-counted. A box is held by its opener (until
 * obx_egress_box_close) and by the loop (until it shut the box down); the proxy by its creator
 * and by every box, so that a box closed after obx_egress_free() still finds its lock.
 */
#include "egress-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"

#define MAX_EVENTS 64

static void eg_unref(struct obx_egress *eg)
{
    if (__atomic_sub_fetch(&eg->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    pthread_mutex_destroy(&eg->lock);
    obx_closep(&eg->ep);
    obx_closep(&eg->wake);
    free(eg->sock_dir);
    free(eg);
}

static void box_unref(struct obx_egress_box *b)
{
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    struct obx_egress *eg = b->eg;
    free(b);
    eg_unref(eg);
}

/* ---- boxes and commands ---- */

void obx_egress_watch(struct obx_egress *eg, int fd, struct obx_egress_tag *tag, uint32_t *cur,
                      uint32_t want)
{
    if (fd < 0 || *cur == want)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = tag};
    int op = !*cur ? EPOLL_CTL_ADD : want ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    if (epoll_ctl(eg->ep, op, fd, &ev) < 0)
        obx_warn("egress: epoll_ctl: %s", strerror(errno));
    *cur = want;
}

static void box_log_counts(const struct obx_egress_box *b)
{
    struct obx_egress_stats s;
    obx_egress_box_stats(b, &s);
    enum obx_log_level level = s.allowed || s.refused || s.failed ? OBX_LOG_INFO : OBX_LOG_DEBUG;
    obx_log(level,
            "egress: %s: %llu connection(s) allowed, %llu refused, %llu failed, %llu bytes "
            "relayed",
            b->label, (unsigned long long)s.allowed, (unsigned long long)s.refused,
            (unsigned long long)s.failed, (unsigned long long)s.bytes);
}

/* The loop lets go of b: its socket and connections are closed and the loop's reference
 * dropped. Once only; the opener's reference keeps b itself alive meanwhile. */
static void box_shutdown(struct obx_egress *eg, struct obx_egress_box *b)
{
    if (!b->loop_ref)
        return;
    b->loop_ref = false;
    if (b->registered) {
        obx_egress_box_kill_conns(eg, b);
        for (struct obx_egress_box **pp = &eg->boxes; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                break;
            }
        b->registered = false;
        box_log_counts(b);
    }
    obx_closep(&b->listen_fd); /* out of the epoll set with it */
    box_unref(b);
}

/* Runs the queued commands; returns true when the proxy is stopping. */
static bool take_commands(struct obx_egress *eg)
{
    pthread_mutex_lock(&eg->lock);
    struct obx_egress_cmd *c = eg->cmds;
    eg->cmds = eg->cmds_tail = NULL;
    bool stopping = eg->stopping;
    pthread_mutex_unlock(&eg->lock);
    while (c) {
        struct obx_egress_cmd *next = c->next;
        struct obx_egress_box *b = c->box;
        if (c->close) {
            box_shutdown(eg, b); /* drops the loop's reference */
            box_unref(b);        /* and the opener's, which the command carried */
        } else {
            b->registered = true;
            b->next = eg->boxes;
            eg->boxes = b;
            obx_egress_watch(eg, b->listen_fd, &b->tag, &b->lev, EPOLLIN);
        }
        free(c);
        c = next;
    }
    return stopping;
}

static void *loop_main(void *arg)
{
    struct obx_egress *eg = arg;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t next = 0;
    for (;;) {
        int timeout = -1;
        if (next) {
            uint64_t now = obx_now_ms();
            timeout = next > now ? (int)OBX_MIN(next - now, 60000u) : 0;
        }
        int n = epoll_wait(eg->ep, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            obx_err("egress: epoll_wait: %s; the proxy stops", strerror(errno));
            break;
        }
        bool woken = false;
        for (int i = 0; i < n; i++) {
            struct obx_egress_tag *t = evs[i].data.ptr;
            uint32_t ev = evs[i].events;
            if (t->kind == OBX_EGRESS_TAG_WAKE) {
                uint64_t v;
                (void)!read(eg->wake, &v, sizeof(v));
                woken = true;
            } else if (t->kind == OBX_EGRESS_TAG_LISTEN) {
                struct obx_egress_box *b = t->obj;
                if (b->registered)
                    obx_egress_accept(eg, b);
            } else {
                obx_egress_conn_event(eg, t, ev);
            }
        }
        bool stopping = false;
        if (woken) {
            stopping = take_commands(eg);
            obx_egress_take_jobs(eg);
        }
        next = obx_egress_timers(eg);
        obx_egress_bury(eg);
        if (stopping)
            break;
    }
    while (eg->boxes)
        box_shutdown(eg, eg->boxes);
    obx_egress_bury(eg);
    /* From now on box handles close without the loop; what is still queued is done here. */
    pthread_mutex_lock(&eg->lock);
    eg->stopped = true;
    struct obx_egress_cmd *c = eg->cmds;
    eg->cmds = eg->cmds_tail = NULL;
    pthread_mutex_unlock(&eg->lock);
    while (c) {
        struct obx_egress_cmd *after = c->next;
        box_shutdown(eg, c->box); /* an add never registered; a close of one shut down above */
        if (c->close)
            box_unref(c->box);
        free(c);
        c = after;
    }
    return NULL;
}

/* Queues a command; false when the loop is gone (the caller then does it itself). */
static bool post(struct obx_egress *eg, bool close, struct obx_egress_box *b)
{
    struct obx_egress_cmd *c = obx_xcalloc(1, sizeof(*c));
    c->close = close;
    c->box = b;
    pthread_mutex_lock(&eg->lock);
    bool ok = !eg->stopped;
    if (ok) {
        if (eg->cmds_tail)
            eg->cmds_tail->next = c;
        else
            eg->cmds = c;
        eg->cmds_tail = c;
    }
    pthread_mutex_unlock(&eg->lock);
    if (!ok) {
        free(c);
        return false;
    }
    uint64_t one = 1;
    (void)!write(eg->wake, &one, sizeof(one));
    return true;
}

/* ---- the API ---- */

const char *obx_egress_box_path(const struct obx_egress_box *eb)
{
    return eb->path;
}

void obx_egress_box_stats(const struct obx_egress_box *eb, struct obx_egress_stats *ret)
{
    ret->allowed = __atomic_load_n(&eb->allowed, __ATOMIC_RELAXED);
    ret->refused = __atomic_load_n(&eb->refused, __ATOMIC_RELAXED);
    ret->failed = __atomic_load_n(&eb->failed, __ATOMIC_RELAXED);
    ret->bytes = __atomic_load_n(&eb->bytes, __ATOMIC_RELAXED);
}

void obx_egress_box_unlink(struct obx_egress_box *eb)
{
    if (!__atomic_exchange_n(&eb->unlinked, true, __ATOMIC_ACQ_REL))
        (void)unlink(eb->path);
}

int obx_egress_box_open(struct obx_egress *eg, const char *label, struct obx_egress_box **ret,
                        struct obx_error *err)
{
    char hex[17];
    obx_random_hex(hex, 8);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%d-%s.sock", eg->sock_dir, (int)getpid(),
                     hex);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
        return obx_error_set(err, ENAMETOOLONG, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "egress: the socket path below %s is too long for a unix socket",
                             eg->sock_dir);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return obx_error_set(err, errno, OBX_ERR_NO_CAPACITY, "egress: socket: %s",
                             strerror(errno));
    /* Only the bind mount into the box leads here (the directory cannot be listed, the name is
     * random and goes once the box runs), and a box user may be another uid than ours, so the
     * socket itself is open to all. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0666) < 0 ||
        listen(fd, 64) < 0) {
        int e = errno;
        (void)unlink(sa.sun_path);
        return obx_error_set(err, e, OBX_ERR_RUNTIME_UNAVAILABLE, "egress: cannot listen on %s: %s",
                             sa.sun_path, strerror(e));
    }
    struct obx_egress_box *b = obx_xcalloc(1, sizeof(*b));
    b->eg = eg;
    b->refs = 2;
    b->loop_ref = true;
    snprintf(b->label, sizeof(b->label), "%s", label ? label : "box");
    memcpy(b->path, sa.sun_path, sizeof(b->path));
    b->listen_fd = TAKE_FD(fd);
    b->tag = (struct obx_egress_tag){OBX_EGRESS_TAG_LISTEN, b};
    __atomic_add_fetch(&eg->refs, 1, __ATOMIC_ACQ_REL);
    if (!post(eg, false, b)) {
        (void)unlink(b->path);
        close(b->listen_fd);
        free(b);
        eg_unref(eg);
        return obx_error_set(err, ESHUTDOWN, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "egress: the proxy has stopped");
    }
    *ret = b;
    return 0;
}

void obx_egress_box_close(struct obx_egress_box *eb)
{
    if (!eb)
        return;
    obx_egress_box_unlink(eb);
    if (!post(eb->eg, true, eb))
        box_unref(eb); /* the loop is gone and let go of it already */
}

/* mkdir + check that path is a directory of ours with exactly mode (0700: nobody else may
 * enter; 0711: others may pass through to a name they know, never list it). */
static int own_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
        return -EPERM;
    if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0)
        return -errno;
    return 0;
}

/* Sockets "<pid>-<hex>.sock" of processes that are gone (a crash between opening a socket and
 * its box starting; otherwise the name is removed as soon as the box runs). */
static void remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid = 0, used = 0;
        if (sscanf(de->d_name, "%d-%*16[0-9a-f].sock%n", &pid, &used) < 1 ||
            used != (int)strlen(de->d_name) || pid <= 0 || pid == (int)getpid())
            continue;
        if (kill(pid, 0) < 0 && errno == ESRCH)
            (void)unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

static int make_sock_dir(const char *configured, char **ret, struct obx_error *err)
{
    _cleanup_free_ char *base = NULL;
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    /* A root worker's bubblewrap boxes are mounted by bwrap running as an unprivileged host uid,
     * which must reach the socket: its names sit in a directory others may pass through but not
     * list, each name random and removed as soon as its box runs. */
    bool passable = geteuid() == 0;
    if (!obx_str_empty(configured))
        base = obx_xstrdup(configured);
    else if (passable)
        base = obx_xstrdup("/run/onlyboxes");
    else if (xdg && xdg[0] == '/')
        base = obx_xasprintf("%s/onlyboxes", xdg);
    else
        base = obx_xasprintf("/tmp/onlyboxes-%u", (unsigned)geteuid());
    _cleanup_free_ char *dir = obx_xasprintf("%s/egress", base);
    int r =
        passable ? (mkdir(base, 0755) < 0 && errno != EEXIST ? -errno : 0) : own_dir(base, 0700);
    if (r >= 0)
        r = own_dir(dir, passable ? 0711 : 0700);
    if (r < 0)
        return obx_error_set(err, -r, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "egress: cannot use %s for the proxy's sockets: %s", dir,
                             strerror(-r));
    *ret = TAKE_PTR(dir);
    return 0;
}

/* Two fds per connection: the default soft limit (1024) would cap a busy worker well below what
 * its boxes may open. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int obx_egress_config_check(const struct obx_egress_config *cfg, struct obx_error *err)
{
    struct obx_egress_policy p;
    int r = obx_egress_policy_parse(&p, cfg, err);
    if (r >= 0)
        obx_egress_policy_done(&p);
    return r;
}

int obx_egress_new(const struct obx_egress_config *cfg, struct obx_egress **ret,
                   struct obx_error *err)
{
    struct obx_egress_policy policy;
    int r = obx_egress_policy_parse(&policy, cfg, err);
    if (r < 0)
        return r;
    struct obx_egress *eg = obx_xcalloc(1, sizeof(*eg));
    eg->refs = 1;
    eg->ep = eg->wake = -1;
    eg->max_conns = cfg->max_conns ? cfg->max_conns : 32;
    eg->max_bytes = cfg->max_bytes ? cfg->max_bytes : (1024ull << 20);
    eg->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000;
    pthread_mutex_init(&eg->lock, NULL);
    r = make_sock_dir(cfg->state_dir, &eg->sock_dir, err);
    if (r < 0)
        goto fail;
    remove_stale(eg->sock_dir);
    eg->ep = epoll_create1(EPOLL_CLOEXEC);
    eg->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    eg->wake_tag = (struct obx_egress_tag){OBX_EGRESS_TAG_WAKE, NULL};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &eg->wake_tag};
    if (eg->ep < 0 || eg->wake < 0 || epoll_ctl(eg->ep, EPOLL_CTL_ADD, eg->wake, &ev) < 0) {
        r = obx_error_set(err, errno, OBX_ERR_INTERNAL, "egress: epoll: %s", strerror(errno));
        goto fail;
    }
    size_t pins = policy.n_pins, rules = policy.n_rules;
    struct obx_egress_denylist deny;
    obx_egress_denylist_init(&deny, cfg->deny_host);
    eg->resolver = obx_egress_resolver_new(&policy, &deny, eg->wake, err);
    if (!eg->resolver) {
        obx_egress_denylist_done(&deny);
        r = -err->errnum;
        goto fail;
    }
    eg->policy = obx_egress_resolver_policy(eg->resolver);
    raise_nofile();
    int e = pthread_create(&eg->thr, NULL, loop_main, eg);
    if (e != 0) {
        r = obx_error_set(err, e, OBX_ERR_INTERNAL, "egress: cannot start its thread");
        goto fail;
    }
    if (pins)
        obx_warn("egress: ONLYBOXES_EGRESS_TEST_RESOLVE pins %zu name(s) under .test to fixed "
                 "addresses, loopback included; this setting is for tests only",
                 pins);
    obx_debug("egress: %zu allow-list entries from %s; sockets in %s", rules, eg->policy->var,
              eg->sock_dir);
    *ret = eg;
    return 0;
fail:
    obx_egress_policy_done(&policy);
    obx_egress_resolver_stop(eg->resolver);
    eg_unref(eg);
    return r;
}

void obx_egress_free(struct obx_egress *eg)
{
    if (!eg)
        return;
    pthread_mutex_lock(&eg->lock);
    eg->stopping = true;
    pthread_mutex_unlock(&eg->lock);
    uint64_t one = 1;
    (void)!write(eg->wake, &one, sizeof(one));
    pthread_join(eg->thr, NULL);
    obx_egress_resolver_stop(eg->resolver);
    eg_unref(eg);
}
