/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The executor interface: how the MCP layer (and later the console's REST and task code) asks for
 * a capability to run, without knowing whether the worker is in this process or behind gRPC.
 *
 *   capability  lower-case wire name: "echo", "pythonexec", "terminalexec", "terminalresource"
 *   payload     the capability payload JSON (reference §3.5), the same bytes that travel in
 *               CommandDispatch.payload_json
 *   call        per-call context: owner account, deadline, output hook and cancellation
 *   result      on success, the result payload JSON (reference §3.5)
 *   err         on failure, a wire code (OBX_ERR_*) and a message
 *
 * exec() blocks the calling thread until the capability finished, failed, hit its deadline or was
 * cancelled; it is called from many threads at once. Cancellation comes from another thread
 * through obx_call_cancel(): the executor registers a canceller while it waits, and the canceller
 * must make exec() return promptly with OBX_ERR_CANCELED after the processes are gone.
 */
#ifndef OBX_COMMON_EXECUTOR_H
#define OBX_COMMON_EXECUTOR_H

#include <pthread.h>
#include <sys/types.h>

#include "json.h"

enum obx_stream {
    OBX_STREAM_STDOUT = 1,
    OBX_STREAM_STDERR = 2,
    OBX_STREAM_EVENT = 3, /* a live terminal's event (terminalpty): one JSON object */
};

/* Input to a call while it runs: a live terminal (terminalpty) takes what a person types, a new
 * size, and how many of its output bytes (OBX_STREAM_STDOUT) were passed on, a running total
 * (the terminal sends only so far ahead of it). */
enum obx_call_input_kind {
    OBX_CALL_INPUT_DATA = 1,
    OBX_CALL_INPUT_RESIZE,
    OBX_CALL_INPUT_ACK,
};

struct obx_call_input {
    enum obx_call_input_kind kind;
    const void *data; /* DATA */
    size_t len;
    unsigned cols, rows; /* RESIZE */
    uint64_t acked;      /* ACK */
};

/* How long a file transfer may stand still before it fails (see obx_call.on_data). */
#define OBX_CALL_STALL_MS 120000

struct obx_call {
    const char *account; /* owner account id; "local" in stdio mode */
    uint64_t deadline;   /* monotonic ms (obx_now_ms); 0 = none */

    /* Called from an executor thread with each chunk of output as it arrives (may be NULL).
     * data is not NUL-terminated and may end inside a UTF-8 sequence. */
    void (*on_output)(void *userdata, enum obx_stream stream, const char *data, size_t len);
    void *output_userdata;

    /* Called (may be NULL) with what the user should hear while the call waits for something
     * slow that is not its own output, e.g. "pulling image X: 40%". level is an enum
     * obx_log_level; message is one line of text. May be called from any executor thread until
     * exec() returns; the hook must be quick and must not call back into the executor. */
    void (*on_log)(void *userdata, int level, const char *message);
    void *log_userdata;

    /* File transfers (capability "terminalfiles", actions "read" and "write"). A read hands the
     * file's bytes, in order, to on_data; a write takes them from read_data, which returns how
     * many it put in buf (at most cap), 0 at their end, or a negative errno when they cannot
     * come (the transfer then fails, and nothing is written). Either may block; a negative
     * return of on_data stops the read. They are called from an executor thread, or (a remote
     * worker) from the thread that waits in exec(); NULL refuses the action. Transfers may
     * take long: a call without a deadline fails only when no byte moves for
     * OBX_CALL_STALL_MS. */
    int (*on_data)(void *userdata, const void *data, size_t len);
    ssize_t (*read_data)(void *userdata, void *buf, size_t cap);
    void *data_userdata;

    /* Cancellation and input state; use the functions below, never the fields. */
    pthread_mutex_t lock;
    bool cancelled;
    void (*canceller)(void *userdata);
    void *canceller_userdata;
    void (*input)(void *userdata, const struct obx_call_input *in);
    void *input_userdata;
};

void obx_call_init(struct obx_call *call);
void obx_call_done(struct obx_call *call);

/* Marks the call cancelled and runs the registered canceller (once). Thread-safe, idempotent. */
void obx_call_cancel(struct obx_call *call);
bool obx_call_is_cancelled(struct obx_call *call);

/* Registers fn to run on cancel. Returns -ECANCELED (and does not register) when the call is
 * already cancelled. The canceller runs with the call's lock held, so it must be quick and must not
 * call obx_call_* functions; obx_call_clear_canceller() waits for a running canceller. */
int obx_call_set_canceller(struct obx_call *call, void (*fn)(void *), void *userdata);
void obx_call_clear_canceller(struct obx_call *call);

/* The executor registers where input to the running call goes (as the canceller, it runs with the
 * call's lock held: quick, no obx_call_* inside). -ECANCELED when the call is cancelled. */
int obx_call_set_input(struct obx_call *call,
                       void (*fn)(void *userdata, const struct obx_call_input *in), void *userdata);
void obx_call_clear_input(struct obx_call *call);
/* Hands in to the running call: -ENOTCONN when nothing takes input (not yet, or any more),
 * -ECANCELED once cancelled. Any thread. */
int obx_call_input(struct obx_call *call, const struct obx_call_input *in);

/* Milliseconds left before the deadline (at least 1 while time remains), 0 when passed,
 * or fallback when the call has no deadline. */
uint64_t obx_call_remaining_ms(const struct obx_call *call, uint64_t fallback);

struct obx_executor {
    /* Returns 0 and sets *ret_result (new reference), or a negative errno and fills err. */
    int (*exec)(struct obx_executor *self, const char *capability, json_t *payload,
                struct obx_call *call, json_t **ret_result, struct obx_error *err);
};

#endif
