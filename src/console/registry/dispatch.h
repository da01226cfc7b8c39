/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the console sends a capability: the worker registry. Workers are the embedded one of
 * `console --with-worker` (in this process) and remote `onlyboxes worker`s (or original workers)
 * connected over the worker protocol; both are nodes of one table, so REST, tasks and /mcp behave
 * the same whichever runs a call.
 *
 * A call goes in two steps. acquire() picks a node and holds a slot on it (capacity check and
 * reservation in one step, so a task row is created only when a slot is held): least in-flight
 * first with round-robin ties, and for a terminal session the node that has it (a sticky route,
 * kept in the store across restarts). start() sends the call; its done() runs exactly once, on a
 * registry thread, never inside start(). A call waiting on a remote worker holds no thread.
 *
 * terminalFiles and terminalSession act on an existing session only: without a route they are
 * session_not_found, on a worker that lacks them unsupported_capability. A terminalFiles read or
 * write on a remote worker moves its bytes through the call's on_data / read_data on the thread
 * that waits in obx_dispatch_exec() ("files" extension, in acknowledged chunks).
 *
 * Errors (err->code): no_worker, no_capacity, session_unavailable (the session's worker is not
 * connected), session_capacity_exceeded (every worker that could take a new session has as many
 * as it allows), worker_lost (the worker went away while it ran the call), deadline_exceeded,
 * canceled, and whatever the worker answered.
 */
#ifndef OBX_CONSOLE_DISPATCH_H
#define OBX_CONSOLE_DISPATCH_H

#include "common/executor.h"

struct obx_store;

#define OBX_DISPATCH_EMBEDDED_ID "embedded"

struct obx_dispatch_config {
    struct obx_store *store;
    const char *hash_key; /* CONSOLE_HASH_KEY: worker secrets are stored as its HMAC */
    int offline_ttl_sec;  /* a worker unseen this long takes no calls */
    int heartbeat_interval_sec;
    /* The embedded worker (may be NULL) and what it declares. */
    struct obx_executor *embedded;
    unsigned embedded_max_inflight;
    const char *embedded_kind; /* its runtime's name */
    unsigned embedded_max_sessions;
    /* The gRPC listener for remote workers; grpc_port < 0: none. */
    const char *grpc_host;
    int grpc_port;
    const char *tls_cert_file, *tls_key_file, *client_ca_file;
    unsigned max_workers;    /* worker streams at once */
    unsigned max_handshakes; /* streams that have not said hello yet */
};

struct obx_dispatch;

int obx_dispatch_new(const struct obx_dispatch_config *cfg, struct obx_dispatch **ret,
                     struct obx_error *err);
/* Ends every worker stream and fails what is in flight (canceled), then frees. */
void obx_dispatch_free(struct obx_dispatch *d);

/* The gRPC addresses bound ("127.0.0.1:50051"), "" without a listener; the port bound, or 0. */
void obx_dispatch_grpc_addrs(const struct obx_dispatch *d, char *buf, size_t size);
int obx_dispatch_grpc_port(const struct obx_dispatch *d);

struct obx_dispatch_slot;

/* Reserves a slot for the lower-case capability; payload (borrowed) names the terminal session
 * for sticky routing. 0 with *ret, or a negative errno with err set (see above). */
int obx_dispatch_acquire(struct obx_dispatch *d, const char *capability, json_t *payload,
                         struct obx_dispatch_slot **ret, struct obx_error *err);
/* Gives back a slot that was not started. */
void obx_dispatch_release(struct obx_dispatch_slot *slot);

/* The call's end: r < 0 with err, or 0 with result (a new reference the callee owns). */
typedef void (*obx_dispatch_done_fn)(void *userdata, int r, json_t *result,
                                     const struct obx_error *err);

/* Runs the call in its slot (consumed). payload is borrowed; call must stay valid until done().
 * Cancelling the call stops it (a remote worker that speaks "cancel" kills its processes). */
void obx_dispatch_start(struct obx_dispatch_slot *slot, json_t *payload, struct obx_call *call,
                        obx_dispatch_done_fn done, void *userdata);

/* acquire + start + wait, for callers that have a thread to block (an MCP call's). */
int obx_dispatch_exec(struct obx_dispatch *d, const char *capability, json_t *payload,
                      struct obx_call *call, json_t **ret_result, struct obx_error *err);

/* Live workers and their counters, for GET /api/v1/workers/inflight:
 * [{"node_id", "capabilities": [{"name", "inflight", "max_inflight"}]}], lower-case names. */
json_t *obx_dispatch_inflight(struct obx_dispatch *d);

/* The terminal sessions routed to a worker whose (console-scoped) id starts with prefix (an
 * account's "obx:<account_id>:"): fn gets each one's id, its worker and whether that worker is
 * connected. Runs under the registry's lock: fn must be quick and must not call back. */
void obx_dispatch_sessions(struct obx_dispatch *d, const char *prefix,
                           void (*fn)(void *userdata, const char *session_id, const char *node_id,
                                      bool connected),
                           void *userdata);

/* A deleted worker: its stream ends (PermissionDenied "worker credential revoked"), its calls
 * fail with worker_lost and its routes go. Returns 1 when it was connected. */
int obx_dispatch_revoke(struct obx_dispatch *d, const char *node_id);

#endif
