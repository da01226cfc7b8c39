/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inside the worker registry: nodes, calls, connections and the event thread, shared by
 * registry.c (nodes, choosing one, calls and their ends, sticky routes, the event thread) and
 * registry-remote.c (the worker protocol: handshake, heartbeats, results, the end of a stream).
 *
 * One lock (d->lock) guards every node, call, connection and route. Nothing blocking runs under
 * it: store writes and the callers' done() run on the event thread without it. Lock order: d->lock
 * before a stream's own lock (obx_rpc_stream_send() under d->lock is fine; the rpc module calls
 * back into the registry without its stream lock).
 */
#ifndef OBX_CONSOLE_REGISTRY_INTERNAL_H
#define OBX_CONSOLE_REGISTRY_INTERNAL_H

#include <pthread.h>

#include "common/buf.h"
#include "common/json.h"
#include "console/store/store.h"
#include "dispatch.h"
#include "rpc/rpc.h"

#define REG_MAX_CAPS 16
#define REG_MAX_LABELS 64
#define REG_LABEL_MAX_BYTES 256
#define REG_CANCEL_WAIT_MS 5000    /* a worker that speaks "cancel" answers within this */
#define REG_DEADLINE_GRACE_MS 2000 /* the worker's own timeout result may take this long */
#define REG_HELLO_TIMEOUT_MS 10000
#define REG_ROUTE_IDLE_MS (30ull * 60 * 1000) /* a route unused this long is forgotten */

struct reg_cap {
    char name[64];     /* lower-case, as dispatched */
    char declared[64]; /* as the worker declared it */
    unsigned max_inflight, inflight;
};

struct reg_call;
struct reg_conn;

struct reg_node {
    int refs; /* under d->lock */
    char id[OBX_WORKER_NODE_ID_MAX + 1];
    char session_id[40]; /* this connection's; "local" for the embedded worker */
    bool local;
    bool live; /* on d->nodes: takes calls */
    struct reg_cap caps[REG_MAX_CAPS];
    size_t n_caps;
    int max_sessions; /* 0: the worker did not say */
    int active_sessions;
    uint64_t last_seen; /* monotonic ms */
    /* remote */
    struct reg_conn *conn;
    bool ext_cancel, ext_output, ext_recovery, ext_files, ext_pty;
    bool draining;          /* the worker said it is stopping: no new work for it */
    struct reg_call *calls; /* in flight on this node */
    struct reg_node *next;
};

/* "files": the bytes of a terminalFiles read or write on a remote worker, between the rpc
 * thread (the worker's chunks and acknowledgements) and the thread that waits for the call
 * (obx_dispatch_exec()), which hands them on. Shared by the call and that thread. */
struct reg_xfer {
    int refs; /* under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;           /* monotonic */
    struct obx_rpc_stream *stream; /* the worker's, once the dispatch went; a reference */
    char command_id[37];
    struct obx_buf in;     /* a read's chunks not handed on yet, at most the window */
    uint64_t worker_taken; /* a write's bytes the worker acknowledged */
    bool done, overrun;
};
void reg_xfer_unref(struct reg_xfer *x);

struct reg_call {
    struct obx_dispatch *d;
    char id[37];
    struct reg_node *node; /* a reference */
    int cap;               /* index into node->caps */
    char capability[64];
    char *route; /* the session id routed to node, or NULL */
    bool new_route;
    bool started, finished;
    struct obx_call *call;
    obx_dispatch_done_fn done;
    void *userdata;
    struct reg_xfer *xfer; /* a file transfer's bytes (remote nodes only); a reference */
    uint64_t deadline;     /* monotonic; 0: none */
    uint64_t cancel_until; /* a cancel was sent; finished as canceled if no answer by then */
    int hooks;             /* output hooks running on the rpc thread */
    int rc;
    json_t *result;
    struct obx_error err;
    struct reg_call *next; /* node->calls, then d->completed */
};

enum reg_conn_state {
    CONN_HELLO,    /* waiting for the first frame */
    CONN_CHECKING, /* hello handed to the event thread */
    CONN_READY,
    CONN_CLOSED,
};

struct reg_conn {
    int refs; /* under d->lock */
    struct obx_dispatch *d;
    struct obx_rpc_stream *stream; /* a reference */
    enum reg_conn_state state;
    bool eof; /* the worker half-closed while its hello was being checked */
    uint64_t hello_deadline;
    struct reg_node *node; /* when ready; a reference */
    struct reg_conn *next;
};

struct reg_route {
    char *session_id;
    char node_id[OBX_WORKER_NODE_ID_MAX + 1];
    uint64_t last_used;  /* monotonic */
    uint64_t last_saved; /* monotonic; when the store last heard of it */
    struct reg_route *next;
};

#define REG_ROUTE_BUCKETS 1024

enum reg_event_kind {
    EV_HELLO, /* check a hello and register the node */
    EV_SEEN,  /* write a heartbeat to the store */
    EV_ENDED, /* a stream of a registered node ended */
    EV_ROUTE_PUT,
    EV_ROUTE_DEL,
};

struct reg_event {
    enum reg_event_kind kind;
    struct reg_conn *conn; /* EV_HELLO: a reference */
    struct obx_rpc_hello hello;
    char node_id[OBX_WORKER_NODE_ID_MAX + 1];
    char session_id[40];
    char *route;
    struct reg_event *next;
};

struct obx_dispatch {
    struct obx_dispatch_config cfg;
    struct obx_store *store;
    struct obx_rpc_server *rpc;
    char grpc_addrs[512];
    int grpc_port;

    pthread_mutex_t lock;
    pthread_cond_t cond; /* monotonic: the event thread's wake-up, and hooks ending */
    struct reg_node *nodes;
    struct reg_conn *conns;
    unsigned n_handshakes;
    unsigned rr;
    struct reg_route *routes[REG_ROUTE_BUCKETS];
    struct reg_call *completed, *completed_tail;
    struct reg_event *events, *events_tail;
    bool stopping;
    pthread_t thread;
    bool thread_started;
    uint64_t next_scan;  /* monotonic: timers are looked at no later than this */
    uint64_t last_prune; /* monotonic */

    /* the embedded worker's calls run on these threads */
    struct obx_console_pool *local_pool;
};

/* registry.c */
struct reg_node *reg_node_ref(struct reg_node *n);
void reg_node_unref(struct obx_dispatch *d, struct reg_node *n);        /* lock held */
struct reg_node *reg_node_find(struct obx_dispatch *d, const char *id); /* lock held */
/* Takes node off the table (lock held): it takes no calls; routes stay. */
void reg_node_unlink(struct obx_dispatch *d, struct reg_node *n);
/* Decides a call's end once (lock held): off its node, onto the completion list. result is
 * stolen; err may be NULL when rc >= 0. */
void reg_call_finish(struct obx_dispatch *d, struct reg_call *c, int rc, json_t *result,
                     const struct obx_error *err);
/* Ends every call of node with worker_lost (lock held). */
void reg_node_fail_calls(struct obx_dispatch *d, struct reg_node *n, const char *why);
void reg_event_post(struct obx_dispatch *d, struct reg_event *ev); /* lock held */
struct reg_route *reg_route_find(struct obx_dispatch *d, const char *session_id);
void reg_route_set(struct obx_dispatch *d, const char *session_id, const char *node_id, bool save);
void reg_route_drop(struct obx_dispatch *d, const char *session_id);
void reg_routes_keep_only(struct obx_dispatch *d, const char *node_id, char **keep, size_t n);

/* registry-pty.c: live terminals (terminalPty) on remote workers, "pty". */
/* The call's input (obx_call_input(), under the call's lock), as PtyInput frames. */
void reg_pty_input(void *userdata, const struct obx_call_input *in);
/* Lock held: a PtyOutput frame of conn's worker, to its call's output hook. */
void reg_pty_output(struct obx_dispatch *d, struct reg_conn *conn, struct obx_rpc_pty_output *o);

/* registry-remote.c */
/* Lock held: n's call with that command id, or NULL. */
struct reg_call *reg_call_find(struct reg_node *n, const char *id);
/* Lock held on entry and exit, dropped meanwhile: runs the call's output hook while its end
 * waits (deliver()). */
void reg_call_output(struct obx_dispatch *d, struct reg_call *c, enum obx_stream stream,
                     const void *data, size_t len);
int reg_remote_start(struct obx_dispatch *d, struct obx_error *err);
void reg_remote_stop(struct obx_dispatch *d);
/* Event thread, without the lock: check a hello, register or refuse. */
void reg_remote_hello(struct obx_dispatch *d, struct reg_event *ev);
/* Lock held: send the dispatch frame of c to its node. */
int reg_remote_send_call(struct obx_dispatch *d, struct reg_call *c, json_t *payload);
/* Lock held: tell the worker to stop c (when it speaks "cancel"). */
void reg_remote_send_cancel(struct obx_dispatch *d, struct reg_call *c, const char *reason);
/* Lock held: timers of connections (hello deadline, lost heartbeats). Returns the next due time. */
uint64_t reg_remote_timers(struct obx_dispatch *d, uint64_t now);
void reg_conn_unref(struct obx_dispatch *d, struct reg_conn *c); /* lock held */

#endif
