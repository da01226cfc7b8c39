/* SPDX-License-Identifier: Apache-2.0 */
/*
 * terminalPty: a live terminal into a session's box, for a person (the dashboard's terminal). It
 * is a call that lasts as long as the terminal: output and events go out through the call's
 * on_output (OBX_STREAM_STDOUT, OBX_STREAM_EVENT), keystrokes, sizes and acknowledgements come in
 * through obx_call_input(), and cancelling the call closes the terminal. The result says how it
 * ended. Runs on the caller's thread, which it holds while the terminal is open.
 *
 * The session is taken without making it busy (obx_worker_sessions_use()), so the agent's
 * terminalExec commands run beside the terminal, which shows them; and while a terminal is open
 * the session is not reaped. A terminal left alone closes after ONLYBOXES_TERMINAL_IDLE_SEC
 * without input; then the session's lease counts again (at least its default from then). When
 * the session is closed, its box goes and the terminal with it.
 */
#include "worker-internal.h"

#include "agent/protocol.h"

#define PTY_MAX_SIDE 1000

/* An integer member within bounds (absent: def). */
static int get_side(json_t *payload, const char *name, unsigned def, unsigned *ret,
                    struct obx_error *err)
{
    json_t *v = json_object_get(payload, name);
    if (!v || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > PTY_MAX_SIDE)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s must be an integer from 1 to %d", name, PTY_MAX_SIDE);
    *ret = (unsigned)json_integer_value(v);
    return 0;
}

int obx_cap_terminal_pty(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                         struct obx_error *err)
{
    int r = obx_cap_payload_object(payload, "terminalPty", err);
    if (r < 0)
        return r;
    const char *sid = obx_json_get_str(payload, "session_id", "");
    if (!*sid)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "terminalPty session_id is required");
    unsigned cols = 80, rows = 24;
    if ((r = get_side(payload, "cols", 80, &cols, err)) < 0 ||
        (r = get_side(payload, "rows", 24, &rows, err)) < 0)
        return r;
    /* Without a way to hear it or to type, a terminal is of no use: a caller that cannot stream
     * (an original console's dispatch) is told so instead of holding a box's terminal open. */
    if (!call || !call->on_output)
        return obx_error_set(err, ENOTSUP, OBX_ERR_UNSUPPORTED,
                             "terminalPty streams a terminal; this caller cannot take its output");

    struct obx_worker_session_lease sl;
    if ((r = obx_worker_sessions_use(w->sessions, sid, &sl, err)) < 0)
        return r;
    _cleanup_json_ json_t *req =
        json_pack("{s:s, s:i, s:i, s:I, s:i}", "state", "default", "cols", (int)cols, "rows",
                  (int)rows, "idle_timeout_ms", (json_int_t)w->cfg.pty_idle_sec * 1000, "window",
                  (int)OBX_AGENT_PTY_WINDOW);
    json_t *exit = NULL;
    r = obx_box_pty(sl.box, req, call, &exit, err);
    obx_worker_sessions_unuse(w->sessions, &sl, w->cfg.lease_default_sec);
    if (r == -EPIPE) {
        /* The box went: the session ended (closed, or its box died) while the terminal was open. */
        *ret = json_pack("{s:s, s:s, s:s}", "session_id", sid, "reason", "session_ended", "message",
                         err->message);
        return 0;
    }
    if (r < 0)
        return r;
    json_object_set_new(exit, "session_id", json_string(sid));
    json_object_del(exit, "stdout_truncated");
    json_object_del(exit, "stderr_truncated");
    json_object_del(exit, "timed_out");
    *ret = exit;
    return 0;
}
