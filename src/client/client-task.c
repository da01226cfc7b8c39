/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console executor: one capability call becomes one console task.
 *
 * exec() submits POST /api/v1/tasks in auto mode, so a call that ends within WAIT_MAX_MS costs one
 * round trip; a longer one answers 202 and is polled with GET /api/v1/tasks/:id, the pause growing
 * from POLL_FIRST_MS to POLL_MAX_MS. The submit carries a fresh request_id: when a cancel cuts the
 * submit short, resending it in async mode names the task it created (the console answers a reused
 * request_id with the same input with the existing task), so that task can be canceled too.
 *
 * Cancellation comes from another thread (obx_call_cancel(), or obx_client_cancel_all() from a
 * signal thread): the canceller only sets a flag and wakes the connection; the exec() thread then
 * posts the cancel itself, which returns once the worker has killed the task's processes.
 */
#include "client-internal.h"

#include <ctype.h>
#include <time.h>

#include "common/clock.h"
#include "common/random.h"

#define WAIT_MAX_MS 20000 /* how long one submit waits for the result (the console allows 60 s) */
#define POLL_FIRST_MS 100
#define POLL_MAX_MS 1000
#define REQUEST_SLACK_MS 30000 /* network time on top of what the console may wait */
#define GIVE_UP_SLACK_MS 60000 /* the console ends a task at its deadline; this is a safety net */
#define CANCEL_TIMEOUT_MS 20000
#define LOST_RETRIES 5 /* polls in a row that may fail (a console restart) before giving up */
#define DEFAULT_TIMEOUT_MS 60000
#define MAX_TIMEOUT_MS 600000

struct obx_client_link {
    struct obx_call *call;
    struct obx_client_link *next;
};

struct task_run {
    struct obx_client *c;
    struct obx_client_conn conn;
    json_t *submit; /* the POST body */
    bool sent;      /* the submit went out, so a task may exist */
    bool gave_up;   /* still running long after its deadline */
    char id[64];    /* the task id once known */
    int64_t timeout_ms;
};

static bool registry_add(struct obx_client *c, struct obx_client_link *l)
{
    pthread_mutex_lock(&c->lock);
    bool ok = !c->cancel_all;
    if (ok) {
        l->next = c->calls;
        c->calls = l;
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

static void registry_remove(struct obx_client *c, struct obx_client_link *l)
{
    pthread_mutex_lock(&c->lock);
    for (struct obx_client_link **pp = &c->calls; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
}

void obx_client_cancel_all(struct obx_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->cancel_all = true;
    /* obx_call_cancel() runs the canceller, which only wakes the connection: quick under a lock.
     * An exec() leaves the list before it clears its canceller, so the call is still valid. */
    for (struct obx_client_link *l = c->calls; l; l = l->next)
        obx_call_cancel(l->call);
    pthread_mutex_unlock(&c->lock);
}

static void on_cancel(void *userdata)
{
    obx_client_conn_wake(userdata);
}

/* The task's timeout: the payload's timeout_ms (what the worker would use), else what the call has
 * left, within the console's bounds. */
static int64_t task_timeout(const json_t *payload, struct obx_call *call)
{
    json_t *t = json_object_get(payload, "timeout_ms");
    int64_t ms = json_is_integer(t) ? json_integer_value(t)
                                    : (int64_t)obx_call_remaining_ms(call, DEFAULT_TIMEOUT_MS);
    return OBX_MAX(OBX_MIN(ms, MAX_TIMEOUT_MS), 1);
}

/* A result's output goes to the output hook, as the local worker streams it ("output" is
 * pythonExec's stdout). */
static void emit_output(struct obx_call *call, const json_t *result)
{
    static const struct {
        const char *key;
        enum obx_stream stream;
    } streams[] = {
        {"stdout", OBX_STREAM_STDOUT},
        {"output", OBX_STREAM_STDOUT},
        {"stderr", OBX_STREAM_STDERR},
    };
    if (!call->on_output)
        return;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(streams); i++) {
        json_t *s = json_object_get(result, streams[i].key);
        if (json_is_string(s) && json_string_length(s) > 0)
            call->on_output(call->output_userdata, streams[i].stream, json_string_value(s),
                            json_string_length(s));
    }
}

/* Remembers the task id of a snapshot; false when the body is not a snapshot. */
static bool take_id(struct task_run *t, const json_t *snap)
{
    const char *id = obx_json_get_str(snap, "task_id", NULL);
    if (!id || !*id || strlen(id) >= sizeof(t->id))
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false; /* it goes into a path unescaped */
    if (!t->id[0])
        snprintf(t->id, sizeof(t->id), "%s", id);
    return true;
}

/* The outcome of a terminal snapshot. */
static int finish(struct task_run *t, const json_t *snap, struct obx_call *call, json_t **ret,
                  struct obx_error *err)
{
    const char *status = obx_json_get_str(snap, "status", "");
    const json_t *e = json_object_get(snap, "error");
    const char *code = obx_json_get_str(e, "code", "");
    const char *msg = obx_json_get_str(e, "message", "");
    if (obx_streq(status, "succeeded")) {
        json_t *res = json_object_get(snap, "result");
        emit_output(call, res);
        *ret = res ? json_incref(res) : json_object();
        return 0;
    }
    if (obx_streq(status, "timeout"))
        return obx_error_set(err, ETIMEDOUT, OBX_ERR_DEADLINE_EXCEEDED,
                             "command timed out after %lld ms; its processes were killed "
                             "(task %s)",
                             (long long)t->timeout_ms, t->id);
    if (obx_streq(status, "canceled"))
        return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED,
                             "task %s was canceled on the console", t->id);
    return obx_error_set(err, EIO, *code ? code : OBX_ERR_EXECUTION_FAILED, "%s",
                         *msg ? msg : "the task failed");
}

static bool is_terminal(const char *status)
{
    static const char *const done[] = {"succeeded", "failed", "timeout", "canceled"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(done); i++)
        if (obx_streq(status, done[i]))
            return true;
    return false;
}

/* Reads a submit or poll answer: sets *done and returns the outcome when the task ended or the
 * request failed; leaves *done false while the task runs. */
static int answer(struct task_run *t, long status, const json_t *body, struct obx_call *call,
                  json_t **ret, bool *done, struct obx_error *err)
{
    *done = true;
    if (!take_id(t, body))
        return obx_client_http_error(t->c, status, body, err);
    if (is_terminal(obx_json_get_str(body, "status", "")))
        return finish(t, body, call, ret, err);
    *done = false;
    return 0;
}

static int run_task(struct task_run *t, struct obx_call *call, json_t **ret, struct obx_error *err)
{
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    int64_t wait = obx_json_get_int(t->submit, "wait_ms", WAIT_MAX_MS);
    t->sent = true;
    int r = obx_client_conn_request(&t->conn, "POST", "/api/v1/tasks", t->submit,
                                    (uint64_t)wait + REQUEST_SLACK_MS, true, &status, &body, err);
    if (r < 0)
        return r;
    bool done;
    r = answer(t, status, body, call, ret, &done, err);
    if (done)
        return r;

    _cleanup_free_ char *path = obx_xasprintf("/api/v1/tasks/%s", t->id);
    uint64_t pause = POLL_FIRST_MS;
    uint64_t give_up = obx_now_ms() + (uint64_t)t->timeout_ms + GIVE_UP_SLACK_MS;
    for (int lost = 0;;) {
        if (!obx_client_conn_sleep(&t->conn, pause))
            return -ECANCELED;
        pause = OBX_MIN(pause * 3 / 2, (uint64_t)POLL_MAX_MS);
        json_decref(TAKE_PTR(body));
        r = obx_client_conn_request(&t->conn, "GET", path, NULL, REQUEST_SLACK_MS, true, &status,
                                    &body, err);
        if (r == -ECANCELED)
            return r;
        if (r < 0) {
            if (++lost > LOST_RETRIES)
                return obx_error_wrap(err, "task %s", t->id);
            continue;
        }
        lost = 0;
        r = answer(t, status, body, call, ret, &done, err);
        if (done)
            return r;
        if (obx_now_ms() > give_up) {
            t->gave_up = true; /* the console should have ended it; the caller cancels it */
            return -ECANCELED;
        }
    }
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* After a cancel cut the submit short: the task it created, found by resending it in async mode. A
 * submit the console has not finished creating answers 409 for a moment. */
static void find_task(struct task_run *t)
{
    _cleanup_json_ json_t *again = json_copy(t->submit);
    json_object_set_new(again, "mode", json_string("async"));
    for (int i = 0; i < 20 && !t->id[0]; i++) {
        long status = 0;
        _cleanup_json_ json_t *body = NULL;
        struct obx_error ignored = OBX_ERROR_INIT;
        if (obx_client_conn_request(&t->conn, "POST", "/api/v1/tasks", again, CANCEL_TIMEOUT_MS,
                                    false, &status, &body, &ignored) < 0 ||
            take_id(t, body) || status != 409)
            return;
        pause_ms(50);
    }
}

/* Cancels the task (if one was started) and describes what happened; always -ECANCELED. */
static int cancel_task(struct task_run *t, struct obx_error *err)
{
    if (t->sent && !t->id[0])
        find_task(t);
    if (!t->id[0])
        return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED,
                             t->sent ? "the call was canceled; the console at %s did not say "
                                       "which task it started"
                                     : "the call was canceled before it reached the console at %s",
                             t->c->url);
    _cleanup_free_ char *path = obx_xasprintf("/api/v1/tasks/%s/cancel", t->id);
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    struct obx_error e = OBX_ERROR_INIT;
    int r = obx_client_conn_request(&t->conn, "POST", path, NULL, CANCEL_TIMEOUT_MS, false, &status,
                                    &body, &e);
    const char *state = obx_json_get_str(body, "status", "");
    if (r < 0)
        return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED,
                             "the call was canceled but task %s could not be: %s", t->id,
                             e.message);
    if (status == 200 || obx_streq(state, "canceled"))
        return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED,
                             "task %s was canceled on the console at %s", t->id, t->c->url);
    if (*state)
        return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED,
                             "the call was canceled; task %s had already ended (%s)", t->id, state);
    obx_client_http_error(t->c, status, body, &e);
    return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED,
                         "the call was canceled but task %s could not be: %s", t->id, e.message);
}

int obx_client_task_exec(struct obx_executor *ex, const char *capability, json_t *payload,
                         struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    struct obx_client *c = (struct obx_client *)ex;
    struct task_run t = {.c = c, .timeout_ms = task_timeout(payload, call)};
    int r = obx_client_conn_init(c, &t.conn, err);
    if (r < 0)
        return r;
    char request_id[37];
    obx_random_uuid(request_id);
    t.submit = json_pack("{s:s,s:O,s:s,s:I,s:I,s:s}", "capability", capability, "input",
                         payload ? payload : json_null(), "mode", "auto", "wait_ms",
                         (json_int_t)OBX_MIN(t.timeout_ms, WAIT_MAX_MS), "timeout_ms",
                         (json_int_t)t.timeout_ms, "request_id", request_id);
    struct obx_client_link link = {.call = call};
    bool listed = registry_add(c, &link);
    if (!listed || obx_call_set_canceller(call, on_cancel, &t.conn) < 0)
        r = -ECANCELED;
    else
        r = run_task(&t, call, ret_result, err);
    if (r == -ECANCELED)
        r = cancel_task(&t, err);
    if (t.gave_up)
        r = obx_error_set(err, ETIMEDOUT, OBX_ERR_DEADLINE_EXCEEDED,
                          "task %s did not end by its deadline on the console at %s; it was "
                          "canceled",
                          t.id, c->url);
    if (listed)
        registry_remove(c, &link);
    obx_call_clear_canceller(call); /* waits for a canceller still using the connection */
    obx_client_conn_done(&t.conn);
    json_decref(t.submit);
    return r;
}
