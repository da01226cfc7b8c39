/* SPDX-License-Identifier: Apache-2.0 */
/* tools/call as it runs: progress notifications, cancellation, the in-flight limit, duplicate ids
 * and what obx_mcp_session_free() does to calls still running. */
#include "test_mcp_harness.h"

static void send_call(struct harness *h, const char *id, const char *meta)
{
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":{\"name\":"
            "\"terminalExec\",\"arguments\":{\"command\":\"sleep 100\"}%s%s}}",
            id, meta ? ",\"_meta\":" : "", meta ? meta : "");
}

static void test_progress(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");
    h->fake.mode = FAKE_OUTPUT;
    /* "é" split over two chunks, then one chunk over the 8 KiB cap. */
    static char big[10000];
    memset(big, 'y', sizeof(big));
    h->fake.chunks[0] = "ab\xc3";
    h->fake.chunks[1] = "\xa9z";
    h->fake.chunks[2] = "bad \xff!";
    h->fake.chunks[3] = big;
    h->fake.chunk_lens[3] = sizeof(big);
    h->fake.n_chunks = 4;
    send_call(h, "11", "{\"progressToken\":42}");
    json_t *notes = NULL;
    json_t *r = h_response(h, &notes);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 11);
    assert_false(tool_is_error(r));
    assert_int_equal(json_array_size(notes), 4);
    static const json_int_t progress[] = {3, 5, 11, 10011};
    static const char *const text[] = {"ab", "\xc3\xa9z", "bad \xef\xbf\xbd!", NULL};
    for (size_t i = 0; i < 4; i++) {
        json_t *n = json_array_get(notes, i);
        assert_string_equal(json_string_value(json_object_get(n, "method")),
                            "notifications/progress");
        json_t *p = json_object_get(n, "params");
        assert_int_equal(json_integer_value(json_object_get(p, "progressToken")), 42);
        assert_int_equal(json_integer_value(json_object_get(p, "progress")), progress[i]);
        const char *m = json_string_value(json_object_get(p, "message"));
        assert_non_null(m);
        if (text[i])
            assert_string_equal(m, text[i]);
        else
            assert_int_equal(strlen(m), OBX_MCP_PROGRESS_MAX_TEXT);
    }
    json_decref(notes);
    json_decref(r);

    /* No token, no progress; a token of another type is ignored. */
    send_call(h, "12", NULL);
    r = h_response(h, &notes);
    assert_int_equal(json_array_size(notes), 0);
    json_decref(notes);
    json_decref(r);
    send_call(h, "13", "{\"progressToken\":1.5}");
    r = h_response(h, &notes);
    assert_int_equal(json_array_size(notes), 0);
    json_decref(notes);
    json_decref(r);
    h_free(h);
}

static void cancel(struct harness *h, const char *id)
{
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"
            "\"requestId\":%s,\"reason\":\"user\"}}",
            id);
}

static void test_cancel(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");
    h->fake.mode = FAKE_BLOCK;
    send_call(h, "\"a\"", "{\"progressToken\":\"pa\"}");
    send_call(h, "1", NULL);
    fake_wait_blocked(&h->fake, 2);

    /* Wrong type, unknown id, initialize's id: ignored. The proof: released, both calls answer
     * with their result, where a cancelled call would not answer at all. */
    cancel(h, "\"1\"");
    cancel(h, "99");
    cancel(h, "\"init\"");
    cancel(h, "null");
    __atomic_store_n(&h->fake.release, true, __ATOMIC_RELEASE);
    bool answered_a = false, answered_1 = false;
    for (int k = 0; k < 2; k++) {
        json_t *r = h_response(h, NULL);
        assert_non_null(json_object_get(r, "result"));
        json_t *id = json_object_get(r, "id");
        answered_a |= obx_streq(json_string_value(id), "a");
        answered_1 |= json_integer_value(id) == 1;
        json_decref(r);
    }
    assert_true(answered_a && answered_1);
    assert_int_equal(h->fake.cancelled, 0);
    __atomic_store_n(&h->fake.release, false, __ATOMIC_RELEASE);
    send_call(h, "\"a\"", "{\"progressToken\":\"pa\"}");
    send_call(h, "1", NULL);
    fake_wait_blocked(&h->fake, 2);

    cancel(h, "\"a\"");
    fake_wait_blocked(&h->fake, 1);
    assert_int_equal(h->fake.cancelled, 1);
    cancel(h, "1");
    fake_wait_blocked(&h->fake, 0);
    assert_int_equal(h->fake.cancelled, 2);
    /* No responses for either; the session still answers. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":\"marker\",\"method\":\"ping\"}");
    json_t *r = h_take(h);
    assert_string_equal(json_string_value(json_object_get(r, "id")), "marker");
    json_decref(r);
    h_expect_quiet(h);

    /* The id may be used again once its call is gone. */
    h->fake.mode = FAKE_OK;
    send_call(h, "1", NULL);
    r = h_take(h);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    assert_false(tool_is_error(r));
    json_decref(r);
    h_free(h);
}

static void test_cancel_logs(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"logging/setLevel\","
               "\"params\":{\"level\":\"notice\"}}");
    json_decref(h_take(h));
    h->fake.mode = FAKE_BLOCK;
    send_call(h, "5", NULL);
    fake_wait_blocked(&h->fake, 1);
    cancel(h, "5");
    json_t *m = h_take(h);
    assert_string_equal(json_string_value(json_object_get(m, "method")), "notifications/message");
    json_t *p = json_object_get(m, "params");
    assert_string_equal(json_string_value(json_object_get(p, "level")), "notice");
    assert_non_null(strstr(json_string_value(json_object_get(p, "data")), "cancelled"));
    json_decref(m);
    h_expect_quiet(h);

    /* Timeouts are warnings. */
    h->fake.mode = FAKE_ERROR;
    h->fake.err_code = OBX_ERR_DEADLINE_EXCEEDED;
    h->fake.err_message = "too slow";
    send_call(h, "6", NULL);
    m = h_take(h);
    p = json_object_get(m, "params");
    assert_string_equal(json_string_value(json_object_get(p, "level")), "warning");
    json_decref(m);
    m = h_take(h);
    assert_string_equal(tool_text(m), "deadline_exceeded: too slow");
    json_decref(m);
    h_free(h);
}

static void test_inflight_limit_and_duplicates(void **state)
{
    struct obx_mcp_server_config cfg = {.max_inflight = 2};
    struct harness *h = h_new_cfg(cfg);
    h_init(h, "2025-11-25");
    h->fake.mode = FAKE_BLOCK;
    send_call(h, "1", NULL);
    send_call(h, "2", NULL);
    fake_wait_blocked(&h->fake, 2);

    send_call(h, "1", NULL);
    json_t *r = h_take(h);
    assert_error(r, -32600);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    json_decref(r);

    send_call(h, "3", NULL);
    r = h_take(h);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 3);
    assert_true(tool_is_error(r));
    assert_non_null(strstr(tool_text(r), "too many calls in flight"));
    json_decref(r);

    /* Quick methods are not held up by calls in flight. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/list\"}");
    r = h_take(h);
    assert_non_null(result_of(r));
    json_decref(r);

    cancel(h, "2");
    fake_wait_blocked(&h->fake, 1);
    /* The slot frees once the cancelled call's thread is done. */
    uint64_t end = obx_now_ms() + 5000;
    bool ok = false;
    h->fake.mode = FAKE_OK;
    while (!ok && obx_now_ms() < end) {
        send_call(h, "5", NULL);
        r = h_take(h);
        ok = !tool_is_error(r);
        json_decref(r);
    }
    assert_true(ok);
    h_free(h);
}

static void test_free_cancels_calls(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"logging/setLevel\","
               "\"params\":{\"level\":\"debug\"}}");
    json_decref(h_take(h));
    h->fake.mode = FAKE_BLOCK;
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof(id), "%d", i + 1);
        send_call(h, id, "{\"progressToken\":\"t\"}");
    }
    fake_wait_blocked(&h->fake, 5);
    struct fake_exec *f = &h->fake;
    /* Free by hand so the counters stay readable afterwards. */
    obx_mcp_session_free(h->s);
    pthread_mutex_lock(&h->lock);
    h->freed = true;
    size_t before = json_array_size(h->msgs);
    pthread_mutex_unlock(&h->lock);
    assert_int_equal(f->cancelled, 5);
    assert_int_equal(f->blocked, 0);
    /* Only the "started" debug logs went out; no response for any call. */
    for (size_t i = 0; i < before; i++) {
        json_t *m = json_array_get(h->msgs, i);
        assert_null(json_object_get(m, "id"));
    }
    /* obx_mcp_session_free() joined every call's thread: any late send has happened by now. */
    assert_int_equal(h->sends_after_free, 0);
    h->s = obx_mcp_session_new(h->srv, h_send_cb, h);
    h_free(h);
}

static void test_batch_with_cancelled_call(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-03-26");
    h->fake.mode = FAKE_BLOCK;
    h_sendf(h, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
               "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"pythonExec\",\"arguments\":{\"code\":\"x\"}}}]");
    fake_wait_blocked(&h->fake, 1);
    /* The batch answer waits for its call: a ping sent now is answered first. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":\"marker\",\"method\":\"ping\"}");
    json_t *m = h_take(h);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "marker");
    json_decref(m);
    assert_int_equal(h_count(h), 0);
    cancel(h, "2");
    json_t *r = h_take(h);
    assert_true(json_is_array(r));
    assert_int_equal(json_array_size(r), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r, 0), "id")), 1);
    json_decref(r);
    h_free(h);
}

/* A per-message sink (Streamable HTTP): what it received and how often it was closed. */
struct capture {
    pthread_mutex_t lock;
    json_t *msgs; /* [json, response] pairs */
    int closes, after_close;
};

static void capture_send(void *userdata, const char *json, bool response)
{
    struct capture *c = userdata;
    pthread_mutex_lock(&c->lock);
    c->after_close += c->closes > 0;
    json_array_append_new(c->msgs, json_pack("[sb]", json, response));
    pthread_mutex_unlock(&c->lock);
}

static void capture_close(void *userdata)
{
    struct capture *c = userdata;
    pthread_mutex_lock(&c->lock);
    c->closes++;
    pthread_mutex_unlock(&c->lock);
}

static void capture_init(struct capture *c)
{
    pthread_mutex_init(&c->lock, NULL);
    c->msgs = json_array();
    c->closes = c->after_close = 0;
}

static void capture_done(struct capture *c)
{
    json_decref(c->msgs);
    pthread_mutex_destroy(&c->lock);
}

static int capture_wait_closed(struct capture *c)
{
    uint64_t end = obx_now_ms() + 5000;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int n = c->closes;
        pthread_mutex_unlock(&c->lock);
        if (n > 0 || obx_now_ms() > end)
            return n;
        usleep(1000);
    }
}

static void sink_send_text(struct harness *h, struct capture *c, const char *text)
{
    struct obx_mcp_sink sink = {.send = capture_send, .close = capture_close, .userdata = c};
    obx_mcp_session_handle_sink(h->s, text, strlen(text), &sink);
}

static void test_sinks(void **state)
{
    struct obx_mcp_server_config cfg = {0};
    struct harness *h = h_new_cfg(cfg);
    /* A session of its own account, as Streamable HTTP makes them. */
    obx_mcp_session_free(h->s);
    struct obx_mcp_session_config sc = {.account = "acct-2", .send = h_send_cb, .userdata = h};
    h->s = obx_mcp_session_new_with(h->srv, &sc);
    assert_false(obx_mcp_session_initialized(h->s));
    h_init(h, "2025-11-25");
    assert_true(obx_mcp_session_initialized(h->s));

    /* A call's progress and its response go to the sink of the message that started it, the
     * response last, then the sink closes; nothing reaches the session's own send(). */
    struct capture c;
    capture_init(&c);
    h->fake.mode = FAKE_OUTPUT;
    h->fake.chunks[0] = "one";
    h->fake.chunks[1] = "two";
    h->fake.n_chunks = 2;
    sink_send_text(h, &c,
                   "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":"
                   "\"terminalExec\",\"arguments\":{\"command\":\"x\"},\"_meta\":{"
                   "\"progressToken\":1}}}");
    assert_int_equal(capture_wait_closed(&c), 1);
    assert_int_equal(json_array_size(c.msgs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *pair = json_array_get(c.msgs, i);
        json_t *m = json_loads(json_string_value(json_array_get(pair, 0)), 0, NULL);
        assert_int_equal(json_is_true(json_array_get(pair, 1)), i == 2);
        if (i < 2)
            assert_string_equal(json_string_value(json_object_get(m, "method")),
                                "notifications/progress");
        else
            assert_int_equal(json_integer_value(json_object_get(m, "id")), 7);
        json_decref(m);
    }
    assert_string_equal(h->fake.account, "acct-2");
    assert_int_equal(h_count(h), 0);
    capture_done(&c);

    /* A notification closes its sink at once, with nothing sent. */
    capture_init(&c);
    sink_send_text(h, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    assert_int_equal(c.closes, 1);
    assert_int_equal(json_array_size(c.msgs), 0);
    capture_done(&c);

    /* A cancelled call closes its sink without a response; so does freeing the session. */
    struct capture a, b, n;
    capture_init(&a);
    capture_init(&b);
    capture_init(&n);
    h->fake.mode = FAKE_BLOCK;
    sink_send_text(h, &a,
                   "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":"
                   "\"pythonExec\",\"arguments\":{\"code\":\"x\"}}}");
    sink_send_text(h, &b,
                   "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":"
                   "\"pythonExec\",\"arguments\":{\"code\":\"x\"}}}");
    fake_wait_blocked(&h->fake, 2);
    assert_int_equal(a.closes + b.closes, 0);
    sink_send_text(h, &n,
                   "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"
                   "\"requestId\":8}}");
    assert_int_equal(capture_wait_closed(&a), 1);
    assert_int_equal(json_array_size(a.msgs), 0);
    obx_mcp_session_free(h->s);
    assert_int_equal(b.closes, 1);
    assert_int_equal(json_array_size(b.msgs), 0);
    assert_int_equal(a.after_close + b.after_close + n.after_close, 0);
    capture_done(&a);
    capture_done(&b);
    capture_done(&n);
    h->s = obx_mcp_session_new(h->srv, h_send_cb, h);
    h_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_logs),
        cmocka_unit_test(test_inflight_limit_and_duplicates),
        cmocka_unit_test(test_free_cancels_calls),
        cmocka_unit_test(test_batch_with_cancelled_call),
        cmocka_unit_test(test_sinks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
