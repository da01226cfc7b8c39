/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FLIST, FDELETE and FMKDIR: a directory's entries, removing files and directories, creating
 * directories. The agent runs inside the box, so every path is the box's own view; symlinks are
 * never followed while removing (a link is removed, not what it points to), and a recursive
 * removal stays on the file system it starts on, so a host directory mounted inside is never
 * emptied through it. Synchronous on the agent's thread; a listing is bounded in entries and
 * bytes.
 */
#include "agent-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>

#define LIST_DEFAULT_ENTRIES 10000
#define LIST_MAX_ENTRIES 10000
#define LIST_MAX_NAME_BYTES (1u << 20) /* names in one answer, so it stays a small message */

struct entry {
    char *name;
    json_t *json;
};

static int entry_cmp(const void *x, const void *y)
{
    return strcmp(((const struct entry *)x)->name, ((const struct entry *)y)->name);
}

static json_t *entry_json(int dfd, const char *name, const struct stat *st)
{
    json_t *e = json_pack("{s:o, s:s, s:I, s:I, s:i}", "name", agent_path_json(name), "type",
                          agent_file_type(st->st_mode), "size_bytes",
                          (json_int_t)(S_ISREG(st->st_mode) ? st->st_size : 0), "mtime_unix_ms",
                          (json_int_t)agent_mtime_ms(st), "mode", (int)(st->st_mode & 07777));
    if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
        if (n >= 0) {
            target[n] = '\0';
            json_object_set_new(e, "target", agent_path_json(target));
        }
    }
    return e;
}

static void list(struct agent *a, uint32_t id, json_t *root)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    json_t *jmax = json_object_get(root, "max_entries");
    if (jmax && !json_is_null(jmax) &&
        (!json_is_integer(jmax) || json_integer_value(jmax) < 1 ||
         json_integer_value(jmax) > LIST_MAX_ENTRIES)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "FLIST: \"max_entries\" must be an integer from 1 to %d",
                         LIST_MAX_ENTRIES);
        return;
    }
    size_t max =
        jmax && json_is_integer(jmax) ? (size_t)json_integer_value(jmax) : LIST_DEFAULT_ENTRIES;
    _cleanup_free_ char *path =
        agent_resolve_path_in(a, user_path, json_string_value(json_object_get(root, "state")));
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
    if (dfd < 0) {
        agent_send_path_error(a, id, user_path, errno);
        return;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        agent_send_path_error(a, id, user_path, errno);
        close(dfd);
        return;
    }
    struct entry *v = NULL;
    size_t n = 0, cap = 0, name_bytes = 0;
    bool truncated = false;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (obx_streq(de->d_name, ".") || obx_streq(de->d_name, ".."))
            continue;
        size_t nl = strlen(de->d_name);
        if (n == max || name_bytes + nl > LIST_MAX_NAME_BYTES) {
            truncated = true;
            break;
        }
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* removed meanwhile */
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            v = obx_xrealloc(v, cap * sizeof(*v));
        }
        v[n].name = obx_xstrdup(de->d_name);
        v[n].json = entry_json(dfd, de->d_name, &st);
        name_bytes += nl;
        n++;
    }
    if (n)
        qsort(v, n, sizeof(*v), entry_cmp);
    json_t *entries = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(entries, v[i].json);
        free(v[i].name);
    }
    free(v);
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    closedir(d);
    agent_send_json(a, OBX_AF_OK, id,
                    json_pack("{s:o, s:o, s:b}", "path", agent_path_json(real), "entries", entries,
                              "truncated", truncated));
}

void agent_file_list(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    agent_file_op(a, id, "FLIST", payload, len, list);
}

/* nftw() takes no user data: the one removal in progress (the agent has one thread). */
static int rm_errno;
static char rm_failed[PATH_MAX];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    int r = flag == FTW_DP ? rmdir(p) : unlink(p);
    if (r < 0 && errno != ENOENT) {
        rm_errno = errno;
        snprintf(rm_failed, sizeof(rm_failed), "%s", p);
        return 1;
    }
    return 0;
}

/* True when path is where another file system is mounted (its parent lives on another one). */
static bool is_mount_point(const char *path, const struct stat *st)
{
    _cleanup_free_ char *parent = obx_xasprintf("%s/..", path);
    struct stat pst;
    return stat(parent, &pst) == 0 && (pst.st_dev != st->st_dev || pst.st_ino == st->st_ino);
}

static void remove_path(struct agent *a, uint32_t id, json_t *root)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    json_t *jrec = json_object_get(root, "recursive");
    if (jrec && !json_is_null(jrec) && !json_is_boolean(jrec)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "FDELETE: \"recursive\" must be a boolean");
        return;
    }
    bool recursive = json_is_true(jrec);
    _cleanup_free_ char *path =
        agent_resolve_path_in(a, user_path, json_string_value(json_object_get(root, "state")));
    struct stat st;
    if (lstat(path, &st) < 0) {
        agent_send_path_error(a, id, user_path, errno);
        return;
    }
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    if (S_ISDIR(st.st_mode) && is_mount_point(path, &st)) {
        agent_send_error(a, id, OBX_ERR_PERMISSION_DENIED,
                         "%s is a mount point (the box's root, its workspace or a mounted "
                         "directory); remove what is in it instead",
                         user_path);
        return;
    }
    int r = 0;
    if (!S_ISDIR(st.st_mode)) {
        r = unlink(path) < 0 ? -errno : 0;
    } else if (!recursive) {
        r = rmdir(path) < 0 ? -errno : 0;
    } else {
        rm_errno = 0;
        rm_failed[0] = '\0';
        if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
            r = -errno;
        else if (rm_errno)
            r = -rm_errno;
        if (r == -EBUSY || (r < 0 && rm_failed[0] && !obx_streq(rm_failed, path))) {
            /* Something inside could not go (another file system mounted there, a file the box
             * user may not remove): say what. */
            agent_send_error(a, id,
                             r == -EBUSY ? OBX_ERR_PERMISSION_DENIED : OBX_ERR_EXECUTION_FAILED,
                             "cannot remove %.300s: %s; what could be removed is gone",
                             rm_failed[0] ? rm_failed : user_path, strerror(-r));
            return;
        }
    }
    if (r < 0) {
        agent_send_path_error(a, id, user_path, -r);
        return;
    }
    agent_send_json(a, OBX_AF_OK, id, json_pack("{s:o}", "path", agent_path_json(real)));
}

void agent_file_delete(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    agent_file_op(a, id, "FDELETE", payload, len, remove_path);
}

int agent_mkdir_parents(const char *path, char ***created, size_t *n)
{
    _cleanup_free_ char *p = obx_xstrdup(path);
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    /* Walk down from the first missing ancestor: creating only what is not there. */
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (!end && *s != '/')
            continue;
        *s = '\0';
        struct stat st;
        if (stat(p, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        } else if (errno != ENOENT) {
            return -errno;
        } else if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            return -errno;
        } else if (created) {
            *created = obx_xrealloc(*created, (*n + 1) * sizeof(**created));
            (*created)[(*n)++] = obx_xstrdup(p);
        }
        if (end)
            return 0;
        *s = '/';
    }
}

static void make_dir(struct agent *a, uint32_t id, json_t *root)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    _cleanup_free_ char *path =
        agent_resolve_path_in(a, user_path, json_string_value(json_object_get(root, "state")));
    char **created = NULL;
    size_t n = 0;
    int r = agent_mkdir_parents(path, &created, &n);
    for (size_t i = 0; i < n; i++)
        free(created[i]);
    free(created);
    if (r < 0) {
        agent_send_path_error(a, id, user_path, -r);
        return;
    }
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    agent_send_json(a, OBX_AF_OK, id,
                    json_pack("{s:o, s:b}", "path", agent_path_json(real), "created", n > 0));
}

void agent_file_mkdir(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    agent_file_op(a, id, "FMKDIR", payload, len, make_dir);
}
