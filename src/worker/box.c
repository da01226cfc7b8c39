/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Box connection: frames to the agent are written by the requesting threads under write_lock;
 * frames from the agent are read by one reader thread per box, which owns the read fd and routes
 * each frame to its request (a list under lock) and wakes the waiter. When the stream ends, every
 * pending request fails. Stopping: obx_box_kill() marks the box stopped, waits for writers to let
 * go, and asks the runtime to stop it; the runtime's stop makes the agent see EOF and the box go
 * away, which ends the reader. The last unref joins the reader and frees everything.
 */
#include "box.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "agent/protocol.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/thread.h"

#define GRACE_MS 5000 /* how long past its own timeout we wait for the agent to report */

struct box_req {
    uint32_t id;
    pthread_cond_t cond;
    bool done;
    uint8_t kind; /* the frame that started it */
    uint8_t type; /* terminal frame type */
    uint8_t *payload;
    size_t len;
    struct obx_buf out, err;
    struct obx_call *call;
    /* FGET: its FMETA, and FCHUNK bytes not taken yet (bounded by the window it asked for) */
    uint8_t *meta;
    size_t meta_len;
    struct obx_buf chunks;
    bool overrun;   /* the agent sent more than the window */
    bool canceller; /* registered with the call */
    struct obx_box *box;
    struct box_req *next;
};

struct obx_box {
    int refs; /* __atomic */
    struct obx_runtime *rt;
    struct obx_box_handle h;
    int rfd;
    pthread_t reader;
    bool reader_started;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t hello_cond;
    bool hello;
    bool dead;
    bool stopped;      /* atomic: set by obx_box_kill() without the lock, read with __atomic */
    bool kill_started; /* under write_lock */
    char dead_reason[256];
    uint32_t next_id;
    struct box_req *reqs;

    pthread_mutex_t write_lock;

    struct obx_box *reg_next; /* registry of live boxes, for obx_box_kill_all() */
    void (*on_free)(void *);  /* set once, right after the start */
    void *on_free_userdata;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obx_box *registry;

static void registry_add(struct obx_box *b)
{
    pthread_mutex_lock(&registry_lock);
    b->reg_next = registry;
    registry = b;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(struct obx_box *b)
{
    pthread_mutex_lock(&registry_lock);
    for (struct obx_box **pp = &registry; *pp; pp = &(*pp)->reg_next)
        if (*pp == b) {
            *pp = b->reg_next;
            break;
        }
    pthread_mutex_unlock(&registry_lock);
}

/* The runtimes boxes were started with, so kill_all can also reach boxes still starting. */
static struct obx_runtime *runtimes[4];

static void runtime_note(struct obx_runtime *rt)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < OBX_ARRAY_SIZE(runtimes); i++) {
        if (runtimes[i] == rt)
            break;
        if (!runtimes[i]) {
            runtimes[i] = rt;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Boxes stopped at once when many go together (at an exit). */
#define STOP_PARALLEL 8

static void kill_one(void *item)
{
    obx_box_kill(*(struct obx_box **)item);
}

static void unref_one(void *item)
{
    obx_box_unref(*(struct obx_box **)item);
}

void obx_box_unref_all(struct obx_box **v, size_t n)
{
    obx_parallel_each(v, n, sizeof(*v), unref_one, STOP_PARALLEL);
}

void obx_box_kill_all(void)
{
    pthread_mutex_lock(&registry_lock);
    size_t n = 0;
    for (struct obx_box *b = registry; b; b = b->reg_next)
        n++;
    struct obx_box **v = calloc(n ? n : 1, sizeof(*v));
    if (v) {
        n = 0;
        for (struct obx_box *b = registry; b; b = b->reg_next)
            v[n++] = b;
        obx_parallel_each(v, n, sizeof(*v), kill_one, STOP_PARALLEL);
        free(v);
    } else {
        for (struct obx_box *b = registry; b; b = b->reg_next)
            obx_box_kill(b);
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(runtimes) && runtimes[i]; i++) {
        struct obx_error err = OBX_ERROR_INIT;
        if (runtimes[i]->remove_own && runtimes[i]->remove_own(runtimes[i], &err) < 0)
            obx_warn("%s", err.message);
    }
    pthread_mutex_unlock(&registry_lock);
}

void obx_box_forget_runtime(struct obx_runtime *rt)
{
    pthread_mutex_lock(&registry_lock);
    size_t n = 0;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(runtimes); i++)
        if (runtimes[i] && runtimes[i] != rt)
            runtimes[n++] = runtimes[i];
    while (n < OBX_ARRAY_SIZE(runtimes))
        runtimes[n++] = NULL;
    pthread_mutex_unlock(&registry_lock);
}

static struct box_req *find_req(struct obx_box *b, uint32_t id)
{
    for (struct box_req *r = b->reqs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static void finish_req(struct box_req *r, uint8_t type, const uint8_t *payload, size_t len)
{
    r->type = type;
    r->payload = obx_xmalloc(len + 1);
    if (len)
        memcpy(r->payload, payload, len);
    r->payload[len] = '\0';
    r->len = len;
    r->done = true;
    pthread_cond_broadcast(&r->cond);
}

/* Whether the agent may send a frame of this type for a request started by kind: a live
 * terminal's output and events answer only PTY_OPEN, stdout and stderr only the others. */
static bool frame_fits(uint8_t kind, uint8_t type)
{
    bool pty = kind == OBX_AF_PTY_OPEN;
    if (type == OBX_AF_PTY_OUTPUT || type == OBX_AF_PTY_EVENT)
        return pty;
    if (type == OBX_AF_STDOUT || type == OBX_AF_STDERR)
        return !pty;
    return true;
}

/* Passes f to its request; false when the frame does not fit the request (a broken agent). */
static bool handle_frame(struct obx_box *b, const struct obx_agent_frame *f)
{
    if (f->type == OBX_AF_HELLO) {
        pthread_mutex_lock(&b->lock);
        b->hello = true;
        pthread_cond_broadcast(&b->hello_cond);
        pthread_mutex_unlock(&b->lock);
        return true;
    }
    pthread_mutex_lock(&b->lock);
    struct box_req *r = find_req(b, f->id);
    if (!r || r->done) {
        pthread_mutex_unlock(&b->lock);
        return true;
    }
    if (!frame_fits(r->kind, f->type)) {
        pthread_mutex_unlock(&b->lock);
        return false;
    }
    /* A live terminal's output and events are passed on, not kept. */
    bool pty = f->type == OBX_AF_PTY_OUTPUT || f->type == OBX_AF_PTY_EVENT;
    if (f->type == OBX_AF_STDOUT || f->type == OBX_AF_STDERR || pty) {
        struct obx_buf *buf = f->type == OBX_AF_STDOUT ? &r->out : &r->err;
        /* The agent enforces the limit; the ceiling here only guards against a broken agent. */
        if (!pty)
            (void)obx_buf_append(buf, f->payload, f->len);
        struct obx_call *call = r->call;
        pthread_mutex_unlock(&b->lock);
        enum obx_stream stream = f->type == OBX_AF_STDERR      ? OBX_STREAM_STDERR
                                 : f->type == OBX_AF_PTY_EVENT ? OBX_STREAM_EVENT
                                                               : OBX_STREAM_STDOUT;
        /* The waiter cannot finish (and free call) before the terminal frame, which only this
         * thread delivers, so call stays valid here. */
        if (call && call->on_output)
            call->on_output(call->output_userdata, stream, (const char *)f->payload, f->len);
        return true;
    }
    if (f->type == OBX_AF_FMETA && !r->meta) {
        r->meta = obx_xmalloc(f->len + 1);
        memcpy(r->meta, f->payload, f->len);
        r->meta[f->len] = '\0';
        r->meta_len = f->len;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&b->lock);
        return true;
    }
    if (f->type == OBX_AF_FCHUNK) {
        if (obx_buf_append(&r->chunks, f->payload, f->len) < 0)
            r->overrun = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&b->lock);
        return true;
    }
    finish_req(r, f->type, f->payload, f->len);
    pthread_mutex_unlock(&b->lock);
    return true;
}

/* Kills b, saying why unless it already ended for another reason. */
static void kill_because(struct obx_box *b, const char *reason)
{
    pthread_mutex_lock(&b->lock);
    if (!b->dead_reason[0])
        snprintf(b->dead_reason, sizeof(b->dead_reason), "%s", reason);
    pthread_mutex_unlock(&b->lock);
    obx_box_kill(b);
}

static void mark_dead(struct obx_box *b, const char *reason)
{
    pthread_mutex_lock(&b->lock);
    if (!b->dead) {
        b->dead = true;
        snprintf(b->dead_reason, sizeof(b->dead_reason), "%s", reason);
    }
    for (struct box_req *r = b->reqs; r; r = r->next)
        pthread_cond_broadcast(&r->cond);
    pthread_cond_broadcast(&b->hello_cond);
    pthread_mutex_unlock(&b->lock);
}

static void *reader_main(void *arg)
{
    struct obx_box *b = arg;
    struct obx_agent_decoder dec;
    obx_agent_decoder_init(&dec);
    char buf[64 * 1024];
    const char *reason = "the box exited";
    for (;;) {
        ssize_t n = read(b->rfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            /* The runtime may hand out one socket as both fds: the writer's O_NONBLOCK then
             * applies to our reads too. */
            struct pollfd pfd = {.fd = b->rfd, .events = POLLIN};
            (void)poll(&pfd, 1, -1);
            continue;
        }
        if (n <= 0)
            break;
        if (obx_agent_decoder_feed(&dec, buf, (size_t)n) < 0) {
            reason = "out of memory reading from the box";
            break;
        }
        struct obx_agent_frame f;
        int r;
        while ((r = obx_agent_decoder_next(&dec, &f)) > 0 && handle_frame(b, &f))
            ;
        if (r > 0)
            r = -EPROTO; /* a frame that does not fit its request */
        if (r < 0) {
            reason = "the box sent a malformed frame";
            obx_warn("box %s: malformed frame from agent; stopping the box", b->h.id);
            break;
        }
    }
    obx_agent_decoder_done(&dec);
    mark_dead(b, reason);
    return NULL;
}

static int write_frame(struct obx_box *b, uint8_t type, uint32_t id, const char *payload,
                       size_t len, struct obx_error *err)
{
    if (len + 5 > OBX_AGENT_MAX_FRAME)
        return obx_error_set(err, E2BIG, OBX_ERR_INVALID_PAYLOAD,
                             "request is %zu bytes; the limit is %u bytes", len,
                             OBX_AGENT_MAX_FRAME - 5);
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(hdr, type, id, len);
    pthread_mutex_lock(&b->write_lock);
    int r = 0;
    if (__atomic_load_n(&b->stopped, __ATOMIC_ACQUIRE))
        r = -EPIPE;
    const struct {
        const void *p;
        size_t n;
    } parts[2] = {{hdr, sizeof(hdr)}, {payload, len}};
    for (int i = 0; i < 2 && r == 0; i++) {
        const char *p = parts[i].p;
        size_t left = parts[i].n;
        while (left > 0) {
            ssize_t w = write(b->h.to_agent, p, left);
            if (w > 0) {
                p += w;
                left -= (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno == EAGAIN) {
                /* Poll in slices so a kill can take the lock from a writer stuck on a full pipe. */
                if (__atomic_load_n(&b->stopped, __ATOMIC_ACQUIRE)) {
                    r = -EPIPE;
                    break;
                }
                struct pollfd pfd = {.fd = b->h.to_agent, .events = POLLOUT};
                poll(&pfd, 1, 100);
                continue;
            }
            r = -errno;
            break;
        }
    }
    pthread_mutex_unlock(&b->write_lock);
    if (r < 0)
        return obx_error_set(err, -r, OBX_ERR_EXECUTION_FAILED, "cannot write to the box: %s",
                             strerror(-r));
    return 0;
}

int obx_box_start(struct obx_runtime *rt, const struct obx_box_spec *spec, uint64_t timeout_ms,
                  struct obx_box **ret, struct obx_error *err)
{
    struct obx_box *b = obx_xcalloc(1, sizeof(*b));
    b->refs = 1;
    b->rt = rt;
    b->rfd = -1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->write_lock, NULL);
    obx_cond_init_monotonic(&b->hello_cond);
    b->next_id = 1;
    runtime_note(rt);

    int r = rt->start(rt, spec, &b->h, err);
    if (r < 0) {
        free(b);
        return r;
    }
    b->rfd = TAKE_FD(b->h.from_agent);
    int fl = fcntl(b->h.to_agent, F_GETFL);
    if (fl >= 0)
        fcntl(b->h.to_agent, F_SETFL, fl | O_NONBLOCK);
    /* Only now may obx_box_kill_all() see the box: its stop() closes and resets h.to_agent. */
    registry_add(b);

    r = pthread_create(&b->reader, NULL, reader_main, b);
    if (r != 0) {
        obx_error_set(err, r, OBX_ERR_INTERNAL, "cannot start box reader thread");
        obx_box_unref(b);
        return -r;
    }
    b->reader_started = true;

    pthread_mutex_lock(&b->lock);
    uint64_t deadline = obx_now_ms() + timeout_ms;
    bool ok = true;
    while (!b->hello && !b->dead && ok) {
        struct timespec ts = obx_ms_to_timespec(deadline);
        ok = pthread_cond_timedwait(&b->hello_cond, &b->lock, &ts) == 0 || obx_now_ms() < deadline;
    }
    bool hello = b->hello;
    bool dead = b->dead;
    pthread_mutex_unlock(&b->lock);
    if (!hello) {
        obx_error_set(err, EIO, OBX_ERR_EXECUTION_FAILED,
                      dead ? "the box exited before its agent started (see the log for why)"
                           : "the box's agent did not start within %llu ms",
                      (unsigned long long)timeout_ms);
        obx_box_unref(b);
        return -EIO;
    }
    *ret = b;
    return 0;
}

void obx_box_on_free(struct obx_box *b, void (*fn)(void *), void *userdata)
{
    b->on_free = fn;
    b->on_free_userdata = userdata;
}

struct obx_box *obx_box_ref(struct obx_box *b)
{
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void obx_box_kill(struct obx_box *b)
{
    /* Called with registry_lock held by obx_box_kill_all(); must not take it. */
    __atomic_store_n(&b->stopped, true, __ATOMIC_RELEASE);
    pthread_mutex_lock(&b->write_lock); /* no writer is inside write() past this point */
    bool first = !b->kill_started;
    b->kill_started = true;
    pthread_mutex_unlock(&b->write_lock);
    if (first)
        b->rt->stop(b->rt, &b->h);
}

void obx_box_kill_soft(struct obx_box *b)
{
    __atomic_store_n(&b->stopped, true, __ATOMIC_RELEASE);
    pthread_mutex_lock(&b->write_lock);
    if (!b->kill_started) {
        /* Replace our end of the pipe with /dev/null: the agent sees EOF and kills everything,
         * while the fd number stays valid for the runtime's stop() later. A socket is shut down
         * first, as the runtime may hold another fd of it (ENOTSOCK for a pipe is fine). */
        (void)shutdown(b->h.to_agent, SHUT_WR);
        int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (devnull >= 0) {
            dup3(devnull, b->h.to_agent, O_CLOEXEC);
            close(devnull);
        }
    }
    pthread_mutex_unlock(&b->write_lock);
}

void obx_box_unref(struct obx_box *b)
{
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    obx_box_kill(b);
    registry_remove(b);
    if (b->reader_started)
        pthread_join(b->reader, NULL);
    obx_closep(&b->rfd);
    if (b->on_free)
        b->on_free(b->on_free_userdata);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->write_lock);
    pthread_cond_destroy(&b->hello_cond);
    free(b);
}

bool obx_box_alive(struct obx_box *b)
{
    pthread_mutex_lock(&b->lock);
    bool alive = !b->dead && !__atomic_load_n(&b->stopped, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&b->lock);
    return alive;
}

void obx_box_end_reason(struct obx_box *b, char *buf, size_t size)
{
    pthread_mutex_lock(&b->lock);
    snprintf(buf, size, "%s", b->dead_reason[0] ? b->dead_reason : "stopped");
    pthread_mutex_unlock(&b->lock);
}

static void send_cancel(void *userdata)
{
    struct box_req *r = userdata;
    (void)write_frame(r->box, OBX_AF_CANCEL, r->id, "", 0, NULL);
}

static void free_req(struct box_req *r)
{
    pthread_cond_destroy(&r->cond);
    obx_buf_free(&r->out);
    obx_buf_free(&r->err);
    obx_buf_free(&r->chunks);
    free(r->meta);
    free(r->payload);
    free(r);
}

/* Registers a request and sends it; the call's cancel then sends CANCEL. out_limit bounds its
 * STDOUT/STDERR, chunk_limit its FCHUNK bytes not yet taken. req_end() undoes it. */
static int req_begin(struct obx_box *b, uint8_t type, json_t *req, struct obx_call *call,
                     size_t out_limit, size_t chunk_limit, struct box_req **ret_req,
                     struct obx_error *err)
{
    _cleanup_free_ char *payload = req ? obx_json_dumps(req) : obx_xstrdup("");
    struct box_req *r = obx_xcalloc(1, sizeof(*r));
    obx_cond_init_monotonic(&r->cond);
    r->out = (struct obx_buf)OBX_BUF_INIT(out_limit + OBX_AGENT_OUTPUT_CHUNK);
    r->err = (struct obx_buf)OBX_BUF_INIT(out_limit + OBX_AGENT_OUTPUT_CHUNK);
    r->chunks = (struct obx_buf)OBX_BUF_INIT(chunk_limit);
    r->call = call;
    r->box = b;
    r->kind = type;

    pthread_mutex_lock(&b->lock);
    if (b->dead || __atomic_load_n(&b->stopped, __ATOMIC_ACQUIRE)) {
        /* The reader thread writes dead_reason under the lock: read it before unlocking. */
        int rc = obx_error_set(err, EPIPE, OBX_ERR_EXECUTION_FAILED, "the box is gone: %s",
                               b->dead_reason[0] ? b->dead_reason : "stopped");
        pthread_mutex_unlock(&b->lock);
        free_req(r);
        return rc;
    }
    r->id = b->next_id++;
    if (b->next_id == 0)
        b->next_id = 1;
    r->next = b->reqs;
    b->reqs = r;
    pthread_mutex_unlock(&b->lock);

    int ret = write_frame(b, type, r->id, payload, strlen(payload), err);
    if (ret == 0 && call) {
        if (obx_call_set_canceller(call, send_cancel, r) < 0)
            send_cancel(r);
        else
            r->canceller = true;
    }
    *ret_req = r;
    return ret;
}

/* With the lock held: waits until pred(r) or the terminal frame, the box's death or the monotonic
 * deadline (0: none). 0, or an error (the box died, or did not answer in time). */
static int req_wait(struct obx_box *b, struct box_req *r, uint64_t deadline,
                    bool (*pred)(const struct box_req *r), struct obx_error *err)
{
    while (!r->done && !(pred && pred(r))) {
        if (b->dead)
            return obx_error_set(err, EPIPE, OBX_ERR_EXECUTION_FAILED, "%s", b->dead_reason);
        if (deadline && obx_now_ms() >= deadline)
            return obx_error_set(err, ETIMEDOUT, OBX_ERR_DEADLINE_EXCEEDED,
                                 "the box did not answer in time; it was stopped");
        if (deadline) {
            struct timespec ts = obx_ms_to_timespec(deadline);
            pthread_cond_timedwait(&r->cond, &b->lock, &ts);
        } else {
            pthread_cond_wait(&r->cond, &b->lock);
        }
    }
    return 0;
}

/* Unlinks r and drops the canceller; a request that failed for another reason than the box's
 * death leaves an agent that cannot be trusted: the box goes. */
static void req_end(struct obx_box *b, struct box_req *r, int ret)
{
    pthread_mutex_lock(&b->lock);
    for (struct box_req **pp = &b->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    pthread_mutex_unlock(&b->lock);
    if (r->canceller)
        obx_call_clear_canceller(r->call);
    r->canceller = false;
    if (ret < 0 && ret != -EPIPE) /* unresponsive: nothing may keep running in it */
        kill_because(b, "stopped by the worker: its agent did not answer in time");
}

/* Registers a request, sends it and waits for its terminal frame. Caller frees *ret_req. */
static int run_request(struct obx_box *b, uint8_t type, json_t *req, struct obx_call *call,
                       size_t out_limit, uint64_t wait_ms, struct box_req **ret_req,
                       struct obx_error *err)
{
    struct box_req *r = NULL;
    int ret = req_begin(b, type, req, call, out_limit, 0, &r, err);
    if (!r)
        return ret;
    if (ret == 0) {
        pthread_mutex_lock(&b->lock);
        ret = req_wait(b, r, wait_ms ? obx_now_ms() + wait_ms : 0, NULL, err);
        pthread_mutex_unlock(&b->lock);
    }
    req_end(b, r, ret);
    if (ret < 0) {
        free_req(r);
        return ret;
    }
    *ret_req = r;
    return 0;
}

static int agent_error(const struct box_req *r, struct obx_error *err)
{
    struct obx_error perr = OBX_ERROR_INIT;
    _cleanup_json_ json_t *j = obx_json_parse((const char *)r->payload, r->len, &perr);
    const char *code = obx_json_get_str(j, "code", OBX_ERR_EXECUTION_FAILED);
    const char *msg = obx_json_get_str(j, "message", "the agent reported an error");
    return obx_error_set(err, EIO, code, "%s", msg);
}

void obx_box_exec_result_done(struct obx_box_exec_result *r)
{
    free(r->out);
    free(r->err);
    json_decref(r->python);
    memset(r, 0, sizeof(*r));
}

int obx_box_exec(struct obx_box *b, json_t *req, struct obx_call *call,
                 struct obx_box_exec_result *ret, struct obx_error *err)
{
    uint64_t timeout = (uint64_t)obx_json_get_int(req, "timeout_ms", 0);
    size_t limit = (size_t)OBX_MAX(obx_json_get_int(req, "stdout_limit", 1 << 20),
                                   obx_json_get_int(req, "stderr_limit", 1 << 20));
    uint64_t wait = timeout ? timeout + GRACE_MS : 0;
    if (call && call->deadline) {
        uint64_t left = obx_call_remaining_ms(call, 0) + GRACE_MS;
        wait = wait ? OBX_MIN(wait, left) : left;
    }
    struct box_req *r = NULL;
    int rc = run_request(b, OBX_AF_EXEC, req, call, limit, wait, &r, err);
    if (rc < 0)
        return rc;
    if (r->type == OBX_AF_ERROR) {
        rc = agent_error(r, err);
        free_req(r);
        return rc;
    }
    struct obx_error perr = OBX_ERROR_INIT;
    _cleanup_json_ json_t *j =
        r->type == OBX_AF_EXIT ? obx_json_parse((const char *)r->payload, r->len, &perr) : NULL;
    if (!json_is_object(j)) {
        /* An agent that breaks the protocol cannot be trusted to have stopped the command:
         * the box goes, and the call says why. */
        if (r->type != OBX_AF_EXIT)
            rc = obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                               "unexpected answer 0x%02x from the agent; the box was stopped",
                               r->type);
        else
            rc = obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                               "the agent sent an unreadable EXIT report (%s); the box was stopped",
                               perr.message[0] ? perr.message : "not a JSON object");
        obx_warn("box %s: %s", b->h.id, err ? err->message : "protocol violation");
        free_req(r);
        kill_because(b, "stopped by the worker: its agent broke the protocol");
        return rc;
    }
    memset(ret, 0, sizeof(*ret));
    ret->exit_code = (int)obx_json_get_int(j, "exit_code", -1);
    ret->signal = (int)obx_json_get_int(j, "signal", 0);
    ret->timed_out = obx_json_get_bool(j, "timed_out", false);
    ret->canceled = obx_json_get_bool(j, "canceled", false);
    ret->stdout_truncated = obx_json_get_bool(j, "stdout_truncated", false);
    ret->stderr_truncated = obx_json_get_bool(j, "stderr_truncated", false);
    ret->duration_ms = (uint64_t)obx_json_get_int(j, "duration_ms", 0);
    json_t *py = json_object_get(j, "python");
    ret->python = json_is_object(py) ? json_incref(py) : NULL;
    ret->out = obx_buf_steal(&r->out, &ret->out_len);
    ret->err = obx_buf_steal(&r->err, &ret->err_len);
    free_req(r);
    return 0;
}

int obx_box_request(struct obx_box *b, uint8_t type, json_t *req, struct obx_call *call,
                    uint8_t *ret_type, uint8_t **ret_payload, size_t *ret_len,
                    struct obx_error *err)
{
    uint64_t wait = call && call->deadline ? obx_call_remaining_ms(call, 0) + GRACE_MS : 0;
    struct box_req *r = NULL;
    int rc = run_request(b, type, req, call, 0, wait, &r, err);
    if (rc < 0)
        return rc;
    if (r->type == OBX_AF_ERROR) {
        rc = agent_error(r, err);
        free_req(r);
        return rc;
    }
    *ret_type = r->type;
    *ret_payload = TAKE_PTR(r->payload);
    *ret_len = r->len;
    free_req(r);
    return 0;
}

/* ---- file transfers: FGET and FPUT ---- */

static bool has_chunks(const struct box_req *r)
{
    return r->chunks.len > 0 || r->overrun;
}

/* The terminal frame of a transfer: OK's JSON into *ret_final, or the agent's ERROR. */
static int xfer_result(struct box_req *r, json_t **ret_final, struct obx_error *err)
{
    if (r->type == OBX_AF_ERROR)
        return agent_error(r, err);
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *j =
        r->type == OBX_AF_OK ? obx_json_parse((const char *)r->payload, r->len, &perr) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                             "the agent sent a malformed answer to a file transfer");
    }
    *ret_final = j;
    return 0;
}

static uint64_t stall_deadline(void)
{
    return obx_now_ms() + OBX_CALL_STALL_MS;
}

int obx_box_get(struct obx_box *b, json_t *req, struct obx_call *call,
                int (*on_meta)(void *userdata, json_t *meta),
                int (*on_data)(void *userdata, const void *data, size_t len), void *userdata,
                json_t **ret_final, struct obx_error *err)
{
    json_object_set_new(req, "window", json_integer(OBX_BOX_FILE_WINDOW));
    struct box_req *r = NULL;
    int ret = req_begin(b, OBX_AF_FGET, req, call, 0, OBX_BOX_FILE_WINDOW, &r, err);
    if (!r)
        return ret;
    uint64_t taken = 0;
    bool meta_sent = false;
    int user_rc = 0; /* the caller's callbacks failed: the transfer was canceled for it */
    struct obx_error uerr = OBX_ERROR_INIT;
    pthread_mutex_lock(&b->lock);
    while (ret == 0) {
        if (!meta_sent && r->meta) {
            meta_sent = true;
            struct obx_error perr = OBX_ERROR_INIT;
            json_t *meta = obx_json_parse((const char *)r->meta, r->meta_len, &perr);
            pthread_mutex_unlock(&b->lock);
            int rc = json_is_object(meta) ? on_meta(userdata, meta) : -EPROTO;
            json_decref(meta);
            if (rc < 0 && !user_rc) {
                user_rc = rc;
                obx_error_set(&uerr, -rc, OBX_ERR_CANCELED, "the download stopped: %s",
                              strerror(-rc));
                send_cancel(r);
            }
            pthread_mutex_lock(&b->lock);
            continue;
        }
        if (r->overrun) {
            ret = obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                                "the agent sent more than it was allowed to");
            break;
        }
        if (meta_sent && r->chunks.len > 0) {
            size_t len = 0;
            char *data = obx_buf_steal(&r->chunks, &len);
            r->chunks = (struct obx_buf)OBX_BUF_INIT(OBX_BOX_FILE_WINDOW);
            pthread_mutex_unlock(&b->lock);
            int rc = user_rc ? 0 : on_data(userdata, data, len);
            free(data);
            if (rc < 0 && !user_rc) {
                user_rc = rc;
                obx_error_set(&uerr, -rc, OBX_ERR_CANCELED, "the download stopped: %s",
                              strerror(-rc));
                send_cancel(r);
            }
            taken += len;
            uint8_t ack[8];
            obx_be32_put(ack, (uint32_t)(taken >> 32));
            obx_be32_put(ack + 4, (uint32_t)taken);
            (void)write_frame(b, OBX_AF_FACK, r->id, (const char *)ack, sizeof(ack), NULL);
            pthread_mutex_lock(&b->lock);
            continue;
        }
        if (r->done)
            break;
        /* FMETA comes before any chunk and the end: waiting for either is enough. */
        ret = req_wait(b, r, stall_deadline(), has_chunks, err);
    }
    pthread_mutex_unlock(&b->lock);
    req_end(b, r, ret);
    if (ret == 0)
        ret = user_rc ? (*err = uerr, user_rc) : xfer_result(r, ret_final, err);
    free_req(r);
    return ret;
}

int obx_box_put(struct obx_box *b, json_t *req, struct obx_call *call,
                ssize_t (*read_data)(void *userdata, void *buf, size_t cap), void *userdata,
                json_t **ret_final, struct obx_error *err)
{
    struct box_req *r = NULL;
    int ret = req_begin(b, OBX_AF_FPUT, req, call, 0, 0, &r, err);
    if (!r)
        return ret;
    _cleanup_free_ char *buf = obx_xmalloc(OBX_AGENT_FILE_CHUNK);
    int user_rc = 0;
    while (ret == 0) {
        pthread_mutex_lock(&b->lock);
        bool done = r->done;
        pthread_mutex_unlock(&b->lock);
        if (done) /* the agent refused it, or it was canceled */
            break;
        ssize_t n = read_data(userdata, buf, OBX_AGENT_FILE_CHUNK);
        if (n < 0) {
            /* The bytes cannot come: the agent throws away what it has. */
            user_rc = (int)n;
            send_cancel(r);
            break;
        }
        if (n == 0) {
            ret = write_frame(b, OBX_AF_FEND, r->id, "", 0, err);
            break;
        }
        ret = write_frame(b, OBX_AF_FDATA, r->id, buf, (size_t)n, err);
    }
    if (ret == 0) {
        pthread_mutex_lock(&b->lock);
        ret = req_wait(b, r, stall_deadline(), NULL, err);
        pthread_mutex_unlock(&b->lock);
    }
    req_end(b, r, ret);
    if (ret == 0 && user_rc)
        ret = obx_error_set(err, -user_rc, OBX_ERR_CANCELED,
                            "the upload stopped before its end (%s); nothing was written",
                            strerror(-user_rc));
    else if (ret == 0)
        ret = xfer_result(r, ret_final, err);
    free_req(r);
    return ret;
}

/* ---- live terminals: PTY_OPEN ---- */

/* The call's input, as PTY_INPUT, PTY_RESIZE and PTY_ACK frames; runs under the call's lock. */
static void send_pty_input(void *userdata, const struct obx_call_input *in)
{
    struct box_req *r = userdata;
    uint8_t buf[8];
    switch (in->kind) {
    case OBX_CALL_INPUT_DATA:
        (void)write_frame(r->box, OBX_AF_PTY_INPUT, r->id, (const char *)in->data, in->len, NULL);
        break;
    case OBX_CALL_INPUT_RESIZE:
        buf[0] = (uint8_t)(in->cols >> 8);
        buf[1] = (uint8_t)in->cols;
        buf[2] = (uint8_t)(in->rows >> 8);
        buf[3] = (uint8_t)in->rows;
        (void)write_frame(r->box, OBX_AF_PTY_RESIZE, r->id, (const char *)buf, 4, NULL);
        break;
    case OBX_CALL_INPUT_ACK:
        obx_be32_put(buf, (uint32_t)(in->acked >> 32));
        obx_be32_put(buf + 4, (uint32_t)in->acked);
        (void)write_frame(r->box, OBX_AF_PTY_ACK, r->id, (const char *)buf, 8, NULL);
        break;
    }
}

int obx_box_pty(struct obx_box *b, json_t *req, struct obx_call *call, json_t **ret_exit,
                struct obx_error *err)
{
    struct box_req *r = NULL;
    int ret = req_begin(b, OBX_AF_PTY_OPEN, req, call, 0, 0, &r, err);
    if (!r)
        return ret;
    bool input = ret == 0 && obx_call_set_input(call, send_pty_input, r) == 0;
    if (ret == 0) {
        pthread_mutex_lock(&b->lock);
        ret = req_wait(b, r, 0, NULL, err); /* as long as it is open: the agent has its timer */
        pthread_mutex_unlock(&b->lock);
    }
    if (input)
        obx_call_clear_input(call);
    req_end(b, r, ret);
    if (ret == 0 && r->type == OBX_AF_ERROR) {
        ret = agent_error(r, err);
    } else if (ret == 0) {
        struct obx_error perr = OBX_ERROR_INIT;
        json_t *j =
            r->type == OBX_AF_EXIT ? obx_json_parse((const char *)r->payload, r->len, &perr) : NULL;
        if (json_is_object(j))
            *ret_exit = j;
        else
            ret = obx_error_set(err, EPROTO, OBX_ERR_EXECUTION_FAILED,
                                "the agent ended a terminal with an unreadable answer");
        if (!json_is_object(j))
            json_decref(j);
    }
    free_req(r);
    return ret;
}
