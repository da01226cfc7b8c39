/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host directories in boxes (onlyboxes mcp --mount HOST_DIR:BOX_PATH[:ro|:rw]): parsing and the
 * refusals that keep a mount from handing a box the host itself. A mounted directory is the one
 * hole in a box's wall on purpose, so the host side is resolved (symlinks and all) and checked
 * against what must never be inside one: the root, the home directory (or a directory above
 * it), /etc, the kernel's pseudo file systems, the docker socket (which is root on the host) and
 * the boxes' own state directory (their sockets). The box side must not cover the box's system
 * directories. Read-only unless :rw is written.
 */
#include "worker-internal.h"

#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>

/* True when dir is path or a directory above it. */
static bool holds(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    if (obx_streq(dir, "/"))
        return true;
    return strncmp(dir, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static char *resolved(const char *path)
{
    char buf[PATH_MAX];
    return realpath(path, buf) ? obx_xstrdup(buf) : NULL;
}

/* What the host side may not be, hold, or (for the state directory) be inside of. */
static int check_host(const char *host, const char *spec, struct obx_error *err)
{
    if (obx_streq(host, "/"))
        return obx_error_set(err, EPERM, OBX_ERR_INVALID_PAYLOAD,
                             "--mount %s: refusing to mount / (the whole host) into the boxes",
                             spec);
    const char *homes[2] = {getenv("HOME"), NULL};
    struct passwd *pw = getpwuid(geteuid());
    if (pw)
        homes[1] = pw->pw_dir;
    for (size_t i = 0; i < 2; i++) {
        _cleanup_free_ char *home = homes[i] && *homes[i] ? resolved(homes[i]) : NULL;
        if (home && holds(host, home))
            return obx_error_set(err, EPERM, OBX_ERR_INVALID_PAYLOAD,
                                 "--mount %s: refusing to mount %s: it %s the home directory %s "
                                 "(keys, tokens, shell history); mount the project directory "
                                 "inside it instead",
                                 spec, host, obx_streq(host, home) ? "is" : "holds", home);
    }
    static const char *const system[] = {"/etc", "/proc", "/sys", "/dev", "/boot"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(system); i++)
        if (holds(system[i], host))
            return obx_error_set(err, EPERM, OBX_ERR_INVALID_PAYLOAD,
                                 "--mount %s: refusing to mount %s: it is part of the host's "
                                 "system directory %s",
                                 spec, host, system[i]);
    /* The docker socket gives root on the host to whoever can write to it. */
    const char *dh = getenv("DOCKER_HOST");
    const char *sockets[] = {dh && strncmp(dh, "unix://", 7) == 0 ? dh + 7 : NULL,
                             "/var/run/docker.sock", "/run/docker.sock"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(sockets); i++) {
        _cleanup_free_ char *sock = sockets[i] ? resolved(sockets[i]) : NULL;
        if (sock && holds(host, sock))
            return obx_error_set(err, EPERM, OBX_ERR_INVALID_PAYLOAD,
                                 "--mount %s: refusing to mount %s: it holds the docker socket "
                                 "%s, which gives root on this host",
                                 spec, host, sock);
    }
    /* The boxes' sockets and state: none may reach another's. */
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    _cleanup_free_ char *state = xdg && xdg[0] == '/'
                                     ? obx_xasprintf("%s/onlyboxes", xdg)
                                     : obx_xasprintf("/tmp/onlyboxes-%u", (unsigned)geteuid());
    _cleanup_free_ char *state_real = resolved(state);
    const char *st = state_real ? state_real : state;
    if (holds(host, st) || holds(st, host))
        return obx_error_set(err, EPERM, OBX_ERR_INVALID_PAYLOAD,
                             "--mount %s: refusing to mount %s: it %s the boxes' state directory "
                             "%s",
                             spec, host, holds(host, st) ? "holds" : "is inside", st);
    return 0;
}

/* An absolute, normalized path outside the box's system directories. */
static int check_box(const char *box, const char *spec, struct obx_error *err)
{
    if (box[0] != '/' || strstr(box, "//") || strstr(box, "/./") || strstr(box, "/../") ||
        (strlen(box) > 1 && box[strlen(box) - 1] == '/') ||
        (strlen(box) >= 2 && obx_streq(box + strlen(box) - 2, "/.")) ||
        (strlen(box) >= 3 && obx_streq(box + strlen(box) - 3, "/..")))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "--mount %s: the box path must be absolute and plain (no //, . or "
                             "..), e.g. /workspace/project",
                             spec);
    if (obx_streq(box, "/"))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "--mount %s: the box path cannot be / (the box's root)", spec);
    static const char *const system[] = {"/bin",
                                         "/boot",
                                         "/dev",
                                         "/etc",
                                         "/lib",
                                         "/lib32",
                                         "/lib64",
                                         "/libx32",
                                         "/proc",
                                         "/root",
                                         "/run",
                                         "/sbin",
                                         "/sys",
                                         "/tmp",
                                         "/usr",
                                         "/var",
                                         OBX_BOX_AGENT_PATH,
                                         "/.onlyboxes"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(system); i++)
        if (holds(system[i], box) || holds(box, system[i]))
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "--mount %s: the box path %s would cover the box's own %s; use "
                                 "/workspace/NAME or a new directory such as /mnt/NAME",
                                 spec, box, system[i]);
    return 0;
}

int obx_worker_mount_parse(const char *spec, struct obx_box_mount *ret, struct obx_error *err)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_free_ char *s = obx_xstrdup(spec);
    size_t n = strlen(s);
    bool rw = false;
    if (n > 3 && (obx_streq(s + n - 3, ":rw") || obx_streq(s + n - 3, ":ro"))) {
        rw = obx_streq(s + n - 3, ":rw");
        s[n - 3] = '\0';
    }
    char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1])
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "--mount %s: expected HOST_DIR:BOX_PATH, with :ro (the default) or "
                             ":rw at the end",
                             spec);
    *colon = '\0';
    const char *box = colon + 1;
    _cleanup_free_ char *host = resolved(s);
    struct stat st;
    if (!host || stat(host, &st) < 0)
        return obx_error_set(err, errno, OBX_ERR_INVALID_PAYLOAD, "--mount %s: %s: %s", spec, s,
                             strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return obx_error_set(err, ENOTDIR, OBX_ERR_INVALID_PAYLOAD,
                             "--mount %s: %s is not a directory", spec, s);
    int r = check_host(host, spec, err);
    if (r >= 0)
        r = check_box(box, spec, err);
    if (r < 0)
        return r;
    ret->host = TAKE_PTR(host);
    ret->box = obx_xstrdup(box);
    ret->rw = rw;
    return 0;
}

void obx_worker_mount_done(struct obx_box_mount *m)
{
    free((char *)m->host);
    free((char *)m->box);
    memset(m, 0, sizeof(*m));
}

static int mount_cmp(const void *a, const void *b)
{
    const struct obx_box_mount *x = a, *y = b;
    size_t lx = strlen(x->box), ly = strlen(y->box);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x->box, y->box);
}

int obx_worker_mounts_check(struct obx_box_mount *m, size_t n, struct obx_error *err)
{
    qsort(m, n, sizeof(*m), mount_cmp);
    for (size_t i = 1; i < n; i++)
        if (obx_streq(m[i].box, m[i - 1].box))
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "--mount: two directories for one box path %s (%s and %s)",
                                 m[i].box, m[i - 1].host, m[i].host);
    return 0;
}
