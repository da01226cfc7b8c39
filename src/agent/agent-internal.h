/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared state of the in-box agent (onlyboxes-agent). The agent is one single-threaded poll()
 * loop (agent.c) that owns everything declared here: the frame decoder for stdin, the outbound
 * frame queue for stdout, the table of running EXEC requests (agent-exec.c), the per-request
 * monitor processes (agent-proc.c), terminal state (agent-shell.c) and file operations
 * (agent-files.c). Nothing here is shared with another thread.
 */
#ifndef OBX_AGENT_INTERNAL_H
#define OBX_AGENT_INTERNAL_H

#include "agent/protocol.h"
#include "common/error.h" /* wire codes only: error.c is not linked into the agent */
#include "common/util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_MAX_REQUESTS 64
#define AGENT_DEFAULT_OUTPUT_LIMIT (1024u * 1024)
#define AGENT_MAX_EXEC_JSON (8u * 1024 * 1024)      /* EXEC payloads must be smaller */
#define AGENT_BACKPRESSURE_BYTES (8u * 1024 * 1024) /* stop reading child pipes above this */
#define AGENT_STDIN_PAUSE_BYTES (64u * 1024 * 1024) /* stop reading frames above this */
#define AGENT_EOF_GRACE_MS 100u                     /* leader gone, pipes still open */
#define AGENT_KILL_GRACE_MS 5000u                   /* monitor did not finish killing */
#define AGENT_DEFAULT_STATE_DIR "/tmp/.onlyboxes-state"

/* Tiny stderr logger: "onlyboxes-agent: <message>\n". */
void agent_log(const char *fmt, ...) OBX_PRINTF(1, 2);

struct agent_limits {
    uint64_t memory_bytes, nproc, fsize_bytes, cpu_sec, nofile; /* 0 = leave unset */
};

struct agent_config {
    char *workspace; /* absolute, created at start-up */
    char *state_dir; /* terminal state files, mode 0700 */
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
};

/* A monitor that outlived its request because background jobs still run. */
struct agent_linger {
    pid_t pid;
    int ctl_fd;
};

struct agent {
    struct agent_config cfg;
    int sig_fd;
    bool pid1;
    bool quit;
    struct obx_agent_decoder dec;
    struct agent_outq outq;
    struct agent_request req[AGENT_MAX_REQUESTS];
    struct agent_linger *linger;
    size_t n_linger, cap_linger;
};

/* agent.c: outbound frames. Never blocks; the main loop flushes. */
void agent_send(struct agent *a, uint8_t type, uint32_t id, const void *payload, size_t len);
void agent_send2(struct agent *a, uint8_t type, uint32_t id, const void *p1, size_t l1,
                 const void *p2, size_t l2);
void agent_send_json(struct agent *a, uint8_t type, uint32_t id, json_t *obj); /* steals obj */
void agent_send_error(struct agent *a, uint32_t id, const char *code, const char *fmt, ...)
    OBX_PRINTF(4, 5);
uint64_t agent_now_ms(void);

/* agent-exec.c: EXEC requests. */
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
void agent_exec_shutdown(struct agent *a);
/* Length of a trailing, possibly incomplete UTF-8 sequence (0 when p[0..n) ends on a character
 * boundary or its tail is not UTF-8 at all). */
size_t agent_utf8_incomplete_tail(const uint8_t *p, size_t n);

/* agent-proc.c: processes. */
struct agent_spawn {
    char **argv; /* NULL-terminated */
    char **envp; /* NULL-terminated */
    const char *cwd;
    struct agent_limits limits;
    int stdin_fd; /* read end given to the child */
    int stdout_fd, stderr_fd;
};
/* Forks the request's monitor, which forks the child. Returns the monitor's pid or -errno. */
pid_t agent_proc_spawn(const struct agent_spawn *sp, int ctl_rd, int status_wr);
/* SIGKILLs every child of the calling process, reaps it, and repeats until none is left
 * (orphans of killed children are re-parented to us when we are a subreaper or PID 1). */
void agent_proc_kill_children(void);
/* close_range(from, ~0) with fallbacks. */
void agent_proc_close_from(int from);

/* agent-shell.c: terminal mode. */
int agent_shell_prepare(struct agent *a, struct agent_request *r, const char *key,
                        const char *command, bool keep_cwd, json_t *env, char ***ret_argv,
                        char *errbuf, size_t errlen);
/* Called when a terminal request ends: keep the new state only after a normal shell exit. */
void agent_shell_finish(struct agent_request *r);
int agent_mkdir_p(const char *path, mode_t mode);

/* agent-files.c */
void agent_file_read(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);
void agent_file_write(struct agent *a, uint32_t id, const uint8_t *payload, size_t len);

/* Resolves path against the workspace; the caller frees the result. */
char *agent_resolve_path(const struct agent *a, const char *path);

#endif
