/* SPDX-License-Identifier: Apache-2.0 */
/* Warm pool of started boxes of one kind (one image); see pool.c. */
#ifndef OBX_WORKER_POOL_H
#define OBX_WORKER_POOL_H

#include "box.h"

struct obx_worker_pool;

struct obx_worker_pool_ops {
    /* Starts one box; call is the waiting caller's (for its on_log), NULL for a filler. */
    int (*start)(void *userdata, struct obx_call *call, struct obx_box **ret,
                 struct obx_error *err);
    /* May be NULL. Readies a box a filler started (pythonExec's interpreter with its preload),
     * while the pool is not short of boxes; a failure leaves the box as it is. Boxes a caller
     * starts for itself are not prepared: that would only make it wait longer. */
    void (*prepare)(void *userdata, struct obx_box *b);
};

/* size 0 disables the pool: take() always starts a box. Otherwise size boxes are kept ready, and
 * up to max (at least size) while demand outruns the refill. ops must outlive the pool. */
struct obx_worker_pool *obx_worker_pool_new(unsigned size, unsigned max,
                                            const struct obx_worker_pool_ops *ops, void *userdata);
/* Stops the fillers and every idle box. */
void obx_worker_pool_free(struct obx_worker_pool *p);

/* A started box; the caller owns the reference. It goes back through obx_worker_pool_retire() (a
 * one-shot use), or is kept (a session) and then obx_worker_pool_refill() asks for a replacement.
 * Wakes the fillers only when the pool ran dry, so that at a normal pace the refill does not
 * compete with the caller's first command. */
int obx_worker_pool_take(struct obx_worker_pool *p, struct obx_call *call, struct obx_box **ret,
                         struct obx_error *err);

/* Wakes a filler to replace boxes taken for keeps. Cheap; call it after the command. */
void obx_worker_pool_refill(struct obx_worker_pool *p);

/* Gives a used box back for disposal: its processes are killed at once, the rest of the teardown
 * happens in the background. Takes over the caller's reference. */
void obx_worker_pool_retire(struct obx_worker_pool *p, struct obx_box *b);

struct obx_worker_pool_stats {
    unsigned ready, prepared; /* boxes idle in the pool; of those, prepared */
    unsigned starting;        /* boxes being started, or taken out to be prepared */
    unsigned target;          /* what the fillers aim at now */
    unsigned size, max;       /* the configured bounds */
};

void obx_worker_pool_stats(struct obx_worker_pool *p, struct obx_worker_pool_stats *ret);

#endif
