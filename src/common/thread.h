/* SPDX-License-Identifier: Apache-2.0 */
/* Threading helpers. Condition variables that time out use CLOCK_MONOTONIC, like every deadline
 * here (see clock.h). */
#ifndef OBX_COMMON_THREAD_H
#define OBX_COMMON_THREAD_H

#include <pthread.h>
#include <time.h>

static inline void obx_cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

#endif
