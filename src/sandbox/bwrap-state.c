/* SPDX-License-Identifier: Apache-2.0 */
/*
 * On-disk state of the bubblewrap runtime. The state directory (0700, ours) holds boxes/<box-id>/
 * per box: workspace/ (the box's /workspace where bwrap cannot size a tmpfs for it, before 0.8),
 * an `owner` record (worker pid and start time,
 * worker id, session) written before the box starts and a `pids` record (bwrap and the box's
 * PID 1, with start times) written right after. A later
 * worker uses them to tell boxes of a live owner from leftovers of a dead one, and to be sure a
 * pid it kills is still the process that was recorded. Removal never follows a symlink: workspace
 * content is written by untrusted code. Called from any thread; nothing here keeps state.
 */
#include "bwrap-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"

/* The box's /etc/passwd and /etc/group, handed to bwrap as data: the sandbox user (uid
 * OBX_SANDBOX_UID) plus the names tools expect. Only the sandbox user is mapped in the box;
 * everything else shows up as the overflow id 65534. */
const char obx_bwrap_box_passwd[] = "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                    "sandbox:x:65532:65532:sandbox:/workspace:/bin/sh\n"
                                    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const char obx_bwrap_box_group[] = "root:x:0:\n"
                                   "sandbox:x:65532:\n"
                                   "nogroup:x:65534:\n";
_Static_assert(OBX_SANDBOX_UID == 65532, "the box's passwd and group name uid 65532");

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

int obx_bwrap_proc_start_time(pid_t pid, unsigned long long *ret)
{
    if (pid <= 0)
        return -ESRCH;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    char buf[2048];
    ssize_t n;
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == ESRCH ? -ESRCH : -errno;
    buf[n] = '\0';
    /* comm (field 2) may hold spaces and parentheses: count fields from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -EBADMSG;
    p += 2; /* field 3 */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -EBADMSG;
        p++;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno || end == p)
        return -EBADMSG;
    *ret = v;
    return 0;
}

/* Reads a small file below dirfd (not following a final symlink) into buf as a string. */
static int read_record(int dirfd, const char *name, char *buf, size_t size)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    while (len < size - 1) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return 0;
}

/* Finds "key=<decimal>" on a line of a record. */
static int record_get_u64(const char *rec, const char *key, unsigned long long *ret)
{
    size_t klen = strlen(key);
    for (const char *line = rec; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            const char *v = line + klen + 1;
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno || end == v || (*end != '\n' && *end != '\0'))
                return -EBADMSG;
            *ret = n;
            return 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    return -ENOENT;
}

static int write_file_at(int dirfd, const char *name, const char *data, size_t len, mode_t mode)
{
    _cleanup_close_ int fd =
        openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int r = obx_write_all(fd, data, len);
    if (r < 0)
        return r;
    if (close(TAKE_FD(fd)) < 0)
        return -errno;
    return 0;
}

/* Labels go into a line-based record: keep them short and on one line. */
static void sanitize_label(char *out, size_t size, const char *in)
{
    size_t n = 0;
    for (const char *p = in ? in : ""; *p && n + 1 < size; p++)
        out[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
    out[n] = '\0';
}

/* mkdir -p with mode 0700 for the components that do not exist yet. */
static int mkdir_parents(const char *path)
{
    char tmp[OBX_BWRAP_STATE_DIR_MAX + 1];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Opens a directory we own, refusing symlinks and directories of other users, and makes it 0700.
 */
static int open_private_dir(int dirfd, const char *path, const char *shown, int *ret,
                            struct obx_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return obx_error_set(
            err, e, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot open state directory %s: %s%s", shown,
            strerror(e), e == ELOOP || e == ENOTDIR ? " (not a plain directory; refusing)" : "");
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot stat %s: %s", shown,
                             strerror(errno));
    if (st.st_uid != geteuid())
        return obx_error_set(err, EPERM, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "state directory %s is owned by uid %u, not by us (uid %u); refusing "
                             "to use it (set another state directory or remove it)",
                             shown, (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot chmod 0700 %s: %s",
                             shown, strerror(errno));
    *ret = TAKE_FD(fd);
    return 0;
}

int obx_bwrap_state_open(struct obx_bwrap_runtime *b, const char *configured, struct obx_error *err)
{
    _cleanup_free_ char *dir = NULL;
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (!obx_str_empty(configured))
        dir = obx_xstrdup(configured);
    else if (xdg && xdg[0] == '/')
        dir = obx_xasprintf("%s/onlyboxes", xdg);
    else
        dir = obx_xasprintf("/tmp/onlyboxes-%u", (unsigned)geteuid());
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        dir[--len] = '\0';
    if (dir[0] != '/')
        return obx_error_set(err, EINVAL, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "state directory %s is not an absolute path", dir);
    if (len > OBX_BWRAP_STATE_DIR_MAX)
        return obx_error_set(err, ENAMETOOLONG, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "state directory path is longer than %d bytes",
                             OBX_BWRAP_STATE_DIR_MAX);
    int r = mkdir_parents(dir);
    if (r < 0)
        return obx_error_set(err, r, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot create state directory %s: %s", dir, strerror(-r));
    _cleanup_close_ int fd = -1;
    r = open_private_dir(AT_FDCWD, dir, dir, &fd, err);
    if (r < 0)
        return r;
    if (mkdirat(fd, "boxes", 0700) < 0 && errno != EEXIST)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot create %s/boxes: %s",
                             dir, strerror(errno));
    _cleanup_free_ char *boxes = obx_xasprintf("%s/boxes", dir);
    r = open_private_dir(fd, "boxes", boxes, &b->boxes_fd, err);
    if (r < 0)
        return r;
    b->state_dir = TAKE_PTR(dir);
    b->boxes_dir = TAKE_PTR(boxes);
    return 0;
}

static int box_path(char *out, const char *dir, const char *id, const char *leaf)
{
    int n = leaf ? snprintf(out, PATH_MAX, "%s/%s/%s", dir, id, leaf)
                 : snprintf(out, PATH_MAX, "%s/%s", dir, id);
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

int obx_bwrap_box_create(struct obx_bwrap_runtime *b, const struct obx_box_spec *spec,
                         const char *id, struct obx_bwrap_box *box, struct obx_error *err)
{
    int r;
    if ((r = box_path(box->dir, b->boxes_dir, id, NULL)) < 0 ||
        (r = box_path(box->workspace, b->boxes_dir, id, "workspace")) < 0)
        return obx_error_set(err, r, OBX_ERR_INTERNAL, "box path too long");

    if (mkdirat(b->boxes_fd, id, 0700) < 0)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot create box directory %s: %s",
                             box->dir, strerror(errno));
    _cleanup_close_ int dfd =
        openat(b->boxes_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        goto fail;
    }

    /* The owner record first: a box directory without one is treated as "being created". */
    unsigned long long start = 0;
    (void)obx_bwrap_proc_start_time(getpid(), &start);
    char worker[OBX_BWRAP_LABEL_MAX], session[OBX_BWRAP_LABEL_MAX];
    sanitize_label(worker, sizeof(worker), spec->worker_id);
    sanitize_label(session, sizeof(session), spec->session);
    char rec[OBX_BWRAP_RECORD_MAX];
    int n = snprintf(rec, sizeof(rec),
                     "owner_pid=%d\nowner_start=%llu\nworker=%s\nsession=%s\ncreated_ms=%lld\n",
                     (int)getpid(), start, worker, session, (long long)obx_unix_ms());
    if ((r = write_file_at(dfd, "owner", rec, (size_t)n, 0600)) < 0)
        goto fail;
    if (mkdirat(dfd, "workspace", 0755) < 0) {
        r = -errno;
        goto fail;
    }
    return 0;

fail:
    (void)obx_bwrap_rm_tree(b->boxes_fd, id);
    return obx_error_set(err, r, OBX_ERR_INTERNAL, "cannot prepare box directory %s: %s", box->dir,
                         strerror(-r));
}

int obx_bwrap_box_record_pids(struct obx_bwrap_runtime *b, const char *id, pid_t bwrap_pid,
                              pid_t child_pid)
{
    unsigned long long bs = 0, cs = 0;
    (void)obx_bwrap_proc_start_time(bwrap_pid, &bs);
    if (child_pid > 0)
        (void)obx_bwrap_proc_start_time(child_pid, &cs);
    _cleanup_close_ int dfd =
        openat(b->boxes_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    char rec[256];
    int n = snprintf(rec, sizeof(rec),
                     "bwrap_pid=%d\nbwrap_start=%llu\nchild_pid=%d\nchild_start=%llu\n",
                     (int)bwrap_pid, bs, (int)child_pid, cs);
    return write_file_at(dfd, "pids", rec, (size_t)n, 0600);
}

int obx_bwrap_box_remove(struct obx_bwrap_runtime *b, const char *id)
{
    return obx_bwrap_rm_tree(b->boxes_fd, id);
}

/* Opens name below dirfd as a directory for removal. O_PATH|O_NOFOLLOW pins the inode without
 * following a symlink and without needing read permission; if the user chmod'ed it so that we
 * cannot list or unlink in it, it is chmod'ed through /proc/self/fd (which acts on exactly that
 * inode) before it is opened for reading. */
static int open_dir_for_removal(int dirfd, const char *name, int *ret)
{
    _cleanup_close_ int pfd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return -errno;
    struct stat st;
    if (fstat(pfd, &st) < 0)
        return -errno;
    if ((st.st_mode & 0700) != 0700) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
        if (chmod(proc, 0700) < 0)
            return -errno;
    }
    int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *ret = fd;
    return 0;
}

/* Empties the directory fd. Directories deeper than OBX_BWRAP_RM_MAX_DEPTH are moved up into
 * root_fd (under a fresh random name) rather than descended into, so the open descriptors and the
 * stack stay bounded however deep a tree the box built; the caller runs another pass for them. */
static int rm_contents(int fd, int root_fd, unsigned depth, bool *moved)
{
    int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup_fd < 0)
        return -errno;
    _cleanup_(closedirp) DIR *d = fdopendir(dup_fd);
    if (!d) {
        close(dup_fd);
        return -errno;
    }
    int ret = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        const char *name = de->d_name;
        if (obx_streq(name, ".") || obx_streq(name, ".."))
            continue;
        if (unlinkat(fd, name, 0) == 0 || errno == ENOENT)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            if (!ret)
                ret = -errno;
            continue;
        }
        if (depth >= OBX_BWRAP_RM_MAX_DEPTH) {
            char tmp[32];
            memcpy(tmp, ".obx-rm-", 8);
            obx_random_hex(tmp + 8, 8);
            if (renameat2(fd, name, root_fd, tmp, RENAME_NOREPLACE) == 0)
                *moved = true;
            else if (!ret)
                ret = -errno;
            continue;
        }
        int child;
        int r = open_dir_for_removal(fd, name, &child);
        if (r < 0) {
            if (r != -ENOENT && !ret)
                ret = r;
            continue;
        }
        r = rm_contents(child, root_fd, depth + 1, moved);
        close(child);
        if (r < 0 && !ret)
            ret = r;
        if (unlinkat(fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && !ret)
            ret = -errno;
    }
    if (errno && !ret)
        ret = -errno;
    return ret;
}

int obx_bwrap_rm_tree(int dirfd, const char *name)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int fd;
    int r = open_dir_for_removal(dirfd, name, &fd);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    /* Each pass removes at least OBX_BWRAP_RM_MAX_DEPTH levels of whatever it moved up; the
     * bound only guards against a tree that keeps growing while we remove it. */
    for (unsigned pass = 0; pass < 1000000; pass++) {
        bool moved = false;
        r = rm_contents(fd, fd, 0, &moved);
        if (!moved)
            break;
    }
    close(fd);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return r < 0 ? r : -errno;
    return 0;
}

static bool argv0_ends_with(pid_t pid, const char *suffix)
{
    char path[64], buf[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if (read_record(AT_FDCWD, path, buf, sizeof(buf)) < 0)
        return false;
    size_t n = strlen(buf), s = strlen(suffix); /* argv[0] ends at the first NUL */
    return n >= s && strcmp(buf + n - s, suffix) == 0;
}

bool obx_bwrap_kill_if_same(pid_t pid, unsigned long long start, const char *want_argv0_suffix)
{
    unsigned long long now;
    if (pid <= 1 || start == 0 || obx_bwrap_proc_start_time(pid, &now) < 0 || now != start)
        return false;
    if (want_argv0_suffix && !argv0_ends_with(pid, want_argv0_suffix))
        return false;
    return kill(pid, SIGKILL) == 0;
}

/* A box is stale when its owner record names a process that is gone or that is another process
 * now (same pid, other start time). Without a readable record the box may still be in creation,
 * so only an old one counts. When liveness cannot be determined the box is left alone. */
static bool box_is_stale(int boxes_fd, const char *name)
{
    _cleanup_close_ int dfd =
        openat(boxes_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return false;
    char rec[OBX_BWRAP_RECORD_MAX];
    unsigned long long pid = 0, start = 0;
    if (read_record(dfd, "owner", rec, sizeof(rec)) < 0 ||
        record_get_u64(rec, "owner_pid", &pid) < 0 ||
        record_get_u64(rec, "owner_start", &start) < 0 || pid == 0 || pid > INT_MAX) {
        struct stat st;
        return fstat(dfd, &st) == 0 && time(NULL) - st.st_mtime > OBX_BWRAP_YOUNG_BOX_SEC;
    }
    unsigned long long now;
    int r = obx_bwrap_proc_start_time((pid_t)pid, &now);
    if (r == -ESRCH)
        return true;
    if (r < 0)
        return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
    return start != 0 && now != start;
}

/* Kills the processes whose command line carries box name's marker (OBX_BWRAP_MARKER): bwrap
 * and its pid namespace's init, which a worker killed while the box started leaves waiting for
 * each other with no pids recorded. The marker is the box's random id, so nothing else has it. */
static void kill_marked(const char *name)
{
    char needle[sizeof("--unsetenv") + sizeof(OBX_BWRAP_MARKER) + OBX_BWRAP_ID_LEN + 1];
    int nlen = snprintf(needle, sizeof(needle), "--unsetenv%c%s%s", '\0', OBX_BWRAP_MARKER, name);
    if (nlen < 0 || (size_t)nlen >= sizeof(needle))
        return;
    nlen++; /* the NUL after the marker: no longer name matches */
    _cleanup_(closedirp) DIR *proc = opendir("/proc");
    if (!proc)
        return;
    static __thread char cmd[64 * 1024];
    struct dirent *de;
    while ((de = readdir(proc))) {
        int64_t pid;
        if (obx_parse_int64(de->d_name, 2, INT_MAX, &pid) < 0 || pid == getpid())
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, cmd, sizeof(cmd));
        if (n > 0 && memmem(cmd, (size_t)n, needle, (size_t)nlen) && kill((pid_t)pid, SIGKILL) == 0)
            obx_info("sandbox: killed process %d of stale box %s", (int)pid, name);
    }
}

/* Kills what is left of a stale box: its PID 1 first (that takes the whole pid namespace with it),
 * then the bwrap process outside, each only if it is still the recorded process; then whatever
 * still carries the box's marker. */
static void kill_stale_box(int boxes_fd, const char *name)
{
    _cleanup_close_ int dfd =
        openat(boxes_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    char rec[OBX_BWRAP_RECORD_MAX];
    if (dfd < 0)
        return;
    if (read_record(dfd, "pids", rec, sizeof(rec)) < 0) {
        kill_marked(name);
        return;
    }
    unsigned long long bpid = 0, bstart = 0, cpid = 0, cstart = 0;
    if (record_get_u64(rec, "child_pid", &cpid) == 0 &&
        record_get_u64(rec, "child_start", &cstart) == 0 && cpid <= INT_MAX &&
        obx_bwrap_kill_if_same((pid_t)cpid, cstart, OBX_BOX_AGENT_PATH))
        obx_info("sandbox: killed the agent (pid %llu) of stale box %s", cpid, name);
    if (record_get_u64(rec, "bwrap_pid", &bpid) == 0 &&
        record_get_u64(rec, "bwrap_start", &bstart) == 0 && bpid <= INT_MAX &&
        obx_bwrap_kill_if_same((pid_t)bpid, bstart, "bwrap"))
        obx_info("sandbox: killed bwrap (pid %llu) of stale box %s", bpid, name);
    kill_marked(name);
}

int obx_bwrap_cleanup_stale(struct obx_runtime *rt, struct obx_error *err)
{
    struct obx_bwrap_runtime *b = (struct obx_bwrap_runtime *)rt;
    /* A fresh open file description: readdir positions are not shared with other threads. */
    int fd = openat(b->boxes_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot open %s: %s", b->boxes_dir,
                             strerror(errno));
    _cleanup_(closedirp) DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot read %s: %s", b->boxes_dir,
                             strerror(errno));
    }
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (strncmp(name, OBX_BWRAP_BOX_PREFIX, strlen(OBX_BWRAP_BOX_PREFIX)) != 0 ||
            strlen(name) != OBX_BWRAP_ID_LEN)
            continue;
        if (!box_is_stale(b->boxes_fd, name))
            continue;
        kill_stale_box(b->boxes_fd, name);
        obx_bwrap_cgroup_remove(b, name);
        int r = obx_bwrap_rm_tree(b->boxes_fd, name);
        if (r < 0) {
            obx_warn("sandbox: cannot remove stale box %s/%s: %s", b->boxes_dir, name,
                     strerror(-r));
            continue;
        }
        obx_info("sandbox: removed stale box %s", name);
        count++;
    }
    return count;
}
