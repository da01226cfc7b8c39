/* SPDX-License-Identifier: Apache-2.0 */
/* struct obx_call cancellation and input; see executor.h. */
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

int obx_call_set_input(struct obx_call *call,
                       void (*fn)(void *userdata, const struct obx_call_input *in), void *userdata)
{
    pthread_mutex_lock(&call->lock);
    int r = call->cancelled ? -ECANCELED : 0;
    if (r == 0) {
        call->input = fn;
        call->input_userdata = userdata;
    }
    pthread_mutex_unlock(&call->lock);
    return r;
}

void obx_call_clear_input(struct obx_call *call)
{
    pthread_mutex_lock(&call->lock);
    call->input = NULL;
    call->input_userdata = NULL;
    pthread_mutex_unlock(&call->lock);
}

int obx_call_input(struct obx_call *call, const struct obx_call_input *in)
{
    pthread_mutex_lock(&call->lock);
    int r = call->cancelled ? -ECANCELED : call->input ? 0 : -ENOTCONN;
    /* Under the lock, so obx_call_clear_input() cannot return while it runs. */
    if (r == 0)
        call->input(call->input_userdata, in);
    pthread_mutex_unlock(&call->lock);
    return r;
}

uint64_t obx_call_remaining_ms(const struct obx_call *call, uint64_t fallback)
{
    if (!call->deadline)
        return fallback;
    uint64_t now = obx_now_ms();
    return call->deadline > now ? call->deadline - now : 0;
}
