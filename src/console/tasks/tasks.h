/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console's task runtime: live tasks executing on the execution threads, the waiters that
 * hold HTTP requests open until a task ends or a wait runs out, cancellation that reaches the
 * running call, retention pruning, and the owner scoping of terminal session ids (reference §6).
 * Everything here is thread-safe and never runs on the HTTP service thread.
 */
#ifndef OBX_CONSOLE_TASKS_H
#define OBX_CONSOLE_TASKS_H

#include "common/executor.h"
#include "console/http/http.h"
#include "console/registry/dispatch.h"
#include "console/store/store.h"

struct obx_tasks;

struct obx_tasks *obx_tasks_new(struct obx_store *st, struct obx_dispatch *d, int64_t retention_ms);
/* Cancels every live task (it ends failed/console_restarted), waits for the execution threads,
 * answers every waiter, then frees. */
void obx_tasks_free(struct obx_tasks *t);

/* Runs fn(arg) on an execution thread; -EAGAIN / -ESHUTDOWN as obx_console_pool_submit(). */
int obx_tasks_submit_job(struct obx_tasks *t, void (*fn)(void *), void *arg);

/* Who hears a task as it runs (MCP: the call that started it, while it waits): output() and
 * log() from the threads that run it, never after release(), which comes once when the task
 * ended. When obx_tasks_create() fails, none of them is called. */
struct obx_task_observer {
    void (*output)(void *userdata, enum obx_stream stream, const char *data, size_t len);
    void (*log)(void *userdata, int level, const char *message);
    void (*release)(void *userdata);
    void *userdata;
};

/* Creates a task and starts it: reserves a worker for task->capability (errors as
 * obx_dispatch_acquire(): no_worker, no_capacity ...), then records it (task->owner_id,
 * request_id, capability and input_hash as given; id and times filled in here) and starts it.
 * -EEXIST when (owner, request_id) is taken. payload is the scoped payload (borrowed); obs may be
 * NULL. */
int obx_tasks_create(struct obx_tasks *t, struct obx_task *task, json_t *payload,
                     uint64_t timeout_ms, const struct obx_task_observer *obs,
                     struct obx_error *err);

/* The HMAC of a task's input as the store keeps it (hash: 65 bytes). */
void obx_task_input_hash(const char *hash_key, const char *capability, const json_t *input,
                         char hash[65]);

/* Starts an inserted, queued task in its reserved dispatch slot (consumed). payload is the
 * scoped capability payload (a reference is taken). On failure the slot is released and the task
 * ends failed. */
void obx_tasks_start(struct obx_tasks *t, const struct obx_task *task, json_t *payload,
                     uint64_t timeout_ms, struct obx_dispatch_slot *slot,
                     const struct obx_task_observer *obs);

/* Answers req when the task ends or after wait_ms (0: only when it ends): respond(req, task) runs
 * on the waiter thread with the task as stored then (task NULL when it could not be read), and
 * the request is completed after it. Consumes the completion reference. */
typedef void (*obx_tasks_respond_fn)(struct obx_http_request *req, const struct obx_task *task);
void obx_tasks_wait(struct obx_tasks *t, const char *task_id, struct obx_http_request *req,
                    uint64_t wait_ms, obx_tasks_respond_fn respond);

/* Blocks until the task is no longer live or ms passed; true when it ended. For callers that
 * have a thread to spend (MCP calls waiting a little before they answer with a task). */
bool obx_tasks_wait_end(struct obx_tasks *t, const char *task_id, uint64_t ms);

/* fn(userdata, task_id) runs after each task ends or is canceled (on an execution or a handler
 * thread, no lock held). Setting another (or NULL) waits until no call of the old one runs. */
void obx_tasks_on_end(struct obx_tasks *t, void (*fn)(void *userdata, const char *task_id),
                      void *userdata);

/* Ends a live task as canceled and stops its call (the worker kills its processes). 1: canceled
 * now; 0: it had already ended; negative errno on a store failure. */
int obx_tasks_cancel(struct obx_tasks *t, const char *task_id, struct obx_error *err);

/* Prunes expired tasks if the last prune is more than 15 s old. */
void obx_tasks_maybe_prune(struct obx_tasks *t);

/* A short in-memory hold on (owner, request_id) while a submit validates and inserts: false when
 * another submit holds it. */
bool obx_tasks_reserve(struct obx_tasks *t, const char *owner, const char *request_id);
void obx_tasks_unreserve(struct obx_tasks *t, const char *owner, const char *request_id);

/* Owner scoping (§6). The scoped payload for terminalexec/terminalresource (new reference; other
 * capabilities and unparsable input give input itself, referenced). */
json_t *obx_task_scope_input(const char *capability, json_t *input, const char *account);
/* Strips the scope from result.session_id in place; -EPERM when it is not the caller's. */
int obx_task_unscope_result(const char *capability, json_t *result, const char *account);

#endif
