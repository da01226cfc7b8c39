/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starting bwrap (or the agent's --exec-as step in front of it) from a multi-threaded worker:
 * posix_spawn only, so no code of ours runs between fork and exec. The child gets the fds it is
 * meant to have at fixed numbers and nothing else, a process group of its own, default signal
 * dispositions and an empty environment. Called from any thread; no state.
 */
#include "bwrap-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "common/clock.h"

int obx_bwrap_spawn(const char *path, const char *const argv[], const struct obx_bwrap_spawn *sp,
                    pid_t *ret)
{
    enum {
        N = OBX_BWRAP_SPAWN_FDS
    };
    int src[N], lifted[N], top = 3;
    int r = 0;
    for (int i = 0; i < N; i++) {
        src[i] = sp->fd[i];
        lifted[i] = -1;
        if (src[i] >= 0 && i >= top)
            top = i + 1;
    }
    /* dup2 onto 0..N-1 happens in order: a source that is itself one of those numbers could be
     * overwritten by an earlier action, so such sources are moved above them first. */
    for (int i = 0; i < N; i++) {
        if (src[i] >= 0 && src[i] < N) {
            lifted[i] = fcntl(src[i], F_DUPFD_CLOEXEC, N);
            if (lifted[i] < 0) {
                r = -errno;
                goto out_close;
            }
            src[i] = lifted[i];
        }
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    for (int i = 0; i < N; i++) {
        if (src[i] >= 0)
            posix_spawn_file_actions_adddup2(&fa, src[i], i);
        else if (i < 2)
            posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
        else if (i > 2 && i < top)
            posix_spawn_file_actions_addclose(&fa, i); /* a gap: no stray fd of ours there */
    }
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
    /* Every fd of ours is O_CLOEXEC; this also covers a library that forgot. */
    posix_spawn_file_actions_addclosefrom_np(&fa, top);
#endif
    /* Own process group: a Ctrl-C in the worker's terminal must not reach the boxes, the worker
     * stops them itself. Signal mask and dispositions are reset, as the calling thread may block
     * or ignore signals (SIGPIPE) that the box's processes must see normally. */
    sigset_t empty, deflt;
    sigemptyset(&empty);
    sigemptyset(&deflt);
    static const int defaults[] = {SIGPIPE, SIGINT,  SIGQUIT, SIGTERM, SIGHUP,
                                   SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(defaults); i++)
        sigaddset(&deflt, defaults[i]);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    /* bwrap itself needs no environment, and the worker's may hold secrets. */
    char *const envp[] = {NULL};
    pid_t pid;
    int e = posix_spawn(&pid, path, &fa, &attr, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e)
        r = -e;
    else
        *ret = pid;
out_close:
    for (int i = 0; i < N; i++)
        if (lifted[i] >= 0)
            close(lifted[i]);
    return r;
}

void obx_bwrap_kill_and_reap(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

int obx_bwrap_run_capture(const char *path, const char *const argv[],
                          const struct obx_bwrap_spawn *sp, char *out, size_t size, int timeout_ms,
                          int *status)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    _cleanup_close_ int rd = p[0];
    pid_t pid;
    struct obx_bwrap_spawn fds = *sp;
    fds.fd[0] = -1;
    fds.fd[1] = fds.fd[2] = p[1];
    int r = obx_bwrap_spawn(path, argv, &fds, &pid);
    close(p[1]);
    if (r < 0)
        return r;
    size_t len = 0;
    uint64_t deadline = obx_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = obx_now_ms();
        if (now >= deadline) {
            obx_bwrap_kill_and_reap(pid);
            return -ETIMEDOUT;
        }
        struct pollfd pfd = {.fd = rd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue;
        char buf[512];
        ssize_t got = read(rd, buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        size_t take = OBX_MIN((size_t)got, size - 1 - len);
        memcpy(out + len, buf, take);
        len += take;
    }
    out[len] = '\0';
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}
