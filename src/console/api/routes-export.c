/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exportFile on the console: a file of one of the caller's terminal sessions is copied, when the
 * tool is called, into the console's export directory (beside the database, mode 0700) and
 * answered with a download URL on the console itself that needs no token: signed with
 * HMAC-SHA256 under CONSOLE_HASH_KEY over the export's id and the link's expiry
 * (CONSOLE_EXPORT_URL_TTL_SEC), so it cannot be forged, stretched or pointed at another file.
 * The file outlives the session and is removed when its link expires (a thread looks every
 * minute). The files kept at once are bounded in all (CONSOLE_EXPORT_MAX_MB): an export that
 * would go over is refused before anything is copied. The table of exports is in the store, so
 * links stay good across a restart.
 */
#include "api.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/thread.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"

#define PRUNE_EVERY_MS 60000

struct obx_console_exports {
    struct obx_console *c;
    char *dir;
    char *base_url; /* scheme://host:port, no trailing slash */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int64_t reserved; /* bytes of exports being copied now */
    bool stopping;
    pthread_t pruner;
    bool pruner_started;
};

static char *export_file(const struct obx_console_exports *e, const char *id, const char *suffix)
{
    return obx_xasprintf("%s/%s%s", e->dir, id, suffix);
}

static void remove_file(void *userdata, const char *id)
{
    struct obx_console_exports *e = userdata;
    _cleanup_free_ char *path = export_file(e, id, "");
    if (unlink(path) < 0 && errno != ENOENT)
        obx_warn("exports: cannot remove %s: %s", path, strerror(errno));
}

static void prune(struct obx_console_exports *e)
{
    struct obx_error err = OBX_ERROR_INIT;
    int n = obx_store_export_prune(e->c->store, obx_unix_ms(), remove_file, e, &err);
    if (n < 0)
        obx_warn("exports: %s", err.message);
    else if (n > 0)
        obx_debug("exports: %d expired export(s) removed", n);
}

static void *pruner_main(void *arg)
{
    struct obx_console_exports *e = arg;
    pthread_mutex_lock(&e->lock);
    while (!e->stopping) {
        struct timespec ts = obx_ms_to_timespec(obx_now_ms() + PRUNE_EVERY_MS);
        pthread_cond_timedwait(&e->cond, &e->lock, &ts);
        if (e->stopping)
            break;
        pthread_mutex_unlock(&e->lock);
        prune(e);
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* Files a crash left behind: copies that never finished, and files whose row is gone. */
static void sweep(struct obx_console_exports *e)
{
    DIR *d = opendir(e->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        struct obx_store_export x;
        bool keep = !strchr(de->d_name, '.') &&
                    obx_store_export_get(e->c->store, de->d_name, &x, NULL) == 0;
        if (keep)
            obx_store_export_done(&x);
        else
            (void)unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

/* Beside the database (exports/), or in the temporary directory for one in memory. */
static char *export_dir(const char *db_path)
{
    if (obx_streq(db_path, ":memory:") || strncmp(db_path, "file:", 5) == 0) {
        const char *tmp = getenv("TMPDIR");
        return obx_xasprintf("%s/onlyboxes-console-exports-%d", tmp && *tmp ? tmp : "/tmp",
                             (int)getpid());
    }
    const char *slash = strrchr(db_path, '/');
    if (!slash)
        return obx_xstrdup("exports");
    return obx_xasprintf("%.*s/exports", (int)(slash - db_path), db_path);
}

/* CONSOLE_PUBLIC_URL, or the scheme and the address the console listens on (a wildcard address:
 * this host's name). */
static int base_url(struct obx_console *c, char **ret, struct obx_error *err)
{
    const struct obx_console_config *cfg = c->cfg;
    if (!obx_str_empty(cfg->public_url)) {
        const char *u = cfg->public_url;
        if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
            return obx_error_set(err, EINVAL, "",
                                 "CONSOLE_PUBLIC_URL=%s: expected http://HOST[:PORT] or "
                                 "https://HOST[:PORT]",
                                 u);
        size_t n = strlen(u);
        while (n > 0 && u[n - 1] == '/')
            n--;
        *ret = obx_xstrndup(u, n);
        return 0;
    }
    const char *scheme = obx_str_empty(cfg->tls_cert_file) ? "http" : "https";
    char host[256];
    const char *h = cfg->http_host;
    if (obx_str_empty(h) || obx_streq(h, "0.0.0.0") || obx_streq(h, "::")) {
        if (gethostname(host, sizeof(host)) < 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        h = host;
    }
    bool v6 = strchr(h, ':') != NULL;
    *ret = obx_xasprintf("%s://%s%s%s:%d", scheme, v6 ? "[" : "", h, v6 ? "]" : "",
                         obx_http_server_port(c->http));
    return 0;
}

int obx_console_exports_new(struct obx_console *c, struct obx_console_exports **ret,
                            struct obx_error *err)
{
    struct obx_console_exports *e = obx_xcalloc(1, sizeof(*e));
    e->c = c;
    pthread_mutex_init(&e->lock, NULL);
    obx_cond_init_monotonic(&e->cond);
    e->dir = export_dir(c->cfg->db_path);
    int r = base_url(c, &e->base_url, err);
    if (r >= 0 && mkdir(e->dir, 0700) < 0 && errno != EEXIST)
        r = obx_error_set(err, errno, "", "cannot create the export directory %s: %s", e->dir,
                          strerror(errno));
    if (r < 0) {
        obx_console_exports_free(e);
        return r;
    }
    (void)chmod(e->dir, 0700);
    prune(e);
    sweep(e);
    e->pruner_started = pthread_create(&e->pruner, NULL, pruner_main, e) == 0;
    *ret = e;
    return 0;
}

void obx_console_exports_free(struct obx_console_exports *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    if (e->pruner_started)
        pthread_join(e->pruner, NULL);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    free(e->dir);
    free(e->base_url);
    free(e);
}

/* The link's signature: HMAC-SHA256 of "export:<id>:<expires>". */
static void sign(const struct obx_console *c, const char *id, int64_t expires, char out[65])
{
    _cleanup_free_ char *msg = obx_xasprintf("export:%s:%lld", id, (long long)expires);
    obx_auth_hmac_hex(c->cfg->hash_key, msg, strlen(msg), out);
}

/* The file name as a URL path segment (RFC 3986 unreserved kept). */
static char *url_segment(const char *name)
{
    size_t n = strlen(name), o = 0;
    char *out = obx_xmalloc(3 * n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~", ch))
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, 4, "%%%02X", ch);
    }
    out[o] = '\0';
    return out;
}

struct sink {
    int fd;
    int64_t limit, written;
};

static int sink_write(void *userdata, const void *data, size_t len)
{
    struct sink *s = userdata;
    if (s->written + (int64_t)len > s->limit)
        return -EFBIG; /* it grew since it was looked at: it would go over what was reserved */
    int r = obx_write_all(s->fd, data, len);
    if (r < 0)
        return r;
    s->written += (int64_t)len;
    return 0;
}

/* Reserves size bytes of the export space; false (err set) when they do not fit. */
static bool reserve(struct obx_console_exports *e, int64_t size, struct obx_error *err)
{
    int64_t max = (int64_t)e->c->cfg->export_max_mb << 20, used = 0;
    struct obx_error serr = OBX_ERROR_INIT;
    if (obx_store_export_bytes(e->c->store, obx_unix_ms(), &used, &serr) < 0) {
        obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot read the export space: %s", serr.message);
        return false;
    }
    pthread_mutex_lock(&e->lock);
    bool fits = used + e->reserved + size <= max;
    if (fits)
        e->reserved += size;
    int64_t busy = used + e->reserved;
    pthread_mutex_unlock(&e->lock);
    if (!fits)
        obx_error_set(err, ENOSPC, OBX_ERR_FILE_TOO_LARGE,
                      "the file is %lld bytes; the console keeps at most %d MiB of exported "
                      "files (CONSOLE_EXPORT_MAX_MB) and %lld bytes of it are taken until their "
                      "links expire",
                      (long long)size, e->c->cfg->export_max_mb, (long long)busy);
    return fits;
}

static void unreserve(struct obx_console_exports *e, int64_t size)
{
    pthread_mutex_lock(&e->lock);
    e->reserved -= size;
    pthread_mutex_unlock(&e->lock);
}

/* The copy itself, into <id>.part, then renamed to <id> once whole. */
static int copy_out(struct obx_console_exports *e, const char *scoped, const char *path,
                    int64_t size, struct obx_call *call, const char *id, struct obx_error *err)
{
    _cleanup_free_ char *part = export_file(e, id, ".part");
    _cleanup_free_ char *final = export_file(e, id, "");
    struct sink s = {open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600), size,
                     0};
    if (s.fd < 0)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot write %s: %s", part,
                             strerror(errno));
    _cleanup_json_ json_t *payload =
        json_pack("{s:s, s:s, s:s, s:I}", "session_id", scoped, "action", "read", "path", path,
                  "size_bytes", (json_int_t)size);
    call->on_data = sink_write;
    call->data_userdata = &s;
    json_t *res = NULL;
    int r = obx_dispatch_exec(e->c->dispatch, "terminalfiles", payload, call, &res, err);
    call->on_data = NULL;
    json_decref(res);
    if (r >= 0 && (fsync(s.fd) < 0 || s.written != size))
        r = obx_error_set(err, EIO, OBX_ERR_EXECUTION_FAILED,
                          "the export was not written whole (%lld of %lld bytes)",
                          (long long)s.written, (long long)size);
    close(s.fd);
    if (r >= 0 && rename(part, final) < 0)
        r = obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot keep the export: %s",
                          strerror(errno));
    if (r < 0)
        (void)unlink(part);
    return r;
}

int obx_console_export_run(struct obx_console *c, json_t *payload, struct obx_call *call,
                           json_t **ret_result, struct obx_error *err)
{
    struct obx_console_exports *e = c->exports;
    const char *sid = obx_json_get_str(payload, "session_id", "");
    const char *path = obx_json_get_str(payload, "file_path", "");
    _cleanup_free_ char *scoped = obx_xasprintf("obx:%s:%s", call->account, sid);
    _cleanup_json_ json_t *stat_payload =
        json_pack("{s:s, s:s, s:s}", "session_id", scoped, "action", "stat", "path", path);
    json_t *meta = NULL;
    int r = obx_dispatch_exec(c->dispatch, "terminalfiles", stat_payload, call, &meta, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *m = meta;
    const char *type = obx_json_get_str(m, "type", "");
    if (!obx_streq(type, "file"))
        return obx_error_set(err, EISDIR,
                             obx_streq(type, "directory") ? OBX_ERR_PATH_IS_DIRECTORY
                                                          : OBX_ERR_INVALID_PAYLOAD,
                             "%s is %s, not a file: exportFile exports one file", path,
                             obx_streq(type, "directory") ? "a directory" : "no regular file");
    int64_t size = obx_json_get_int(m, "size_bytes", 0);
    if (!reserve(e, size, err))
        return -ENOSPC;
    char id[33];
    obx_auth_random_hex(id, 16);
    r = copy_out(e, scoped, path, size, call, id, err);
    unreserve(e, size);
    if (r < 0)
        return r;

    const char *real = obx_json_get_str(m, "path", path);
    const char *slash = strrchr(real, '/');
    int64_t now = obx_unix_ms();
    struct obx_store_export x = {
        .file_path = (char *)real,
        .filename = (char *)(slash && slash[1] ? slash + 1 : real),
        .size_bytes = size,
        .created_ms = now,
        .expires_ms = now + (int64_t)c->cfg->export_url_ttl_sec * 1000,
    };
    snprintf(x.id, sizeof(x.id), "%s", id);
    snprintf(x.account_id, sizeof(x.account_id), "%s", call->account);
    snprintf(x.session_id, sizeof(x.session_id), "%s", sid);
    snprintf(x.mime_type, sizeof(x.mime_type), "%s",
             obx_json_get_str(m, "mime_type", "application/octet-stream"));
    struct obx_error serr = OBX_ERROR_INIT;
    if (obx_store_export_insert(c->store, &x, &serr) < 0) {
        remove_file(e, id);
        return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot record the export: %s",
                             serr.message);
    }
    int64_t expires = x.expires_ms / 1000;
    char sig[65];
    sign(c, id, expires, sig);
    _cleanup_free_ char *seg = url_segment(x.filename);
    char expires_at[40];
    obx_time_rfc3339(x.expires_ms, expires_at);
    *ret_result = json_pack("{s:o, s:s, s:I, s:s, s:s}", "download_url",
                            json_sprintf("%s/api/v1/exports/%s/%s?expires=%lld&signature=%s",
                                         e->base_url, id, seg, (long long)expires, sig),
                            "filename", x.filename, "size_bytes", (json_int_t)size, "mime_type",
                            x.mime_type, "expires_at", expires_at);
    obx_info("exported %s of session %s (%lld bytes) as %s; its link lasts until %s", x.filename,
             sid, (long long)size, id, expires_at);
    return 0;
}

/* GET /api/v1/exports/:id/:name?expires&signature: no token; the signature is the key. */
static enum obx_route_result download(struct obx_route_ctx *ctx)
{
    struct obx_console *c = ctx->console;
    const char *id = ctx->params[0];
    const char *exp = obx_http_request_query(ctx->req, "expires");
    const char *sig = obx_http_request_query(ctx->req, "signature");
    int64_t expires = 0;
    char want[65];
    bool ok = strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32 && exp && sig &&
              strlen(sig) == 64 && obx_parse_int64(exp, 1, INT64_MAX / 1000, &expires) == 0;
    if (ok) {
        sign(c, id, expires, want);
        ok = obx_auth_equal(want, sig, 64);
    }
    if (!ok) {
        obx_route_fail(ctx->req, OBX_ERR_FORBIDDEN,
                       "invalid download link: its signature does not match (copy the whole URL "
                       "exportFile gave)");
        return OBX_ROUTE_DONE;
    }
    if (expires * 1000 <= obx_unix_ms()) {
        char at[40];
        obx_time_rfc3339(expires * 1000, at);
        _cleanup_free_ char *msg = obx_xasprintf(
            "this download link expired at %s; call exportFile again for a new one", at);
        obx_route_fail(ctx->req, OBX_ERR_GONE, msg);
        return OBX_ROUTE_DONE;
    }
    struct obx_store_export x;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_export_get(c->store, id, &x, &err);
    if (r < 0) {
        obx_route_fail(ctx->req, r == -ENOENT ? OBX_ERR_GONE : OBX_ERR_INTERNAL,
                       r == -ENOENT ? "this export is gone" : "failed to read the export");
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *file = export_file(c->exports, id, "");
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size != x.size_bytes) {
        obx_closep(&fd);
        obx_store_export_done(&x);
        obx_route_fail(ctx->req, OBX_ERR_GONE, "this export is gone");
        return OBX_ROUTE_DONE;
    }
    enum obx_route_result res =
        obx_console_send_file(ctx, fd, (uint64_t)x.size_bytes, x.filename, x.mime_type);
    obx_store_export_done(&x);
    return res;
}

const struct obx_route obx_export_routes[] = {
    {OBX_HTTP_GET, "/api/v1/exports/:export_id/:filename", OBX_ROUTE_AUTH_NONE, download},
};
const size_t obx_export_routes_n = OBX_ARRAY_SIZE(obx_export_routes);
