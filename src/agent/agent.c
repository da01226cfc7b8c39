/* SPDX-License-Identifier: Apache-2.0 */
/*
 * onlyboxes-agent: the process that runs as PID 1 of every box. stdin and stdout carry the frame
 * stream to the worker (protocol.h); stderr gets our own log lines. One thread runs one poll()
 * loop over: stdin frames, the outbound queue to stdout (non-blocking, so a slow worker never
 * stalls the loop), a signalfd for SIGCHLD/SIGTERM, every request's pipes, and the nearest request
 * deadline. When more than AGENT_BACKPRESSURE_BYTES wait to be written the loop stops reading
 * child output, so the children block instead of the agent growing without bound.
 *
 * As PID 1 (and, when run directly, as a child subreaper) every orphan in the box is re-parented
 * to us; SIGCHLD reaps with waitpid(-1, WNOHANG) until nothing is left, so no zombie accumulates.
 * stdin EOF, an undecodable stream and SIGTERM all end the same way: kill everything we started,
 * reap it, exit 0.
 */
#include "agent-connect.h"
#include "agent-internal.h"

#include "common/clock.h"
#include "common/runtime.h"
#include "common/utf8.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

void agent_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n = snprintf(line, sizeof(line), "onlyboxes-agent: ");
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : OBX_MIN((size_t)m, sizeof(line) - (size_t)n - 2));
    line[len++] = '\n';
    (void)!write(STDERR_FILENO, line, len);
}

uint64_t agent_now_ms(void)
{
    return obx_now_ms();
}

/* ---- outbound queue ---- */

void agent_send2(struct agent *a, uint8_t type, uint32_t id, const void *p1, size_t l1,
                 const void *p2, size_t l2)
{
    struct agent_chunk *c = obx_xmalloc(sizeof(*c) + OBX_AGENT_HEADER_SIZE + l1 + l2);
    c->next = NULL;
    c->len = OBX_AGENT_HEADER_SIZE + l1 + l2;
    obx_agent_header_encode(c->data, type, id, l1 + l2);
    if (l1)
        memcpy(c->data + OBX_AGENT_HEADER_SIZE, p1, l1);
    if (l2)
        memcpy(c->data + OBX_AGENT_HEADER_SIZE + l1, p2, l2);
    if (a->outq.tail)
        a->outq.tail->next = c;
    else
        a->outq.head = c;
    a->outq.tail = c;
    a->outq.bytes += c->len;
}

void agent_send(struct agent *a, uint8_t type, uint32_t id, const void *payload, size_t len)
{
    agent_send2(a, type, id, payload, len, NULL, 0);
}

void agent_send_json(struct agent *a, uint8_t type, uint32_t id, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s) {
        agent_log("cannot encode a JSON payload");
        return;
    }
    agent_send(a, type, id, s, strlen(s));
    free(s);
}

void agent_send_error(struct agent *a, uint32_t id, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote paths and payload text cut to fit ("%.300s", the buffer), which may end inside
     * a UTF-8 sequence; jansson refuses such a string, and the request would get no answer. */
    size_t len = 0;
    _cleanup_free_ char *text = obx_utf8_sanitize(msg, strlen(msg), &len);
    agent_send_json(a, OBX_AF_ERROR, id,
                    json_pack("{s:s, s:s%}", "code", code, "message", text, len));
}

static void outq_free(struct agent_outq *q);

/* Writes as much of the queue as stdout takes; returns 0, or -errno when the worker is gone. */
static int outq_flush(struct agent *a)
{
    struct agent_outq *q = &a->outq;
    while (q->head) {
        struct iovec iov[64];
        int n = 0;
        size_t off = q->off;
        for (struct agent_chunk *c = q->head; c && n < 64; c = c->next, off = 0)
            iov[n++] = (struct iovec){c->data + off, c->len - off};
        ssize_t w = writev(STDOUT_FILENO, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        q->bytes -= (size_t)w;
        while (w > 0) {
            size_t left = q->head->len - q->off;
            if ((size_t)w < left) {
                q->off += (size_t)w;
                break;
            }
            w -= (ssize_t)left;
            struct agent_chunk *c = q->head;
            q->head = c->next;
            q->off = 0;
            free(c);
        }
        if (!q->head)
            q->tail = NULL;
    }
    return 0;
}

void agent_flush(struct agent *a)
{
    int r = outq_flush(a);
    if (r < 0) {
        agent_log("writing stdout: %s; shutting down", strerror(-r));
        outq_free(&a->outq);
        a->quit = true;
    }
}

static void outq_free(struct agent_outq *q)
{
    while (q->head) {
        struct agent_chunk *c = q->head;
        q->head = c->next;
        free(c);
    }
    q->tail = NULL;
    q->bytes = q->off = 0;
}

/* ---- frames from the worker ---- */

void agent_dispatch(struct agent *a, const struct obx_agent_frame *f)
{
    switch (f->type) {
    case OBX_AF_EXEC:
        agent_exec_start(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_CANCEL:
        if (!agent_xfer_cancel(a, f->id) && !agent_pty_cancel(a, f->id))
            agent_exec_cancel(a, f->id);
        break;
    case OBX_AF_FREAD:
        agent_file_read(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FWRITE:
        agent_file_write(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_PING:
        agent_send(a, OBX_AF_OK, f->id, NULL, 0);
        break;
    case OBX_AF_PREPARE:
        agent_py_prepare(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FGET:
        agent_xfer_get(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FACK:
        agent_xfer_ack(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FPUT:
        agent_xfer_put(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FDATA:
        agent_xfer_data(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FEND:
        agent_xfer_end(a, f->id);
        break;
    case OBX_AF_FLIST:
        agent_file_list(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FDELETE:
        agent_file_delete(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_FMKDIR:
        agent_file_mkdir(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_PTY_OPEN:
        agent_pty_open(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_PTY_INPUT:
        agent_pty_input(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_PTY_RESIZE:
        agent_pty_resize(a, f->id, f->payload, f->len);
        break;
    case OBX_AF_PTY_ACK:
        agent_pty_ack(a, f->id, f->payload, f->len);
        break;
    default:
        agent_send_error(a, f->id, OBX_ERR_INVALID_PAYLOAD, "unknown frame type 0x%02x", f->type);
        break;
    }
}

static void read_frames(struct agent *a)
{
    static uint8_t buf[256 * 1024];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        agent_log("reading stdin: %s", strerror(errno));
        a->quit = true;
        return;
    }
    if (n == 0) {
        size_t partial = a->dec.len - a->dec.off;
        if (partial > 0) {
            /* The worker died or the stream was cut inside a frame: say so, and fail. */
            agent_log("stdin closed inside a frame (%zu bytes of it received); shutting down",
                      partial);
            a->broken = true;
        }
        a->quit = true;
        return;
    }
    if (obx_agent_decoder_feed(&a->dec, buf, (size_t)n) < 0) {
        agent_log("out of memory buffering frames");
        a->quit = true;
        return;
    }
    for (;;) {
        struct obx_agent_frame f;
        int r = obx_agent_decoder_next(&a->dec, &f);
        if (r == 0)
            return;
        if (r < 0) {
            agent_log("corrupt frame on stdin: length %u is outside %u..%u bytes; shutting down",
                      obx_be32_get(a->dec.buf + a->dec.off), OBX_AGENT_HEADER_SIZE - 4,
                      OBX_AGENT_MAX_FRAME);
            a->broken = true;
            a->quit = true;
            return;
        }
        agent_dispatch(a, &f);
    }
}

static void handle_signals(struct agent *a)
{
    struct signalfd_siginfo si;
    bool chld = false;
    while (read(a->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
            chld = true;
        else
            a->quit = true;
    }
    if (!chld)
        return;
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        agent_child_reaped(a, p, st);
}

/* ---- the loop ---- */

enum slot_kind {
    SLOT_SIG,
    SLOT_STDIN,
    SLOT_STDOUT,
    SLOT_STATUS,
    SLOT_REPORT,
    SLOT_CHILD_IN,
    SLOT_OUT0,
    SLOT_OUT1,
    SLOT_PY_REPORT,
    SLOT_PY_STATUS,
    SLOT_PTY,
};

struct slot {
    enum slot_kind kind;
    struct agent_request *r;
};

static void run(struct agent *a)
{
    struct pollfd pfd[5 + AGENT_MAX_REQUESTS * 5 + AGENT_MAX_PTYS * 2];
    struct slot slot[OBX_ARRAY_SIZE(pfd)];
    uint64_t next = 0;
    bool pump_more = false; /* a file transfer can send more at once */
    while (!a->quit) {
        nfds_t n = 0;
#define ADD(fd_, ev_, kind_, r_)                                \
    do {                                                        \
        pfd[n] = (struct pollfd){.fd = (fd_), .events = (ev_)}; \
        slot[n++] = (struct slot){(kind_), (r_)};               \
    } while (0)
        ADD(a->sig_fd, POLLIN, SLOT_SIG, NULL);
        if (a->outq.bytes < AGENT_STDIN_PAUSE_BYTES)
            ADD(STDIN_FILENO, POLLIN, SLOT_STDIN, NULL);
        if (a->outq.head)
            ADD(STDOUT_FILENO, POLLOUT, SLOT_STDOUT, NULL);
        bool pressure = a->outq.bytes > AGENT_BACKPRESSURE_BYTES;
        if (a->py.state != AGENT_PY_NONE) {
            if (a->py.proc.out_fd >= 0)
                ADD(a->py.proc.out_fd, POLLIN, SLOT_PY_REPORT, NULL);
            /* While a call runs, its request watches the status pipe. */
            if (!a->py.busy && a->py.proc.status_fd >= 0)
                ADD(a->py.proc.status_fd, POLLIN, SLOT_PY_STATUS, NULL);
        }
        for (size_t i = 0; i < AGENT_MAX_REQUESTS; i++) {
            struct agent_request *r = &a->req[i];
            if (!r->used)
                continue;
            if (r->report_fd >= 0)
                ADD(r->report_fd, POLLIN, SLOT_REPORT, r);
            if (r->status_fd >= 0)
                ADD(r->status_fd, POLLIN, SLOT_STATUS, r);
            if (r->stdin_fd >= 0)
                ADD(r->stdin_fd, POLLOUT, SLOT_CHILD_IN, r);
            /* Truncated streams produce no frames: keep draining them even under pressure. */
            if (r->out[0].fd >= 0 && (!pressure || r->out[0].truncated))
                ADD(r->out[0].fd, POLLIN, SLOT_OUT0, r);
            if (r->out[1].fd >= 0 && (!pressure || r->out[1].truncated))
                ADD(r->out[1].fd, POLLIN, SLOT_OUT1, r);
        }
#undef ADD
        size_t n_pty = agent_pty_pollfds(a, pfd + n, OBX_ARRAY_SIZE(pfd) - n);
        for (size_t k = 0; k < n_pty; k++)
            slot[n++] = (struct slot){SLOT_PTY, NULL};
        int timeout = pump_more ? 0 : -1;
        if (next && !pump_more) {
            uint64_t now = agent_now_ms();
            timeout = next > now ? (int)OBX_MIN(next - now, (uint64_t)INT_MAX) : 0;
        }
        int k = poll(pfd, n, timeout);
        if (k < 0 && errno != EINTR) {
            agent_log("poll: %s", strerror(errno));
            a->quit = true;
            break;
        }
        for (nfds_t i = 0; k > 0 && i < n; i++) {
            if (!pfd[i].revents)
                continue;
            struct agent_request *r = slot[i].r;
            switch (slot[i].kind) {
            case SLOT_SIG:
                handle_signals(a);
                break;
            case SLOT_STDIN:
                read_frames(a);
                break;
            case SLOT_STDOUT:
                break; /* flushed below */
            case SLOT_STATUS:
                if (r->used && r->status_fd == pfd[i].fd)
                    agent_request_status_read(r);
                break;
            case SLOT_REPORT:
                if (r->used && r->report_fd == pfd[i].fd && r->pyc)
                    agent_py_call_report_read(r);
                else if (r->used && r->report_fd == pfd[i].fd)
                    agent_warm_report(r);
                break;
            case SLOT_PY_REPORT:
                if (a->py.proc.out_fd == pfd[i].fd)
                    agent_py_report_read(a);
                break;
            case SLOT_PY_STATUS:
                if (!a->py.busy && a->py.proc.status_fd == pfd[i].fd)
                    agent_py_status_read(a);
                break;
            case SLOT_CHILD_IN:
                if (r->used && r->stdin_fd == pfd[i].fd)
                    agent_request_stdin_write(r);
                break;
            case SLOT_PTY:
                agent_pty_ready(a, &pfd[i]);
                break;
            case SLOT_OUT0:
            case SLOT_OUT1: {
                struct agent_stream *s = &r->out[slot[i].kind == SLOT_OUT1];
                if (r->used && s->fd == pfd[i].fd)
                    (void)agent_stream_read(a, r, s);
                break;
            }
            }
        }
        uint64_t now = agent_now_ms();
        next = 0;
        for (size_t i = 0; i < AGENT_MAX_REQUESTS; i++) {
            uint64_t d = agent_request_tick(a, &a->req[i], now);
            if (d && (!next || d < next))
                next = d;
        }
        uint64_t d = agent_pty_tick(a, now);
        if (d && (!next || d < next))
            next = d;
        pump_more = a->xfers && agent_xfer_pump(a);
        agent_flush(a);
        if (a->n_warm_want && !a->quit)
            agent_warm_refill(a);
    }
}

/* Gives the worker a moment to take the last frames after shutdown started. */
static void final_flush(struct agent *a)
{
    uint64_t end = agent_now_ms() + 1000;
    while (a->outq.head) {
        uint64_t now = agent_now_ms();
        if (outq_flush(a) < 0 || now >= end)
            break;
        if (!a->outq.head)
            break;
        struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
        if (poll(&p, 1, (int)(end - now)) <= 0)
            break;
    }
    outq_free(&a->outq);
}

/* ---- start-up ---- */

static void usage(void)
{
    fprintf(stderr, "usage: onlyboxes-agent [--workspace DIR] [--state-dir DIR] [--memory BYTES] "
                    "[--nproc N]\n"
                    "                       [--fsize BYTES] [--nofile N] [--cpu SEC] "
                    "[" OBX_BOX_EGRESS_OPTION " SOCKET]\n"
                    "       onlyboxes-agent --exec-as UID GID PROGRAM [ARG...]   (root only: run "
                    "PROGRAM as UID:GID)\n");
}

static int parse_args(int argc, char **argv, struct agent_config *cfg, const char **workspace)
{
    struct {
        const char *name;
        uint64_t *val;
    } nums[] = {
        {"--memory", &cfg->limits.memory_bytes}, {"--nproc", &cfg->limits.nproc},
        {"--fsize", &cfg->limits.fsize_bytes},   {"--nofile", &cfg->limits.nofile},
        {"--cpu", &cfg->limits.cpu_sec},
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL;
        char name[32];
        const char *eq = strchr(arg, '=');
        if (eq && (size_t)(eq - arg) < sizeof(name)) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
            val = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", arg);
        }
        if (obx_streq(name, "--help") || obx_streq(name, "-h")) {
            usage();
            exit(0);
        }
        if (obx_streq(name, "--version")) {
            printf("onlyboxes-agent %s (protocol %s)\n", OBX_VERSION, OBX_AGENT_PROTOCOL_VERSION);
            exit(0);
        }
        if (!val) {
            if (i + 1 >= argc) {
                agent_log("%s needs a value", name);
                return -EINVAL;
            }
            val = argv[++i];
        }
        if (obx_streq(name, "--workspace")) {
            *workspace = val;
            continue;
        }
        if (obx_streq(name, OBX_BOX_EGRESS_OPTION)) {
            free(cfg->egress_socket);
            cfg->egress_socket = obx_xstrdup(val);
            continue;
        }
        if (obx_streq(name, "--state-dir")) {
            free(cfg->state_dir);
            cfg->state_dir = obx_xstrdup(val);
            continue;
        }
        size_t j;
        for (j = 0; j < OBX_ARRAY_SIZE(nums); j++)
            if (obx_streq(name, nums[j].name))
                break;
        if (j == OBX_ARRAY_SIZE(nums)) {
            agent_log("unknown option %s", name);
            usage();
            return -EINVAL;
        }
        int64_t v;
        if (obx_parse_int64(val, 0, INT64_MAX, &v) < 0) {
            agent_log("%s: not a non-negative integer: %s", name, val);
            return -EINVAL;
        }
        *nums[j].val = (uint64_t)v;
    }
    return 0;
}

static void noop_handler(int sig)
{
    (void)sig;
}

static int setup_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* A real handler (not SIG_DFL) so that, as PID 1 of a namespace, the kernel delivers them. */
    struct sigaction sa = {.sa_handler = noop_handler};
    sigemptyset(&sa.sa_mask);
    sigset_t set;
    sigemptyset(&set);
    const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(sigs); i++) {
        sigaction(sigs[i], &sa, NULL);
        sigaddset(&set, sigs[i]);
    }
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int main(int argc, char **argv)
{
    static struct agent a;
    const char *workspace = OBX_AGENT_WORKSPACE;
    /* Pipes must never land on 0-2 if we were started with them closed. */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return 1;
    /* The bubblewrap runtime's step from a root worker to a box's host uid, not a box. */
    if (argc > 1 && obx_streq(argv[1], "--exec-as"))
        return agent_exec_as_main(argc, argv);
    a.cfg.state_dir = obx_xstrdup(AGENT_DEFAULT_STATE_DIR);
    if (agent_connect_from_args(&argc, argv) < 0) /* docker's direct path */
        return 1;
    if (parse_args(argc, argv, &a.cfg, &workspace) < 0)
        return 2;

    agent_proc_init();
    (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    int sr = agent_seccomp_install();
    if (sr < 0)
        agent_log("cannot load the agent's seccomp filter: %s (the runtime's own applies)",
                  strerror(-sr));
    a.pid1 = getpid() == 1;
    /* PID 1 inherits every orphan anyway; run directly we ask for the same. */
    if (!a.pid1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        agent_log("cannot become a child subreaper: %s", strerror(errno));

    int r = agent_mkdir_p(workspace, 0755);
    char real[PATH_MAX];
    if (r < 0 || !realpath(workspace, real)) {
        agent_log("cannot create workspace %s: %s", workspace, strerror(r < 0 ? -r : errno));
        return 1;
    }
    a.cfg.workspace = obx_xstrdup(real);
    if (agent_mkdir_p(a.cfg.state_dir, 0700) < 0)
        agent_log("cannot create %s: %s (terminal mode will retry)", a.cfg.state_dir,
                  strerror(errno));

    agent_warm_init(&a);
    agent_py_init(&a);
    agent_pty_init(&a);
    agent_relay_init(&a);
    a.sig_fd = setup_signals();
    if (a.sig_fd < 0) {
        agent_log("signalfd: %s", strerror(-a.sig_fd));
        return 1;
    }
    for (size_t i = 0; i < AGENT_MAX_REQUESTS; i++)
        a.req[i].status_fd = a.req[i].stdin_fd = a.req[i].ctl_fd = a.req[i].report_fd =
            a.req[i].out[0].fd = a.req[i].out[1].fd = -1;
    (void)fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    (void)fcntl(STDOUT_FILENO, F_SETFL, fcntl(STDOUT_FILENO, F_GETFL) | O_NONBLOCK);
    obx_agent_decoder_init(&a.dec);

    agent_send_json(&a, OBX_AF_HELLO, 0,
                    json_pack("{s:s, s:s, s:i, s:s}", "version", OBX_AGENT_PROTOCOL_VERSION,
                              "agent_version", OBX_VERSION, "pid", (int)getpid(), "workspace",
                              a.cfg.workspace));
    run(&a);

    agent_xfer_shutdown(&a);
    agent_exec_shutdown(&a);
    agent_pty_shutdown(&a);
    final_flush(&a);
    obx_agent_decoder_done(&a.dec);
    close(a.sig_fd);
    free(a.cfg.workspace);
    free(a.cfg.state_dir);
    free(a.cfg.egress_socket);
    return a.broken ? 1 : 0;
}
