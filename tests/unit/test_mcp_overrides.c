/* SPDX-License-Identifier: Apache-2.0 */
/* What an operator changes in what models read: hidden tools (still callable), a tool's name,
 * title, description and parameter descriptions, a hidden parameter (still accepted); and the
 * errors that name the variable when a setting names nothing or would break clients. */
#include "test_mcp_harness.h"

#define PREFIX "CONSOLE_MCP_TOOL_"

static json_t *list(struct harness *h)
{
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}");
    json_t *r = h_take(h);
    json_t *tools = json_incref(json_object_get(result_of(r), "tools"));
    json_decref(r);
    return tools;
}

static void test_changes(void **state)
{
    static char *env[] = {
        PREFIX "ECHO_NAME=ping",
        PREFIX "ECHO_TITLE=Ping",
        PREFIX "PYTHON_EXEC_DESCRIPTION=Runs Python for the data team.",
        PREFIX "TERMINAL_EXEC_PARAM_COMMAND_DESCRIPTION=A bash one-liner.",
        PREFIX "TERMINAL_EXEC_PARAM_SESSION_ID_DESCRIPTION=",
        "OTHER_VARIABLE=1",
        NULL,
    };
    struct obx_mcp_server_config cfg = {
        .hidden_tools = " readimage ,",
        .hidden_tools_var = "CONSOLE_HIDDEN_TOOLS",
        .tool_env_prefix = PREFIX,
        .env = env,
    };
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_mcp_server_config_check(&cfg, &err), 0);
    struct harness *h = h_new_cfg(cfg);
    h_init(h, "2025-11-25");
    json_t *tools = list(h);
    assert_int_equal(json_array_size(tools), 4);
    assert_null(h_find_tool(tools, "readImage"));
    assert_null(h_find_tool(tools, "echo"));
    json_t *ping = h_find_tool(tools, "ping");
    assert_string_equal(json_string_value(json_object_get(ping, "title")), "Ping");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ping, "annotations"), "title")), "Ping");
    assert_string_equal(
        json_string_value(json_object_get(h_find_tool(tools, "pythonExec"), "description")),
        "Runs Python for the data team.");
    json_t *schema = json_object_get(h_find_tool(tools, "terminalExec"), "inputSchema");
    json_t *props = json_object_get(schema, "properties");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(props, "command"), "description")),
        "A bash one-liner.");
    assert_null(json_object_get(props, "session_id"));
    assert_true(json_is_true(json_object_get(schema, "additionalProperties")));
    json_decref(tools);

    /* The renamed tool answers to its new name only; a hidden tool and a hidden parameter are
     * still taken. */
    json_t *r = h_call(h, "ping", "{\"message\":\"hi\"}");
    assert_false(tool_is_error(r));
    json_decref(r);
    h_sendf(h, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"echo\",\"arguments\":{\"message\":\"hi\"}}}");
    r = h_take(h);
    assert_error(r, -32602);
    json_decref(r);
    r = h_call(h, "readImage", "{\"session_id\":\"s1\",\"file_path\":\"a.png\"}");
    assert_false(tool_is_error(r));
    json_decref(r);
    r = h_call(h, "terminalExec", "{\"command\":\"ls\",\"session_id\":\"kept\"}");
    assert_false(tool_is_error(r));
    assert_string_equal(json_string_value(json_object_get(h->fake.payload, "session_id")), "kept");
    json_decref(r);
    h_free(h);
}

static void expect_error(const char *hidden, char **env, const char *needle)
{
    struct obx_mcp_server_config cfg = {
        .hidden_tools = hidden,
        .hidden_tools_var = "CONSOLE_HIDDEN_TOOLS",
        .tool_env_prefix = PREFIX,
        .env = env,
    };
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_mcp_server_config_check(&cfg, &err), -EINVAL);
    if (!strstr(err.message, needle))
        fprintf(stderr, "expected \"%s\" in: %s\n", needle, err.message);
    assert_non_null(strstr(err.message, needle));
}

static void test_errors(void **state)
{
    char *none[] = {NULL};
    expect_error("echo,nope", none, "CONSOLE_HIDDEN_TOOLS: no tool named \"nope\"");
    char *unknown_tool[] = {PREFIX "PYTON_EXEC_NAME=py", NULL};
    expect_error(NULL, unknown_tool, PREFIX "PYTON_EXEC_NAME names no tool");
    char *unknown_param[] = {PREFIX "ECHO_PARAM_TEXT_DESCRIPTION=x", NULL};
    expect_error(NULL, unknown_param, "echo has no parameter TEXT (its parameters: ");
    char *bad_name[] = {PREFIX "ECHO_NAME=two words", NULL};
    expect_error(NULL, bad_name, "a tool name is 1-64 letters, digits, _ or -");
    char *clash[] = {PREFIX "ECHO_NAME=pythonExec", NULL};
    expect_error(NULL, clash, "both tools would be named \"pythonExec\"");
    char *setting[] = {PREFIX "ECHO_COLOR=red", NULL};
    expect_error(NULL, setting, "unknown setting COLOR");
    char *utf8[] = {PREFIX "ECHO_DESCRIPTION=\xff\xfe", NULL};
    expect_error(NULL, utf8, "not valid UTF-8");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changes),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
