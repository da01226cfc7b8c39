/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared state of the in-box agent (onlyboxes-agent). The agent is one single-threaded poll()
 * loop (agent.c) that owns everything declared here: the frame decoder for stdin, the outbound
 * frame queue for stdout, the table of running EXEC requests (agent-exec.c), the per-request
 * monitor processes (agent-proc.c), terminal state (agent-shell.c), the persistent per-key shells
 * for terminal mode (agent-warm.c) and file operations (agent-files.c). Nothing here is shared
 * with another thread.
 */
#ifndef OBX_AGENT_INTERNAL_H
#define OBX_AGENT_INTERNAL_H

#include "agent/protocol.h"
#include "common/error.h" /* wire codes only: error.c is not linked into the agent */
#include "common/util.h"

#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define AGENT_MAX_REQUESTS 64
#define AGENT_DEFAULT_OUTPUT_LIMIT (1024u * 1024)
#define AGENT_MAX_EXEC_JSON (8u * 1024 * 1024)      /* EXEC payloads must be smaller */
#define AGENT_BACKPRESSURE_BYTES (8u * 1024 * 1024) /* stop reading child pipes above this */
#define AGENT_STDIN_PAUSE_BYTES (64u * 1024 * 1024) /* stop reading frames above this */
#define AGENT_EOF_GRACE_MS 100u                     /* leader gone, pipes still open */
#define AGENT_KILL_GRACE_MS 5000u                   /* monitor did not finish killing */
#define AGENT_DEFAULT_STATE_DIR "/tmp/.onlyboxes-state"
#define AGENT_MAX_WARM 8                       /* persistent shells, at most one per state key */
#define AGENT_WARM_MAX_COMMAND (64u * 1024)    /* longer terminal commands take the cold path */
#define AGENT_PY_INTERRUPT_GRACE_MS 1000u      /* a session's code may take this long to stop */
#define AGENT_PY_MAX_RESULT (8u * 1024 * 1024) /* the runner's result file (images, value) */
#define AGENT_MAX_PTYS 8                       /* live terminals in one box */

/* Tiny stderr logger: "onlyboxes-agent: <message>\n". */
void agent_log(const char *fmt, ...) OBX_PRINTF(1, 2);

/* agent-exec-as.c: `--exec-as UID GID PROGRAM [ARG...]`; does not return on success, else the
 * exit status. */
int agent_exec_as_main(int argc, char **argv);

struct agent_limits {
    uint64_t memory_bytes, nproc, fsize_bytes, cpu_sec, nofile; /* 0 = leave unset */
};

struct agent_config {
    char *workspace;     /* absolute, created at start-up */
    char *state_dir;     /* terminal state files, mode 0700 */
    char *egress_socket; /* --egress-proxy: the worker's egress proxy, or NULL */
    struct agent_limits limits;
};

/* One queued outbound frame (header + payload in one allocation). */
struct agent_chunk {
    struct agent_chunk *next;
    size_t len;
    uint8_t data[];
};

struct agent_outq {
    struct agent_chunk *head, *tail;
    size_t off;   /* bytes of head already written */
    size_t bytes; /* total unwritten bytes */
};

/* The read side of a child's stdout or stderr. */
struct agent_stream {
    int fd;       /* -1 once at EOF or closed */
    uint8_t type; /* OBX_AF_STDOUT / OBX_AF_STDERR */
    uint64_t limit, kept;
    bool truncated;
    uint8_t hold[4]; /* trailing bytes of an incomplete UTF-8 sequence, sent with the next read */
    size_t hold_len;
};

struct agent_request {
    bool used;
    uint32_t id;
    pid_t monitor;   /* the request's monitor process (see agent-proc.c) */
    int ctl_fd;      /* write end of the monitor's control pipe */
    int status_fd;   /* read end: the leader's wait status, 4 bytes */
    int stdin_fd;    /* write end of the child's stdin pipe, -1 when done */
    char *stdin_buf; /* bytes still to write to stdin */
    size_t stdin_len, stdin_off;
    struct agent_stream out[2];
    bool leader_done;
    int leader_status;
    bool monitor_done;
    int monitor_status;
    bool killing, timed_out, canceled;
    uint64_t start_ms;
    uint64_t deadline_ms;      /* timeout, 0 = none */
    uint64_t grace_ms;         /* EOF grace after the leader exited, 0 = not started */
    uint64_t kill_deadline_ms; /* give up waiting for the monitor, 0 = not killing */
    char *state_new;           /* terminal mode: file the shell writes on exit */
    char *state_file;          /* terminal mode: the key's state file */
    char *state_key;           /* terminal mode: the "state" key */
    /* Run by a key's persistent shell: ctl_fd, status_fd and report_fd are the shell's (borrowed,
     * never closed here), out[] are the request's own FIFOs, zy_base names its files. */
    struct agent_warm *zy;
    int report_fd;
    char *zy_base;
    bool shell_died; /* the persistent shell itself died during the command */
    /* A "python" request (agent-python.c): its files and state; py is the box's interpreter
     * when a session call borrows it (ctl_fd, status_fd and monitor are then the
     * interpreter's). */
    struct agent_py_call *pyc;
    struct agent_py *py;
};

/* A monitor that outlived its request because background jobs still run. */
struct agent_linger {
    pid_t pid;
    int ctl_fd;
};

/* The processes and our ends of the pipes of one started monitor (agent-proc.c). */
struct agent_proc {
    pid_t monitor;
    int ctl_fd;    /* write end of the monitor's control pipe */
    int status_fd; /* read end: the leader's wait status, 4 bytes */
    int feed_fd;   /* write end of the leader's stdin or script pipe, -1 when there is none */
    int out_fd, err_fd;
};

/* A key's persistent shell: /bin/sh exec'ed under its own monitor, running one command at a time,
 * each in a forked subshell (agent-warm.c). */
struct agent_warm {
    char *key;              /* NULL: free slot */
    struct agent_proc proc; /* feed_fd: command pipe; out_fd: report pipe; status_fd: the shell's */
    uint64_t lru;           /* a->warm_clock when spawned or last used */
    struct agent_request *busy; /* the request running in it, NULL when idle */
    pid_t shell;                /* the shell's pid, from its first report (0: not known yet) */
    char rep[64];               /* a partial report line */
    size_t rep_len;
};

/* The box's Python interpreter (agent-python.c): started ahead of a call by PREPARE (a pooled
 * box) or by a session's first call, then handed to a one-shot call or kept for the session. */
enum agent_py_state {
    AGENT_PY_NONE,
    AGENT_PY_STARTING, /* importing its modules; PREPARE waits for its ready report */
    AGENT_PY_IDLE,
    AGENT_PY_BUSY, /* runs a session call */
};

struct agent_py {
    enum agent_py_state state;
    struct agent_proc proc; /* feed_fd: command pipe; out_fd: report pipe; status_fd: its exit */
    bool session;           /* it ran a session call: it holds the session's variables */
    bool prepare_waiting;
    uint32_t prepare_id;
    struct agent_request *busy;
    char rep[8192]; /* a partial report line */
    size_t rep_len;
    char *end_reason; /* why the session's last interpreter ended, for the next call */
};

/* A live terminal (agent-pty.c): a shell on a pseudo-terminal, under a monitor of its own. */
struct agent_pty {
    bool used;
    uint32_t id;
    char *state_key;        /* terminalExec commands of this key are shown in it */
    int master;             /* our side of the pseudo-terminal; -1 once it hung up */
    struct agent_proc proc; /* ctl_fd and status_fd used; no pipes for output */
    bool leader_done, monitor_done, killing;
    int leader_status;
    const char *reason; /* why it ends: "exited", "closed", "idle" */
    uint8_t *in;        /* input not yet written to the terminal */
    size_t in_len, in_cap;
    uint64_t sent, acked, window;
    uint64_t idle_ms, last_input_ms, start_ms, kill_deadline_ms;
    uint64_t hup_ms;      /* the terminal hung up: when to stop waiting for the shell's status */
    uint32_t mirror_exec; /* the command being shown, its bytes shown and left out */
    uint64_t mirror_bytes, mirror_dropped;
};

struct agent {
    struct agent_config cfg;
    int sig_fd;
    bool pid1;
    bool quit;
    bool broken; /* the stream from the worker was corrupt or cut inside a frame: exit 1 */
    struct obx_agent_decoder dec;
    struct agent_outq outq;
    struct agent_request req[AGENT_MAX_REQUESTS];
    struct agent_linger *linger;
    size_t n_linger, cap_linger;
    bool warm_off; /* no /proc child lists in the box: every terminal request is cold */
    struct agent_warm warm[AGENT_MAX_WARM];
    char *warm_want[AGENT_MAX_WARM]; /* keys that should get a shell, oldest first */
    size_t n_warm_want;
    uint64_t warm_clock;
    struct agent_py py;
    pid_t relay_pid; /* the egress relay (agent-relay.c), 0 when none runs */
    unsigned relay_starts;
    struct agent_xfer *xfers; /* transfers in progress (agent-xfer.c) */
    struct agent_pty pty[AGENT_MAX_PTYS];
};

struct agent_xfer;

/* agent.c: outbound frames. Never blocks; the main loop flushes. */
void agent_send(struct agent *a, uint8_t type, uint32_t id, const void *payload, size_t len);
void agent_send2(struct agent *a, uint8_t type, uint32_t id, const void *p1, size_t l1,
                 const void *p2, size_t l2);
void agent_send_json(struct agent *a, uint8_t type, uint32_t id, json_t *obj); /* steals obj */
void agent_send_error(struct agent *a, uint32_t id, const char *code, const char *fmt, ...)
    OBX_PRINTF(4, 5);
/* Writes what stdout takes of the queue now (the loop does it once per round). */
void agent_flush(struct agent *a);
uint64_t agent_now_ms(void);

/* agent-exec.c: EXEC requests. */
/* Acts on one frame from the worker (agent.c). */
void agent_dispatch(struct agent *a, const struct obx_agent_frame *f);
void agent_exec_start(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_exec_cancel(struct agent *a, uint32_t id);
struct agent_request *agent_request_find(struct agent *a, uint32_t id);
/* Reads one chunk from a readable (or hung-up) output pipe: 1 data, 0 EOF (closed), -EAGAIN. */
int agent_stream_read(struct agent *a, struct agent_request *r, struct agent_stream *s);
void agent_request_stdin_write(struct agent_request *r);
void agent_request_status_read(struct agent_request *r);
/* Timers and completion; returns the next deadline (0 = none). */
uint64_t agent_request_tick(struct agent *a, struct agent_request *r, uint64_t now);
/* A child of the agent was reaped. */
void agent_child_reaped(struct agent *a, pid_t pid, int status);
/* Takes over a started monitor's pipes; in is what to write to the feed pipe (copied). */
void agent_request_attach(struct agent_request *r, const struct agent_proc *p, const char *in,
                          size_t in_len);
/* Keeps a monitor whose request ended: the agent holds its control pipe until it exits. */
void agent_linger_add(struct agent *a, pid_t pid, int ctl_fd);
void agent_exec_shutdown(struct agent *a);
/* The command's environment: the agent's base variables plus env (an object of strings, may be
 * NULL). The caller frees the result with agent_strv_free(). */
char **agent_env_build(const struct agent *a, json_t *env);
void agent_strv_free(char **v);

/* agent-proc.c: processes. */
struct agent_spawn {
    char **argv; /* NULL-terminated */
    char **envp; /* NULL-terminated */
    const char *cwd;
    struct agent_limits limits;
    /* AGENT_FEED_TTY: the terminal the leader gets as stdin, stdout and stderr (a descriptor
     * above 2); 0 otherwise. */
    int tty_fd;
};
/* Where the write end returned in agent_proc.feed_fd leads. */
enum agent_feed {
    AGENT_FEED_NONE,   /* no feed: the leader's stdin is /dev/null */
    AGENT_FEED_STDIN,  /* the leader's stdin */
    AGENT_FEED_SCRIPT, /* the leader's fd 3, its stdin being /dev/null (a persistent shell) */
    AGENT_FEED_TTY,    /* none: the leader's stdio is sp->tty_fd, its controlling terminal in a
                        * session of its own; out_fd and err_fd are -1 */
};
/* Records the signals the agent inherited as ignored, so leaders reset just those. Called once
 * at start-up, before the agent installs its own dispositions. */
void agent_proc_init(void);

/* Loads the agent's own seccomp filter (agent-seccomp.c; no_new_privs must be set): 0 or -errno. */
int agent_seccomp_install(void);
/* Creates the pipes and forks the monitor, which forks the leader. Our ends are non-blocking
 * and close-on-exec; the caller owns them (agent_proc_close). Returns 0 or -errno (*ret then
 * untouched). */
int agent_proc_start(const struct agent_spawn *sp, enum agent_feed feed, struct agent_proc *ret);
/* Closes our ends; a monitor whose control pipe closes kills its tree and exits. */
void agent_proc_close(struct agent_proc *p);
/* SIGKILLs every child of the calling process, reaps it, and repeats until none is left
 * (orphans of killed children are re-parented to us when we are a subreaper or PID 1). */
void agent_proc_kill_children(void);
/* SIGKILLs the descendants of root, except keep, that started at or after since (in clock ticks
 * since boot, as /proc/PID/stat counts them); returns how many. */
int agent_proc_kill_since(pid_t root, pid_t keep, uint64_t since);
/* Now, in the clock ticks of /proc/PID/stat's start time. */
uint64_t agent_proc_ticks_now(void);
/* close_range(from, ~0) with fallbacks. */
void agent_proc_close_from(int from);

/* agent-shell.c: terminal mode. */
/* Validates the key, makes sure the state directory exists and sets r's state_* names. */
int agent_shell_paths(struct agent *a, struct agent_request *r, const char *key, char *errbuf,
                      size_t errlen);
/* A state key: 1-128 characters of [A-Za-z0-9._-], not starting with '.'. */
bool agent_shell_key_valid(const char *key);
/* The cold path's argv (after agent_shell_paths); the caller frees it. */
char **agent_shell_argv(const struct agent_request *r, const char *command, bool keep_cwd,
                        json_t *env);
/* A persistent shell's argv for key; the caller frees it. */
char **agent_shell_warm_argv(const struct agent *a, const char *key);
/* The script a persistent shell's subshell sources for request r; the caller frees it. */
char *agent_shell_warm_script(const struct agent_request *r, const char *command, size_t *ret_len);
/* Called when a terminal request ends: keep the new state only after a normal shell exit. */
void agent_shell_finish(struct agent_request *r);
int agent_mkdir_p(const char *path, mode_t mode);

/* agent-warm.c: files for a command run by a persistent process. */
/* Makes a FIFO at path (replacing what is there) and opens its read end, non-blocking. */
int agent_fifo_open(const char *path);
/* Creates path anew (O_EXCL, after unlinking it) with data. */
int agent_file_create(const char *path, const char *data, size_t len);

/* agent-warm.c: persistent shells. All return without effect when the box cannot have them. */
void agent_warm_init(struct agent *a);
/* Asks for a shell for key; agent_warm_refill() starts it. */
void agent_warm_want(struct agent *a, const char *key);
/* Starts the shells asked for; called by the loop once the outbound queue was flushed, so the
 * fork never delays a finished request's EXIT. */
void agent_warm_refill(struct agent *a);
/* Runs terminal request r (after agent_shell_paths) in the key's idle shell: sets r's pipes and
 * hands the command over. -ENOENT when there is none (r untouched), another -errno on failure. */
int agent_warm_run(struct agent *a, struct agent_request *r, const char *command);
/* Reads the shell's report for r (its report_fd was readable). */
void agent_warm_report(struct agent_request *r);
/* Called once r's EXIT was queued: the shell takes the next command only when nothing r started
 * is left; otherwise it is retired (its monitor lingers until r's processes are gone) or, when
 * it died, dropped. */
void agent_warm_release(struct agent *a, struct agent_request *r);
/* A child was reaped: true when it was an idle shell's monitor (that shell is discarded). */
bool agent_warm_reaped(struct agent *a, pid_t pid);
/* At shutdown, after every child was killed: frees the table. */
void agent_warm_shutdown(struct agent *a);

/* agent-python.c: pythonExec. */
extern const char obx_agent_python_runner[]; /* python-runner.py, built in */
void agent_py_init(struct agent *a);
/* A PREPARE frame. */
void agent_py_prepare(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
/* Starts EXEC request r whose "python" member is spec (an object): 0, -EINVAL with err, or
 * another negative errno; r is untouched on failure. */
int agent_py_launch(struct agent *a, struct agent_request *r, json_t *spec,
                    const struct agent_limits *limits, char *err, size_t size);
/* r's report pipe is readable: a prepared one-shot interpreter's exit status. */
void agent_py_call_report_read(struct agent_request *r);
/* The interpreter's report pipe, or (while no call runs) its status pipe, is readable. */
void agent_py_report_read(struct agent *a);
void agent_py_status_read(struct agent *a);
/* A timeout or cancel of r: true when r's code was (or is being) interrupted instead of killed. */
bool agent_py_interrupt(struct agent_request *r, uint64_t now);
/* While r's interrupt runs: its deadline (0: none), and *kill_now once the grace is over. */
uint64_t agent_py_tick(struct agent_request *r, uint64_t now, bool *kill_now);
/* Adds r's "python" member to its EXIT object o. */
void agent_py_exit(struct agent *a, struct agent_request *r, json_t *o);
/* r ends: the interpreter it borrowed becomes idle again, or is dropped when it was lost. */
void agent_py_release(struct agent *a, struct agent_request *r);
/* A shell command runs in the box: an interpreter that no call used is dropped (its memory). */
void agent_py_terminal_used(struct agent *a);
/* A child was reaped: true when it was the idle interpreter's monitor. */
bool agent_py_reaped(struct agent *a, pid_t pid);
void agent_py_shutdown(struct agent *a);

/* agent-relay.c: with --egress-proxy, the relay from 127.0.0.1:OBX_BOX_EGRESS_PORT to the
 * worker's egress proxy. */
void agent_relay_init(struct agent *a);
/* A child was reaped: true when it was the relay (which is then started again). */
bool agent_relay_reaped(struct agent *a, pid_t pid, int status);

/* agent-pty.c: live terminals (PTY_* frames). */
void agent_pty_init(struct agent *a);
void agent_pty_open(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_pty_input(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_pty_resize(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_pty_ack(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
/* CANCEL: true when id is a terminal (which is then closed). */
bool agent_pty_cancel(struct agent *a, uint32_t id);
/* The descriptors to poll (at most 2 per terminal) into pfd; returns how many. */
size_t agent_pty_pollfds(struct agent *a, struct pollfd *pfd, size_t max);
/* One of them is ready. */
void agent_pty_ready(struct agent *a, const struct pollfd *pfd);
/* Timers and ends; returns the next deadline (0 = none). */
uint64_t agent_pty_tick(struct agent *a, uint64_t now);
/* A child was reaped: true when it was a terminal's monitor. */
bool agent_pty_reaped(struct agent *a, pid_t pid, int status);
void agent_pty_shutdown(struct agent *a);
/* A terminalExec command of state key `key`, as the terminals of that key show it: its start,
 * its output (STDOUT or STDERR frame type), its end (exit: its EXIT object, borrowed). */
void agent_pty_exec_begin(struct agent *a, uint32_t id, const char *key, const char *command);
void agent_pty_exec_output(struct agent *a, uint32_t id, const char *key, uint8_t type,
                           const uint8_t *data, size_t len);
void agent_pty_exec_end(struct agent *a, uint32_t id, const char *key, json_t *exit);

/* agent-files.c */
void agent_file_read(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_file_write(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);

/* Resolves path against the workspace; the caller frees the result. */
char *agent_resolve_path(const struct agent *a, const char *path);
/* Resolves path against the working directory terminal state key state saved last (a session's
 * cwd), else the workspace; the caller frees the result. */
char *agent_resolve_path_in(const struct agent *a, const char *path, const char *state);
/* The JSON object of a file request (ERROR answered and NULL when it is not one with a non-empty
 * "path" string); what names the request in the error. */
json_t *agent_file_request(struct agent *a, uint32_t id, const char *what, const uint8_t *payload,
                           size_t len);
/* Runs fn with the request's JSON object (agent_file_request()), then frees it. */
void agent_file_op(struct agent *a, uint32_t id, const char *what, const uint8_t *payload,
                   size_t len, void (*fn)(struct agent *a, uint32_t id, json_t *root));
/* Opens the request's "path" (resolved as agent_resolve_path_in() does) read-only and fstat()s
 * it: the descriptor, with *ret_path (the caller frees it), or -1 after answering ERROR. */
int agent_file_open(struct agent *a, uint32_t id, json_t *root, char **ret_path, struct stat *st);
/* Answers ERROR for a failed operation on path with errno e, with the file code that fits
 * (file_not_found, permission_denied, no_space, ...). */
void agent_send_path_error(struct agent *a, uint32_t id, const char *path, int e);
/* A path as a JSON string, invalid UTF-8 replaced. */
json_t *agent_path_json(const char *path);
/* A file's metadata as FILE and FMETA carry it. */
json_t *agent_file_meta(const char *path, const struct stat *st, uint64_t size, const char *mime);
const char *agent_file_type(mode_t mode);
int64_t agent_mtime_ms(const struct stat *st);
/* The MIME type of a file whose first n bytes are p (partial: the file goes on). */
const char *agent_sniff(const uint8_t *p, size_t n, bool partial);

/* agent-fsops.c: FLIST, FDELETE, FMKDIR. */
void agent_file_list(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_file_delete(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_file_mkdir(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
/* mkdir -p of path's missing directories with mode 0755; each one created is appended to
 * *created (n entries, the caller frees them) so that a failed transfer can take them away.
 * Returns 0 or -errno. */
int agent_mkdir_parents(const char *path, char ***created, size_t *n);

/* agent-xfer.c: FGET and FPUT, the transfers that run across many frames. */
void agent_xfer_get(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_xfer_put(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_xfer_ack(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_xfer_data(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_xfer_end(struct agent *a, uint32_t id);
/* CANCEL for a transfer: true when id was one (it is stopped and answered). */
bool agent_xfer_cancel(struct agent *a, uint32_t id);
/* Sends what FGETs may send now (window and outbound queue permitting); true when some can send
 * more at once (the loop then polls without waiting). */
bool agent_xfer_pump(struct agent *a);
void agent_xfer_shutdown(struct agent *a);

#endif
