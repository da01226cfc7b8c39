/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the test_mcp_*.c unit tests: a session whose send() collects the messages, and a fake
 * executor that records what it was asked and answers as the test says (ok, error, block until
 * cancelled, stream output first). A unit test of the protocol layer; the real worker is tested
 * elsewhere.
 */
#ifndef OBX_TEST_MCP_HARNESS_H
#define OBX_TEST_MCP_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/base64.h"
#include "common/clock.h"
#include "mcp/mcp-internal.h"
#include "mcp/session.h"

#define H_UNUSED __attribute__((unused))

/* ---- fake executor ---- */

enum fake_mode {
    FAKE_OK,     /* answer with f->result, or a plausible result for the capability */
    FAKE_ERROR,  /* fail with f->err_code / f->err_message */
    FAKE_BLOCK,  /* wait until cancelled (or f->release), then fail with "canceled" */
    FAKE_OUTPUT, /* call on_output with each of f->chunks, then answer like FAKE_OK */
};

struct fake_exec {
    struct obx_executor base;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum fake_mode mode;
    json_t *result; /* FAKE_OK answer when set */
    const char *err_code;
    const char *err_message;
    const char *chunks[8];
    size_t chunk_lens[8];
    size_t n_chunks;
    bool release;

    /* what the last exec() saw */
    int calls;
    int blocked;   /* calls waiting in FAKE_BLOCK right now */
    int cancelled; /* calls that saw their cancellation */
    char capability[64];
    json_t *payload;
    uint64_t deadline;
    uint64_t called_at;
    char account[64];
};

struct blocker {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool done;
};

static H_UNUSED void blocker_cancel(void *userdata)
{
    struct blocker *b = userdata;
    pthread_mutex_lock(&b->m);
    b->done = true;
    pthread_cond_broadcast(&b->c);
    pthread_mutex_unlock(&b->m);
}

static H_UNUSED json_t *fake_default_result(const char *cap, json_t *payload)
{
    if (strcmp(cap, "echo") == 0)
        return json_deep_copy(payload);
    if (strcmp(cap, "pythonexec") == 0)
        return json_pack("{sssssi}", "output", "hi\n", "stderr", "", "exit_code", 0);
    if (strcmp(cap, "terminalexec") == 0)
        return json_pack("{sOsbsssssisbsbsI}", "session_id", json_object_get(payload, "session_id"),
                         "created", 1, "stdout", "ok\n", "stderr", "", "exit_code", 0,
                         "stdout_truncated", 0, "stderr_truncated", 0, "lease_expires_unix_ms",
                         (json_int_t)1700000000000);
    if (strcmp(cap, "terminalresource") == 0)
        return json_pack("{sOsOsssiss}", "session_id", json_object_get(payload, "session_id"),
                         "file_path", json_object_get(payload, "file_path"), "mime_type",
                         "image/png", "size_bytes", 4, "blob", "iVBORw==");
    return json_object();
}

static H_UNUSED int fake_exec_fn(struct obx_executor *self, const char *capability, json_t *payload,
                                 struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    struct fake_exec *f = (struct fake_exec *)self;
    pthread_mutex_lock(&f->lock);
    f->calls++;
    snprintf(f->capability, sizeof(f->capability), "%s", capability);
    json_decref(f->payload);
    f->payload = json_deep_copy(payload);
    f->deadline = call->deadline;
    f->called_at = obx_now_ms();
    snprintf(f->account, sizeof(f->account), "%s", call->account ? call->account : "");
    enum fake_mode mode = f->mode;
    json_t *result = f->result ? json_deep_copy(f->result) : NULL;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);

    if (mode == FAKE_ERROR) {
        json_decref(result);
        return obx_error_set(err, ENOENT, f->err_code, "%s", f->err_message);
    }
    if (mode == FAKE_BLOCK) {
        json_decref(result);
        struct blocker b = {.done = false};
        pthread_mutex_init(&b.m, NULL);
        pthread_cond_init(&b.c, NULL);
        if (obx_call_set_canceller(call, blocker_cancel, &b) == 0) {
            pthread_mutex_lock(&f->lock);
            f->blocked++;
            pthread_cond_broadcast(&f->cond);
            pthread_mutex_unlock(&f->lock);
            pthread_mutex_lock(&b.m);
            while (!b.done && !__atomic_load_n(&f->release, __ATOMIC_ACQUIRE)) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 10 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&b.c, &b.m, &ts);
            }
            pthread_mutex_unlock(&b.m);
            obx_call_clear_canceller(call);
            pthread_mutex_lock(&f->lock);
            f->blocked--;
            if (b.done)
                f->cancelled++;
            pthread_cond_broadcast(&f->cond);
            pthread_mutex_unlock(&f->lock);
        }
        pthread_mutex_destroy(&b.m);
        pthread_cond_destroy(&b.c);
        if (!obx_call_is_cancelled(call))
            *ret_result = json_pack("{ss}", "message", "released");
        else
            return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED, "the call was cancelled");
        return 0;
    }
    if (mode == FAKE_OUTPUT && call->on_output)
        for (size_t i = 0; i < f->n_chunks; i++)
            call->on_output(call->output_userdata, OBX_STREAM_STDOUT, f->chunks[i],
                            f->chunk_lens[i] ? f->chunk_lens[i] : strlen(f->chunks[i]));
    *ret_result = result ? result : fake_default_result(capability, payload);
    return 0;
}

static H_UNUSED void fake_init(struct fake_exec *f)
{
    memset(f, 0, sizeof(*f));
    f->base.exec = fake_exec_fn;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
}

static H_UNUSED void fake_done(struct fake_exec *f)
{
    json_decref(f->payload);
    json_decref(f->result);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
}

/* Waits until f->blocked reaches n (5 s at most). */
static H_UNUSED void fake_wait_blocked(struct fake_exec *f, int n)
{
    uint64_t end = obx_now_ms() + 5000;
    pthread_mutex_lock(&f->lock);
    while (f->blocked != n && obx_now_ms() < end) {
        pthread_mutex_unlock(&f->lock);
        usleep(2000);
        pthread_mutex_lock(&f->lock);
    }
    int got = f->blocked;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(got, n);
}

/* ---- capturing session ---- */

struct harness {
    struct fake_exec fake;
    struct obx_mcp_server *srv;
    struct obx_mcp_session *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    json_t *msgs; /* received, oldest first */
    bool freed;
    int sends_after_free;
};

static H_UNUSED void h_send_cb(void *userdata, const char *json)
{
    struct harness *h = userdata;
    assert_null(strchr(json, '\n'));
    json_error_t je;
    json_t *j = json_loads(json, JSON_DECODE_ANY, &je);
    assert_non_null(j);
    pthread_mutex_lock(&h->lock);
    if (h->freed)
        h->sends_after_free++;
    json_array_append_new(h->msgs, j);
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

static H_UNUSED struct harness *h_new_cfg(struct obx_mcp_server_config cfg)
{
    struct harness *h = calloc(1, sizeof(*h));
    fake_init(&h->fake);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->msgs = json_array();
    if (!cfg.name)
        cfg.name = "onlyboxes";
    if (!cfg.version)
        cfg.version = "9.9.9";
    if (!cfg.account)
        cfg.account = "acct-1";
    cfg.executor = &h->fake.base;
    h->srv = obx_mcp_server_new(&cfg);
    h->s = obx_mcp_session_new(h->srv, h_send_cb, h);
    return h;
}

static H_UNUSED struct harness *h_new(void)
{
    struct obx_mcp_server_config cfg = {0};
    return h_new_cfg(cfg);
}

static H_UNUSED void h_free(struct harness *h)
{
    __atomic_store_n(&h->fake.release, true, __ATOMIC_RELEASE);
    obx_mcp_session_free(h->s);
    pthread_mutex_lock(&h->lock);
    h->freed = true;
    pthread_mutex_unlock(&h->lock);
    obx_mcp_server_free(h->srv);
    json_decref(h->msgs);
    fake_done(&h->fake);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h);
}

static H_UNUSED void h_raw(struct harness *h, const char *text, size_t len)
{
    obx_mcp_session_handle(h->s, text, len);
}

static H_UNUSED void h_sendf(struct harness *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    assert_true(vasprintf(&text, fmt, ap) >= 0);
    va_end(ap);
    obx_mcp_session_handle(h->s, text, strlen(text));
    free(text);
}

static H_UNUSED size_t h_count(struct harness *h)
{
    pthread_mutex_lock(&h->lock);
    size_t n = json_array_size(h->msgs);
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* Removes and returns the oldest message, waiting up to 5 s for one. */
static H_UNUSED json_t *h_take(struct harness *h)
{
    uint64_t end = obx_now_ms() + 5000;
    pthread_mutex_lock(&h->lock);
    while (json_array_size(h->msgs) == 0 && obx_now_ms() < end) {
        pthread_mutex_unlock(&h->lock);
        usleep(1000);
        pthread_mutex_lock(&h->lock);
    }
    json_t *m = json_incref(json_array_get(h->msgs, 0));
    if (m)
        json_array_remove(h->msgs, 0);
    pthread_mutex_unlock(&h->lock);
    assert_non_null(m);
    return m;
}

/* Removes and returns the first message that is not a notification (5 s at most); notifications
 * before it are moved to *notes (new array) when notes is not NULL, else dropped. */
static H_UNUSED json_t *h_response(struct harness *h, json_t **notes)
{
    if (notes)
        *notes = json_array();
    for (;;) {
        json_t *m = h_take(h);
        if (!json_is_object(m) || !json_object_get(m, "method"))
            return m;
        if (notes)
            json_array_append(*notes, m);
        json_decref(m);
    }
}

/* Asserts that the session has nothing more to say, by events rather than by waiting a while:
 * once every call of the session has finished (30 s at most, generous: a call that stays is the
 * failure), a ping is answered, and its answer must be the next message: whatever the session
 * sent before it, it would come first. */
static H_UNUSED void h_expect_quiet(struct harness *h)
{
    struct obx_mcp_session *s = h->s;
    uint64_t end = obx_now_ms() + 30000;
    pthread_mutex_lock(&s->lock);
    while (s->n_inflight > 0 && obx_now_ms() < end) {
        pthread_mutex_unlock(&s->lock);
        usleep(1000);
        pthread_mutex_lock(&s->lock);
    }
    unsigned inflight = s->n_inflight;
    pthread_mutex_unlock(&s->lock);
    assert_int_equal(inflight, 0);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":\"quiet-marker\",\"method\":\"ping\"}");
    json_t *m = h_take(h);
    if (!obx_streq(json_string_value(json_object_get(m, "id")), "quiet-marker")) {
        char *t = json_dumps(m, 0);
        fail_msg("expected nothing more from the session, got %s", t);
    }
    json_decref(m);
    assert_int_equal(h_count(h), 0);
}

static H_UNUSED void assert_error(json_t *resp, int code)
{
    json_t *e = json_object_get(resp, "error");
    if (!e) {
        char *t = json_dumps(resp, 0);
        fprintf(stderr, "expected error %d, got %s\n", code, t);
        free(t);
    }
    assert_non_null(e);
    assert_int_equal(json_integer_value(json_object_get(e, "code")), code);
}

static H_UNUSED json_t *result_of(json_t *resp)
{
    json_t *r = json_object_get(resp, "result");
    if (!r) {
        char *t = json_dumps(resp, 0);
        fprintf(stderr, "expected a result, got %s\n", t);
        free(t);
    }
    assert_non_null(r);
    return r;
}

/* The text of content[0] of a tools/call response. */
static H_UNUSED const char *tool_text(json_t *resp)
{
    json_t *r = result_of(resp);
    const char *t = json_string_value(
        json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
    assert_non_null(t);
    return t;
}

/* The tool of that name in a tools/list result's tools, or NULL. */
static H_UNUSED json_t *h_find_tool(json_t *tools, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (obx_streq(json_string_value(json_object_get(t, "name")), name))
            return t;
    }
    return NULL;
}

static H_UNUSED bool tool_is_error(json_t *resp)
{
    return json_is_true(json_object_get(result_of(resp), "isError"));
}

static H_UNUSED void h_init(struct harness *h, const char *version)
{
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":{"
            "\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\","
            "\"version\":\"1\"}}}",
            version);
    json_t *r = h_take(h);
    assert_string_equal(json_string_value(json_object_get(result_of(r), "protocolVersion")),
                        version);
    json_decref(r);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
}

/* Sends a tools/call with id and returns its response (notifications dropped). */
static H_UNUSED json_t *h_call(struct harness *h, const char *name, const char *args_json)
{
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"id\":\"call\",\"method\":\"tools/call\",\"params\":{"
            "\"name\":\"%s\",\"arguments\":%s}}",
            name, args_json);
    return h_response(h, NULL);
}

#endif
