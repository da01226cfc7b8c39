/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pythonExec. Without a session_id: a fresh box from the warm pool per call, whose interpreter
 * was started (and the preload imported) before the call came, retired afterwards, so nothing
 * survives the call. With one: the call runs in the session's box (the same sessions as
 * terminalExec, so files are shared) in the one interpreter that lives there, which keeps
 * variables, imports and definitions from call to call; "reset" starts a fresh one. A timeout or
 * cancel there first interrupts the code, and the error says whether the session's variables
 * survived. Either way the result carries what the code left to look at: the final expression's
 * value as text, matplotlib figures and PIL images (bounded in size and number, checked again
 * here since the box writes them), and notes on what was changed or left out. Runs on the
 * caller's thread; the box side is agent-python.c.
 */
#include "worker-internal.h"

#include "agent/protocol.h"
#include "common/clock.h"
#include "common/log.h"

/* What one call may return to show: sized for a model's context and for the worker protocol's
 * 4 MiB result message, with room for the output streams. */
#define PY_MAX_IMAGES 8
#define PY_MAX_SIDE 1568
#define PY_MAX_IMAGE_BYTES (400 * 1024)
#define PY_MAX_TOTAL_BYTES (2 * 1024 * 1024)
#define PY_MAX_VALUE_CHARS 100000
#define PY_MAX_NOTES 32
#define PY_MAX_NOTE_CHARS 1000
#define PREPARE_TIMEOUT_MS 120000 /* imports on a busy machine, or a slow image */

static json_t *python_request(const char *code, bool session, bool reset, int64_t timeout,
                              size_t limit)
{
    return json_pack("{s:{s:s, s:s, s:b, s:{s:i, s:i, s:i, s:i, s:i}}, s:I, s:I, s:I}", "python",
                     "code", code, "mode", session ? "session" : "oneshot", "reset", reset,
                     "limits", "max_images", PY_MAX_IMAGES, "max_side", PY_MAX_SIDE,
                     "max_image_bytes", PY_MAX_IMAGE_BYTES, "max_total_bytes", PY_MAX_TOTAL_BYTES,
                     "max_value_chars", PY_MAX_VALUE_CHARS, "timeout_ms", (json_int_t)timeout,
                     "stdout_limit", (json_int_t)limit, "stderr_limit", (json_int_t)limit);
}

static bool base64_ok(const char *s, size_t len)
{
    if (len % 4 != 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool pad = c == '=' && i + 2 >= len;
        if (!pad && !(c == '+' || c == '/' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                      (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

static void note_add(json_t *notes, const char *text)
{
    if (json_array_size(notes) < PY_MAX_NOTES)
        json_array_append_new(
            notes, obx_json_string_bytes(text, OBX_MIN(strlen(text), PY_MAX_NOTE_CHARS)));
}

/* The images the box reported, each checked: a type we show, a sane size, base64 within the
 * limits. Anything else is dropped with a note (the code could have written the file). */
static json_t *images_checked(json_t *in, json_t *notes)
{
    json_t *out = json_array();
    size_t i, total = 0, bad = 0;
    json_t *im;
    json_array_foreach(in, i, im)
    {
        const char *mime = obx_json_get_str(im, "mime_type", "");
        const char *data = obx_json_get_str(im, "data", NULL);
        json_int_t wd = obx_json_get_int(im, "width", 0), ht = obx_json_get_int(im, "height", 0);
        size_t len = data ? strlen(data) : 0, raw = len / 4 * 3;
        if (json_array_size(out) >= PY_MAX_IMAGES || !data ||
            (!obx_streq(mime, "image/png") && !obx_streq(mime, "image/jpeg")) || wd < 1 || ht < 1 ||
            wd > PY_MAX_SIDE || ht > PY_MAX_SIDE || raw > PY_MAX_IMAGE_BYTES + 2 ||
            total + raw > PY_MAX_TOTAL_BYTES + 2 || !base64_ok(data, len)) {
            bad++;
            continue;
        }
        total += raw;
        json_array_append_new(out, json_pack("{s:s, s:s, s:I, s:I}", "mime_type", mime, "data",
                                             data, "width", wd, "height", ht));
    }
    if (bad) {
        char text[160];
        snprintf(text, sizeof(text),
                 "%zu image(s) the box reported were not valid or over the limits, and were "
                 "dropped",
                 bad);
        note_add(notes, text);
    }
    return out;
}

/* Adds what the code left to show (from the EXIT's "python" member) to out. */
static void shown_add(json_t *out, json_t *py)
{
    json_t *notes = json_array();
    json_t *v = json_object_get(py, "value");
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        if (n > PY_MAX_VALUE_CHARS * 4) /* characters to UTF-8 bytes, at most */
            n = PY_MAX_VALUE_CHARS * 4;
        json_object_set_new(out, "result", obx_json_string_bytes(json_string_value(v), n));
    }
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(py, "notes"), i, n)
    {
        if (json_is_string(n))
            note_add(notes, json_string_value(n));
    }
    json_t *images = images_checked(json_object_get(py, "images"), notes);
    if (json_array_size(images) > 0)
        json_object_set_new(out, "images", images);
    else
        json_decref(images);
    const char *end = obx_json_get_str(py, "end", NULL);
    if (end) {
        _cleanup_free_ char *text = obx_xasprintf(
            "%s: the session's variables are gone (its files stay); the next call starts a new "
            "interpreter",
            end);
        note_add(notes, text);
    }
    const char *prev = obx_json_get_str(py, "previous_end", NULL);
    if (prev) {
        _cleanup_free_ char *text =
            obx_xasprintf("this session's previous interpreter had ended (%s): the variables of "
                          "earlier calls are gone; the files are still there",
                          prev);
        note_add(notes, text);
    }
    if (json_array_size(notes) > 0)
        json_object_set_new(out, "notes", notes);
    else
        json_decref(notes);
}

/* A session call that was stopped: the error says whether the session's variables survived. */
static int session_stopped_error(const struct obx_box_exec_result *res, json_t *py,
                                 int64_t timeout_ms, struct obx_error *err)
{
    if (!res->timed_out && !res->canceled)
        return 0;
    char what[96];
    if (res->canceled)
        snprintf(what, sizeof(what), "the call was canceled");
    else
        snprintf(what, sizeof(what), "the code ran past %lld ms", (long long)timeout_ms);
    const char *code = res->canceled ? OBX_ERR_CANCELED : OBX_ERR_DEADLINE_EXCEEDED;
    int errnum = res->canceled ? ECANCELED : ETIMEDOUT;
    if (obx_streq(obx_json_get_str(py, "state", ""), "kept"))
        return obx_error_set(err, errnum, code,
                             "%s; it was interrupted (KeyboardInterrupt) and stopped, and the "
                             "processes it started were killed: the session's variables, imports "
                             "and definitions are kept",
                             what);
    return obx_error_set(err, errnum, code,
                         "%s; it was interrupted, but %s: the session's variables are gone (its "
                         "files stay; the next call starts a new interpreter)",
                         what, obx_json_get_str(py, "end", "the interpreter was killed"));
}

static json_t *result_base(const struct obx_box_exec_result *res)
{
    json_t *out = json_object();
    json_object_set_new(out, "output", obx_json_string_bytes(res->out, res->out_len));
    json_object_set_new(out, "stderr", obx_json_string_bytes(res->err, res->err_len));
    json_object_set_new(out, "exit_code", json_integer(res->exit_code));
    json_object_set_new(out, "output_truncated", json_boolean(res->stdout_truncated));
    json_object_set_new(out, "stderr_truncated", json_boolean(res->stderr_truncated));
    shown_add(out, res->python);
    return out;
}

static int run_oneshot(struct obx_worker *w, const char *code, int64_t timeout, enum obx_net net,
                       struct obx_call *call, json_t **ret, struct obx_error *err)
{
    _cleanup_json_ json_t *req = python_request(code, false, false, timeout, w->cfg.output_limit);
    struct obx_box *box = NULL;
    struct obx_worker_pool *pool = w->python_pool->pool;
    int r;
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
    uint64_t t0 = obx_now_ms();
    r = obx_box_exec(box, req, call, &res, err);
    uint64_t t1 = obx_now_ms();
    obx_worker_pool_retire(pool, box); /* a fresh box per call: nothing survives it */
    obx_debug("pythonExec: took %llu ms: exec %llu (the agent: %llu), retire %llu",
              (unsigned long long)(obx_now_ms() - t0), (unsigned long long)(t1 - t0),
              (unsigned long long)res.duration_ms, (unsigned long long)(obx_now_ms() - t1));
    if (r < 0)
        return r;
    if ((r = obx_cap_killed_error(&res, timeout, err)) < 0) {
        obx_box_exec_result_done(&res);
        return r;
    }
    *ret = result_base(&res);
    obx_box_exec_result_done(&res);
    return 0;
}

static int run_session(struct obx_worker *w, json_t *payload, const char *code, int64_t timeout,
                       enum obx_net net, struct obx_call *call, json_t **ret, struct obx_error *err)
{
    int lease, r;
    _cleanup_free_ char *sid = NULL;
    bool create;
    if ((r = obx_cap_payload_session(w, payload, &lease, &sid, &create, err)) < 0)
        return r;
    struct obx_worker_session_lease sl;
    unsigned flags = create ? OBX_WORKER_SESSION_CREATE : 0;
    if ((r = obx_worker_sessions_acquire(w->sessions, sid, flags, net, call, &sl, err)) < 0)
        return r;
    bool reset = obx_json_get_bool(payload, "reset", false);
    _cleanup_json_ json_t *req = python_request(code, true, reset, timeout, w->cfg.output_limit);
    struct obx_box_exec_result res = {0};
    r = obx_box_exec(sl.box, req, call, &res, err);
    int64_t expiry = obx_worker_sessions_release(w->sessions, &sl, lease);
    if (sl.created && net == OBX_NET_NONE)
        obx_worker_pool_refill(w->terminal_pool->pool); /* the session kept its box */
    if (r < 0)
        return r;
    if ((r = session_stopped_error(&res, res.python, timeout, err)) < 0) {
        obx_box_exec_result_done(&res);
        return r;
    }
    json_t *out = result_base(&res);
    json_object_set_new(out, "session_id", json_string(sid));
    json_object_set_new(out, "created", json_boolean(sl.created));
    json_object_set_new(
        out, "interpreter",
        json_string(obx_streq(obx_json_get_str(res.python, "interpreter", ""), "kept") ? "kept"
                                                                                       : "new"));
    json_object_set_new(out, "lease_expires_unix_ms", json_integer(expiry));
    obx_box_exec_result_done(&res);
    *ret = out;
    return 0;
}

int obx_cap_python(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                   struct obx_error *err)
{
    const char *code;
    int64_t timeout;
    enum obx_net net;
    int r =
        obx_cap_payload_exec(w, payload, "pythonExec", "code", call, &code, &timeout, &net, err);
    if (r < 0)
        return r;
    json_t *reset = json_object_get(payload, "reset");
    if (reset && !json_is_null(reset) && !json_is_boolean(reset))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "reset must be a boolean");
    json_t *sid = json_object_get(payload, "session_id");
    if (sid && !json_is_null(sid) && !json_is_string(sid))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "session_id must be a string");
    if (!obx_str_blank(obx_json_get_str(payload, "session_id", "")))
        return run_session(w, payload, code, timeout, net, call, ret, err);
    static const char *const session_only[] = {"reset", "create_if_missing", "lease_ttl_sec"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(session_only); i++) {
        json_t *v = json_object_get(payload, session_only[i]);
        if (v && !json_is_null(v) && !json_is_false(v))
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "%s needs a session_id: without one every call gets a fresh "
                                 "interpreter",
                                 session_only[i]);
    }
    return run_oneshot(w, code, timeout, net, call, ret, err);
}

/* ---- a pooled box's interpreter, started ahead of its call ---- */

/* PREPAREs b with the preload; the runner's ready report, or NULL with err. */
static json_t *prepare(struct obx_worker *w, struct obx_box *b, struct obx_error *err)
{
    struct obx_call call;
    obx_call_init(&call);
    call.deadline = obx_now_ms() + PREPARE_TIMEOUT_MS;
    _cleanup_json_ json_t *req = json_pack("{s:{s:O}}", "python", "preload", w->preload);
    uint8_t type = 0;
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    int r = obx_box_request(b, OBX_AF_PREPARE, req, &call, &type, &data, &len, err);
    obx_call_done(&call);
    if (r < 0)
        return NULL;
    json_t *j = obx_json_parse((const char *)data, len, NULL);
    if (json_is_object(j))
        return j;
    json_decref(j);
    obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED, "the box answered PREPARE with no report");
    return NULL;
}

/* "name (why), name (why)" for the modules of a ready report that did not import; NULL: none. */
static char *missing_text(json_t *ready)
{
    char *missing = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(ready, "missing"), i, m)
    {
        char *next =
            obx_xasprintf("%s%s%s (%s)", missing ? missing : "", missing ? ", " : "",
                          obx_json_get_str(m, "module", "?"), obx_json_get_str(m, "error", ""));
        free(missing);
        missing = next;
    }
    return missing;
}

void obx_worker_python_prepare(struct obx_worker *w, struct obx_box *b)
{
    struct obx_error err = OBX_ERROR_INIT;
    _cleanup_json_ json_t *ready = prepare(w, b, &err);
    if (!ready) {
        obx_debug("pythonExec: a pooled box's interpreter did not start: %s", err.message);
        return;
    }
    /* Which modules could not be imported: said once in the log. */
    _cleanup_free_ char *missing = missing_text(ready);
    pthread_mutex_lock(&w->preload_lock);
    bool say = !w->preload_reported && missing;
    w->preload_reported = w->preload_reported || missing;
    pthread_mutex_unlock(&w->preload_lock);
    if (say)
        obx_info("pythonExec: ONLYBOXES_PYTHON_PRELOAD: skipped what does not import in a box: "
                 "%s",
                 missing);
}

int obx_worker_python_check(const struct obx_worker_config *cfg, char **ret_text,
                            struct obx_error *err)
{
    struct obx_worker_config c = *cfg;
    c.warm_pool = c.warm_pool_max = 0; /* one box, started here */
    struct obx_worker *w = obx_worker_new(&c, err);
    if (!w)
        return -err->errnum;
    struct obx_box *b = NULL;
    int r = obx_worker_start_box(w, w->python_pool->image, OBX_NET_NONE, NULL, NULL, &b, err);
    json_t *ready = r < 0 ? NULL : prepare(w, b, err);
    obx_box_unref(b);
    if (!ready) {
        obx_worker_free(w);
        return obx_error_wrap(err, "Python in a box");
    }
    _cleanup_free_ char *missing = missing_text(ready);
    size_t n = json_array_size(w->preload);
    size_t n_missing = json_array_size(json_object_get(ready, "missing"));
    _cleanup_free_ char *names = obx_xstrdup("");
    size_t i;
    json_t *m;
    json_array_foreach(w->preload, i, m)
    {
        char *next = obx_xasprintf("%s%s%s", names, i ? ", " : "", json_string_value(m));
        free(names);
        names = next;
    }
    const char *version = obx_json_get_str(ready, "python", "?");
    if (n == 0)
        *ret_text =
            obx_xasprintf("%s in a box; ONLYBOXES_PYTHON_PRELOAD imports nothing (none)", version);
    else
        *ret_text = obx_xasprintf(
            "%s in a box; ONLYBOXES_PYTHON_PRELOAD %s: %s in %.1f s%s%s", version, names,
            n_missing == 0   ? "all imported"
            : n_missing == n ? "none imported"
                             : "imported",
            (double)obx_json_get_int(ready, "import_ms", 0) / 1000,
            missing ? "; skipped, as not importable: " : "", missing ? missing : "");
    json_decref(ready);
    obx_worker_free(w);
    return 0;
}
