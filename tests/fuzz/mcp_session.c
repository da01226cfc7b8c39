/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the MCP server core (JSON-RPC parsing, classification, batches, the lifecycle,
 * every method and tools/call up to the response) as a transport drives it. The input is a list
 * of messages, one per line, handed to one fresh session in order; even lines go through the
 * session's own send() (stdio), odd lines through a sink of their own (Streamable HTTP). Tool
 * calls reach an executor that answers at once without running anything: it sends the payload's
 * text back as output (progress notifications), says one log line, and returns a plausible result,
 * so validation, progress and result shaping run for real.
 *
 * Checked for every input: each message the server sends is one line of JSON (an object, or an
 * array of objects) with "jsonrpc":"2.0"; every sink is closed exactly once, and nothing is sent
 * to it after that.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "mcp/mcp-internal.h"

#define MAX_LINES 64

static struct obx_mcp_server *srv;
static struct obx_executor executor;

static void check_message(const char *json)
{
    FUZZ_CHECK(!strchr(json, '\n'), "a message spans lines: %s", json);
    json_error_t je;
    json_t *j = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    FUZZ_CHECK(j, "the server sent invalid JSON (%s): %s", je.text, json);
    FUZZ_CHECK(json_is_object(j) || (json_is_array(j) && json_array_size(j) > 0),
               "not a message or a batch: %s", json);
    size_t i, n = json_is_array(j) ? json_array_size(j) : 1;
    for (i = 0; i < n; i++) {
        json_t *m = json_is_array(j) ? json_array_get(j, i) : j;
        FUZZ_CHECK(json_is_object(m), "a batch entry is not an object: %s", json);
        FUZZ_CHECK(obx_streq(json_string_value(json_object_get(m, "jsonrpc")), "2.0"),
                   "no \"jsonrpc\":\"2.0\": %s", json);
        bool is_response = json_object_get(m, "result") || json_object_get(m, "error");
        FUZZ_CHECK(is_response != (json_object_get(m, "method") != NULL),
                   "neither a response nor a notification: %s", json);
    }
    json_decref(j);
}

static void session_send(void *userdata, const char *json)
{
    check_message(json);
}

struct fuzz_sink {
    int sends_after_close; /* atomic */
    int closes;            /* atomic */
};

static void sink_send(void *userdata, const char *json, bool response)
{
    struct fuzz_sink *k = userdata;
    check_message(json);
    if (__atomic_load_n(&k->closes, __ATOMIC_ACQUIRE))
        __atomic_add_fetch(&k->sends_after_close, 1, __ATOMIC_RELEASE);
}

static void sink_close(void *userdata)
{
    struct fuzz_sink *k = userdata;
    __atomic_add_fetch(&k->closes, 1, __ATOMIC_RELEASE);
}

/* Answers at once, the way a worker would for the capability. */
static int instant_exec(struct obx_executor *self, const char *capability, json_t *payload,
                        struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    const char *text = obx_json_get_str(payload, "code", obx_json_get_str(payload, "command", ""));
    if (call->on_output && *text) {
        size_t len = strlen(text), half = len / 2;
        /* Two chunks, so a UTF-8 sequence may be split between them. */
        call->on_output(call->output_userdata, OBX_STREAM_STDOUT, text, half);
        call->on_output(call->output_userdata, OBX_STREAM_STDERR, text + half, len - half);
    }
    if (call->on_log)
        call->on_log(call->log_userdata, 1, text);
    if (obx_streq(capability, "echo")) {
        *ret_result = json_deep_copy(payload);
    } else if (obx_streq(capability, "pythonexec")) {
        *ret_result = json_pack("{sssssi}", "output", text, "stderr", "", "exit_code", 0);
    } else if (obx_streq(capability, "terminalexec")) {
        const char *sid = obx_json_get_str(payload, "session_id", "s-1");
        *ret_result =
            json_pack("{sssbsssssisbsbsI}", "session_id", sid, "created", 1, "stdout", text,
                      "stderr", "", "exit_code", 0, "stdout_truncated", 0, "stderr_truncated", 0,
                      "lease_expires_unix_ms", (json_int_t)1700000000000);
    } else if (obx_streq(capability, "terminalresource")) {
        const char *path = obx_json_get_str(payload, "file_path", "");
        if (strstr(path, "missing"))
            return obx_error_set(err, ENOENT, OBX_ERR_FILE_NOT_FOUND, "no such file: %s", path);
        *ret_result = json_pack(
            "{sOsOsssiss}", "session_id", json_object_get(payload, "session_id"), "file_path",
            json_object_get(payload, "file_path"), "mime_type",
            strstr(path, ".txt") ? "text/plain" : "image/png", "size_bytes", 4, "blob", "iVBORw==");
    } else {
        return obx_error_set(err, ENODEV, "no_worker", "no worker supports %s", capability);
    }
    return 0;
}

static const char *fuzz_param(void *userdata, const char *name)
{
    return strcasecmp(name, "session-id") == 0 ? "=?base64?c2Vzc2lvbg==?=" : NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    executor.exec = instant_exec;
    struct obx_mcp_server_config cfg = {
        .name = "onlyboxes",
        .version = "0.0.0-fuzz",
        .executor = &executor,
        .account = "local",
        .page_size = 2, /* so tools/list pages and cursors are reachable */
        .max_inflight = 4,
    };
    srv = obx_mcp_server_new(&cfg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct obx_mcp_session *s = obx_mcp_session_new(srv, session_send, NULL);
    struct fuzz_sink sinks[MAX_LINES];
    memset(sinks, 0, sizeof(sinks));
    size_t n_sinks = 0, line = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end && line < MAX_LINES) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        /* What the HTTP transport decides first, with and without modern headers. */
        struct obx_mcp_http_meta meta = {
            .protocol_version = line % 3 == 0   ? "2026-07-28"
                                : line % 3 == 1 ? "2025-11-25"
                                                : NULL,
            .method = line % 2 ? "tools/call" : "tools/list",
            .name = line % 2 ? "terminalExec" : NULL,
            .param = fuzz_param,
        };
        struct obx_mcp_inbound in;
        obx_mcp_inbound_classify(srv, p, len, &meta, &in);
        obx_mcp_inbound_done(&in);
        if (line % 2 == 0) {
            obx_mcp_session_handle(s, p, len);
        } else {
            struct obx_mcp_sink sink = {
                .send = sink_send, .close = sink_close, .userdata = &sinks[n_sinks++]};
            obx_mcp_session_handle_sink(s, p, len, &sink);
        }
        line++;
        p += len + (nl ? 1 : 0);
    }
    obx_mcp_session_free(s);
    for (size_t i = 0; i < n_sinks; i++) {
        FUZZ_CHECK(sinks[i].closes == 1, "sink %zu closed %d times", i, sinks[i].closes);
        FUZZ_CHECK(sinks[i].sends_after_close == 0, "sink %zu got %d messages after its close", i,
                   sinks[i].sends_after_close);
    }
    return 0;
}
