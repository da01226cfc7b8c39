/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Name resolution for the egress proxy, off its event loop. getaddrinfo() blocks and cannot be
 * interrupted, so it runs on up to RESOLVER_THREADS threads, started when jobs wait and nobody is
 * idle. A thread resolves a job, drops every address a box must not reach (egress-policy.c) and
 * keeps the rest, in order: those are the only addresses the loop will connect to, so a name that
 * resolves differently a moment later changes nothing. Finished jobs go on a done list and an
 * eventfd wakes the loop, which takes the whole list at once.
 *
 * The resolver owns the policy and deny list and is reference-counted: the creator and each
 * thread hold a reference. Stopping drops the creator's and never waits for a thread stuck in a
 * lookup; the last thread out frees everything, so nothing it reads can go away under it.
 */
#include "egress-internal.h"

#include <fcntl.h>
#include <netdb.h>

#include "common/log.h"

#define RESOLVER_THREADS 4
#define QUEUE_MAX 256

struct obx_egress_resolver {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned refs; /* the creator's (until stop) and one per thread */
    bool stopping;
    unsigned threads, idle;
    struct obx_egress_job *queue, *queue_tail;
    size_t queued;
    struct obx_egress_job *done, *done_tail;
    int wake_fd;
    struct obx_egress_policy policy;
    struct obx_egress_denylist deny;
};

static void free_jobs(struct obx_egress_job *j)
{
    while (j) {
        struct obx_egress_job *next = j->next;
        free(j);
        j = next;
    }
}

static void destroy(struct obx_egress_resolver *r)
{
    free_jobs(r->queue);
    free_jobs(r->done);
    obx_closep(&r->wake_fd);
    obx_egress_policy_done(&r->policy);
    obx_egress_denylist_done(&r->deny);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

/* With the lock held; true when that was the last reference. */
static bool unref_locked(struct obx_egress_resolver *r)
{
    return --r->refs == 0;
}

static void refuse(struct obx_egress_job *job, int status, const char *fmt, ...) OBX_PRINTF(3, 4);

static void refuse(struct obx_egress_job *job, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->why, sizeof(job->why), fmt, ap);
    va_end(ap);
    job->status = status;
    job->n_addrs = 0;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

void obx_egress_resolve(const struct obx_egress_policy *policy,
                        const struct obx_egress_denylist *deny, struct obx_egress_job *job)
{
    job->status = 0;
    job->n_addrs = 0;
    if (deny && deny->name && strcmp(deny->name, job->host) == 0) {
        refuse(job, 403, "egress to %s is not allowed: it is the console's host", job->host);
        return;
    }
    struct sockaddr_storage cand[OBX_EGRESS_MAX_ADDRS];
    size_t n = 0;
    uint16_t port = job->port;
    const struct obx_egress_pin *pin = obx_egress_policy_pin(policy, job->host);
    if (pin) {
        memcpy(&cand[n++], &pin->addr, pin->len);
        if (pin->port)
            port = pin->port;
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
        struct addrinfo *res = NULL;
        int e = getaddrinfo(job->host, NULL, &hints, &res);
        if (e != 0) {
            refuse(job, 502, "cannot resolve %s: %s", job->host,
                   e == EAI_SYSTEM ? strerror(errno) : gai_strerror(e));
            return;
        }
        for (struct addrinfo *ai = res; ai && n < OBX_EGRESS_MAX_ADDRS; ai = ai->ai_next) {
            if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
                ai->ai_addrlen > sizeof(cand[0]))
                continue;
            memset(&cand[n], 0, sizeof(cand[n]));
            memcpy(&cand[n++], ai->ai_addr, ai->ai_addrlen);
        }
        freeaddrinfo(res);
    }
    const char *first_why = NULL;
    char first_addr[64] = "";
    for (size_t i = 0; i < n; i++) {
        set_port(&cand[i], port);
        const char *why = obx_egress_addr_forbidden((struct sockaddr *)&cand[i], pin != NULL, deny);
        if (why) {
            if (!first_why) {
                first_why = why;
                obx_egress_addr_text((struct sockaddr *)&cand[i], first_addr, sizeof(first_addr));
            }
            continue;
        }
        job->addrs[job->n_addrs++] = cand[i];
    }
    if (job->n_addrs == 0 && first_why)
        refuse(job, 403, "egress to %s is not allowed: it resolves to %s, %s", job->host,
               first_addr, first_why);
    else if (job->n_addrs == 0)
        refuse(job, 502, "cannot resolve %s: no IPv4 or IPv6 address", job->host);
}

static void *resolver_main(void *arg)
{
    struct obx_egress_resolver *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->stopping && !r->queue) {
            r->idle++;
            pthread_cond_wait(&r->cond, &r->lock);
            r->idle--;
        }
        if (r->stopping)
            break;
        struct obx_egress_job *job = r->queue;
        r->queue = job->next;
        if (!r->queue)
            r->queue_tail = NULL;
        r->queued--;
        job->next = NULL;
        pthread_mutex_unlock(&r->lock);

        obx_egress_resolve(&r->policy, &r->deny, job);

        pthread_mutex_lock(&r->lock);
        if (r->stopping) {
            free(job);
            break;
        }
        if (r->done_tail)
            r->done_tail->next = job;
        else
            r->done = job;
        r->done_tail = job;
        uint64_t one = 1;
        (void)!write(r->wake_fd, &one, sizeof(one));
    }
    r->threads--;
    bool last = unref_locked(r);
    pthread_mutex_unlock(&r->lock);
    if (last)
        destroy(r);
    return NULL;
}

struct obx_egress_resolver *obx_egress_resolver_new(struct obx_egress_policy *policy,
                                                    struct obx_egress_denylist *deny, int wake_fd,
                                                    struct obx_error *err)
{
    int fd = fcntl(wake_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        obx_error_set(err, errno, OBX_ERR_INTERNAL, "egress: dup: %s", strerror(errno));
        return NULL;
    }
    struct obx_egress_resolver *r = obx_xcalloc(1, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->refs = 1;
    r->wake_fd = fd;
    r->policy = *policy;
    r->deny = *deny;
    memset(policy, 0, sizeof(*policy));
    memset(deny, 0, sizeof(*deny));
    return r;
}

const struct obx_egress_policy *obx_egress_resolver_policy(const struct obx_egress_resolver *r)
{
    return &r->policy;
}

int obx_egress_resolver_submit(struct obx_egress_resolver *r, struct obx_egress_job *job)
{
    pthread_mutex_lock(&r->lock);
    if (r->stopping || r->queued >= QUEUE_MAX) {
        pthread_mutex_unlock(&r->lock);
        return -EAGAIN;
    }
    if (r->idle == 0 && r->threads < RESOLVER_THREADS) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, resolver_main, r) == 0) {
            r->threads++;
            r->refs++;
        } else if (r->threads == 0) {
            pthread_attr_destroy(&attr);
            pthread_mutex_unlock(&r->lock);
            obx_warn("egress: cannot start a resolver thread");
            return -EAGAIN;
        }
        pthread_attr_destroy(&attr);
    }
    job->next = NULL;
    if (r->queue_tail)
        r->queue_tail->next = job;
    else
        r->queue = job;
    r->queue_tail = job;
    r->queued++;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

struct obx_egress_job *obx_egress_resolver_take_done(struct obx_egress_resolver *r)
{
    pthread_mutex_lock(&r->lock);
    struct obx_egress_job *j = r->done;
    r->done = r->done_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    return j;
}

void obx_egress_resolver_stop(struct obx_egress_resolver *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    free_jobs(r->queue);
    free_jobs(r->done);
    r->queue = r->queue_tail = r->done = r->done_tail = NULL;
    r->queued = 0;
    pthread_cond_broadcast(&r->cond);
    bool last = unref_locked(r);
    pthread_mutex_unlock(&r->lock);
    if (last)
        destroy(r);
}
