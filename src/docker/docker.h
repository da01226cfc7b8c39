/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The docker runtime: each box is a container whose first process is our agent, bind-mounted
 * read-only from this host, started and removed through the Docker Engine API (never the docker
 * CLI) over the daemon's unix socket or DOCKER_HOST. The worker talks to the agent over the
 * container's attach stream, which this runtime de-multiplexes into the handle's plain fds.
 * Hardened by default, every switch overridable by configuration: a non-root user, no
 * capabilities, no-new-privileges, read-only root with tmpfs /tmp and /workspace, no network,
 * memory / CPU / pids limits, no container log (the protocol stream is not written to disk).
 */
#ifndef OBX_DOCKER_DOCKER_H
#define OBX_DOCKER_DOCKER_H

#include "common/runtime.h"

#define OBX_DOCKER_DEFAULT_HOST "unix:///var/run/docker.sock"
/* The default work image has Python's data stack (numpy, pandas, matplotlib, pillow, scipy); the
 * slim one is the same without it (docker/slim-work-image.dockerfile). */
#define OBX_DOCKER_DEFAULT_IMAGE "onlyboxes/work:bookworm-data"
#define OBX_DOCKER_SLIM_IMAGE "onlyboxes/work:bookworm"
/* The work image's "sandbox" user: a uid of its own, far from the host's first human account
 * (1000), which a box would otherwise share on the host (containers have no user namespace). In
 * Debian's reserved range 65000-65533 and systemd's unused 65520-65533, like distroless' nonroot.
 */
#define OBX_DOCKER_DEFAULT_USER "65532:65532"
#define OBX_DOCKER_DEFAULT_UID 65532u
/* The work image's version label: scripts/build-test-image.sh rebuilds an image without it, and
 * the runtime warns about one (2: the box user became 65532). */
#define OBX_DOCKER_IMAGE_VERSION_LABEL "onlyboxes.work-image-version"
#define OBX_DOCKER_IMAGE_VERSION "2"
#define OBX_DOCKER_DEFAULT_NETWORK "none"
#define OBX_DOCKER_DEFAULT_MEMORY_BYTES (256ull * 1024 * 1024) /* cgroup limit, incl. tmpfs */
#define OBX_DOCKER_DEFAULT_CPU_MILLIS 1000u
#define OBX_DOCKER_DEFAULT_PIDS 128u
#define OBX_DOCKER_DEFAULT_TMP_BYTES (256ull * 1024 * 1024)
#define OBX_DOCKER_DEFAULT_WORKSPACE_BYTES (512ull * 1024 * 1024)
#define OBX_DOCKER_BUILD_HINT                                                                     \
    "load or build it on the daemon's host; the default image " OBX_DOCKER_DEFAULT_IMAGE          \
    " is built without a registry by scripts/build-test-image.sh, or with a registry by docker "  \
    "build -t " OBX_DOCKER_DEFAULT_IMAGE " -f docker/default-work-image.dockerfile docker/ (the " \
    "slim " OBX_DOCKER_SLIM_IMAGE ": OBX_WORK_VARIANT=slim scripts/build-test-image.sh, or "      \
    "docker/slim-work-image.dockerfile)"

/* Labels besides common/runtime.h's: who owns a box, so a later worker on the same host can tell
 * whether that owner is still alive (pid plus its start time, on this boot of this host). */
#define OBX_DOCKER_LABEL_OWNER_HOST "onlyboxes.owner-host"
#define OBX_DOCKER_LABEL_OWNER_BOOT "onlyboxes.owner-boot"
#define OBX_DOCKER_LABEL_OWNER_PID "onlyboxes.owner-pid"
#define OBX_DOCKER_LABEL_OWNER_START "onlyboxes.owner-start"

struct obx_docker_config {
    const char *host;           /* DOCKER_HOST: unix:///path or tcp://host:port; NULL: default */
    const char *python_image;   /* one-shot boxes (spec without session and image) */
    const char *terminal_image; /* session boxes */
    const char *user;           /* "uid:gid" commands run as; "" = the image's user */
    uint32_t uid, gid;          /* user as numbers (OBX_DOCKER_DEFAULT_UID for ""): /workspace's
                                   owner */
    const char *network;        /* network mode for boxes whose spec asks for none: "none" */
    uint64_t memory_bytes;      /* cgroup memory limit (swap included); 0 = none */
    uint32_t cpu_millis;        /* CPU quota in 1/1000 CPUs; 0 = none */
    uint32_t pids;              /* cgroup pids limit unless the spec names one; 0 = none */
    uint64_t tmp_bytes;         /* size of the tmpfs /tmp */
    uint64_t workspace_bytes;   /* size of the tmpfs /workspace unless the spec names one */
    bool read_only_root;
    bool drop_caps;        /* CapDrop ALL */
    bool no_new_privs;     /* SecurityOpt no-new-privileges */
    bool pull;             /* pull a missing image (with progress on stderr) */
    bool check_images;     /* obx_docker_runtime_new() checks that both images are there (or, with
                              pull, will be pulled on first use) */
    bool verify_pullable;  /* with check_images and pull: a missing image must be pullable now
                              (the daemon asks the registry), else runtime_new fails; for auto */
    bool direct;           /* local daemon: talk to the agent over a unix socket in a
                              bind-mounted directory, not through the daemon's attach proxy */
    const char *state_dir; /* host directory for the direct sockets; NULL: $XDG_RUNTIME_DIR/
                              onlyboxes or /tmp/onlyboxes-<uid> (docker/ inside it, 0700) */
    int probe_timeout_ms;  /* > 0: time limit of runtime_new's calls to the daemon (for auto,
                              so a hung daemon does not hold up start-up); 0 = ordinary */
};

/* Fills cfg with the hardened defaults, overridden by DOCKER_HOST, WORKER_PYTHON_EXEC_DOCKER_IMAGE,
 * WORKER_TERMINAL_EXEC_DOCKER_IMAGE and ONLYBOXES_DOCKER_* (see docker/config.c's table). The
 * strings point into the environment or static storage. Returns -EINVAL with err naming the
 * variable when one is malformed. */
int obx_docker_config_from_env(struct obx_docker_config *cfg, struct obx_error *err);

/* The table obx_docker_config_from_env() reads (common/config.h), for --help and doctor. */
struct obx_config_var;
const struct obx_config_var *obx_docker_config_vars(size_t *ret_n);

/* Connects to the daemon, negotiates the API version and, with cfg->check_images, makes sure the
 * images exist (pulling them when cfg->pull). On failure err (code OBX_ERR_RUNTIME_UNAVAILABLE)
 * says what is wrong and what to do about it. The caller frees the runtime with rt->free(rt).
 * start/stop/cleanup_stale may be called from any thread.
 *
 * In a box spec, image NULL means python_image for a box without a session and terminal_image
 * for a session box. spec->memory_bytes is the agent's per-command address-space rlimit; the
 * container's cgroup memory limit is cfg->memory_bytes. */
struct obx_runtime *obx_docker_runtime_new(const struct obx_docker_config *cfg,
                                           struct obx_error *err);

/* Whether the docker runtime can run agent_path in its boxes: an executable, statically linked
 * (a box's image has no libraries of the host). 0, or an error saying why not. */
int obx_docker_agent_check(const char *agent_path, struct obx_error *err);

#endif
