/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where `onlyboxes cp` and `onlyboxes sessions` send their requests: the sessions and files API
 * of a console (--console URL, ONLYBOXES_CONSOLE), or without one the same routes on the control
 * sockets of this user's running `onlyboxes mcp` processes (worker/local-control.c), which hold
 * the local agents' terminal sessions. Locally a session is looked up in every process; a name
 * two processes have is ambiguous until --pid chooses one.
 */
#include "cli-internal.h"

#include "client/client.h"

#define SESSION_ID_MAX 128

/* n pids, "12, 34", into buf. */
static const char *pid_list(const int *pids, size_t n, char *buf, size_t size)
{
    buf[0] = '\0';
    for (size_t i = 0, len = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%d", i ? ", " : "", pids[i]);
    return buf;
}

/* A client and a connection on peer's control socket; -1 after printing why not. */
static int api_local(const struct obx_worker_control_peer *peer, struct obx_cli_api *ret)
{
    char name[48];
    snprintf(name, sizeof(name), "onlyboxes mcp (pid %d)", peer->pid);
    struct obx_client_config cfg = {.unix_socket = peer->path, .name = name};
    struct obx_error err = OBX_ERROR_INIT;
    ret->pid = peer->pid;
    ret->client = obx_client_new(&cfg, &err);
    ret->conn = ret->client ? obx_client_conn_new(ret->client, &err) : NULL;
    if (!ret->conn) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        obx_client_free(ret->client);
        ret->client = NULL;
        return -1;
    }
    return 0;
}

static int apis_open_local(const char *cmd, int pid, struct obx_cli_apis *ret)
{
    struct obx_worker_control_peers peers;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_worker_control_find(&peers, &err);
    snprintf(ret->where, sizeof(ret->where), "%s", peers.where);
    if (r < 0) {
        fprintf(stderr, "%s: the local onlyboxes mcp processes cannot be reached: %s\n", cmd,
                err.message);
        return 2;
    }
    if (peers.n == 0) {
        fprintf(stderr,
                "%s: no onlyboxes mcp is running on this computer (none has a control socket in "
                "%s), and no console is set. A local agent's sessions are reached through the "
                "onlyboxes mcp --stdio that holds them, while it runs; a console's with --console "
                "URL (or ONLYBOXES_CONSOLE) and a token.\n",
                cmd, peers.where);
        return 2;
    }
    ret->v = obx_xcalloc(peers.n, sizeof(*ret->v));
    bool found = !pid;
    for (size_t i = 0; i < peers.n; i++) {
        if (pid && peers.v[i].pid != pid)
            continue;
        found = true;
        if (api_local(&peers.v[i], &ret->v[ret->n]) == 0)
            ret->n++;
    }
    if (!found) {
        int pids[OBX_WORKER_CONTROL_PEERS_MAX];
        char text[256];
        for (size_t i = 0; i < peers.n; i++)
            pids[i] = peers.v[i].pid;
        fprintf(stderr, "%s: no onlyboxes mcp with pid %d runs on this computer (running: %s)\n",
                cmd, pid, pid_list(pids, peers.n, text, sizeof(text)));
        return 2;
    }
    obx_cli_handle_interrupts();
    return ret->n ? 0 : 1;
}

int obx_cli_apis_open(struct obx_cli_target *t, const char *cmd, int pid, struct obx_cli_apis *ret)
{
    memset(ret, 0, sizeof(*ret));
    bool local = false;
    struct obx_client *client = obx_cli_console_open(t, &local);
    if (!client && !local)
        return 1;
    if (local) {
        ret->local = true;
        int rc = apis_open_local(cmd, pid, ret);
        if (rc)
            obx_cli_apis_close(ret);
        return rc;
    }
    if (pid) {
        fprintf(stderr, "%s: --pid chooses a local onlyboxes mcp; it does not go with a console\n",
                cmd);
        obx_client_free(client);
        return 2;
    }
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_client_conn *conn = obx_client_conn_new(client, &err);
    if (!conn) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        obx_client_free(client);
        return 1;
    }
    ret->v = obx_xcalloc(1, sizeof(*ret->v));
    ret->v[0] = (struct obx_cli_api){client, conn, 0};
    ret->n = 1;
    return 0;
}

void obx_cli_apis_close(struct obx_cli_apis *a)
{
    obx_cli_watch_conn(NULL);
    for (size_t i = 0; i < a->n; i++) {
        obx_client_conn_free(a->v[i].conn);
        obx_client_free(a->v[i].client);
    }
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

int obx_cli_pid_option(const char *cmd, const char *value)
{
    int64_t pid;
    if (obx_parse_int64(value, 1, INT32_MAX, &pid) < 0) {
        fprintf(stderr, "%s: --pid %s is invalid: expected a process id\n", cmd, value);
        return -1;
    }
    return (int)pid;
}

void obx_cli_api_use(struct obx_cli_api *a)
{
    obx_cli_watch_conn(a->conn);
}

int obx_cli_api_session_path(const char *sid, const char *suffix, char **ret)
{
    for (const char *p = sid; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '/' || *p == '?' || *p == '#' || *p == '%')
            return -EINVAL;
    if (!*sid || strlen(sid) > SESSION_ID_MAX)
        return -EINVAL;
    *ret = obx_xasprintf("/api/v1/sessions/%s%s", sid, suffix);
    return 0;
}

int obx_cli_api_failed(const char *what, long status, const json_t *body)
{
    const char *msg = obx_json_get_str(body, "error", NULL);
    fprintf(stderr, "onlyboxes: %s: %s (HTTP %ld)\n", what, msg ? msg : "refused", status);
    return 1;
}

struct obx_cli_api *obx_cli_apis_find(struct obx_cli_apis *a, const char *cmd, const char *sid,
                                      int *ret_status)
{
    *ret_status = 1;
    if (!a->local || a->n == 1) { /* the console, or the process --pid named */
        obx_cli_api_use(&a->v[0]);
        return &a->v[0];
    }
    _cleanup_free_ char *path = NULL;
    if (obx_cli_api_session_path(sid, "", &path) < 0) {
        fprintf(stderr, "%s: %s: a session id is 1 to 128 visible ASCII characters\n", cmd, sid);
        return NULL;
    }
    _cleanup_free_ int *has = obx_xcalloc(a->n, sizeof(*has));
    _cleanup_free_ int *all = obx_xcalloc(a->n, sizeof(*all));
    size_t n_has = 0;
    struct obx_cli_api *found = NULL;
    for (size_t i = 0; i < a->n && !obx_cli_interrupted(); i++) {
        long status = 0;
        _cleanup_json_ json_t *body = NULL;
        struct obx_error err = OBX_ERROR_INIT;
        all[i] = a->v[i].pid;
        obx_cli_api_use(&a->v[i]);
        if (obx_client_conn_json(a->v[i].conn, "GET", path, NULL, &status, &body, &err) < 0) {
            fprintf(stderr, "onlyboxes: %s\n", err.message);
            continue;
        }
        if (status == 200) {
            has[n_has++] = a->v[i].pid;
            found = &a->v[i];
        }
    }
    char text[256];
    if (n_has == 1) {
        obx_cli_api_use(found);
        return found;
    }
    if (n_has > 1) {
        fprintf(stderr,
                "%s: session %s exists in %zu onlyboxes mcp processes (pids %s): choose one with "
                "--pid PID\n",
                cmd, sid, n_has, pid_list(has, n_has, text, sizeof(text)));
        *ret_status = 2;
        return NULL;
    }
    fprintf(stderr,
            "%s: session %s: session not found in the onlyboxes mcp processes of this "
            "computer (pids %s)\n",
            cmd, sid, pid_list(all, a->n, text, sizeof(text)));
    return NULL;
}
