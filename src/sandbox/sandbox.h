/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bubblewrap runtime: boxes without a daemon. Each box is a bwrap process with new user, pid,
 * net, ipc, uts and cgroup namespaces, the host's system directories read-only, a private writable
 * workspace, a tmpfs /tmp, no network and no capabilities; the agent runs as its PID 1 and talks
 * over two pipes. Box state lives in a per-user directory so a restarted worker can find and remove
 * boxes its previous life left behind.
 */
#ifndef OBX_SANDBOX_SANDBOX_H
#define OBX_SANDBOX_SANDBOX_H

#include "common/runtime.h"

struct obx_sandbox_config {
    const char *bwrap_path; /* NULL: search PATH for "bwrap" */
    const char *state_dir;  /* NULL: $XDG_RUNTIME_DIR/onlyboxes or /tmp/onlyboxes-<uid> */
};

/* Checks that bubblewrap is installed and can create the namespaces we need. On failure err says
 * what is missing and how to install it. */
struct obx_runtime *obx_sandbox_runtime_new(const struct obx_sandbox_config *cfg,
                                            struct obx_error *err);

#endif
