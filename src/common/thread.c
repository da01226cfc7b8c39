/* SPDX-License-Identifier: Apache-2.0 */
/* Threading helpers (thread.h). */
#include "thread.h"

#include <stdbool.h>

#include "util.h"

struct slot {
    void (*fn)(void *item);
    void *item;
};

static void *slot_run(void *arg)
{
    struct slot *s = arg;
    s->fn(s->item);
    return NULL;
}

void obx_parallel_each(void *items, size_t n, size_t size, void (*fn)(void *item),
                       unsigned max_threads)
{
    if (max_threads < 1)
        max_threads = 1;
    pthread_t *thr = obx_xcalloc(max_threads, sizeof(*thr));
    bool *started = obx_xcalloc(max_threads, sizeof(*started));
    struct slot *slots = obx_xcalloc(max_threads, sizeof(*slots));
    for (size_t at = 0; at < n; at += max_threads) {
        size_t m = OBX_MIN(n - at, (size_t)max_threads);
        for (size_t i = 0; i < m; i++) {
            slots[i] = (struct slot){fn, (char *)items + (at + i) * size};
            started[i] = m > 1 && pthread_create(&thr[i], NULL, slot_run, &slots[i]) == 0;
            if (!started[i])
                fn(slots[i].item);
        }
        for (size_t i = 0; i < m; i++)
            if (started[i])
                pthread_join(thr[i], NULL);
    }
    free(thr);
    free(started);
    free(slots);
}
