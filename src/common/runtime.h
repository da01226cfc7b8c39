/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime interface: start a box from a spec with the agent as its first process, hand back the
 * byte stream to that agent, stop it, and clean up boxes a previous (crashed) life left behind.
 * Implemented by sandbox/ (bubblewrap) and docker/; chosen and driven by worker/. Plain data and a
 * function table, so runtimes depend on nothing but common/.
 */
#ifndef OBX_COMMON_RUNTIME_H
#define OBX_COMMON_RUNTIME_H

#include "error.h"

#define OBX_LABEL_MANAGED "onlyboxes.managed"
#define OBX_LABEL_WORKER "onlyboxes.worker"
#define OBX_LABEL_SESSION "onlyboxes.session"

/* Inside every box, whatever the runtime. */
#define OBX_BOX_AGENT_PATH "/.onlyboxes/agent" /* where the agent binary is mounted */
#define OBX_BOX_WORKSPACE "/workspace"         /* the writable working directory */
/* Network "allowlist": where the worker's egress proxy socket is bound, and the agent option that
 * makes it relay 127.0.0.1:OBX_BOX_EGRESS_PORT there (and set HTTP_PROXY and friends). */
#define OBX_BOX_EGRESS_SOCKET "/.onlyboxes/egress.sock"
#define OBX_BOX_EGRESS_OPTION "--egress-proxy"
#define OBX_BOX_EGRESS_PORT 3128

/* A directory of this host visible in the box (onlyboxes mcp --mount). */
struct obx_box_mount {
    const char *host; /* absolute, resolved (no symlink) */
    const char *box;  /* absolute, normalized */
    bool rw;          /* false: read-only */
};

struct obx_box_spec {
    const char *agent_path;   /* host path of the onlyboxes-agent binary */
    const char *worker_id;    /* label: the worker (process) that owns the box */
    const char *session;      /* label: terminal session id, or NULL for a one-shot box */
    const char *image;        /* container image (docker); NULL for bubblewrap */
    uint64_t memory_bytes;    /* 0 = runtime default */
    uint32_t pids;            /* max processes in the box; 0 = runtime default */
    uint32_t cpu_millis;      /* CPU quota in 1/1000 CPUs; 0 = runtime default */
    uint64_t fsize_bytes;     /* largest file a process may write; 0 = runtime default */
    uint64_t workspace_bytes; /* workspace size cap where the runtime can enforce it; 0 = default */
    bool network;             /* false: loopback only */
    /* Host path of a unix socket to bind at OBX_BOX_EGRESS_SOCKET (the agent gets
     * OBX_BOX_EGRESS_OPTION), or NULL. Only for a box without network. */
    const char *egress_socket;
    /* Host directories to bind into the box, outermost box path first. Only a runtime whose
     * host_sockets is true can (its daemon sees this host's files). */
    const struct obx_box_mount *mounts;
    size_t n_mounts;

    /* Optional: what start() has to say while the caller waits (an image pull's progress), with
     * an enum obx_log_level. Called from the starting thread or from another thread that does
     * the work both wait for, never after start() returned. */
    void (*on_log)(void *userdata, int level, const char *message);
    void *log_userdata;
};

struct obx_box_handle {
    int to_agent;   /* write end: frames to the agent */
    int from_agent; /* read end: frames from the agent */
    char id[96];    /* runtime's box id (container id, or bubblewrap box directory name) */
    int pid;        /* host pid of the box's outermost process, or 0 */
    void *priv;     /* runtime-private state */
};

struct obx_runtime {
    const char *name; /* "bubblewrap", "docker" */
    /* A unix socket of this host can be bound into a box (spec.egress_socket); not so for a
     * daemon on another host or in a VM. */
    bool host_sockets;

    /* Starts a box; on success *ret holds two open fds (O_CLOEXEC) owned by the caller until
     * stop(). Does not wait for the agent's HELLO. */
    int (*start)(struct obx_runtime *rt, const struct obx_box_spec *spec,
                 struct obx_box_handle *ret, struct obx_error *err);

    /* Kills everything in the box, closes the handle's fds, frees what start() allocated and
     * removes the box's files. Safe to call once per successful start(). */
    void (*stop)(struct obx_runtime *rt, struct obx_box_handle *h);

    /* Removes boxes labelled as ours whose owner is gone (worker_id NULL: any dead owner).
     * Returns the number removed or a negative errno. */
    int (*cleanup_stale)(struct obx_runtime *rt, struct obx_error *err);

    /* Optional: removes every box this process started, those still starting included (boxes
     * that no handle knows yet). For the last moments of a process that is going away on a
     * signal; the handles stay valid but their boxes are gone. Returns the number removed. */
    int (*remove_own)(struct obx_runtime *rt, struct obx_error *err);

    /* Optional (NULL for runtimes without images): the image a box gets when its spec names
     * none, for a session box or a one-shot box. The string lives as long as the runtime. The
     * worker keeps one warm pool per image. */
    const char *(*default_image)(struct obx_runtime *rt, bool session);

    /* Optional: a short line on what the runtime found ("daemon 20.10 answers at ..."), for
     * saying why it was chosen. The string lives as long as the runtime. */
    const char *(*status)(struct obx_runtime *rt);

    /* One line for `onlyboxes doctor`: version and what the runtime found. */
    void (*describe)(struct obx_runtime *rt, char *buf, size_t size);

    void (*free)(struct obx_runtime *rt);
};

#endif
