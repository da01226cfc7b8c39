/* SPDX-License-Identifier: Apache-2.0 */
/* The modern era (protocol 2026-07-28) beside the legacy one in the same session: server/discover,
 * the per-request _meta envelope and its errors, what every modern result carries and what a
 * legacy client never sees, per-request logging, tasks (created, polled, cancelled, subscribed
 * to), and what the Streamable HTTP transport decides from a POST and its headers. */
#include "test_mcp_harness.h"

#include <strings.h>

#define ENV_CAPS(caps)                                                           \
    "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","     \
    "\"io.modelcontextprotocol/clientInfo\":{\"name\":\"t\",\"version\":\"1\"}," \
    "\"io.modelcontextprotocol/clientCapabilities\":" caps
#define ENV ENV_CAPS("{}") "}"
#define ENV_TASKS ENV_CAPS("{\"extensions\":{\"io.modelcontextprotocol/tasks\":{}}}") "}"

static json_t *meta_of(json_t *result)
{
    return json_object_get(json_object_get(result, "_meta"), "io.modelcontextprotocol/serverInfo");
}

static void test_discover(void **state)
{
    struct harness *h = h_new();
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"method\":\"server/discover\",\"params\":{" ENV
               "}}");
    json_t *r = h_take(h);
    json_t *res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "resultType")), "complete");
    json_t *versions = json_object_get(res, "supportedVersions");
    assert_int_equal(json_array_size(versions), 1);
    assert_string_equal(json_string_value(json_array_get(versions, 0)), "2026-07-28");
    json_t *caps = json_object_get(res, "capabilities");
    assert_true(json_is_object(json_object_get(caps, "tools")));
    assert_true(json_is_object(
        json_object_get(json_object_get(caps, "extensions"), "io.modelcontextprotocol/tasks")));
    assert_string_equal(json_string_value(json_object_get(meta_of(res), "name")), "onlyboxes");
    assert_string_equal(json_string_value(json_object_get(meta_of(res), "version")), "9.9.9");
    assert_true(json_integer_value(json_object_get(res, "ttlMs")) > 0);
    assert_string_equal(json_string_value(json_object_get(res, "cacheScope")), "public");
    assert_non_null(
        strstr(json_string_value(json_object_get(res, "instructions")), "terminalExec"));
    json_decref(r);
    h_free(h);
}

static void test_envelope_errors(void **state)
{
    static const struct {
        const char *params;
        int code;
        const char *key; /* error.data.envelope.key, or NULL */
    } cases[] = {
        {"{}", -32602, "_meta"},
        {"{\"_meta\":{\"io.modelcontextprotocol/clientCapabilities\":{}}}", -32602,
         "io.modelcontextprotocol/protocolVersion"},
        {"{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}", -32602,
         "io.modelcontextprotocol/clientCapabilities"},
        {"{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":7,"
         "\"io.modelcontextprotocol/clientCapabilities\":{}}}",
         -32602, "io.modelcontextprotocol/protocolVersion"},
        {"{" ENV_CAPS("{}") ",\"io.modelcontextprotocol/logLevel\":\"loud\"}}", -32602,
         "io.modelcontextprotocol/logLevel"},
        {"{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
         "\"io.modelcontextprotocol/clientCapabilities\":{},"
         "\"io.modelcontextprotocol/clientInfo\":\"me\"}}",
         -32602, "io.modelcontextprotocol/clientInfo"},
        {"{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2099-01-01\","
         "\"io.modelcontextprotocol/clientCapabilities\":{}}}",
         -32022, NULL},
        /* A legacy version is not served per request: initialize opens it. */
        {"{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2025-11-25\","
         "\"io.modelcontextprotocol/clientCapabilities\":{}}}",
         -32022, NULL},
    };
    struct harness *h = h_new();
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++) {
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"server/discover\",\"params\":%s}",
                i, cases[i].params);
        json_t *r = h_take(h);
        assert_error(r, cases[i].code);
        assert_int_equal(json_integer_value(json_object_get(r, "id")), (json_int_t)i);
        json_t *data = json_object_get(json_object_get(r, "error"), "data");
        if (cases[i].key) {
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(data, "envelope"), "key")),
                cases[i].key);
        } else {
            json_t *sup = json_object_get(data, "supported");
            assert_int_equal(json_array_size(sup), 1);
            assert_string_equal(json_string_value(json_array_get(sup, 0)), "2026-07-28");
            assert_non_null(json_string_value(json_object_get(data, "requested")));
        }
        json_decref(r);
    }
    h_free(h);
}

static void test_removed_methods(void **state)
{
    static const char *const removed[] = {
        "initialize",     "ping",       "logging/setLevel", "resources/subscribe",
        "resources/list", "tasks/list", "tasks/result",     "unknown/method"};
    struct harness *h = h_new();
    for (size_t i = 0; i < OBX_ARRAY_SIZE(removed); i++) {
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"%s\",\"params\":{" ENV "}}", i,
                removed[i]);
        json_t *r = h_take(h);
        assert_error(r, -32601);
        assert_int_equal(json_integer_value(json_object_get(r, "id")), (json_int_t)i);
        json_decref(r);
    }
    /* The legacy era still answers them on the same session. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}");
    json_t *r = h_take(h);
    assert_int_equal(json_object_size(result_of(r)), 0);
    json_decref(r);
    h_free(h);
}

/* Modern clients see ttlMs, cacheScope, resultType and x-mcp-header; a legacy client never does,
 * and initialize never negotiates 2026-07-28. */
static void test_eras_side_by_side(void **state)
{
    struct harness *h = h_new();
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{"
               "\"protocolVersion\":\"2026-07-28\",\"capabilities\":{}}}");
    json_t *r = h_take(h);
    assert_string_equal(json_string_value(json_object_get(result_of(r), "protocolVersion")),
                        "2025-11-25");
    json_decref(r);

    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    r = h_take(h);
    json_t *res = result_of(r);
    assert_null(json_object_get(res, "resultType"));
    assert_null(json_object_get(res, "ttlMs"));
    assert_null(json_object_get(res, "_meta"));
    json_t *sid = json_object_get(
        json_object_get(json_object_get(h_find_tool(json_object_get(res, "tools"), "terminalExec"),
                                        "inputSchema"),
                        "properties"),
        "session_id");
    assert_non_null(sid);
    assert_null(json_object_get(sid, "x-mcp-header"));
    json_decref(r);

    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{" ENV "}}");
    r = h_take(h);
    res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "resultType")), "complete");
    assert_true(json_integer_value(json_object_get(res, "ttlMs")) > 0);
    assert_string_equal(json_string_value(json_object_get(res, "cacheScope")), "public");
    assert_non_null(meta_of(res));
    json_t *tools = json_object_get(res, "tools");
    static const char *const with_header[] = {"terminalExec", "readImage"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(with_header); i++) {
        const char *name = with_header[i];
        sid = json_object_get(
            json_object_get(json_object_get(h_find_tool(tools, name), "inputSchema"), "properties"),
            "session_id");
        assert_string_equal(json_string_value(json_object_get(sid, "x-mcp-header")), "Session-Id");
    }
    json_decref(r);

    json_t *legacy = h_call(h, "echo", "{\"message\":\"hi\"}");
    assert_null(json_object_get(result_of(legacy), "resultType"));
    assert_null(json_object_get(result_of(legacy), "_meta"));
    json_decref(legacy);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"echo\",\"arguments\":{\"message\":\"hi\"}," ENV "}}");
    r = h_response(h, NULL);
    res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "resultType")), "complete");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(res, "structuredContent"), "message")),
        "hi");
    assert_non_null(meta_of(res));
    json_decref(r);
    h_free(h);
}

static unsigned count_method(json_t *notes, const char *method)
{
    unsigned n = 0;
    size_t i;
    json_t *m;
    json_array_foreach(notes, i, m)
    {
        n += obx_streq(json_string_value(json_object_get(m, "method")), method);
    }
    return n;
}

/* Log messages go out only for a request that asked for them, at its level. */
static void test_per_request_log_level(void **state)
{
    struct obx_mcp_server_config cfg = {.fixtures = true};
    struct harness *h = h_new_cfg(cfg);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"test_logging_tool\"," ENV "}}");
    json_t *notes;
    json_t *r = h_response(h, &notes);
    result_of(r);
    assert_int_equal(count_method(notes, "notifications/message"), 0);
    json_decref(r);
    json_decref(notes);

    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"test_logging_tool\"," ENV_CAPS("{}") ",\"io.modelcontextprotocol/logLevel\":"
                                                       "\"info\"}}}");
    r = h_response(h, &notes);
    result_of(r);
    assert_int_equal(count_method(notes, "notifications/message"), 3);
    json_decref(r);
    json_decref(notes);

    /* A level above the messages' filters them out. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"test_logging_tool\"," ENV_CAPS("{}") ",\"io.modelcontextprotocol/logLevel\":"
                                                       "\"error\"}}}");
    r = h_response(h, &notes);
    assert_int_equal(count_method(notes, "notifications/message"), 0);
    json_decref(r);
    json_decref(notes);
    h_free(h);
}

static void test_missing_capability(void **state)
{
    struct obx_mcp_server_config cfg = {.fixtures = true};
    struct harness *h = h_new_cfg(cfg);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"test_missing_capability\"," ENV "}}");
    json_t *r = h_take(h);
    assert_error(r, -32021);
    json_t *req = json_object_get(json_object_get(json_object_get(r, "error"), "data"),
                                  "requiredCapabilities");
    assert_true(json_is_object(json_object_get(req, "sampling")));
    json_decref(r);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"test_missing_capability\"," ENV_CAPS("{\"sampling\":{}}") "}}}");
    r = h_response(h, NULL);
    assert_false(tool_is_error(r));
    json_decref(r);
    /* tasks/get and a tool that only runs as a task need the extension. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tasks/get\",\"params\":{\"taskId\":"
               "\"x\"," ENV "}}");
    r = h_take(h);
    assert_error(r, -32021);
    json_decref(r);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"failing_job\"," ENV "}}");
    r = h_take(h);
    assert_error(r, -32021);
    assert_true(json_is_object(json_object_get(
        json_object_get(json_object_get(json_object_get(json_object_get(r, "error"), "data"),
                                        "requiredCapabilities"),
                        "extensions"),
        "io.modelcontextprotocol/tasks")));
    json_decref(r);
    h_free(h);
}

static json_t *modern_call(struct harness *h, const char *id, const char *tool, const char *args)
{
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"method\":\"tools/call\",\"params\":{\"name\":"
            "\"%s\",\"arguments\":%s," ENV_TASKS "}}",
            id, tool, args);
    return h_response(h, NULL);
}

static json_t *task_request(struct harness *h, const char *method, const char *task_id)
{
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"method\":\"%s\",\"params\":{\"taskId\":\"%"
            "s\"," ENV_TASKS "}}",
            method, method, task_id);
    return h_response(h, NULL);
}

/* Waits until tasks/get reports a status other than working (5 s at most). */
static json_t *task_settled(struct harness *h, const char *task_id)
{
    uint64_t end = obx_now_ms() + 5000;
    for (;;) {
        json_t *r = task_request(h, "tasks/get", task_id);
        const char *st = json_string_value(json_object_get(result_of(r), "status"));
        if (!obx_streq(st, "working") || obx_now_ms() > end)
            return r;
        json_decref(r);
        usleep(20000);
    }
}

/* A call that outlasts its patience becomes a task; tasks/get and tasks/cancel drive it, and the
 * cancel reaches the executor. A quick call with the extension answers directly. */
static void test_task_lifecycle(void **state)
{
    struct obx_mcp_server_config cfg = {.task_after_ms = 50};
    struct harness *h = h_new_cfg(cfg);
    json_t *r = modern_call(h, "quick", "echo", "{\"message\":\"hi\"}");
    assert_string_equal(json_string_value(json_object_get(result_of(r), "resultType")), "complete");
    json_decref(r);

    h->fake.mode = FAKE_BLOCK;
    r = modern_call(h, "slow", "pythonExec", "{\"code\":\"import time; time.sleep(60)\"}");
    json_t *res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "resultType")), "task");
    assert_string_equal(json_string_value(json_object_get(res, "status")), "working");
    assert_null(json_object_get(res, "task"));
    assert_true(json_is_integer(json_object_get(res, "ttlMs")));
    assert_true(json_integer_value(json_object_get(res, "pollIntervalMs")) > 0);
    const char *created = json_string_value(json_object_get(res, "createdAt"));
    assert_non_null(created);
    assert_int_equal(strlen(created), strlen("2026-12-07T04:11:19.123Z"));
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(res, "taskId")));
    json_decref(r);
    fake_wait_blocked(&h->fake, 1);

    r = task_request(h, "tasks/get", id);
    assert_string_equal(json_string_value(json_object_get(result_of(r), "status")), "working");
    assert_string_equal(json_string_value(json_object_get(result_of(r), "resultType")), "complete");
    assert_null(json_object_get(result_of(r), "result"));
    json_decref(r);

    r = task_request(h, "tasks/cancel", id);
    res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "resultType")), "complete");
    assert_null(json_object_get(res, "taskId"));
    assert_null(json_object_get(res, "status"));
    json_decref(r);
    fake_wait_blocked(&h->fake, 0);
    assert_int_equal(h->fake.cancelled, 1);
    r = task_settled(h, id);
    assert_string_equal(json_string_value(json_object_get(result_of(r), "status")), "cancelled");
    json_decref(r);
    /* Cancelling an ended task is acknowledged again; an unknown id is -32602. */
    r = task_request(h, "tasks/cancel", id);
    result_of(r);
    json_decref(r);
    r = task_request(h, "tasks/get", "no-such-task");
    assert_error(r, -32602);
    json_decref(r);
    h_free(h);
}

/* While a call waits for its task, the task's output reaches the client as progress, as it
 * would for a call run directly. */
static void test_task_progress_while_waiting(void **state)
{
    struct obx_mcp_server_config cfg = {.task_after_ms = 5000};
    struct harness *h = h_new_cfg(cfg);
    h->fake.mode = FAKE_OUTPUT;
    h->fake.chunks[0] = "first line\n";
    h->fake.chunks[1] = "second line\n";
    h->fake.n_chunks = 2;
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"pythonExec\",\"arguments\":{\"code\":\"print(1)\"}," ENV_CAPS(
                   "{\"extensions\":{\"io.modelcontextprotocol/tasks\":{}}}") ",\"progressToken\":"
                                                                              "\"p\"}}}");
    json_t *notes;
    json_t *r = h_response(h, &notes);
    assert_string_equal(json_string_value(json_object_get(result_of(r), "resultType")), "complete");
    assert_int_equal(count_method(notes, "notifications/progress"), 2);
    json_t *first = json_object_get(json_array_get(notes, 0), "params");
    assert_string_equal(json_string_value(json_object_get(first, "progressToken")), "p");
    assert_string_equal(json_string_value(json_object_get(first, "message")), "first line\n");
    json_decref(r);
    json_decref(notes);
    h_free(h);

    /* The server's own tools (the fixtures) as well: progress and log messages. */
    struct obx_mcp_server_config fcfg = {.fixtures = true};
    h = h_new_cfg(fcfg);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"test_tool_with_progress\"," ENV_CAPS(
                   "{\"extensions\":{\"io.modelcontextprotocol/tasks\":{}}}") ",\"progressToken\":"
                                                                              "7}}}");
    r = h_response(h, &notes);
    assert_int_equal(count_method(notes, "notifications/progress"), 3);
    json_decref(r);
    json_decref(notes);
    h_sendf(
        h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
           "\"test_logging_tool\"," ENV_CAPS(
               "{\"extensions\":{\"io.modelcontextprotocol/tasks\":{}}}") ",\"io."
                                                                          "modelcontextprotocol/"
                                                                          "logLevel\":\"info\"}}}");
    r = h_response(h, &notes);
    assert_int_equal(count_method(notes, "notifications/message"), 3);
    json_decref(r);
    json_decref(notes);
    h_free(h);
}

/* A completed task inlines the tool's result; a tool error is completed + isError; a JSON-RPC
 * error is failed with the error; another account never finds the task. */
static void test_task_results(void **state)
{
    struct obx_mcp_server_config cfg = {.fixtures = true};
    struct harness *h = h_new_cfg(cfg);
    json_t *r = modern_call(h, "c1", "slow_compute", "{\"seconds\":0,\"label\":\"x\"}");
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(result_of(r), "taskId")));
    json_decref(r);
    r = task_settled(h, id);
    json_t *res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "status")), "completed");
    assert_non_null(strstr(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(res, "result"), "content"), 0), "text")),
        "x: computed"));
    json_decref(r);

    r = modern_call(h, "c2", "failing_job", "{}");
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(result_of(r), "taskId")));
    json_decref(r);
    r = task_settled(h, id);
    res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "status")), "completed");
    assert_true(json_is_true(json_object_get(json_object_get(res, "result"), "isError")));
    json_decref(r);

    r = modern_call(h, "c3", "protocol_error_job", "{}");
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(result_of(r), "taskId")));
    json_decref(r);
    r = task_settled(h, id);
    res = result_of(r);
    assert_string_equal(json_string_value(json_object_get(res, "status")), "failed");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "error"), "code")),
                     -32603);
    assert_null(json_object_get(res, "result"));
    json_decref(r);

    /* Another account's session: the same id is unknown there. */
    struct obx_mcp_session_config sc = {.account = "acct-2", .send = h_send_cb, .userdata = h};
    struct obx_mcp_session *other = obx_mcp_session_new_with(h->srv, &sc);
    char msg[512];
    snprintf(msg, sizeof(msg),
             "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tasks/get\",\"params\":{\"taskId\":"
             "\"%s\"," ENV_TASKS "}}",
             id);
    obx_mcp_session_handle(other, msg, strlen(msg));
    r = h_take(h);
    assert_error(r, -32602);
    json_decref(r);
    obx_mcp_session_free(other);
    h_free(h);
}

/* subscriptions/listen: the acknowledgement first, then notifications/tasks for the task, each
 * tagged with the subscription; notifications/cancelled ends it. */
static void test_task_subscription(void **state)
{
    struct obx_mcp_server_config cfg = {.fixtures = true};
    struct harness *h = h_new_cfg(cfg);
    json_t *r = modern_call(h, "c1", "slow_compute", "{\"seconds\":1}");
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(result_of(r), "taskId")));
    json_decref(r);
    h_sendf(
        h,
        "{\"jsonrpc\":\"2.0\",\"id\":\"sub\",\"method\":\"subscriptions/listen\",\"params\":{"
        "\"notifications\":{\"taskIds\":[\"%s\",\"unknown\"],\"toolsListChanged\":true}," ENV_TASKS
        "}}",
        id);
    json_t *ack = h_take(h);
    assert_string_equal(json_string_value(json_object_get(ack, "method")),
                        "notifications/subscriptions/acknowledged");
    json_t *params = json_object_get(ack, "params");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(params, "_meta"),
                                          "io.modelcontextprotocol/subscriptionId")),
        "sub");
    json_t *agreed = json_object_get(json_object_get(params, "notifications"), "taskIds");
    assert_int_equal(json_array_size(agreed), 1);
    assert_null(json_object_get(json_object_get(params, "notifications"), "toolsListChanged"));
    json_decref(ack);

    json_t *n = h_take(h); /* when the task ends, about 1 s later */
    assert_string_equal(json_string_value(json_object_get(n, "method")), "notifications/tasks");
    params = json_object_get(n, "params");
    assert_string_equal(json_string_value(json_object_get(params, "taskId")), id);
    assert_string_equal(json_string_value(json_object_get(params, "status")), "completed");
    assert_non_null(json_object_get(params, "result"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(params, "_meta"),
                                          "io.modelcontextprotocol/subscriptionId")),
        "sub");
    json_decref(n);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"
               "\"requestId\":\"sub\"}}");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    r = h_take(h);
    assert_string_equal(json_string_value(json_object_get(r, "id")), "p");
    json_decref(r);
    h_free(h);
}

/* ---- what Streamable HTTP decides ---- */

struct hdrs {
    const char *session_id;
};

static const char *param_of(void *userdata, const char *name)
{
    struct hdrs *x = userdata;
    return strcasecmp(name, "Session-Id") == 0 ? x->session_id : NULL;
}

static void classify(struct obx_mcp_server *srv, const char *body, const char *version,
                     const char *method, const char *name, const char *session,
                     struct obx_mcp_inbound *in)
{
    struct hdrs x = {.session_id = session};
    struct obx_mcp_http_meta meta = {
        .protocol_version = version,
        .method = method,
        .name = name,
        .param = param_of,
        .userdata = &x,
    };
    obx_mcp_inbound_classify(srv, body, strlen(body), &meta, in);
}

static void expect_reject(struct obx_mcp_server *srv, const char *body, const char *version,
                          const char *method, const char *name, const char *session, int status,
                          int code)
{
    struct obx_mcp_inbound in;
    classify(srv, body, version, method, name, session, &in);
    if (in.kind != OBX_MCP_INBOUND_REJECT)
        fprintf(stderr, "expected a %d rejection for %s (version %s, method %s, name %s)\n", status,
                body, version, method, name);
    assert_int_equal(in.kind, OBX_MCP_INBOUND_REJECT);
    assert_int_equal(in.status, status);
    json_t *e = json_loads(in.error, 0, NULL);
    assert_error(e, code);
    json_decref(e);
    obx_mcp_inbound_done(&in);
}

static void expect_kind(struct obx_mcp_server *srv, const char *body, const char *version,
                        const char *method, const char *name, const char *session,
                        enum obx_mcp_inbound_kind kind)
{
    struct obx_mcp_inbound in;
    classify(srv, body, version, method, name, session, &in);
    if (in.kind != kind)
        fprintf(stderr, "expected kind %d for %s, got %d (%s)\n", kind, body, in.kind,
                in.error ? in.error : "");
    assert_int_equal(in.kind, kind);
    obx_mcp_inbound_done(&in);
}

#define CALL_TERMINAL(sid)                                                          \
    "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":" \
    "\"terminalExec\",\"arguments\":{\"command\":\"ls\"" sid "}," ENV "}}"

static void test_http_classify(void **state)
{
    struct harness *h = h_new();
    struct obx_mcp_server *srv = h->srv;
    const char *discover = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\","
                           "\"params\":{" ENV "}}";
    const char *v = "2026-07-28";
    expect_kind(srv, discover, v, "server/discover", NULL, NULL, OBX_MCP_INBOUND_MODERN);
    /* Header names are matched by the transport; values are trimmed and case-sensitive. */
    expect_kind(srv, discover, " 2026-07-28\t", " server/discover ", NULL, NULL,
                OBX_MCP_INBOUND_MODERN);
    expect_reject(srv, discover, v, "Server/Discover", NULL, NULL, 400, -32020);
    expect_reject(srv, discover, v, "tools/list", NULL, NULL, 400, -32020);
    expect_reject(srv, discover, NULL, "server/discover", NULL, NULL, 400, -32020);
    expect_reject(srv, discover, v, NULL, NULL, NULL, 400, -32020);
    expect_reject(srv, discover, "2025-11-25", "server/discover", NULL, NULL, 400, -32020);
    /* A modern header without an envelope, an unknown version (header and body agree), an
     * unknown method, a missing capability. */
    expect_reject(srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}", v,
                  "tools/list", NULL, NULL, 400, -32602);
    expect_reject(srv,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
                  "\"io.modelcontextprotocol/protocolVersion\":\"v9\","
                  "\"io.modelcontextprotocol/clientCapabilities\":{}}}}",
                  "v9", "tools/list", NULL, NULL, 400, -32022);
    expect_reject(srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{" ENV "}}", v,
                  "ping", NULL, NULL, 404, -32601);
    expect_reject(srv,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tasks/get\",\"params\":{\"taskId\":"
                  "\"t\"," ENV "}}",
                  v, "tasks/get", "t", NULL, 400, -32021);
    expect_reject(srv,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                  "\"protocolVersion\":\"2025-11-25\"}}",
                  v, "initialize", NULL, NULL, 400, -32020);
    /* Mcp-Name: required for tools/call, compared after decoding =?base64?...?=. */
    const char *call = CALL_TERMINAL("");
    expect_kind(srv, call, v, "tools/call", "terminalExec", NULL, OBX_MCP_INBOUND_MODERN);
    expect_kind(srv, call, v, "tools/call", "=?base64?dGVybWluYWxFeGVj?=", NULL,
                OBX_MCP_INBOUND_MODERN);
    expect_reject(srv, call, v, "tools/call", NULL, NULL, 400, -32020);
    expect_reject(srv, call, v, "tools/call", "echo", NULL, 400, -32020);
    expect_reject(srv, call, v, "tools/call", "=?base64?dGVybWluYWxFeGVj?", NULL, 400, -32020);
    /* Mcp-Param-Session-Id mirrors the session_id argument. */
    const char *in_session = CALL_TERMINAL(",\"session_id\":\"Hello\"");
    expect_kind(srv, in_session, v, "tools/call", "terminalExec", "Hello", OBX_MCP_INBOUND_MODERN);
    expect_kind(srv, in_session, v, "tools/call", "terminalExec",
                "=?base64?SGVsbG8=?=", OBX_MCP_INBOUND_MODERN);
    expect_reject(srv, in_session, v, "tools/call", "terminalExec", NULL, 400, -32020);
    expect_reject(srv, in_session, v, "tools/call", "terminalExec", "Other", 400, -32020);
    expect_reject(srv, in_session, v, "tools/call", "terminalExec", "=?base64?SGVsbG8?=", 400,
                  -32020);
    expect_reject(srv, in_session, v, "tools/call", "terminalExec", "=?base64?SGVs!!!bG8=?=", 400,
                  -32020);
    expect_reject(srv, call, v, "tools/call", "terminalExec", "Hello", 400, -32020);
    /* Values without the complete sentinel are literal. */
    const char *literal = CALL_TERMINAL(",\"session_id\":\"=?base64?SGVsbG8=\"");
    expect_kind(srv, literal, v, "tools/call", "terminalExec",
                "=?base64?SGVsbG8=", OBX_MCP_INBOUND_MODERN);

    /* The legacy era: no checks of the modern headers. */
    const char *init = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                       "\"protocolVersion\":\"2025-11-25\"}}";
    expect_kind(srv, init, NULL, NULL, NULL, NULL, OBX_MCP_INBOUND_INITIALIZE);
    struct obx_mcp_inbound in;
    classify(srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", "2025-06-18", NULL,
             NULL, NULL, &in);
    assert_int_equal(in.kind, OBX_MCP_INBOUND_LEGACY);
    assert_int_equal(in.legacy_version, OBX_MCP_V2025_06_18);
    obx_mcp_inbound_done(&in);
    expect_kind(srv, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", NULL, NULL, NULL, NULL,
                OBX_MCP_INBOUND_LEGACY);
    expect_reject(srv,
                  "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{" ENV "}}]",
                  NULL, NULL, NULL, NULL, 400, -32600);
    expect_reject(srv, "{\"jsonrpc\":", NULL, NULL, NULL, NULL, 400, -32700);
    h_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discover),
        cmocka_unit_test(test_envelope_errors),
        cmocka_unit_test(test_removed_methods),
        cmocka_unit_test(test_eras_side_by_side),
        cmocka_unit_test(test_per_request_log_level),
        cmocka_unit_test(test_missing_capability),
        cmocka_unit_test(test_task_lifecycle),
        cmocka_unit_test(test_task_progress_while_waiting),
        cmocka_unit_test(test_task_results),
        cmocka_unit_test(test_task_subscription),
        cmocka_unit_test(test_http_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
