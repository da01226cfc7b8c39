/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session table (worker/session.c) on a fake runtime whose boxes are pipes to a fake agent.
 * A box whose agent went away is dropped the next time its session is named, and the runtime's
 * teardown of it (seconds for a docker container) must not hold up the other sessions: while one
 * box is being removed, another session is taken and counted as usual. A removal that stalls the
 * table shows as the other call never answering while the teardown is held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "agent/protocol.h"
#include "common/clock.h"
#include "common/thread.h"
#include "worker/session.h"

/* A deadline for things that take microseconds: only a stall (the bug) reaches it. */
#define STALL_MS 30000

struct fake_agent {
    int in, out; /* the agent's ends */
    pthread_t thr;
    bool slow; /* its teardown waits for the gate */
};

struct fake_rt {
    struct obx_runtime rt;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int starts;
    struct fake_agent *first; /* the first box's agent: the one whose teardown is held */
    bool stop_entered;        /* the held teardown has begun */
    bool gate_open;           /* it may finish */
};

static struct fake_rt fake;

static void *agent_main(void *arg)
{
    struct fake_agent *a = arg;
    char buf[4096];
    while (read(a->in, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

static int fake_start(struct obx_runtime *rt, const struct obx_box_spec *spec,
                      struct obx_box_handle *ret, struct obx_error *err)
{
    int to[2], from[2];
    assert_int_equal(pipe2(to, O_CLOEXEC), 0);
    assert_int_equal(pipe2(from, O_CLOEXEC), 0);
    struct fake_agent *a = calloc(1, sizeof(*a));
    a->in = to[0];
    a->out = from[1];
    uint8_t hello[OBX_AGENT_HEADER_SIZE + 2];
    obx_agent_header_encode(hello, OBX_AF_HELLO, 0, 2);
    memcpy(hello + OBX_AGENT_HEADER_SIZE, "{}", 2);
    assert_int_equal(write(a->out, hello, sizeof(hello)), (ssize_t)sizeof(hello));
    assert_int_equal(pthread_create(&a->thr, NULL, agent_main, a), 0);
    pthread_mutex_lock(&fake.lock);
    if (fake.starts++ == 0) {
        a->slow = true;
        fake.first = a;
    }
    pthread_mutex_unlock(&fake.lock);
    ret->to_agent = to[1];
    ret->from_agent = from[0];
    snprintf(ret->id, sizeof(ret->id), "fake-%d", fake.starts);
    ret->priv = a;
    return 0;
}

static void fake_stop(struct obx_runtime *rt, struct obx_box_handle *h)
{
    struct fake_agent *a = h->priv;
    if (a->slow) {
        pthread_mutex_lock(&fake.lock);
        fake.stop_entered = true;
        pthread_cond_broadcast(&fake.cond);
        while (!fake.gate_open)
            pthread_cond_wait(&fake.cond, &fake.lock);
        pthread_mutex_unlock(&fake.lock);
    }
    close(h->to_agent);
    close(h->from_agent);
    pthread_join(a->thr, NULL);
    close(a->in);
    if (a->out >= 0)
        close(a->out);
    free(a);
    h->priv = NULL;
}

static int fake_cleanup(struct obx_runtime *rt, struct obx_error *err)
{
    return 0;
}

static void fake_free(struct obx_runtime *rt)
{
}

static int factory_start(void *userdata, const char *session_id, enum obx_net net,
                         struct obx_call *call, struct obx_box **ret, struct obx_error *err)
{
    struct obx_box_spec spec = {.agent_path = "fake", .worker_id = "test", .session = session_id};
    return obx_box_start(&fake.rt, &spec, STALL_MS, ret, err);
}

/* One acquire on a thread of its own, so that the test can see whether it answers. */
struct acquirer {
    struct obx_worker_sessions *s;
    const char *id;
    pthread_t thr;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
    struct obx_worker_session_lease lease;
    unsigned count_after; /* the table's count, read right after */
};

static void *acquirer_main(void *arg)
{
    struct acquirer *q = arg;
    struct obx_error err = OBX_ERROR_INIT;
    int rc = obx_worker_sessions_acquire(q->s, q->id, OBX_WORKER_SESSION_CREATE, OBX_NET_NONE, NULL,
                                         &q->lease, &err);
    unsigned n = obx_worker_sessions_count(q->s);
    pthread_mutex_lock(&q->lock);
    q->rc = rc;
    q->count_after = n;
    q->done = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void acquirer_start(struct acquirer *q, struct obx_worker_sessions *s, const char *id)
{
    memset(q, 0, sizeof(*q));
    q->s = s;
    q->id = id;
    pthread_mutex_init(&q->lock, NULL);
    obx_cond_init_monotonic(&q->cond);
    assert_int_equal(pthread_create(&q->thr, NULL, acquirer_main, q), 0);
}

/* Waits for q to answer, at most until the stall deadline; true when it answered. */
static bool acquirer_wait(struct acquirer *q)
{
    struct timespec ts = obx_ms_to_timespec(obx_now_ms() + STALL_MS);
    pthread_mutex_lock(&q->lock);
    while (!q->done && pthread_cond_timedwait(&q->cond, &q->lock, &ts) == 0)
        ;
    bool done = q->done;
    pthread_mutex_unlock(&q->lock);
    return done;
}

static void take_and_release(struct obx_worker_sessions *s, const char *id, struct obx_box **keep)
{
    struct obx_worker_session_lease lease;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_worker_sessions_acquire(s, id, OBX_WORKER_SESSION_CREATE, OBX_NET_NONE,
                                                 NULL, &lease, &err),
                     0);
    assert_true(lease.created);
    if (keep)
        *keep = obx_box_ref(lease.box);
    obx_worker_sessions_release(s, &lease, 600);
}

static void fake_init(void)
{
    fake = (struct fake_rt){.rt = {.name = "fake",
                                   .start = fake_start,
                                   .stop = fake_stop,
                                   .cleanup_stale = fake_cleanup,
                                   .free = fake_free}};
    pthread_mutex_init(&fake.lock, NULL);
    obx_cond_init_monotonic(&fake.cond);
}

static void test_removal_does_not_stall_other_sessions(void **state)
{
    (void)state;
    fake_init();
    struct obx_worker_session_factory f = {.start = factory_start};
    struct obx_worker_sessions *s = obx_worker_sessions_new(8, &f);

    struct obx_box *slow_box = NULL;
    take_and_release(s, "slow", &slow_box); /* the first box: its teardown will be held */
    take_and_release(s, "other", NULL);
    assert_int_equal(obx_worker_sessions_count(s), 2);

    /* The slow session's agent goes away while the session is idle, as when its box is killed
     * from outside; wait until the worker has noticed. */
    close(fake.first->out);
    fake.first->out = -1;
    uint64_t until = obx_now_ms() + STALL_MS;
    while (obx_box_alive(slow_box) && obx_now_ms() < until)
        usleep(1000);
    assert_false(obx_box_alive(slow_box));
    obx_box_unref(slow_box); /* the session's is the last reference now */

    /* Naming the slow session drops its dead box; the teardown starts and is held. */
    struct acquirer a;
    acquirer_start(&a, s, "slow");
    struct timespec ts = obx_ms_to_timespec(obx_now_ms() + STALL_MS);
    pthread_mutex_lock(&fake.lock);
    while (!fake.stop_entered && pthread_cond_timedwait(&fake.cond, &fake.lock, &ts) == 0)
        ;
    bool entered = fake.stop_entered;
    pthread_mutex_unlock(&fake.lock);
    assert_true(entered);

    /* Meanwhile another session answers. */
    struct acquirer b;
    acquirer_start(&b, s, "other");
    bool answered = acquirer_wait(&b);

    pthread_mutex_lock(&fake.lock);
    fake.gate_open = true;
    pthread_cond_broadcast(&fake.cond);
    pthread_mutex_unlock(&fake.lock);
    assert_true(acquirer_wait(&a));
    pthread_join(a.thr, NULL);
    pthread_join(b.thr, NULL);

    assert_true(answered); /* "other" answered while the slow box was still being removed */
    assert_int_equal(b.rc, 0);
    assert_false(b.lease.created);
    assert_int_equal(a.rc, 0);
    assert_true(a.lease.created); /* the dead session was replaced by a new one */
    assert_int_equal(obx_worker_sessions_count(s), 2);

    obx_worker_sessions_release(s, &a.lease, 0);
    obx_worker_sessions_release(s, &b.lease, 0);
    obx_worker_sessions_free(s);
}

/* File operations take a session without making it busy; renew and close act on it. */
static void test_use_renew_close(void **state)
{
    (void)state;
    fake_init();
    fake.gate_open = true;
    struct obx_worker_session_factory f = {.start = factory_start};
    struct obx_worker_sessions *s = obx_worker_sessions_new(8, &f);
    take_and_release(s, "s1", NULL);

    struct obx_worker_session_lease file, cmd;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_worker_sessions_use(s, "s1", &file, &err), 0);
    /* A command may run beside the file operation. */
    assert_int_equal(obx_worker_sessions_acquire(s, "s1", 0, OBX_NET_NONE, NULL, &cmd, &err), 0);
    struct obx_worker_session_info info;
    assert_int_equal(obx_worker_sessions_info(s, "s1", &info, &err), 0);
    assert_true(info.busy);
    assert_true(info.created_unix_ms > 0 && info.last_used_unix_ms >= info.created_unix_ms);
    obx_worker_sessions_release(s, &cmd, 0);
    obx_worker_sessions_unuse(s, &file, 0);

    assert_int_equal(obx_worker_sessions_use(s, "nope", &file, &err), -ENOENT);
    assert_string_equal(err.code, "session_not_found");

    int64_t before = info.lease_until_unix_ms;
    assert_int_equal(obx_worker_sessions_renew(s, "s1", 1200, &info, &err), 0);
    assert_true(info.lease_until_unix_ms > before);
    assert_false(info.busy);
    /* Never shortened. */
    int64_t renewed = info.lease_until_unix_ms;
    assert_int_equal(obx_worker_sessions_renew(s, "s1", 60, &info, &err), 0);
    assert_int_equal(info.lease_until_unix_ms, renewed);

    /* Closing ends it at once, a file operation in progress included; a later call is told. */
    assert_int_equal(obx_worker_sessions_use(s, "s1", &file, &err), 0);
    assert_int_equal(obx_worker_sessions_close(s, "s1", &err), 0);
    assert_false(obx_box_alive(file.box));
    obx_worker_sessions_unuse(s, &file, 60);
    assert_int_equal(obx_worker_sessions_count(s), 0);
    assert_int_equal(obx_worker_sessions_info(s, "s1", &info, &err), -ENOENT);
    assert_non_null(strstr(err.message, "it was closed"));
    assert_int_equal(obx_worker_sessions_close(s, "s1", &err), -ENOENT);
    obx_worker_sessions_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_removal_does_not_stall_other_sessions),
        cmocka_unit_test(test_use_renew_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
