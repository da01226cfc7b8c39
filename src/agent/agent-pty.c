/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live terminals: PTY_OPEN starts an interactive shell on a new pseudo-terminal for a person
 * (the dashboard's terminal), beside the box's other requests. The shell starts where the
 * session's terminalExec commands are: a small /bin/sh wrapper sources the terminal state saved
 * under the request's key (exported variables and the working directory, see agent-shell.c) and
 * execs bash (or sh). Nothing the person does is saved back: the agent's next command finds the
 * state its own last command left, and the same files.
 *
 * The shell runs under a monitor like an EXEC (agent-proc.c, AGENT_FEED_TTY): it leads a session
 * of its own with the terminal as its controlling one, has the agent's limits, and when the
 * terminal closes (CANCEL, the idle timeout, or the shell exiting) the monitor kills everything
 * started in it; then EXIT goes out.
 *
 * Flow: output goes out as PTY_OUTPUT only while fewer than "window" bytes wait for the worker's
 * PTY_ACK; past that the master is not read, so a flood (`yes`) makes the shell block instead
 * of filling memory anywhere between here and the browser. Input is written as the terminal
 * takes it, at most OBX_AGENT_PTY_MAX_INPUT bytes pending.
 *
 * The agent's own commands in the same state key are shown in every terminal of that key as
 * PTY_EVENTs (the command, its output up to OBX_AGENT_PTY_MIRROR_LIMIT, its end); they are left
 * out while the terminal's reader is a window behind, so a slow browser never slows a command.
 * Runs on the agent's only thread.
 */
#include "agent-internal.h"

#include "common/utf8.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

#define PTY_MAX_SIDE 1000
#define PTY_MAX_IDLE_MS (7ull * 24 * 3600 * 1000)
#define PTY_MIN_WINDOW 4096u
#define PTY_COMMAND_SHOWN 4096u /* of a command's text, in its "exec" event */

/* $1 the state file, $2 the shell. The state is sourced by sh as terminal mode does it; the
 * interactive shell then inherits what it exported and the directory. */
static const char wrapper[] =
    "__obx_in=$1\n"
    "if [ -f \"$__obx_in\" ]; then . \"$__obx_in\"; fi\n"
    "if [ -n \"${__OBX_CWD+x}\" ]; then cd -- \"$__OBX_CWD\" 2>/dev/null; unset __OBX_CWD; fi\n"
    "unset __obx_in\n"
    "shift\n"
    "case $1 in */bash) exec \"$1\" --noprofile --norc -i ;; esac\n"
    "exec \"$1\" -i\n";

static struct agent_pty *pty_find(struct agent *a, uint32_t id)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++)
        if (a->pty[i].used && a->pty[i].id == id)
            return &a->pty[i];
    return NULL;
}

static void closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void pty_reset(struct agent_pty *p)
{
    memset(p, 0, sizeof(*p));
    p->master = p->proc.ctl_fd = p->proc.status_fd = p->proc.feed_fd = p->proc.out_fd =
        p->proc.err_fd = -1;
}

static void pty_free(struct agent_pty *p)
{
    closep(&p->master);
    agent_proc_close(&p->proc);
    free(p->state_key);
    free(p->in);
    pty_reset(p);
}

void agent_pty_init(struct agent *a)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++)
        pty_reset(&a->pty[i]);
}

static bool get_uint(json_t *o, const char *name, uint64_t min, uint64_t max, uint64_t *ret,
                     char *err, size_t size)
{
    json_t *v = json_object_get(o, name);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
        (uint64_t)json_integer_value(v) > max) {
        snprintf(err, size, "\"%s\" must be an integer from %llu to %llu", name,
                 (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *ret = (uint64_t)json_integer_value(v);
    return true;
}

struct pty_req {
    const char *state;
    uint64_t cols, rows, idle_ms, window;
};

static bool pty_parse(json_t *o, struct pty_req *q, char *err, size_t size)
{
    *q = (struct pty_req){"default", 80, 24, 0, OBX_AGENT_PTY_WINDOW};
    if (!json_is_object(o)) {
        snprintf(err, size, "payload is not a JSON object");
        return false;
    }
    json_t *st = json_object_get(o, "state");
    if (st && !json_is_null(st)) {
        if (!json_is_string(st) || !agent_shell_key_valid(json_string_value(st))) {
            snprintf(err, size,
                     "\"state\" must be 1-128 characters of [A-Za-z0-9._-] not "
                     "starting with '.'");
            return false;
        }
        q->state = json_string_value(st);
    }
    return get_uint(o, "cols", 1, PTY_MAX_SIDE, &q->cols, err, size) &&
           get_uint(o, "rows", 1, PTY_MAX_SIDE, &q->rows, err, size) &&
           get_uint(o, "idle_timeout_ms", 0, PTY_MAX_IDLE_MS, &q->idle_ms, err, size) &&
           get_uint(o, "window", PTY_MIN_WINDOW, OBX_AGENT_PTY_MAX_WINDOW, &q->window, err, size);
}

/* A new pseudo-terminal of the given size: our side in *ret_master (non-blocking), the slave's
 * descriptor returned; -errno on failure. */
static int pty_make(unsigned cols, unsigned rows, int *ret_master)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    char name[128];
    int s = -1;
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0 ||
        (s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
        int e = errno ? errno : EIO;
        close(m);
        return -e;
    }
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    (void)ioctl(m, TIOCSWINSZ, &ws);
    /* UTF-8 input: the line editor erases a whole character, not its last byte. */
    struct termios t;
    if (tcgetattr(s, &t) == 0) {
        t.c_iflag |= IUTF8;
        (void)tcsetattr(s, TCSANOW, &t);
    }
    (void)fcntl(m, F_SETFL, O_NONBLOCK);
    *ret_master = m;
    return s;
}

static int pty_spawn(struct agent *a, struct agent_pty *p, const struct pty_req *q)
{
    int slave = pty_make((unsigned)q->cols, (unsigned)q->rows, &p->master);
    if (slave < 0)
        return slave;
    const char *shell = access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
    _cleanup_free_ char *state = obx_xasprintf("%s/%s", a->cfg.state_dir, q->state);
    _cleanup_free_ char *hist = obx_xasprintf("%s/.history-%s", a->cfg.state_dir, q->state);
    char *argv[] = {"/bin/sh", "-c", (char *)wrapper, "sh", state, (char *)shell, NULL};
    json_t *env = json_pack("{s:s, s:s, s:s, s:s}", "TERM", "xterm-256color", "COLORTERM",
                            "truecolor", "HISTFILE", hist, "PS1",
                            shell[5] == 'b' ? "\\[\\e[1;36m\\]\\w\\[\\e[0m\\] \\$ " : "$ ");
    char **envp = agent_env_build(a, env);
    json_decref(env);
    (void)agent_mkdir_p(a->cfg.state_dir, 0700);
    struct agent_spawn sp = {.argv = argv,
                             .envp = envp,
                             .cwd = a->cfg.workspace,
                             .limits = a->cfg.limits,
                             .tty_fd = slave};
    int r = agent_proc_start(&sp, AGENT_FEED_TTY, &p->proc);
    agent_strv_free(envp);
    close(slave);
    if (r < 0)
        closep(&p->master);
    return r;
}

void agent_pty_open(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    if (pty_find(a, id) || agent_request_find(a, id)) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "request id %u is already running", id);
        return;
    }
    struct agent_pty *p = NULL;
    for (size_t i = 0; i < AGENT_MAX_PTYS && !p; i++)
        if (!a->pty[i].used)
            p = &a->pty[i];
    if (!p) {
        agent_send_error(a, id, OBX_ERR_NO_CAPACITY, "the box already has %d terminals open",
                         AGENT_MAX_PTYS);
        return;
    }
    char err[256] = "";
    struct pty_req q;
    json_t *o =
        len < AGENT_WARM_MAX_COMMAND ? json_loadb((const char *)payload, len, 0, NULL) : NULL;
    if (!pty_parse(o, &q, err, sizeof(err))) {
        agent_send_error(a, id, OBX_ERR_INVALID_PAYLOAD, "PTY_OPEN: %s", err);
        json_decref(o);
        return;
    }
    pty_reset(p);
    int r = pty_spawn(a, p, &q);
    if (r < 0) {
        agent_send_error(a, id, OBX_ERR_EXECUTION_FAILED, "cannot open a terminal: %s",
                         strerror(-r));
        pty_free(p);
        json_decref(o);
        return;
    }
    p->used = true;
    p->id = id;
    p->state_key = obx_xstrdup(q.state);
    p->window = q.window;
    p->idle_ms = q.idle_ms;
    p->start_ms = p->last_input_ms = agent_now_ms();
    json_decref(o);
    agent_send_json(a, OBX_AF_PTY_EVENT, id,
                    json_pack("{s:s, s:i, s:s, s:I, s:I, s:I}", "type", "open", "pid",
                              (int)p->proc.monitor, "shell",
                              access("/bin/bash", X_OK) == 0 ? "bash" : "sh", "cols",
                              (json_int_t)q.cols, "rows", (json_int_t)q.rows, "idle_timeout_ms",
                              (json_int_t)q.idle_ms));
}

static void pty_kill(struct agent_pty *p, const char *reason)
{
    if (p->killing)
        return;
    p->killing = true;
    if (!p->reason)
        p->reason = reason;
    p->kill_deadline_ms = agent_now_ms() + AGENT_KILL_GRACE_MS;
    if (p->proc.ctl_fd >= 0 && write(p->proc.ctl_fd, "K", 1) < 0 && errno != EAGAIN)
        closep(&p->proc.ctl_fd); /* closing it asks the monitor to kill, too */
}

static void pty_write_input(struct agent_pty *p)
{
    size_t off = 0;
    while (p->master >= 0 && off < p->in_len) {
        ssize_t n = write(p->master, p->in + off, p->in_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            off = p->in_len; /* the terminal hung up: the read side notices */
            break;
        }
        off += (size_t)n;
    }
    memmove(p->in, p->in + off, p->in_len - off);
    p->in_len -= off;
}

void agent_pty_input(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    struct agent_pty *p = pty_find(a, id);
    if (!p || p->killing || p->master < 0)
        return;
    p->last_input_ms = agent_now_ms();
    size_t take = OBX_MIN(len, OBX_AGENT_PTY_MAX_INPUT - p->in_len);
    if (take < len)
        agent_send_json(
            a, OBX_AF_PTY_EVENT, id,
            json_pack("{s:s, s:I}", "type", "input_dropped", "bytes", (json_int_t)(len - take)));
    if (p->in_len + take > p->in_cap) {
        p->in_cap = OBX_MAX(p->in_len + take, p->in_cap * 2);
        p->in = obx_xrealloc(p->in, p->in_cap);
    }
    memcpy(p->in + p->in_len, payload, take);
    p->in_len += take;
    pty_write_input(p); /* at once: a keystroke should not wait for the next round */
}

void agent_pty_resize(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    struct agent_pty *p = pty_find(a, id);
    if (!p || p->master < 0)
        return;
    unsigned cols = len == 4 ? (unsigned)payload[0] << 8 | payload[1] : 0;
    unsigned rows = len == 4 ? (unsigned)payload[2] << 8 | payload[3] : 0;
    if (cols < 1 || rows < 1 || cols > PTY_MAX_SIDE || rows > PTY_MAX_SIDE) {
        agent_log("terminal %u: ignoring a resize to %ux%u", id, cols, rows);
        return;
    }
    p->last_input_ms = agent_now_ms();
    /* The kernel tells the foreground program (SIGWINCH) when the size changes. */
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    (void)ioctl(p->master, TIOCSWINSZ, &ws);
}

void agent_pty_ack(struct agent *a, uint32_t id, const uint8_t *payload, size_t len)
{
    struct agent_pty *p = pty_find(a, id);
    if (!p || len != 8)
        return;
    uint64_t v = (uint64_t)obx_be32_get(payload) << 32 | obx_be32_get(payload + 4);
    if (v > p->acked)
        p->acked = OBX_MIN(v, p->sent);
}

bool agent_pty_cancel(struct agent *a, uint32_t id)
{
    struct agent_pty *p = pty_find(a, id);
    if (!p)
        return false;
    pty_kill(p, "closed");
    return true;
}

static bool window_open(const struct agent_pty *p)
{
    return p->sent - p->acked < p->window;
}

size_t agent_pty_pollfds(struct agent *a, struct pollfd *pfd, size_t max)
{
    size_t n = 0;
    bool pressure = a->outq.bytes > AGENT_BACKPRESSURE_BYTES;
    for (size_t i = 0; i < AGENT_MAX_PTYS && n + 2 <= max; i++) {
        struct agent_pty *p = &a->pty[i];
        if (!p->used)
            continue;
        /* Not polled at all while it may not be read: a hung-up terminal would wake us at once
         * for ever. */
        short ev = (short)((!p->killing && window_open(p) && !pressure ? POLLIN : 0) |
                           (p->in_len ? POLLOUT : 0));
        if (p->master >= 0 && ev)
            pfd[n++] = (struct pollfd){.fd = p->master, .events = ev};
        if (p->proc.status_fd >= 0)
            pfd[n++] = (struct pollfd){.fd = p->proc.status_fd, .events = POLLIN};
    }
    return n;
}

/* Reads what the terminal printed, up to limit bytes, as one frame (a terminal hands out a few
 * KiB a read: a flood goes out in frames of up to a chunk); false when it hung up. */
static bool pty_read(struct agent *a, struct agent_pty *p, uint64_t limit)
{
    static uint8_t buf[OBX_AGENT_OUTPUT_CHUNK];
    size_t want = (size_t)OBX_MIN(limit, (uint64_t)sizeof(buf)), got = 0;
    bool hup = false;
    while (got < want) {
        ssize_t n = read(p->master, buf + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) { /* EIO: every process closed the terminal */
            hup = true;
            break;
        }
        got += (size_t)n;
    }
    if (got > 0) {
        agent_send(a, OBX_AF_PTY_OUTPUT, p->id, buf, got);
        p->sent += got;
    }
    if (hup)
        closep(&p->master);
    return !hup;
}

static void status_read(struct agent_pty *p)
{
    int st;
    ssize_t n = read(p->proc.status_fd, &st, sizeof(st));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == (ssize_t)sizeof(st) && !p->leader_done) {
        p->leader_done = true;
        p->leader_status = st;
    }
    closep(&p->proc.status_fd);
}

void agent_pty_ready(struct agent *a, const struct pollfd *pfd)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++) {
        struct agent_pty *p = &a->pty[i];
        if (!p->used)
            continue;
        if (pfd->fd == p->proc.status_fd) {
            status_read(p);
            return;
        }
        if (pfd->fd != p->master)
            continue;
        if (pfd->revents & POLLOUT)
            pty_write_input(p);
        if (p->master >= 0 && (pfd->revents & (POLLIN | POLLHUP | POLLERR)) && window_open(p))
            pty_read(a, p, p->window - (p->sent - p->acked));
        return;
    }
}

static void pty_finish(struct agent *a, struct agent_pty *p)
{
    /* What the shell printed last ("exit") goes out before the end, window or not: bounded by
     * what the terminal buffers. */
    for (int k = 0; k < 16 && p->master >= 0; k++)
        if (!pty_read(a, p, OBX_AGENT_OUTPUT_CHUNK))
            break;
    int code = -1, sig = 0;
    if (p->leader_done && WIFEXITED(p->leader_status))
        code = WEXITSTATUS(p->leader_status);
    else if (p->leader_done && WIFSIGNALED(p->leader_status))
        sig = WTERMSIG(p->leader_status);
    else
        sig = SIGKILL;
    json_t *o = json_pack("{s:i, s:i, s:b, s:b, s:b, s:b, s:I, s:s}", "exit_code", code, "signal",
                          sig, "timed_out", false, "canceled", obx_streq(p->reason, "closed"),
                          "stdout_truncated", false, "stderr_truncated", false, "duration_ms",
                          (json_int_t)(agent_now_ms() - p->start_ms), "reason",
                          p->reason ? p->reason : "exited");
    agent_send_json(a, OBX_AF_EXIT, p->id, o);
    pty_free(p);
}

uint64_t agent_pty_tick(struct agent *a, uint64_t now)
{
    uint64_t next = 0;
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++) {
        struct agent_pty *p = &a->pty[i];
        if (!p->used)
            continue;
        /* The shell exited: the rest of its tree goes. A hung-up terminal means the same, once
         * the shell's status had a moment to arrive (the kill would take it with it). */
        if (!p->killing && p->master < 0 && !p->hup_ms)
            p->hup_ms = now + AGENT_EOF_GRACE_MS;
        if (!p->killing && (p->leader_done || p->monitor_done || (p->hup_ms && now >= p->hup_ms)))
            pty_kill(p, "exited");
        if (!p->killing && p->idle_ms && now - p->last_input_ms >= p->idle_ms)
            pty_kill(p, "idle");
        if (p->killing && !p->monitor_done && now >= p->kill_deadline_ms) {
            agent_log("terminal %u: monitor %d did not finish killing; giving up", p->id,
                      (int)p->proc.monitor);
            (void)kill(p->proc.monitor, SIGKILL);
            p->monitor_done = true;
        }
        if (p->killing && p->monitor_done) {
            pty_finish(a, p);
            continue;
        }
        uint64_t d = p->killing   ? p->kill_deadline_ms
                     : p->hup_ms  ? p->hup_ms
                     : p->idle_ms ? p->last_input_ms + p->idle_ms
                                  : 0;
        if (d && (!next || d < next))
            next = d;
    }
    return next;
}

bool agent_pty_reaped(struct agent *a, pid_t pid, int status)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++) {
        struct agent_pty *p = &a->pty[i];
        if (!p->used || p->proc.monitor != pid)
            continue;
        p->monitor_done = true;
        if (p->proc.status_fd >= 0)
            status_read(p);
        if (!p->leader_done) {
            p->leader_done = true;
            p->leader_status = WIFSIGNALED(status) ? status : (127 << 8);
        }
        return true;
    }
    return false;
}

void agent_pty_shutdown(struct agent *a)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++)
        if (a->pty[i].used)
            pty_free(&a->pty[i]);
}

/* ---- the agent's own commands, shown in the terminals of their state key ---- */

static void send_text_event(struct agent *a, struct agent_pty *p, json_t *o, const char *name,
                            const void *data, size_t len)
{
    size_t clean_len = 0;
    _cleanup_free_ char *clean = obx_utf8_sanitize(data, len, &clean_len);
    json_object_set_new(o, name, json_stringn(clean, clean_len));
    agent_send_json(a, OBX_AF_PTY_EVENT, p->id, o);
}

void agent_pty_exec_begin(struct agent *a, uint32_t id, const char *key, const char *command)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++) {
        struct agent_pty *p = &a->pty[i];
        if (!p->used || p->killing || !key || !obx_streq(p->state_key, key))
            continue;
        p->mirror_exec = id;
        p->mirror_bytes = p->mirror_dropped = 0;
        size_t len = strlen(command);
        size_t shown = obx_utf8_cut(command, len, PTY_COMMAND_SHOWN);
        json_t *o = json_pack("{s:s, s:I, s:b}", "type", "exec", "exec", (json_int_t)id, "cut",
                              shown < len);
        send_text_event(a, p, o, "command", command, shown);
    }
}

void agent_pty_exec_output(struct agent *a, uint32_t id, const char *key, uint8_t type,
                           const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++) {
        struct agent_pty *p = &a->pty[i];
        if (!p->used || p->killing || p->mirror_exec != id || !key || !obx_streq(p->state_key, key))
            continue;
        uint64_t room = OBX_AGENT_PTY_MIRROR_LIMIT - p->mirror_bytes;
        size_t take = window_open(p) ? (size_t)OBX_MIN((uint64_t)len, room) : 0;
        if (take < len)
            take = obx_utf8_cut((const char *)data, len, take);
        p->mirror_bytes += take;
        p->mirror_dropped += len - take;
        if (take == 0)
            continue;
        json_t *o = json_pack("{s:s, s:I, s:s}", "type", "exec_output", "exec", (json_int_t)id,
                              "stream", type == OBX_AF_STDERR ? "stderr" : "stdout");
        send_text_event(a, p, o, "data", data, take);
    }
}

void agent_pty_exec_end(struct agent *a, uint32_t id, const char *key, json_t *exit)
{
    for (size_t i = 0; i < AGENT_MAX_PTYS; i++) {
        struct agent_pty *p = &a->pty[i];
        if (!p->used || p->killing || p->mirror_exec != id || !key || !obx_streq(p->state_key, key))
            continue;
        json_t *o = json_pack("{s:s, s:I, s:I}", "type", "exec_end", "exec", (json_int_t)id,
                              "dropped_bytes", (json_int_t)p->mirror_dropped);
        static const char *const copied[] = {"exit_code", "signal", "timed_out", "canceled",
                                             "duration_ms"};
        for (size_t k = 0; k < OBX_ARRAY_SIZE(copied); k++) {
            json_t *v = json_object_get(exit, copied[k]);
            if (v)
                json_object_set(o, copied[k], v);
        }
        agent_send_json(a, OBX_AF_PTY_EVENT, p->id, o);
        p->mirror_exec = 0;
    }
}
