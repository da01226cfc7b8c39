/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the console sends a capability. Today that is the embedded in-process worker (or nothing);
 * later the gRPC worker registry implements the same three calls. acquire() is the availability
 * check and the capacity reservation in one step, so a task row is only created when a slot is
 * held; exec() blocks and must run on a console execution thread, never the HTTP service thread.
 */
#ifndef OBX_CONSOLE_DISPATCH_H
#define OBX_CONSOLE_DISPATCH_H

#include "common/executor.h"

struct obx_dispatch;

/* ex may be NULL (no worker). ex is borrowed and must outlive the dispatcher. */
struct obx_dispatch *obx_dispatch_new(struct obx_executor *ex, unsigned max_inflight);
void obx_dispatch_free(struct obx_dispatch *d);

/* Upper bound of calls running at once over every capability (sizes the execution threads). */
unsigned obx_dispatch_max_total(const struct obx_dispatch *d);

/* Reserves a slot for the lower-case capability: 0, -ENODEV (no worker supports it) or -EBUSY
 * (every worker that does is full). A reserved slot is released by exec() or release(). */
int obx_dispatch_acquire(struct obx_dispatch *d, const char *capability);
void obx_dispatch_release(struct obx_dispatch *d, const char *capability);

/* The embedded worker's capabilities with their in-flight counts, at most max of them; returns
 * how many were written (0 without an embedded worker). The names are static strings. */
struct obx_dispatch_cap {
    const char *name;     /* lower-case, as dispatched */
    const char *declared; /* as the worker declares it */
    unsigned inflight, max_inflight;
};
#define OBX_DISPATCH_MAX_CAPS 8
size_t obx_dispatch_snapshot(struct obx_dispatch *d, struct obx_dispatch_cap *out, size_t max);

/* Runs the capability in a reserved slot and releases it. Blocking; see executor.h. */
int obx_dispatch_exec(struct obx_dispatch *d, const char *capability, json_t *payload,
                      struct obx_call *call, json_t **ret_result, struct obx_error *err);

#endif
