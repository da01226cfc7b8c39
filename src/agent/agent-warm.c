/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Persistent shells: terminal mode without fork and exec of /bin/sh on the request's path. When a
 * state key is used, the agent starts the key's shell ahead of its next command: a monitor and
 * /bin/sh exactly as a cold request would get them (agent-proc.c), with the default limits and
 * environment, blocked reading request ids from its command pipe (agent-shell.c). A terminal
 * request for that key that asks for nothing such a shell cannot have (its own "env", "cwd",
 * "stdin" or "limits") is run by it: the agent writes the request's script file, makes two FIFOs
 * for its stdout and stderr and sends the id; the shell forks a subshell that runs the command and
 * reports its status on the report pipe. Forking a running shell costs a fraction of exec'ing a
 * new one.
 *
 * The monitor's guarantee holds because the shell runs one command at a time and is reused only
 * when nothing a command started is left: the monitor is a subreaper, so every process of the
 * command is, until it ends, a descendant of the subshell or of the monitor. After the report,
 * with the subshell reaped, the agent reads the monitor's and the shell's child lists: only the
 * shell under the monitor and nothing under the shell means the command left nothing behind, and
 * the monitor's tree is again the shell alone. Otherwise (background jobs still running) the shell
 * is retired: told to exit by closing its command pipe, while its monitor lingers with the jobs
 * as a request's monitor does. A timeout or cancel kills the monitor's whole tree, shell included;
 * the session's state is on disk, so the next command simply gets a new shell. `$$` in a command
 * is the persistent shell: when it dies during a command (`kill $$`), the command ends the same
 * way, reporting the shell's status and keeping no state, as when a one-command shell is killed.
 *
 * Exit statuses: the shell reports `$?` of the subshell, which is 128+N both for `exit 128+N`
 * and for death by signal N. The subshell's EXIT trap writes the new state file, which a shell
 * killed by a signal never does: a status above 128 without that file is a signal.
 *
 * At most one shell per key and AGENT_MAX_WARM in all; for a new key the least recently used idle
 * one makes room. Idle shells are not requests: not polled, not counted, not visible in the
 * request table. An idle shell whose monitor exits is dropped when it is reaped; one whose shell
 * died but whose monitor was not reaped yet is caught by a look at its status pipe when a request
 * would use it. Discarding a shell is closing its control pipe: the monitor then kills its tree
 * and exits like any monitor. Runs on the agent's only thread.
 */
#include "agent-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>

static void closep_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static const struct agent_proc no_proc = {
    .ctl_fd = -1, .status_fd = -1, .feed_fd = -1, .out_fd = -1, .err_fd = -1};

void agent_warm_init(struct agent *a)
{
    /* Reuse needs the kernel's child lists to see that a command left nothing behind. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    a->warm_off = access(path, R_OK) < 0;
    for (size_t i = 0; i < AGENT_MAX_WARM; i++)
        a->warm[i].proc = no_proc;
}

static struct agent_warm *warm_find(struct agent *a, const char *key)
{
    for (size_t i = 0; i < AGENT_MAX_WARM; i++)
        if (a->warm[i].key && obx_streq(a->warm[i].key, key))
            return &a->warm[i];
    return NULL;
}

static void warm_clear(struct agent_warm *w)
{
    free(w->key);
    *w = (struct agent_warm){.proc = no_proc};
}

/* Drops a shell; closing the control pipe makes its monitor kill its tree and exit. */
static void warm_discard(struct agent_warm *w)
{
    agent_proc_close(&w->proc);
    warm_clear(w);
}

void agent_warm_want(struct agent *a, const char *key)
{
    if (a->warm_off || warm_find(a, key))
        return;
    for (size_t i = 0; i < a->n_warm_want; i++)
        if (obx_streq(a->warm_want[i], key))
            return;
    if (a->n_warm_want == AGENT_MAX_WARM) {
        free(a->warm_want[0]);
        memmove(a->warm_want, a->warm_want + 1, (AGENT_MAX_WARM - 1) * sizeof(char *));
        a->n_warm_want--;
    }
    a->warm_want[a->n_warm_want++] = obx_xstrdup(key);
}

static void warm_spawn(struct agent *a, const char *key)
{
    struct agent_warm *w = NULL;
    for (size_t i = 0; i < AGENT_MAX_WARM && !w; i++)
        if (!a->warm[i].key)
            w = &a->warm[i];
    for (size_t i = 0; i < AGENT_MAX_WARM && !w; i++)
        if (!a->warm[i].busy && (!w || a->warm[i].lru < w->lru))
            w = &a->warm[i];
    if (!w)
        return; /* every shell runs a command */
    if (w->key)
        warm_discard(w);
    char **argv = agent_shell_warm_argv(a, key);
    char **envp = agent_env_build(a, NULL);
    struct agent_spawn sp = {
        .argv = argv, .envp = envp, .cwd = a->cfg.workspace, .limits = a->cfg.limits};
    int r = agent_proc_start(&sp, AGENT_FEED_SCRIPT, &w->proc);
    agent_strv_free(argv);
    agent_strv_free(envp);
    if (r < 0) {
        /* Out of processes or descriptors: the next request simply goes cold. */
        if (r != -EAGAIN)
            agent_log("cannot start a terminal shell: %s", strerror(-r));
        return;
    }
    /* The shell sends its own stderr to /dev/null first thing; nothing is read from it. */
    closep_fd(&w->proc.err_fd);
    w->key = obx_xstrdup(key);
    w->lru = ++a->warm_clock;
}

void agent_warm_refill(struct agent *a)
{
    for (size_t i = 0; i < a->n_warm_want; i++) {
        if (!a->warm_off && !warm_find(a, a->warm_want[i]))
            warm_spawn(a, a->warm_want[i]);
        free(a->warm_want[i]);
        a->warm_want[i] = NULL;
    }
    a->n_warm_want = 0;
}

int agent_fifo_open(const char *path)
{
    if (mkfifo(path, 0600) < 0) {
        if (errno != EEXIST || unlink(path) < 0 || mkfifo(path, 0600) < 0)
            return -errno;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int agent_file_create(const char *path, const char *data, size_t len)
{
    (void)unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    int r = obx_write_all(fd, data, len);
    close(fd);
    return r;
}

static void files_unlink(const char *base)
{
    static const char *const ext[] = {"sh", "out", "err"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(ext); i++) {
        _cleanup_free_ char *path = obx_xasprintf("%s.%s", base, ext[i]);
        (void)unlink(path);
    }
}

int agent_warm_run(struct agent *a, struct agent_request *r, const char *command)
{
    struct agent_warm *w = a->warm_off ? NULL : warm_find(a, r->state_key);
    if (!w || w->busy)
        return -ENOENT;
    /* Nothing arrives on the status pipe of a live shell: anything there (a status or EOF)
     * means it is gone. */
    struct pollfd p = {.fd = w->proc.status_fd, .events = POLLIN};
    if (poll(&p, 1, 0) != 0) {
        warm_discard(w);
        return -ENOENT;
    }
    _cleanup_free_ char *base = obx_xasprintf("%s/.z.%u", a->cfg.state_dir, r->id);
    _cleanup_free_ char *out = obx_xasprintf("%s.out", base);
    _cleanup_free_ char *err = obx_xasprintf("%s.err", base);
    _cleanup_free_ char *sh = obx_xasprintf("%s.sh", base);
    size_t len;
    _cleanup_free_ char *script = agent_shell_warm_script(r, command, &len);
    int fds[2] = {-1, -1};
    char line[16];
    int n = snprintf(line, sizeof(line), "%u\n", r->id);
    int rr = agent_file_create(sh, script, len);
    if (rr >= 0)
        rr = fds[0] = agent_fifo_open(out);
    if (rr >= 0)
        rr = fds[1] = agent_fifo_open(err);
    /* The pipe is empty while the shell is idle: the line goes at once, or the shell is gone. */
    if (rr >= 0 && write(w->proc.feed_fd, line, (size_t)n) != n)
        rr = -EPIPE;
    if (rr < 0) {
        closep_fd(&fds[0]);
        closep_fd(&fds[1]);
        files_unlink(base);
        if (rr == -EPIPE)
            warm_discard(w);
        return rr == -EPIPE ? -ENOENT : rr;
    }
    w->busy = r;
    w->rep_len = 0;
    w->lru = ++a->warm_clock;
    r->zy = w;
    r->zy_base = TAKE_PTR(base);
    r->monitor = w->proc.monitor;
    r->ctl_fd = w->proc.ctl_fd;
    r->status_fd = w->proc.status_fd;
    r->report_fd = w->proc.out_fd;
    r->out[0].fd = fds[0];
    r->out[1].fd = fds[1];
    return 0;
}

/* The wait status for the subshell's `$?` (see the top of the file). */
static int report_status(const struct agent_request *r, unsigned code)
{
    struct stat st;
    if (code > 128 && code - 128 < NSIG && lstat(r->state_new, &st) < 0)
        return (int)(code - 128);
    return (int)(code << 8);
}

static void report_line(struct agent_request *r, char *line)
{
    char *end;
    unsigned long id = strtoul(line, &end, 10);
    if (end == line || *end != ' ' || id != r->id || r->leader_done)
        return;
    unsigned long code = strtoul(end + 1, &end, 10);
    if (*end != ' ' || code > 255)
        return;
    long pid = strtol(end + 1, &end, 10);
    if (*end || pid <= 0)
        return;
    r->zy->shell = (pid_t)pid;
    r->leader_done = true;
    r->leader_status = report_status(r, (unsigned)code);
}

void agent_warm_report(struct agent_request *r)
{
    struct agent_warm *w = r->zy;
    if (!w || r->report_fd < 0)
        return;
    ssize_t n = read(r->report_fd, w->rep + w->rep_len, sizeof(w->rep) - 1 - w->rep_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* EOF: the shell is gone; its status pipe tells how. */
        r->report_fd = -1;
        return;
    }
    w->rep_len += (size_t)n;
    w->rep[w->rep_len] = '\0';
    char *s = w->rep, *nl;
    while ((nl = strchr(s, '\n'))) {
        *nl = '\0';
        report_line(r, s);
        s = nl + 1;
    }
    w->rep_len -= (size_t)(s - w->rep);
    memmove(w->rep, s, w->rep_len);
    if (w->rep_len == sizeof(w->rep) - 1)
        w->rep_len = 0; /* not a report */
}

/* The pids in /proc/<pid>/task/<pid>/children: how many (up to 2), the first in *first; -1 when
 * the list cannot be read. */
static int children_of(pid_t pid, pid_t *first)
{
    char path[64], buf[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    int count = 0;
    char *s = buf, *end;
    for (long v; (v = strtol(s, &end, 10)) > 0 && end != s; s = end) {
        if (count++ == 0)
            *first = (pid_t)v;
    }
    return n == (ssize_t)sizeof(buf) - 1 ? 2 : count;
}

/* True when the monitor's tree is the shell alone. Every process the command left is a
 * descendant of the shell or of the monitor (a subreaper), and a process stays in its parent's
 * list until it is reaped, after its own children moved to the monitor: one look at each list
 * cannot miss a survivor. */
static bool tree_is_shell(const struct agent_warm *w)
{
    pid_t child = 0, grandchild = 0;
    return w->shell > 0 && children_of(w->proc.monitor, &child) == 1 && child == w->shell &&
           children_of(w->shell, &grandchild) == 0;
}

void agent_warm_release(struct agent *a, struct agent_request *r)
{
    struct agent_warm *w = r->zy;
    if (!w)
        return;
    files_unlink(r->zy_base);
    r->zy = NULL;
    r->ctl_fd = r->status_fd = r->report_fd = -1;
    w->busy = NULL;
    if (r->monitor_done || r->killing || r->shell_died || !r->leader_done) {
        warm_discard(w); /* its monitor is gone or kills its tree */
    } else if (!tree_is_shell(w)) {
        /* Background jobs of the command still run: they keep the monitor, the shell leaves. */
        agent_linger_add(a, w->proc.monitor, w->proc.ctl_fd);
        w->proc.ctl_fd = -1;
        warm_discard(w);
    } else {
        return;
    }
    agent_warm_want(a, r->state_key);
}

bool agent_warm_reaped(struct agent *a, pid_t pid)
{
    for (size_t i = 0; i < AGENT_MAX_WARM; i++)
        if (a->warm[i].key && !a->warm[i].busy && a->warm[i].proc.monitor == pid) {
            warm_discard(&a->warm[i]);
            return true;
        }
    return false;
}

void agent_warm_shutdown(struct agent *a)
{
    for (size_t i = 0; i < AGENT_MAX_WARM; i++)
        if (a->warm[i].key)
            warm_discard(&a->warm[i]);
    for (size_t i = 0; i < a->n_warm_want; i++)
        free(a->warm_want[i]);
    a->n_warm_want = 0;
}
