/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Capability handlers: validate the payload (reference §3.5 shapes and messages), run it in a box
 * through the agent, and shape the result payload. Runs on the caller's thread.
 */
#include "worker-internal.h"

#include <ctype.h>
#include <strings.h>

#include "agent/protocol.h"
#include "common/base64.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"

#define DEFAULT_TIMEOUT_MS 60000
#define MAX_TIMEOUT_MS 600000
#define PYTHON_ARGV_MAX 65536 /* longer code goes through stdin (argv strings are capped) */

int obx_cap_payload_object(json_t *payload, const char *what, struct obx_error *err)
{
    if (!json_is_object(payload))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "payload_json is not valid %s payload", what);
    /* Commands, code, ids and paths are used as C strings: a NUL would silently cut one short. */
    const char *key;
    json_t *v;
    json_object_foreach(payload, key, v)
    {
        if (json_is_string(v) && memchr(json_string_value(v), '\0', json_string_length(v)))
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "%s must not contain NUL characters", key);
    }
    return 0;
}

/* Timeout for the box: the payload's timeout_ms when given, else what the call has left. */
static int payload_timeout(json_t *payload, struct obx_call *call, int64_t *ret,
                           struct obx_error *err)
{
    json_t *t = json_object_get(payload, "timeout_ms");
    if (t) {
        if (!json_is_integer(t) || json_integer_value(t) < 1 ||
            json_integer_value(t) > MAX_TIMEOUT_MS)
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "timeout_ms must be between 1 and %d", MAX_TIMEOUT_MS);
        *ret = json_integer_value(t);
        return 0;
    }
    uint64_t left = obx_call_remaining_ms(call, DEFAULT_TIMEOUT_MS);
    if (left == 0)
        return obx_error_set(err, ETIMEDOUT, OBX_ERR_DEADLINE_EXCEEDED,
                             "command deadline exceeded");
    *ret = (int64_t)OBX_MIN(left, (uint64_t)MAX_TIMEOUT_MS);
    return 0;
}

/* The optional "network" field: false (or absent), true for the runtime's network, which the
 * worker's operator must have allowed (ONLYBOXES_ALLOW_NETWORK), or "allowlist" for the egress
 * proxy, which needs an allow-list (ONLYBOXES_EGRESS_ALLOW). */
static int payload_network(struct obx_worker *w, json_t *payload, enum obx_net *ret,
                           struct obx_error *err)
{
    json_t *n = json_object_get(payload, "network");
    *ret = OBX_NET_NONE;
    if (!n || json_is_null(n) || json_is_false(n))
        return 0;
    if (json_is_true(n)) {
        if (!w->cfg.allow_network)
            return obx_error_set(err, EPERM, OBX_ERR_INVALID_PAYLOAD,
                                 "network: this worker does not allow network access (its "
                                 "operator can turn it on with ONLYBOXES_ALLOW_NETWORK=true)%s",
                                 w->egress ? "; network \"allowlist\" reaches the hosts on its "
                                             "egress allow-list"
                                           : "");
        *ret = OBX_NET_FULL;
        return 0;
    }
    if (!json_is_string(n) || !obx_streq(json_string_value(n), "allowlist"))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "network must be true, false or \"allowlist\"");
    if (!w->egress)
        return obx_error_set(err, EPERM, OBX_ERR_INVALID_PAYLOAD,
                             "network: \"allowlist\" needs an egress allow-list and this worker "
                             "has none (its operator can set one, e.g. "
                             "ONLYBOXES_EGRESS_ALLOW=pypi.org,files.pythonhosted.org)");
    if (!w->rt->host_sockets)
        return obx_error_set(err, ENOTSUP, OBX_ERR_INVALID_PAYLOAD,
                             "network: \"allowlist\" is not available with this Docker daemon "
                             "(on another host, or ONLYBOXES_DOCKER_DIRECT=false): the egress "
                             "proxy's socket cannot be bound into its boxes");
    *ret = OBX_NET_ALLOWLIST;
    return 0;
}

static char *trimmed(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return obx_xstrndup(s, n);
}

/* A finished EXEC that was killed becomes the call's error; 0 otherwise. */
static int killed_error(const struct obx_box_exec_result *r, int64_t timeout_ms,
                        struct obx_error *err)
{
    if (r->canceled)
        return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED,
                             "the call was canceled; its processes were killed");
    if (r->timed_out)
        return obx_error_set(err, ETIMEDOUT, OBX_ERR_DEADLINE_EXCEEDED,
                             "command timed out after %lld ms; its processes were killed",
                             (long long)timeout_ms);
    return 0;
}

int obx_cap_echo(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                 struct obx_error *err)
{
    int r = obx_cap_payload_object(payload, "echo", err);
    if (r < 0)
        return r;
    if (obx_str_blank(obx_json_get_str(payload, "message", NULL)))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "echo payload is required");
    *ret = json_deep_copy(payload);
    json_object_del(*ret, "timeout_ms");
    return 0;
}

int obx_cap_python(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                   struct obx_error *err)
{
    int r = obx_cap_payload_object(payload, "pythonExec", err);
    if (r < 0)
        return r;
    const char *code = obx_json_get_str(payload, "code", NULL);
    if (obx_str_blank(code))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "pythonExec code is required");
    int64_t timeout;
    if ((r = payload_timeout(payload, call, &timeout, err)) < 0)
        return r;
    enum obx_net net;
    if ((r = payload_network(w, payload, &net, err)) < 0)
        return r;

    _cleanup_json_ json_t *req = json_object();
    json_t *argv = json_array();
    json_array_append_new(argv, json_string("python3"));
    if (strlen(code) < PYTHON_ARGV_MAX) {
        json_array_append_new(argv, json_string("-c"));
        json_array_append_new(argv, json_string(code));
    } else {
        json_array_append_new(argv, json_string("-"));
        json_object_set_new(req, "stdin", json_string(code));
    }
    json_object_set_new(req, "argv", argv);
    json_object_set_new(req, "timeout_ms", json_integer(timeout));
    json_object_set_new(req, "stdout_limit", json_integer((json_int_t)w->cfg.output_limit));
    json_object_set_new(req, "stderr_limit", json_integer((json_int_t)w->cfg.output_limit));

    struct obx_box *box = NULL;
    struct obx_worker_pool *pool = w->python_pool->pool;
    /* Pool boxes have no network: a call that wants it waits for its own box. */
    if (net != OBX_NET_NONE) {
        _cleanup_free_ char *label = call && call->account && !obx_streq(call->account, "local")
                                         ? obx_xasprintf("pythonExec of account %s", call->account)
                                         : obx_xstrdup("pythonExec");
        r = obx_worker_start_box(w, w->python_pool->image, net, label, call, &box, err);
    } else {
        r = obx_worker_pool_take(pool, call, &box, err);
    }
    if (r < 0)
        return r;
    struct obx_box_exec_result res = {0};
    r = obx_box_exec(box, req, call, &res, err);
    obx_worker_pool_retire(pool, box); /* a fresh box per call: nothing survives it */
    if (r < 0)
        return r;
    if ((r = killed_error(&res, timeout, err)) < 0) {
        obx_box_exec_result_done(&res);
        return r;
    }
    json_t *out = json_object();
    json_object_set_new(out, "output", obx_json_string_bytes(res.out, res.out_len));
    json_object_set_new(out, "stderr", obx_json_string_bytes(res.err, res.err_len));
    json_object_set_new(out, "exit_code", json_integer(res.exit_code));
    json_object_set_new(out, "output_truncated", json_boolean(res.stdout_truncated));
    json_object_set_new(out, "stderr_truncated", json_boolean(res.stderr_truncated));
    obx_box_exec_result_done(&res);
    *ret = out;
    return 0;
}

int obx_cap_payload_lease(struct obx_worker *w, json_t *payload, int *ret, struct obx_error *err)
{
    *ret = w->cfg.lease_default_sec;
    json_t *jl = json_object_get(payload, "lease_ttl_sec");
    if (!jl || json_is_null(jl))
        return 0;
    if (!json_is_integer(jl) || json_integer_value(jl) < w->cfg.lease_min_sec ||
        json_integer_value(jl) > w->cfg.lease_max_sec)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "lease_ttl_sec must be between %d and %d", w->cfg.lease_min_sec,
                             w->cfg.lease_max_sec);
    *ret = (int)json_integer_value(jl);
    return 0;
}

/* Visible ASCII only, 1..128 characters. */
static bool session_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (id[i] < 0x21 || id[i] > 0x7e)
            return false;
    return true;
}

int obx_cap_terminal(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                     struct obx_error *err)
{
    int r = obx_cap_payload_object(payload, "terminalExec", err);
    if (r < 0)
        return r;
    const char *raw = obx_json_get_str(payload, "command", NULL);
    if (obx_str_blank(raw))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "terminalExec command is required");
    _cleanup_free_ char *command = trimmed(raw);
    int64_t timeout;
    if ((r = payload_timeout(payload, call, &timeout, err)) < 0)
        return r;
    enum obx_net net;
    if ((r = payload_network(w, payload, &net, err)) < 0)
        return r;

    int lease;
    if ((r = obx_cap_payload_lease(w, payload, &lease, err)) < 0)
        return r;

    _cleanup_free_ char *sid = trimmed(obx_json_get_str(payload, "session_id", ""));
    bool create = obx_json_get_bool(payload, "create_if_missing", false);
    if (!*sid) {
        free(sid);
        sid = obx_xmalloc(37);
        obx_random_uuid(sid);
        create = true;
    } else if (!session_id_ok(sid)) {
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "session_id must be 1 to 128 visible ASCII characters");
    }

    struct obx_worker_session_lease sl;
    unsigned flags = create ? OBX_WORKER_SESSION_CREATE : 0;
    if ((r = obx_worker_sessions_acquire(w->sessions, sid, flags, net, call, &sl, err)) < 0)
        return r;

    _cleanup_json_ json_t *req = json_object();
    json_object_set_new(req, "shell", json_string(command));
    json_object_set_new(req, "state", json_string("default"));
    json_object_set_new(req, "timeout_ms", json_integer(timeout));
    json_object_set_new(req, "stdout_limit", json_integer((json_int_t)w->cfg.output_limit));
    json_object_set_new(req, "stderr_limit", json_integer((json_int_t)w->cfg.output_limit));
    struct obx_box_exec_result res = {0};
    r = obx_box_exec(sl.box, req, call, &res, err);
    /* The lease counts from the end of the command, so a long command never returns with its
     * session about to be reaped. */
    int64_t expiry = obx_worker_sessions_release(w->sessions, &sl, lease);
    if (sl.created && net == OBX_NET_NONE)
        obx_worker_pool_refill(
            w->terminal_pool->pool); /* the session kept its box: replace it now */
    if (r < 0)
        return r;
    if ((r = killed_error(&res, timeout, err)) < 0) {
        obx_box_exec_result_done(&res);
        return r;
    }
    json_t *out = json_object();
    json_object_set_new(out, "session_id", json_string(sid));
    json_object_set_new(out, "created", json_boolean(sl.created));
    json_object_set_new(out, "stdout", obx_json_string_bytes(res.out, res.out_len));
    json_object_set_new(out, "stderr", obx_json_string_bytes(res.err, res.err_len));
    json_object_set_new(out, "exit_code", json_integer(res.exit_code));
    json_object_set_new(out, "stdout_truncated", json_boolean(res.stdout_truncated));
    json_object_set_new(out, "stderr_truncated", json_boolean(res.stderr_truncated));
    json_object_set_new(out, "lease_expires_unix_ms", json_integer(expiry));
    obx_box_exec_result_done(&res);
    *ret = out;
    return 0;
}

int obx_cap_terminal_resource(struct obx_worker *w, json_t *payload, struct obx_call *call,
                              json_t **ret, struct obx_error *err)
{
    int r = obx_cap_payload_object(payload, "terminalResource", err);
    if (r < 0)
        return r;
    _cleanup_free_ char *sid = trimmed(obx_json_get_str(payload, "session_id", ""));
    _cleanup_free_ char *path = trimmed(obx_json_get_str(payload, "file_path", ""));
    if (!*sid || !*path)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "terminalResource session_id and file_path are required");
    const char *action = obx_json_get_str(payload, "action", "");
    bool read;
    if (!*action || strcasecmp(action, "validate") == 0)
        read = false;
    else if (strcasecmp(action, "read") == 0)
        read = true;
    else
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "action must be validate or read");

    struct obx_worker_session_lease sl;
    if ((r = obx_worker_sessions_acquire(w->sessions, sid, 0, OBX_NET_NONE, call, &sl, err)) < 0)
        return r;
    _cleanup_json_ json_t *req = json_object();
    json_object_set_new(req, "path", json_string(path));
    json_object_set_new(req, "state", json_string("default")); /* relative: the session's cwd */
    json_object_set_new(req, "max_bytes", json_integer((json_int_t)w->cfg.read_limit));
    json_object_set_new(req, "data", json_boolean(read));
    uint8_t type = 0;
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    r = obx_box_request(sl.box, OBX_AF_FREAD, req, call, &type, &data, &len, err);
    obx_worker_sessions_release(w->sessions, &sl, 0); /* reading a file does not extend the lease */
    if (r < 0)
        return r;
    if (type != OBX_AF_FILE || len < 4 || obx_be32_get(data) > len - 4)
        return obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                             "the agent sent a malformed file answer");
    size_t jlen = obx_be32_get(data);
    struct obx_error perr = OBX_ERROR_INIT;
    _cleanup_json_ json_t *meta = obx_json_parse((const char *)data + 4, jlen, &perr);
    if (!json_is_object(meta))
        return obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                             "the agent sent a malformed file answer: %s", perr.message);
    if (obx_json_get_bool(meta, "is_dir", false))
        return obx_error_set(err, EISDIR, OBX_ERR_PATH_IS_DIRECTORY, "path is a directory");
    json_t *out = json_object();
    json_object_set_new(out, "session_id", json_string(sid));
    json_object_set_new(out, "file_path", json_string(obx_json_get_str(meta, "path", path)));
    const char *mime = obx_json_get_str(meta, "mime_type", "");
    json_object_set_new(out, "mime_type", json_string(*mime ? mime : "application/octet-stream"));
    json_object_set_new(out, "size_bytes", json_integer(obx_json_get_int(meta, "size_bytes", 0)));
    if (read && len - 4 - jlen > 0) {
        _cleanup_free_ char *b64 = obx_base64_encode(data + 4 + jlen, len - 4 - jlen);
        json_object_set_new(out, "blob", json_string(b64));
    }
    *ret = out;
    return 0;
}
