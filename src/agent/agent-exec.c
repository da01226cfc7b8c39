/* SPDX-License-Identifier: Apache-2.0 */
/*
 * EXEC requests: payload validation, the child's environment and pipes, output streaming with
 * per-stream limits, timeouts, cancellation and the EXIT frame. Runs on the agent's only thread;
 * the processes themselves are handled in agent-proc.c.
 *
 * A request ends when its leader exited and both output pipes reached EOF. Background jobs that
 * keep the pipes open get AGENT_EOF_GRACE_MS, then the pipes are closed and EXIT is sent while
 * they keep running under their monitor (which then "lingers" until they are gone). On timeout or
 * cancel the monitor kills the whole tree; EXIT follows once the monitor has exited, i.e. once no
 * process of the request is left.
 */
#include "agent-internal.h"

#include "common/runtime.h"

#include "common/utf8.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define AGENT_MAX_ARGV 65536

struct agent_request *agent_request_find(struct agent *a, uint32_t id)
{
    for (size_t i = 0; i < AGENT_MAX_REQUESTS; i++)
        if (a->req[i].used && a->req[i].id == id)
            return &a->req[i];
    return NULL;
}

static void closep_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void agent_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* Reads an optional non-negative integer field; returns false (with a message) on a bad type. */
static bool get_u64(json_t *obj, const char *name, uint64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(err, errlen, "\"%s\" must be a non-negative integer", name);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* An optional string without NUL bytes; *out stays NULL when absent. */
static bool get_str(json_t *obj, const char *name, const char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, errlen, "\"%s\" must be a string without NUL bytes", name);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

char **agent_env_build(const struct agent *a, json_t *env)
{
    size_t n = env ? json_object_size(env) : 0;
    char **v = obx_xcalloc(21 + n + 1, sizeof(char *));
    size_t i = 0;
    /* Last: what pip installs into the user site (~/.local), e.g. `pip install black`. */
    v[i++] = obx_xasprintf("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:%s/"
                           ".local/bin",
                           a->cfg.workspace);
    v[i++] = obx_xasprintf("HOME=%s", a->cfg.workspace);
    v[i++] = obx_xstrdup("LANG=C.UTF-8");
    v[i++] = obx_xstrdup("TERM=dumb");
    v[i++] = obx_xstrdup("PYTHONUNBUFFERED=1");
    v[i++] = obx_xstrdup("PYTHONDONTWRITEBYTECODE=1");
    v[i++] = obx_xstrdup("USER=sandbox");
    /* Plots render to files and to pythonExec's images, never to a display a box does not have
     * (Debian's matplotlibrc asks for TkAgg); caches (matplotlib's fonts, pip) stay out of the
     * workspace, so a pooled box's preload leaves nothing in it. */
    v[i++] = obx_xstrdup("MPLBACKEND=Agg");
    v[i++] = obx_xstrdup("MPLCONFIGDIR=/tmp/.cache/matplotlib");
    v[i++] = obx_xstrdup("XDG_CACHE_HOME=/tmp/.cache");
    /* `pip install` as the box user goes to the user site (~/.local), the one place it can write:
     * Debian's "externally managed" marker protects the host's Python, which a box cannot change
     * anyway, and the box and its user site go together. */
    v[i++] = obx_xstrdup("PIP_BREAK_SYSTEM_PACKAGES=1");
    if (a->cfg.egress_socket) {
        /* Network "allowlist": what pip, curl, npm, git and urllib read to use a proxy; curl
         * ignores an upper-case HTTP_PROXY, and others read only that one. */
        static const char *const names[] = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                            "http_proxy", "https_proxy", "all_proxy"};
        for (size_t k = 0; k < OBX_ARRAY_SIZE(names); k++)
            v[i++] = obx_xasprintf("%s=http://127.0.0.1:%d", names[k], OBX_BOX_EGRESS_PORT);
        v[i++] = obx_xstrdup("NO_PROXY=localhost,127.0.0.1,::1");
        v[i++] = obx_xstrdup("no_proxy=localhost,127.0.0.1,::1");
    }
    const char *name;
    json_t *val;
    json_object_foreach(env, name, val)
    {
        size_t nl = strlen(name);
        char *kv = obx_xasprintf("%s=%s", name, json_string_value(val));
        size_t j;
        for (j = 0; j < i; j++)
            if (strncmp(v[j], name, nl) == 0 && v[j][nl] == '=')
                break;
        if (j < i) {
            free(v[j]);
            v[j] = kv;
        } else {
            v[i++] = kv;
        }
    }
    v[i] = NULL;
    return v;
}

static bool env_valid(json_t *env, char *err, size_t errlen)
{
    if (!env || json_is_null(env))
        return true;
    if (!json_is_object(env)) {
        snprintf(err, errlen, "\"env\" must be an object of strings");
        return false;
    }
    const char *name;
    json_t *val;
    json_object_foreach(env, name, val)
    {
        if (!*name || strchr(name, '=')) {
            snprintf(err, errlen, "\"env\": invalid variable name \"%.100s\"", name);
            return false;
        }
        if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val)) {
            snprintf(err, errlen, "\"env\".%.100s must be a string without NUL bytes", name);
            return false;
        }
    }
    return true;
}

static bool limits_parse(json_t *root, struct agent_limits *l, char *err, size_t errlen)
{
    json_t *lim = json_object_get(root, "limits");
    if (!lim || json_is_null(lim))
        return true;
    if (!json_is_object(lim)) {
        snprintf(err, errlen, "\"limits\" must be an object");
        return false;
    }
    struct agent_limits x = {0};
    if (!get_u64(lim, "memory_bytes", &x.memory_bytes, err, errlen) ||
        !get_u64(lim, "nproc", &x.nproc, err, errlen) ||
        !get_u64(lim, "fsize_bytes", &x.fsize_bytes, err, errlen) ||
        !get_u64(lim, "cpu_sec", &x.cpu_sec, err, errlen) ||
        !get_u64(lim, "nofile", &x.nofile, err, errlen))
        return false;
    if (x.memory_bytes)
        l->memory_bytes = x.memory_bytes;
    if (x.nproc)
        l->nproc = x.nproc;
    if (x.fsize_bytes)
        l->fsize_bytes = x.fsize_bytes;
    if (x.cpu_sec)
        l->cpu_sec = x.cpu_sec;
    if (x.nofile)
        l->nofile = x.nofile;
    return true;
}

static char **argv_parse(json_t *arr, char *err, size_t errlen)
{
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0 || n > AGENT_MAX_ARGV) {
        snprintf(err, errlen, "\"argv\" must be a non-empty array of strings");
        return NULL;
    }
    char **v = obx_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(arr, i);
        if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s) ||
            (i == 0 && json_string_length(s) == 0)) {
            snprintf(err, errlen, "\"argv\"[%zu] must be a %sstring without NUL bytes", i,
                     i == 0 ? "non-empty " : "");
            agent_strv_free(v);
            return NULL;
        }
        v[i] = obx_xstrdup(json_string_value(s));
    }
    return v;
}

/* Closes one of the request's monitor pipes, which a request run by a persistent shell only
 * borrows from the shell. */
static void request_close_fd(struct agent_request *r, int *fd)
{
    if (r->zy || r->py)
        *fd = -1;
    else
        closep_fd(fd);
}

static void request_free(struct agent *a, struct agent_request *r)
{
    agent_warm_release(a, r);
    agent_py_release(a, r);
    request_close_fd(r, &r->status_fd);
    request_close_fd(r, &r->ctl_fd);
    closep_fd(&r->stdin_fd);
    closep_fd(&r->out[0].fd);
    closep_fd(&r->out[1].fd);
    free(r->stdin_buf);
    free(r->state_new);
    free(r->state_file);
    free(r->state_key);
    free(r->zy_base);
    memset(r, 0, sizeof(*r));
    r->status_fd = r->stdin_fd = r->ctl_fd = r->report_fd = r->out[0].fd = r->out[1].fd = -1;
}

void agent_request_attach(struct agent_request *r, const struct agent_proc *p, const char *in,
                          size_t in_len)
{
    r->monitor = p->monitor;
    r->ctl_fd = p->ctl_fd;
    r->status_fd = p->status_fd;
    r->stdin_fd = p->feed_fd;
    r->out[0].fd = p->out_fd;
    r->out[1].fd = p->err_fd;
    if (r->stdin_fd >= 0 && in_len > 0) {
        r->stdin_buf = obx_xmalloc(in_len);
        memcpy(r->stdin_buf, in, in_len);
        r->stdin_len = in_len;
    } else {
        closep_fd(&r->stdin_fd);
    }
}

/* Forks the monitor and fills r; returns 0 or -errno (r untouched). */
static int request_spawn(struct agent_request *r, struct agent_spawn *sp, const char *in,
                         size_t in_len)
{
    struct agent_proc p;
    int rr = agent_proc_start(sp, in ? AGENT_FEED_STDIN : AGENT_FEED_NONE, &p);
    if (rr < 0)
        return rr;
    agent_request_attach(r, &p, in, in_len);
    return 0;
}

/* A terminal request the key's persistent shell can run: nothing in it that the shell, started
 * before the request existed, could not have been given. */
static bool warm_eligible(const struct agent *a, json_t *env, const char *cwd_in, json_t *jin,
                          const struct agent_limits *limits, const char *shell)
{
    return !cwd_in && (!env || json_is_null(env) || json_object_size(env) == 0) &&
           (!jin || json_is_null(jin)) && !memcmp(limits, &a->cfg.limits, sizeof(*limits)) &&
           strlen(shell) <= AGENT_WARM_MAX_COMMAND;
}

/* An EXEC request as parsed: borrowed from root, which the request owns until it is started. */
struct exec_req {
    json_t *root;
    json_t *argv, *stdin_text, *env, *python;
    const char *shell, *state, *cwd;
    uint64_t timeout, out_limit, err_limit;
    struct agent_limits limits;
};

/* Parse: the payload's JSON and its fields, each checked for its type. */
static bool exec_parse(struct agent *a, const uint8_t *payload, size_t len, struct exec_req *q,
                       char *err, size_t size)
{
    *q = (struct exec_req){.state = "default", .limits = a->cfg.limits};
    if (len >= AGENT_MAX_EXEC_JSON) {
        snprintf(err, size, "payload is %zu bytes; the limit is %u bytes", len,
                 AGENT_MAX_EXEC_JSON - 1);
        return false;
    }
    json_error_t je;
    q->root = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!q->root || !json_is_object(q->root)) {
        snprintf(err, size, "payload is not a JSON object%s%s", q->root ? "" : ": ",
                 q->root ? "" : je.text);
        return false;
    }
    q->argv = json_object_get(q->root, "argv");
    q->stdin_text = json_object_get(q->root, "stdin");
    q->env = json_object_get(q->root, "env");
    q->python = json_object_get(q->root, "python");
    if (json_is_null(q->python))
        q->python = NULL;
    if (!get_str(q->root, "shell", &q->shell, err, size) ||
        !get_str(q->root, "state", &q->state, err, size) ||
        !get_str(q->root, "cwd", &q->cwd, err, size) ||
        !get_u64(q->root, "timeout_ms", &q->timeout, err, size) ||
        !get_u64(q->root, "stdout_limit", &q->out_limit, err, size) ||
        !get_u64(q->root, "stderr_limit", &q->err_limit, err, size) ||
        !limits_parse(q->root, &q->limits, err, size) || !env_valid(q->env, err, size))
        return false;
    if (q->stdin_text && !json_is_null(q->stdin_text) && !json_is_string(q->stdin_text)) {
        snprintf(err, size, "\"stdin\" must be a string");
        return false;
    }
    if (!q->state)
        q->state = "default";
    return true;
}

/* Validate: what the fields must hold together, and the working directory (*ret_cwd, the
 * resolved path, which the caller frees). */
static bool exec_validate(struct agent *a, const struct exec_req *q, char **ret_cwd, char *err,
                          size_t size)
{
    if ((q->argv && !json_is_null(q->argv)) + !!q->shell + !!q->python != 1) {
        snprintf(err, size, "exactly one of \"argv\", \"shell\" and \"python\" is required");
        return false;
    }
    if (q->python && !json_is_object(q->python)) {
        snprintf(err, size, "\"python\" must be an object");
        return false;
    }
    if (q->python && ((q->env && !json_is_null(q->env)) || q->cwd ||
                      (q->stdin_text && !json_is_null(q->stdin_text)))) {
        snprintf(err, size, "\"python\" takes no \"env\", \"cwd\" or \"stdin\"");
        return false;
    }
    if (q->timeout > UINT64_C(1) << 40) {
        snprintf(err, size, "\"timeout_ms\" is too large");
        return false;
    }
    char *cwd = q->cwd ? agent_resolve_path(a, q->cwd) : obx_xstrdup(a->cfg.workspace);
    struct stat cst;
    if (stat(cwd, &cst) < 0 || !S_ISDIR(cst.st_mode)) {
        snprintf(err, size, "\"cwd\": %.300s: %s", cwd,
                 access(cwd, F_OK) < 0 ? strerror(errno) : strerror(ENOTDIR));
        free(cwd);
        return false;
    }
    *ret_cwd = cwd;
    return true;
}

/* Act: runs the command in r, in the key's persistent shell when it can, else under a monitor
 * of its own. 0, -EINVAL with err (r freed), or another negative errno (r freed). */
static int exec_launch(struct agent *a, struct agent_request *r, const struct exec_req *q,
                       const char *cwd, char *err, size_t size)
{
    char **argv;
    if (q->python)
        return agent_py_launch(a, r, q->python, &q->limits, err, size);
    if (q->shell) {
        agent_py_terminal_used(a);
        if (agent_shell_paths(a, r, q->state, err, size) < 0) {
            request_free(a, r);
            return -EINVAL;
        }
        if (warm_eligible(a, q->env, q->cwd, q->stdin_text, &q->limits, q->shell) &&
            agent_warm_run(a, r, q->shell) == 0)
            return 0;
        /* The key is in use: its next request should find a shell. */
        agent_warm_want(a, q->state);
        argv = agent_shell_argv(r, q->shell, q->cwd != NULL, q->env);
    } else if (!(argv = argv_parse(q->argv, err, size))) {
        return -EINVAL;
    }
    char **envp = agent_env_build(a, q->env);
    struct agent_spawn sp = {.argv = argv, .envp = envp, .cwd = cwd, .limits = q->limits};
    const char *in = json_is_string(q->stdin_text) ? json_string_value(q->stdin_text) : NULL;
    int rr = request_spawn(r, &sp, in, in ? json_string_length(q->stdin_text) : 0);
    agent_strv_free(argv);
    agent_strv_free(envp);
    if (rr < 0)
        request_free(a, r);
    return rr;
}

void agent_exec_start(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    if (agent_request_find(a, id)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "request id %u is already running", id);
        return;
    }
    struct agent_request *r = NULL;
    for (size_t i = 0; i < AGENT_MAX_REQUESTS && !r; i++)
        if (!a->req[i].used)
            r = &a->req[i];
    if (!r) {
        agent_send_error(a, id, OBX_ERR_NO_CAPACITY, "the box already runs %d requests",
                         AGENT_MAX_REQUESTS);
        return;
    }
    char err[512] = "";
    struct exec_req q;
    _cleanup_free_ char *cwd = NULL;
    bool ok = exec_parse(a, payload, len, &q, err, sizeof(err)) &&
              exec_validate(a, &q, &cwd, err, sizeof(err));
    int rr = -EINVAL;
    if (ok) {
        r->id = id;
        r->status_fd = r->stdin_fd = r->ctl_fd = r->report_fd = r->out[0].fd = r->out[1].fd = -1;
        rr = exec_launch(a, r, &q, cwd, err, sizeof(err));
    }
    if (rr == 0 && q.shell)
        agent_pty_exec_begin(a, id, q.state, q.shell);
    json_decref(q.root);
    if (rr == -EINVAL) {
        /* "EXEC payload is not a JSON object", "EXEC: \"stdin\" must be a string" */
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "EXEC%s %s",
                         strncmp(err, "payload ", 8) == 0 ? "" : ":", err);
        return;
    }
    if (rr < 0) {
        agent_send_error(a, id, OBX_ERR_EXECUTION_FAILED, "cannot start the command: %s",
                         strerror(-rr));
        return;
    }
    r->used = true;
    r->start_ms = agent_now_ms();
    r->deadline_ms = q.timeout ? r->start_ms + q.timeout : 0;
    r->out[0].type = OBX_AF_STDOUT;
    r->out[1].type = OBX_AF_STDERR;
    r->out[0].limit = q.out_limit ? q.out_limit : AGENT_DEFAULT_OUTPUT_LIMIT;
    r->out[1].limit = q.err_limit ? q.err_limit : AGENT_DEFAULT_OUTPUT_LIMIT;
}

/* Sends data[0..n) within the stream's limit. data starts on a character boundary. */
static void stream_emit(struct agent *a, struct agent_request *r, struct agent_stream *s,
                        const uint8_t *data, size_t n)
{
    if (s->truncated || n == 0)
        return;
    uint64_t room = s->limit - s->kept;
    size_t take = n;
    if ((uint64_t)n > room) {
        take = obx_utf8_cut((const char *)data, n, (size_t)room);
        s->truncated = true;
    }
    if (take > 0)
        agent_send(a, s->type, r->id, data, take);
    if (take > 0 && r->state_key)
        agent_pty_exec_output(a, r->id, r->state_key, s->type, data, take);
    s->kept += take;
}

static void stream_close(struct agent *a, struct agent_request *r, struct agent_stream *s)
{
    closep_fd(&s->fd);
    stream_emit(a, r, s, s->hold, s->hold_len);
    s->hold_len = 0;
}

int agent_stream_read(struct agent *a, struct agent_request *r, struct agent_stream *s)
{
    static uint8_t buf[OBX_AGENT_OUTPUT_CHUNK];
    if (s->fd < 0)
        return 0;
    memcpy(buf, s->hold, s->hold_len);
    ssize_t n = read(s->fd, buf + s->hold_len, sizeof(buf) - s->hold_len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return -EAGAIN;
        n = 0; /* treat errors as EOF */
    }
    if (n == 0) {
        stream_close(a, r, s);
        return 0;
    }
    size_t total = s->hold_len + (size_t)n;
    size_t tail = obx_utf8_incomplete_tail((const char *)buf, total);
    stream_emit(a, r, s, buf, total - tail);
    if (s->truncated)
        tail = 0;
    memcpy(s->hold, buf + total - tail, tail);
    s->hold_len = tail;
    return 1;
}

void agent_request_stdin_write(struct agent_request *r)
{
    while (r->stdin_fd >= 0 && r->stdin_off < r->stdin_len) {
        ssize_t n = write(r->stdin_fd, r->stdin_buf + r->stdin_off, r->stdin_len - r->stdin_off);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            if (errno == EINTR)
                continue;
            break; /* EPIPE: the child does not read its stdin */
        }
        r->stdin_off += (size_t)n;
    }
    closep_fd(&r->stdin_fd);
    free(r->stdin_buf);
    r->stdin_buf = NULL;
}

void agent_request_status_read(struct agent_request *r)
{
    if (r->status_fd < 0)
        return;
    int st;
    ssize_t n = read(r->status_fd, &st, sizeof(st));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == (ssize_t)sizeof(st) && !r->leader_done) {
        r->leader_done = true;
        r->leader_status = st;
        /* A persistent shell's (or interpreter's) own status: it died while its command ran. */
        r->shell_died = r->zy != NULL || r->py != NULL;
    }
    request_close_fd(r, &r->status_fd);
}

static void request_kill(struct agent_request *r, uint64_t now)
{
    if (r->killing)
        return;
    r->killing = true;
    r->kill_deadline_ms = now + AGENT_KILL_GRACE_MS;
    r->grace_ms = 0;
    closep_fd(&r->stdin_fd);
    if (r->ctl_fd >= 0 && write(r->ctl_fd, "K", 1) < 0 && errno != EAGAIN)
        request_close_fd(r, &r->ctl_fd); /* closing it asks the monitor to kill, too */
}

void agent_exec_cancel(struct agent *a, uint32_t id)
{
    struct agent_request *r = agent_request_find(a, id);
    /* After the leader exited the request is only waiting for EOF: nothing left to cancel. */
    if (!r || r->leader_done || r->killing)
        return;
    r->canceled = true;
    if (!agent_py_interrupt(r, agent_now_ms()))
        request_kill(r, agent_now_ms());
}

void agent_linger_add(struct agent *a, pid_t pid, int ctl_fd)
{
    if (a->n_linger == a->cap_linger) {
        a->cap_linger = a->cap_linger ? a->cap_linger * 2 : 8;
        a->linger = obx_xrealloc(a->linger, a->cap_linger * sizeof(*a->linger));
    }
    a->linger[a->n_linger++] = (struct agent_linger){pid, ctl_fd};
}

static void request_finish(struct agent *a, struct agent_request *r)
{
    for (int i = 0; i < 2; i++) {
        struct agent_stream *s = &r->out[i];
        /* Take what is already buffered in the pipe (bounded: a background job may keep
         * writing) before closing it. */
        for (int k = 0; k < 64; k++)
            if (agent_stream_read(a, r, s) <= 0)
                break;
        stream_close(a, r, s);
    }
    int code = -1, sig = 0;
    if (r->timed_out || r->canceled) {
        sig = SIGKILL;
    } else if (WIFEXITED(r->leader_status)) {
        code = WEXITSTATUS(r->leader_status);
    } else if (WIFSIGNALED(r->leader_status)) {
        sig = WTERMSIG(r->leader_status);
    }
    json_t *o = json_pack("{s:i, s:i, s:b, s:b, s:b, s:b, s:I}", "exit_code", code, "signal", sig,
                          "timed_out", r->timed_out, "canceled", r->canceled, "stdout_truncated",
                          r->out[0].truncated, "stderr_truncated", r->out[1].truncated,
                          "duration_ms", (json_int_t)(agent_now_ms() - r->start_ms));
    agent_py_exit(a, r, o);
    if (r->state_key)
        agent_pty_exec_end(a, r->id, r->state_key, o);
    agent_send_json(a, OBX_AF_EXIT, r->id, o);
    /* The answer goes out before the bookkeeping below; the worker's next request is read only
     * after it is done. */
    agent_flush(a);
    agent_shell_finish(r);
    if (!r->zy && !r->py && !r->monitor_done && r->monitor > 0) {
        agent_linger_add(a, r->monitor, r->ctl_fd);
        r->ctl_fd = -1;
    }
    agent_warm_release(a, r);
    if (r->state_key)
        agent_warm_want(a, r->state_key);
    request_free(a, r);
}

uint64_t agent_request_tick(struct agent *a, struct agent_request *r, uint64_t now)
{
    if (!r->used)
        return 0;
    /* `kill $$` in a command run by a persistent shell: end the command as if its own shell had
     * died, taking everything it started with it. */
    if (r->shell_died && !r->killing)
        request_kill(r, now);
    if (!r->killing && !r->leader_done && !r->timed_out && r->deadline_ms &&
        now >= r->deadline_ms) {
        r->timed_out = true;
        /* A session's Python code is interrupted first: its variables may survive. */
        if (!agent_py_interrupt(r, now))
            request_kill(r, now);
    }
    bool kill_now;
    uint64_t interrupt_deadline = agent_py_tick(r, now, &kill_now);
    if (kill_now)
        request_kill(r, now);
    if (r->killing && !r->monitor_done && now >= r->kill_deadline_ms) {
        agent_log("request %u: monitor %d did not finish killing; giving up", r->id,
                  (int)r->monitor);
        (void)kill(r->monitor, SIGKILL);
        r->monitor_done = true;
    }
    bool ended = r->killing ? r->monitor_done : r->leader_done;
    if (!ended)
        return r->killing           ? r->kill_deadline_ms
               : interrupt_deadline ? interrupt_deadline
               : r->timed_out       ? 0
                                    : r->deadline_ms;
    if (r->out[0].fd < 0 && r->out[1].fd < 0) {
        request_finish(a, r);
        return 0;
    }
    if (!r->grace_ms)
        r->grace_ms = now + AGENT_EOF_GRACE_MS;
    if (now < r->grace_ms)
        return r->grace_ms;
    /* While the outbound queue is full the pipes are not read; do not lose what the leader
     * wrote before it exited just because the worker is slow. */
    if (a->outq.bytes > AGENT_BACKPRESSURE_BYTES) {
        r->grace_ms = now + AGENT_EOF_GRACE_MS;
        return r->grace_ms;
    }
    request_finish(a, r);
    return 0;
}

void agent_child_reaped(struct agent *a, pid_t pid, int status)
{
    if (agent_relay_reaped(a, pid, status) || agent_pty_reaped(a, pid, status))
        return;
    for (size_t i = 0; i < AGENT_MAX_REQUESTS; i++) {
        struct agent_request *r = &a->req[i];
        if (!r->used || r->monitor != pid)
            continue;
        r->monitor_done = true;
        r->monitor_status = status;
        agent_request_status_read(r);
        if (!r->leader_done) {
            /* The monitor died without a word (killed from inside the box?). */
            r->leader_done = true;
            r->leader_status = WIFSIGNALED(status) ? status : (127 << 8);
        }
        return;
    }
    for (size_t i = 0; i < a->n_linger; i++) {
        if (a->linger[i].pid != pid)
            continue;
        if (a->linger[i].ctl_fd >= 0)
            close(a->linger[i].ctl_fd);
        a->linger[i] = a->linger[--a->n_linger];
        return;
    }
    if (agent_warm_reaped(a, pid) || agent_py_reaped(a, pid))
        return;
    /* Anything else is an orphan re-parented to us (PID 1 or subreaper): reaping is all. */
}

void agent_exec_shutdown(struct agent *a)
{
    if (a->pid1)
        (void)kill(-1, SIGKILL);
    agent_proc_kill_children();
    for (size_t i = 0; i < AGENT_MAX_REQUESTS; i++)
        if (a->req[i].used) {
            if (a->req[i].state_new)
                (void)unlink(a->req[i].state_new);
            request_free(a, &a->req[i]);
        }
    for (size_t i = 0; i < a->n_linger; i++)
        if (a->linger[i].ctl_fd >= 0)
            close(a->linger[i].ctl_fd);
    free(a->linger);
    a->linger = NULL;
    a->n_linger = a->cap_linger = 0;
    agent_warm_shutdown(a);
    agent_py_shutdown(a);
}
