/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pythonExec in the box: EXEC requests with a "python" member, run by python-runner.py (built
 * into the agent) under a monitor like any command (agent-proc.c), and the box's one interpreter
 * kept between them.
 *
 * One-shot calls behave as `python3 -c CODE`: fresh process, stdout, stderr, exit status, and a
 * timeout or cancel kills the monitor's whole tree. A pooled box is PREPAREd: its interpreter
 * starts before any call and imports the worker's preload list, then waits on its command pipe;
 * the one-shot call that comes takes it over (its pipes become the request's, its output goes to
 * two FIFOs of the call's), so the code runs at once, and it reports its exit status on its report
 * pipe before it exits, so that the answer does not wait for the kernel to tear down a process of
 * ~90 MB (the monitor then lingers until it is gone, as for background jobs). Without a prepared
 * interpreter the runner is started for the call, with the request's own pipes as its stdout and
 * stderr, and the call ends when it exits.
 *
 * Session calls run in the box's persistent interpreter, one at a time, in the way agent-warm.c
 * runs terminal commands in a persistent shell: the request borrows the interpreter's monitor
 * and pipes, gets FIFOs for its output and ends with the runner's report line. A timeout or
 * cancel writes 'I' to the monitor, which sends SIGINT to the interpreter's process group; the
 * code gets a KeyboardInterrupt and the runner reports, keeping the session's variables, and the
 * processes the call started are killed. If no report comes within AGENT_PY_INTERRUPT_GRACE_MS
 * the monitor kills the tree as for any request: the interpreter, and what it held, is lost, and
 * the next call says so. An interpreter that ended (a crash, os._exit, the out-of-memory killer)
 * is noticed on its status pipe and replaced by the next call.
 *
 * What the code leaves to show (a final expression's value, figures, images) comes back in a
 * result file the runner writes, read here into the EXIT frame. Runs on the agent's only thread.
 */
#include "agent-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PY_MAX_PRELOAD 64
#define PY_MAX_MODULE_NAME 128
/* Address space a prepared interpreter may use for its imports on top of the box's per-process
 * limit: once they are done it lowers its limit to what they took plus that limit, so the code
 * has the room it would have in a fresh interpreter. */
#define PY_PRELOAD_AS_ROOM (1ull << 30)

/* Per-call state of a "python" request. */
struct agent_py_call {
    char *base; /* <state dir>/py.<id>: .py (the code), .out and .err (FIFOs), .res (results) */
    bool session;
    bool fresh;       /* a session call that started with a new interpreter */
    bool interrupted; /* the interrupt was sent */
    bool reported;    /* the runner's report for it came */
    uint64_t interrupt_deadline;
    uint64_t since; /* the call's start, for the processes it started (clock ticks) */
    char *previous_end;
};

static const struct agent_proc no_proc = {
    .ctl_fd = -1, .status_fd = -1, .feed_fd = -1, .out_fd = -1, .err_fd = -1};

static void json_freep(json_t **j)
{
    json_decref(*j);
}
#define _cleanup_jansson_ _cleanup_(json_freep)

static int64_t int_member(json_t *o, const char *name, int64_t def)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

static void closep_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void agent_py_init(struct agent *a)
{
    a->py = (struct agent_py){.proc = no_proc};
}

static void call_free(struct agent_py_call *c)
{
    if (!c)
        return;
    static const char *const ext[] = {"py", "out", "err", "res"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(ext); i++) {
        _cleanup_free_ char *path = obx_xasprintf("%s.%s", c->base, ext[i]);
        (void)unlink(path);
    }
    free(c->base);
    free(c->previous_end);
    free(c);
}

/* A wait status in words, for "the interpreter ..." */
static char *status_words(int st)
{
    if (WIFEXITED(st))
        return obx_xasprintf("exited with status %d", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        return obx_xasprintf("was killed by signal %d (%s%s)", WTERMSIG(st),
                             strsignal(WTERMSIG(st)),
                             WTERMSIG(st) == SIGKILL ? "; out of memory?" : "");
    return obx_xstrdup("ended");
}

static void prepare_answer_error(struct agent *a, const char *why)
{
    struct agent_py *py = &a->py;
    if (!py->prepare_waiting)
        return;
    py->prepare_waiting = false;
    agent_send_error(a, py->prepare_id, OBX_ERR_EXECUTION_FAILED,
                     "the Python interpreter did not start: %s", why);
}

/* Drops the interpreter: closing its control pipe makes its monitor kill its tree. reason (may be
 * NULL) is kept for the session's next call. */
static void py_discard(struct agent *a, char *reason)
{
    struct agent_py *py = &a->py;
    prepare_answer_error(a, reason ? reason : "it was stopped");
    agent_proc_close(&py->proc);
    bool session = py->session;
    free(py->end_reason);
    py->end_reason = session ? reason : NULL;
    if (!session)
        free(reason);
    py->state = AGENT_PY_NONE;
    py->session = false;
    py->busy = NULL;
    py->rep_len = 0;
    py->proc = no_proc;
}

/* `python3 -c BOOT FILE [--prepared MODULES]`: -c, so that the code's sys.path and sys.argv are
 * those of `python3 -c CODE`, and the runner in a file, so that `ps` in the box shows a line. */
static const char runner_boot[] =
    "import sys; exec(compile(open(sys.argv[1], 'rb').read(), '<onlyboxes runner>', 'exec'))";

static char **runner_argv(const char *file, const char *preload, uint64_t as_limit)
{
    char **v = obx_xcalloc(8, sizeof(char *));
    size_t i = 0;
    v[i++] = obx_xstrdup("python3");
    v[i++] = obx_xstrdup("-c");
    v[i++] = obx_xstrdup(runner_boot);
    v[i++] = obx_xstrdup(file);
    if (preload) {
        v[i++] = obx_xstrdup("--prepared");
        v[i++] = obx_xstrdup(preload);
        v[i++] = obx_xasprintf("%llu", (unsigned long long)as_limit);
    }
    return v;
}

/* Starts the runner under a monitor of its own; preload NULL: a cold one. Its file is written
 * anew each time: the box's user may have changed it. A prepared one gets PY_PRELOAD_AS_ROOM more
 * address space, which it gives back after its imports. */
static int runner_start(struct agent *a, const char *preload, const struct agent_limits *limits,
                        struct agent_proc *ret)
{
    struct agent_limits lim = *limits;
    if (preload && lim.memory_bytes)
        lim.memory_bytes += PY_PRELOAD_AS_ROOM;
    int rr = agent_mkdir_p(a->cfg.state_dir, 0700);
    if (rr < 0)
        return rr;
    _cleanup_free_ char *file = obx_xasprintf("%s/python-runner.py", a->cfg.state_dir);
    rr = agent_file_create(file, obx_agent_python_runner, strlen(obx_agent_python_runner));
    if (rr < 0)
        return rr;
    char **argv = runner_argv(file, preload, limits->memory_bytes);
    char **envp = agent_env_build(a, NULL);
    struct agent_spawn sp = {.argv = argv, .envp = envp, .cwd = a->cfg.workspace, .limits = lim};
    int r = agent_proc_start(&sp, AGENT_FEED_SCRIPT, ret);
    agent_strv_free(argv);
    agent_strv_free(envp);
    return r;
}

/* Module names as Python spells them: letters, digits, '_' and '.', not starting with '.'. */
static bool module_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PY_MAX_MODULE_NAME || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (const char *p = s; *p; p++)
        if (!(*p == '_' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z')))
            return false;
    return true;
}

void agent_py_prepare(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    struct agent_py *py = &a->py;
    json_error_t je;
    _cleanup_jansson_ json_t *root = json_loadb((const char *)payload, len, 0, &je);
    json_t *list = json_object_get(json_object_get(root, "python"), "preload");
    if (!json_is_array(list) || json_array_size(list) > PY_MAX_PRELOAD) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                         "PREPARE: \"python\".\"preload\" must be an array of at most %d module "
                         "names",
                         PY_MAX_PRELOAD);
        return;
    }
    _cleanup_free_ char *joined = obx_xstrdup("");
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *name = json_string_value(v);
        if (!name || !module_name_ok(name)) {
            agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD,
                             "PREPARE: \"preload\"[%zu] is not a module name", i);
            return;
        }
        char *next = obx_xasprintf("%s%s%s", joined, *joined ? "," : "", name);
        free(joined);
        joined = next;
    }
    if (py->state != AGENT_PY_NONE) {
        agent_send_json(a, OBX_AF_OK, id, json_pack("{s:s}", "python", "running"));
        return;
    }
    int r = runner_start(a, joined, &a->cfg.limits, &py->proc);
    if (r < 0) {
        agent_send_error(a, id, OBX_ERR_EXECUTION_FAILED, "cannot start Python: %s", strerror(-r));
        return;
    }
    /* The runner sends its own stderr to /dev/null before anything else. */
    closep_fd(&py->proc.err_fd);
    py->state = AGENT_PY_STARTING;
    py->prepare_waiting = true;
    py->prepare_id = id;
}

/* True while the interpreter lives: nothing arrives on its status pipe before it exits. */
static bool py_alive(struct agent_py *py)
{
    if (py->state == AGENT_PY_NONE || py->proc.status_fd < 0)
        return false;
    struct pollfd p = {.fd = py->proc.status_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* The interpreter's status pipe spoke while no call ran: it is gone. */
void agent_py_status_read(struct agent *a)
{
    struct agent_py *py = &a->py;
    int st = 0;
    ssize_t n = read(py->proc.status_fd, &st, sizeof(st));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    char *words = n == (ssize_t)sizeof(st) ? status_words(st) : obx_xstrdup("ended");
    char *reason = obx_xasprintf("%s%s", words,
                                 n == (ssize_t)sizeof(st) && WIFEXITED(st) && WEXITSTATUS(st) == 127
                                     ? " (is python3 installed in the box?)"
                                     : "");
    free(words);
    py_discard(a, obx_xasprintf("the interpreter %s between calls", reason));
    free(reason);
}

static void call_report(struct agent_request *r, json_t *j)
{
    if (!r->pyc || r->leader_done)
        return;
    r->pyc->reported = true;
    r->leader_done = true;
    r->leader_status = (int)(int_member(j, "exit_code", 1) & 0xff) << 8;
    /* The code stopped; what it started during the call goes (after a timeout a session keeps
     * its variables, not the call's processes; a normal end leaves background processes alone,
     * as in a notebook). */
    pid_t runner = (pid_t)int_member(j, "pid", 0);
    if (r->pyc->interrupted && runner > 0)
        (void)agent_proc_kill_since(r->monitor, runner, r->pyc->since);
}

static void report_line(struct agent *a, const char *line, size_t len)
{
    struct agent_py *py = &a->py;
    json_error_t je;
    _cleanup_jansson_ json_t *j = json_loadb(line, len, 0, &je);
    if (!json_is_object(j))
        return;
    if (json_is_true(json_object_get(j, "ready"))) {
        if (py->state == AGENT_PY_STARTING)
            py->state = AGENT_PY_IDLE;
        if (py->prepare_waiting) {
            py->prepare_waiting = false;
            agent_send(a, OBX_AF_OK, py->prepare_id, line, len);
        }
        return;
    }
    json_t *id = json_object_get(j, "id");
    if (json_is_integer(id) && py->busy && py->busy->id == (uint32_t)json_integer_value(id))
        call_report(py->busy, j);
}

void agent_py_call_report_read(struct agent_request *r)
{
    /* One line, at the end of a prepared one-shot interpreter's life. */
    char buf[512];
    ssize_t n = read(r->report_fd, buf, sizeof(buf) - 1);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    closep_fd(&r->report_fd);
    if (n <= 0)
        return; /* EOF: it died before its report; the status pipe tells how */
    char *nl = memchr(buf, '\n', (size_t)n);
    json_error_t je;
    _cleanup_jansson_ json_t *j = json_loadb(buf, nl ? (size_t)(nl - buf) : (size_t)n, 0, &je);
    json_t *id = json_object_get(j, "id");
    if (json_is_integer(id) && (uint32_t)json_integer_value(id) == r->id)
        call_report(r, j);
}

void agent_py_report_read(struct agent *a)
{
    struct agent_py *py = &a->py;
    ssize_t n = read(py->proc.out_fd, py->rep + py->rep_len, sizeof(py->rep) - 1 - py->rep_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* EOF: the runner is gone (or closed it); its status pipe says how. */
        closep_fd(&py->proc.out_fd);
        return;
    }
    py->rep_len += (size_t)n;
    char *s = py->rep, *nl;
    while ((nl = memchr(s, '\n', py->rep_len - (size_t)(s - py->rep)))) {
        report_line(a, s, (size_t)(nl - s));
        s = nl + 1;
    }
    py->rep_len -= (size_t)(s - py->rep);
    memmove(py->rep, s, py->rep_len);
    if (py->rep_len == sizeof(py->rep) - 1)
        py->rep_len = 0; /* not a report */
}

/* ---- launching a call ---- */

struct py_limits {
    int64_t images, side, image_bytes, total_bytes, value_chars;
};

static bool limits_read(json_t *spec, struct py_limits *l, char *err, size_t size)
{
    static const struct {
        const char *name;
        int64_t def, max;
        size_t off;
    } f[] = {
        {"max_images", 8, 64, offsetof(struct py_limits, images)},
        {"max_side", 1568, 16384, offsetof(struct py_limits, side)},
        {"max_image_bytes", 400 * 1024, 8 << 20, offsetof(struct py_limits, image_bytes)},
        {"max_total_bytes", 2 << 20, 8 << 20, offsetof(struct py_limits, total_bytes)},
        {"max_value_chars", 100000, 4 << 20, offsetof(struct py_limits, value_chars)},
    };
    json_t *lim = json_object_get(spec, "limits");
    if (lim && !json_is_object(lim)) {
        snprintf(err, size, "\"python\".\"limits\" must be an object");
        return false;
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(f); i++) {
        json_t *v = json_object_get(lim, f[i].name);
        int64_t x = f[i].def;
        if (v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > f[i].max) {
                snprintf(err, size, "\"python\".\"limits\".\"%s\" must be an integer 0-%lld",
                         f[i].name, (long long)f[i].max);
                return false;
            }
            x = json_integer_value(v);
        }
        *(int64_t *)((char *)l + f[i].off) = x;
    }
    return true;
}

/* The command line the runner reads (see python-runner.py). */
static char *request_line(uint32_t id, const char *mode, const char *base, bool fifos,
                          const struct py_limits *l)
{
    return obx_xasprintf("%u\t%s\t%s\t%s\t%lld\t%lld\t%lld\t%lld\t%lld\n", id, mode, base,
                         fifos ? "fifo" : "-", (long long)l->images, (long long)l->side,
                         (long long)l->image_bytes, (long long)l->total_bytes,
                         (long long)l->value_chars);
}

/* The call's FIFOs, read ends open in fds. */
static int fifos_open(const char *base, int fds[2])
{
    _cleanup_free_ char *out = obx_xasprintf("%s.out", base);
    _cleanup_free_ char *err = obx_xasprintf("%s.err", base);
    fds[0] = agent_fifo_open(out);
    if (fds[0] < 0)
        return fds[0];
    fds[1] = agent_fifo_open(err);
    if (fds[1] < 0) {
        closep_fd(&fds[0]);
        return fds[1];
    }
    return 0;
}

/* The line goes into an empty pipe, so it is written whole at once (it is below PIPE_BUF). */
static int line_send(int fd, const char *line)
{
    size_t n = strlen(line);
    return write(fd, line, n) == (ssize_t)n ? 0 : -EPIPE;
}

static int launch_oneshot(struct agent *a, struct agent_request *r, const char *line_cold,
                          const char *line_fifo, const struct agent_limits *limits)
{
    struct agent_py *py = &a->py;
    bool fits = !memcmp(limits, &a->cfg.limits, sizeof(*limits));
    if (fits && !py->session && !py->busy &&
        (py->state == AGENT_PY_STARTING || py->state == AGENT_PY_IDLE) && py_alive(py)) {
        int fds[2];
        int rr = fifos_open(r->pyc->base, fds);
        if (rr < 0)
            return rr;
        if (line_send(py->proc.feed_fd, line_fifo) == 0) {
            prepare_answer_error(a, "a call took it before it was ready");
            r->monitor = py->proc.monitor;
            r->ctl_fd = TAKE_FD(py->proc.ctl_fd);
            r->status_fd = TAKE_FD(py->proc.status_fd);
            /* It reports its exit status before it exits: the answer does not wait for the
             * kernel to tear a large process down. */
            r->report_fd = TAKE_FD(py->proc.out_fd);
            r->out[0].fd = fds[0];
            r->out[1].fd = fds[1];
            agent_proc_close(&py->proc); /* the rest: its command pipe */
            py->proc = no_proc;
            py->state = AGENT_PY_NONE;
            return 0;
        }
        closep_fd(&fds[0]);
        closep_fd(&fds[1]);
        py_discard(a, NULL); /* it went away: the call runs cold */
    }
    struct agent_proc p;
    int rr = runner_start(a, NULL, limits, &p);
    if (rr < 0)
        return rr;
    rr = line_send(p.feed_fd, line_cold);
    if (rr < 0) {
        agent_proc_close(&p);
        return rr;
    }
    closep_fd(&p.feed_fd);
    agent_request_attach(r, &p, NULL, 0);
    return 0;
}

static int launch_session(struct agent *a, struct agent_request *r, bool reset, const char *line,
                          const struct agent_limits *limits)
{
    struct agent_py *py = &a->py;
    if (py->busy)
        return -EBUSY;
    if (py->state != AGENT_PY_NONE && (reset || !py_alive(py))) {
        if (reset) {
            py->session = false; /* asked for: no reason to report */
            py_discard(a, NULL);
        } else {
            agent_py_status_read(a);
        }
    }
    if (reset) {
        free(py->end_reason);
        py->end_reason = NULL;
    }
    if (py->state == AGENT_PY_NONE) {
        int rr = runner_start(a, NULL, limits, &py->proc);
        if (rr < 0)
            return rr;
        closep_fd(&py->proc.err_fd);
        py->state = AGENT_PY_IDLE;
    }
    int fds[2];
    int rr = fifos_open(r->pyc->base, fds);
    if (rr < 0)
        return rr;
    if (line_send(py->proc.feed_fd, line) < 0) {
        closep_fd(&fds[0]);
        closep_fd(&fds[1]);
        py_discard(a, obx_xstrdup("the interpreter stopped taking calls"));
        return -EPIPE;
    }
    r->pyc->fresh = !py->session;
    if (r->pyc->fresh && py->end_reason)
        r->pyc->previous_end = TAKE_PTR(py->end_reason);
    r->pyc->since = agent_proc_ticks_now();
    r->py = py;
    r->monitor = py->proc.monitor;
    r->ctl_fd = py->proc.ctl_fd;
    r->status_fd = py->proc.status_fd;
    r->out[0].fd = fds[0];
    r->out[1].fd = fds[1];
    py->busy = r;
    py->state = AGENT_PY_BUSY;
    py->session = true;
    return 0;
}

int agent_py_launch(struct agent *a, struct agent_request *r, json_t *spec,
                    const struct agent_limits *limits, char *err, size_t size)
{
    json_t *code = json_object_get(spec, "code");
    json_t *jmode = json_object_get(spec, "mode");
    const char *mode = jmode ? json_string_value(jmode) : "oneshot";
    json_t *reset = json_object_get(spec, "reset");
    struct py_limits lim;
    if (!json_is_string(code)) {
        snprintf(err, size, "\"python\".\"code\" must be a string");
        return -EINVAL;
    }
    if (!mode || (!obx_streq(mode, "oneshot") && !obx_streq(mode, "session"))) {
        snprintf(err, size, "\"python\".\"mode\" must be \"oneshot\" or \"session\"");
        return -EINVAL;
    }
    if (reset && !json_is_boolean(reset)) {
        snprintf(err, size, "\"python\".\"reset\" must be a boolean");
        return -EINVAL;
    }
    if (!limits_read(spec, &lim, err, size))
        return -EINVAL;
    int rr = agent_mkdir_p(a->cfg.state_dir, 0700);
    if (rr < 0) {
        snprintf(err, size, "cannot create state directory %s: %s", a->cfg.state_dir,
                 strerror(-rr));
        return -EINVAL;
    }
    struct agent_py_call *c = obx_xcalloc(1, sizeof(*c));
    c->base = obx_xasprintf("%s/py.%u", a->cfg.state_dir, r->id);
    c->session = obx_streq(mode, "session");
    r->pyc = c;
    _cleanup_free_ char *path = obx_xasprintf("%s.py", c->base);
    rr = agent_file_create(path, json_string_value(code), json_string_length(code));
    if (rr >= 0) {
        _cleanup_free_ char *fifo = request_line(r->id, mode, c->base, true, &lim);
        _cleanup_free_ char *cold = request_line(r->id, mode, c->base, false, &lim);
        rr = c->session ? launch_session(a, r, json_is_true(reset), fifo, limits)
                        : launch_oneshot(a, r, cold, fifo, limits);
    }
    if (rr < 0) {
        r->pyc = NULL;
        call_free(c);
        if (rr == -EBUSY) {
            snprintf(err, size, "the session's interpreter is running another call");
            return -EINVAL;
        }
    }
    return rr;
}

/* ---- timeouts and the end of a call ---- */

bool agent_py_interrupt(struct agent_request *r, uint64_t now)
{
    struct agent_py_call *c = r->pyc;
    if (!c || !r->py)
        return false;
    if (c->interrupted)
        return true;
    if (r->ctl_fd < 0 || write(r->ctl_fd, "I", 1) != 1)
        return false;
    c->interrupted = true;
    c->interrupt_deadline = now + AGENT_PY_INTERRUPT_GRACE_MS;
    return true;
}

uint64_t agent_py_tick(struct agent_request *r, uint64_t now, bool *kill_now)
{
    struct agent_py_call *c = r->pyc;
    *kill_now = false;
    if (!c || !c->interrupted || r->killing || r->leader_done)
        return 0;
    if (now < c->interrupt_deadline)
        return c->interrupt_deadline;
    *kill_now = true; /* it did not stop: killed, as a one-shot call would be */
    return 0;
}

/* Why a session call's interpreter is gone ("the interpreter ..."); NULL when it is not. */
static char *lost_reason(const struct agent_request *r)
{
    if (r->pyc->interrupted && r->killing && !r->shell_died)
        return obx_xasprintf("the interpreter did not stop within %u ms of the interrupt, so it "
                             "was killed",
                             AGENT_PY_INTERRUPT_GRACE_MS);
    if (r->shell_died || (!r->killing && (r->monitor_done || !r->pyc->reported))) {
        _cleanup_free_ char *w = status_words(r->leader_status);
        return obx_xasprintf("during the call the interpreter %s", w);
    }
    if (r->killing)
        return obx_xstrdup("the interpreter was killed");
    return NULL;
}

/* The runner's result file, or a note saying why it cannot be read. */
static json_t *result_read(const char *base)
{
    _cleanup_free_ char *path = obx_xasprintf("%s.res", base);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return json_object();
    struct stat st;
    const char *why = NULL;
    _cleanup_free_ char *data = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        why = "it is not a file";
    else if ((uint64_t)st.st_size > AGENT_PY_MAX_RESULT)
        why = "it is larger than the limit";
    size_t got = 0;
    if (!why) {
        data = obx_xmalloc((size_t)st.st_size + 1);
        while (got < (size_t)st.st_size) {
            ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got != (size_t)st.st_size)
            why = "it could not be read";
    }
    json_error_t je;
    json_t *j = why ? NULL : json_loadb(data, got, 0, &je);
    if (!why && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
        why = "it is not valid JSON";
    }
    if (why)
        return json_pack("{s[s+]}", "notes", "the images and value the code left were lost: ", why);
    return j;
}

void agent_py_exit(struct agent *a, struct agent_request *r, json_t *o)
{
    struct agent_py_call *c = r->pyc;
    if (!c)
        return;
    json_t *p = result_read(c->base);
    if (c->session) {
        char *lost = lost_reason(r);
        json_object_set_new(p, "interpreter", json_string(c->fresh ? "new" : "kept"));
        json_object_set_new(p, "state", json_string(lost ? "lost" : "kept"));
        json_object_set_new(p, "interrupted", json_boolean(c->interrupted));
        if (lost)
            json_object_set_new(p, "end", json_string(lost));
        if (c->previous_end)
            json_object_set_new(p, "previous_end", json_string(c->previous_end));
        free(lost);
    }
    json_object_set_new(o, "python", p);
}

void agent_py_release(struct agent *a, struct agent_request *r)
{
    if (r->pyc && !r->py)
        closep_fd(&r->report_fd); /* a one-shot's own, when its report never came */
    struct agent_py *py = r->py;
    if (py) {
        char *lost = lost_reason(r);
        r->py = NULL;
        r->ctl_fd = r->status_fd = -1; /* the interpreter's */
        py->busy = NULL;
        if (lost)
            py_discard(a, lost);
        else
            py->state = AGENT_PY_IDLE;
    }
    call_free(r->pyc);
    r->pyc = NULL;
}

void agent_py_terminal_used(struct agent *a)
{
    struct agent_py *py = &a->py;
    if (py->state != AGENT_PY_NONE && !py->session && !py->busy)
        py_discard(a, NULL);
}

bool agent_py_reaped(struct agent *a, pid_t pid)
{
    struct agent_py *py = &a->py;
    if (py->state == AGENT_PY_NONE || py->busy || py->proc.monitor != pid)
        return false;
    py_discard(a, obx_xstrdup("the interpreter ended between calls"));
    return true;
}

void agent_py_shutdown(struct agent *a)
{
    struct agent_py *py = &a->py;
    agent_proc_close(&py->proc);
    free(py->end_reason);
    py->end_reason = NULL;
    py->state = AGENT_PY_NONE;
}
