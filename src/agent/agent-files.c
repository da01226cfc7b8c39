/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FREAD and FWRITE: reading and writing files inside the box for the worker, and MIME detection
 * by content (magic bytes), never by file name. The agent runs inside the sandbox, so every path
 * it can open is already the box's own view; files are opened normally, fstat'ed and read through
 * the opened descriptor. Both run synchronously on the agent's thread; their size is bounded by
 * the frame limit.
 */
#include "agent-internal.h"

#include "common/base64.h"
#include "common/utf8.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#define SNIFF_BYTES 8192u
/* Largest file FREAD returns: a FILE frame must stay below OBX_AGENT_MAX_FRAME. */
#define FREAD_MAX_BYTES ((uint64_t)OBX_AGENT_MAX_FRAME - 64u * 1024)

char *agent_resolve_path(const struct agent *a, const char *path)
{
    if (path[0] == '/')
        return obx_xstrdup(path);
    if (!path[0])
        return obx_xstrdup(a->cfg.workspace);
    return obx_xasprintf("%s/%s", a->cfg.workspace, path);
}

static int read_up_to(int fd, size_t max, uint8_t **ret, size_t *ret_len);

/* One shell word of s starting at *pos, as the shell that wrote the state file (`export -p`)
 * quoted it: '...' (with '\'' for a quote), "..." (with \ escapes), \x and bare characters, up to
 * unquoted blank or newline. dash and busybox write single quotes, bash double quotes. */
static char *shell_word(const char *s, size_t len, size_t *pos)
{
    size_t i = *pos;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n'))
        i++;
    char *out = obx_xmalloc(len - i + 1);
    size_t o = 0;
    while (i < len && s[i] != ' ' && s[i] != '\t' && s[i] != '\n') {
        char ch = s[i++];
        if (ch == '\'') {
            while (i < len && s[i] != '\'')
                out[o++] = s[i++];
            i++;
        } else if (ch == '"') {
            while (i < len && s[i] != '"') {
                if (s[i] == '\\' && i + 1 < len && strchr("\\\"$`\n", s[i + 1]))
                    i++;
                out[o++] = s[i++];
            }
            i++;
        } else if (ch == '\\' && i < len) {
            out[o++] = s[i++];
        } else {
            out[o++] = ch;
        }
    }
    out[o] = '\0';
    *pos = i;
    return out;
}

/* The working directory terminal state key last saved (the wrapper exports it as __OBX_CWD
 * before `export -p`), or NULL when there is none or it is no directory any more. */
static char *state_cwd(const struct agent *a, const char *key)
{
    if (obx_str_empty(key) || strchr(key, '/') || key[0] == '.')
        return NULL;
    _cleanup_free_ char *file = obx_xasprintf("%s/%s", a->cfg.state_dir, key);
    _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    if (read_up_to(fd, 256u * 1024, &buf, &len) < 0 || len == 0)
        return NULL;
    const char *s = (const char *)buf;
    for (size_t pos = 0; pos < len;) {
        _cleanup_free_ char *w = shell_word(s, len, &pos);
        if (strncmp(w, "__OBX_CWD=", 10) != 0)
            continue;
        struct stat st;
        if (w[10] != '/' || stat(w + 10, &st) < 0 || !S_ISDIR(st.st_mode))
            return NULL;
        return obx_xstrdup(w + 10);
    }
    return NULL;
}

char *agent_resolve_path_in(const struct agent *a, const char *path, const char *state)
{
    if (path[0] == '/')
        return obx_xstrdup(path);
    _cleanup_free_ char *cwd = state_cwd(a, state);
    const char *base = cwd ? cwd : a->cfg.workspace;
    if (!path[0] || obx_streq(path, "."))
        return obx_xstrdup(base);
    return obx_xasprintf("%s%s%s", base, obx_streq(base, "/") ? "" : "/", path);
}

static bool has_prefix(const uint8_t *p, size_t n, const void *magic, size_t m)
{
    return n >= m && memcmp(p, magic, m) == 0;
}

static bool looks_like_svg(const uint8_t *p, size_t n)
{
    size_t lim = OBX_MIN(n, (size_t)1024);
    size_t i = 0;
    if (has_prefix(p, lim, "\xef\xbb\xbf", 3))
        i = 3;
    while (i < lim && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i >= lim || p[i] != '<')
        return false;
    for (; i + 4 <= lim; i++)
        if (memcmp(p + i, "<svg", 4) == 0)
            return true;
    return false;
}

/* p[0..n) is the start of the file; partial when the file continues past n. */
const char *agent_sniff(const uint8_t *p, size_t n, bool partial)
{
    if (has_prefix(p, n, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (has_prefix(p, n, "\xff\xd8\xff", 3))
        return "image/jpeg";
    if (has_prefix(p, n, "GIF87a", 6) || has_prefix(p, n, "GIF89a", 6))
        return "image/gif";
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return "image/webp";
    /* "BM" alone is common in text; the two reserved header words must be zero as well. */
    if (n >= 26 && p[0] == 'B' && p[1] == 'M' && p[6] == 0 && p[7] == 0 && p[8] == 0 && p[9] == 0)
        return "image/bmp";
    if (has_prefix(p, n, "II*\0", 4) || has_prefix(p, n, "MM\0*", 4))
        return "image/tiff";
    if (n >= 6 && has_prefix(p, n, "\0\0\1\0", 4) && (p[4] | p[5]) != 0)
        return "image/x-icon";
    if (has_prefix(p, n, "%PDF-", 5))
        return "application/pdf";
    if (has_prefix(p, n, "PK\3\4", 4) || has_prefix(p, n, "PK\5\6", 4))
        return "application/zip";
    if (has_prefix(p, n, "\x1f\x8b", 2))
        return "application/gzip";
    if (memchr(p, 0, n))
        return "application/octet-stream";
    /* A sample of a longer file may end inside a character. */
    size_t len = partial ? n - obx_utf8_incomplete_tail((const char *)p, n) : n;
    if (!obx_utf8_valid((const char *)p, len))
        return "application/octet-stream";
    return looks_like_svg(p, n) ? "image/svg+xml" : "text/plain";
}

void agent_send_path_error(struct agent *a, uint32_t id, const char *full, int e)
{
    /* The message has room for about 1000 bytes: a path near PATH_MAX would push the reason out
     * of it, so only the start of a long path is shown (cut on a character boundary). */
    char path[256];
    size_t len = strlen(full), cut = 160;
    if (len < sizeof(path)) {
        memcpy(path, full, len + 1);
    } else {
        while (cut > 0 && ((unsigned char)full[cut] & 0xc0) == 0x80)
            cut--;
        snprintf(path, sizeof(path), "%.*s... (%zu bytes)", (int)cut, full, len);
    }
    if (e == ENOENT || e == ELOOP)
        agent_send_error(a, id, OBX_ERR_FILE_NOT_FOUND, "file not found: %s", path);
    else if (e == ENOTDIR)
        agent_send_error(a, id, OBX_ERR_NOT_A_DIRECTORY, "not a directory: a part of %s is a file",
                         path);
    else if (e == EISDIR)
        agent_send_error(a, id, OBX_ERR_PATH_IS_DIRECTORY, "path is a directory: %s", path);
    else if (e == EACCES || e == EPERM)
        agent_send_error(a, id, OBX_ERR_PERMISSION_DENIED, "permission denied: %s", path);
    else if (e == EROFS)
        agent_send_error(a, id, OBX_ERR_PERMISSION_DENIED, "read-only file system: %s", path);
    else if (e == ENOSPC || e == EDQUOT)
        agent_send_error(a, id, OBX_ERR_NO_SPACE,
                         "no space left on the box's file system writing %s", path);
    else if (e == ENAMETOOLONG)
        agent_send_error(a, id, OBX_ERR_FILE_NOT_FOUND, "path too long: %s", path);
    else if (e == ENOTEMPTY || e == EEXIST)
        agent_send_error(a, id, OBX_ERR_DIRECTORY_NOT_EMPTY,
                         "directory not empty: %s (recursive removes it with everything in it)",
                         path);
    else
        agent_send_error(a, id, OBX_ERR_EXECUTION_FAILED, "cannot open %s: %s", path, strerror(e));
}

/* Reads up to max bytes from fd into a new buffer; *ret_len gets the count. */
static int read_up_to(int fd, size_t max, uint8_t **ret, size_t *ret_len)
{
    size_t cap = OBX_MIN(max, (size_t)64 * 1024), len = 0;
    uint8_t *buf = obx_xmalloc(cap ? cap : 1);
    while (len < max) {
        if (len == cap) {
            cap = OBX_MIN(max, cap * 2);
            buf = obx_xrealloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

json_t *agent_file_request(struct agent *a, uint32_t id, const char *what, const uint8_t *payload,
                           size_t len)
{
    json_error_t je;
    json_t *root = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "%s payload is not a JSON object%s%s",
                         what, root ? "" : ": ", root ? "" : je.text);
        json_decref(root);
        return NULL;
    }
    json_t *p = json_object_get(root, "path");
    if (!json_is_string(p) || !*json_string_value(p)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "%s: \"path\" must be a non-empty string",
                         what);
        json_decref(root);
        return NULL;
    }
    if (strlen(json_string_value(p)) != json_string_length(p)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "%s: \"path\" must not contain NUL characters", what);
        json_decref(root);
        return NULL;
    }
    if (json_string_length(p) >= PATH_MAX) { /* what open() would say of it */
        agent_send_path_error(a, id, json_string_value(p), ENAMETOOLONG);
        json_decref(root);
        return NULL;
    }
    json_t *st = json_object_get(root, "state");
    if (st && !json_is_null(st) && !json_is_string(st)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "%s: \"state\" must be a string", what);
        json_decref(root);
        return NULL;
    }
    return root;
}

void agent_file_op(struct agent *a, uint32_t id, const char *what, const uint8_t *payload,
                   size_t len, void (*fn)(struct agent *a, uint32_t id, json_t *root))
{
    json_t *root = agent_file_request(a, id, what, payload, len);
    if (root)
        fn(a, id, root);
    json_decref(root);
}

int agent_file_open(struct agent *a, uint32_t id, json_t *root, char **ret_path, struct stat *st)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    char *path =
        agent_resolve_path_in(a, user_path, json_string_value(json_object_get(root, "state")));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 || fstat(fd, st) < 0) {
        agent_send_path_error(a, id, user_path, errno);
        if (fd >= 0)
            close(fd);
        free(path);
        return -1;
    }
    *ret_path = path;
    return fd;
}

/* A real path as a JSON string. A file name may be any bytes (a link can lead to one that is not
 * UTF-8), which jansson refuses: invalid sequences become U+FFFD. */
json_t *agent_path_json(const char *path)
{
    size_t len = 0;
    _cleanup_free_ char *clean = obx_utf8_sanitize(path, strlen(path), &len);
    return json_stringn(clean, len);
}

const char *agent_file_type(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "directory" : S_ISLNK(m) ? "symlink" : "other";
}

int64_t agent_mtime_ms(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

json_t *agent_file_meta(const char *path, const struct stat *st, uint64_t size, const char *mime)
{
    return json_pack("{s:o, s:I, s:s, s:b, s:s, s:I, s:i}", "path", agent_path_json(path),
                     "size_bytes", (json_int_t)size, "mime_type", mime, "is_dir",
                     S_ISDIR(st->st_mode), "type", agent_file_type(st->st_mode), "mtime_unix_ms",
                     (json_int_t)agent_mtime_ms(st), "mode", (int)(st->st_mode & 07777));
}

static void send_file(struct agent *a, uint32_t id, const char *path, const struct stat *st,
                      uint64_t size, const char *mime, const uint8_t *data, size_t len)
{
    json_t *o = agent_file_meta(path, st, size, mime);
    _cleanup_free_ char *js = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!js) {
        agent_send_error(a, id, OBX_ERR_INTERNAL, "out of memory");
        return;
    }
    size_t jl = strlen(js);
    _cleanup_free_ uint8_t *head = obx_xmalloc(4 + jl);
    obx_be32_put(head, (uint32_t)jl);
    memcpy(head + 4, js, jl);
    agent_send2(a, OBX_AF_FILE, id, head, 4 + jl, data, len);
}

static void file_read(struct agent *a, uint32_t id, json_t *root)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    json_t *jmax = json_object_get(root, "max_bytes");
    json_t *jdata = json_object_get(root, "data");
    if ((jmax && !json_is_null(jmax) && (!json_is_integer(jmax) || json_integer_value(jmax) < 0)) ||
        (jdata && !json_is_null(jdata) && !json_is_boolean(jdata))) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "FREAD: \"max_bytes\" must be a non-negative integer and \"data\" a "
                         "boolean");
        return;
    }
    uint64_t max = jmax && json_is_integer(jmax) ? (uint64_t)json_integer_value(jmax) : 0;
    if (max == 0 || max > FREAD_MAX_BYTES)
        max = FREAD_MAX_BYTES;
    bool want = json_is_true(jdata);

    _cleanup_free_ char *path = NULL;
    struct stat st;
    _cleanup_close_ int fd = agent_file_open(a, id, root, &path, &st);
    if (fd < 0)
        return;
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    if (S_ISDIR(st.st_mode)) {
        if (want)
            agent_send_error(a, id, OBX_ERR_PATH_IS_DIRECTORY, "path is a directory: %s",
                             user_path);
        else
            send_file(a, id, real, &st, 0, "inode/directory", NULL, 0);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "not a regular file: %s", user_path);
        return;
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (want && (uint64_t)st.st_size > max) {
        agent_send_error(a, id, OBX_ERR_FILE_TOO_LARGE,
                         "file is %llu bytes; the limit is %llu bytes",
                         (unsigned long long)st.st_size, (unsigned long long)max);
        return;
    }
    /* Files like those in /proc report size 0: read one byte past the limit to notice. */
    _cleanup_free_ uint8_t *buf = NULL;
    size_t got = 0;
    int r = read_up_to(fd, want ? (size_t)max + 1 : SNIFF_BYTES, &buf, &got);
    if (r < 0) {
        agent_send_error(a, id, OBX_ERR_EXECUTION_FAILED, "cannot read %s: %s", user_path,
                         strerror(-r));
        return;
    }
    uint64_t size = OBX_MAX((uint64_t)st.st_size, (uint64_t)got);
    if (want && got > max) {
        agent_send_error(a, id, OBX_ERR_FILE_TOO_LARGE,
                         "file is more than %llu bytes; the limit is %llu bytes",
                         (unsigned long long)max, (unsigned long long)max);
        return;
    }
    size_t sample = OBX_MIN(got, (size_t)SNIFF_BYTES);
    const char *mime = agent_sniff(buf, sample, size > sample);
    send_file(a, id, real, &st, size, mime, want ? buf : NULL, want ? got : 0);
}

void agent_file_read(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    agent_file_op(a, id, "FREAD", payload, len, file_read);
}

static void file_write(struct agent *a, uint32_t id, json_t *root)
{
    const char *user_path = json_string_value(json_object_get(root, "path"));
    json_t *jb64 = json_object_get(root, "data_b64");
    json_t *jmode = json_object_get(root, "mode");
    _cleanup_free_ unsigned char *data = NULL;
    size_t dlen = 0;
    if (jmode && !json_is_null(jmode) &&
        (!json_is_integer(jmode) || json_integer_value(jmode) < 0 ||
         json_integer_value(jmode) > 07777)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "FWRITE: \"mode\" must be an integer between 0 and 07777");
        return;
    }
    if (!json_is_string(jb64) || !(data = obx_base64_decode(json_string_value(jb64), &dlen))) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "FWRITE: \"data_b64\" must be a base64 string");
        return;
    }
    bool has_mode = jmode && json_is_integer(jmode);
    mode_t mode = has_mode ? (mode_t)json_integer_value(jmode) : 0644;

    _cleanup_free_ char *path = agent_resolve_path(a, user_path);
    _cleanup_close_ int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, mode);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            agent_send_error(a, id, OBX_ERR_FILE_NOT_FOUND, "parent directory not found: %s",
                             user_path);
        else
            agent_send_path_error(a, id, user_path, e);
        return;
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (has_mode && fchmod(fd, mode) < 0)
        agent_log("FWRITE %s: chmod: %s", user_path, strerror(errno));
    int r = obx_write_all(fd, data, dlen);
    if (r < 0) {
        agent_send_error(a, id, OBX_ERR_EXECUTION_FAILED, "cannot write %s: %s", user_path,
                         strerror(-r));
        return;
    }
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    json_t *o =
        json_pack("{s:o, s:I}", "path", agent_path_json(real), "size_bytes", (json_int_t)dlen);
    agent_send_json(a, OBX_AF_OK, id, o);
}

void agent_file_write(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    agent_file_op(a, id, "FWRITE", payload, len, file_write);
}
