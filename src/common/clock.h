/* SPDX-License-Identifier: Apache-2.0 */
/* Time: monotonic milliseconds for deadlines and durations, wall-clock only for display. */
#ifndef OBX_COMMON_CLOCK_H
#define OBX_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t obx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t obx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Unix epoch milliseconds (wall clock). */
static inline int64_t obx_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339 with the millisecond fraction trimmed and the local offset ("Z" in UTC), as Go prints a
 * time.Time: what the APIs show for a time. out must hold 40 bytes. */
void obx_time_rfc3339(int64_t unix_ms, char out[static 40]);

/* Absolute CLOCK_MONOTONIC timespec for a monotonic-ms deadline (for pthread_cond_timedwait with a
 * condvar whose clock is CLOCK_MONOTONIC). */
static inline struct timespec obx_ms_to_timespec(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    return ts;
}

#endif
