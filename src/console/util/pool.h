/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fixed set of worker threads for the console's blocking work (SQLite, password hashing,
 * waiting on dispatch). Submitting never blocks: the queue is bounded and a full queue is an error
 * the caller turns into 503, so the HTTP service thread can submit safely.
 */
#ifndef OBX_CONSOLE_POOL_H
#define OBX_CONSOLE_POOL_H

#include "common/util.h"

struct obx_console_pool;

typedef void (*obx_console_pool_fn)(void *arg);

struct obx_console_pool *obx_console_pool_new(int threads, size_t max_queued);
/* Queues fn(arg); -EAGAIN when the queue is full, -ESHUTDOWN after obx_console_pool_free() began.
 */
int obx_console_pool_submit(struct obx_console_pool *pool, obx_console_pool_fn fn, void *arg);
/* Runs every queued job, then joins the threads. */
void obx_console_pool_free(struct obx_console_pool *pool);

#endif
