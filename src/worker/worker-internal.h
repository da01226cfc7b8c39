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
};

/* Starts a box from image (NULL: the runtime's choice) with this worker's limits and network net;
 * label names whose box it is in the egress proxy's log lines. call (may be NULL) hears about
 * slow steps such as an image pull through its on_log. */
int obx_worker_start_box(struct obx_worker *w, const char *image, enum obx_net net,
                         const char *label, struct obx_call *call, struct obx_box **ret,
                         struct obx_error *err);

/* The payload must be a JSON object without NUL in its strings; fails with the original's
 * message naming what (capability.c). */
int obx_cap_payload_object(json_t *payload, const char *what, struct obx_error *err);

/* "lease_ttl_sec" within the worker's bounds (absent: its default). */
int obx_cap_payload_lease(struct obx_worker *w, json_t *payload, int *ret, struct obx_error *err);

/* Capability handlers; each returns 0 with *ret_result or a negative errno with err filled. */
int obx_cap_echo(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                 struct obx_error *err);
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
