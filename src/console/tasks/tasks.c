/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Task runtime. Three kinds of thread meet here:
 *
 * - Execution threads (a small console pool) do a task's store writes: mark it dispatched and
 *   running and hand it to the dispatcher, which answers later on a registry thread (no thread
 *   waits while a worker runs it); then, on its end, write the terminal state with a guarded
 *   UPDATE, drop the task from the live list and mark its waiters ready.
 * - Route handlers (console pool threads) start tasks, cancel them and register waiters. A cancel
 *   wins the guarded UPDATE first, then calls obx_call_cancel() on the live call under the tasks
 *   lock; the worker kills the box's processes and the execution thread's own write is a no-op.
 * - One waiter thread owns the list of HTTP requests waiting for a task (sync and auto modes). It
 *   sleeps on a monotonic condition variable until the earliest wait deadline, a task deadline
 *   plus a grace period (a safety net that cancels a call the worker did not stop in time), the
 *   next prune, or a signal; it reads the snapshot and completes the request outside the lock. So
 *   neither the HTTP service thread nor a pool thread ever blocks waiting for a task, and a client
 *   that disconnects only loses its answer: the task keeps running.
 *
 * Invariant: a task's terminal state is in the store before it leaves the live list, so a waiter
 * registered after that finds the final state. When the store cannot take that write (its disk is
 * full), the ended task waits in the unrecorded list instead, which counts as live; the waiter
 * thread retries the write every RETRY_MS until it lands, so the task never reads `running` for
 * good once space is back.
 */
#include "tasks.h"

#include <signal.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"
#include "common/thread.h"
#include "console/auth/auth.h"
#include "console/util/pool.h"

#define PRUNE_EVERY_MS 60000
#define PRUNE_INLINE_MS 15000
#define DEADLINE_GRACE_MS 5000
#define RETRY_MS 1000
#define EXEC_THREADS 4
#define STOP_WAIT_MS 15000

struct live_task {
    char id[40];
    char owner[40];
    char capability[64];
    json_t *payload;
    struct obx_dispatch_slot *slot; /* until the task is handed to its worker */
    struct obx_call call;
    int rc; /* its end, from the dispatcher */
    json_t *result;
    struct obx_error err;
    uint64_t deadline; /* monotonic */
    bool forced_timeout;
    struct obx_tasks *tasks;
    struct obx_task_observer obs; /* release() once the call is done */
    struct live_task *next;
};

struct waiter {
    char task_id[40];
    struct obx_http_request *req;
    uint64_t deadline; /* monotonic; 0 = until the task ends */
    bool ready;
    obx_tasks_respond_fn respond;
    struct waiter *next;
};

struct reservation {
    char *key;
    struct reservation *next;
};

/* An ended task whose terminal state the store refused; retried by the waiter thread. */
struct unrecorded {
    char id[40];
    char status[16];
    char *result, *code, *message;
    struct unrecorded *next;
};

struct obx_tasks {
    struct obx_store *store;
    struct obx_dispatch *dispatch;
    int64_t retention_ms;
    struct obx_console_pool *exec_pool;

    pthread_mutex_t lock;
    pthread_cond_t cond; /* monotonic */
    struct live_task *live;
    struct waiter *waiters;
    struct reservation *reservations;
    struct unrecorded *unrecorded;
    uint64_t last_retry; /* monotonic */
    bool stopping;       /* live tasks are being cancelled for shutdown */
    bool waiter_stop;    /* the waiter thread answers everyone and exits */
    uint64_t last_prune; /* monotonic */
    pthread_t waiter_thread;
    bool waiter_started;
    pthread_cond_t ended; /* monotonic: a task left the live list */
    void (*on_end)(void *userdata, const char *task_id);
    void *on_end_userdata;
    unsigned on_end_running; /* calls of on_end under way (obx_tasks_on_end() waits for them) */
};

static void tell_end(struct obx_tasks *t, const char *task_id);

static void mark_ready_locked(struct obx_tasks *t, const char *task_id)
{
    for (struct waiter *w = t->waiters; w; w = w->next)
        if (obx_streq(w->task_id, task_id))
            w->ready = true;
    pthread_cond_signal(&t->cond);
}

static bool is_live_locked(struct obx_tasks *t, const char *task_id)
{
    for (struct live_task *l = t->live; l; l = l->next)
        if (obx_streq(l->id, task_id))
            return true;
    for (struct unrecorded *u = t->unrecorded; u; u = u->next)
        if (obx_streq(u->id, task_id))
            return true;
    return false;
}

static void unrecorded_free(struct unrecorded *u)
{
    free(u->result);
    free(u->code);
    free(u->message);
    free(u);
}

static int record(struct obx_tasks *t, const struct unrecorded *u, struct obx_error *err)
{
    return obx_store_task_finish(t->store, u->id, u->status, u->result, u->code, u->message,
                                 obx_unix_ms(), t->retention_ms, err);
}

/* Waiter thread, without t->lock: writes what the store refused before; the tasks that land are
 * marked ready for their waiters. */
static void retry_unrecorded(struct obx_tasks *t)
{
    pthread_mutex_lock(&t->lock);
    struct unrecorded *list = TAKE_PTR(t->unrecorded);
    pthread_mutex_unlock(&t->lock);
    while (list) {
        struct unrecorded *u = list;
        list = u->next;
        struct obx_error err = OBX_ERROR_INIT;
        bool landed = record(t, u, &err) >= 0;
        pthread_mutex_lock(&t->lock);
        if (landed) {
            mark_ready_locked(t, u->id);
            pthread_cond_broadcast(&t->ended);
        } else {
            u->next = t->unrecorded;
            t->unrecorded = u;
        }
        pthread_mutex_unlock(&t->lock);
        if (landed) {
            obx_info("task %s: recorded %s after an earlier failure", u->id, u->status);
            tell_end(t, u->id);
            unrecorded_free(u);
        }
    }
}

static void prune(struct obx_tasks *t)
{
    struct obx_error err = OBX_ERROR_INIT;
    int n = obx_store_task_prune(t->store, obx_unix_ms(), &err);
    if (n < 0)
        obx_warn("pruning expired tasks: %s", err.message);
    else if (n > 0)
        obx_debug("pruned %d expired tasks", n);
}

void obx_tasks_maybe_prune(struct obx_tasks *t)
{
    uint64_t now = obx_now_ms();
    pthread_mutex_lock(&t->lock);
    bool due = now - t->last_prune >= PRUNE_INLINE_MS;
    if (due)
        t->last_prune = now;
    pthread_mutex_unlock(&t->lock);
    if (due)
        prune(t);
}

static void answer(struct obx_tasks *t, struct waiter *w)
{
    struct obx_task task;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_task_get(t->store, w->task_id, &task, &err);
    if (r < 0)
        obx_err("reading task %s: %s", w->task_id, err.message);
    w->respond(w->req, r < 0 ? NULL : &task);
    if (r >= 0)
        obx_task_done(&task);
    obx_http_request_complete(w->req);
    free(w);
}

static void *waiter_main(void *arg)
{
    struct obx_tasks *t = arg;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        uint64_t now = obx_now_ms();
        struct waiter *due = NULL, **pp = &t->waiters;
        uint64_t next = now + PRUNE_EVERY_MS;
        while (*pp) {
            struct waiter *w = *pp;
            if (w->ready || t->waiter_stop || (w->deadline && w->deadline <= now)) {
                *pp = w->next;
                w->next = due;
                due = w;
                continue;
            }
            if (w->deadline)
                next = OBX_MIN(next, w->deadline);
            pp = &w->next;
        }
        for (struct live_task *l = t->live; l; l = l->next) {
            if (l->forced_timeout)
                continue;
            if (l->deadline + DEADLINE_GRACE_MS <= now) {
                obx_warn("task %s outlived its deadline; stopping it", l->id);
                l->forced_timeout = true;
                obx_call_cancel(&l->call);
            } else {
                next = OBX_MIN(next, l->deadline + DEADLINE_GRACE_MS);
            }
        }
        bool prune_due = now - t->last_prune >= PRUNE_EVERY_MS;
        if (prune_due)
            t->last_prune = now;
        else
            next = OBX_MIN(next, t->last_prune + PRUNE_EVERY_MS);
        bool retry_due = t->unrecorded && now - t->last_retry >= RETRY_MS;
        if (retry_due)
            t->last_retry = now;
        else if (t->unrecorded)
            next = OBX_MIN(next, t->last_retry + RETRY_MS);
        if (due || prune_due || retry_due) {
            pthread_mutex_unlock(&t->lock);
            if (retry_due)
                retry_unrecorded(t);
            while (due) {
                struct waiter *w = due;
                due = w->next;
                answer(t, w);
            }
            if (prune_due)
                prune(t);
            pthread_mutex_lock(&t->lock);
            continue;
        }
        if (t->waiter_stop)
            break;
        struct timespec ts = obx_ms_to_timespec(next);
        pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

struct obx_tasks *obx_tasks_new(struct obx_store *st, struct obx_dispatch *d, int64_t retention_ms)
{
    struct obx_tasks *t = obx_xcalloc(1, sizeof(*t));
    t->store = st;
    t->dispatch = d;
    t->retention_ms = retention_ms;
    /* Store writes at a task's start and end; no thread waits for a worker here. */
    t->exec_pool = obx_console_pool_new(EXEC_THREADS, 65536);
    pthread_mutex_init(&t->lock, NULL);
    obx_cond_init_monotonic(&t->cond);
    obx_cond_init_monotonic(&t->ended);
    t->last_prune = obx_now_ms();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    t->waiter_started = pthread_create(&t->waiter_thread, NULL, waiter_main, t) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!t->waiter_started)
        obx_err("cannot start the task waiter thread: %s", strerror(errno));
    return t;
}

void obx_tasks_free(struct obx_tasks *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    for (struct live_task *l = t->live; l; l = l->next)
        obx_call_cancel(&l->call);
    /* Their ends come back through the dispatcher and an execution thread. */
    uint64_t until = obx_now_ms() + STOP_WAIT_MS;
    while (t->live && obx_now_ms() < until) {
        struct timespec ts = obx_ms_to_timespec(until);
        pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    }
    if (t->live)
        obx_warn("tasks: some calls did not end within %d s of the stop", STOP_WAIT_MS / 1000);
    pthread_mutex_unlock(&t->lock);
    obx_console_pool_free(t->exec_pool); /* every execution job has finished after this */
    pthread_mutex_lock(&t->lock);
    t->waiter_stop = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (t->waiter_started)
        pthread_join(t->waiter_thread, NULL);
    while (t->waiters) { /* only when the thread never started */
        struct waiter *w = t->waiters;
        t->waiters = w->next;
        answer(t, w);
    }
    retry_unrecorded(t); /* a last try; what still fails reads console_restarted next start */
    while (t->unrecorded) {
        struct unrecorded *u = t->unrecorded;
        t->unrecorded = u->next;
        obx_err("task %s: %s was never recorded", u->id, u->status);
        unrecorded_free(u);
    }
    while (t->reservations) {
        struct reservation *r = t->reservations;
        t->reservations = r->next;
        free(r->key);
        free(r);
    }
    pthread_cond_destroy(&t->cond);
    pthread_cond_destroy(&t->ended);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void obx_tasks_on_end(struct obx_tasks *t, void (*fn)(void *userdata, const char *task_id),
                      void *userdata)
{
    pthread_mutex_lock(&t->lock);
    t->on_end = fn;
    t->on_end_userdata = userdata;
    while (t->on_end_running > 0) /* a call to the one replaced may still be under way */
        pthread_cond_wait(&t->ended, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

static void tell_end(struct obx_tasks *t, const char *task_id)
{
    pthread_mutex_lock(&t->lock);
    void (*fn)(void *, const char *) = t->on_end;
    void *ud = t->on_end_userdata;
    t->on_end_running += fn != NULL;
    pthread_mutex_unlock(&t->lock);
    if (!fn)
        return;
    fn(ud, task_id);
    pthread_mutex_lock(&t->lock);
    t->on_end_running--;
    pthread_cond_broadcast(&t->ended);
    pthread_mutex_unlock(&t->lock);
}

bool obx_tasks_wait_end(struct obx_tasks *t, const char *task_id, uint64_t ms)
{
    uint64_t until = obx_now_ms() + ms;
    pthread_mutex_lock(&t->lock);
    bool live;
    while ((live = is_live_locked(t, task_id)) && obx_now_ms() < until) {
        struct timespec ts = obx_ms_to_timespec(until);
        pthread_cond_timedwait(&t->ended, &t->lock, &ts);
    }
    pthread_mutex_unlock(&t->lock);
    return !live;
}

int obx_tasks_submit_job(struct obx_tasks *t, void (*fn)(void *), void *arg)
{
    return obx_console_pool_submit(t->exec_pool, fn, arg);
}

/* Writes a task's terminal state. When the store refuses, the task goes on the unrecorded list
 * (it stays live for waiters) and false is returned. */
static bool finish(struct obx_tasks *t, const char *id, const char *status, const char *result,
                   const char *code, const char *message)
{
    struct unrecorded *u = obx_xcalloc(1, sizeof(*u));
    snprintf(u->id, sizeof(u->id), "%s", id);
    snprintf(u->status, sizeof(u->status), "%s", status);
    u->result = result ? obx_xstrdup(result) : NULL;
    u->code = code ? obx_xstrdup(code) : NULL;
    u->message = message ? obx_xstrdup(message) : NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (record(t, u, &err) >= 0) {
        unrecorded_free(u);
        return true;
    }
    obx_err("task %s: cannot record %s: %s; retrying every %d ms", id, status, err.message,
            RETRY_MS);
    pthread_mutex_lock(&t->lock);
    u->next = t->unrecorded;
    t->unrecorded = u;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    return false;
}

/* Capabilities whose results may name a session (pythonexec when called with one). */
static bool is_session_cap(const char *cap)
{
    return obx_streq(cap, "terminalexec") || obx_streq(cap, "terminalresource") ||
           obx_streq(cap, "pythonexec");
}

/* A task's end, on an execution thread: its terminal state into the store, then its waiters. */
static void end_job(void *arg)
{
    struct live_task *l = arg;
    struct obx_tasks *t = l->tasks;
    pthread_mutex_lock(&t->lock);
    bool forced = l->forced_timeout, stopping = t->stopping;
    pthread_mutex_unlock(&t->lock);
    struct obx_error *err = &l->err;
    if (l->rc >= 0) {
        if (is_session_cap(l->capability) &&
            obx_task_unscope_result(l->capability, l->result, l->owner) < 0) {
            finish(t, l->id, "failed", NULL, OBX_ERR_INVALID_PAYLOAD, "session_id owner mismatch");
        } else {
            _cleanup_free_ char *text = obx_json_dumps(l->result ? l->result : json_null());
            finish(t, l->id, "succeeded", text, NULL, NULL);
        }
    } else if (obx_streq(err->code, OBX_ERR_DEADLINE_EXCEEDED) && !forced &&
               obx_streq(l->capability, "pythonexec") &&
               !obx_str_blank(obx_json_get_str(l->payload, "session_id", ""))) {
        /* A Python session's timeout says whether its variables survived (new in pythonExec's
         * sessions; every other timeout keeps the original's text). */
        _cleanup_free_ char *text = obx_xasprintf("task timed out: %s", err->message);
        finish(t, l->id, "timeout", NULL, "timeout", text);
    } else if (obx_streq(err->code, OBX_ERR_DEADLINE_EXCEEDED) || forced) {
        finish(t, l->id, "timeout", NULL, "timeout", "task timed out");
    } else if (obx_streq(err->code, OBX_ERR_CANCELED) && stopping) {
        finish(t, l->id, "failed", NULL, "console_restarted",
               "task interrupted by console restart");
    } else if (obx_streq(err->code, OBX_ERR_CANCELED)) {
        finish(t, l->id, "canceled", NULL, "canceled", "task canceled");
    } else {
        finish(t, l->id, "failed", NULL, err->code[0] ? err->code : "dispatch_failed",
               err->message);
    }

    pthread_mutex_lock(&t->lock);
    for (struct live_task **pp = &t->live; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    if (!is_live_locked(t, l->id)) /* else its end is not in the store yet: waiters wait on */
        mark_ready_locked(t, l->id);
    pthread_cond_broadcast(&t->cond);
    pthread_cond_broadcast(&t->ended);
    pthread_mutex_unlock(&t->lock);
    if (l->obs.release)
        l->obs.release(l->obs.userdata);
    tell_end(t, l->id);
    obx_call_done(&l->call);
    json_decref(l->payload);
    json_decref(l->result);
    free(l);
}

/* The dispatcher's answer, on a registry thread: the store write waits for an execution thread
 * (it may block), so no registry thread ever waits on SQLite. */
static void task_done(void *userdata, int r, json_t *result, const struct obx_error *err)
{
    struct live_task *l = userdata;
    l->rc = r;
    l->result = result;
    if (err)
        l->err = *err;
    if (obx_console_pool_submit(l->tasks->exec_pool, end_job, l) < 0)
        end_job(l);
}

/* A started task, on an execution thread: recorded as running, then handed to its worker. No
 * thread waits for it there. */
static void exec_job(void *arg)
{
    struct live_task *l = arg;
    struct obx_tasks *t = l->tasks;
    char command_id[37];
    obx_random_uuid(command_id);
    /* A task canceled while it waited for this thread never reaches the worker. */
    if (obx_store_task_advance(t->store, l->id, "dispatched", NULL, obx_unix_ms(), NULL) == 0) {
        obx_dispatch_release(TAKE_PTR(l->slot));
        struct obx_error err = OBX_ERROR_INIT;
        obx_error_set(&err, ECANCELED, OBX_ERR_CANCELED, "task canceled");
        task_done(l, -ECANCELED, NULL, &err);
        return;
    }
    obx_store_task_advance(t->store, l->id, "running", command_id, obx_unix_ms(), NULL);
    obx_dispatch_start(TAKE_PTR(l->slot), l->payload, &l->call, task_done, l);
}

void obx_tasks_start(struct obx_tasks *t, const struct obx_task *task, json_t *payload,
                     uint64_t timeout_ms, struct obx_dispatch_slot *slot,
                     const struct obx_task_observer *obs)
{
    struct live_task *l = obx_xcalloc(1, sizeof(*l));
    snprintf(l->id, sizeof(l->id), "%s", task->id);
    snprintf(l->owner, sizeof(l->owner), "%s", task->owner_id);
    snprintf(l->capability, sizeof(l->capability), "%s", task->capability);
    l->payload = json_incref(payload);
    l->tasks = t;
    l->slot = slot;
    obx_call_init(&l->call);
    l->call.account = l->owner;
    if (obs) {
        l->obs = *obs;
        l->call.on_output = obs->output;
        l->call.output_userdata = obs->userdata;
        l->call.on_log = obs->log;
        l->call.log_userdata = obs->userdata;
    }
    l->deadline = obx_now_ms() + timeout_ms;
    l->call.deadline = l->deadline;
    pthread_mutex_lock(&t->lock);
    bool stopping = t->stopping;
    if (!stopping) {
        l->next = t->live;
        t->live = l;
    }
    pthread_mutex_unlock(&t->lock);
    int r = stopping ? -ESHUTDOWN : obx_console_pool_submit(t->exec_pool, exec_job, l);
    if (r >= 0)
        return;
    obx_dispatch_release(TAKE_PTR(l->slot));
    finish(t, task->id, "failed", NULL, "dispatch_failed", "console is too busy or stopping");
    pthread_mutex_lock(&t->lock);
    for (struct live_task **pp = &t->live; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    if (!is_live_locked(t, l->id)) /* else its end is not in the store yet: waiters wait on */
        mark_ready_locked(t, l->id);
    pthread_cond_broadcast(&t->ended);
    pthread_mutex_unlock(&t->lock);
    if (l->obs.release)
        l->obs.release(l->obs.userdata);
    tell_end(t, l->id);
    obx_call_done(&l->call);
    json_decref(l->payload);
    free(l);
}

int obx_tasks_create(struct obx_tasks *t, struct obx_task *task, json_t *payload,
                     uint64_t timeout_ms, const struct obx_task_observer *obs,
                     struct obx_error *err)
{
    struct obx_dispatch_slot *slot = NULL;
    int r = obx_dispatch_acquire(t->dispatch, task->capability, payload, &slot, err);
    if (r < 0)
        return r;
    char uuid[37];
    obx_random_uuid(uuid);
    snprintf(task->id, sizeof(task->id), "%s", uuid);
    task->created_ms = task->updated_ms = obx_unix_ms();
    task->deadline_ms = task->created_ms + (int64_t)timeout_ms;
    _cleanup_free_ char *stored = obx_json_dumps(payload);
    r = obx_store_task_insert(t->store, task, stored, err);
    if (r < 0) {
        obx_dispatch_release(slot);
        return r;
    }
    obx_tasks_start(t, task, payload, timeout_ms, slot, obs);
    return 0;
}

void obx_task_input_hash(const char *hash_key, const char *capability, const json_t *input,
                         char hash[65])
{
    _cleanup_free_ char *canon = json_dumps(input, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    _cleanup_free_ char *msg = obx_xasprintf("task-input:%s\n%s", capability, canon);
    obx_auth_hmac_hex(hash_key, msg, strlen(msg), hash);
}

void obx_tasks_wait(struct obx_tasks *t, const char *task_id, struct obx_http_request *req,
                    uint64_t wait_ms, obx_tasks_respond_fn respond)
{
    struct waiter *w = obx_xcalloc(1, sizeof(*w));
    snprintf(w->task_id, sizeof(w->task_id), "%s", task_id);
    w->req = req;
    w->respond = respond;
    w->deadline = wait_ms ? obx_now_ms() + wait_ms : 0;
    pthread_mutex_lock(&t->lock);
    w->ready = !is_live_locked(t, task_id);
    w->next = t->waiters;
    t->waiters = w;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

int obx_tasks_cancel(struct obx_tasks *t, const char *task_id, struct obx_error *err)
{
    int r = obx_store_task_finish(t->store, task_id, "canceled", NULL, "canceled", "task canceled",
                                  obx_unix_ms(), t->retention_ms, err);
    if (r <= 0)
        return r;
    pthread_mutex_lock(&t->lock);
    for (struct live_task *l = t->live; l; l = l->next)
        if (obx_streq(l->id, task_id))
            obx_call_cancel(&l->call);
    mark_ready_locked(t, task_id);
    pthread_mutex_unlock(&t->lock);
    tell_end(t, task_id);
    return 1;
}

static char *reservation_key(const char *owner, const char *request_id)
{
    return obx_xasprintf("%s\n%s", owner, request_id);
}

bool obx_tasks_reserve(struct obx_tasks *t, const char *owner, const char *request_id)
{
    char *key = reservation_key(owner, request_id);
    pthread_mutex_lock(&t->lock);
    for (struct reservation *r = t->reservations; r; r = r->next) {
        if (obx_streq(r->key, key)) {
            pthread_mutex_unlock(&t->lock);
            free(key);
            return false;
        }
    }
    struct reservation *r = obx_xmalloc(sizeof(*r));
    *r = (struct reservation){key, t->reservations};
    t->reservations = r;
    pthread_mutex_unlock(&t->lock);
    return true;
}

void obx_tasks_unreserve(struct obx_tasks *t, const char *owner, const char *request_id)
{
    _cleanup_free_ char *key = reservation_key(owner, request_id);
    pthread_mutex_lock(&t->lock);
    for (struct reservation **pp = &t->reservations; *pp; pp = &(*pp)->next) {
        if (obx_streq((*pp)->key, key)) {
            struct reservation *r = *pp;
            *pp = r->next;
            free(r->key);
            free(r);
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
}

/* A member that must be absent/null or of the given type; false when it has another type. */
static bool member_ok(json_t *obj, const char *key, json_type type)
{
    json_t *v = json_object_get(obj, key);
    return !v || json_is_null(v) || json_typeof(v) == type ||
           (type == JSON_TRUE && json_is_boolean(v));
}

json_t *obx_task_scope_input(const char *capability, json_t *input, const char *account)
{
    if (obx_streq(capability, "pythonexec")) {
        /* A session only when it names one; any other member travels as given (the worker
         * checks them), so a one-shot call is unchanged. */
        const char *sid = obx_json_get_str(input, "session_id", "");
        if (!json_is_object(input) || !*sid)
            return json_incref(input);
        json_t *out = json_copy(input);
        json_object_set_new(out, "session_id", json_sprintf("obx:%s:%s", account, sid));
        return out;
    }
    bool exec = obx_streq(capability, "terminalexec");
    if ((!exec && !obx_streq(capability, "terminalresource")) || !json_is_object(input))
        return json_incref(input);
    /* Decoded like the reference's struct: a member of the wrong type leaves the input unscoped
     * (the worker then rejects it as invalid_payload); unknown members are dropped. */
    if (!member_ok(input, "session_id", JSON_STRING))
        return json_incref(input);
    json_t *net = json_object_get(input, "network");
    if (exec && (!member_ok(input, "command", JSON_STRING) ||
                 !member_ok(input, "create_if_missing", JSON_TRUE) ||
                 !member_ok(input, "lease_ttl_sec", JSON_INTEGER) ||
                 (!member_ok(input, "network", JSON_TRUE) && !json_is_string(net))))
        return json_incref(input);
    if (!exec &&
        (!member_ok(input, "file_path", JSON_STRING) || !member_ok(input, "action", JSON_STRING)))
        return json_incref(input);

    const char *sid = obx_json_get_str(input, "session_id", "");
    json_t *out = json_object();
    if (exec) {
        json_object_set_new(out, "command", json_string(obx_json_get_str(input, "command", "")));
        char uuid[37];
        bool create = obx_json_get_bool(input, "create_if_missing", false);
        if (!*sid) {
            obx_random_uuid(uuid);
            sid = uuid;
            create = true;
        }
        json_object_set_new(out, "session_id", json_sprintf("obx:%s:%s", account, sid));
        if (create)
            json_object_set_new(out, "create_if_missing", json_true());
        json_t *lease = json_object_get(input, "lease_ttl_sec");
        if (json_is_integer(lease))
            json_object_set(out, "lease_ttl_sec", lease);
        /* Ours, beyond the reference: true or "allowlist" (any other string reaches the
         * worker, which names the values it takes). */
        if (json_is_true(net) || json_is_string(net))
            json_object_set(out, "network", net);
        return out;
    }
    if (!*sid) {
        json_decref(out);
        return json_incref(input);
    }
    json_object_set_new(out, "session_id", json_sprintf("obx:%s:%s", account, sid));
    json_object_set_new(out, "file_path", json_string(obx_json_get_str(input, "file_path", "")));
    json_object_set_new(out, "action", json_string(obx_json_get_str(input, "action", "")));
    return out;
}

int obx_task_unscope_result(const char *capability, json_t *result, const char *account)
{
    if (!is_session_cap(capability))
        return 0;
    const char *sid = obx_json_get_str(result, "session_id", NULL);
    if (!sid)
        return 0;
    _cleanup_free_ char *prefix = obx_xasprintf("obx:%s:", account);
    size_t n = strlen(prefix);
    if (strncmp(sid, prefix, n) != 0)
        return -EPERM;
    json_object_set_new(result, "session_id", json_string(sid + n));
    return 0;
}
