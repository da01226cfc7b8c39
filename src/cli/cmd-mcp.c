/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes mcp --stdio`: the MCP server over stdio with an in-process worker. When no sandbox
 * runtime works, the server still starts and every tool that needs a box answers with the reason
 * and how to fix it, so the user sees it in their MCP client instead of a dead server.
 */
#include "cli-internal.h"

#include "common/config.h"
#include "common/log.h"
#include "mcp/mcp.h"

static const char usage[] =
    "Usage: onlyboxes mcp [--stdio] [--runtime auto|bubblewrap|docker]\n"
    "\n"
    "Serve MCP over stdio (one JSON-RPC message per line) with an in-process worker that runs\n"
    "code in sandboxes on this machine. Logs go to stderr.\n"
    "\n"
    "Options:\n"
    "  --stdio            serve on stdin/stdout (the default and only transport here)\n"
    "  --runtime NAME     sandbox runtime: auto (default), bubblewrap, docker;\n"
    "                     also ONLYBOXES_RUNTIME\n"
    "  -h, --help         show this help\n"
    "\n"
    "Environment (a malformed value stops the program, naming the variable):\n";

struct mcp_settings {
    int64_t task_after_ms;
};

static const struct obx_config_var mcp_vars[] = {
    {"ONLYBOXES_MCP_TASK_AFTER_MS", NULL, OBX_CONFIG_INT,
     OBX_CONFIG_FIELD(struct mcp_settings, task_after_ms), "10000", 0, 3600000, 0, NULL, 0,
     "a tools/call of a client with the MCP tasks extension still running after this long is "
     "answered with a task to poll, ms; 0 = never"},
};

/* The worker, with one more sentence on session_not_found: a client that starts a new server
 * for every call (the Inspector's CLI does) cannot keep a terminal session, and should learn
 * why and what to do. */
struct local_exec {
    struct obx_executor executor;
    struct obx_executor *inner;
};

static int local_exec_fn(struct obx_executor *self, const char *capability, json_t *payload,
                         struct obx_call *call, json_t **ret, struct obx_error *err)
{
    struct local_exec *l = (struct local_exec *)self;
    int r = l->inner->exec(l->inner, capability, payload, call, ret, err);
    /* Only for an id this process never had: one that ended says why already. */
    if (r < 0 && obx_streq(err->code, OBX_ERR_SESSION_NOT_FOUND) &&
        obx_streq(err->message, "session not found")) {
        size_t n = strlen(err->message);
        snprintf(err->message + n, sizeof(err->message) - n, "%s",
                 ": with onlyboxes mcp --stdio a terminal session lives as long as this server "
                 "process: keep one MCP connection open across calls (a client that starts a new "
                 "server for each call loses its sessions), or run onlyboxes console and connect "
                 "to its /mcp, where sessions outlive connections");
    }
    return r;
}

struct unavailable {
    struct obx_executor executor;
    struct obx_error why;
};

static int unavailable_exec(struct obx_executor *self, const char *capability, json_t *payload,
                            struct obx_call *call, json_t **ret, struct obx_error *err)
{
    struct unavailable *u = (struct unavailable *)self;
    if (strcasecmp(capability, "echo") == 0 && json_is_object(payload)) {
        *ret = json_deep_copy(payload);
        json_object_del(*ret, "timeout_ms");
        return 0;
    }
    *err = u->why;
    return -u->why.errnum;
}

int obx_cmd_mcp(int argc, char **argv)
{
    struct obx_cli_local local = {.keep_pool = true};
    bool fixtures = false;
    static const struct option options[] = {
        {"stdio", no_argument, NULL, OBX_OPT_STDIO},
        {"runtime", required_argument, NULL, OBX_OPT_RUNTIME},
        /* test-only: adds the MCP conformance suite's fixture tools */
        {"conformance-fixtures", no_argument, NULL, OBX_OPT_FIXTURES},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = obx_cli_getopt(argc, argv, "h", options, usage)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            obx_config_help(stdout, mcp_vars, OBX_ARRAY_SIZE(mcp_vars));
            obx_worker_config_help(stdout);
            obx_cli_log_env_help(stdout, NULL);
            return 0;
        case OBX_OPT_STDIO:
            break;
        case OBX_OPT_FIXTURES:
            fixtures = true;
            break;
        case OBX_OPT_RUNTIME:
            if (obx_cli_runtime_option(optarg, &local) < 0)
                return 2;
            break;
        default:
            return 2;
        }
    }
    if (obx_cli_no_operands(argc, argv, usage) < 0)
        return 2;
    struct obx_error err = OBX_ERROR_INIT;
    struct mcp_settings settings;
    if (obx_config_read(mcp_vars, OBX_ARRAY_SIZE(mcp_vars), &settings, &err) < 0) {
        fprintf(stderr, "onlyboxes mcp: %s\n", err.message);
        return 2;
    }
    obx_cli_handle_signals();

    struct obx_worker *w = obx_cli_local_worker(&local, &err);
    struct unavailable u = {.executor = {unavailable_exec}};
    struct obx_executor *ex;
    struct local_exec local_ex = {.executor = {local_exec_fn}};
    if (w) {
        local_ex.inner = obx_worker_executor(w);
        ex = &local_ex.executor;
    } else {
        obx_err("%s", err.message);
        u.why = err;
        if (!u.why.code[0])
            snprintf(u.why.code, sizeof(u.why.code), "%s", OBX_ERR_RUNTIME_UNAVAILABLE);
        ex = &u.executor;
    }

    struct obx_mcp_server_config cfg = {
        .name = "onlyboxes",
        .version = OBX_VERSION,
        .executor = ex,
        .account = "local",
        .fixtures = fixtures,
        .task_after_ms = settings.task_after_ms ? settings.task_after_ms : OBX_MCP_TASKS_OFF,
    };
    struct obx_mcp_server *srv = obx_mcp_server_new(&cfg);
    int r = obx_mcp_stdio_run(srv, STDIN_FILENO, STDOUT_FILENO);
    obx_mcp_server_free(srv);
    obx_worker_free(w);
    return r < 0 ? 1 : 0;
}
