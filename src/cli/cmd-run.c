/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes exec` and `onlyboxes python`: one command in a box, from a shell, locally or on a
 * console (cli-backend.c decides). Output goes to this process's stdout/stderr (as it arrives
 * locally, when the command ends on a console) and the exit status is the command's, so they
 * compose in scripts like the command itself would.
 */
#include "cli-internal.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"

#define NETWORK_HELP                                                                             \
    "  --network MODE     the box's network: false (none, the default), allowlist (only the\n"   \
    "                     hosts in ONLYBOXES_EGRESS_ALLOW, through a proxy) or true (all of\n"   \
    "                     it, where ONLYBOXES_ALLOW_NETWORK=true); a session's is chosen when\n" \
    "                     it starts\n"

static const char exec_usage[] =
    "Usage: onlyboxes exec [OPTIONS] -- COMMAND [ARGS...]\n"
    "\n"
    "Run one command in a sandbox. Its stdout and stderr are passed through as they arrive and\n"
    "onlyboxes exits with the command's exit status (124 on timeout, 125 when the sandbox could\n"
    "not run it, 130 when Ctrl-C canceled it).\n"
    "\n"
    "Options:\n"
    "  --session ID       run in terminal session ID (created if missing); the working directory\n"
    "                     and exported variables carry over to the next command in it. Locally a\n"
    "                     session lives as long as this process; on a console it stays between\n"
    "                     invocations until its lease runs out\n"
    "  --timeout-ms MS    kill the command after MS milliseconds (default 60000, max 600000);\n"
    "                     --timeout is the same\n" NETWORK_HELP OBX_CLI_TARGET_HELP
    "  -h, --help         show this help\n"
    "\n"
    "On a console the output arrives when the command ends, and Ctrl-C cancels the remote task\n"
    "(its processes are killed) before onlyboxes exits.\n"
    "Example: ONLYBOXES_CONSOLE=https://obx.example.com ONLYBOXES_TOKEN=obx_... \\\n"
    "         onlyboxes exec --session build -- make\n";

static const char python_usage[] =
    "Usage: onlyboxes python [OPTIONS] (-c CODE | FILE | -)\n"
    "\n"
    "Run Python 3 code in a fresh sandbox: from -c CODE, from FILE, or from stdin with '-'.\n"
    "Output is passed through, then the value of a final expression as a REPL shows it; the\n"
    "exit status is the program's (124 on timeout, 130 when Ctrl-C canceled it).\n"
    "\n"
    "Options:\n"
    "  --session NAME     run in session NAME's Python interpreter (created if missing):\n"
    "                     variables, imports and definitions carry over to the next call in\n"
    "                     it, and files are shared with exec --session NAME. Locally a\n"
    "                     session lives as long as this process; on a console it stays\n"
    "                     between invocations until its lease runs out\n"
    "  --reset            with --session: start a fresh interpreter first\n"
    "  --timeout-ms MS    kill the program after MS milliseconds (default 60000, max 600000);\n"
    "                     --timeout is the same\n" NETWORK_HELP OBX_CLI_TARGET_HELP
    "  -h, --help         show this help\n"
    "\n"
    "Images the code leaves (matplotlib figures, PIL images) are counted on stderr; `onlyboxes\n"
    "call pythonExec` returns their data.\n";

#define MAX_CODE_BYTES (8u << 20)

static void pass_through(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    (void)obx_write_all(stream == OBX_STREAM_STDOUT ? STDOUT_FILENO : STDERR_FILENO, data, len);
}

/* Quotes one argument for /bin/sh: 'it'\''s' style, exact for any bytes. */
static void shell_quote(struct obx_buf *b, const char *arg)
{
    obx_buf_append(b, "'", 1);
    for (const char *p = arg; *p; p++) {
        if (*p == '\'')
            obx_buf_append(b, "'\\''", 4);
        else
            obx_buf_append(b, p, 1);
    }
    obx_buf_append(b, "'", 1);
}

/* pythonExec's value after the output, as a REPL shows it; notes and images on stderr. */
static void python_shown(json_t *result)
{
    const char *value = obx_json_get_str(result, "result", NULL);
    if (value) {
        fflush(stdout);
        (void)obx_write_all(STDOUT_FILENO, value, strlen(value));
        (void)obx_write_all(STDOUT_FILENO, "\n", 1);
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(result, "notes"), i, v)
    {
        fprintf(stderr, "onlyboxes: note: %s\n", json_string_value(v) ? json_string_value(v) : "");
    }
    json_t *images = json_object_get(result, "images");
    json_array_foreach(images, i, v)
    {
        fprintf(stderr,
                "onlyboxes: image %zu of %zu: %s, %lld x %lld px (onlyboxes call pythonExec "
                "returns its data)\n",
                i + 1, json_array_size(images), obx_json_get_str(v, "mime_type", "?"),
                (long long)obx_json_get_int(v, "width", 0),
                (long long)obx_json_get_int(v, "height", 0));
    }
}

/* Runs one capability with live output; returns the process exit status for the CLI. */
static int run_capability(struct obx_cli_target *target, const char *capability, json_t *payload,
                          int64_t timeout_ms)
{
    struct obx_cli_backend *b = obx_cli_backend_open(target);
    if (!b)
        return 125;
    json_object_set_new(payload, "timeout_ms", json_integer(timeout_ms));
    struct obx_call call;
    obx_call_init(&call);
    call.account = "local";
    call.deadline = obx_now_ms() + (uint64_t)timeout_ms + 2000;
    call.on_output = pass_through;
    json_t *result = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_executor *ex = obx_cli_backend_executor(b);
    int r = ex->exec(ex, capability, payload, &call, &result, &err);
    obx_call_done(&call);
    int status;
    if (r < 0) {
        char text[sizeof(err.code) + sizeof(err.message) + 4];
        fprintf(stderr, "onlyboxes: %s\n", obx_error_text(&err, text, sizeof(text)));
        status = obx_streq(err.code, OBX_ERR_DEADLINE_EXCEEDED) ? 124 : 125;
        if (obx_cli_interrupted())
            status = 128 + obx_cli_interrupted();
    } else {
        status = (int)obx_json_get_int(result, "exit_code", 1);
        if (status < 0 || status > 255)
            status = 125;
        if (obx_json_get_bool(result, "stdout_truncated", false) ||
            obx_json_get_bool(result, "output_truncated", false))
            fprintf(stderr, "onlyboxes: stdout was truncated at the output limit\n");
        if (obx_json_get_bool(result, "stderr_truncated", false))
            fprintf(stderr, "onlyboxes: stderr was truncated at the output limit\n");
        python_shown(result);
    }
    json_decref(result);
    obx_cli_backend_close(b);
    return status;
}

/* --network false|true|allowlist into the payload's "network" (false: left out). */
static int network_option(const char *value, json_t **ret)
{
    if (obx_streq(value, "false"))
        *ret = NULL;
    else if (obx_streq(value, "true"))
        *ret = json_true();
    else if (obx_streq(value, "allowlist"))
        *ret = json_string("allowlist");
    else
        return -EINVAL;
    return 0;
}

/* Parses the options exec and python share, up to the first operand (or python's -c CODE, which
 * ends them: *code receives it). Returns the index of the first operand, -1 after printing an
 * error, or -2 after printing help. *network: the payload's "network" (a new reference) or
 * NULL. */
static int parse_common(int argc, char **argv, const char *usage, struct obx_cli_target *target,
                        int64_t *timeout_ms, const char **session, bool *reset, const char **code,
                        json_t **network)
{
    static const struct option options[] = {
        {"timeout-ms", required_argument, NULL, OBX_OPT_TIMEOUT},
        {"timeout", required_argument, NULL, OBX_OPT_TIMEOUT},
        {"session", required_argument, NULL, OBX_OPT_SESSION},
        {"reset", no_argument, NULL, OBX_OPT_RESET},
        {"network", required_argument, NULL, OBX_OPT_NETWORK},
        OBX_CLI_TARGET_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c, taken;
    /* '+': the first operand ends the options (a command's own arguments follow it). */
    while ((c = obx_cli_getopt(argc, argv, code ? "+hc:" : "+h", options, usage)) != -1) {
        if ((taken = obx_cli_target_option(c, optarg, target)) != 0) {
            if (taken < 0)
                return -1;
            continue;
        }
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            obx_cli_target_env_help(stdout);
            obx_cli_log_env_help(stdout, NULL);
            return -2;
        case 'c':
            *code = optarg;
            return optind;
        case OBX_OPT_TIMEOUT:
            if (obx_parse_int64(optarg, 1, 600000, timeout_ms) < 0) {
                fprintf(stderr, "onlyboxes: %s %s is invalid: expected 1 to 600000 ms\n",
                        argv[optind - 1][0] == '-' ? argv[optind - 1] : "--timeout-ms", optarg);
                return -1;
            }
            break;
        case OBX_OPT_SESSION:
            *session = optarg;
            break;
        case OBX_OPT_RESET:
            if (!reset) {
                fprintf(stderr, "onlyboxes: --reset is for onlyboxes python --session\n");
                return -1;
            }
            *reset = true;
            break;
        case OBX_OPT_NETWORK:
            json_decref(*network);
            if (network_option(optarg, network) < 0) {
                fprintf(stderr,
                        "onlyboxes: --network %s is invalid: expected false, allowlist or true\n",
                        optarg);
                return -1;
            }
            break;
        default:
            return -1;
        }
    }
    return optind;
}

int obx_cmd_exec(int argc, char **argv)
{
    struct obx_cli_target target = {0};
    int64_t timeout = 60000;
    const char *session = NULL;
    _cleanup_json_ json_t *network = NULL;
    int i = parse_common(argc, argv, exec_usage, &target, &timeout, &session, NULL, NULL, &network);
    if (i < 0)
        return i == -2 ? 0 : 2;
    if (i >= argc) {
        fprintf(stderr, "onlyboxes exec: no command given\n%s", exec_usage);
        return 2;
    }
    struct obx_buf cmd = OBX_BUF_INIT(0);
    for (int k = i; k < argc; k++) {
        if (k > i)
            obx_buf_append(&cmd, " ", 1);
        shell_quote(&cmd, argv[k]);
    }
    json_t *payload = json_object();
    json_object_set_new(payload, "command", json_string(cmd.data));
    if (session) {
        json_object_set_new(payload, "session_id", json_string(session));
        json_object_set_new(payload, "create_if_missing", json_true());
    }
    if (network)
        json_object_set(payload, "network", network);
    obx_buf_free(&cmd);
    int status = run_capability(&target, "terminalexec", payload, timeout);
    json_decref(payload);
    return status;
}

static char *read_all(FILE *f, const char *name)
{
    struct obx_buf b = OBX_BUF_INIT(MAX_CODE_BYTES);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (obx_buf_append(&b, chunk, n) < 0) {
            fprintf(stderr, "onlyboxes python: %s is larger than %u bytes\n", name, MAX_CODE_BYTES);
            obx_buf_free(&b);
            return NULL;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "onlyboxes python: cannot read %s: %s\n", name, strerror(errno));
        obx_buf_free(&b);
        return NULL;
    }
    return obx_buf_steal(&b, NULL);
}

int obx_cmd_python(int argc, char **argv)
{
    struct obx_cli_target target = {0};
    int64_t timeout = 60000;
    _cleanup_json_ json_t *network = NULL;
    const char *inline_code = NULL;
    const char *session = NULL;
    bool reset = false;
    int i = parse_common(argc, argv, python_usage, &target, &timeout, &session, &reset,
                         &inline_code, &network);
    if (i < 0)
        return i == -2 ? 0 : 2;
    _cleanup_free_ char *code = NULL;
    int used = inline_code ? 0 : 1;
    if (i + used < argc) {
        fprintf(stderr,
                "onlyboxes python: unexpected argument '%s' after the code (options go before "
                "-c, FILE or -)\n",
                argv[i + used]);
        return 2;
    }
    if (inline_code) {
        code = obx_xstrdup(inline_code);
    } else if (i < argc && obx_streq(argv[i], "-")) {
        code = read_all(stdin, "stdin");
    } else if (i < argc) {
        _cleanup_fclose_ FILE *f = fopen(argv[i], "re");
        if (!f) {
            fprintf(stderr, "onlyboxes python: cannot open %s: %s\n", argv[i], strerror(errno));
            return 2;
        }
        code = read_all(f, argv[i]);
    } else {
        fprintf(stderr, "onlyboxes python: give -c CODE, a FILE or - for stdin\n%s", python_usage);
        return 2;
    }
    if (!code)
        return 2;
    json_t *payload = json_object();
    json_object_set_new(payload, "code", json_string(code));
    if (!json_string_value(json_object_get(payload, "code"))) {
        fprintf(stderr, "onlyboxes python: the code is not valid UTF-8\n");
        json_decref(payload);
        return 2;
    }
    if (network)
        json_object_set(payload, "network", network);
    if (reset && !session) {
        fprintf(stderr, "onlyboxes python: --reset needs --session NAME\n");
        json_decref(payload);
        return 2;
    }
    if (session) {
        json_object_set_new(payload, "session_id", json_string(session));
        json_object_set_new(payload, "create_if_missing", json_true());
        if (reset)
            json_object_set_new(payload, "reset", json_true());
    }
    int status = run_capability(&target, "pythonexec", payload, timeout);
    json_decref(payload);
    return status;
}
