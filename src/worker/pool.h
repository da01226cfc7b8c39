/* SPDX-License-Identifier: Apache-2.0 */
/* Warm pool of started one-shot boxes; see pool.c. */
#ifndef OBX_WORKER_POOL_H
#define OBX_WORKER_POOL_H

#include "box.h"

struct obx_pool;

/* size 0 disables the pool: take() always starts a box. */
struct obx_pool *obx_pool_new(unsigned size,
                              int (*start)(void *userdata, struct obx_box **ret,
                                           struct obx_error *err),
                              void *userdata);
/* Stops the filler and every idle box. */
void obx_pool_free(struct obx_pool *p);

/* A started box for one use; the caller unrefs it when done. */
int obx_pool_take(struct obx_pool *p, struct obx_box **ret, struct obx_error *err);

/* Gives a used box back for disposal: its processes are killed at once, the rest of the teardown
 * happens in the background. Takes over the caller's reference. */
void obx_pool_retire(struct obx_pool *p, struct obx_box *b);

#endif
