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
    size_t read_limit;        /* readImage / terminalResource read cap, bytes */
    uint64_t memory_bytes;    /* per box */
    uint32_t pids;            /* per box */
    uint64_t workspace_bytes; /* size of a box's /workspace; 0 = the runtime's default */
    unsigned max_sessions;    /* terminal sessions */
    unsigned warm_pool;       /* started boxes kept ready per image, for pythonExec and sessions */
    unsigned warm_pool_max;   /* what a pool grows to under demand (>= warm_pool) */
    const char *python_preload; /* modules a pooled box's Python imports ahead; "none": none */
    bool allow_network;         /* calls may ask for a box with network access */
    unsigned max_inflight; /* calls per capability at once (the console's dispatch enforces it) */
    int pty_idle_sec;      /* a live terminal without input this long closes */

    /* Network "allowlist" (worker/egress.h): NULL egress_allow means no allow-list, and calls
     * asking for one are refused. */
    const char *egress_allow;        /* host names, *.domains, optional :port, comma-separated */
    const char *egress_allow_var;    /* the variable it came from, for messages */
    const char *egress_test_resolve; /* ONLYBOXES_EGRESS_TEST_RESOLVE: tests only */
    unsigned egress_max_conns;       /* connections at once per box */
    uint64_t egress_max_bytes;       /* bytes through the proxy per box */
    unsigned egress_connect_timeout_ms;
    const char *console_host; /* the console this worker serves: never an egress destination */
    /* Host directories shown in every box (onlyboxes mcp --mount), checked with
     * obx_worker_mount_parse(); borrowed for the worker's life. */
    const struct obx_box_mount *mounts;
    size_t n_mounts;
    /* ONLYBOXES_BWRAP_HOST_UIDS "FIRST-LAST": the host uids of a root worker's bubblewrap boxes;
     * NULL: the sandbox's default range. */
    const char *bwrap_host_uids;
};

/* Parses and checks one HOST_DIR:BOX_PATH[:ro|:rw] (read-only unless :rw). The host directory
 * must exist; it may not be /, the home directory or a directory above it, /etc, /proc, /sys,
 * /dev, a directory holding the docker socket, nor the state directory of the boxes (or one
 * holding it, or inside it). The box path must be absolute and outside the box's system
 * directories (/usr, /etc, /tmp, ...; /workspace and below are fine). ret's strings are
 * allocated (obx_worker_mount_done()). */
int obx_worker_mount_parse(const char *spec, struct obx_box_mount *ret, struct obx_error *err);
void obx_worker_mount_done(struct obx_box_mount *m);
/* Refuses two mounts at one box path; sorts them outermost first. */
int obx_worker_mounts_check(struct obx_box_mount *m, size_t n, struct obx_error *err);

/* Fills cfg with defaults overridden by WORKER_* / ONLYBOXES_* environment variables. Returns
 * -EINVAL with err naming the variable when one is malformed. */
int obx_worker_config_from_env(struct obx_worker_config *cfg, struct obx_error *err);

/* The Environment lines of --help for what a local worker reads: its own variables, then the
 * docker runtime's. */
void obx_worker_config_help(FILE *f);

/* For doctor: the effective value of each of those variables (cfg's, and the docker runtime's as
 * read now), and where it came from. */
int obx_worker_config_print(FILE *f, const struct obx_worker_config *cfg, struct obx_error *err);

#define OBX_WORKER_PRELOAD_MAX 64       /* modules in ONLYBOXES_PYTHON_PRELOAD */
#define OBX_WORKER_PRELOAD_NAME_MAX 128 /* characters of one module name */

/* Checks a preload list (module names, comma-separated, or "none"); -EINVAL with err naming the
 * variable and the entry. */
int obx_worker_preload_check(const char *list, struct obx_error *err);

/* Parses "auto|bubblewrap|docker" (also "bwrap"). */
int obx_runtime_choice_parse(const char *s, enum obx_runtime_choice *ret);

struct obx_worker;

struct obx_worker *obx_worker_new(const struct obx_worker_config *cfg, struct obx_error *err);
struct obx_executor *obx_worker_executor(struct obx_worker *w);
/* Stops every box this worker started and frees it. */
void obx_worker_free(struct obx_worker *w);

/* For a process going away on a signal: kills every box this process started (those still
 * starting included) and removes what they left on the host. Safe from a signal-waiting thread
 * while other threads use their workers; the process must exit afterwards. */
void obx_worker_kill_all_boxes(void);

/* The runtime the worker uses, and a line saying why it was chosen (for `doctor`). */
struct obx_runtime *obx_worker_runtime(struct obx_worker *w);

/* Resolves cfg->runtime the way obx_worker_new() does, without starting a worker, with the
 * runtimes' settings of cfg and the agent at agent_path (NULL when none was found). On success
 * *ret is a runtime the caller frees with rt->free(rt); why says what was tried. */
int obx_worker_pick_runtime(const struct obx_worker_config *cfg, const char *agent_path,
                            struct obx_runtime **ret, char *why, size_t why_size,
                            struct obx_error *err);

/* The docker runtime as auto (for_auto: bounded probe, a missing image must be pullable now) or
 * --runtime docker would start it, for boxes of the agent at agent_path (NULL: not checked); NULL
 * with err saying why not. For `doctor`. */
struct obx_runtime *obx_worker_docker_probe(bool for_auto, const char *agent_path,
                                            struct obx_error *err);

/* For doctor: starts one box as pythonExec's pool would (on the runtime cfg picks), imports
 * ONLYBOXES_PYTHON_PRELOAD in it and says in *ret_text (the caller frees it) which Python the box
 * has and what imported. */
int obx_worker_python_check(const struct obx_worker_config *cfg, char **ret_text,
                            struct obx_error *err);

/* Finds onlyboxes-agent: $ONLYBOXES_AGENT, next to the running binary, or in
 * ../lib/onlyboxes/ relative to it. Caller frees. */
char *obx_worker_find_agent(const char *configured, struct obx_error *err);

/* ---- the control socket of `onlyboxes mcp` (local-control.c, control-dir.c) ---- */

struct obx_worker_control;

/* Serves the terminal sessions of w and their files to this user's other commands (`onlyboxes
 * cp`, `onlyboxes sessions`) on the unix socket mcp-PID.sock in this user's control directory
 * ($XDG_RUNTIME_DIR/onlyboxes when XDG_RUNTIME_DIR is a directory of the user's, else
 * /tmp/onlyboxes-UID; made 0700, refused when another user owns it or may enter it). It speaks
 * HTTP/1.1: the console's sessions and files routes (docs/console.md), to peers of this user
 * only. One per process; NULL with err when it cannot serve (the caller goes on without). */
struct obx_worker_control *obx_worker_control_start(struct obx_worker *w, struct obx_error *err);
/* The socket's path; owned by c. */
const char *obx_worker_control_path(const struct obx_worker_control *c);
/* Stops serving (requests in progress are canceled), removes the socket and frees c. Before the
 * worker goes. */
void obx_worker_control_stop(struct obx_worker_control *c);
/* For a process about to _exit on a signal: removes its socket. Any thread. */
void obx_worker_control_unlink(void);

#define OBX_WORKER_CONTROL_PEERS_MAX 64

struct obx_worker_control_peer {
    int pid;        /* the onlyboxes mcp process */
    char path[108]; /* its socket */
};

struct obx_worker_control_peers {
    size_t n;
    struct obx_worker_control_peer v[OBX_WORKER_CONTROL_PEERS_MAX]; /* by pid */
    char where[108]; /* the directory looked in, for messages */
};

/* Finds the sockets of this user's running `onlyboxes mcp` processes, in the directory
 * obx_worker_control_start() serves in, removing those whose process is gone. Returns how many
 * (none when the directory does not exist), or a negative errno with err saying why the
 * directory is not used (another owner, a mode that lets others in). */
int obx_worker_control_find(struct obx_worker_control_peers *ret, struct obx_error *err);

/* ---- `onlyboxes worker`: serving a console over the worker protocol (remote.c) ---- */

struct obx_worker_remote_config {
    char *target;                       /* WORKER_CONSOLE_GRPC_TARGET, host:port */
    bool insecure;                      /* WORKER_CONSOLE_INSECURE=true: plaintext */
    char *ca_file;                      /* WORKER_CONSOLE_CA_FILE; NULL: the system's roots */
    char *cert_file, *key_file;         /* WORKER_CONSOLE_CERT_FILE/_KEY_FILE: mutual TLS */
    char *node_id, *secret;             /* WORKER_ID, WORKER_SECRET (required) */
    char *node_name, *version, *labels; /* WORKER_NODE_NAME, WORKER_VERSION, WORKER_LABELS */
    int heartbeat_interval_sec;         /* until the console's ack says otherwise */
    int jitter_pct;
    int call_timeout_sec;  /* how long an ack may take */
    int drain_timeout_sec; /* on stop, how long running commands may take */
};

/* Reads the WORKER_* variables; a missing or malformed one is an error naming it. */
int obx_worker_remote_config_from_env(struct obx_worker_remote_config *cfg, struct obx_error *err);
void obx_worker_remote_config_done(struct obx_worker_remote_config *cfg);
/* The Environment lines of `onlyboxes worker --help` for those variables. */
void obx_worker_remote_config_help(FILE *f);

/* Serves the console with worker w until obx_worker_remote_stop(), reconnecting as needed; then
 * drains (see remote.c) and returns 0. The caller frees w afterwards. */
int obx_worker_remote_run(struct obx_worker *w, const struct obx_worker_remote_config *cfg,
                          struct obx_error *err);
/* Any thread (a signal-waiting one): begins the drain. */
void obx_worker_remote_stop(void);

#endif
