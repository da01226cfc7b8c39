/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fixture tools for the MCP conformance suite (cfg.fixtures, test harnesses only). They answer
 * from inside the server without an executor, each on its call's own thread like any tool call,
 * so the suite exercises our real content, logging, progress and error paths.
 */
#include "mcp-internal.h"

/* A 1x1 orange PNG and a 1 ms silent 8 kHz mono WAV, made for these fixtures. */
static const char png_1x1[] =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP438DwHwAGg"
    "AJ/zxIJ8QAAAABJRU5ErkJggg==";
static const char wav_silence[] = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgI"
                                  "CAgICAgA==";

static const char no_args[] = "{'type':'object','properties':{}}";

static json_t *image_item(void)
{
    return json_pack("{ssssss}", "type", "image", "data", png_1x1, "mimeType", "image/png");
}

static json_t *resource_item(void)
{
    return json_pack("{sss{ssssss}}", "type", "resource", "resource", "uri",
                     "test://embedded-resource", "mimeType", "text/plain", "text",
                     "This is an embedded resource content.");
}

static json_t *content(json_t *items)
{
    return json_pack("{so}", "content", items);
}

static json_t *run_simple_text(struct obx_mcp_call *c)
{
    return obx_mcp_result_text("This is a simple text response for testing.");
}

static json_t *run_image(struct obx_mcp_call *c)
{
    return content(json_pack("[o]", image_item()));
}

static json_t *run_audio(struct obx_mcp_call *c)
{
    return content(
        json_pack("[{ssssss}]", "type", "audio", "data", wav_silence, "mimeType", "audio/wav"));
}

static json_t *run_embedded_resource(struct obx_mcp_call *c)
{
    return content(json_pack("[o]", resource_item()));
}

static json_t *run_multiple(struct obx_mcp_call *c)
{
    return content(json_pack("[{ssss}oo]", "type", "text", "text",
                             "Multiple content types test:", image_item(), resource_item()));
}

static json_t *run_logging(struct obx_mcp_call *c)
{
    static const char *const steps[] = {"Tool execution started", "Tool processing data",
                                        "Tool execution completed"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(steps); i++) {
        if (i > 0 && !obx_mcp_call_sleep(c, 50))
            break;
        obx_mcp_call_log(c, OBX_MCP_LOG_INFO, steps[i]);
    }
    return obx_mcp_result_text("Tool with logging executed successfully");
}

static json_t *run_progress(struct obx_mcp_call *c)
{
    static const double steps[] = {0, 50, 100};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(steps); i++) {
        if (i > 0 && !obx_mcp_call_sleep(c, 50))
            break;
        char msg[32];
        snprintf(msg, sizeof(msg), "Completed step %zu of %zu", i + 1, OBX_ARRAY_SIZE(steps));
        obx_mcp_call_progress(c, steps[i], 100, msg);
    }
    return obx_mcp_result_text("Progress tool executed successfully");
}

static json_t *run_error(struct obx_mcp_call *c)
{
    return obx_mcp_result_error("This tool intentionally returns an error for testing");
}

/* The modern era's fixtures: a tool that needs a client capability (the server must refuse it
 * with -32021 when the request does not declare it), and one whose stream must carry no request
 * of the server's own (this server never sends one). */
static json_t *run_needs_sampling(struct obx_mcp_call *c)
{
    return obx_mcp_result_text("The request declared the sampling capability.");
}

static json_t *run_no_input(struct obx_mcp_call *c)
{
    return obx_mcp_result_text("This server never asks the client for input: no request of its "
                               "own goes out on any stream.");
}

/* The tasks extension's fixtures. */
static const char greet_args[] =
    "{'type':'object','properties':{'name':{'type':'string'}},'required':['name']}";
static const char slow_args[] =
    "{'type':'object','properties':{'seconds':{'type':'integer','minimum':0,'maximum':600,"
    "'default':1},'label':{'type':'string'}}}";

static json_t *run_greet(struct obx_mcp_call *c)
{
    const char *name = obx_json_get_str(obx_mcp_call_args(c), "name", "");
    _cleanup_free_ char *text = obx_xasprintf("Hello, %s!", name);
    return obx_mcp_result_text(text);
}

static json_t *run_slow(struct obx_mcp_call *c)
{
    const json_t *args = obx_mcp_call_args(c);
    int64_t secs = obx_json_get_int(args, "seconds", 1);
    const char *label = obx_json_get_str(args, "label", "slow_compute");
    if (!obx_mcp_call_sleep(c, (unsigned)secs * 1000))
        return obx_mcp_result_error("%s: cancelled", label);
    _cleanup_free_ char *text = obx_xasprintf("%s: computed after %lld s", label, (long long)secs);
    return obx_mcp_result_text(text);
}

static json_t *run_failing_job(struct obx_mcp_call *c)
{
    return obx_mcp_result_error("failing_job: this job always fails");
}

static json_t *run_protocol_error_job(struct obx_mcp_call *c)
{
    obx_mcp_call_fail(c, OBX_RPC_INTERNAL_ERROR,
                      "protocol_error_job: an internal error on purpose");
    return NULL;
}

#define FIXTURE(n, d, fn)                                                      \
    {                                                                          \
        .name = (n), .description = (d), .input_schema = no_args, .run = (fn), \
    }

const struct obx_mcp_tool obx_mcp_fixture_tools[] = {
    FIXTURE("test_simple_text", "Conformance fixture: returns a fixed text.", run_simple_text),
    FIXTURE("test_image_content", "Conformance fixture: returns a small PNG image.", run_image),
    FIXTURE("test_audio_content", "Conformance fixture: returns a short WAV clip.", run_audio),
    FIXTURE("test_embedded_resource", "Conformance fixture: returns an embedded text resource.",
            run_embedded_resource),
    FIXTURE("test_multiple_content_types",
            "Conformance fixture: returns text, an image and a resource.", run_multiple),
    FIXTURE("test_tool_with_logging",
            "Conformance fixture: sends three log messages while it runs.", run_logging),
    FIXTURE("test_tool_with_progress",
            "Conformance fixture: sends three progress notifications while it runs.", run_progress),
    FIXTURE("test_error_handling", "Conformance fixture: always returns a tool error.", run_error),
    FIXTURE("test_logging_tool", "Conformance fixture: sends three log messages while it runs.",
            run_logging),
    FIXTURE("test_streaming_elicitation",
            "Conformance fixture: answers without asking the client for anything.", run_no_input),
    {
        .name = "test_missing_capability",
        .description = "Conformance fixture: needs the client's sampling capability.",
        .input_schema = no_args,
        .run = run_needs_sampling,
        .requires = "{'sampling':{}}",
    },
    {
        .name = "greet",
        .description = "Conformance fixture: greets by name, never as a task.",
        .input_schema = greet_args,
        .run = run_greet,
        .task_support = OBX_MCP_TASK_FORBIDDEN,
    },
    {
        .name = "slow_compute",
        .description = "Conformance fixture: takes the given seconds; a task at once.",
        .input_schema = slow_args,
        .run = run_slow,
        .task_after_ms = OBX_MCP_TASK_AT_ONCE,
    },
    {
        .name = "failing_job",
        .description = "Conformance fixture: a task that ends with a tool error.",
        .input_schema = no_args,
        .run = run_failing_job,
        .task_support = OBX_MCP_TASK_REQUIRED,
        .task_after_ms = OBX_MCP_TASK_AT_ONCE,
    },
    {
        .name = "protocol_error_job",
        .description = "Conformance fixture: a task that ends with a JSON-RPC error.",
        .input_schema = no_args,
        .run = run_protocol_error_job,
        .task_after_ms = OBX_MCP_TASK_AT_ONCE,
    },
};

const size_t obx_mcp_fixture_tools_count = OBX_ARRAY_SIZE(obx_mcp_fixture_tools);
