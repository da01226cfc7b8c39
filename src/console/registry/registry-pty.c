/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live terminals on remote workers (the "pty" extension). A terminal is a terminalPty call like
 * any other (a slot, the session's route, cancel, worker_lost), routed only to a worker that
 * named "pty". What the call's caller hands in with obx_call_input() goes to the worker as
 * PtyInput frames, ahead of the data frames; the worker's PtyOutput frames reach the call's output
 * hook as the stream's other output does (OBX_STREAM_STDOUT for the terminal's bytes,
 * OBX_STREAM_EVENT for its events). The embedded worker needs none of this: its capability takes
 * the call's input itself.
 *
 * A worker's output is bounded by the terminal's window (it sends only so far ahead of the acks
 * that come in here), so nothing is buffered for a terminal in the registry.
 */
#include "registry-internal.h"

#include "common/log.h"

#define PTY_MAX_INPUT (64u * 1024) /* bytes of one piece of input, as one frame */

void reg_pty_input(void *userdata, const struct obx_call_input *in)
{
    struct reg_call *c = userdata;
    struct obx_dispatch *d = c->d;
    struct obx_rpc_frame f = {.kind = OBX_RPC_PTY_INPUT};
    f.u.pty_input.command_id = c->id;
    switch (in->kind) {
    case OBX_CALL_INPUT_DATA:
        f.u.pty_input.data = (uint8_t *)in->data;
        f.u.pty_input.data_len = OBX_MIN(in->len, (size_t)PTY_MAX_INPUT);
        break;
    case OBX_CALL_INPUT_RESIZE:
        f.u.pty_input.cols = (int32_t)in->cols;
        f.u.pty_input.rows = (int32_t)in->rows;
        break;
    case OBX_CALL_INPUT_ACK:
        f.u.pty_input.acked = (int64_t)in->acked;
        break;
    }
    pthread_mutex_lock(&d->lock);
    if (c->started && !c->finished && c->node->conn && c->node->ext_pty)
        (void)obx_rpc_stream_send(c->node->conn->stream, &f, true);
    pthread_mutex_unlock(&d->lock);
}

void reg_pty_output(struct obx_dispatch *d, struct reg_conn *conn, struct obx_rpc_pty_output *o)
{
    struct reg_node *n = conn->node;
    if (!n->ext_pty) {
        obx_rpc_stream_close(conn->stream, OBX_RPC_INVALID_ARGUMENT, "unsupported frame type");
        return;
    }
    struct reg_call *c = reg_call_find(n, o->command_id);
    if (!c || c->finished || !c->call || strcmp(c->capability, "terminalpty") != 0) {
        obx_debug("worker %s sent terminal output for %.40s, which is not open", n->id,
                  o->command_id);
        return;
    }
    if (o->data_len > 0)
        reg_call_output(d, c, OBX_STREAM_STDOUT, o->data, o->data_len);
    /* The call may have ended while the hook ran without the lock: c is still ours (its end
     * waited for the hook), but nothing more goes to its caller. */
    if (o->event_len > 0 && !c->finished)
        reg_call_output(d, c, OBX_STREAM_EVENT, o->event, o->event_len);
}
