/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The routes of the control socket: the console's sessions API and a session's files API
 * (docs/console.md), with the same JSON, status codes and headers (common/sessions-api.h), on
 * this process's own terminal sessions. Each goes through the worker's capabilities
 * (terminalSession, terminalFiles in files.c), as the console's embedded worker does, so a file
 * moves in and out of a box the one way there is. Runs on the connection's thread.
 *
 * A session here is this process's: no account scopes its id, and every session is listed with
 * "worker": "local" and this process's "pid".
 */
#include "control-internal.h"

#include "common/clock.h"
#include "common/sessions-api.h"

#define SESSION_CALL_MS 30000
#define BODY_JSON_MAX (64u << 10)       /* a renew's body */
#define UPLOAD_MAX ((uint64_t)64 << 30) /* an upload's Content-Length */
#define PAGE_SIZE_DEFAULT 20
#define PAGE_SIZE_MAX 100

static int call_exec(struct obx_control_conn *c, const char *capability, json_t *payload,
                     uint64_t timeout_ms, json_t **ret, struct obx_error *err)
{
    struct obx_executor *ex = obx_worker_executor(c->w);
    c->call.deadline = timeout_ms ? obx_now_ms() + timeout_ms : 0;
    return ex->exec(ex, capability, payload, &c->call, ret, err);
}

static void answer_error(struct obx_control_conn *c, const struct obx_error *err)
{
    int status;
    json_t *body = obx_sessions_api_error(err, &status);
    obx_control_respond_json(c, status, body, NULL);
}

static json_t *session_json(const char *sid, const json_t *info)
{
    json_t *j = obx_sessions_api_session(sid, "local", info, "active");
    json_object_set_new(j, "pid", json_integer(getpid()));
    return j;
}

/* ---- sessions ---- */

/* ?page and ?page_size as the console takes them: absent is the default, a positive integer
 * (page_size at most PAGE_SIZE_MAX); false after answering 400. */
static bool page_param(struct obx_control_conn *c, const char *name, int64_t def, int64_t max,
                       int64_t *ret)
{
    const char *v = obx_control_query(c, name);
    int64_t n = def;
    if (v && obx_parse_int64(v, 1, INT64_MAX, &n) < 0) {
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST, "%s must be a positive integer",
                                  name);
        return false;
    }
    *ret = OBX_MIN(n, max);
    return true;
}

static int newest_first(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int64_t cx = obx_json_get_int(x, "created_unix_ms", 0);
    int64_t cy = obx_json_get_int(y, "created_unix_ms", 0);
    if (cx != cy)
        return cx > cy ? -1 : 1;
    return strcmp(obx_json_get_str(x, "session_id", ""), obx_json_get_str(y, "session_id", ""));
}

static void list_sessions(struct obx_control_conn *c)
{
    int64_t page, page_size;
    if (!page_param(c, "page", 1, INT64_MAX, &page) ||
        !page_param(c, "page_size", PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, &page_size))
        return;
    _cleanup_json_ json_t *payload = json_pack("{s:s}", "action", "list");
    _cleanup_json_ json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (call_exec(c, "terminalsession", payload, SESSION_CALL_MS, &res, &err) < 0) {
        answer_error(c, &err);
        return;
    }
    json_t *list = json_object_get(res, "sessions");
    size_t n = json_array_size(list);
    _cleanup_free_ json_t **v = obx_xcalloc(n + 1, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(list, i);
    if (n > 1)
        qsort(v, n, sizeof(*v), newest_first);
    json_t *items = json_array();
    int64_t offset;
    if (__builtin_mul_overflow(page - 1, page_size, &offset))
        offset = INT64_MAX;
    for (size_t i = 0; i < n; i++)
        if ((int64_t)i >= offset && (int64_t)i - offset < page_size)
            json_array_append_new(items,
                                  session_json(obx_json_get_str(v[i], "session_id", ""), v[i]));
    obx_control_respond_json(c, 200,
                             json_pack("{s:o, s:I, s:I, s:I}", "items", items, "total",
                                       (json_int_t)n, "page", (json_int_t)page, "page_size",
                                       (json_int_t)page_size),
                             NULL);
}

/* One terminalSession call on the session of the path, answered with the session (204 for
 * close). */
static void session_action(struct obx_control_conn *c, const char *action, json_t *lease)
{
    const char *sid = c->segs[3];
    _cleanup_json_ json_t *payload = json_pack("{s:s, s:s}", "action", action, "session_id", sid);
    if (lease)
        json_object_set(payload, "lease_ttl_sec", lease);
    _cleanup_json_ json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (call_exec(c, "terminalsession", payload, SESSION_CALL_MS, &res, &err) < 0)
        answer_error(c, &err);
    else if (obx_streq(action, "close"))
        obx_control_respond_json(c, 204, NULL, NULL);
    else
        obx_control_respond_json(c, 200, session_json(sid, res), NULL);
}

static void get_session(struct obx_control_conn *c)
{
    session_action(c, "get", NULL);
}

static void delete_session(struct obx_control_conn *c)
{
    session_action(c, "close", NULL);
}

/* The body as a JSON object (NULL for none); false after answering. */
static bool body_object(struct obx_control_conn *c, json_t **ret)
{
    *ret = NULL;
    if (c->length <= 0)
        return true;
    if ((uint64_t)c->length > BODY_JSON_MAX) {
        obx_control_respond_error(c, 413, OBX_ERR_BAD_REQUEST,
                                  "the request body is larger than %u bytes", BODY_JSON_MAX);
        return false;
    }
    _cleanup_free_ char *text = obx_xmalloc((size_t)c->length + 1);
    size_t got = 0;
    while (got < (size_t)c->length) {
        ssize_t n = obx_control_body_read(c, text + got, (size_t)c->length - got);
        if (n <= 0)
            return false; /* the client went away or stopped sending */
        got += (size_t)n;
    }
    json_t *j = obx_json_parse(text, got, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST, "invalid request body");
        return false;
    }
    *ret = j;
    return true;
}

/* POST .../renew {"lease_ttl_sec"?}: the worker's bounds apply (400 names them). */
static void renew_session(struct obx_control_conn *c)
{
    _cleanup_json_ json_t *body = NULL;
    if (!body_object(c, &body))
        return;
    json_t *lease = json_object_get(body, "lease_ttl_sec");
    if (lease && !json_is_null(lease) && !json_is_integer(lease)) {
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST,
                                  "lease_ttl_sec must be an integer number of seconds");
        return;
    }
    session_action(c, "renew", json_is_integer(lease) ? lease : NULL);
}

/* ---- files ---- */

/* ?path=: required, no NUL, at most OBX_SESSIONS_API_PATH_MAX bytes; NULL after answering. */
static const char *path_param(struct obx_control_conn *c)
{
    const char *path = obx_control_query(c, "path");
    if (c->query_nul)
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST,
                                  "path must not contain NUL characters");
    else if (!path || !*path)
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST,
                                  "path is required: ?path=FILE (absolute, or relative to the "
                                  "session's working directory)");
    else if (strlen(path) > OBX_SESSIONS_API_PATH_MAX)
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST, "path is longer than %d bytes",
                                  OBX_SESSIONS_API_PATH_MAX);
    else
        return path;
    return NULL;
}

/* A terminalFiles payload for the session of the path. */
static json_t *files_payload(struct obx_control_conn *c, const char *action, const char *path)
{
    return json_pack("{s:s, s:s, s:s}", "session_id", c->segs[3], "action", action, "path", path);
}

/* A short terminalFiles call (delete, mkdir; payload's reference is taken) answered with status
 * and its result. */
static void files_call(struct obx_control_conn *c, json_t *payload, int status)
{
    _cleanup_json_ json_t *p = payload;
    _cleanup_json_ json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (call_exec(c, "terminalfiles", p, SESSION_CALL_MS, &res, &err) < 0) {
        answer_error(c, &err);
        return;
    }
    json_object_set_new(res, "session_id", json_string(c->segs[3]));
    obx_control_respond_json(c, status, status == 204 ? NULL : json_incref(res), NULL);
}

static void delete_file(struct obx_control_conn *c)
{
    const char *path = path_param(c);
    if (!path)
        return;
    const char *v = obx_control_query(c, "recursive");
    bool recursive = v && (!*v || obx_streq(v, "true") || obx_streq(v, "1"));
    if (v && !recursive && !obx_streq(v, "false") && !obx_streq(v, "0")) {
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST, "recursive must be true or false");
        return;
    }
    json_t *payload = files_payload(c, "delete", path);
    json_object_set_new(payload, "recursive", json_boolean(recursive));
    files_call(c, payload, 204);
}

static ssize_t upload_read(void *userdata, void *buf, size_t cap)
{
    return obx_control_body_read(userdata, buf, cap);
}

/* PUT .../files?path=P: the body becomes the file (parents made); ?type=directory makes a
 * directory instead. */
static void put_file(struct obx_control_conn *c)
{
    const char *path = path_param(c);
    if (!path)
        return;
    const char *type = obx_control_query(c, "type");
    if (obx_streq(type, "directory")) {
        if (c->length > 0) {
            obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST, "a directory takes no body");
            return;
        }
        files_call(c, files_payload(c, "mkdir", path), 201);
        return;
    }
    if (type && !obx_streq(type, "file")) {
        obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST,
                                  "type must be file (the default) or directory");
        return;
    }
    if (c->length < 0) {
        obx_control_respond_error(c, 411, OBX_ERR_BAD_REQUEST, "an upload needs a Content-Length");
        return;
    }
    if ((uint64_t)c->length > UPLOAD_MAX) {
        obx_control_respond_error(c, 413, OBX_ERR_FILE_TOO_LARGE,
                                  "the file is %lld bytes; at most 64 GiB go in one upload",
                                  (long long)c->length);
        return;
    }
    _cleanup_json_ json_t *payload = files_payload(c, "write", path);
    json_object_set_new(payload, "size_bytes", json_integer(c->length));
    json_object_set_new(payload, "parents", json_true());
    const char *mode = obx_control_query(c, "mode");
    if (mode) {
        char *end = NULL;
        long m = *mode ? strtol(mode, &end, 8) : -1;
        if (!*mode || *end || m < 0 || m > 07777) {
            obx_control_respond_error(
                c, 400, OBX_ERR_BAD_REQUEST,
                "mode must be an octal permission number from 0 to 7777, e.g. 0644");
            return;
        }
        json_object_set_new(payload, "mode", json_integer(m));
    }
    c->call.read_data = upload_read;
    c->call.data_userdata = c;
    _cleanup_json_ json_t *res = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (call_exec(c, "terminalfiles", payload, 0, &res, &err) < 0) {
        answer_error(c, &err);
        return;
    }
    bool created = obx_json_get_bool(res, "created", true);
    json_object_set_new(res, "session_id", json_string(c->segs[3]));
    obx_control_respond_json(c, created ? 201 : 200, json_incref(res), NULL);
}

struct download {
    struct obx_control_conn *c;
    json_t *meta; /* the file's stat: path, size_bytes, mime_type */
};

static int download_start(struct download *d)
{
    _cleanup_free_ char *cd = obx_sessions_api_content_disposition(
        obx_json_get_str(d->meta, "path", obx_control_query(d->c, "path")));
    _cleanup_free_ char *headers = obx_xasprintf(
        "Content-Type: %s\r\nContent-Disposition: %s\r\nX-Onlyboxes-File-Type: file\r\n",
        obx_sessions_api_content_type(obx_json_get_str(d->meta, "mime_type", "")), cd);
    return obx_control_respond_head(d->c, 200, headers, obx_json_get_int(d->meta, "size_bytes", 0));
}

/* call.on_data of a download: the head with the first bytes, then the bytes as they come. */
static int download_write(void *userdata, const void *data, size_t len)
{
    struct download *d = userdata;
    int r = d->c->responded ? 0 : download_start(d);
    return r < 0 ? r : obx_control_send(d->c, data, len);
}

/* GET .../files?path=P: a file's bytes, or a directory's listing as JSON. */
static void get_file(struct obx_control_conn *c)
{
    const char *path = path_param(c);
    if (!path)
        return;
    _cleanup_json_ json_t *stat_payload = files_payload(c, "stat", path);
    _cleanup_json_ json_t *meta = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (call_exec(c, "terminalfiles", stat_payload, SESSION_CALL_MS, &meta, &err) < 0) {
        answer_error(c, &err);
        return;
    }
    const char *type = obx_json_get_str(meta, "type", "");
    if (obx_streq(type, "directory")) {
        _cleanup_json_ json_t *list_payload = files_payload(c, "list", path);
        _cleanup_json_ json_t *res = NULL;
        if (call_exec(c, "terminalfiles", list_payload, SESSION_CALL_MS, &res, &err) < 0) {
            answer_error(c, &err);
            return;
        }
        json_object_set_new(res, "type", json_string("directory"));
        json_object_set_new(res, "session_id", json_string(c->segs[3]));
        obx_control_respond_json(c, 200, json_incref(res), "X-Onlyboxes-File-Type: directory\r\n");
        return;
    }
    if (!obx_streq(type, "file")) {
        obx_error_set(&err, EINVAL, OBX_ERR_CONFLICT, "%s is not a regular file (%s)", path, type);
        answer_error(c, &err);
        return;
    }
    _cleanup_json_ json_t *payload = files_payload(c, "read", path);
    json_object_set(payload, "size_bytes", json_object_get(meta, "size_bytes"));
    struct download d = {c, meta};
    c->call.on_data = download_write;
    c->call.data_userdata = &d;
    _cleanup_json_ json_t *res = NULL;
    int r = call_exec(c, "terminalfiles", payload, 0, &res, &err);
    if (r < 0 && !c->responded)
        answer_error(c, &err);
    else if (r >= 0 && !c->responded) /* an empty file */
        download_start(&d);
    /* A failure half-way closes the connection: the client sees a body shorter than its
     * length, never a wrong one. */
}

/* ---- the table ---- */

static const struct route {
    const char *method;
    size_t n_segs;    /* api v1 sessions [ID [last]] */
    const char *last; /* the fifth part */
    void (*fn)(struct obx_control_conn *c);
} routes[] = {
    {"GET", 3, NULL, list_sessions},     {"GET", 4, NULL, get_session},
    {"DELETE", 4, NULL, delete_session}, {"POST", 5, "renew", renew_session},
    {"GET", 5, "files", get_file},       {"PUT", 5, "files", put_file},
    {"DELETE", 5, "files", delete_file},
};

void obx_control_route(struct obx_control_conn *c)
{
    char **s = c->segs;
    size_t n = c->n_segs;
    bool api =
        n >= 3 && obx_streq(s[0], "api") && obx_streq(s[1], "v1") && obx_streq(s[2], "sessions");
    char allow[64] = "";
    for (size_t i = 0; api && i < OBX_ARRAY_SIZE(routes); i++) {
        const struct route *r = &routes[i];
        if (r->n_segs != n || (r->last && !obx_streq(s[4], r->last)))
            continue;
        if (!obx_streq(c->method, r->method)) {
            size_t len = strlen(allow);
            snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "", r->method);
            continue;
        }
        if (n > 3 && !obx_sessions_api_id_valid(s[3])) {
            obx_control_respond_error(c, 400, OBX_ERR_BAD_REQUEST,
                                      "session_id must be 1 to 128 visible ASCII characters");
            return;
        }
        r->fn(c);
        return;
    }
    if (allow[0]) {
        _cleanup_free_ char *h = obx_xasprintf("Allow: %s\r\n", allow);
        obx_control_respond_json(c, 405,
                                 json_pack("{s:s, s:s}", "error",
                                           "method not allowed on this route", "code",
                                           OBX_ERR_METHOD_NOT_ALLOWED),
                                 h);
        return;
    }
    obx_control_respond_error(c, 404, OBX_ERR_NOT_FOUND,
                              "no such route: this socket serves the sessions and files routes "
                              "of the console's API (/api/v1/sessions...)");
}
