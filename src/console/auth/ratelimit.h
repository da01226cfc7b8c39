/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Login failure limiter: at most `max_failures` failures per key (username + client address)
 * within a sliding `window_ms`. Thread-safe; bounded memory (the oldest key is forgotten when the
 * table is full).
 */
#ifndef OBX_CONSOLE_RATELIMIT_H
#define OBX_CONSOLE_RATELIMIT_H

#include "common/util.h"

struct obx_ratelimit;

struct obx_ratelimit *obx_ratelimit_new(int max_failures, uint64_t window_ms, size_t max_keys);
void obx_ratelimit_free(struct obx_ratelimit *rl);
/* True when key has used up its failures at monotonic time now_ms. */
bool obx_ratelimit_blocked(struct obx_ratelimit *rl, const char *key, uint64_t now_ms);
void obx_ratelimit_fail(struct obx_ratelimit *rl, const char *key, uint64_t now_ms);
void obx_ratelimit_reset(struct obx_ratelimit *rl, const char *key);

#endif
