/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A running box seen from the worker: the runtime handle plus the agent connection. One reader
 * thread per box decodes the agent's frames and routes them to the waiting requests by id, so any
 * number of threads can run requests in one box at once. Boxes are reference-counted: a session or
 * a one-shot call holds a reference; the last unref stops the box.
 */
#ifndef OBX_WORKER_BOX_H
#define OBX_WORKER_BOX_H

#include "common/executor.h"
#include "common/runtime.h"

struct obx_box;

/* Starts a box and waits (up to timeout_ms) for the agent's HELLO. */
int obx_box_start(struct obx_runtime *rt, const struct obx_box_spec *spec, uint64_t timeout_ms,
                  struct obx_box **ret, struct obx_error *err);

/* Runs fn(userdata) once the box is gone, at its last unref (once per box; what the box needs
 * for its whole life, such as its egress proxy socket). */
void obx_box_on_free(struct obx_box *b, void (*fn)(void *), void *userdata);

struct obx_box *obx_box_ref(struct obx_box *b);
/* Drops a reference; the last one stops the box and frees it. Accepts NULL. */
void obx_box_unref(struct obx_box *b);
/* Drops a reference to each of the n boxes, several at a time: a runtime may take a few hundred
 * milliseconds to stop each (a container), which one after the other would hold up an exit. */
void obx_box_unref_all(struct obx_box **v, size_t n);

/* Kills the box now: every pending request fails. The object stays valid until the last unref. */
void obx_box_kill(struct obx_box *b);
bool obx_box_alive(struct obx_box *b);
/* Why a box that is not alive ended ("stopped" when it was killed on purpose). */
void obx_box_end_reason(struct obx_box *b, char *buf, size_t size);

/* Makes the agent kill everything in the box and exit, without waiting for it; the runtime's
 * teardown still happens at the last unref. */
void obx_box_kill_soft(struct obx_box *b);

/* Kills every live box of this process, and with runtimes that can, every box still starting
 * (on SIGTERM/SIGINT, before exiting). */
void obx_box_kill_all(void);

/* The runtime is about to be freed: kill_all must not touch it any more. */
void obx_box_forget_runtime(struct obx_runtime *rt);

struct obx_box_exec_result {
    int exit_code;
    int signal;
    bool timed_out, canceled;
    bool stdout_truncated, stderr_truncated;
    uint64_t duration_ms;
    char *out; /* NUL-terminated, may hold invalid UTF-8; owned by the result */
    size_t out_len;
    char *err;
    size_t err_len;
    json_t *python; /* a "python" request's results (agent/protocol.h), NULL otherwise */
};

void obx_box_exec_result_done(struct obx_box_exec_result *r);

/* Runs an EXEC request (JSON per agent/protocol.h) and waits for its EXIT. Output chunks go to
 * call->on_output as they arrive. Cancelling the call sends CANCEL to the agent. A timeout or
 * cancel is not an error here: see timed_out / canceled in the result. Fails only when the box
 * died or did not answer. */
int obx_box_exec(struct obx_box *b, json_t *req, struct obx_call *call,
                 struct obx_box_exec_result *ret, struct obx_error *err);

/* Sends one request of the given type and waits for its terminal frame (OK or FILE); an ERROR
 * frame becomes err with the agent's code. *ret_payload (malloc'd) and *ret_len receive the
 * terminal frame's payload. */
int obx_box_request(struct obx_box *b, uint8_t type, json_t *req, struct obx_call *call,
                    uint8_t *ret_type, uint8_t **ret_payload, size_t *ret_len,
                    struct obx_error *err);

/* File transfers (agent FGET/FPUT). A download keeps at most this much in flight. */
#define OBX_BOX_FILE_WINDOW (4u << 20)

/* Sends req (FGET's JSON: path, state) and hands the file to the callbacks on this thread:
 * on_meta once with the file's metadata, then on_data with its bytes in order, acknowledging
 * each so the agent sends more. A callback returning a negative errno cancels the download (the
 * call then fails with that errno, code canceled). *ret_final: the agent's OK ({"size_bytes"}).
 * Fails with the agent's error codes, or deadline_exceeded when the box stays silent for
 * OBX_CALL_STALL_MS. */
int obx_box_get(struct obx_box *b, json_t *req, struct obx_call *call,
                int (*on_meta)(void *userdata, json_t *meta),
                int (*on_data)(void *userdata, const void *data, size_t len), void *userdata,
                json_t **ret_final, struct obx_error *err);

/* Sends req (FPUT's JSON: path, state, size_bytes, mode, parents), then the bytes read_data
 * gives until it returns 0, then waits for the agent's answer (*ret_final: {"path",
 * "size_bytes", "created"}). A negative return of read_data cancels the upload (nothing is
 * written). */
int obx_box_put(struct obx_box *b, json_t *req, struct obx_call *call,
                ssize_t (*read_data)(void *userdata, void *buf, size_t cap), void *userdata,
                json_t **ret_final, struct obx_error *err);

/* Opens a live terminal (PTY_OPEN's JSON) and serves it until it closes: its output and events go
 * to call->on_output (OBX_STREAM_STDOUT, OBX_STREAM_EVENT) on the box's reader thread, what
 * obx_call_input() hands in goes to the agent, and cancelling the call closes it. *ret_exit:
 * the agent's EXIT (with "reason"). Fails when the box goes (EPIPE) or the agent refuses. */
int obx_box_pty(struct obx_box *b, json_t *req, struct obx_call *call, json_t **ret_exit,
                struct obx_error *err);

#endif
