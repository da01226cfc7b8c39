/* SPDX-License-Identifier: Apache-2.0 */
/* Threading helpers. Condition variables that time out use CLOCK_MONOTONIC, like every deadline
 * here (see clock.h). */
#ifndef OBX_COMMON_THREAD_H
#define OBX_COMMON_THREAD_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

static inline void obx_cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

/* Calls fn on each of the n items of size bytes at items, up to max_threads of them at a time,
 * and returns when every call has returned. For slow calls that wait on something else (a
 * daemon removing containers): one after the other they would add up. A thread that cannot be
 * created runs its item on the caller's. */
void obx_parallel_each(void *items, size_t n, size_t size, void (*fn)(void *item),
                       unsigned max_threads);

#endif
