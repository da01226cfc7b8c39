/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process handling for EXEC: each request runs under its own small "monitor" process, a fork of
 * the agent that forks and execs the user's command (the "leader").
 *
 * Why a monitor: a timeout or cancel must leave no process of the request behind, including ones
 * that left the process group with setsid() or double-forked so that their parent exited. Those
 * cannot be found by process group or session, and once their parent is gone the ppid chain to the
 * request is lost too. The monitor makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so
 * every orphan of the request's tree is re-parented to the monitor instead of to PID 1 -- the
 * request's processes are, at every moment, exactly the monitor's descendants. To kill them the
 * monitor SIGKILLs the leader's group and then repeatedly SIGKILLs its direct children (found by
 * ppid in /proc) and reaps them; the orphans of a killed child become its children before that
 * child can be reaped, so the loop ends only when nothing is left. Direct children cannot be
 * reaped by anyone else, so no pid can be recycled under us between the scan and the kill.
 *
 * The monitor reports the leader's wait status to the agent over a status pipe, keeps reaping
 * background jobs after the leader exited, and exits once it has no children. It kills its whole
 * tree when its control pipe becomes readable: the agent writes a byte on timeout/cancel, and the
 * kernel closes the pipe if the agent dies. The one exception is the byte 'I', which sends SIGINT
 * to the leader's process group instead (the leader is not reaped then, so its pid is still its
 * own): how a Python session's code is interrupted before anything is killed.
 */
#include "agent-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

/* Fixed descriptors inside the monitor. */
enum {
    MON_CHILD_STDIN = 0,
    MON_CHILD_STDOUT = 1,
    MON_CHILD_STDERR = 3,
    MON_CTL = 4,
    MON_STATUS = 5,
    MON_SCRIPT = 6, /* a persistent shell's command pipe, fd 3 in the leader; -1 otherwise */
    MON_FIRST_FREE = 7,
};

/* What the leader resets to SIG_DFL before exec. execve() itself resets every caught signal, so
 * only ignored ones need it: those the agent inherited ignored, SIGPIPE (ignored by the agent)
 * and the three the monitor ignores. One syscall each instead of one per signal number. */
static sigset_t reset_sigs;

void agent_proc_init(void)
{
    sigemptyset(&reset_sigs);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            sigaddset(&reset_sigs, sig);
    }
    sigaddset(&reset_sigs, SIGPIPE);
    sigaddset(&reset_sigs, SIGTERM);
    sigaddset(&reset_sigs, SIGINT);
    sigaddset(&reset_sigs, SIGHUP);
}

void agent_proc_close_from(int from)
{
    if (close_range((unsigned)from, ~0u, 0) == 0)
        return;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int dfd = dirfd(d);
        int fds[256];
        size_t n;
        do {
            /* Collect first, close after: closing while iterating confuses readdir. */
            n = 0;
            rewinddir(d);
            struct dirent *de;
            while ((de = readdir(d)) && n < OBX_ARRAY_SIZE(fds)) {
                char *end;
                long fd = strtol(de->d_name, &end, 10);
                if (*end || end == de->d_name || fd < from || fd == dfd)
                    continue;
                fds[n++] = (int)fd;
            }
            for (size_t i = 0; i < n; i++)
                close(fds[i]);
        } while (n == OBX_ARRAY_SIZE(fds));
        closedir(d);
        return;
    }
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (long fd = from; fd < max; fd++)
        close((int)fd);
}

/* The next pid in /proc, 0 at the end. */
static long proc_next(DIR *d)
{
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (!*end && end != de->d_name && pid > 0)
            return pid;
    }
    return 0;
}

/* From /proc/PID/stat: the parent, and the start time in clock ticks since boot. */
static bool proc_stat(long pid, long *ret_ppid, unsigned long long *ret_start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
        return false;
    buf[len] = '\0';
    /* "pid (comm) state ppid ...": comm may hold anything, so parse after the last ')'. Then:
     * state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
     * cutime cstime priority nice num_threads itrealvalue starttime. */
    char *p = strrchr(buf, ')');
    long ppid;
    unsigned long long start;
    if (!p || sscanf(p + 1,
                     " %*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
                     "%*d %llu",
                     &ppid, &start) != 2)
        return false;
    *ret_ppid = ppid;
    if (ret_start)
        *ret_start = start;
    return true;
}

/* Sends sig to every process whose parent is self; returns how many, or -errno when /proc cannot
 * be read. */
static int signal_children(pid_t self, int sig)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -errno;
    int n = 0;
    long pid, ppid;
    while ((pid = proc_next(d)) > 0)
        if (proc_stat(pid, &ppid, NULL) && ppid == self && kill((pid_t)pid, sig) == 0)
            n++;
    closedir(d);
    return n;
}

void agent_proc_kill_children(void)
{
    pid_t self = getpid();
    for (;;) {
        int n = signal_children(self, SIGKILL);
        int st;
        pid_t p;
        if (n < 0) {
            /* No /proc: we cannot find the children; reap what dies within a second. */
            for (int i = 0; i < 200; i++) {
                p = waitpid(-1, &st, WNOHANG);
                if (p < 0 && errno == ECHILD)
                    return;
                if (p == 0)
                    usleep(5000);
            }
            return;
        }
        p = waitpid(-1, &st, 0);
        if (p < 0 && errno == ECHILD)
            return;
    }
}

uint64_t agent_proc_ticks_now(void)
{
    struct timespec ts;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * (uint64_t)hz + (uint64_t)ts.tv_nsec / (1000000000u / (uint64_t)hz);
}

struct proc_entry {
    pid_t pid, ppid;
    uint64_t start;
    bool mine;
};

/* The box's processes (at most max) with parent and start time; -errno without /proc. */
static int proc_table(struct proc_entry *t, size_t max, size_t *ret_n)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -errno;
    size_t n = 0;
    long pid, ppid;
    unsigned long long start;
    while (n < max && (pid = proc_next(d)) > 0)
        if (proc_stat(pid, &ppid, &start))
            t[n++] = (struct proc_entry){(pid_t)pid, (pid_t)ppid, start, false};
    closedir(d);
    *ret_n = n;
    return 0;
}

int agent_proc_kill_since(pid_t root, pid_t keep, uint64_t since)
{
    static struct proc_entry t[4096];
    int total = 0;
    /* A process may fork while we look: a few rounds catch what the first one missed. */
    for (int round = 0; round < 4; round++) {
        size_t n = 0;
        if (proc_table(t, OBX_ARRAY_SIZE(t), &n) < 0)
            return total;
        bool grew = true;
        while (grew) {
            grew = false;
            for (size_t i = 0; i < n; i++) {
                if (t[i].mine)
                    continue;
                bool parent_mine = t[i].ppid == root;
                for (size_t j = 0; j < n && !parent_mine; j++)
                    parent_mine = t[j].mine && t[j].pid == t[i].ppid;
                if (parent_mine)
                    grew = t[i].mine = true;
            }
        }
        int killed = 0;
        for (size_t i = 0; i < n; i++)
            if (t[i].mine && t[i].pid != keep && t[i].start >= since &&
                kill(t[i].pid, SIGKILL) == 0)
                killed++;
        total += killed;
        if (killed == 0)
            break;
    }
    return total;
}

static void set_limit(int resource, uint64_t value)
{
    struct rlimit cur, rl;
    rlim_t v = (rlim_t)value;
    if (getrlimit(resource, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && v > cur.rlim_max)
        v = cur.rlim_max;
    rl.rlim_cur = rl.rlim_max = v;
    (void)setrlimit(resource, &rl);
}

/* In the forked leader: become the command. Never returns. */
static void __attribute__((noreturn)) child_exec(const struct agent_spawn *sp, bool script)
{
    /* A terminal's shell leads a session of its own with the terminal as its controlling one,
     * so that job control, ^C and the hangup at its close work as at a console. */
    if (sp->tty_fd > STDERR_FILENO) {
        if (setsid() < 0 || ioctl(STDIN_FILENO, TIOCSCTTY, 0) < 0)
            _exit(126);
    } else {
        (void)setpgid(0, 0);
    }
    if (dup2(MON_CHILD_STDERR, STDERR_FILENO) < 0)
        _exit(127);
    if (script && dup2(MON_SCRIPT, 3) < 0)
        _exit(127);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&reset_sigs, sig) == 1)
            (void)signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    agent_proc_close_from(script ? 4 : 3);

    if (sp->limits.memory_bytes)
        set_limit(RLIMIT_AS, sp->limits.memory_bytes);
    if (sp->limits.nproc)
        set_limit(RLIMIT_NPROC, sp->limits.nproc);
    if (sp->limits.fsize_bytes)
        set_limit(RLIMIT_FSIZE, sp->limits.fsize_bytes);
    if (sp->limits.cpu_sec)
        set_limit(RLIMIT_CPU, sp->limits.cpu_sec);
    if (sp->limits.nofile)
        set_limit(RLIMIT_NOFILE, sp->limits.nofile);
    set_limit(RLIMIT_CORE, 0);

    if (chdir(sp->cwd) < 0) {
        dprintf(STDERR_FILENO, "onlyboxes-agent: cannot change directory to %s: %s\n", sp->cwd,
                strerror(errno));
        _exit(127);
    }
    /* execvp searches the PATH of environ, so the child's environment must be in place first. */
    environ = sp->envp;
    execvp(sp->argv[0], sp->argv);
    int e = errno;
    dprintf(STDERR_FILENO, "onlyboxes-agent: cannot run %s: %s\n", sp->argv[0], strerror(e));
    _exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
}

/* Moves the descriptors the monitor keeps to fixed numbers and closes everything else. src[i] goes
 * to the i-th MON_* number below; a negative src[5] (MON_SCRIPT) means there is none. */
static int monitor_fds(const int src[6])
{
    const int dst[] = {MON_CHILD_STDIN, MON_CHILD_STDOUT, MON_CHILD_STDERR,
                       MON_CTL,         MON_STATUS,       MON_SCRIPT};
    int tmp[OBX_ARRAY_SIZE(dst)];
    /* Copies above every target first, so no dup2 below overwrites a source still needed. */
    for (size_t i = 0; i < OBX_ARRAY_SIZE(dst); i++) {
        tmp[i] = src[i] < 0 ? -1 : fcntl(src[i], F_DUPFD_CLOEXEC, MON_FIRST_FREE);
        if (src[i] >= 0 && tmp[i] < 0)
            return -errno;
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(dst); i++)
        if (tmp[i] >= 0 && dup2(tmp[i], dst[i]) < 0)
            return -errno;
    agent_proc_close_from(MON_FIRST_FREE);
    /* Unused, it may still hold one of the agent's descriptors, say the write end of another
     * request's stdin, whose reader would then never see EOF. */
    if (src[5] < 0)
        (void)close(MON_SCRIPT);
    (void)fcntl(MON_CTL, F_SETFD, FD_CLOEXEC);
    (void)fcntl(MON_STATUS, F_SETFD, FD_CLOEXEC);
    return 0;
}

static void __attribute__((noreturn)) monitor_kill_all(pid_t leader, bool leader_reaped)
{
    if (!leader_reaped) {
        /* The leader is not reaped, so its pid (and group id) cannot have been reused. */
        (void)kill(-leader, SIGKILL);
        (void)kill(leader, SIGKILL);
    }
    agent_proc_kill_children();
    _exit(0);
}

static void __attribute__((noreturn)) monitor_main(const struct agent_spawn *sp, const int fds[6])
{
    bool script = fds[5] >= 0;
    if (monitor_fds(fds) < 0)
        _exit(120);
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    (void)prctl(PR_SET_NAME, "obx-monitor");
    /* A stray SIGTERM/SIGINT must not take the monitor away from its tree. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);

    pid_t leader = fork();
    if (leader < 0) {
        int st = (127 << 8);
        dprintf(MON_CHILD_STDERR, "onlyboxes-agent: fork: %s\n", strerror(errno));
        (void)!write(MON_STATUS, &st, sizeof(st));
        _exit(0);
    }
    if (leader == 0)
        child_exec(sp, script);
    if (sp->tty_fd <= STDERR_FILENO) /* a terminal's leader makes its own session */
        (void)setpgid(leader, leader);

    /* The monitor must not hold the child's pipes, or EOF would never come. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    close(MON_CHILD_STDERR);
    if (script)
        close(MON_SCRIPT);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        if (devnull > STDOUT_FILENO)
            close(devnull);
    } else {
        close(STDIN_FILENO);
        close(STDOUT_FILENO);
    }

    bool leader_reaped = false;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = MON_CTL, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        int n = poll(pfd, sfd >= 0 ? 2 : 1, sfd >= 0 ? -1 : 50);
        if (n < 0 && errno != EINTR)
            monitor_kill_all(leader, leader_reaped);
        if (pfd[0].revents) {
            /* 'I': interrupt the leader's group (a session's Python code); anything else, or
             * EOF, kills the tree. */
            char c = 0;
            ssize_t got = read(MON_CTL, &c, 1);
            if (got < 0 && errno == EINTR)
                continue;
            if (got != 1 || c != 'I')
                monitor_kill_all(leader, leader_reaped);
            if (!leader_reaped)
                (void)kill(-leader, SIGINT);
        }
        if (sfd >= 0 && pfd[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si))
                ;
        }
        for (;;) {
            int st;
            pid_t p = waitpid(-1, &st, WNOHANG);
            if (p > 0 && p == leader) {
                leader_reaped = true;
                (void)!write(MON_STATUS, &st, sizeof(st));
                close(MON_STATUS);
                continue;
            }
            if (p > 0)
                continue;
            if (p < 0 && errno == ECHILD && leader_reaped)
                _exit(0);
            break;
        }
    }
}

static void closep_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* A fresh pipe end has no status flags but its access mode, which F_SETFL ignores: no F_GETFL. */
static void set_nonblock(int fd)
{
    (void)fcntl(fd, F_SETFL, O_NONBLOCK);
}

int agent_proc_start(const struct agent_spawn *sp, enum agent_feed feed, struct agent_proc *ret)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, inp[2] = {-1, -1}, ctl[2] = {-1, -1},
        st[2] = {-1, -1}, scr[2] = {-1, -1};
    int rr = 0;
    if (feed == AGENT_FEED_TTY) {
        /* The terminal is the leader's stdin, stdout and stderr; the monitor closes its copies. */
        if ((inp[0] = fcntl(sp->tty_fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
            (out[1] = fcntl(sp->tty_fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
            (err[1] = fcntl(sp->tty_fd, F_DUPFD_CLOEXEC, 3)) < 0 || pipe2(ctl, O_CLOEXEC) < 0 ||
            pipe2(st, O_CLOEXEC) < 0) {
            rr = -errno;
            goto fail;
        }
    } else if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
               pipe2(ctl, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0 ||
               (feed == AGENT_FEED_SCRIPT && pipe2(scr, O_CLOEXEC) < 0)) {
        rr = -errno;
        goto fail;
    }
    if (feed == AGENT_FEED_TTY) {
        /* stdin is set above */
    } else if (feed == AGENT_FEED_STDIN) {
        if (pipe2(inp, O_CLOEXEC) < 0) {
            rr = -errno;
            goto fail;
        }
    } else {
        inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (inp[0] < 0 && pipe2(inp, O_CLOEXEC) < 0) { /* no /dev/null: an empty pipe */
            rr = -errno;
            goto fail;
        }
        closep_fd(&inp[1]);
    }
    const int fds[6] = {inp[0], out[1], err[1], ctl[0], st[1], scr[0]};
    pid_t m = fork();
    if (m < 0) {
        rr = -errno;
        goto fail;
    }
    if (m == 0)
        monitor_main(sp, fds);
    close(inp[0]);
    close(out[1]);
    close(err[1]);
    close(ctl[0]);
    close(st[1]);
    closep_fd(&scr[0]);
    *ret = (struct agent_proc){.monitor = m,
                               .ctl_fd = ctl[1],
                               .status_fd = st[0],
                               .feed_fd = feed == AGENT_FEED_SCRIPT ? scr[1] : inp[1],
                               .out_fd = out[0],
                               .err_fd = err[0]};
    set_nonblock(ret->ctl_fd);
    set_nonblock(ret->status_fd);
    if (ret->out_fd >= 0)
        set_nonblock(ret->out_fd);
    if (ret->err_fd >= 0)
        set_nonblock(ret->err_fd);
    if (ret->feed_fd >= 0)
        set_nonblock(ret->feed_fd);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        closep_fd(&out[i]);
        closep_fd(&err[i]);
        closep_fd(&inp[i]);
        closep_fd(&ctl[i]);
        closep_fd(&st[i]);
        closep_fd(&scr[i]);
    }
    return rr;
}

void agent_proc_close(struct agent_proc *p)
{
    closep_fd(&p->ctl_fd);
    closep_fd(&p->status_fd);
    closep_fd(&p->feed_fd);
    closep_fd(&p->out_fd);
    closep_fd(&p->err_fd);
}
