/* SPDX-License-Identifier: Apache-2.0 */
/* Argument validation (the schema subset), the messages a model reads, the capability payloads the
 * executor receives and the shaping of executor results into tool results. */
#include "test_mcp_harness.h"

static const char schema_text[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"s\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4},"
    "\"i\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10,\"default\":5},"
    "\"lo\":{\"type\":\"integer\",\"minimum\":3},"
    "\"b\":{\"type\":\"boolean\",\"default\":false},"
    "\"free\":{\"type\":\"string\"}"
    "},\"required\":[\"s\"],\"additionalProperties\":false}";

static int validate(const char *args_json, unsigned flags, char *msg, json_t **ret)
{
    json_t *schema = json_loads(schema_text, 0, NULL);
    assert_non_null(schema);
    json_t *args = json_loads(args_json, JSON_DECODE_ANY, NULL);
    assert_non_null(args);
    int r = obx_mcp_schema_validate(schema, args, flags, msg, 256);
    json_decref(schema);
    if (ret)
        *ret = args;
    else
        json_decref(args);
    return r;
}

static void expect_fail(const char *args_json, const char *want)
{
    char msg[256];
    assert_int_equal(validate(args_json, OBX_SCHEMA_DEFAULTS | OBX_SCHEMA_NOT_BLANK, msg, NULL),
                     -EINVAL);
    assert_string_equal(msg, want);
}

static void test_validator(void **state)
{
    char msg[256];
    json_t *args = NULL;
    assert_int_equal(validate("{\"s\":\"ab\"}", OBX_SCHEMA_DEFAULTS, msg, &args), 0);
    assert_int_equal(json_integer_value(json_object_get(args, "i")), 5);
    assert_true(json_is_false(json_object_get(args, "b")));
    assert_null(json_object_get(args, "lo"));
    json_decref(args);

    /* Without the flag no defaults; an integral real becomes an integer; null means absent. */
    assert_int_equal(validate("{\"s\":\"ab\",\"i\":7.0,\"free\":null}", 0, msg, &args), 0);
    assert_null(json_object_get(args, "b"));
    assert_true(json_is_integer(json_object_get(args, "i")));
    assert_int_equal(json_integer_value(json_object_get(args, "i")), 7);
    assert_null(json_object_get(args, "free"));
    json_decref(args);

    /* Lengths count characters: four two-byte characters fit maxLength 4. */
    assert_int_equal(validate("{\"s\":\"\\u00e9\\u00e9\\u00e9\\u00e9\"}", 0, msg, NULL), 0);

    expect_fail("{}", "\"s\" is required");
    expect_fail("{\"s\":null}", "\"s\" is required");
    expect_fail("{\"s\":\"ab\",\"x\":1}", "unknown argument \"x\"");
    expect_fail("{\"s\":5}", "\"s\" must be a string of 1 to 4 characters");
    expect_fail("{\"s\":\"abcde\"}", "\"s\" must be a string of 1 to 4 characters");
    expect_fail("{\"s\":\"  \\t\"}", "\"s\" must not be blank");
    expect_fail("{\"s\":\"\"}", "\"s\" must not be blank");
    expect_fail("{\"s\":\"a\",\"i\":0}", "\"i\" must be an integer between 1 and 10");
    expect_fail("{\"s\":\"a\",\"i\":11}", "\"i\" must be an integer between 1 and 10");
    expect_fail("{\"s\":\"a\",\"i\":\"5\"}", "\"i\" must be an integer between 1 and 10");
    expect_fail("{\"s\":\"a\",\"i\":2.5}", "\"i\" must be an integer between 1 and 10");
    expect_fail("{\"s\":\"a\",\"i\":true}", "\"i\" must be an integer between 1 and 10");
    expect_fail("{\"s\":\"a\",\"lo\":2}", "\"lo\" must be an integer >= 3");
    expect_fail("{\"s\":\"a\",\"b\":\"yes\"}", "\"b\" must be a boolean");
    expect_fail("{\"s\":\"a\",\"free\":[]}", "\"free\" must be a string");
    expect_fail("[]", "arguments must be an object");
    /* Not blank applies to required strings only. */
    assert_int_equal(validate("{\"s\":\"a\",\"free\":\" \"}", OBX_SCHEMA_NOT_BLANK, msg, NULL), 0);
}

/* The tool error text for a call with these arguments. */
static void expect_tool_error(struct harness *h, const char *tool, const char *args,
                              const char *want)
{
    json_t *r = h_call(h, tool, args);
    assert_true(tool_is_error(r));
    assert_string_equal(tool_text(r), want);
    json_decref(r);
}

static void test_argument_errors(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");
    expect_tool_error(h, "pythonExec", "{\"code\":\"1\",\"timeout_ms\":0}",
                      "invalid arguments: \"timeout_ms\" must be an integer between 1 and 600000");
    expect_tool_error(h, "pythonExec", "{\"code\":\"1\",\"timeout_ms\":600001}",
                      "invalid arguments: \"timeout_ms\" must be an integer between 1 and 600000");
    expect_tool_error(h, "echo", "{\"message\":\"x\",\"timeout_ms\":60001}",
                      "invalid arguments: \"timeout_ms\" must be an integer between 1 and 60000");
    expect_tool_error(h, "pythonExec", "{}", "invalid arguments: \"code\" is required");
    expect_tool_error(h, "pythonExec", "{\"code\":\"1\",\"foo\":1}",
                      "invalid arguments: unknown argument \"foo\"");
    expect_tool_error(h, "echo", "{\"message\":\"   \"}",
                      "invalid arguments: \"message\" must not be blank");
    expect_tool_error(h, "terminalExec", "{\"command\":\"\\n\"}",
                      "invalid arguments: \"command\" must not be blank");
    expect_tool_error(h, "terminalExec", "{\"command\":\"ls\",\"create_if_missing\":1}",
                      "invalid arguments: \"create_if_missing\" must be a boolean");
    expect_tool_error(
        h, "terminalExec", "{\"command\":\"ls\",\"lease_ttl_sec\":0}",
        "invalid arguments: \"lease_ttl_sec\" must be an integer between 1 and 86400");
    char long_id[140];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    char args[256];
    snprintf(args, sizeof(args), "{\"command\":\"ls\",\"session_id\":\"%s\"}", long_id);
    expect_tool_error(h, "terminalExec", args,
                      "invalid arguments: \"session_id\" must be a string of 1 to 128 characters");
    expect_tool_error(h, "terminalExec", "{\"command\":\"ls\",\"session_id\":\"a b\"}",
                      "invalid arguments: \"session_id\" must be 1-128 visible ASCII characters");
    expect_tool_error(h, "readImage", "{\"session_id\":\"s1\"}",
                      "invalid arguments: \"file_path\" is required");
    expect_tool_error(h, "pythonExec", "{\"code\":\"1\",\"network\":\"yes\"}",
                      "invalid arguments: \"network\" must be false, true or \"allowlist\"");
    expect_tool_error(h, "terminalExec", "{\"command\":\"ls\",\"network\":1}",
                      "invalid arguments: \"network\" must be false, true or \"allowlist\"");
    /* A NUL would cut the string short behind the tool's back. */
    expect_tool_error(h, "terminalExec", "{\"command\":\"ls\\u0000; rm x\"}",
                      "invalid arguments: \"command\" must not contain NUL characters");
    expect_tool_error(h, "readImage", "{\"session_id\":\"s1\",\"file_path\":\"a.png\\u0000/x\"}",
                      "invalid arguments: \"file_path\" must not contain NUL characters");
    expect_tool_error(h, "readImage", "{\"session_id\":\" \",\"file_path\":\"a.png\"}",
                      "invalid arguments: \"session_id\" must not be blank");
    /* Missing arguments are {}. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"echo\"}}");
    json_t *r = h_take(h);
    assert_string_equal(tool_text(r), "invalid arguments: \"message\" is required");
    json_decref(r);
    assert_int_equal(h->fake.calls, 0);
    h_free(h);
}

static void test_protocol_errors(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"computerUse\",\"arguments\":{}}}");
    json_t *r = h_take(h);
    assert_error(r, -32602);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"), "message")),
                        "unknown tool \"computerUse\"");
    json_decref(r);
    static const char *const bad[] = {
        "{}",
        "{\"arguments\":{}}",
        "{\"name\":5}",
        "{\"name\":\"echo\",\"arguments\":[1]}",
        "{\"name\":\"echo\",\"arguments\":\"x\"}",
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":%s}",
                bad[i]);
        r = h_take(h);
        assert_error(r, -32602);
        json_decref(r);
    }
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\"}");
    r = h_take(h);
    assert_error(r, -32602);
    json_decref(r);
    h_free(h);
}

static json_t *payload_of_call(struct harness *h, const char *tool, const char *args)
{
    json_t *r = h_call(h, tool, args);
    assert_false(tool_is_error(r));
    json_decref(r);
    return h->fake.payload;
}

static void test_payloads(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");

    uint64_t before = obx_now_ms();
    json_t *p = payload_of_call(h, "echo", "{\"message\":\" hi \"}");
    assert_string_equal(h->fake.capability, "echo");
    assert_string_equal(h->fake.account, "acct-1");
    assert_int_equal(json_object_size(p), 1);
    assert_string_equal(json_string_value(json_object_get(p, "message")), " hi ");
    assert_true(h->fake.deadline >= before + 5000 + OBX_MCP_DEADLINE_GRACE_MS);
    assert_true(h->fake.deadline <= h->fake.called_at + 5000 + OBX_MCP_DEADLINE_GRACE_MS);

    p = payload_of_call(h, "pythonExec", "{\"code\":\"print(1)\\n\"}");
    assert_string_equal(h->fake.capability, "pythonexec");
    assert_int_equal(json_object_size(p), 2);
    assert_string_equal(json_string_value(json_object_get(p, "code")), "print(1)\n");
    assert_int_equal(json_integer_value(json_object_get(p, "timeout_ms")), 60000);

    p = payload_of_call(h, "pythonExec", "{\"code\":\"x\",\"timeout_ms\":1500}");
    assert_int_equal(json_integer_value(json_object_get(p, "timeout_ms")), 1500);
    assert_true(h->fake.deadline <= h->fake.called_at + 1500 + OBX_MCP_DEADLINE_GRACE_MS);
    assert_true(h->fake.deadline + 1000 >= h->fake.called_at + 1500 + OBX_MCP_DEADLINE_GRACE_MS);

    /* No session_id: a fresh UUIDv4 with create_if_missing. */
    p = payload_of_call(h, "terminalExec", "{\"command\":\"pwd\"}");
    assert_string_equal(h->fake.capability, "terminalexec");
    const char *sid = json_string_value(json_object_get(p, "session_id"));
    assert_non_null(sid);
    assert_int_equal(strlen(sid), 36);
    assert_int_equal(sid[14], '4');
    assert_true(json_is_true(json_object_get(p, "create_if_missing")));
    assert_int_equal(json_integer_value(json_object_get(p, "timeout_ms")), 60000);
    assert_null(json_object_get(p, "lease_ttl_sec"));
    char first[40];
    snprintf(first, sizeof(first), "%s", sid);
    p = payload_of_call(h, "terminalExec", "{\"command\":\"pwd\"}");
    assert_string_not_equal(json_string_value(json_object_get(p, "session_id")), first);

    p = payload_of_call(h, "terminalExec",
                        "{\"command\":\"ls\",\"session_id\":\"abc\",\"lease_ttl_sec\":120,"
                        "\"timeout_ms\":9000}");
    assert_string_equal(json_string_value(json_object_get(p, "session_id")), "abc");
    assert_null(json_object_get(p, "create_if_missing"));
    assert_int_equal(json_integer_value(json_object_get(p, "lease_ttl_sec")), 120);
    assert_int_equal(json_integer_value(json_object_get(p, "timeout_ms")), 9000);
    p = payload_of_call(h, "terminalExec",
                        "{\"command\":\"ls\",\"session_id\":\"abc\",\"create_if_missing\":true}");
    assert_true(json_is_true(json_object_get(p, "create_if_missing")));

    /* "network": false is the default and does not travel; true and "allowlist" do. */
    p = payload_of_call(h, "pythonExec", "{\"code\":\"x\",\"network\":false}");
    assert_null(json_object_get(p, "network"));
    p = payload_of_call(h, "pythonExec", "{\"code\":\"x\",\"network\":\"allowlist\"}");
    assert_string_equal(json_string_value(json_object_get(p, "network")), "allowlist");
    p = payload_of_call(h, "terminalExec", "{\"command\":\"x\",\"network\":true}");
    assert_true(json_is_true(json_object_get(p, "network")));

    p = payload_of_call(h, "readImage", "{\"session_id\":\"abc\",\"file_path\":\"plot.png\"}");
    assert_string_equal(h->fake.capability, "terminalresource");
    assert_string_equal(json_string_value(json_object_get(p, "session_id")), "abc");
    assert_string_equal(json_string_value(json_object_get(p, "file_path")), "plot.png");
    assert_string_equal(json_string_value(json_object_get(p, "action")), "read");
    assert_int_equal(json_integer_value(json_object_get(p, "timeout_ms")), 60000);
    h_free(h);
}

static void test_result_shaping(void **state)
{
    struct harness *h = h_new();
    h_init(h, "2025-11-25");

    /* Typed tools: compact JSON text plus structuredContent. */
    json_t *r = h_call(h, "terminalExec", "{\"command\":\"ls\"}");
    json_t *sc = json_object_get(result_of(r), "structuredContent");
    assert_int_equal(json_object_size(sc), 8);
    json_t *parsed = json_loads(tool_text(r), 0, NULL);
    assert_true(json_equal(parsed, sc));
    assert_null(strchr(tool_text(r), ' '));
    json_decref(parsed);
    assert_null(json_object_get(result_of(r), "isError"));
    json_decref(r);

    /* A result that does not fit the output schema is an error, not a broken response. */
    h->fake.result = json_pack("{ss}", "output", "x");
    r = h_call(h, "pythonExec", "{\"code\":\"1\"}");
    assert_true(tool_is_error(r));
    assert_non_null(strstr(tool_text(r), "internal_error: invalid pythonexec result payload"));
    json_decref(r);
    json_decref(h->fake.result);
    h->fake.result = NULL;

    /* Executor errors: "<code>: <message>". */
    h->fake.mode = FAKE_ERROR;
    h->fake.err_code = "session_not_found";
    h->fake.err_message = "no session abc";
    r = h_call(h, "terminalExec", "{\"command\":\"ls\",\"session_id\":\"abc\"}");
    assert_true(tool_is_error(r));
    assert_string_equal(tool_text(r), "session_not_found: no session abc");
    assert_null(json_object_get(result_of(r), "structuredContent"));
    json_decref(r);
    h->fake.err_code = "deadline_exceeded";
    h->fake.err_message = "the command ran past 1000 ms";
    r = h_call(h, "pythonExec", "{\"code\":\"1\",\"timeout_ms\":1000}");
    assert_string_equal(tool_text(r), "deadline_exceeded: the command ran past 1000 ms");
    json_decref(r);
    h->fake.mode = FAKE_OK;

    /* readImage: image content for image types, case-insensitively; a note otherwise. */
    r = h_call(h, "readImage", "{\"session_id\":\"abc\",\"file_path\":\"a.png\"}");
    json_t *item = json_array_get(json_object_get(result_of(r), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "type")), "image");
    assert_string_equal(json_string_value(json_object_get(item, "mimeType")), "image/png");
    assert_string_equal(json_string_value(json_object_get(item, "data")), "iVBORw==");
    assert_null(json_object_get(result_of(r), "structuredContent"));
    json_decref(r);

    h->fake.result = json_pack("{sssssssiss}", "session_id", "abc", "file_path", "/workspace/a",
                               "mime_type", " IMAGE/JPEG ", "size_bytes", 3, "blob", "AAAA");
    r = h_call(h, "readImage", "{\"session_id\":\"abc\",\"file_path\":\"a\"}");
    item = json_array_get(json_object_get(result_of(r), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "type")), "image");
    assert_string_equal(json_string_value(json_object_get(item, "mimeType")), "IMAGE/JPEG");
    json_decref(r);
    json_decref(h->fake.result);

    h->fake.result = json_pack("{sssssssi}", "session_id", "abc", "file_path", "/workspace/a.txt",
                               "mime_type", "text/plain", "size_bytes", 3);
    r = h_call(h, "readImage", "{\"session_id\":\"abc\",\"file_path\":\"a.txt\"}");
    assert_false(tool_is_error(r));
    assert_string_equal(tool_text(r), "unsupported mime type: text/plain; expected image/*");
    json_decref(r);
    json_decref(h->fake.result);

    h->fake.result = json_pack("{ss}", "mime_type", "");
    r = h_call(h, "readImage", "{\"session_id\":\"abc\",\"file_path\":\"a\"}");
    assert_string_equal(tool_text(r),
                        "unsupported mime type: application/octet-stream; expected image/*");
    json_decref(r);
    json_decref(h->fake.result);
    h->fake.result = NULL;
    h_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validator),       cmocka_unit_test(test_argument_errors),
        cmocka_unit_test(test_protocol_errors), cmocka_unit_test(test_payloads),
        cmocka_unit_test(test_result_shaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
