/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Warm shells: terminal mode without fork and exec on the request's path. Whenever a state key is
 * used (a request takes the key's warm shell, runs cold, or finishes), the agent makes sure that
 * the key's next shell is started ahead of time: a monitor and /bin/sh exactly as a cold request
 * would get them (agent-proc.c), with the default limits and environment, exec'ed and blocked
 * reading its script from a pipe (agent-shell.c). A terminal request for that key that asks for
 * nothing a pre-started shell cannot have (its own "env", "cwd", "stdin" or "limits") takes the
 * shell over with its pipes: the agent writes the script that names the command, and from there
 * on the request is an ordinary one, killed, timed and reported the same way. The shell restores
 * the key's state only once it has its script, so a state saved after it was started is seen.
 *
 * At most one warm shell per key and AGENT_MAX_WARM in all; for a new key the least recently
 * started one makes room. They are not requests: not polled, not counted, not visible in the
 * request table. A warm shell whose monitor exits (someone killed it) is dropped when it is
 * reaped; one whose leader died but whose monitor was not reaped yet is caught by a look at its
 * status pipe when a request would take it. Discarding a shell is closing its control pipe: the
 * monitor then kills its tree and exits like any monitor. Runs on the agent's only thread.
 */
#include "agent-internal.h"

#include <poll.h>

void agent_warm_init(struct agent *a)
{
    /* The shell reads its script through /proc/self/fd; without /proc it cannot. */
    a->warm_off = access("/proc/self/fd/0", F_OK) < 0;
    for (size_t i = 0; i < AGENT_MAX_WARM; i++)
        a->warm[i].proc = (struct agent_proc){
            .ctl_fd = -1, .status_fd = -1, .feed_fd = -1, .out_fd = -1, .err_fd = -1};
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
    w->key = NULL;
    w->proc = (struct agent_proc){
        .ctl_fd = -1, .status_fd = -1, .feed_fd = -1, .out_fd = -1, .err_fd = -1};
}

/* Drops a warm shell; closing the control pipe makes its monitor kill it and exit. */
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
    if (!w) {
        w = &a->warm[0];
        for (size_t i = 1; i < AGENT_MAX_WARM; i++)
            if (a->warm[i].lru < w->lru)
                w = &a->warm[i];
        warm_discard(w);
    }
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
            agent_log("cannot start a warm shell: %s", strerror(-r));
        return;
    }
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

int agent_warm_take(struct agent *a, const char *key, struct agent_proc *ret)
{
    struct agent_warm *w = a->warm_off ? NULL : warm_find(a, key);
    if (!w)
        return -ENOENT;
    /* Nothing arrives on the status pipe of a live shell: anything there (a status or EOF)
     * means the leader is gone. */
    struct pollfd p = {.fd = w->proc.status_fd, .events = POLLIN};
    if (poll(&p, 1, 0) != 0) {
        warm_discard(w);
        return -ENOENT;
    }
    *ret = w->proc;
    warm_clear(w);
    return 0;
}

bool agent_warm_reaped(struct agent *a, pid_t pid)
{
    for (size_t i = 0; i < AGENT_MAX_WARM; i++)
        if (a->warm[i].key && a->warm[i].proc.monitor == pid) {
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
