/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FGET and FPUT: files of any size moved across many frames (protocol.h), each transfer an entry
 * of the agent's transfer list until it ends.
 *
 * FGET sends a regular file in FCHUNKs, keeping at most the request's window unacknowledged by
 * the worker (FACK) and pausing while the outbound queue is over AGENT_BACKPRESSURE_BYTES, so a
 * slow reader at the far end slows the transfer instead of filling the agent's memory. The loop
 * calls agent_xfer_pump() once per round; reading a regular file does not block.
 *
 * FPUT writes FDATA as it arrives into a temporary file beside the target (O_EXCL, mode 0600)
 * and, once exactly the announced number of bytes came and FEND, renames it over the target:
 * readers never see a partial file, a symlink at the target is replaced rather than followed,
 * and a transfer that fails, is cancelled or is cut by the agent's end leaves nothing behind,
 * neither the temporary file nor the parent directories it created. Single-threaded like the
 * rest of the agent.
 */
#include "agent-internal.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>

#define XFER_MAX 32                    /* transfers at once */
#define XFER_DEFAULT_WINDOW (4u << 20) /* FGET: bytes unacknowledged */
#define XFER_MAX_WINDOW (64u << 20)
#define XFER_MAX_SIZE ((int64_t)1 << 50) /* an FPUT's announced size */
#define XFER_SNIFF 8192

struct agent_xfer {
    struct agent_xfer *next;
    uint32_t id;
    bool put;
    int fd;
    /* FGET */
    uint64_t size, sent, acked, window;
    /* FPUT */
    uint64_t expected, received;
    mode_t mode;
    bool existed;
    char *tmp, *final, *user_path;
    char **created; /* parent directories this transfer made, outermost first */
    size_t n_created;
};

static struct agent_xfer *xfer_find(struct agent *a, uint32_t id)
{
    for (struct agent_xfer *x = a->xfers; x; x = x->next)
        if (x->id == id)
            return x;
    return NULL;
}

static size_t xfer_count(struct agent *a)
{
    size_t n = 0;
    for (struct agent_xfer *x = a->xfers; x; x = x->next)
        n++;
    return n;
}

/* Takes x off the list and frees it; an unfinished FPUT's temporary file and the directories it
 * created go (innermost first; rmdir leaves a directory something else put files in). */
static void xfer_free(struct agent *a, struct agent_xfer *x)
{
    for (struct agent_xfer **pp = &a->xfers; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    if (x->fd >= 0)
        close(x->fd);
    if (x->tmp)
        (void)unlink(x->tmp);
    for (size_t i = x->n_created; i-- > 0;) {
        (void)rmdir(x->created[i]);
        free(x->created[i]);
    }
    free(x->created);
    free(x->tmp);
    free(x->final);
    free(x->user_path);
    free(x);
}

static struct agent_xfer *xfer_new(struct agent *a, uint32_t id, bool put)
{
    struct agent_xfer *x = obx_xcalloc(1, sizeof(*x));
    x->id = id;
    x->put = put;
    x->fd = -1;
    x->next = a->xfers;
    a->xfers = x;
    return x;
}

/* A request that cannot start: a transfer with this id already runs, or too many do. */
static bool xfer_refused(struct agent *a, uint32_t id, const char *what)
{
    if (xfer_find(a, id)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "%s: request id %u is in use", what, id);
        return true;
    }
    if (xfer_count(a) >= XFER_MAX) {
        agent_send_error(a, id, OBX_ERR_NO_CAPACITY,
                         "%s: %d file transfers already run in this box; wait for one to end", what,
                         XFER_MAX);
        return true;
    }
    return false;
}

/* An optional non-negative integer member at most max; false after answering ERROR. */
static bool get_uint(struct agent *a, uint32_t id, json_t *root, const char *what, const char *name,
                     int64_t max, int64_t def, int64_t *ret)
{
    json_t *v = json_object_get(root, name);
    if (!v || json_is_null(v)) {
        *ret = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "%s: \"%s\" must be an integer from 0 to %lld", what, name,
                         (long long)max);
        return false;
    }
    *ret = json_integer_value(v);
    return true;
}

/* ---- FGET ---- */

static void get_start(struct agent *a, uint32_t id, json_t *root)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    int64_t window;
    if (!get_uint(a, id, root, "FGET", "window", XFER_MAX_WINDOW, XFER_DEFAULT_WINDOW, &window))
        return;
    if (window < OBX_AGENT_FILE_CHUNK)
        window = OBX_AGENT_FILE_CHUNK;
    _cleanup_free_ char *path = NULL;
    struct stat st;
    _cleanup_close_ int fd = agent_file_open(a, id, root, &path, &st);
    if (fd < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        agent_send_error(a, id, OBX_ERR_PATH_IS_DIRECTORY, "path is a directory: %s", user_path);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "not a regular file: %s", user_path);
        return;
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    uint8_t head[XFER_SNIFF];
    ssize_t n = pread(fd, head, sizeof(head), 0);
    if (n < 0) {
        agent_send_error(a, id, OBX_ERR_EXECUTION_FAILED, "cannot read %s: %s", user_path,
                         strerror(errno));
        return;
    }
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    const char *mime = agent_sniff(head, (size_t)n, (uint64_t)st.st_size > (uint64_t)n);
    agent_send_json(a, OBX_AF_FMETA, id, agent_file_meta(real, &st, (uint64_t)st.st_size, mime));
    struct agent_xfer *x = xfer_new(a, id, false);
    x->fd = TAKE_FD(fd);
    x->size = (uint64_t)st.st_size;
    x->window = (uint64_t)window;
    x->user_path = obx_xstrdup(user_path);
}

void agent_xfer_get(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    if (xfer_refused(a, id, "FGET"))
        return;
    agent_file_op(a, id, "FGET", payload, len, get_start);
}

void agent_xfer_ack(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    struct agent_xfer *x = xfer_find(a, id);
    if (!x || x->put || len != 8)
        return;
    uint64_t v = (uint64_t)obx_be32_get(payload) << 32 | obx_be32_get(payload + 4);
    if (v > x->acked)
        x->acked = OBX_MIN(v, x->sent);
}

/* Sends what x may send now; false when x ended (and was freed). */
static bool get_pump(struct agent *a, struct agent_xfer *x)
{
    static uint8_t buf[OBX_AGENT_FILE_CHUNK];
    while (x->sent < x->size && x->sent - x->acked < x->window &&
           a->outq.bytes < AGENT_BACKPRESSURE_BYTES) {
        size_t want = (size_t)OBX_MIN(x->size - x->sent, (uint64_t)sizeof(buf));
        want = (size_t)OBX_MIN((uint64_t)want, x->window - (x->sent - x->acked));
        ssize_t n = pread(x->fd, buf, want, (off_t)x->sent);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                agent_send_error(a, x->id, OBX_ERR_EXECUTION_FAILED,
                                 "%s changed while it was read: it is shorter than the %llu "
                                 "bytes it had",
                                 x->user_path, (unsigned long long)x->size);
            else
                agent_send_error(a, x->id, OBX_ERR_EXECUTION_FAILED, "cannot read %s: %s",
                                 x->user_path, strerror(errno));
            xfer_free(a, x);
            return false;
        }
        agent_send(a, OBX_AF_FCHUNK, x->id, buf, (size_t)n);
        x->sent += (uint64_t)n;
    }
    if (x->sent == x->size) {
        agent_send_json(a, OBX_AF_OK, x->id, json_pack("{s:I}", "size_bytes", (json_int_t)x->size));
        xfer_free(a, x);
        return false;
    }
    return true;
}

bool agent_xfer_pump(struct agent *a)
{
    bool more = false;
    for (struct agent_xfer *x = a->xfers, *next; x; x = next) {
        next = x->next;
        if (x->put || !get_pump(a, x))
            continue;
        if (x->sent - x->acked < x->window && a->outq.bytes < AGENT_BACKPRESSURE_BYTES)
            more = true;
    }
    return more;
}

/* ---- FPUT ---- */

static void put_start(struct agent *a, uint32_t id, json_t *root)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    int64_t size, mode;
    if (!get_uint(a, id, root, "FPUT", "size_bytes", XFER_MAX_SIZE, -1, &size) ||
        !get_uint(a, id, root, "FPUT", "mode", 07777, -1, &mode))
        return;
    if (size < 0) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "FPUT: \"size_bytes\" is required");
        return;
    }
    json_t *jparents = json_object_get(root, "parents");
    if (jparents && !json_is_null(jparents) && !json_is_boolean(jparents)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "FPUT: \"parents\" must be a boolean");
        return;
    }
    size_t ul = strlen(user_path);
    if (user_path[ul - 1] == '/') {
        agent_send_error(a, id, OBX_ERR_PATH_IS_DIRECTORY, "%s ends with /: name the file to write",
                         user_path);
        return;
    }
    struct agent_xfer *x = xfer_new(a, id, true);
    x->user_path = obx_xstrdup(user_path);
    x->final =
        agent_resolve_path_in(a, user_path, json_string_value(json_object_get(root, "state")));
    x->expected = (uint64_t)size;
    struct stat st;
    if (lstat(x->final, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            agent_send_error(a, id, OBX_ERR_PATH_IS_DIRECTORY,
                             "%s is a directory: name a file inside it", user_path);
            xfer_free(a, x);
            return;
        }
        x->existed = true;
        if (S_ISREG(st.st_mode))
            x->mode = st.st_mode & 07777;
    }
    if (!x->mode)
        x->mode = 0644;
    if (mode >= 0)
        x->mode = (mode_t)mode;
    _cleanup_free_ char *dir_buf = obx_xstrdup(x->final);
    const char *dir = dirname(dir_buf);
    struct stat dst;
    if (stat(dir, &dst) < 0 && errno == ENOENT) {
        if (!json_is_true(jparents)) {
            agent_send_error(a, id, OBX_ERR_FILE_NOT_FOUND,
                             "parent directory not found: %.300s (create it first, or ask for "
                             "missing parents to be created)",
                             dir);
            xfer_free(a, x);
            return;
        }
        int r = agent_mkdir_parents(dir, &x->created, &x->n_created);
        if (r < 0) {
            agent_send_path_error(a, id, dir, -r);
            xfer_free(a, x);
            return;
        }
    }
    _cleanup_free_ char *base_buf = obx_xstrdup(x->final);
    x->tmp =
        obx_xasprintf("%s/.%.180s.obx-upload-%u-%d", dir, basename(base_buf), id, (int)getpid());
    x->fd = open(x->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (x->fd < 0) {
        int e = errno;
        free(TAKE_PTR(x->tmp)); /* not ours: never unlink it */
        agent_send_path_error(a, id, e == ENOENT || e == ENOTDIR ? dir : user_path, e);
        xfer_free(a, x);
    }
}

void agent_xfer_put(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    if (xfer_refused(a, id, "FPUT"))
        return;
    agent_file_op(a, id, "FPUT", payload, len, put_start);
}

/* The transfer fails: ERROR with errno e (or code/message), nothing is left behind. */
static void put_fail_errno(struct agent *a, struct agent_xfer *x, int e)
{
    agent_send_path_error(a, x->id, x->user_path, e);
    xfer_free(a, x);
}

void agent_xfer_data(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    struct agent_xfer *x = xfer_find(a, id);
    if (!x || !x->put)
        return; /* ended already (an ERROR went out): the worker stops sending */
    if (x->received + len > x->expected) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "more bytes came than the %llu announced; nothing was written",
                         (unsigned long long)x->expected);
        xfer_free(a, x);
        return;
    }
    int r = obx_write_all(x->fd, payload, len);
    if (r < 0) {
        put_fail_errno(a, x, -r);
        return;
    }
    x->received += len;
}

void agent_xfer_end(struct agent *a, uint32_t id)
{
    struct agent_xfer *x = xfer_find(a, id);
    if (!x || !x->put)
        return;
    if (x->received != x->expected) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "the upload ended after %llu of %llu bytes; nothing was written",
                         (unsigned long long)x->received, (unsigned long long)x->expected);
        xfer_free(a, x);
        return;
    }
    /* fsync: the target may be a directory of the host mounted into the box. */
    if (fchmod(x->fd, x->mode) < 0 || fsync(x->fd) < 0 || close(TAKE_FD(x->fd)) < 0 ||
        rename(x->tmp, x->final) < 0) {
        put_fail_errno(a, x, errno);
        return;
    }
    free(TAKE_PTR(x->tmp));
    for (size_t i = 0; i < x->n_created; i++)
        free(x->created[i]);
    x->n_created = 0; /* they hold the file now */
    char real[PATH_MAX];
    if (!realpath(x->final, real))
        snprintf(real, sizeof(real), "%s", x->final);
    agent_send_json(a, OBX_AF_OK, id,
                    json_pack("{s:o, s:I, s:b}", "path", agent_path_json(real), "size_bytes",
                              (json_int_t)x->received, "created", !x->existed));
    xfer_free(a, x);
}

bool agent_xfer_cancel(struct agent *a, uint32_t id)
{
    struct agent_xfer *x = xfer_find(a, id);
    if (!x)
        return false;
    agent_send_error(a, id, OBX_ERR_CANCELED,
                     x->put ? "the upload was canceled; nothing was written"
                            : "the download was canceled");
    xfer_free(a, x);
    return true;
}

void agent_xfer_shutdown(struct agent *a)
{
    while (a->xfers)
        xfer_free(a, a->xfers);
}
