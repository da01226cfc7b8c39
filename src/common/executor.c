/* SPDX-License-Identifier: Apache-2.0 */
/* struct obx_call cancellation; see executor.h. */
#include "executor.h"

#include "clock.h"

void obx_call_init(struct obx_call *call)
{
    memset(call, 0, sizeof(*call));
    pthread_mutex_init(&call->lock, NULL);
}

void obx_call_done(struct obx_call *call)
{
    pthread_mutex_destroy(&call->lock);
}

void obx_call_cancel(struct obx_call *call)
{
    pthread_mutex_lock(&call->lock);
    if (call->cancelled) {
        pthread_mutex_unlock(&call->lock);
        return;
    }
    call->cancelled = true;
    /* Run under the lock so obx_call_clear_canceller() cannot return (and the executor free the
     * canceller's state) while the canceller is still running. */
    if (call->canceller)
        call->canceller(call->canceller_userdata);
    call->canceller = NULL;
    pthread_mutex_unlock(&call->lock);
}

bool obx_call_is_cancelled(struct obx_call *call)
{
    pthread_mutex_lock(&call->lock);
    bool c = call->cancelled;
    pthread_mutex_unlock(&call->lock);
    return c;
}

int obx_call_set_canceller(struct obx_call *call, void (*fn)(void *), void *userdata)
{
    pthread_mutex_lock(&call->lock);
    if (call->cancelled) {
        pthread_mutex_unlock(&call->lock);
        return -ECANCELED;
    }
    call->canceller = fn;
    call->canceller_userdata = userdata;
    pthread_mutex_unlock(&call->lock);
    return 0;
}

void obx_call_clear_canceller(struct obx_call *call)
{
    pthread_mutex_lock(&call->lock);
    call->canceller = NULL;
    call->canceller_userdata = NULL;
    pthread_mutex_unlock(&call->lock);
}

uint64_t obx_call_remaining_ms(const struct obx_call *call, uint64_t fallback)
{
    if (!call->deadline)
        return fallback;
    uint64_t now = obx_now_ms();
    return call->deadline > now ? call->deadline - now : 0;
}
