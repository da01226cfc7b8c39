/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Warm pool of started boxes of one kind, so a pythonExec or a new terminal session does not wait
 * for a box to start. The worker keeps one pool per image. Filler threads keep `target` idle boxes
 * ready, each started and, for pythonExec's pool, prepared (its interpreter started with the
 * preload imported); take() hands out a prepared box when there is one, any ready box otherwise,
 * and starts one on the caller's thread, unprepared, when the pool is empty.
 *
 * The target is `size` while calls come at a pace the refill keeps up with, and grows with demand
 * up to `max`: a take() that finds the pool empty, or empties it, raises it by GROW_STEP and wakes
 * the fillers at once, which then start boxes in parallel (up to FILLERS at a time). Without such
 * a shortage for SHRINK_AFTER_MS the target falls back by one box every SHRINK_STEP_MS and the
 * oldest idle boxes are stopped, so a burst costs memory only while it lasts. Otherwise the
 * fillers are woken when a one-shot box is retired, or by refill() after a session's first
 * command, not when a box is taken: starting a box while the call's program runs slows both
 * down, so at a normal pace the refill runs in the client's think time.
 *
 * Preparing a box costs far more CPU than starting it (the imports), which pays when the box is
 * there before its call, not while calls outrun the refill: then every box would be prepared for
 * a call that is already waiting, at the expense of the calls running. So a box is prepared only
 * once the pool has been without a shortage for QUIET_MS; boxes started during a shortage stay
 * plain (a call gets a cold interpreter in them, still without a box start), and an idle filler
 * prepares them, out of the ready list, when it is quiet again. A box is used by one call or one
 * session and then thrown away, so nobody ever sees another's files or processes.
 */
#include "pool.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/thread.h"

#define RETRY_BACKOFF_MS 2000
#define FILLERS 4 /* boxes started at once: docker's starts mostly wait on the daemon */
#define GROW_STEP 2
#define SHRINK_AFTER_MS 60000
#define SHRINK_STEP_MS 10000
#define QUIET_MS 1000 /* without a shortage this long, boxes are prepared */

struct ready_box {
    struct obx_box *box;
    bool prepared;
};

struct obx_worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct ready_box *ready; /* oldest first */
    unsigned count, size, max, target;
    unsigned starting;      /* boxes being started, or taken out to be prepared */
    uint64_t last_short_ms; /* when a take() last found the pool empty or emptied it */
    uint64_t next_shrink_ms;
    struct obx_box **retired; /* used boxes waiting to be stopped by a filler */
    unsigned n_retired, cap_retired;
    bool stopping;
    struct obx_box *preparing[FILLERS]; /* boxes being prepared: killed when the pool stops */
    pthread_t fillers[FILLERS];
    unsigned n_fillers;
    const struct obx_worker_pool_ops *ops;
    void *userdata;
};

static bool quiet(const struct obx_worker_pool *p, uint64_t now)
{
    return now >= p->last_short_ms + QUIET_MS;
}

/* Lock held: removes ready[i] and returns it. */
static struct ready_box ready_remove(struct obx_worker_pool *p, unsigned i)
{
    struct ready_box rb = p->ready[i];
    memmove(p->ready + i, p->ready + i + 1, (p->count - i - 1) * sizeof(*p->ready));
    p->count--;
    return rb;
}

/* Lock held: the index of a ready box that is not prepared yet, or -1. */
static int unprepared(const struct obx_worker_pool *p)
{
    if (!p->ops->prepare)
        return -1;
    for (unsigned i = 0; i < p->count; i++)
        if (!p->ready[i].prepared)
            return (int)i;
    return -1;
}

/* Lock held: takes the oldest idle box out when the target fell below the count. */
static struct obx_box *shrink_locked(struct obx_worker_pool *p, uint64_t now)
{
    if (p->target > p->size && now >= p->last_short_ms + SHRINK_AFTER_MS &&
        now >= p->next_shrink_ms) {
        p->target--;
        p->next_shrink_ms = now + SHRINK_STEP_MS;
    }
    if (p->count <= p->target || p->count == 0)
        return NULL;
    return ready_remove(p, 0).box;
}

/* Lock held: how long a filler with nothing to do now may sleep (0: until woken). */
static uint64_t next_wake_locked(const struct obx_worker_pool *p, uint64_t now)
{
    uint64_t at = 0;
    if (p->target > p->size)
        at = OBX_MAX(p->last_short_ms + SHRINK_AFTER_MS, p->next_shrink_ms);
    if (unprepared(p) >= 0 && !quiet(p, now)) {
        uint64_t q = p->last_short_ms + QUIET_MS;
        at = at ? OBX_MIN(at, q) : q;
    }
    return at ? OBX_MAX(at, now + 1) : 0;
}

/* Lock held on entry and exit: prepares b (not in the pool) where pool_free() can stop it: an
 * interpreter importing its libraries takes a second on a busy host, which an exit must not wait
 * for. False when the pool is stopping (nothing was done). */
static bool prepare_out_of_lock(struct obx_worker_pool *p, struct obx_box *b)
{
    unsigned slot = 0;
    while (slot < FILLERS && p->preparing[slot])
        slot++;
    if (p->stopping || slot == FILLERS)
        return false;
    p->preparing[slot] = b;
    pthread_mutex_unlock(&p->lock);
    p->ops->prepare(p->userdata, b);
    pthread_mutex_lock(&p->lock);
    p->preparing[slot] = NULL;
    return true;
}

/* Lock held on entry and exit: starts a box (prepared when quiet) and puts it in the pool. */
static void fill_one(struct obx_worker_pool *p, uint64_t now)
{
    bool prepare = p->ops->prepare && quiet(p, now);
    p->starting++;
    pthread_mutex_unlock(&p->lock);
    struct obx_box *b = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = p->ops->start(p->userdata, NULL, &b, &err);
    pthread_mutex_lock(&p->lock);
    if (r >= 0 && prepare)
        prepare = prepare_out_of_lock(p, b);
    p->starting--;
    if (r >= 0 && !obx_box_alive(b)) {
        pthread_mutex_unlock(&p->lock);
        obx_box_unref(b);
        pthread_mutex_lock(&p->lock);
        r = obx_error_set(&err, EPIPE, OBX_ERR_EXECUTION_FAILED, "the box ended at once");
    }
    if (r < 0 && p->stopping)
        return;
    if (r < 0) {
        /* The caller's own start will report the error; retry later without spinning. */
        obx_debug("warm pool: cannot start a box: %s", err.message);
        struct timespec ts = obx_ms_to_timespec(obx_now_ms() + RETRY_BACKOFF_MS);
        pthread_cond_timedwait(&p->wake, &p->lock, &ts);
        return;
    }
    if (p->stopping || p->count >= p->target) {
        pthread_mutex_unlock(&p->lock);
        obx_box_unref(b);
        pthread_mutex_lock(&p->lock);
        return;
    }
    p->ready[p->count++] = (struct ready_box){b, prepare};
}

/* Lock held on entry and exit: prepares ready[i], out of the pool while it does. */
static void prepare_one(struct obx_worker_pool *p, unsigned i)
{
    struct ready_box rb = ready_remove(p, i);
    p->starting++;
    bool prepared = prepare_out_of_lock(p, rb.box);
    p->starting--;
    if (prepared && obx_box_alive(rb.box) && !p->stopping && p->count < p->max) {
        p->ready[p->count++] = (struct ready_box){rb.box, true};
        return;
    }
    pthread_mutex_unlock(&p->lock);
    obx_box_unref(rb.box);
    pthread_mutex_lock(&p->lock);
}

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
        uint64_t now = obx_now_ms();
        struct obx_box *extra = shrink_locked(p, now);
        if (extra) {
            pthread_mutex_unlock(&p->lock);
            obx_box_unref(extra);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (p->count + p->starting < p->target) {
            fill_one(p, now);
            continue;
        }
        int i = unprepared(p);
        if (i >= 0 && quiet(p, now)) {
            prepare_one(p, (unsigned)i);
            continue;
        }
        uint64_t at = next_wake_locked(p, now);
        if (at) {
            struct timespec ts = obx_ms_to_timespec(at);
            pthread_cond_timedwait(&p->wake, &p->lock, &ts);
        } else {
            pthread_cond_wait(&p->wake, &p->lock);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct obx_worker_pool *obx_worker_pool_new(unsigned size, unsigned max,
                                            const struct obx_worker_pool_ops *ops, void *userdata)
{
    struct obx_worker_pool *p = obx_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    obx_cond_init_monotonic(&p->wake);
    p->size = size;
    p->max = size ? OBX_MAX(size, max) : 0;
    p->target = size;
    p->ready = obx_xcalloc(p->max ? p->max : 1, sizeof(*p->ready));
    p->ops = ops;
    p->userdata = userdata;
    unsigned want = OBX_MIN(p->max, (unsigned)FILLERS);
    for (unsigned i = 0; i < want; i++)
        if (pthread_create(&p->fillers[p->n_fillers], NULL, filler_main, p) == 0)
            p->n_fillers++;
    if (p->n_fillers == 0)
        p->size = p->max = p->target = 0;
    return p;
}

void obx_worker_pool_free(struct obx_worker_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    struct obx_box *preparing[FILLERS] = {NULL};
    for (unsigned i = 0; i < FILLERS; i++)
        preparing[i] = p->preparing[i] ? obx_box_ref(p->preparing[i]) : NULL;
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < FILLERS; i++)
        if (preparing[i]) {
            obx_box_kill(preparing[i]); /* its prepare() fails at once */
            obx_box_unref(preparing[i]);
        }
    uint64_t t0 = obx_now_ms();
    for (unsigned i = 0; i < p->n_fillers; i++)
        pthread_join(p->fillers[i], NULL);
    uint64_t t1 = obx_now_ms();
    struct obx_box **all = obx_xcalloc((size_t)p->count + p->n_retired + 1, sizeof(*all));
    size_t n = 0;
    for (unsigned i = 0; i < p->count; i++)
        all[n++] = p->ready[i].box;
    for (unsigned i = 0; i < p->n_retired; i++)
        all[n++] = p->retired[i];
    obx_box_unref_all(all, n);
    free(all);
    obx_debug("pool: its fillers stopped in %llu ms, its %zu boxes in %llu ms",
              (unsigned long long)(t1 - t0), n, (unsigned long long)(obx_now_ms() - t1));
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
    struct obx_box *got = NULL;
    while (p->count > 0 && !got) {
        /* The newest prepared box, else the newest. */
        unsigned pick = p->count - 1;
        for (unsigned i = p->count; i-- > 0;)
            if (p->ready[i].prepared) {
                pick = i;
                break;
            }
        struct obx_box *b = ready_remove(p, pick).box;
        if (obx_box_alive(b)) {
            got = b;
            break;
        }
        pthread_mutex_unlock(&p->lock);
        obx_box_unref(b);
        pthread_mutex_lock(&p->lock);
    }
    if (p->max > 0 && p->count == 0) {
        /* Demand outruns the refill: more boxes, started now and in parallel. */
        p->last_short_ms = obx_now_ms();
        p->target = OBX_MIN(p->max, p->target + GROW_STEP);
        pthread_cond_broadcast(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    if (got) {
        *ret = got;
        return 0;
    }
    return p->ops->start(p->userdata, call, ret, err);
}

void obx_worker_pool_refill(struct obx_worker_pool *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->count + p->starting < p->target)
        pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void obx_worker_pool_retire(struct obx_worker_pool *p, struct obx_box *b)
{
    /* Kill it now so nothing runs on, but leave the slower teardown (waiting for the runtime,
     * removing the workspace) to a filler thread, off the caller's path. */
    obx_box_kill_soft(b);
    pthread_mutex_lock(&p->lock);
    if (p->n_fillers == 0 || p->stopping) {
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

void obx_worker_pool_stats(struct obx_worker_pool *p, struct obx_worker_pool_stats *ret)
{
    pthread_mutex_lock(&p->lock);
    unsigned prepared = 0;
    for (unsigned i = 0; i < p->count; i++)
        prepared += p->ready[i].prepared;
    *ret = (struct obx_worker_pool_stats){.ready = p->count,
                                          .prepared = prepared,
                                          .starting = p->starting,
                                          .target = p->target,
                                          .size = p->size,
                                          .max = p->max};
    pthread_mutex_unlock(&p->lock);
}
