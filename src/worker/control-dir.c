/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the control sockets of `onlyboxes mcp` live, and who may reach them. Each process's
 * socket is mcp-PID.sock in one directory per user: $XDG_RUNTIME_DIR/onlyboxes when
 * XDG_RUNTIME_DIR names a directory of the user's (the login session's private one), else
 * /tmp/onlyboxes-UID. The directory is made 0700 and refused when it is someone else's or lets
 * others in: a socket of another user's there could take files meant for a box, and another user
 * must not even see which sessions run. Every connection's peer must be this user as well
 * (SO_PEERCRED), so a socket that got out of the directory still answers no one else.
 *
 * A process killed without a chance to clean up leaves its socket behind; the next server or
 * client that finds a socket of a process that is gone removes it.
 */
#include "control-internal.h"

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "common/log.h"

#define DIR_NAME "onlyboxes"
/* The longest socket name in a directory: "/mcp-4194304.sock" with room to spare. */
#define SOCKET_NAME_MAX 24

int obx_control_dir_check(const char *dir, bool create, struct obx_error *err)
{
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot make %s: %s", dir,
                             strerror(errno));
    struct stat st;
    if (lstat(dir, &st) < 0) {
        int e = errno;
        obx_error_set(err, e, OBX_ERR_INTERNAL, "%s: %s", dir, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode))
        return obx_error_set(err, ENOTDIR, OBX_ERR_FORBIDDEN,
                             "%s is not a directory (a symlink or a file is not trusted)", dir);
    if (st.st_uid != geteuid())
        return obx_error_set(err, EPERM, OBX_ERR_FORBIDDEN,
                             "%s belongs to uid %u, not to this user (uid %u): it is not used", dir,
                             (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077)
        return obx_error_set(err, EPERM, OBX_ERR_FORBIDDEN,
                             "%s has mode %04o, which lets other users in: it is not used until it "
                             "is 0700 (chmod 700 %s)",
                             dir, (unsigned)(st.st_mode & 07777), dir);
    return 0;
}

/* XDG_RUNTIME_DIR when it is an absolute path to a directory of this user's that it may write
 * in, short enough for the sockets' paths. */
static bool xdg_usable(const char *xdg)
{
    struct stat st;
    return xdg && xdg[0] == '/' &&
           strlen(xdg) + sizeof("/" DIR_NAME) + SOCKET_NAME_MAX <=
               sizeof(((struct sockaddr_un *)0)->sun_path) &&
           stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
           access(xdg, W_OK | X_OK) == 0;
}

int obx_control_dir_own(char *out, size_t size, struct obx_error *err)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n = xdg_usable(xdg) ? snprintf(out, size, "%s/" DIR_NAME, xdg)
                            : snprintf(out, size, "/tmp/" DIR_NAME "-%u", (unsigned)geteuid());
    if (n < 0 || (size_t)n >= size ||
        (size_t)n + SOCKET_NAME_MAX > sizeof(((struct sockaddr_un *)0)->sun_path))
        return obx_error_set(err, ENAMETOOLONG, OBX_ERR_INTERNAL,
                             "the control directory's path is too long for a socket");
    return 0;
}

int obx_control_name_pid(const char *name, bool *ret_final)
{
    if (strncmp(name, "mcp-", 4) != 0)
        return 0;
    const char *p = name + 4;
    int64_t pid = 0;
    while (*p >= '0' && *p <= '9' && pid <= INT32_MAX)
        pid = pid * 10 + (*p++ - '0');
    if (p == name + 4 || pid <= 0 || pid > INT32_MAX)
        return 0;
    *ret_final = obx_streq(p, ".sock");
    return *ret_final || obx_streq(p, ".new") ? (int)pid : 0;
}

static bool pid_gone(int pid)
{
    return kill(pid, 0) < 0 && errno == ESRCH;
}

void obx_control_dir_prune(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        bool final;
        int pid = obx_control_name_pid(de->d_name, &final);
        if (pid > 0 && pid != getpid() && pid_gone(pid) && unlinkat(dirfd(d), de->d_name, 0) == 0)
            obx_debug("removed %s/%s: its process is gone", dir, de->d_name);
    }
    closedir(d);
}

int obx_control_peer_check(int fd, struct obx_error *err)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return obx_error_set(err, errno, OBX_ERR_FORBIDDEN, "cannot tell who is connected: %s",
                             strerror(errno));
    if (cred.uid != geteuid())
        return obx_error_set(err, EACCES, OBX_ERR_FORBIDDEN,
                             "this control socket answers only its own user (uid %u); the "
                             "connection came from uid %u (pid %d)",
                             (unsigned)geteuid(), (unsigned)cred.uid, (int)cred.pid);
    return 0;
}

static int peer_by_pid(const void *a, const void *b)
{
    const struct obx_worker_control_peer *x = a, *y = b;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Whether a socket answers: a socket file of a process whose pid lives on in another program
 * refuses connections, and is removed (when it is still the file that refused). */
static bool socket_live(const char *path)
{
    struct stat before, after;
    if (lstat(path, &before) < 0 || !S_ISSOCK(before.st_mode))
        return false;
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS)
        return fd >= 0;
    if (errno == ECONNREFUSED && lstat(path, &after) == 0 && after.st_ino == before.st_ino &&
        after.st_dev == before.st_dev && unlink(path) == 0)
        obx_debug("removed %s: nothing listens on it", path);
    return false;
}

int obx_worker_control_find(struct obx_worker_control_peers *ret, struct obx_error *err)
{
    ret->n = 0;
    int r = obx_control_dir_own(ret->where, sizeof(ret->where), err);
    if (r < 0)
        return r;
    r = obx_control_dir_check(ret->where, false, err);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    obx_control_dir_prune(ret->where);
    DIR *d = opendir(ret->where);
    if (!d)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "%s: %s", ret->where, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) && ret->n < OBX_ARRAY_SIZE(ret->v)) {
        bool final;
        int pid = obx_control_name_pid(de->d_name, &final);
        if (pid <= 0 || !final)
            continue;
        struct obx_worker_control_peer *p = &ret->v[ret->n];
        p->pid = pid;
        int len = snprintf(p->path, sizeof(p->path), "%s/%s", ret->where, de->d_name);
        if (len > 0 && (size_t)len < sizeof(p->path) && socket_live(p->path))
            ret->n++;
    }
    closedir(d);
    if (ret->n > 1)
        qsort(ret->v, ret->n, sizeof(ret->v[0]), peer_by_pid);
    return (int)ret->n;
}
