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

#endif
