/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of the local control socket share (control-dir.c, local-control.c,
 * control-routes.c); not for other modules. worker.h has what the rest of the program uses.
 */
#ifndef OBX_WORKER_CONTROL_INTERNAL_H
#define OBX_WORKER_CONTROL_INTERNAL_H

#include <sys/un.h>

#include "worker-internal.h"

#define OBX_CONTROL_HEAD_MAX (16u << 10) /* a request's line and headers */
#define OBX_CONTROL_QUERY_MAX 16         /* query parameters of a request */
#define OBX_CONTROL_SEGS_MAX 8           /* parts of a request's path */

/* ---- the directory (control-dir.c) ---- */

/* Checks that dir is a directory (not a symlink) of this user's that no one else may enter
 * (mode 0700 or tighter), making it first (0700) when create is set. -ENOENT when it does not
 * exist (and create is not set); another failure with err saying what is wrong. */
int obx_control_dir_check(const char *dir, bool create, struct obx_error *err);

/* The directory this process serves its socket in: $XDG_RUNTIME_DIR/onlyboxes when
 * XDG_RUNTIME_DIR names a directory of this user's, else /tmp/onlyboxes-UID. -ENAMETOOLONG
 * when a socket's path in it would not fit in a sockaddr_un. */
int obx_control_dir_own(char *out, size_t size, struct obx_error *err);

/* The pid of a control socket's file name ("mcp-PID.sock", or "mcp-PID.new" while it is made;
 * *ret_final tells which), or 0 for another name. */
int obx_control_name_pid(const char *name, bool *ret_final);

/* Removes from dir the sockets whose process is gone. */
void obx_control_dir_prune(const char *dir);

/* Refuses (-EACCES, err saying who) a peer of the connected unix socket fd that is not this
 * process's user (SO_PEERCRED). */
int obx_control_peer_check(int fd, struct obx_error *err);

/* ---- one connection (local-control.c) ---- */

struct obx_control_conn {
    struct obx_worker_control *ctl;
    struct obx_worker *w;
    int fd;
    struct obx_call call; /* every call the request makes; canceled when the server stops */

    /* The request: its head is buf[0, head_len) (parsed in place), the body's first bytes
     * follow it in buf[body_off, len). */
    char buf[OBX_CONTROL_HEAD_MAX];
    size_t len, head_len, body_off;
    const char *method;
    char *segs[OBX_CONTROL_SEGS_MAX]; /* the path's parts, decoded */
    size_t n_segs;
    char *query[OBX_CONTROL_QUERY_MAX][2]; /* decoded name, value ("" when absent) */
    size_t n_query;
    bool query_nul;       /* a query parameter held a NUL (%00) */
    int64_t length;       /* Content-Length; -1 without one */
    uint64_t body_left;   /* body bytes not read yet */
    bool expect_continue; /* Expect: 100-continue */
    bool continue_sent;
    bool responded; /* a response's head went out */

    struct obx_control_conn *next;
};

/* The value of query parameter name, or NULL. */
const char *obx_control_query(const struct obx_control_conn *c, const char *name);

/* Reads up to cap bytes of the body (first answering 100 Continue when the client waits for
 * it): how many, 0 at its end, -ETIMEDOUT when the client sends nothing for a while, or
 * -ECONNRESET when it went away. */
ssize_t obx_control_body_read(struct obx_control_conn *c, void *buf, size_t cap);

/* A response's head: status, the headers in extra ("Name: value\r\n" each, may be NULL) and a
 * Content-Length of length (-1: none, for a 204). */
int obx_control_respond_head(struct obx_control_conn *c, int status, const char *extra,
                             int64_t length);
/* Body bytes after the head. */
int obx_control_send(struct obx_control_conn *c, const void *data, size_t len);
/* A whole JSON response (body's reference is taken; NULL: no body). */
int obx_control_respond_json(struct obx_control_conn *c, int status, json_t *body,
                             const char *extra);
/* {"error": message, "code": code} with status. */
int obx_control_respond_error(struct obx_control_conn *c, int status, const char *code,
                              const char *fmt, ...) OBX_PRINTF(4, 5);

/* ---- the routes (control-routes.c) ---- */

/* Answers the request of c: the sessions API and a session's files API, as the console's. */
void obx_control_route(struct obx_control_conn *c);

#endif
