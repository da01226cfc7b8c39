/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes mcp --stdio`: the MCP server over stdio with an in-process worker. When no sandbox
 * runtime works, the server still starts and every tool that needs a box answers with the reason
 * and how to fix it, so the user sees it in their MCP client instead of a dead server. A malformed
 * setting is different: it stops the program before it reads stdin, naming the variable.
 */
#include "cli-internal.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "common/config.h"
#include "common/log.h"
#include "mcp/mcp.h"

static const char usage[] =
    "Usage: onlyboxes mcp [--stdio] [--runtime auto|bubblewrap|docker]\n"
    "                     [--mount HOST_DIR:BOX_PATH[:ro|:rw]]... [--export-dir DIR]\n"
    "\n"
    "Serve MCP over stdio (one JSON-RPC message per line) with an in-process worker that runs\n"
    "code in sandboxes on this machine. Logs go to stderr.\n"
    "\n"
    "Options:\n"
    "  --stdio            serve on stdin/stdout (the default and only transport here)\n"
    "  --runtime NAME     sandbox runtime: auto (default), bubblewrap, docker;\n"
    "                     also ONLYBOXES_RUNTIME\n"
    "  --mount HOST_DIR:BOX_PATH[:ro|:rw]\n"
    "                     show a directory of this computer at BOX_PATH in every box (terminal\n"
    "                     sessions and pythonExec), read-only unless :rw is written; repeatable.\n"
    "                     With :rw code in the box can change and delete what is there.\n"
    "                     Refused: /, the home directory (or above it), /etc, the docker\n"
    "                     socket and the boxes' state directory\n"
    "  --export-dir DIR   where exportFile copies files (the tool is offered only with it)\n"
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
    const char *export_dir; /* NULL: no exportFile */
};

static int write_fd(void *userdata, const void *data, size_t len)
{
    return obx_write_all(*(int *)userdata, data, len);
}

/* A file name of this host for the name of a file in the box: no path, no control character. */
static char *host_name(const char *box_path)
{
    const char *slash = strrchr(box_path, '/');
    const char *name = slash && slash[1] ? slash + 1 : box_path;
    char *out =
        obx_xstrdup(obx_streq(name, ".") || obx_streq(name, "..") || !*name ? "export" : name);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '_';
    return out;
}

/* exportFile in local mode: the file is copied into --export-dir under its own name (name-1,
 * name-2 ... when taken; never over another file), whole or not at all. */
static int export_local(struct local_exec *l, json_t *payload, struct obx_call *call, json_t **ret,
                        struct obx_error *err)
{
    if (!l->export_dir)
        return obx_error_set(err, ENOTSUP, OBX_ERR_INVALID_PAYLOAD,
                             "exportFile copies a file to a directory of this computer: start "
                             "onlyboxes mcp with --export-dir DIR");
    const char *sid = obx_json_get_str(payload, "session_id", "");
    const char *path = obx_json_get_str(payload, "file_path", "");
    _cleanup_json_ json_t *sp =
        json_pack("{s:s, s:s, s:s}", "session_id", sid, "action", "stat", "path", path);
    json_t *meta = NULL;
    int r = l->inner->exec(l->inner, "terminalfiles", sp, call, &meta, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *m = meta;
    if (!obx_streq(obx_json_get_str(m, "type", ""), "file"))
        return obx_error_set(err, EISDIR, OBX_ERR_PATH_IS_DIRECTORY,
                             "%s is not a regular file: exportFile exports one file", path);
    int64_t size = obx_json_get_int(m, "size_bytes", 0);
    _cleanup_free_ char *tmp = obx_xasprintf("%s/.obx-export-XXXXXX", l->export_dir);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return obx_error_set(err, errno, OBX_ERR_EXECUTION_FAILED, "cannot write in %s: %s",
                             l->export_dir, strerror(errno));
    _cleanup_json_ json_t *rp = json_pack("{s:s, s:s, s:s, s:I}", "session_id", sid, "action",
                                          "read", "path", path, "size_bytes", (json_int_t)size);
    call->on_data = write_fd;
    call->data_userdata = &fd;
    json_t *res = NULL;
    r = l->inner->exec(l->inner, "terminalfiles", rp, call, &res, err);
    call->on_data = NULL;
    json_decref(res);
    if (r >= 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
        r = obx_error_set(err, errno, OBX_ERR_EXECUTION_FAILED, "cannot write in %s: %s",
                          l->export_dir, strerror(errno));
    _cleanup_free_ char *name = host_name(obx_json_get_str(m, "path", path));
    _cleanup_free_ char *final = NULL;
    for (int k = 0; r >= 0 && k < 1000; k++) {
        free(final);
        /* name-1.tar.gz: the number goes before the whole extension */
        const char *dot = strchr(name + 1, '.');
        if (!dot)
            dot = name + strlen(name);
        final = k == 0
                    ? obx_xasprintf("%s/%s", l->export_dir, name)
                    : obx_xasprintf("%s/%.*s-%d%s", l->export_dir, (int)(dot - name), name, k, dot);
        if (link(tmp, final) == 0)
            break;
        if (errno != EEXIST || k == 999)
            r = obx_error_set(err, errno, OBX_ERR_EXECUTION_FAILED, "cannot write %s: %s", final,
                              strerror(errno));
    }
    (void)unlink(tmp);
    if (r < 0)
        return r;
    const char *base = strrchr(final, '/') + 1;
    *ret = json_pack("{s:s, s:s, s:I, s:s}", "path", final, "filename", base, "size_bytes",
                     (json_int_t)size, "mime_type",
                     obx_json_get_str(m, "mime_type", "application/octet-stream"));
    obx_info("exported %s of session %s to %s", path, sid, final);
    return 0;
}

static int local_exec_fn(struct obx_executor *self, const char *capability, json_t *payload,
                         struct obx_call *call, json_t **ret, struct obx_error *err)
{
    struct local_exec *l = (struct local_exec *)self;
    int r = obx_streq(capability, "exportfile")
                ? export_local(l, payload, call, ret, err)
                : l->inner->exec(l->inner, capability, payload, call, ret, err);
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
    struct obx_box_mount mounts[32];
    size_t n_mounts = 0;
    _cleanup_free_ char *export_dir = NULL;
    int rc = 2;
    static const struct option options[] = {
        {"stdio", no_argument, NULL, OBX_OPT_STDIO},
        {"runtime", required_argument, NULL, OBX_OPT_RUNTIME},
        {"mount", required_argument, NULL, OBX_OPT_MOUNT},
        {"export-dir", required_argument, NULL, OBX_OPT_EXPORT_DIR},
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
                goto out;
            break;
        case OBX_OPT_MOUNT: {
            struct obx_error merr = OBX_ERROR_INIT;
            if (n_mounts == OBX_ARRAY_SIZE(mounts)) {
                fprintf(stderr, "onlyboxes mcp: at most %zu --mount options\n",
                        OBX_ARRAY_SIZE(mounts));
                goto out;
            }
            if (obx_worker_mount_parse(optarg, &mounts[n_mounts], &merr) < 0) {
                fprintf(stderr, "onlyboxes mcp: %s\n", merr.message);
                goto out;
            }
            n_mounts++;
            break;
        }
        case OBX_OPT_EXPORT_DIR: {
            char real[PATH_MAX];
            struct stat st;
            if (!realpath(optarg, real) || stat(real, &st) < 0 || !S_ISDIR(st.st_mode) ||
                access(real, W_OK) < 0) {
                fprintf(stderr, "onlyboxes mcp: --export-dir %s: %s\n", optarg,
                        errno ? strerror(errno) : "not a directory");
                goto out;
            }
            free(export_dir);
            export_dir = obx_xstrdup(real);
            break;
        }
        default:
            goto out;
        }
    }
    if (obx_cli_no_operands(argc, argv, usage) < 0)
        goto out;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_worker_mounts_check(mounts, n_mounts, &err) < 0) {
        fprintf(stderr, "onlyboxes mcp: %s\n", err.message);
        goto out;
    }
    local.mounts = mounts;
    local.n_mounts = n_mounts;
    struct mcp_settings settings;
    struct obx_worker_config wcfg;
    /* The worker's settings are checked here too, before stdin is read: a malformed one stops
     * the server (exit 2, as `onlyboxes console` for its own), while a runtime that does not
     * work on this host only makes the tools say why, below. obx_cli_local_worker() reads the
     * same environment again. */
    if (obx_config_read(mcp_vars, OBX_ARRAY_SIZE(mcp_vars), &settings, &err) < 0 ||
        obx_worker_config_from_env(&wcfg, &err) < 0) {
        fprintf(stderr, "onlyboxes mcp: %s\n", err.message);
        goto out;
    }
    obx_cli_handle_signals();

    struct obx_worker *w = obx_cli_local_worker(&local, &err);
    struct unavailable u = {.executor = {unavailable_exec}};
    struct obx_executor *ex;
    struct local_exec local_ex = {.executor = {local_exec_fn}, .export_dir = export_dir};
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
        /* Without a directory to export to, the tool is not offered. */
        .hidden_tools = export_dir ? NULL : "exportFile",
    };
    /* This process's sessions, for `onlyboxes cp` and `onlyboxes sessions` in other shells. */
    struct obx_worker_control *ctl = NULL;
    if (w && !(ctl = obx_worker_control_start(w, &err)))
        obx_warn("no control socket (onlyboxes cp and sessions will not find this process's "
                 "sessions): %s",
                 err.message);
    else if (ctl)
        obx_debug("control socket: %s", obx_worker_control_path(ctl));
    struct obx_mcp_server *srv = obx_mcp_server_new(&cfg);
    int r = obx_mcp_stdio_run(srv, STDIN_FILENO, STDOUT_FILENO);
    obx_worker_control_stop(ctl);
    obx_mcp_server_free(srv);
    obx_worker_free(w);
    rc = r < 0 ? 1 : 0;
out:
    for (size_t i = 0; i < n_mounts; i++)
        obx_worker_mount_done(&mounts[i]);
    return rc;
}
