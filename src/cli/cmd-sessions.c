/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes sessions`: the terminal sessions themselves, listed, renewed and ended, over the
 * sessions API (docs/console.md) of a console, or without one of every local `onlyboxes mcp` of
 * this user (cli-sessions.c): ls shows each process's, with its pid.
 */
#include "cli-internal.h"

#include "client/client.h"

#define LIST_PATH "/api/v1/sessions?page_size=100"

static const char sessions_usage[] =
    "Usage: onlyboxes sessions [ls] [--json]\n"
    "       onlyboxes sessions rm SESSION... [--pid PID]\n"
    "       onlyboxes sessions renew SESSION [--lease SECONDS] [--pid PID]\n"
    "\n"
    "List terminal sessions, end them (their processes are killed and their files go), or keep\n"
    "one longer (within the worker's bounds). With a console (--console or ONLYBOXES_CONSOLE)\n"
    "they are the token's account's there; without one, those of the onlyboxes mcp --stdio\n"
    "processes (local agents) running on this computer as this user, reached through their\n"
    "control sockets (in $XDG_RUNTIME_DIR/onlyboxes or /tmp/onlyboxes-UID): ls shows each\n"
    "process's sessions with its pid.\n"
    "\n"
    "Options:\n"
    "  --json             ls: the answer as JSON (locally each session with its \"pid\")\n"
    "  --lease SECONDS    renew: how long the session lives from now (default: the worker's)\n"
    "  --pid PID          without a console: only the onlyboxes mcp process PID (for a session\n"
    "                     name more than one has)\n"
    "  --console URL      the console (http:// or https://); also ONLYBOXES_CONSOLE\n"
    "  --token TOKEN      the console API token; better ONLYBOXES_TOKEN (argv is visible)\n"
    "  --ca-file FILE     PEM CA bundle for an https console; also ONLYBOXES_CA_FILE\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0, 1 when something was refused or not found, 2 for bad usage, no console and\n"
    "no onlyboxes mcp running, or a session name several of them have.\n";

static void print_time(const char *iso)
{
    /* "2026-12-07T05:16:16.125Z" to the second */
    printf("%-20.19s", iso && strlen(iso) >= 19 ? iso : "-");
}

static void print_row(const json_t *s, bool local)
{
    if (local)
        printf("%-24s %-12lld %-11s ", obx_json_get_str(s, "session_id", ""),
               (long long)obx_json_get_int(s, "pid", 0), obx_json_get_str(s, "status", ""));
    else
        printf("%-24s %-12.12s %-11s ", obx_json_get_str(s, "session_id", ""),
               obx_json_get_str(s, "worker", ""), obx_json_get_str(s, "status", ""));
    print_time(obx_json_get_str(s, "created_at", NULL));
    printf(" ");
    print_time(obx_json_get_str(s, "last_used_at", NULL));
    printf(" ");
    print_time(obx_json_get_str(s, "lease_expires_at", NULL));
    json_t *busy = json_object_get(s, "busy");
    printf(" %s\n", !busy ? "-" : json_is_true(busy) ? "yes" : "no");
}

/* The first page of one server's sessions; NULL after printing why not. */
static json_t *list_one(struct obx_cli_api *a)
{
    long status = 0;
    json_t *body = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    obx_cli_api_use(a);
    if (obx_client_conn_json(a->conn, "GET", LIST_PATH, NULL, &status, &body, &err) < 0) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        return NULL;
    }
    if (status != 200) {
        if (a->pid) {
            char what[64];
            snprintf(what, sizeof(what), "listing the sessions of pid %d", a->pid);
            obx_cli_api_failed(what, status, body);
        } else {
            obx_cli_api_failed("listing the sessions", status, body);
        }
        json_decref(body);
        return NULL;
    }
    return body;
}

static int sessions_ls(struct obx_cli_apis *apis, bool as_json)
{
    int rc = 0;
    /* Locally the processes' lists in one, each session with its pid. */
    _cleanup_json_ json_t *all = json_pack("{s:[], s:I, s:I, s:I}", "items", "total", (json_int_t)0,
                                           "page", (json_int_t)1, "page_size", (json_int_t)100);
    json_t *items = json_object_get(all, "items");
    _cleanup_free_ char *notes = obx_xstrdup("");
    for (size_t i = 0; i < apis->n && !obx_cli_interrupted(); i++) {
        _cleanup_json_ json_t *body = list_one(&apis->v[i]);
        if (!body) {
            rc = 1;
            continue;
        }
        if (!apis->local) {
            json_decref(all);
            all = json_incref(body);
            break;
        }
        size_t k;
        json_t *s;
        json_array_foreach(json_object_get(body, "items"), k, s)
        {
            json_object_set_new(s, "pid", json_integer(apis->v[i].pid));
            json_array_append(items, s);
        }
        int64_t total = obx_json_get_int(body, "total", 0);
        json_object_set_new(all, "total", json_integer(obx_json_get_int(all, "total", 0) + total));
        if (total > (int64_t)json_array_size(json_object_get(body, "items"))) {
            char *more = obx_xasprintf("%s(pid %d has %lld sessions; the first 100 are shown)\n",
                                       notes, apis->v[i].pid, (long long)total);
            free(notes);
            notes = more;
        }
    }
    if (obx_cli_interrupted())
        return 128 + obx_cli_interrupted();
    if (as_json) {
        _cleanup_free_ char *text = json_dumps(all, JSON_INDENT(2));
        printf("%s\n", text);
        return rc;
    }
    printf("%-24s %-12s %-11s %-20s %-20s %-20s %s\n", "SESSION", apis->local ? "PID" : "WORKER",
           "STATUS", "CREATED", "LAST USED", "LEASE EXPIRES", "BUSY");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(all, "items"), i, s) print_row(s, apis->local);
    if (!apis->local &&
        obx_json_get_int(all, "total", 0) > (int64_t)json_array_size(json_object_get(all, "items")))
        printf("(%lld sessions in all; the first 100 are shown)\n",
               (long long)obx_json_get_int(all, "total", 0));
    printf("%s", notes);
    return rc;
}

/* rm or renew of one session; 0, or the exit status after printing why not (-1: the server
 * could not be reached, which the next session would not change). */
static int session_change(struct obx_cli_apis *apis, const char *sid, bool renew, int64_t lease)
{
    _cleanup_free_ char *p = NULL;
    if (obx_cli_api_session_path(sid, renew ? "/renew" : "", &p) < 0) {
        fprintf(stderr,
                "onlyboxes sessions: %s: a session id is 1 to 128 visible ASCII characters\n", sid);
        return 1;
    }
    int rc;
    struct obx_cli_api *a = obx_cli_apis_find(apis, "onlyboxes sessions", sid, &rc);
    if (!a)
        return rc;
    _cleanup_json_ json_t *req = renew && lease ? json_pack("{s:I}", "lease_ttl_sec", lease) : NULL;
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_client_conn_json(a->conn, renew ? "POST" : "DELETE", p, req, &status, &body, &err) <
        0) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        return -1;
    }
    _cleanup_free_ char *what = obx_xasprintf("session %s", sid);
    if (!renew && status == 204)
        printf("removed session %s\n", sid);
    else if (renew && status == 200)
        printf("session %s: its lease runs until %s\n", sid,
               obx_json_get_str(body, "lease_expires_at", "?"));
    else
        return obx_cli_api_failed(what, status, body);
    return 0;
}

int obx_cmd_sessions(int argc, char **argv)
{
    struct obx_cli_target target = {0};
    bool as_json = false;
    int64_t lease = 0;
    int pid = 0;
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"lease", required_argument, NULL, 'l'},
        {"pid", required_argument, NULL, OBX_OPT_PID},
        OBX_CLI_TARGET_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int opt, taken;
    while ((opt = obx_cli_getopt(argc, argv, "h", options, sessions_usage)) != -1) {
        if ((taken = obx_cli_target_option(opt, optarg, &target)) != 0) {
            if (taken < 0)
                return 2;
            continue;
        }
        if (opt == 'h') {
            fputs(sessions_usage, stdout);
            return 0;
        }
        if (opt == 'j') {
            as_json = true;
        } else if (opt == 'l') {
            if (obx_parse_int64(optarg, 1, 86400, &lease) < 0) {
                fprintf(stderr,
                        "onlyboxes sessions: --lease %s is invalid: expected 1 to 86400 "
                        "seconds\n",
                        optarg);
                return 2;
            }
        } else if (opt != OBX_OPT_PID ||
                   (pid = obx_cli_pid_option("onlyboxes sessions", optarg)) < 0) {
            return 2;
        }
    }
    const char *action = optind < argc ? argv[optind++] : "ls";
    bool ls = obx_streq(action, "ls") || obx_streq(action, "list");
    bool rm = obx_streq(action, "rm");
    bool renew = obx_streq(action, "renew");
    if ((!ls && !rm && !renew) || (ls && optind != argc) || (rm && optind >= argc) ||
        (renew && argc - optind != 1)) {
        fprintf(stderr, "onlyboxes sessions: %s\n%s",
                !ls && !rm && !renew ? "unknown action (ls, rm or renew)" : "wrong arguments",
                sessions_usage);
        return 2;
    }
    struct obx_cli_apis apis;
    int rc = obx_cli_apis_open(&target, "onlyboxes sessions", pid, &apis);
    if (rc)
        return rc;
    if (ls)
        rc = sessions_ls(&apis, as_json);
    for (int i = optind, r = 0; !ls && i < argc && r >= 0 && !obx_cli_interrupted(); i++) {
        r = session_change(&apis, argv[i], renew, lease);
        rc = OBX_MAX(rc, r < 0 ? 1 : r);
    }
    obx_cli_apis_close(&apis);
    return obx_cli_interrupted() ? 128 + obx_cli_interrupted() : rc;
}
