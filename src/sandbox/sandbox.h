/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bubblewrap runtime: boxes without a daemon. Each box is a bwrap process with new user, pid,
 * net, ipc, uts and cgroup namespaces, the host's system directories read-only, a private writable
 * workspace, a tmpfs /tmp, no network, no capabilities and a seccomp filter; under a root worker it
 * runs as an unprivileged host uid of its own. The agent runs as its PID 1 and talks over two
 * pipes. Box state lives in a per-user directory so a restarted worker can find and remove
 * boxes its previous life left behind.
 */
#ifndef OBX_SANDBOX_SANDBOX_H
#define OBX_SANDBOX_SANDBOX_H

#include "common/runtime.h"

/* Limits a box gets when its spec leaves them 0. The agent applies them as rlimits to every
 * command it runs. */
#define OBX_SANDBOX_DEFAULT_MEMORY_BYTES (512ull * 1024 * 1024)
#define OBX_SANDBOX_DEFAULT_PIDS 128u
#define OBX_SANDBOX_DEFAULT_FSIZE_BYTES (1024ull * 1024 * 1024)
#define OBX_SANDBOX_NOFILE 1024u
/* CPU seconds per process: a safety net above the longest call timeout (600 s). */
#define OBX_SANDBOX_CPU_SEC 900u
/* Size caps of the memory-backed file systems in a box (/tmp, /dev/shm, and /workspace unless the
 * spec names its size), where the installed bubblewrap supports --size. */
#define OBX_SANDBOX_TMP_BYTES (256ull * 1024 * 1024)
#define OBX_SANDBOX_SHM_BYTES (64ull * 1024 * 1024)
#define OBX_SANDBOX_DEFAULT_WORKSPACE_BYTES (512ull * 1024 * 1024)
/* The unprivileged user commands run as inside a box: "sandbox", 65532 as in the docker runtime's
 * work image. On the host it is the worker's uid, or under a root worker a host uid of the box's
 * own (ONLYBOXES_BWRAP_HOST_UIDS). */
#define OBX_SANDBOX_UID 65532u
#define OBX_SANDBOX_HOSTNAME "onlyboxes"

struct obx_sandbox_config {
    const char *bwrap_path; /* NULL: search PATH for "bwrap" */
    const char *state_dir;  /* NULL: $XDG_RUNTIME_DIR/onlyboxes or /tmp/onlyboxes-<uid> */
    const char *agent_path; /* onlyboxes-agent; a root worker needs it (its --exec-as step) */
    const char *host_uids;  /* ONLYBOXES_BWRAP_HOST_UIDS "FIRST-LAST"; NULL: the default range */
};

/* The host uids of a root worker's boxes when ONLYBOXES_BWRAP_HOST_UIDS is unset: a range no
 * distribution, systemd or useradd hands out (0x70000000, 65536 uids). */
#define OBX_SANDBOX_HOST_UIDS_DEFAULT "1879048192-1879113727"

/* Checks the form of a host_uids setting (NULL or "" is the default), for a worker's settings to
 * refuse a malformed one at start-up: -EINVAL with err naming ONLYBOXES_BWRAP_HOST_UIDS. Whether
 * the range is free on this host is checked when a root worker's runtime starts. */
int obx_sandbox_host_uids_check(const char *host_uids, struct obx_error *err);

/* Checks that bubblewrap is installed and can create the namespaces we need, and prepares the
 * state directory. On failure err (code OBX_ERR_RUNTIME_UNAVAILABLE) says what is missing and how
 * to fix it. The caller frees the runtime with rt->free(rt). start/stop may be called from any
 * thread; the runtime itself holds no mutable state after creation. */
struct obx_runtime *obx_sandbox_runtime_new(const struct obx_sandbox_config *cfg,
                                            struct obx_error *err);

/* The box directory of a running box (<state>/boxes/<id>), whose workspace/ is the box's
 * /workspace. Owned by the handle; valid until stop(). NULL for a handle of another runtime. */
const char *obx_sandbox_box_dir(const struct obx_box_handle *h);

#endif
