/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the worker's files; not for other modules. */
#ifndef OBX_WORKER_INTERNAL_H
#define OBX_WORKER_INTERNAL_H

#include "box.h"
#include "egress.h"
#include "pool.h"
#include "session.h"
#include "worker.h"

/* One warm pool per image: pythonExec and new sessions share one when their images are the same
 * (always with bubblewrap, which has no images). */
struct obx_worker_image_pool {
    struct obx_worker *w;
    char *image; /* NULL: the runtime has no images */
    struct obx_worker_pool *pool;
    bool python; /* pythonExec takes its boxes: they are prepared with the preload */
};

struct obx_worker {
    struct obx_executor executor; /* first: the executor pointer is the worker */
    struct obx_worker_config cfg;
    char *agent_path;
    char worker_id[48];
    struct obx_runtime *rt;
    struct obx_worker_sessions *sessions;
    struct obx_worker_image_pool pools[2];
    unsigned n_pools;
    struct obx_worker_image_pool *python_pool, *terminal_pool; /* point into pools */
    pthread_t cleanup_thr; /* removes what a crashed earlier life left behind */
    bool cleanup_started;
    struct obx_egress *egress; /* the allow-list proxy; NULL without an allow-list */
    json_t *preload;           /* ONLYBOXES_PYTHON_PRELOAD as a JSON array of module names */
    pthread_mutex_t preload_lock;
    bool preload_reported; /* the modules that do not import were logged */
};

/* Starts the box's Python interpreter ahead of a call, with the preload imported (a pool's
 * prepare hook; capability-python.c). */
void obx_worker_python_prepare(struct obx_worker *w, struct obx_box *b);

/* Starts a box from image (NULL: the runtime's choice) with this worker's limits and network net;
 * label names whose box it is in the egress proxy's log lines. call (may be NULL) hears about
 * slow steps such as an image pull through its on_log. */
int obx_worker_start_box(struct obx_worker *w, const char *image, enum obx_net net,
                         const char *label, struct obx_call *call, struct obx_box **ret,
                         struct obx_error *err);

/* Shared by the capability handlers (capability.c). */
/* The payload must be an object without NUL characters in its strings; fails with the original's
 * message. */
int obx_cap_payload_object(json_t *payload, const char *what, struct obx_error *err);
/* Timeout for the box: the payload's timeout_ms when given, else what the call has left. */
int obx_cap_payload_timeout(json_t *payload, struct obx_call *call, int64_t *ret,
                            struct obx_error *err);
/* The optional "network" field: false (or absent), true for the runtime's network, which the
 * worker's operator must have allowed (ONLYBOXES_ALLOW_NETWORK), or "allowlist" for the egress
 * proxy, which needs an allow-list (ONLYBOXES_EGRESS_ALLOW). */
int obx_cap_payload_network(struct obx_worker *w, json_t *payload, enum obx_net *ret,
                            struct obx_error *err);
/* What pythonExec and terminalExec both take: an object whose member (code, command) is not
 * blank, with timeout_ms and network. *ret_text points into payload. */
int obx_cap_payload_exec(struct obx_worker *w, json_t *payload, const char *what,
                         const char *member, struct obx_call *call, const char **ret_text,
                         int64_t *ret_timeout, enum obx_net *ret_net, struct obx_error *err);
/* The optional "lease_ttl_sec", within the worker's bounds; *ret the default when absent. */
int obx_cap_payload_lease(struct obx_worker *w, json_t *payload, int *ret, struct obx_error *err);
/* A named session's members: "lease_ttl_sec" (as obx_cap_payload_lease()), "session_id"
 * (trimmed; *ret_sid NULL when absent or blank, else the caller frees it) and
 * "create_if_missing". */
int obx_cap_payload_session(struct obx_worker *w, json_t *payload, int *ret_lease, char **ret_sid,
                            bool *ret_create, struct obx_error *err);
/* s without leading and trailing white space; the caller frees it. */
char *obx_cap_trimmed(const char *s);
/* A finished EXEC that was killed becomes the call's error; 0 otherwise. */
int obx_cap_killed_error(const struct obx_box_exec_result *r, int64_t timeout_ms,
                         struct obx_error *err);

/* Capability handlers; each returns 0 with *ret_result or a negative errno with err filled. */
int obx_cap_echo(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                 struct obx_error *err);
/* capability-python.c */
int obx_cap_python(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                   struct obx_error *err);
int obx_cap_terminal(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                     struct obx_error *err);
int obx_cap_terminal_resource(struct obx_worker *w, json_t *payload, struct obx_call *call,
                              json_t **ret, struct obx_error *err);
/* files.c: a session's files and its state. */
int obx_cap_terminal_files(struct obx_worker *w, json_t *payload, struct obx_call *call,
                           json_t **ret, struct obx_error *err);
int obx_cap_terminal_session(struct obx_worker *w, json_t *payload, struct obx_call *call,
                             json_t **ret, struct obx_error *err);
/* capability-pty.c: a live terminal into a session. */
int obx_cap_terminal_pty(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                         struct obx_error *err);

#endif
