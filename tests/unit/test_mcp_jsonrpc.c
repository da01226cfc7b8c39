/* SPDX-License-Identifier: Apache-2.0 */
/* JSON-RPC 2.0 behaviour of the MCP session and the stdio transport: ids, notifications, error
 * codes, batches, limits and line framing. */
#include "test_mcp_harness.h"

#include <fcntl.h>

#include "common/buf.h"

static void assert_id_null(json_t *resp)
{
    json_t *id = json_object_get(resp, "id");
    assert_non_null(id);
    assert_true(json_is_null(id));
}

static void test_parse_error(void **state)
{
    struct harness *h = h_new();
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":");
    json_t *r = h_take(h);
    assert_error(r, -32700);
    assert_id_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
    json_decref(r);

    const char bad[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\xfe\"}";
    h_raw(h, bad, sizeof(bad) - 1);
    r = h_take(h);
    assert_error(r, -32700);
    assert_id_null(r);
    json_decref(r);

    /* Still serving afterwards. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
    r = h_take(h);
    assert_int_equal(json_object_size(result_of(r)), 0);
    json_decref(r);
    h_free(h);
}

static void test_invalid_requests(void **state)
{
    struct harness *h = h_new();
    static const char *const cases[] = {
        "42",
        "\"ping\"",
        "null",
        "{\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}",
        "{\"jsonrpc\":\"2.0\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++) {
        h_sendf(h, "%s", cases[i]);
        json_t *r = h_take(h);
        assert_error(r, -32600);
        json_decref(r);
    }
    /* A null id is refused with a null id. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}");
    json_t *r = h_take(h);
    assert_id_null(r);
    json_decref(r);
    h_free(h);
}

static void test_ids_echoed(void **state)
{
    struct harness *h = h_new();
    static const char *const ids[] = {"0",    "\"abc\"", "-7",          "9007199254740993",
                                      "\"\"", "\"0\"",   "\"x\\u00e9\""};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(ids); i++) {
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"ping\"}", ids[i]);
        json_t *r = h_take(h);
        json_t *want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
        assert_true(json_equal(json_object_get(r, "id"), want));
        assert_int_equal(json_typeof(json_object_get(r, "id")), json_typeof(want));
        json_decref(want);
        json_decref(r);
    }
    h_free(h);
}

/* Notifications, client responses and unknown notifications get no answer: the first message out
 * is the answer to the ping sent after them. */
static void test_notifications_unanswered(void **state)
{
    struct harness *h = h_new();
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/whatever\",\"params\":{}}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
               "\"params\":{\"requestId\":99}}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":7}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":6,\"error\":{\"code\":1,\"message\":\"x\"}}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":\"marker\",\"method\":\"ping\"}");
    json_t *r = h_take(h);
    assert_string_equal(json_string_value(json_object_get(r, "id")), "marker");
    json_decref(r);
    h_expect_quiet(h);
    assert_int_equal(h->fake.calls, 0);
    h_free(h);
}

static void test_unknown_methods(void **state)
{
    struct harness *h = h_new();
    static const char *const methods[] = {"resources/list", "prompts/list", "completion/complete",
                                          "notifications/initialized", "tasks/get"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(methods); i++) {
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"%s\"}", i, methods[i]);
        json_t *r = h_take(h);
        assert_error(r, -32601);
        assert_int_equal(json_integer_value(json_object_get(r, "id")), (json_int_t)i);
        json_decref(r);
    }
    h_free(h);
}

static void test_lifecycle(void **state)
{
    struct harness *h = h_new();
    /* Served before initialize. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    json_t *r = h_take(h);
    assert_true(json_is_object(result_of(r)));
    assert_int_equal(json_object_size(result_of(r)), 0);
    json_decref(r);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    r = h_take(h);
    assert_int_equal(json_array_size(json_object_get(result_of(r), "tools")), 5);
    json_decref(r);

    /* initialize without protocolVersion is refused and does not count. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":{}}");
    r = h_take(h);
    assert_error(r, -32602);
    json_decref(r);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":7}");
    r = h_take(h);
    assert_error(r, -32602);
    json_decref(r);

    h_init(h, "2025-11-25");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"initialize\",\"params\":{"
               "\"protocolVersion\":\"2025-06-18\"}}");
    r = h_take(h);
    assert_error(r, -32600);
    json_decref(r);
    h_free(h);
}

static void test_set_level(void **state)
{
    struct harness *h = h_new();
    static const char *const ok[] = {"debug", "info",     "notice", "warning",
                                     "error", "critical", "alert",  "emergency"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(ok); i++) {
        h_sendf(h,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"logging/setLevel\","
                "\"params\":{\"level\":\"%s\"}}",
                ok[i]);
        json_t *r = h_take(h);
        assert_int_equal(json_object_size(result_of(r)), 0);
        json_decref(r);
    }
    static const char *const bad[] = {"{\"level\":\"verbose\"}", "{\"level\":3}", "{}",
                                      "{\"level\":\"INFO\"}"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"logging/setLevel\",\"params\":%s}",
                bad[i]);
        json_t *r = h_take(h);
        assert_error(r, -32602);
        json_decref(r);
    }
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":[1]}");
    json_t *r = h_take(h);
    assert_error(r, -32602);
    json_decref(r);
    h_free(h);
}

static void test_too_large(void **state)
{
    struct harness *h = h_new();
    size_t n = OBX_MCP_MAX_MESSAGE + 16;
    char *big = malloc(n);
    memset(big, ' ', n);
    memcpy(big, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
           strlen("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"));
    h_raw(h, big, n);
    free(big);
    json_t *r = h_take(h);
    assert_error(r, -32600);
    assert_id_null(r);
    json_decref(r);
    h_free(h);
}

static void test_batches_2025_03_26(void **state)
{
    struct harness *h = h_new();
    /* Before initialize a session speaks 2025-03-26, where batches exist. */
    h_sendf(h, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]");
    json_t *r = h_take(h);
    assert_true(json_is_array(r));
    json_decref(r);

    h_init(h, "2025-03-26");
    h_sendf(h, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
               "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
               "{\"jsonrpc\":\"2.0\",\"id\":\"c\",\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"echo\",\"arguments\":{\"message\":\"hi\"}}},"
               "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"},"
               "17,"
               "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":{"
               "\"protocolVersion\":\"2025-03-26\"}}]");
    r = h_take(h);
    assert_true(json_is_array(r));
    assert_int_equal(json_array_size(r), 5);
    bool seen_ping = false, seen_call = false, seen_nope = false, seen_17 = false,
         seen_init = false;
    size_t i;
    json_t *e;
    json_array_foreach(r, i, e)
    {
        json_t *id = json_object_get(e, "id");
        json_t *err = json_object_get(e, "error");
        int code = (int)json_integer_value(json_object_get(err, "code"));
        if (json_is_integer(id) && json_integer_value(id) == 1)
            seen_ping = !err;
        else if (json_is_string(id))
            seen_call = obx_streq(tool_text(e), "{\"message\":\"hi\"}");
        else if (json_is_integer(id) && json_integer_value(id) == 2)
            seen_nope = code == -32601;
        else if (json_is_null(id))
            seen_17 = code == -32600;
        else if (json_is_integer(id) && json_integer_value(id) == 3)
            seen_init = code == -32600;
    }
    assert_true(seen_ping && seen_call && seen_nope && seen_17 && seen_init);
    json_decref(r);

    /* Notifications only: nothing at all. Empty: -32600. */
    h_sendf(h, "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}]");
    h_sendf(h, "[]");
    r = h_take(h);
    assert_error(r, -32600);
    assert_id_null(r);
    json_decref(r);
    h_expect_quiet(h);

    /* A batch over the limit is refused whole, before any entry is answered. */
    size_t n = OBX_MCP_MAX_BATCH + 1;
    char *big = malloc(2 * n + 2);
    assert_non_null(big);
    big[0] = '[';
    for (size_t k = 0; k < n; k++) {
        big[1 + 2 * k] = '0';
        big[2 + 2 * k] = k + 1 < n ? ',' : ']';
    }
    big[2 * n + 1] = '\0';
    h_sendf(h, "%s", big);
    free(big);
    r = h_take(h);
    assert_error(r, -32600);
    assert_id_null(r);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")),
               "at most 1000 are allowed"));
    json_decref(r);
    h_expect_quiet(h);
    h_free(h);
}

static void test_batches_refused_after_2025_06_18(void **state)
{
    static const char *const versions[] = {"2024-11-05", "2025-06-18", "2025-11-25"};
    for (size_t v = 0; v < OBX_ARRAY_SIZE(versions); v++) {
        struct harness *h = h_new();
        h_init(h, versions[v]);
        h_sendf(h, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                   "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]");
        json_t *r = h_take(h);
        assert_true(json_is_object(r));
        assert_error(r, -32600);
        assert_id_null(r);
        json_decref(r);
        h_expect_quiet(h);
        h_free(h);
    }
}

/* ---- stdio ---- */

struct stdio_run {
    struct obx_mcp_server *srv;
    int in_fd, out_fd;
    int ret;
};

static void *stdio_thread(void *userdata)
{
    struct stdio_run *r = userdata;
    r->ret = obx_mcp_stdio_run(r->srv, r->in_fd, r->out_fd);
    return NULL;
}

/* Reads one line (without '\n') from fd; NULL at EOF. */
static char *read_line(int fd)
{
    struct obx_buf b = OBX_BUF_INIT(0);
    char c;
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n <= 0) {
            if (b.len == 0) {
                obx_buf_free(&b);
                return NULL;
            }
            break;
        }
        if (c == '\n')
            break;
        obx_buf_append(&b, &c, 1);
    }
    return obx_buf_steal(&b, NULL);
}

static json_t *read_msg(int fd)
{
    char *line = read_line(fd);
    assert_non_null(line);
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    free(line);
    return j;
}

static void write_str(int fd, const char *s)
{
    assert_int_equal(obx_write_all(fd, s, strlen(s)), 0);
}

static void test_stdio(void **state)
{
    struct fake_exec fake;
    fake_init(&fake);
    fake.mode = FAKE_BLOCK;
    struct obx_mcp_server_config cfg = {
        .name = "onlyboxes", .version = "1", .executor = &fake.base};
    struct obx_mcp_server *srv = obx_mcp_server_new(&cfg);
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    struct stdio_run run = {.srv = srv, .in_fd = in[0], .out_fd = out[1], .ret = -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stdio_thread, &run), 0);

    /* \r\n, blank lines, and a message split over two writes. */
    write_str(in[1],
              "\r\n\n   \n{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{"
              "\"protocolVersion\":\"2025-11-25\"}}\r\n");
    json_t *r = read_msg(out[0]);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 0);
    assert_string_equal(json_string_value(json_object_get(result_of(r), "protocolVersion")),
                        "2025-11-25");
    json_decref(r);
    write_str(in[1], "{\"jsonrpc\":\"2.0\",\"id\":1,");
    write_str(in[1], "\"method\":\"ping\"}\n");
    r = read_msg(out[0]);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    json_decref(r);

    /* A tool call that never ends does not stop the reader. */
    write_str(in[1], "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
                     "\"name\":\"pythonExec\",\"arguments\":{\"code\":\"import time\"}}}\n");
    fake_wait_blocked(&fake, 1);
    write_str(in[1], "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n");
    r = read_msg(out[0]);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 3);
    json_decref(r);

    /* A line over the cap: -32600, skipped up to its newline, then business as usual. */
    size_t n = OBX_MCP_MAX_MESSAGE + 100;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\n';
    /* Written from this thread while the reader drains the pipe. */
    assert_int_equal(obx_write_all(in[1], big, n + 1), 0);
    free(big);
    r = read_msg(out[0]);
    assert_error(r, -32600);
    json_decref(r);
    write_str(in[1], "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\n");
    r = read_msg(out[0]);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 4);
    json_decref(r);

    /* A last line without newline is still handled; then EOF ends the run, cancelling the call
     * in flight without answering it. */
    write_str(in[1], "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}");
    close(in[1]);
    r = read_msg(out[0]);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 5);
    json_decref(r);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(run.ret, 0);
    assert_int_equal(fake.cancelled, 1);
    close(out[1]);
    char *rest = read_line(out[0]);
    assert_null(rest);
    close(out[0]);
    close(in[0]);
    obx_mcp_server_free(srv);
    fake_done(&fake);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_error),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_ids_echoed),
        cmocka_unit_test(test_notifications_unanswered),
        cmocka_unit_test(test_unknown_methods),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_set_level),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_batches_2025_03_26),
        cmocka_unit_test(test_batches_refused_after_2025_06_18),
        cmocka_unit_test(test_stdio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
