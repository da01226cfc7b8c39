/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker registry (dispatch.h): the table of nodes, choosing one for a call, calls and their
 * ends, sticky routes, and the event thread.
 *
 * The event thread owns everything slow or timed: it delivers each call's end (releasing its slot,
 * saving or dropping its route, then done() without the lock), checks a hello against the store
 * and registers the node, writes heartbeats and stream ends to the store, and runs the timers: a
 * call past its deadline, a cancel the worker did not answer, a hello that never came, a worker
 * whose heartbeats stopped, routes unused for 30 minutes. The rpc thread only moves frames:
 * results end calls, output goes to the caller's hook, heartbeats are answered (registry-remote.c).
 * The embedded worker's calls block a thread each, on a pool of their own.
 */
#include "registry-internal.h"

#include <ctype.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"
#include "common/thread.h"
#include "console/util/pool.h"
#include "rpc/rpc.h"

#define SCAN_MAX_MS 1000
#define PRUNE_EVERY_MS 60000
#define ROUTE_SAVE_EVERY_MS 60000

static const char *const embedded_caps[] = {
    "echo",          "pythonExec",      "terminalExec", "terminalResource",
    "terminalFiles", "terminalSession", "terminalPty"};

/* ---- nodes ---- */

struct reg_node *reg_node_ref(struct reg_node *n)
{
    n->refs++;
    return n;
}

void reg_node_unref(struct obx_dispatch *d, struct reg_node *n)
{
    (void)d;
    if (n && --n->refs == 0)
        free(n);
}

struct reg_node *reg_node_find(struct obx_dispatch *d, const char *id)
{
    for (struct reg_node *n = d->nodes; n; n = n->next)
        if (strcmp(n->id, id) == 0)
            return n;
    return NULL;
}

void reg_node_unlink(struct obx_dispatch *d, struct reg_node *n)
{
    for (struct reg_node **pp = &d->nodes; *pp; pp = &(*pp)->next)
        if (*pp == n) {
            *pp = n->next;
            n->live = false;
            reg_node_unref(d, n);
            return;
        }
}

static int cap_index(const struct reg_node *n, const char *cap)
{
    for (size_t i = 0; i < n->n_caps; i++)
        if (strcmp(n->caps[i].name, cap) == 0)
            return (int)i;
    return -1;
}

static bool node_online(const struct obx_dispatch *d, const struct reg_node *n, uint64_t now)
{
    return n->live && (n->local || now - n->last_seen <= (uint64_t)d->cfg.offline_ttl_sec * 1000);
}

/* ---- routes: an in-memory table over the store's session_routes ---- */

static unsigned route_bucket(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % REG_ROUTE_BUCKETS;
}

struct reg_route *reg_route_find(struct obx_dispatch *d, const char *session_id)
{
    for (struct reg_route *r = d->routes[route_bucket(session_id)]; r; r = r->next)
        if (strcmp(r->session_id, session_id) == 0)
            return r;
    return NULL;
}

/* Lock held. save: the store hears of it now (from the event thread); else it is a reservation
 * made by acquire() that the call's end saves or drops. */
void reg_route_set(struct obx_dispatch *d, const char *session_id, const char *node_id, bool save)
{
    struct reg_route *r = reg_route_find(d, session_id);
    if (!r) {
        r = obx_xcalloc(1, sizeof(*r));
        r->session_id = obx_xstrdup(session_id);
        unsigned b = route_bucket(session_id);
        r->next = d->routes[b];
        d->routes[b] = r;
    }
    snprintf(r->node_id, sizeof(r->node_id), "%s", node_id);
    uint64_t now = obx_now_ms();
    r->last_used = now;
    if (save && now - r->last_saved >= ROUTE_SAVE_EVERY_MS) {
        r->last_saved = now ? now : 1;
        struct reg_event *ev = obx_xcalloc(1, sizeof(*ev));
        ev->kind = EV_ROUTE_PUT;
        ev->route = obx_xstrdup(session_id);
        snprintf(ev->node_id, sizeof(ev->node_id), "%s", node_id);
        reg_event_post(d, ev);
    }
}

static void route_free_entry(struct obx_dispatch *d, struct reg_route **pp, bool save)
{
    struct reg_route *r = *pp;
    *pp = r->next;
    if (save && r->last_saved) {
        struct reg_event *ev = obx_xcalloc(1, sizeof(*ev));
        ev->kind = EV_ROUTE_DEL;
        ev->route = TAKE_PTR(r->session_id);
        reg_event_post(d, ev);
    }
    free(r->session_id);
    free(r);
}

void reg_route_drop(struct obx_dispatch *d, const char *session_id)
{
    for (struct reg_route **pp = &d->routes[route_bucket(session_id)]; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->session_id, session_id) == 0) {
            route_free_entry(d, pp, true);
            return;
        }
}

void reg_routes_keep_only(struct obx_dispatch *d, const char *node_id, char **keep, size_t n)
{
    for (size_t b = 0; b < REG_ROUTE_BUCKETS; b++) {
        for (struct reg_route **pp = &d->routes[b]; *pp;) {
            bool drop = strcmp((*pp)->node_id, node_id) == 0;
            for (size_t i = 0; drop && i < n; i++)
                drop = strcmp(keep[i], (*pp)->session_id) != 0;
            if (drop)
                route_free_entry(d, pp, true);
            else
                pp = &(*pp)->next;
        }
    }
}

static void route_loaded(void *userdata, const char *session_id, const char *node_id,
                         int64_t last_used_ms)
{
    struct obx_dispatch *d = userdata;
    if (!session_id || !node_id)
        return;
    int64_t age = obx_unix_ms() - last_used_ms;
    if (age < 0)
        age = 0;
    reg_route_set(d, session_id, node_id, false);
    struct reg_route *r = reg_route_find(d, session_id);
    uint64_t now = obx_now_ms();
    r->last_used = now > (uint64_t)age ? now - (uint64_t)age : 1;
    r->last_saved = r->last_used;
}

/* ---- events and the completion list ---- */

void reg_event_post(struct obx_dispatch *d, struct reg_event *ev)
{
    ev->next = NULL;
    if (d->events_tail)
        d->events_tail->next = ev;
    else
        d->events = ev;
    d->events_tail = ev;
    pthread_cond_broadcast(&d->cond);
}

static void event_free(struct reg_event *ev)
{
    if (ev->kind == EV_HELLO) {
        struct obx_rpc_frame f = {.kind = OBX_RPC_HELLO, .u.hello = ev->hello};
        obx_rpc_frame_done(&f);
    }
    free(ev->route);
    free(ev);
}

void reg_call_finish(struct obx_dispatch *d, struct reg_call *c, int rc, json_t *result,
                     const struct obx_error *err)
{
    if (c->finished) {
        json_decref(result);
        return;
    }
    c->finished = true;
    for (struct reg_call **pp = &c->node->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    c->rc = rc;
    c->result = result;
    if (err)
        c->err = *err;
    c->next = NULL;
    if (d->completed_tail)
        d->completed_tail->next = c;
    else
        d->completed = c;
    d->completed_tail = c;
    pthread_cond_broadcast(&d->cond);
}

void reg_node_fail_calls(struct obx_dispatch *d, struct reg_node *n, const char *why)
{
    while (n->calls) {
        struct obx_error err = OBX_ERROR_INIT;
        obx_error_set(&err, EPIPE, "worker_lost",
                      "worker %s went away while it ran the call (%s); the call's processes "
                      "are killed when the worker notices",
                      n->id, why);
        reg_call_finish(d, n->calls, -EPIPE, NULL, &err);
    }
}

/* ---- choosing a node ---- */

/* Calls that may run in a session (pythonexec when its payload names one): routed to the
 * session's worker. */
static bool is_terminal(const char *cap)
{
    return strcmp(cap, "terminalexec") == 0 || strcmp(cap, "terminalresource") == 0 ||
           strcmp(cap, "terminalfiles") == 0 || strcmp(cap, "terminalsession") == 0 ||
           strcmp(cap, "pythonexec") == 0 || strcmp(cap, "terminalpty") == 0;
}

/* Calls that may start a session, counted against a worker's session limit. */
static bool starts_sessions(const char *cap)
{
    return strcmp(cap, "terminalexec") == 0 || strcmp(cap, "pythonexec") == 0;
}

/* Capabilities that act on an existing session only: they go where its route leads, or
 * nowhere. */
static bool session_only(const char *cap)
{
    return strcmp(cap, "terminalfiles") == 0 || strcmp(cap, "terminalsession") == 0 ||
           strcmp(cap, "terminalpty") == 0;
}

/* The id a user gave, without the console's "obx:<account>:" scope. */
static const char *session_name(const char *sid)
{
    const char *p = strrchr(sid, ':');
    return p ? p + 1 : sid;
}

/* Least in-flight first, ties broken round robin; new_session: the node must have room for one
 * more terminal session. Lock held. */
static int pick(struct obx_dispatch *d, struct reg_call *c, bool new_session, struct obx_error *err)
{
    size_t count = 0;
    for (struct reg_node *n = d->nodes; n; n = n->next)
        count++;
    if (count == 0)
        return obx_error_set(err, ENODEV, "no_worker", "no online worker supports %s",
                             c->capability);
    unsigned start = d->rr++ % count;
    uint64_t now = obx_now_ms();
    struct reg_node *best = NULL;
    int best_cap = -1;
    bool seen = false, sessions_full = false, draining = false;
    for (size_t k = 0; k < count; k++) {
        struct reg_node *n = d->nodes;
        for (size_t j = 0; j < (start + k) % count; j++)
            n = n->next;
        int ci = cap_index(n, c->capability);
        if (ci < 0 || !node_online(d, n, now))
            continue;
        if (n->draining) { /* it finishes what it runs; new work goes elsewhere */
            draining = true;
            continue;
        }
        seen = true;
        if (n->caps[ci].inflight >= n->caps[ci].max_inflight)
            continue;
        if (new_session && n->max_sessions > 0 && n->active_sessions >= n->max_sessions) {
            sessions_full = true;
            continue;
        }
        if (!best || n->caps[ci].inflight < best->caps[best_cap].inflight) {
            best = n;
            best_cap = ci;
        }
    }
    if (!best) {
        if (sessions_full)
            return obx_error_set(err, ENOSPC, "session_capacity_exceeded",
                                 "every worker that runs %s has as many terminal sessions as it "
                                 "allows (WORKER_TERMINAL_MAX_ACTIVE_SESSIONS); end a session or "
                                 "add a worker",
                                 c->capability);
        if (seen)
            return obx_error_set(err, EBUSY, OBX_ERR_NO_CAPACITY,
                                 "every worker that runs %s is busy; try again shortly",
                                 c->capability);
        if (draining)
            return obx_error_set(err, ENODEV, "no_worker",
                                 "every worker that runs %s is stopping; try again once one is "
                                 "back or another has connected",
                                 c->capability);
        return obx_error_set(err, ENODEV, "no_worker", "no online worker supports %s",
                             c->capability);
    }
    best->caps[best_cap].inflight++;
    c->node = reg_node_ref(best);
    c->cap = best_cap;
    return 0;
}

int obx_dispatch_acquire(struct obx_dispatch *d, const char *capability, json_t *payload,
                         struct obx_dispatch_slot **ret, struct obx_error *err)
{
    struct reg_call *c = obx_xcalloc(1, sizeof(*c));
    c->d = d;
    size_t n = 0;
    for (const char *p = capability; *p && n + 1 < sizeof(c->capability); p++)
        if (*p != ' ')
            c->capability[n++] = (char)tolower((unsigned char)*p);
    const char *sid = NULL;
    if (is_terminal(c->capability))
        sid = obx_json_get_str(payload, "session_id", NULL);
    int r = 0;
    pthread_mutex_lock(&d->lock);
    struct reg_route *route = sid && *sid ? reg_route_find(d, sid) : NULL;
    struct reg_node *routed = route ? reg_node_find(d, route->node_id) : NULL;
    int ci = routed ? cap_index(routed, c->capability) : -1;
    bool only = session_only(c->capability);
    if (only && !route) {
        r = obx_error_set(err, ENOENT, OBX_ERR_SESSION_NOT_FOUND, "session not found");
    } else if (only && routed && ci >= 0 && !routed->local &&
               strcmp(c->capability, "terminalpty") == 0 && !routed->ext_pty) {
        r = obx_error_set(err, ENOTSUP, OBX_ERR_UNSUPPORTED,
                          "terminal session %s is on worker %s, which does not speak the \"pty\" "
                          "extension of the worker protocol (an older worker)",
                          session_name(sid), route->node_id);
    } else if (only && routed && ci < 0) {
        r = obx_error_set(err, ENOTSUP, OBX_ERR_UNSUPPORTED,
                          "terminal session %s is on worker %s, which does not provide %s (an "
                          "original or older worker)",
                          session_name(sid), route->node_id, c->capability);
    } else if (route && routed && ci < 0) {
        reg_route_drop(d, sid); /* the worker no longer runs this: choose again */
        route = NULL;
    }
    if (r < 0) {
        /* answered above */
    } else if (route && !routed) {
        r = obx_error_set(err, EHOSTDOWN, "session_unavailable",
                          "terminal session %s is on worker %s, which is not connected now; it "
                          "answers again once that worker is back",
                          session_name(sid), route->node_id);
    } else if (route) {
        if (routed->caps[ci].inflight >= routed->caps[ci].max_inflight) {
            r = obx_error_set(err, EBUSY, OBX_ERR_NO_CAPACITY,
                              "the worker that has this terminal session is busy; try again "
                              "shortly");
        } else {
            routed->caps[ci].inflight++;
            c->node = reg_node_ref(routed);
            c->cap = ci;
            route->last_used = obx_now_ms();
            c->route = obx_xstrdup(sid);
        }
    } else {
        bool new_session = sid && *sid && starts_sessions(c->capability);
        r = pick(d, c, new_session, err);
        if (r >= 0 && sid && *sid) {
            reg_route_set(d, sid, c->node->id, false);
            c->route = obx_xstrdup(sid);
            c->new_route = true;
            if (new_session)
                c->node->active_sessions++;
        }
    }
    pthread_mutex_unlock(&d->lock);
    if (r < 0) {
        free(c);
        return r;
    }
    *ret = (struct obx_dispatch_slot *)c;
    return 0;
}

/* Lock held: the slot's counters go back; a route this call made is forgotten unless kept. */
static void slot_return(struct obx_dispatch *d, struct reg_call *c, bool keep_route)
{
    if (c->node->caps[c->cap].inflight > 0)
        c->node->caps[c->cap].inflight--;
    if (c->new_route && !keep_route) {
        struct reg_route *r = reg_route_find(d, c->route);
        if (r && strcmp(r->node_id, c->node->id) == 0)
            reg_route_drop(d, c->route);
        if (starts_sessions(c->capability) && c->node->active_sessions > 0)
            c->node->active_sessions--;
    }
}

static void call_free(struct obx_dispatch *d, struct reg_call *c)
{
    reg_xfer_unref(c->xfer);
    reg_node_unref(d, c->node);
    json_decref(c->result);
    free(c->route);
    free(c);
}

void obx_dispatch_release(struct obx_dispatch_slot *slot)
{
    struct reg_call *c = (struct reg_call *)slot;
    if (!c)
        return;
    struct obx_dispatch *d = c->d;
    pthread_mutex_lock(&d->lock);
    slot_return(d, c, false);
    call_free(d, c);
    pthread_mutex_unlock(&d->lock);
}

/* ---- running a call ---- */

static void local_job(void *arg)
{
    struct reg_call *c = arg;
    struct obx_dispatch *d = c->d;
    json_t *result = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = c->result ? d->cfg.embedded->exec(d->cfg.embedded, c->capability, c->result, c->call,
                                              &result, &err)
                      : obx_error_set(&err, ENOMEM, OBX_ERR_INTERNAL, "out of memory");
    pthread_mutex_lock(&d->lock);
    json_decref(TAKE_PTR(c->result)); /* the payload it ran with */
    reg_call_finish(d, c, r, r < 0 ? NULL : result, &err);
    if (r < 0)
        json_decref(result);
    pthread_mutex_unlock(&d->lock);
}

/* Runs with the call's own lock held: quick, and no obx_call_* here. */
static void remote_cancel(void *userdata)
{
    struct reg_call *c = userdata;
    struct obx_dispatch *d = c->d;
    pthread_mutex_lock(&d->lock);
    if (!c->finished) {
        if (c->started && c->node->ext_cancel && c->node->live) {
            reg_remote_send_cancel(d, c, "canceled by the caller");
            c->cancel_until = obx_now_ms() + REG_CANCEL_WAIT_MS;
            d->next_scan = OBX_MIN(d->next_scan, c->cancel_until);
            pthread_cond_broadcast(&d->cond);
        } else {
            struct obx_error err = OBX_ERROR_INIT;
            obx_error_set(&err, ECANCELED, OBX_ERR_CANCELED, "the call was canceled");
            reg_call_finish(d, c, -ECANCELED, NULL, &err);
        }
    }
    pthread_mutex_unlock(&d->lock);
}

void obx_dispatch_start(struct obx_dispatch_slot *slot, json_t *payload, struct obx_call *call,
                        obx_dispatch_done_fn done, void *userdata)
{
    struct reg_call *c = (struct reg_call *)slot;
    struct obx_dispatch *d = c->d;
    c->call = call;
    c->done = done;
    c->userdata = userdata;
    obx_random_uuid(c->id);
    struct obx_error err = OBX_ERROR_INIT;

    if (c->node->local) {
        /* The job gets a copy of its own: nothing of the request it came with is shared with
         * the pool thread, which may still be reading it when the request is freed. */
        c->result = json_deep_copy(payload);
        pthread_mutex_lock(&d->lock);
        c->next = c->node->calls;
        c->node->calls = c;
        c->started = true;
        pthread_mutex_unlock(&d->lock);
        if (obx_console_pool_submit(d->local_pool, local_job, c) < 0) {
            obx_error_set(&err, EAGAIN, OBX_ERR_NO_CAPACITY, "the console is too busy");
            pthread_mutex_lock(&d->lock);
            json_decref(TAKE_PTR(c->result));
            reg_call_finish(d, c, -EAGAIN, NULL, &err);
            pthread_mutex_unlock(&d->lock);
        }
        return;
    }

    if (call->deadline)
        c->deadline = call->deadline + REG_DEADLINE_GRACE_MS;
    pthread_mutex_lock(&d->lock);
    c->next = c->node->calls;
    c->node->calls = c;
    pthread_mutex_unlock(&d->lock);
    /* Before anything is sent, so a cancel always finds its call. */
    if (strcmp(c->capability, "terminalpty") == 0)
        (void)obx_call_set_input(call, reg_pty_input, c);
    if (obx_call_set_canceller(call, remote_cancel, c) < 0) {
        obx_error_set(&err, ECANCELED, OBX_ERR_CANCELED, "the call was canceled");
        pthread_mutex_lock(&d->lock);
        reg_call_finish(d, c, -ECANCELED, NULL, &err);
        pthread_mutex_unlock(&d->lock);
        return;
    }
    pthread_mutex_lock(&d->lock);
    if (!c->finished) {
        c->started = true;
        int r = c->node->live ? reg_remote_send_call(d, c, payload) : -EPIPE;
        if (r == -EPIPE) {
            obx_error_set(&err, EPIPE, "worker_lost", "worker %s went away before the call",
                          c->node->id);
            reg_call_finish(d, c, r, NULL, &err);
        } else if (r < 0) {
            obx_error_set(&err, -r, OBX_ERR_INVALID_PAYLOAD,
                          "the call cannot be sent to a worker: %s",
                          r == -EMSGSIZE ? "its payload is larger than 4 MiB" : strerror(-r));
            reg_call_finish(d, c, r, NULL, &err);
        }
        if (c->deadline && !c->finished) {
            d->next_scan = OBX_MIN(d->next_scan, c->deadline);
            pthread_cond_broadcast(&d->cond);
        }
    }
    pthread_mutex_unlock(&d->lock);
}

struct exec_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int r;
    json_t *result;
    struct obx_error err;
};

static void exec_done(void *userdata, int r, json_t *result, const struct obx_error *err)
{
    struct exec_wait *w = userdata;
    pthread_mutex_lock(&w->lock);
    w->r = r;
    w->result = result;
    if (err)
        w->err = *err;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* ---- file transfers on remote workers ("files") ---- */

static struct reg_xfer *xfer_new(void)
{
    struct reg_xfer *x = obx_xcalloc(1, sizeof(*x));
    x->refs = 1;
    pthread_mutex_init(&x->lock, NULL);
    obx_cond_init_monotonic(&x->cond);
    x->in = (struct obx_buf)OBX_BUF_INIT(OBX_RPC_FILE_WINDOW_BYTES + OBX_RPC_FILE_CHUNK_BYTES);
    return x;
}

static struct reg_xfer *xfer_ref(struct reg_xfer *x)
{
    pthread_mutex_lock(&x->lock);
    x->refs++;
    pthread_mutex_unlock(&x->lock);
    return x;
}

void reg_xfer_unref(struct reg_xfer *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&x->lock);
    bool last = --x->refs == 0;
    pthread_mutex_unlock(&x->lock);
    if (!last)
        return;
    obx_rpc_stream_unref(x->stream);
    obx_buf_free(&x->in);
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->cond);
    free(x);
}

struct xfer_wait {
    struct reg_xfer *x;
    int r;
    json_t *result;
    struct obx_error err;
};

static void xfer_done(void *userdata, int r, json_t *result, const struct obx_error *err)
{
    struct xfer_wait *w = userdata;
    pthread_mutex_lock(&w->x->lock);
    w->r = r;
    w->result = result;
    if (err)
        w->err = *err;
    w->x->done = true;
    pthread_cond_broadcast(&w->x->cond);
    pthread_mutex_unlock(&w->x->lock);
}

static void xfer_send(struct reg_xfer *x, struct obx_rpc_frame *f)
{
    if (x->stream)
        (void)obx_rpc_stream_send(x->stream, f, f->kind == OBX_RPC_FILE_ACK_TO_WORKER);
}

/* The transfer's bytes between the worker and the call's hooks, on the thread that waits, until
 * the call ended. Returns 0, or the hooks' negative errno (the call was then canceled). */
static int xfer_pump(struct reg_xfer *x, struct obx_call *call)
{
    _cleanup_free_ char *buf = call->read_data ? obx_xmalloc(OBX_RPC_FILE_CHUNK_BYTES) : NULL;
    uint64_t moved = 0, sent = 0, last_move = obx_now_ms();
    bool eof_sent = false;
    int hook_rc = 0;
    pthread_mutex_lock(&x->lock);
    for (;;) {
        if (x->in.len > 0) { /* a read's chunks: on to on_data, then acknowledged */
            size_t len = 0;
            char *data = obx_buf_steal(&x->in, &len);
            x->in =
                (struct obx_buf)OBX_BUF_INIT(OBX_RPC_FILE_WINDOW_BYTES + OBX_RPC_FILE_CHUNK_BYTES);
            pthread_mutex_unlock(&x->lock);
            int rc = hook_rc || !call->on_data ? 0 : call->on_data(call->data_userdata, data, len);
            free(data);
            if (rc < 0 && !hook_rc) {
                hook_rc = rc;
                obx_call_cancel(call);
            }
            moved += len;
            last_move = obx_now_ms();
            struct obx_rpc_frame f = {.kind = OBX_RPC_FILE_ACK_TO_WORKER};
            f.u.file_ack = (struct obx_rpc_file_ack){x->command_id, (int64_t)moved};
            xfer_send(x, &f);
            pthread_mutex_lock(&x->lock);
            continue;
        }
        if (x->done)
            break;
        if (call->read_data && !eof_sent && !hook_rc &&
            sent - x->worker_taken + OBX_RPC_FILE_CHUNK_BYTES <= OBX_RPC_FILE_WINDOW_BYTES) {
            pthread_mutex_unlock(&x->lock);
            ssize_t n = call->read_data(call->data_userdata, buf, OBX_RPC_FILE_CHUNK_BYTES);
            if (n < 0) {
                hook_rc = (int)n;
                obx_call_cancel(call);
            } else {
                struct obx_rpc_frame f = {.kind = OBX_RPC_FILE_CHUNK_TO_WORKER};
                f.u.chunk =
                    (struct obx_rpc_file_chunk){x->command_id, (uint8_t *)buf, (size_t)n, n == 0};
                xfer_send(x, &f);
                sent += (uint64_t)n;
                eof_sent = n == 0;
                last_move = obx_now_ms();
            }
            pthread_mutex_lock(&x->lock);
            continue;
        }
        if (x->overrun || obx_now_ms() - last_move > OBX_CALL_STALL_MS) {
            /* The worker broke the window, or nothing moved for too long: stop it. */
            pthread_mutex_unlock(&x->lock);
            obx_call_cancel(call);
            pthread_mutex_lock(&x->lock);
            if (!hook_rc)
                hook_rc = x->overrun ? -EPROTO : -ETIMEDOUT;
            last_move = obx_now_ms();
        }
        struct timespec ts = obx_ms_to_timespec(obx_now_ms() + 1000);
        pthread_cond_timedwait(&x->cond, &x->lock, &ts);
    }
    pthread_mutex_unlock(&x->lock);
    return hook_rc;
}

static int xfer_exec(struct reg_call *c, json_t *payload, struct obx_call *call,
                     json_t **ret_result, struct obx_error *err)
{
    struct xfer_wait w = {.x = xfer_new(), .err = OBX_ERROR_INIT};
    c->xfer = xfer_ref(w.x);
    obx_dispatch_start((struct obx_dispatch_slot *)c, payload, call, xfer_done, &w);
    int hook_rc = xfer_pump(w.x, call);
    reg_xfer_unref(w.x);
    if (hook_rc < 0) {
        json_decref(w.result);
        return obx_error_set(err, -hook_rc, OBX_ERR_CANCELED, "the transfer stopped: %s",
                             hook_rc == -ETIMEDOUT ? "nothing moved for two minutes"
                             : hook_rc == -EPROTO  ? "the worker broke the transfer's window"
                                                   : strerror(-hook_rc));
    }
    if (w.r < 0) {
        *err = w.err;
        return w.r;
    }
    *ret_result = w.result;
    return 0;
}

int obx_dispatch_exec(struct obx_dispatch *d, const char *capability, json_t *payload,
                      struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    struct obx_dispatch_slot *slot;
    int r = obx_dispatch_acquire(d, capability, payload, &slot, err);
    if (r < 0)
        return r;
    struct reg_call *c = (struct reg_call *)slot;
    if (!c->node->local && (call->on_data || call->read_data)) {
        if (!c->node->ext_files) {
            r = obx_error_set(err, ENOTSUP, OBX_ERR_UNSUPPORTED,
                              "worker %s does not move files (it does not speak the \"files\" "
                              "extension of the worker protocol)",
                              c->node->id);
            obx_dispatch_release(slot);
            return r;
        }
        return xfer_exec(c, payload, call, ret_result, err);
    }
    struct exec_wait w = {.err = OBX_ERROR_INIT};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    obx_dispatch_start(slot, payload, call, exec_done, &w);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    if (w.r < 0) {
        *err = w.err;
        return w.r;
    }
    *ret_result = w.result;
    return 0;
}

/* ---- the event thread ---- */

/* A call's end: its slot and route, then the caller hears of it. Lock held on entry and exit. */
static void deliver(struct obx_dispatch *d, struct reg_call *c)
{
    while (c->hooks > 0)
        pthread_cond_wait(&d->cond, &d->lock);
    bool ok = c->rc >= 0;
    bool gone = obx_streq(c->err.code, OBX_ERR_SESSION_NOT_FOUND);
    /* A call that failed on its worker may still have created its session there (a cancel or
     * timeout of the first command): the route stays. It goes when the worker says the session
     * is not there, or (a new route) when the worker went away: a session it still has comes
     * back with its reconnect. */
    bool keep =
        ok || (c->route && !gone && !(c->new_route && obx_streq(c->err.code, "worker_lost")));
    /* A session closed on its worker is gone too. */
    bool closed = ok && strcmp(c->capability, "terminalsession") == 0 &&
                  obx_json_get_bool(c->result, "closed", false);
    if (closed) {
        keep = false;
        gone = true;
    }
    if (c->route) {
        if (keep)
            reg_route_set(d, c->route, c->node->id, true);
        else if (gone)
            reg_route_drop(d, c->route);
    }
    slot_return(d, c, keep);
    pthread_mutex_unlock(&d->lock);
    if (!c->node->local && c->call) {
        obx_call_clear_canceller(c->call);
        obx_call_clear_input(c->call);
    }
    c->done(c->userdata, c->rc, ok ? TAKE_PTR(c->result) : NULL, &c->err);
    pthread_mutex_lock(&d->lock);
    call_free(d, c);
}

static void handle_event(struct obx_dispatch *d, struct reg_event *ev)
{
    struct obx_error err = OBX_ERROR_INIT;
    int r = 0;
    switch (ev->kind) {
    case EV_HELLO:
        reg_remote_hello(d, ev); /* copies what it keeps: the hello goes with the event */
        break;
    case EV_SEEN:
        r = obx_store_worker_seen(d->store, ev->node_id, ev->session_id, obx_unix_ms(), &err);
        if (r == -ENOENT || r == -ESTALE) {
            pthread_mutex_lock(&d->lock);
            struct reg_node *n = reg_node_find(d, ev->node_id);
            if (n && n->conn && strcmp(n->session_id, ev->session_id) == 0)
                obx_rpc_stream_close(n->conn->stream,
                                     r == -ENOENT ? OBX_RPC_NOT_FOUND : OBX_RPC_FAILED_PRECONDITION,
                                     r == -ENOENT ? "node not found" : "session is outdated");
            pthread_mutex_unlock(&d->lock);
            r = 0;
        }
        break;
    case EV_ENDED:
        r = obx_store_worker_end_session(d->store, ev->node_id, ev->session_id, &err);
        break;
    case EV_ROUTE_PUT:
        r = obx_store_route_put(d->store, ev->route, ev->node_id, obx_unix_ms(), &err);
        break;
    case EV_ROUTE_DEL:
        r = obx_store_route_delete(d->store, ev->route, &err);
        break;
    }
    if (r < 0)
        obx_warn("worker registry: %s", err.message);
    event_free(ev);
}

/* Lock held: calls past their deadline or cancel wait, the embedded worker's heartbeat, route
 * pruning, and the remote connections' timers. Returns when to look next. */
static uint64_t timers(struct obx_dispatch *d, uint64_t now)
{
    uint64_t next = now + SCAN_MAX_MS;
    for (struct reg_node *n = d->nodes; n; n = n->next) {
        if (n->local) {
            uint64_t beat = (uint64_t)d->cfg.heartbeat_interval_sec * 1000;
            if (now - n->last_seen >= beat) {
                n->last_seen = now;
                struct reg_event *ev = obx_xcalloc(1, sizeof(*ev));
                ev->kind = EV_SEEN;
                snprintf(ev->node_id, sizeof(ev->node_id), "%s", n->id);
                snprintf(ev->session_id, sizeof(ev->session_id), "%s", n->session_id);
                reg_event_post(d, ev);
            }
            next = OBX_MIN(next, n->last_seen + beat);
            continue;
        }
        for (struct reg_call *c = n->calls, *following; c; c = following) {
            following = c->next;
            if (c->cancel_until && now >= c->cancel_until) {
                struct obx_error err = OBX_ERROR_INIT;
                obx_error_set(&err, ECANCELED, OBX_ERR_CANCELED,
                              "the call was canceled; worker %s did not confirm it within %d s",
                              n->id, REG_CANCEL_WAIT_MS / 1000);
                reg_call_finish(d, c, -ECANCELED, NULL, &err);
            } else if (c->deadline && now >= c->deadline) {
                reg_remote_send_cancel(d, c, "deadline exceeded");
                struct obx_error err = OBX_ERROR_INIT;
                obx_error_set(&err, ETIMEDOUT, OBX_ERR_DEADLINE_EXCEEDED,
                              "worker %s did not answer before the call's deadline", n->id);
                reg_call_finish(d, c, -ETIMEDOUT, NULL, &err);
            } else {
                if (c->cancel_until)
                    next = OBX_MIN(next, c->cancel_until);
                if (c->deadline)
                    next = OBX_MIN(next, c->deadline);
            }
        }
    }
    next = OBX_MIN(next, reg_remote_timers(d, now));
    if (now - d->last_prune >= PRUNE_EVERY_MS) {
        d->last_prune = now;
        for (size_t b = 0; b < REG_ROUTE_BUCKETS; b++)
            for (struct reg_route **pp = &d->routes[b]; *pp;) {
                if (now - (*pp)->last_used > REG_ROUTE_IDLE_MS)
                    route_free_entry(d, pp, true);
                else
                    pp = &(*pp)->next;
            }
    }
    return next;
}

static void *event_main(void *arg)
{
    struct obx_dispatch *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        if (d->completed) {
            struct reg_call *c = d->completed;
            d->completed = c->next;
            if (!d->completed)
                d->completed_tail = NULL;
            deliver(d, c);
            continue;
        }
        if (d->events) {
            struct reg_event *ev = d->events;
            d->events = ev->next;
            if (!d->events)
                d->events_tail = NULL;
            pthread_mutex_unlock(&d->lock);
            handle_event(d, ev);
            pthread_mutex_lock(&d->lock);
            continue;
        }
        if (d->stopping)
            break;
        uint64_t now = obx_now_ms();
        if (now >= d->next_scan)
            d->next_scan = timers(d, now);
        if (d->completed || d->events)
            continue;
        struct timespec ts = obx_ms_to_timespec(d->next_scan);
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* ---- life ---- */

static int add_embedded(struct obx_dispatch *d, struct obx_error *err)
{
    struct reg_node *n = obx_xcalloc(1, sizeof(*n));
    n->refs = 1;
    n->local = n->live = true;
    snprintf(n->id, sizeof(n->id), "%s", OBX_DISPATCH_EMBEDDED_ID);
    snprintf(n->session_id, sizeof(n->session_id), "local");
    unsigned max = d->cfg.embedded_max_inflight ? d->cfg.embedded_max_inflight : 4;
    struct obx_store_worker_cap caps[OBX_ARRAY_SIZE(embedded_caps)];
    for (size_t i = 0; i < OBX_ARRAY_SIZE(embedded_caps); i++) {
        struct reg_cap *c = &n->caps[n->n_caps++];
        snprintf(c->declared, sizeof(c->declared), "%s", embedded_caps[i]);
        for (size_t k = 0; embedded_caps[i][k] && k + 1 < sizeof(c->name); k++)
            c->name[k] = (char)tolower((unsigned char)embedded_caps[i][k]);
        c->max_inflight = max;
        caps[i] = (struct obx_store_worker_cap){(char *)embedded_caps[i], (int)max};
    }
    n->max_sessions = (int)d->cfg.embedded_max_sessions;
    n->last_seen = obx_now_ms();
    struct obx_store_worker_label labels[] = {
        {(char *)OBX_WORKER_LABEL_SOURCE, (char *)"embedded"},
        {(char *)OBX_WORKER_LABEL_TYPE, (char *)OBX_WORKER_TYPE_NORMAL},
    };
    struct obx_store_registration reg = {
        .node_id = n->id,
        .session_id = n->session_id,
        .node_name = "embedded",
        .executor_kind = d->cfg.embedded_kind ? d->cfg.embedded_kind : "",
        .version = OBX_VERSION,
        .caps = caps,
        .n_caps = OBX_ARRAY_SIZE(caps),
        .labels = labels,
        .n_labels = OBX_ARRAY_SIZE(labels),
        .now_ms = obx_unix_ms(),
        .create = true,
    };
    int r = obx_store_worker_register(d->store, &reg, err);
    if (r < 0) {
        free(n);
        return r;
    }
    d->nodes = n;
    d->local_pool = obx_console_pool_new((int)(max * OBX_ARRAY_SIZE(embedded_caps)), 4096);
    return 0;
}

int obx_dispatch_new(const struct obx_dispatch_config *cfg, struct obx_dispatch **ret,
                     struct obx_error *err)
{
    struct obx_dispatch *d = obx_xcalloc(1, sizeof(*d));
    d->cfg = *cfg;
    d->store = cfg->store;
    if (d->cfg.heartbeat_interval_sec <= 0)
        d->cfg.heartbeat_interval_sec = 5;
    pthread_mutex_init(&d->lock, NULL);
    obx_cond_init_monotonic(&d->cond);
    d->last_prune = d->next_scan = obx_now_ms();
    int r = obx_store_route_each(d->store, route_loaded, d, err);
    if (r >= 0 && cfg->embedded)
        r = add_embedded(d, err);
    if (r >= 0) {
        d->thread_started = pthread_create(&d->thread, NULL, event_main, d) == 0;
        if (!d->thread_started)
            r = obx_error_set(err, EAGAIN, OBX_ERR_INTERNAL, "cannot start the registry thread");
    }
    if (r >= 0 && cfg->grpc_port >= 0)
        r = reg_remote_start(d, err);
    if (r < 0) {
        obx_dispatch_free(d);
        return r;
    }
    *ret = d;
    return 0;
}

void obx_dispatch_grpc_addrs(const struct obx_dispatch *d, char *buf, size_t size)
{
    snprintf(buf, size, "%s", d->grpc_addrs);
}

int obx_dispatch_grpc_port(const struct obx_dispatch *d)
{
    return d->grpc_port;
}

void obx_dispatch_free(struct obx_dispatch *d)
{
    if (!d)
        return;
    reg_remote_stop(d);                   /* every stream ends; their calls are finished */
    obx_console_pool_free(d->local_pool); /* the embedded worker's calls end */
    pthread_mutex_lock(&d->lock);
    for (struct reg_node *n = d->nodes; n; n = n->next)
        while (n->calls) {
            struct obx_error err = OBX_ERROR_INIT;
            obx_error_set(&err, ECANCELED, OBX_ERR_CANCELED, "the console is stopping");
            reg_call_finish(d, n->calls, -ECANCELED, NULL, &err);
        }
    d->stopping = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (d->thread_started)
        pthread_join(d->thread, NULL); /* delivers what ended, handles what was posted */
    while (d->events) {
        struct reg_event *ev = d->events;
        d->events = ev->next;
        event_free(ev);
    }
    while (d->nodes) {
        struct reg_node *n = d->nodes;
        d->nodes = n->next;
        reg_node_unref(d, n);
    }
    for (size_t b = 0; b < REG_ROUTE_BUCKETS; b++)
        while (d->routes[b])
            route_free_entry(d, &d->routes[b], false);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d);
}

json_t *obx_dispatch_inflight(struct obx_dispatch *d)
{
    json_t *workers = json_array();
    pthread_mutex_lock(&d->lock);
    for (struct reg_node *n = d->nodes; n; n = n->next) {
        json_t *caps = json_array();
        for (size_t i = 0; i < n->n_caps; i++)
            json_array_append_new(caps, json_pack("{s:s, s:i, s:i}", "name", n->caps[i].name,
                                                  "inflight", (int)n->caps[i].inflight,
                                                  "max_inflight", (int)n->caps[i].max_inflight));
        json_array_append_new(workers,
                              json_pack("{s:s, s:o}", "node_id", n->id, "capabilities", caps));
    }
    pthread_mutex_unlock(&d->lock);
    return workers;
}

int obx_dispatch_revoke(struct obx_dispatch *d, const char *node_id)
{
    int r = 0;
    pthread_mutex_lock(&d->lock);
    struct reg_node *n = reg_node_find(d, node_id);
    if (n && !n->local && n->conn) {
        obx_rpc_stream_close(n->conn->stream, OBX_RPC_PERMISSION_DENIED,
                             "worker credential revoked");
        reg_node_fail_calls(d, n, "its credential was revoked");
        reg_node_unlink(d, n);
        r = 1;
    }
    reg_routes_keep_only(d, node_id, NULL, 0);
    pthread_mutex_unlock(&d->lock);
    return r;
}

void obx_dispatch_sessions(struct obx_dispatch *d, const char *prefix,
                           void (*fn)(void *userdata, const char *session_id, const char *node_id,
                                      bool connected),
                           void *userdata)
{
    size_t plen = strlen(prefix);
    pthread_mutex_lock(&d->lock);
    for (size_t b = 0; b < REG_ROUTE_BUCKETS; b++)
        for (struct reg_route *r = d->routes[b]; r; r = r->next)
            if (strncmp(r->session_id, prefix, plen) == 0)
                fn(userdata, r->session_id, r->node_id, reg_node_find(d, r->node_id) != NULL);
    pthread_mutex_unlock(&d->lock);
}
