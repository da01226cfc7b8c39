/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A pids cgroup per box, where the worker may create one. The agent's RLIMIT_NPROC is counted per
 * host user: the boxes of an ordinary user's worker share one count with each other and with that
 * user's own processes (a root worker's boxes each have a host uid of their own), and the kernel
 * exempts root from it. A cgroup's pids.max holds per box, for every user. The box's PID 1 is moved
 * into <worker's pids cgroup>/onlyboxes/<box-id> right after bwrap reports it, before the worker
 * sends it anything, so every process the box ever starts is inside (the agent forks only on
 * requests). cgroup v1 (a "pids" hierarchy) and v2 (with the pids controller available) are both
 * handled; without either, or without permission, boxes run with the rlimits alone. A memory cgroup
 * per box, where one can be made, holds the box as a whole (its tmpfs /tmp included) to the memory
 * limit that RLIMIT_AS applies per process: under v1 in the "memory" hierarchy, under v2 in the
 * same directory. Under v2 the worker's own cgroup usually holds processes (ours) and so cannot
 * give children controllers; a root worker then uses <hierarchy root>/onlyboxes. Before any is
 * used, a child process is moved into a probe cgroup below it, as each box will be. Called from any
 * thread; the only state is the directories set once at start-up.
 */
#include "bwrap-internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "common/log.h"

#define MOUNTINFO_LINE_MAX 4096
#define CGROUP_RMDIR_TRIES 50 /* 10 ms apart */

static int write_string(const char *dir, const char *file, const char *value)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (n < 0 || n >= (int)sizeof(path))
        return -ENAMETOOLONG;
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return obx_write_all(fd, value, strlen(value));
}

/* True when the comma-separated list holds item. */
static bool list_has(const char *list, size_t len, const char *item)
{
    size_t ilen = strlen(item);
    for (const char *p = list, *end = list + len; p < end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (n == ilen && memcmp(p, item, n) == 0)
            return true;
        p += n + 1;
    }
    return false;
}

/* Finds the mount of the v1 hierarchy of controller (v2 = false) or of cgroup2 (v2 = true): its
 * mount point and the cgroup path it shows as its root. */
static bool find_mount(bool v2, const char *controller, char *point, char *root, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char line[MOUNTINFO_LINE_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        /* id parent major:minor root mount-point options [optional...] - fstype source super */
        char *sep = strstr(line, " - ");
        char r[PATH_MAX], mp[PATH_MAX], type[32], src[64], super[512];
        if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", r, mp) != 2 ||
            sscanf(sep + 3, "%31s %63s %511s", type, src, super) != 3)
            continue;
        if (strchr(mp, '\\') || strchr(r, '\\')) /* an escaped space or the like: not ours */
            continue;
        if (v2 ? strcmp(type, "cgroup2") != 0
               : strcmp(type, "cgroup") != 0 || !list_has(super, strlen(super), controller))
            continue;
        snprintf(point, size, "%s", mp);
        snprintf(root, size, "%s", r);
        found = true;
    }
    fclose(f);
    return found;
}

/* The worker's own cgroup path in the v1 hierarchy of controller, or in v2 ("0::"). */
static bool own_path(bool v2, const char *controller, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    char line[MOUNTINFO_LINE_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        bool match =
            v2 ? strncmp(line, "0::", 3) == 0 : list_has(c1 + 1, (size_t)(c2 - c1 - 1), controller);
        if (match) {
            snprintf(out, size, "%s", c2 + 1);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* <mount point> + the worker's path below the mount's root, or false. */
static bool own_dir(bool v2, const char *controller, char *out, size_t size)
{
    char point[PATH_MAX], root[PATH_MAX], own[PATH_MAX];
    if (!find_mount(v2, controller, point, root, sizeof(point)) ||
        !own_path(v2, controller, own, sizeof(own)))
        return false;
    size_t rlen = obx_streq(root, "/") ? 0 : strlen(root);
    if (strncmp(own, root, rlen) != 0 || (own[rlen] != '/' && own[rlen] != '\0'))
        return false;
    const char *rest = own + rlen;
    if (obx_streq(rest, "/"))
        rest = "";
    int n = snprintf(out, size, "%s%s", point, rest);
    return n > 0 && n < (int)size;
}

/* Whether the v2 cgroup dir offers controller to its children. */
static bool v2_has(const char *dir, const char *controller)
{
    char path[PATH_MAX], buf[512];
    snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
        if (obx_streq(w, controller))
            return true;
    return false;
}

/* v2: enables controller for the children of dir; 0, or a negative errno. */
static int v2_enable(const char *dir, const char *controller)
{
    if (!v2_has(dir, controller))
        return -ENOTSUP;
    _cleanup_free_ char *plus = obx_xasprintf("+%s", controller);
    return write_string(dir, "cgroup.subtree_control", plus);
}

/* <own>/onlyboxes with controller on (v1: own is in that controller's hierarchy). */
static int make_parent(bool v2, const char *controller, const char *own, char **ret)
{
    _cleanup_free_ char *dir = obx_xasprintf("%s/onlyboxes", own);
    /* v2 gives a child a controller only when its parent enables it; the worker's own cgroup can
     * do so only if it is the root or holds no process (the no-internal-process rule). */
    int r = v2 ? v2_enable(own, controller) : 0;
    if (r < 0)
        return r;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    /* Made by another user (root's worker on this host): boxes could not get a cgroup in it. */
    if (access(dir, W_OK | X_OK) < 0)
        return -errno;
    r = v2 ? v2_enable(dir, controller) : 0;
    if (r < 0)
        return r;
    *ret = TAKE_PTR(dir);
    return 0;
}

/* v2: <mount point>/onlyboxes, for a root worker whose own cgroup cannot have children with
 * controllers (it holds processes, ours included: v2 lets only the root cgroup do both). The
 * hierarchy's root may: root puts its boxes there, as container engines do. */
static int make_parent_at_root(char *base, size_t size, char **ret)
{
    char root[PATH_MAX];
    if (geteuid() != 0 || !find_mount(true, NULL, base, root, size))
        return -EPERM;
    return make_parent(true, "pids", base, ret);
}

static int probe_attach(struct obx_bwrap_runtime *b);

void obx_bwrap_cgroup_init(struct obx_bwrap_runtime *b)
{
    char base[PATH_MAX]; /* the directory holding <base>/onlyboxes */
    int r = -ENOENT;
    bool v2 = false;
    if (own_dir(false, "pids", base, sizeof(base)))
        r = make_parent(false, "pids", base, &b->cgroup_dir);
    else if (own_dir(true, NULL, base, sizeof(base)) &&
             (r = make_parent(v2 = true, "pids", base, &b->cgroup_dir)) < 0)
        r = make_parent_at_root(base, sizeof(base), &b->cgroup_dir);
    /* Memory: v1 has its own hierarchy; v2 uses the same directories. Best effort: without it a
     * box's memory is limited per process (RLIMIT_AS) only. */
    int m = -ENOENT;
    if (!v2 && own_dir(false, "memory", base, sizeof(base)))
        m = make_parent(false, "memory", base, &b->memory_cgroup_dir);
    else if (v2 && r >= 0 && (m = v2_enable(base, "memory")) >= 0 &&
             (m = v2_enable(b->cgroup_dir, "memory")) >= 0)
        b->memory_cgroup_dir = obx_xstrdup(b->cgroup_dir);
    if (m < 0) {
        free(b->memory_cgroup_dir);
        b->memory_cgroup_dir = NULL;
    }
    /* What every box start will do, tried once now: a cgroup that cannot take a process is not
     * used, rather than failing every box. */
    if (b->cgroup_dir || b->memory_cgroup_dir) {
        int p = probe_attach(b);
        if (p < 0) {
            free(b->cgroup_dir);
            free(b->memory_cgroup_dir);
            b->cgroup_dir = b->memory_cgroup_dir = NULL;
            r = m = p;
        }
    }
    if (b->memory_cgroup_dir)
        obx_debug("sandbox: boxes get a memory cgroup below %s", b->memory_cgroup_dir);
    else
        obx_debug("sandbox: no memory cgroup for the boxes (%s); memory is limited per process",
                  strerror(-m));
    if (b->cgroup_dir) {
        obx_debug("sandbox: boxes get a pids cgroup below %s (cgroup v%d)", b->cgroup_dir,
                  v2 ? 2 : 1);
        return;
    }
    /* Only boxes running as root would lose their process limit without one; boxes of a root
     * worker run as host uids of their own, and everyone keeps RLIMIT_NPROC. */
    if (geteuid() == 0 && !b->host_uid_count)
        obx_warn("sandbox: no pids cgroup for the boxes (%s); running as root, a box's process "
                 "limit then does not hold (the kernel exempts root from RLIMIT_NPROC)",
                 strerror(-r));
    else
        obx_debug("sandbox: no pids cgroup for the boxes (%s); RLIMIT_NPROC applies", strerror(-r));
}

/* Makes <parent>/<id>, writes value to its limit file and moves pid in. */
static int attach_one(const char *parent, const char *id, const char *limit_file, const char *value,
                      pid_t pid)
{
    char dir[PATH_MAX], num[24];
    int n = snprintf(dir, sizeof(dir), "%s/%s", parent, id);
    if (n < 0 || n >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    int r = write_string(dir, limit_file, value);
    if (r >= 0) {
        snprintf(num, sizeof(num), "%d", (int)pid);
        r = write_string(dir, "cgroup.procs", num);
    }
    if (r < 0)
        (void)rmdir(dir);
    return r;
}

int obx_bwrap_cgroup_attach(struct obx_bwrap_runtime *b, const char *id, pid_t pid,
                            uint32_t max_pids, uint64_t max_memory)
{
    char num[24];
    if (b->memory_cgroup_dir) {
        bool v2 = obx_streq(b->memory_cgroup_dir, b->cgroup_dir ? b->cgroup_dir : "");
        snprintf(num, sizeof(num), "%llu", (unsigned long long)max_memory);
        int r = attach_one(b->memory_cgroup_dir, id, v2 ? "memory.max" : "memory.limit_in_bytes",
                           num, pid);
        if (r < 0)
            return r;
    }
    if (!b->cgroup_dir)
        return 0;
    snprintf(num, sizeof(num), "%u", max_pids);
    return attach_one(b->cgroup_dir, id, "pids.max", num, pid);
}

static void remove_one(const char *parent, const char *id)
{
    if (!parent)
        return;
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s/%s", parent, id);
    if (n < 0 || n >= (int)sizeof(dir))
        return;
    /* After a normal stop every process of the box is reaped; a box killed from outside (a
     * failed start, a stale one) may take a moment to empty. */
    for (int i = 0;; i++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY || i >= CGROUP_RMDIR_TRIES)
            break;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    obx_warn("sandbox: cannot remove cgroup %s: %s", dir, strerror(errno));
}

void obx_bwrap_cgroup_remove(struct obx_bwrap_runtime *b, const char *id)
{
    remove_one(b->cgroup_dir, id);
    if (b->memory_cgroup_dir &&
        !obx_streq(b->memory_cgroup_dir, b->cgroup_dir ? b->cgroup_dir : ""))
        remove_one(b->memory_cgroup_dir, id);
}

/* Moves a child that only waits into a probe cgroup below each parent, as a box start does, then
 * removes both. 0, or a negative errno. */
static int probe_attach(struct obx_bwrap_runtime *b)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        return -e;
    }
    if (pid == 0) {
        char c;
        close(pfd[1]);
        (void)read(pfd[0], &c, 1); /* until the parent closes its end (or dies) */
        _exit(0);
    }
    close(pfd[0]);
    char id[40];
    snprintf(id, sizeof(id), "probe-%d", (int)getpid());
    int r = obx_bwrap_cgroup_attach(b, id, pid, 16, 64ull << 20);
    close(pfd[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    obx_bwrap_cgroup_remove(b, id);
    return r;
}
