/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The capabilities around terminal sessions besides running commands: terminalFiles (a
 * session's files: stat, list, read, write, delete, mkdir) and terminalSession (a session's
 * state: get, renew, close, list). Runs on the caller's thread.
 *
 * A file operation takes the session without making it busy (obx_worker_sessions_use()): a
 * download may run while a command does, and the session is not reaped under it. Relative paths
 * are the session's working directory's, as its shell left it ("state" "default", the key
 * terminalExec keeps). read and write move the bytes through the call's on_data and read_data,
 * in chunks, so a file of any size costs a bounded amount of memory here.
 */
#include "worker-internal.h"

#include <strings.h>

#include "agent/protocol.h"
#include "common/clock.h"

#define LIST_MAX_ENTRIES 10000
#define STATE_KEY "default" /* terminalExec's terminal state: the session's cwd */

static int payload_check(json_t *payload, const char *what, struct obx_error *err)
{
    int r = obx_cap_payload_object(payload, what, err);
    if (r < 0)
        return r;
    if (!*obx_json_get_str(payload, "session_id", ""))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s session_id is required",
                             what);
    return 0;
}

/* A boolean member (absent: def); -EINVAL for another type. */
static int get_bool(json_t *payload, const char *name, bool def, bool *ret, struct obx_error *err)
{
    json_t *v = json_object_get(payload, name);
    if (!v || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s must be a boolean", name);
    *ret = json_is_true(v);
    return 0;
}

/* The agent's answer to a request that ends with OK and a JSON object. */
static int ok_json(uint8_t type, const uint8_t *data, size_t len, json_t **ret,
                   struct obx_error *err)
{
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *j = type == OBX_AF_OK ? obx_json_parse((const char *)data, len, &perr) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                             "the agent sent a malformed answer");
    }
    *ret = j;
    return 0;
}

/* FREAD without data: the file's metadata as a result. */
static int file_stat(struct obx_box *box, const char *path, struct obx_call *call, json_t **ret,
                     struct obx_error *err)
{
    _cleanup_json_ json_t *req = json_pack("{s:s, s:s, s:b, s:i}", "path", path, "state", STATE_KEY,
                                           "data", false, "max_bytes", 1);
    uint8_t type = 0;
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    int r = obx_box_request(box, OBX_AF_FREAD, req, call, &type, &data, &len, err);
    if (r < 0)
        return r;
    if (type != OBX_AF_FILE || len < 4 || obx_be32_get(data) > len - 4)
        return obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                             "the agent sent a malformed file answer");
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *meta = obx_json_parse((const char *)data + 4, obx_be32_get(data), &perr);
    if (!json_is_object(meta)) {
        json_decref(meta);
        return obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                             "the agent sent a malformed file answer");
    }
    json_object_del(meta, "is_dir");
    *ret = meta;
    return 0;
}

struct read_ctx {
    struct obx_call *call;
    int64_t expect; /* the size the caller saw; -1: any */
    json_t *meta;
};

static int read_meta(void *userdata, json_t *meta)
{
    struct read_ctx *c = userdata;
    int64_t size = obx_json_get_int(meta, "size_bytes", -1);
    if (c->expect >= 0 && size != c->expect)
        return -ESTALE;
    c->meta = json_incref(meta);
    return 0;
}

static int read_data(void *userdata, const void *data, size_t len)
{
    struct read_ctx *c = userdata;
    return c->call->on_data(c->call->data_userdata, data, len);
}

static int file_read(struct obx_box *box, json_t *payload, const char *path, struct obx_call *call,
                     json_t **ret, struct obx_error *err)
{
    if (!call || !call->on_data)
        return obx_error_set(err, ENOTSUP, OBX_ERR_INVALID_PAYLOAD,
                             "read moves a file's bytes; this caller cannot take them");
    json_t *jexp = json_object_get(payload, "size_bytes");
    if (jexp && !json_is_null(jexp) && !json_is_integer(jexp))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "size_bytes must be an integer");
    struct read_ctx c = {call, jexp && json_is_integer(jexp) ? json_integer_value(jexp) : -1, NULL};
    _cleanup_json_ json_t *req = json_pack("{s:s, s:s}", "path", path, "state", STATE_KEY);
    json_t *final = NULL;
    int r = obx_box_get(box, req, call, read_meta, read_data, &c, &final, err);
    if (r == -ESTALE)
        r = obx_error_set(err, ESTALE, OBX_ERR_EXECUTION_FAILED,
                          "%s changed while it was being sent; try again", path);
    if (r < 0) {
        json_decref(c.meta);
        return r;
    }
    json_decref(final);
    json_object_del(c.meta, "is_dir");
    *ret = c.meta;
    return 0;
}

static ssize_t write_source(void *userdata, void *buf, size_t cap)
{
    struct obx_call *call = userdata;
    return call->read_data(call->data_userdata, buf, cap);
}

static int file_write(struct obx_box *box, json_t *payload, const char *path, struct obx_call *call,
                      json_t **ret, struct obx_error *err)
{
    if (!call || !call->read_data)
        return obx_error_set(err, ENOTSUP, OBX_ERR_INVALID_PAYLOAD,
                             "write moves a file's bytes; this caller cannot send them");
    json_t *jsize = json_object_get(payload, "size_bytes");
    if (!json_is_integer(jsize) || json_integer_value(jsize) < 0)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "size_bytes (the number of bytes to write) is required");
    bool parents;
    int r = get_bool(payload, "parents", true, &parents, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *req = json_pack("{s:s, s:s, s:O, s:b}", "path", path, "state", STATE_KEY,
                                           "size_bytes", jsize, "parents", parents);
    json_t *mode = json_object_get(payload, "mode");
    if (mode && !json_is_null(mode)) {
        if (!json_is_integer(mode) || json_integer_value(mode) < 0 ||
            json_integer_value(mode) > 07777)
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "mode must be a permission number from 0 to 07777");
        json_object_set(req, "mode", mode);
    }
    return obx_box_put(box, req, call, write_source, call, ret, err);
}

/* A request that answers OK with JSON (FLIST, FDELETE, FMKDIR). */
static int file_simple(struct obx_box *box, uint8_t type, json_t *req, struct obx_call *call,
                       json_t **ret, struct obx_error *err)
{
    uint8_t rtype = 0;
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    int r = obx_box_request(box, type, req, call, &rtype, &data, &len, err);
    return r < 0 ? r : ok_json(rtype, data, len, ret, err);
}

int obx_cap_terminal_files(struct obx_worker *w, json_t *payload, struct obx_call *call,
                           json_t **ret, struct obx_error *err)
{
    int r = payload_check(payload, "terminalFiles", err);
    if (r < 0)
        return r;
    const char *sid = obx_json_get_str(payload, "session_id", "");
    const char *action = obx_json_get_str(payload, "action", "");
    const char *path = obx_json_get_str(payload, "path", "");
    if (!*path)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "path is required");
    static const char *const actions[] = {"stat", "list", "read", "write", "delete", "mkdir"};
    size_t a = 0;
    while (a < OBX_ARRAY_SIZE(actions) && strcasecmp(action, actions[a]) != 0)
        a++;
    if (a == OBX_ARRAY_SIZE(actions))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "action must be one of stat, list, read, write, delete, mkdir");
    bool recursive = false;
    if ((r = get_bool(payload, "recursive", false, &recursive, err)) < 0)
        return r;

    struct obx_worker_session_lease sl;
    if ((r = obx_worker_sessions_use(w->sessions, sid, &sl, err)) < 0)
        return r;
    json_t *result = NULL;
    _cleanup_json_ json_t *req = json_pack("{s:s, s:s}", "path", path, "state", STATE_KEY);
    switch (a) {
    case 0:
        r = file_stat(sl.box, path, call, &result, err);
        break;
    case 1:
        json_object_set_new(req, "max_entries", json_integer(LIST_MAX_ENTRIES));
        r = file_simple(sl.box, OBX_AF_FLIST, req, call, &result, err);
        break;
    case 2:
        r = file_read(sl.box, payload, path, call, &result, err);
        break;
    case 3:
        r = file_write(sl.box, payload, path, call, &result, err);
        break;
    case 4:
        json_object_set_new(req, "recursive", json_boolean(recursive));
        r = file_simple(sl.box, OBX_AF_FDELETE, req, call, &result, err);
        break;
    default:
        r = file_simple(sl.box, OBX_AF_FMKDIR, req, call, &result, err);
        break;
    }
    /* Moving files in or out is using the session: it lasts at least a default lease more. */
    obx_worker_sessions_unuse(w->sessions, &sl, w->cfg.lease_default_sec);
    if (r < 0)
        return r;
    json_object_set_new(result, "session_id", json_string(sid));
    *ret = result;
    return 0;
}

static json_t *session_json(const struct obx_worker_session_info *i)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:b}", "session_id", i->id, "created_unix_ms",
                     (json_int_t)i->created_unix_ms, "last_used_unix_ms",
                     (json_int_t)i->last_used_unix_ms, "lease_expires_unix_ms",
                     (json_int_t)i->lease_until_unix_ms, "busy", i->busy);
}

int obx_cap_terminal_session(struct obx_worker *w, json_t *payload, struct obx_call *call,
                             json_t **ret, struct obx_error *err)
{
    (void)call;
    if (!json_is_object(payload))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "payload_json is not valid terminalSession payload");
    const char *action = obx_json_get_str(payload, "action", "");
    const char *sid = obx_json_get_str(payload, "session_id", "");
    if (strcasecmp(action, "list") == 0) {
        const char *prefix = obx_json_get_str(payload, "prefix", "");
        unsigned n = obx_worker_sessions_count(w->sessions) + 16;
        _cleanup_free_ struct obx_worker_session_info *v = obx_xcalloc(n, sizeof(*v));
        size_t got = obx_worker_sessions_list(w->sessions, v, n);
        json_t *list = json_array();
        for (size_t i = 0; i < got; i++)
            if (strncmp(v[i].id, prefix, strlen(prefix)) == 0)
                json_array_append_new(list, session_json(&v[i]));
        *ret = json_pack("{s:o}", "sessions", list);
        return 0;
    }
    if (!*sid)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "terminalSession session_id is required");
    struct obx_worker_session_info info;
    int r;
    if (strcasecmp(action, "get") == 0) {
        r = obx_worker_sessions_info(w->sessions, sid, &info, err);
    } else if (strcasecmp(action, "renew") == 0) {
        int lease;
        if ((r = obx_cap_payload_lease(w, payload, &lease, err)) < 0)
            return r;
        r = obx_worker_sessions_renew(w->sessions, sid, lease, &info, err);
    } else if (strcasecmp(action, "close") == 0) {
        r = obx_worker_sessions_close(w->sessions, sid, err);
        if (r >= 0)
            *ret = json_pack("{s:s, s:b}", "session_id", sid, "closed", true);
        return r;
    } else {
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "action must be one of get, renew, close, list");
    }
    if (r < 0)
        return r;
    *ret = session_json(&info);
    return 0;
}
