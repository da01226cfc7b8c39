/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the worker's files; not for other modules. */
#ifndef OBX_WORKER_INTERNAL_H
#define OBX_WORKER_INTERNAL_H

#include "box.h"
#include "pool.h"
#include "session.h"
#include "worker.h"

struct obx_worker {
    struct obx_executor executor; /* first: the executor pointer is the worker */
    struct obx_worker_config cfg;
    char *agent_path;
    char worker_id[48];
    struct obx_runtime *rt;
    struct obx_sessions *sessions;
    struct obx_pool *pool; /* one-shot boxes for pythonExec */
};

/* Starts a box with this worker's limits; session may be NULL for a one-shot box. */
int obx_worker_start_box(struct obx_worker *w, const char *session, struct obx_box **ret,
                         struct obx_error *err);

/* Capability handlers; each returns 0 with *ret_result or a negative errno with err filled. */
int obx_cap_echo(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                 struct obx_error *err);
int obx_cap_python(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                   struct obx_error *err);
int obx_cap_terminal(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
                     struct obx_error *err);
int obx_cap_terminal_resource(struct obx_worker *w, json_t *payload, struct obx_call *call,
                              json_t **ret, struct obx_error *err);

#endif
