/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dispatch to the embedded worker: a table of the capabilities it serves with an in-flight counter
 * each, under one mutex. Without an embedded worker every capability is "no worker".
 */
#include "dispatch.h"

#include <pthread.h>
#include <strings.h>

static const char *const embedded_caps[] = {"echo", "pythonexec", "terminalexec",
                                            "terminalresource"};
/* The same capabilities as the worker declares them (worker lists show these). */
static const char *const embedded_declared[] = {"echo", "pythonExec", "terminalExec",
                                                "terminalResource"};

struct obx_dispatch {
    struct obx_executor *ex;
    unsigned max_inflight;
    pthread_mutex_t lock;
    unsigned inflight[OBX_ARRAY_SIZE(embedded_caps)];
};

struct obx_dispatch *obx_dispatch_new(struct obx_executor *ex, unsigned max_inflight)
{
    struct obx_dispatch *d = obx_xcalloc(1, sizeof(*d));
    d->ex = ex;
    d->max_inflight = max_inflight ? max_inflight : 4;
    pthread_mutex_init(&d->lock, NULL);
    return d;
}

void obx_dispatch_free(struct obx_dispatch *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->lock);
    free(d);
}

unsigned obx_dispatch_max_total(const struct obx_dispatch *d)
{
    return d->ex ? d->max_inflight * (unsigned)OBX_ARRAY_SIZE(embedded_caps) : 0;
}

static int cap_index(const struct obx_dispatch *d, const char *capability)
{
    if (!d->ex)
        return -ENODEV;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(embedded_caps); i++)
        if (strcasecmp(capability, embedded_caps[i]) == 0)
            return (int)i;
    return -ENODEV;
}

int obx_dispatch_acquire(struct obx_dispatch *d, const char *capability)
{
    int i = cap_index(d, capability);
    if (i < 0)
        return i;
    pthread_mutex_lock(&d->lock);
    int r = -EBUSY;
    if (d->inflight[i] < d->max_inflight) {
        d->inflight[i]++;
        r = 0;
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

void obx_dispatch_release(struct obx_dispatch *d, const char *capability)
{
    int i = cap_index(d, capability);
    if (i < 0)
        return;
    pthread_mutex_lock(&d->lock);
    if (d->inflight[i] > 0)
        d->inflight[i]--;
    pthread_mutex_unlock(&d->lock);
}

size_t obx_dispatch_snapshot(struct obx_dispatch *d, struct obx_dispatch_cap *out, size_t max)
{
    if (!d->ex)
        return 0;
    size_t n = OBX_MIN(max, OBX_ARRAY_SIZE(embedded_caps));
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < n; i++)
        out[i] = (struct obx_dispatch_cap){embedded_caps[i], embedded_declared[i], d->inflight[i],
                                           d->max_inflight};
    pthread_mutex_unlock(&d->lock);
    return n;
}

int obx_dispatch_exec(struct obx_dispatch *d, const char *capability, json_t *payload,
                      struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    int r;
    if (cap_index(d, capability) < 0)
        r = obx_error_set(err, ENODEV, "no_worker", "no online worker supports %s", capability);
    else
        r = d->ex->exec(d->ex, capability, payload, call, ret_result, err);
    obx_dispatch_release(d, capability);
    return r;
}
