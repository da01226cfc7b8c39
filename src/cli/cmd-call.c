/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes call TOOL 'JSON'`: one MCP tool call through the same server core that MCP clients
 * use (so validation and result shapes are identical, locally or on a console), printed as the
 * CallToolResult JSON. Exit status: 0 on success, 1 when the tool reported an error (isError), 2
 * on bad usage, 128+signal when a signal canceled it on a console.
 */
#include "cli-internal.h"

#include <pthread.h>

#include "common/clock.h"
#include "common/log.h"
#include "mcp/mcp.h"

static const char usage[] =
    "Usage: onlyboxes call [OPTIONS] TOOL ['JSON-ARGUMENTS']\n"
    "\n"
    "Call one MCP tool (echo, pythonExec, terminalExec, readImage) in a local sandbox or on a\n"
    "console and print the tool result as JSON. Exits 0 on success, 1 when the tool reports an\n"
    "error.\n"
    "\n"
    "Options:\n"
    "  --timeout-ms MS    the tool's timeout_ms argument (overrides the one in the "
    "JSON)\n" OBX_CLI_TARGET_HELP "  -h, --help         show this help\n"
    "\n"
    "Example: onlyboxes call pythonExec '{\"code\":\"print(1)\"}'\n"
    "         onlyboxes call --console http://127.0.0.1:8089 terminalExec \\\n"
    "             '{\"command\":\"cd /tmp\",\"session_id\":\"dev\",\"create_if_missing\":true}'\n";

struct reply {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    json_t *response; /* the answer to id 2 */
};

static void on_message(void *userdata, const char *text)
{
    struct reply *r = userdata;
    struct obx_error err = OBX_ERROR_INIT;
    json_t *j = obx_json_parse(text, strlen(text), &err);
    if (!j)
        return;
    if (json_integer_value(json_object_get(j, "id")) == 2 && !json_object_get(j, "method")) {
        pthread_mutex_lock(&r->lock);
        r->response = j;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return;
    }
    json_decref(j);
}

int obx_cmd_call(int argc, char **argv)
{
    struct obx_cli_target target = {0};
    const char *tool = NULL, *args = NULL, *timeout = NULL;
    static const struct option options[] = {
        {"timeout-ms", required_argument, NULL, OBX_OPT_TIMEOUT},
        OBX_CLI_TARGET_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c, taken;
    while ((c = obx_cli_getopt(argc, argv, "h", options, usage)) != -1) {
        if ((taken = obx_cli_target_option(c, optarg, &target)) != 0) {
            if (taken < 0)
                return 2;
        } else if (c == 'h') {
            fputs(usage, stdout);
            obx_cli_target_env_help(stdout);
            obx_cli_log_env_help(stdout, NULL);
            return 0;
        } else if (c == OBX_OPT_TIMEOUT) {
            timeout = optarg;
        } else {
            return 2;
        }
    }
    if (optind < argc)
        tool = argv[optind++];
    if (optind < argc)
        args = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "onlyboxes call: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    if (!tool) {
        fprintf(stderr, "onlyboxes call: no tool given\n%s", usage);
        return 2;
    }
    struct obx_error err = OBX_ERROR_INIT;
    _cleanup_json_ json_t *arguments =
        args ? obx_json_parse(args, strlen(args), &err) : json_object();
    if (!arguments || !json_is_object(arguments)) {
        fprintf(stderr, "onlyboxes call: the arguments must be a JSON object%s%s\n",
                arguments ? "" : ": ", arguments ? "" : err.message);
        return 2;
    }
    if (timeout) {
        int64_t ms;
        if (obx_parse_int64(timeout, 1, 600000, &ms) < 0) {
            fprintf(stderr, "onlyboxes call: --timeout-ms %s is invalid: expected 1 to 600000\n",
                    timeout);
            return 2;
        }
        json_object_set_new(arguments, "timeout_ms", json_integer(ms));
    }

    struct obx_cli_backend *b = obx_cli_backend_open(&target);
    if (!b)
        return 125;
    struct obx_mcp_server_config cfg = {.name = "onlyboxes",
                                        .version = OBX_VERSION,
                                        .executor = obx_cli_backend_executor(b),
                                        .account = "local"};
    struct obx_mcp_server *srv = obx_mcp_server_new(&cfg);
    struct reply reply = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct obx_mcp_session *s = obx_mcp_session_new(srv, on_message, &reply);

    _cleanup_json_ json_t *init =
        json_pack("{s:s,s:i,s:s,s:{s:s,s:{},s:{s:s,s:s}}}", "jsonrpc", "2.0", "id", 1, "method",
                  "initialize", "params", "protocolVersion", "2025-11-25", "capabilities",
                  "clientInfo", "name", "onlyboxes-cli", "version", OBX_VERSION);
    _cleanup_json_ json_t *call =
        json_pack("{s:s,s:i,s:s,s:{s:s,s:O}}", "jsonrpc", "2.0", "id", 2, "method", "tools/call",
                  "params", "name", tool, "arguments", arguments);
    _cleanup_free_ char *init_text = obx_json_dumps(init);
    _cleanup_free_ char *call_text = obx_json_dumps(call);
    obx_mcp_session_handle(s, init_text, strlen(init_text));
    const char *note = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
    obx_mcp_session_handle(s, note, strlen(note));
    obx_mcp_session_handle(s, call_text, strlen(call_text));

    pthread_mutex_lock(&reply.lock);
    while (!reply.response)
        pthread_cond_wait(&reply.cond, &reply.lock);
    pthread_mutex_unlock(&reply.lock);
    obx_mcp_session_free(s);
    obx_mcp_server_free(srv);
    obx_cli_backend_close(b);

    int status;
    json_t *result = json_object_get(reply.response, "result");
    if (result) {
        char *text = json_dumps(result, JSON_INDENT(2));
        printf("%s\n", text);
        free(text);
        status = json_is_true(json_object_get(result, "isError")) ? 1 : 0;
    } else {
        json_t *e = json_object_get(reply.response, "error");
        fprintf(stderr, "onlyboxes call: %s (JSON-RPC error %lld)\n",
                obx_json_get_str(e, "message", "error"), (long long)obx_json_get_int(e, "code", 0));
        status = 2;
    }
    json_decref(reply.response);
    return obx_cli_interrupted() ? 128 + obx_cli_interrupted() : status;
}
