/* SPDX-License-Identifier: Apache-2.0 */
/* Warm pool of started boxes of one kind (one image); see pool.c. */
#ifndef OBX_WORKER_POOL_H
#define OBX_WORKER_POOL_H

#include "box.h"

struct obx_worker_pool;

/* size 0 disables the pool: take() always starts a box. */
/* start() starts one box; call is the waiting caller's (for its on_log), NULL for the filler. */
struct obx_worker_pool *obx_worker_pool_new(unsigned size,
                                            int (*start)(void *userdata, struct obx_call *call,
                                                         struct obx_box **ret,
                                                         struct obx_error *err),
                                            void *userdata);
/* Stops the filler and every idle box. */
void obx_worker_pool_free(struct obx_worker_pool *p);

/* A started box; the caller owns the reference. It goes back through obx_worker_pool_retire() (a
 * one-shot use), or is kept (a session) and then obx_worker_pool_refill() asks for a replacement.
 * Does not wake the filler itself, so the refill does not compete with the caller's first command.
 */
int obx_worker_pool_take(struct obx_worker_pool *p, struct obx_call *call, struct obx_box **ret,
                         struct obx_error *err);

/* Wakes the filler to replace boxes taken for keeps. Cheap; call it after the command. */
void obx_worker_pool_refill(struct obx_worker_pool *p);

/* Gives a used box back for disposal: its processes are killed at once, the rest of the teardown
 * happens in the background. Takes over the caller's reference. */
void obx_worker_pool_retire(struct obx_worker_pool *p, struct obx_box *b);

#endif
