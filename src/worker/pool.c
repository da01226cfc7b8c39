/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Warm pool of started boxes of one kind, so a pythonExec or a new terminal session does not wait
 * for a box to start. The worker keeps one pool per image. A filler thread keeps up to `size` idle
 * boxes ready; take() hands one out (or starts one on the caller's thread when the pool is empty).
 * The filler is woken when a one-shot box is retired, or by refill() after a session's first
 * command, not when a box is taken: starting a box while the call's program starts up slows both
 * down (they contend in the kernel and in the container daemon), so the refill runs after the
 * call, in the client's think time. A box is used by one call or one session and then thrown
 * away, so nobody ever sees another's files or processes.
 */
#include "pool.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/thread.h"

#define RETRY_BACKOFF_MS 2000

struct obx_worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct obx_box **ready;
    unsigned count, size;
    struct obx_box **retired; /* used boxes waiting to be stopped by the filler */
    unsigned n_retired, cap_retired;
    bool stopping;
    pthread_t filler;
    int (*start)(void *userdata, struct obx_call *call, struct obx_box **ret,
                 struct obx_error *err);
    void *userdata;
};

static void *filler_main(void *arg)
{
    struct obx_worker_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        if (p->n_retired > 0) {
            struct obx_box *old = p->retired[--p->n_retired];
            pthread_mutex_unlock(&p->lock);
            obx_box_unref(old);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (p->count >= p->size) {
            pthread_cond_wait(&p->wake, &p->lock);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        struct obx_box *b = NULL;
        struct obx_error err = OBX_ERROR_INIT;
        int r = p->start(p->userdata, NULL, &b, &err);
        pthread_mutex_lock(&p->lock);
        if (r < 0) {
            /* The caller's own start will report the error; retry later without spinning. */
            obx_debug("warm pool: cannot start a box: %s", err.message);
            struct timespec ts = obx_ms_to_timespec(obx_now_ms() + RETRY_BACKOFF_MS);
            pthread_cond_timedwait(&p->wake, &p->lock, &ts);
            continue;
        }
        if (p->stopping || p->count >= p->size) {
            pthread_mutex_unlock(&p->lock);
            obx_box_unref(b);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        p->ready[p->count++] = b;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct obx_worker_pool *obx_worker_pool_new(unsigned size,
                                            int (*start)(void *userdata, struct obx_call *call,
                                                         struct obx_box **ret,
                                                         struct obx_error *err),
                                            void *userdata)
{
    struct obx_worker_pool *p = obx_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    obx_cond_init_monotonic(&p->wake);
    p->size = size;
    p->ready = obx_xcalloc(size ? size : 1, sizeof(*p->ready));
    p->start = start;
    p->userdata = userdata;
    if (size > 0 && pthread_create(&p->filler, NULL, filler_main, p) != 0)
        p->size = 0;
    return p;
}

void obx_worker_pool_free(struct obx_worker_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    if (p->size > 0)
        pthread_join(p->filler, NULL);
    for (unsigned i = 0; i < p->count; i++)
        obx_box_unref(p->ready[i]);
    for (unsigned i = 0; i < p->n_retired; i++)
        obx_box_unref(p->retired[i]);
    free(p->ready);
    free(p->retired);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}

int obx_worker_pool_take(struct obx_worker_pool *p, struct obx_call *call, struct obx_box **ret,
                         struct obx_error *err)
{
    pthread_mutex_lock(&p->lock);
    while (p->count > 0) {
        struct obx_box *b = p->ready[--p->count];
        if (obx_box_alive(b)) {
            pthread_mutex_unlock(&p->lock);
            *ret = b;
            return 0;
        }
        pthread_mutex_unlock(&p->lock);
        obx_box_unref(b);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return p->start(p->userdata, call, ret, err);
}

void obx_worker_pool_refill(struct obx_worker_pool *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->count < p->size)
        pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void obx_worker_pool_retire(struct obx_worker_pool *p, struct obx_box *b)
{
    /* Kill it now so nothing runs on, but leave the slower teardown (waiting for the runtime,
     * removing the workspace) to the filler thread, off the caller's path. */
    obx_box_kill_soft(b);
    pthread_mutex_lock(&p->lock);
    if (p->size == 0 || p->stopping) {
        pthread_mutex_unlock(&p->lock);
        obx_box_unref(b);
        return;
    }
    if (p->n_retired == p->cap_retired) {
        p->cap_retired = p->cap_retired ? 2 * p->cap_retired : 8;
        p->retired = obx_xrealloc(p->retired, p->cap_retired * sizeof(*p->retired));
    }
    p->retired[p->n_retired++] = b;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}
