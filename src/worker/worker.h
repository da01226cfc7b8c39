/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker: runs capabilities (echo, pythonExec, terminalExec, terminalResource) in boxes on this
 * host. It owns the terminal sessions (lease, busy flag, reaper), talks to each box's agent and
 * picks the runtime. Its executor is what `onlyboxes mcp --stdio` and the CLI call in process, and
 * what `onlyboxes worker` serves to a console.
 */
#ifndef OBX_WORKER_WORKER_H
#define OBX_WORKER_WORKER_H

#include "common/executor.h"
#include "common/runtime.h"

enum obx_runtime_choice {
    OBX_RUNTIME_AUTO,
    OBX_RUNTIME_BUBBLEWRAP,
    OBX_RUNTIME_DOCKER,
};

struct obx_worker_config {
    enum obx_runtime_choice runtime;
    const char *agent_path; /* NULL: find onlyboxes-agent next to the running binary */
    const char *worker_id;  /* label on boxes; NULL: generated */
    int lease_min_sec, lease_max_sec, lease_default_sec; /* 60 / 1800 / 60 */
    size_t output_limit;                                 /* per stream, bytes; 1 MiB */
    size_t read_limit;     /* readImage / terminalResource read cap, bytes */
    uint64_t memory_bytes; /* per box */
    uint32_t pids;         /* per box */
};

/* Fills cfg with defaults overridden by WORKER_* / ONLYBOXES_* environment variables. Returns
 * -EINVAL with err naming the variable when one is malformed. */
int obx_worker_config_from_env(struct obx_worker_config *cfg, struct obx_error *err);

/* Parses "auto|bubblewrap|docker" (also "bwrap"). */
int obx_runtime_choice_parse(const char *s, enum obx_runtime_choice *ret);

struct obx_worker;

struct obx_worker *obx_worker_new(const struct obx_worker_config *cfg, struct obx_error *err);
struct obx_executor *obx_worker_executor(struct obx_worker *w);
/* Stops every box this worker started and frees it. */
void obx_worker_free(struct obx_worker *w);

#endif
