/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker threads of the console. Jobs form a FIFO under one mutex; workers sleep on a condition
 * variable. Shutdown lets the workers finish every queued job before they exit, so a request
 * accepted before shutdown still gets its answer written (or dropped, if its client is gone).
 */
#include "pool.h"

#include <pthread.h>
#include <signal.h>

#include "common/log.h"

struct job {
    obx_console_pool_fn fn;
    void *arg;
    struct job *next;
};

struct obx_console_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    size_t queued, max_queued;
    bool stopping;
    int n_threads;
    pthread_t *threads;
};

static void *pool_main(void *arg)
{
    struct obx_console_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        struct job *j = p->head;
        if (!j) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
    }
}

struct obx_console_pool *obx_console_pool_new(int threads, size_t max_queued)
{
    struct obx_console_pool *p = obx_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->max_queued = max_queued;
    p->threads = obx_xcalloc((size_t)threads, sizeof(pthread_t));
    /* Workers never take signals: the CLI's signal thread owns them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0) {
            obx_err("cannot start a console worker thread: %s", strerror(errno));
            break;
        }
        p->n_threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p;
}

int obx_console_pool_submit(struct obx_console_pool *p, obx_console_pool_fn fn, void *arg)
{
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->n_threads == 0) {
        pthread_mutex_unlock(&p->lock);
        return -ESHUTDOWN;
    }
    if (p->queued >= p->max_queued) {
        pthread_mutex_unlock(&p->lock);
        return -EAGAIN;
    }
    struct job *j = obx_xmalloc(sizeof(*j));
    *j = (struct job){fn, arg, NULL};
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void obx_console_pool_free(struct obx_console_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
