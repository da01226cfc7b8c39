/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The login limiter keeps, per key, the times of its recent failures in a small ring. The table
 * is a flat array searched linearly: it holds at most max_keys entries (a few thousand), and a
 * login costs an argon2 hash anyway, so a scan is noise.
 */
#include "ratelimit.h"

#include <pthread.h>

#define RL_MAX_FAILURES 64

struct rl_entry {
    char *key;
    uint64_t last_ms;
    int n;
    uint64_t at[RL_MAX_FAILURES];
};

struct obx_ratelimit {
    pthread_mutex_t lock;
    int max_failures;
    uint64_t window_ms;
    size_t max_keys, n;
    struct rl_entry *entries;
};

struct obx_ratelimit *obx_ratelimit_new(int max_failures, uint64_t window_ms, size_t max_keys)
{
    struct obx_ratelimit *rl = obx_xcalloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->lock, NULL);
    rl->max_failures = OBX_MAX(1, OBX_MIN(max_failures, RL_MAX_FAILURES));
    rl->window_ms = window_ms;
    rl->max_keys = OBX_MAX(max_keys, (size_t)1);
    rl->entries = obx_xcalloc(rl->max_keys, sizeof(*rl->entries));
    return rl;
}

void obx_ratelimit_free(struct obx_ratelimit *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < rl->n; i++)
        free(rl->entries[i].key);
    free(rl->entries);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

/* Drops failures older than the window; returns how many remain. */
static int entry_expire(struct obx_ratelimit *rl, struct rl_entry *e, uint64_t now_ms)
{
    int k = 0;
    for (int i = 0; i < e->n; i++)
        if (now_ms < e->at[i] + rl->window_ms)
            e->at[k++] = e->at[i];
    e->n = k;
    return k;
}

static struct rl_entry *find(struct obx_ratelimit *rl, const char *key)
{
    for (size_t i = 0; i < rl->n; i++)
        if (strcmp(rl->entries[i].key, key) == 0)
            return &rl->entries[i];
    return NULL;
}

static void remove_at(struct obx_ratelimit *rl, size_t i)
{
    free(rl->entries[i].key);
    rl->entries[i] = rl->entries[--rl->n];
}

bool obx_ratelimit_blocked(struct obx_ratelimit *rl, const char *key, uint64_t now_ms)
{
    pthread_mutex_lock(&rl->lock);
    struct rl_entry *e = find(rl, key);
    bool blocked = e && entry_expire(rl, e, now_ms) >= rl->max_failures;
    pthread_mutex_unlock(&rl->lock);
    return blocked;
}

void obx_ratelimit_fail(struct obx_ratelimit *rl, const char *key, uint64_t now_ms)
{
    pthread_mutex_lock(&rl->lock);
    struct rl_entry *e = find(rl, key);
    if (!e) {
        if (rl->n == rl->max_keys) {
            /* Full: forget expired keys, else the one idle longest. */
            size_t oldest = 0;
            for (size_t i = rl->n; i-- > 0;) {
                if (entry_expire(rl, &rl->entries[i], now_ms) == 0)
                    remove_at(rl, i);
            }
            if (rl->n == rl->max_keys) {
                for (size_t i = 1; i < rl->n; i++)
                    if (rl->entries[i].last_ms < rl->entries[oldest].last_ms)
                        oldest = i;
                remove_at(rl, oldest);
            }
        }
        e = &rl->entries[rl->n++];
        memset(e, 0, sizeof(*e));
        e->key = obx_xstrdup(key);
    }
    entry_expire(rl, e, now_ms);
    if (e->n == RL_MAX_FAILURES) {
        memmove(e->at, e->at + 1, sizeof(e->at[0]) * (RL_MAX_FAILURES - 1));
        e->n--;
    }
    e->at[e->n++] = now_ms;
    e->last_ms = now_ms;
    pthread_mutex_unlock(&rl->lock);
}

void obx_ratelimit_reset(struct obx_ratelimit *rl, const char *key)
{
    pthread_mutex_lock(&rl->lock);
    for (size_t i = 0; i < rl->n; i++) {
        if (strcmp(rl->entries[i].key, key) == 0) {
            remove_at(rl, i);
            break;
        }
    }
    pthread_mutex_unlock(&rl->lock);
}
