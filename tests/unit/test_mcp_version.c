/* SPDX-License-Identifier: Apache-2.0 */
/* Version negotiation and what each negotiated version changes: initialize result, tools/list
 * fields, structuredContent, progress messages; plus pagination, fixtures and logging levels. */
#include "test_mcp_harness.h"

static json_t *initialize(struct harness *h, const char *version)
{
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{"
            "\"protocolVersion\":\"%s\",\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}",
            version);
    return h_take(h);
}

static void test_negotiation(void **state)
{
    static const struct {
        const char *asked, *answered;
    } cases[] = {
        {"2024-11-05", "2024-11-05"}, {"2025-03-26", "2025-03-26"}, {"2025-06-18", "2025-06-18"},
        {"2025-11-25", "2025-11-25"}, {"2099-01-01", "2025-11-25"}, {"2024-10-07", "2025-11-25"},
        {"2026-07-28", "2025-11-25"}, {"", "2025-11-25"},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++) {
        struct harness *h = h_new();
        json_t *r = initialize(h, cases[i].asked);
        json_t *res = result_of(r);
        assert_string_equal(json_string_value(json_object_get(res, "protocolVersion")),
                            cases[i].answered);
        json_t *caps = json_object_get(res, "capabilities");
        assert_true(json_is_false(json_object_get(json_object_get(caps, "tools"), "listChanged")));
        assert_true(json_is_object(json_object_get(caps, "logging")));
        json_t *info = json_object_get(res, "serverInfo");
        assert_string_equal(json_string_value(json_object_get(info, "name")), "onlyboxes");
        assert_string_equal(json_string_value(json_object_get(info, "version")), "9.9.9");
        enum obx_mcp_version v;
        assert_int_equal(obx_mcp_version_parse(cases[i].answered, &v), 0);
        if (v >= OBX_MCP_V2025_06_18)
            assert_string_equal(json_string_value(json_object_get(info, "title")), "Onlyboxes");
        else
            assert_null(json_object_get(info, "title"));
        const char *instr = json_string_value(json_object_get(res, "instructions"));
        assert_non_null(instr);
        assert_non_null(strstr(instr, "terminalExec"));
        json_decref(r);
        h_free(h);
    }
}

static json_t *list_tools(struct harness *h, const char *cursor)
{
    if (cursor)
        h_sendf(h,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"cursor\":"
                "\"%s\"}}",
                cursor);
    else
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    return h_take(h);
}

static void check_tools(json_t *tools, enum obx_mcp_version v)
{
    static const char *const names[] = {"echo", "exportFile", "pythonExec", "readImage",
                                        "terminalExec"};
    static const char *const titles[] = {"Echo Message", "Export File", "Python Execute",
                                         "Read Image", "Terminal Execute"};
    assert_int_equal(json_array_size(tools), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *t = json_array_get(tools, i);
        assert_string_equal(json_string_value(json_object_get(t, "name")), names[i]);
        assert_true(strlen(json_string_value(json_object_get(t, "description"))) > 40);
        json_t *in = json_object_get(t, "inputSchema");
        assert_string_equal(json_string_value(json_object_get(in, "type")), "object");
        assert_true(json_is_false(json_object_get(in, "additionalProperties")));
        assert_true(json_is_array(json_object_get(in, "required")));
        assert_null(json_object_get(in, "anyOf"));
        if (v >= OBX_MCP_V2025_06_18)
            assert_string_equal(json_string_value(json_object_get(t, "title")), titles[i]);
        else
            assert_null(json_object_get(t, "title"));
        json_t *ann = json_object_get(t, "annotations");
        if (v >= OBX_MCP_V2025_03_26)
            assert_string_equal(json_string_value(json_object_get(ann, "title")), titles[i]);
        else
            assert_null(ann);
        json_t *out = json_object_get(t, "outputSchema");
        if (v >= OBX_MCP_V2025_06_18 && strcmp(names[i], "readImage") != 0)
            assert_string_equal(json_string_value(json_object_get(out, "type")), "object");
        else
            assert_null(out);
    }
    if (v >= OBX_MCP_V2025_03_26) {
        json_t *ann = json_object_get(h_find_tool(tools, "echo"), "annotations");
        assert_true(json_is_true(json_object_get(ann, "readOnlyHint")));
        assert_true(json_is_true(json_object_get(ann, "idempotentHint")));
        assert_true(json_is_false(json_object_get(ann, "destructiveHint")));
        assert_true(json_is_false(json_object_get(ann, "openWorldHint")));
        ann = json_object_get(h_find_tool(tools, "readImage"), "annotations");
        assert_true(json_is_false(json_object_get(ann, "destructiveHint")));
        assert_true(json_is_true(json_object_get(ann, "openWorldHint")));
        assert_null(json_object_get(ann, "readOnlyHint"));
    }
    json_t *term = json_object_get(h_find_tool(tools, "terminalExec"), "inputSchema");
    json_t *props = json_object_get(term, "properties");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(props, "session_id"), "maxLength")),
        128);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(props, "timeout_ms"), "maximum")),
        600000);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(props, "timeout_ms"), "default")),
        60000);
    assert_true(
        json_is_false(json_object_get(json_object_get(props, "create_if_missing"), "default")));
    json_t *echo = json_object_get(h_find_tool(tools, "echo"), "inputSchema");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(echo, "properties"), "timeout_ms"), "maximum")),
        60000);
    if (v >= OBX_MCP_V2025_06_18) {
        json_t *out = json_object_get(h_find_tool(tools, "terminalExec"), "outputSchema");
        assert_int_equal(json_array_size(json_object_get(out, "required")), 8);
        out = json_object_get(h_find_tool(tools, "pythonExec"), "outputSchema");
        assert_int_equal(json_array_size(json_object_get(out, "required")), 3);
        assert_non_null(json_object_get(json_object_get(out, "properties"), "output_truncated"));
    }
}

static void test_tools_list_per_version(void **state)
{
    static const char *const versions[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(versions); i++) {
        struct harness *h = h_new();
        h_init(h, versions[i]);
        json_t *r = list_tools(h, NULL);
        assert_null(json_object_get(result_of(r), "nextCursor"));
        check_tools(json_object_get(result_of(r), "tools"), (enum obx_mcp_version)i);
        json_decref(r);
        h_free(h);
    }
    /* Before initialize: 2025-03-26. */
    struct harness *h = h_new();
    json_t *r = list_tools(h, NULL);
    check_tools(json_object_get(result_of(r), "tools"), OBX_MCP_V2025_03_26);
    json_decref(r);
    h_free(h);
}

static void test_pagination(void **state)
{
    struct obx_mcp_server_config cfg = {.page_size = 3, .fixtures = true};
    struct harness *h = h_new_cfg(cfg);
    h_init(h, "2025-11-25");
    json_t *all = json_array();
    char *cursor = NULL;
    int pages = 0;
    do {
        json_t *r = list_tools(h, cursor);
        free(cursor);
        cursor = NULL;
        json_t *res = result_of(r);
        assert_true(json_array_size(json_object_get(res, "tools")) <= 3);
        json_array_extend(all, json_object_get(res, "tools"));
        const char *next = json_string_value(json_object_get(res, "nextCursor"));
        if (next)
            cursor = strdup(next);
        json_decref(r);
        pages++;
    } while (cursor && pages < 10);
    assert_int_equal(json_array_size(all), 5 + obx_mcp_fixture_tools_count);
    assert_int_equal(pages, (5 + obx_mcp_fixture_tools_count + 2) / 3);
    for (size_t i = 1; i < json_array_size(all); i++)
        assert_true(strcmp(json_string_value(json_object_get(json_array_get(all, i - 1), "name")),
                           json_string_value(json_object_get(json_array_get(all, i), "name"))) < 0);
    assert_non_null(h_find_tool(all, "test_simple_text"));
    assert_non_null(h_find_tool(all, "test_tool_with_progress"));
    json_decref(all);

    static const char *const bad[] = {"nope", "dDA=", "dDUw", "", "dDk5OQ=="};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        json_t *r = list_tools(h, bad[i]);
        assert_error(r, -32602);
        json_decref(r);
    }
    h_sendf(h,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"cursor\":5}}");
    json_t *r = h_take(h);
    assert_error(r, -32602);
    json_decref(r);
    h_free(h);
}

static void test_structured_content_per_version(void **state)
{
    static const char *const versions[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(versions); i++) {
        struct harness *h = h_new();
        h_init(h, versions[i]);
        json_t *r = h_call(h, "echo", "{\"message\":\"hello\"}");
        assert_false(tool_is_error(r));
        assert_string_equal(tool_text(r), "{\"message\":\"hello\"}");
        json_t *sc = json_object_get(result_of(r), "structuredContent");
        if (i >= OBX_MCP_V2025_06_18)
            assert_string_equal(json_string_value(json_object_get(sc, "message")), "hello");
        else
            assert_null(sc);
        json_decref(r);
        h_free(h);
    }
}

static void test_progress_message_per_version(void **state)
{
    static const char *const versions[] = {"2024-11-05", "2025-03-26", "2025-11-25"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(versions); i++) {
        struct harness *h = h_new();
        h->fake.mode = FAKE_OUTPUT;
        h->fake.chunks[0] = "hello\n";
        h->fake.n_chunks = 1;
        h_init(h, versions[i]);
        h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
                   "\"name\":\"pythonExec\",\"arguments\":{\"code\":\"print(1)\"},"
                   "\"_meta\":{\"progressToken\":\"tok\"}}}");
        json_t *notes = NULL;
        json_t *r = h_response(h, &notes);
        assert_int_equal(json_array_size(notes), 1);
        json_t *p = json_object_get(json_array_get(notes, 0), "params");
        assert_string_equal(json_string_value(json_object_get(p, "progressToken")), "tok");
        assert_int_equal(json_integer_value(json_object_get(p, "progress")), 6);
        if (i == 0)
            assert_null(json_object_get(p, "message"));
        else
            assert_string_equal(json_string_value(json_object_get(p, "message")), "hello\n");
        json_decref(notes);
        json_decref(r);
        h_free(h);
    }
}

static void test_fixtures(void **state)
{
    struct harness *plain = h_new();
    json_t *r = h_call(plain, "test_simple_text", "{}");
    assert_error(r, -32602);
    json_decref(r);
    h_free(plain);

    struct obx_mcp_server_config cfg = {.fixtures = true};
    struct harness *h = h_new_cfg(cfg);
    h_init(h, "2025-11-25");

    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"test_simple_text\"}}");
    r = h_take(h);
    assert_string_equal(tool_text(r), "This is a simple text response for testing.");
    json_decref(r);

    r = h_call(h, "test_image_content", "{}");
    json_t *item = json_array_get(json_object_get(result_of(r), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "type")), "image");
    assert_string_equal(json_string_value(json_object_get(item, "mimeType")), "image/png");
    size_t n = 0;
    unsigned char *png = obx_base64_decode(json_string_value(json_object_get(item, "data")), &n);
    assert_non_null(png);
    assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
    free(png);
    json_decref(r);

    r = h_call(h, "test_audio_content", "{}");
    item = json_array_get(json_object_get(result_of(r), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "type")), "audio");
    assert_string_equal(json_string_value(json_object_get(item, "mimeType")), "audio/wav");
    unsigned char *wav = obx_base64_decode(json_string_value(json_object_get(item, "data")), &n);
    assert_memory_equal(wav, "RIFF", 4);
    free(wav);
    json_decref(r);

    r = h_call(h, "test_embedded_resource", "{}");
    item = json_array_get(json_object_get(result_of(r), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "type")), "resource");
    json_t *res = json_object_get(item, "resource");
    assert_string_equal(json_string_value(json_object_get(res, "uri")), "test://embedded-resource");
    assert_string_equal(json_string_value(json_object_get(res, "text")),
                        "This is an embedded resource content.");
    json_decref(r);

    r = h_call(h, "test_multiple_content_types", "{}");
    json_t *content = json_object_get(result_of(r), "content");
    assert_int_equal(json_array_size(content), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(content, 0), "type")),
                        "text");
    assert_string_equal(json_string_value(json_object_get(json_array_get(content, 1), "type")),
                        "image");
    assert_string_equal(json_string_value(json_object_get(json_array_get(content, 2), "type")),
                        "resource");
    json_decref(r);

    r = h_call(h, "test_error_handling", "{}");
    assert_true(tool_is_error(r));
    assert_string_equal(tool_text(r), "This tool intentionally returns an error for testing");
    json_decref(r);

    /* Logging: nothing before logging/setLevel, three messages after. */
    json_t *notes = NULL;
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"test_tool_with_logging\",\"arguments\":{}}}");
    r = h_response(h, &notes);
    assert_int_equal(json_array_size(notes), 0);
    json_decref(notes);
    json_decref(r);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"logging/setLevel\","
               "\"params\":{\"level\":\"debug\"}}");
    json_decref(h_take(h));
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"test_tool_with_logging\",\"arguments\":{}}}");
    r = h_response(h, &notes);
    assert_int_equal(json_array_size(notes), 3);
    size_t i;
    json_t *m;
    json_array_foreach(notes, i, m)
    {
        assert_string_equal(json_string_value(json_object_get(m, "method")),
                            "notifications/message");
        json_t *p = json_object_get(m, "params");
        assert_string_equal(json_string_value(json_object_get(p, "level")), "info");
        assert_string_equal(json_string_value(json_object_get(p, "logger")), "onlyboxes");
        assert_non_null(json_object_get(p, "data"));
    }
    json_decref(notes);
    json_decref(r);
    /* Above the level: filtered. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"logging/setLevel\","
               "\"params\":{\"level\":\"warning\"}}");
    json_decref(h_take(h));
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"test_tool_with_logging\",\"arguments\":{}}}");
    r = h_response(h, &notes);
    assert_int_equal(json_array_size(notes), 0);
    json_decref(notes);
    json_decref(r);

    /* Progress: 0, 50, 100 of 100 for the request's token. */
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"test_tool_with_progress\",\"arguments\":{},"
               "\"_meta\":{\"progressToken\":\"progress-test-1\"}}}");
    r = h_response(h, &notes);
    assert_int_equal(json_array_size(notes), 3);
    json_array_foreach(notes, i, m)
    {
        json_t *p = json_object_get(m, "params");
        assert_string_equal(json_string_value(json_object_get(p, "progressToken")),
                            "progress-test-1");
        assert_true(json_number_value(json_object_get(p, "progress")) == (double)i * 50);
        assert_true(json_number_value(json_object_get(p, "total")) == 100);
    }
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
    json_decref(notes);
    json_decref(r);
    h_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_tools_list_per_version),
        cmocka_unit_test(test_pagination),
        cmocka_unit_test(test_structured_content_per_version),
        cmocka_unit_test(test_progress_message_per_version),
        cmocka_unit_test(test_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
