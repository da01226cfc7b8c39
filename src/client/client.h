/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small REST client for a console (libcurl + jansson): what `onlyboxes exec | python | call
 * --console URL` use to run a capability as a console task instead of in a local sandbox.
 *
 * obx_client_executor() is an executor (common/executor.h) like the in-process worker's, so the CLI
 * and the MCP core run unchanged on top of it: it submits POST /api/v1/tasks (mode auto, with a
 * request_id), polls GET /api/v1/tasks/:id with a backoff while the task runs, and on
 * obx_call_cancel() posts /api/v1/tasks/:id/cancel, which stops the process on the worker.
 *
 * Errors name the console URL and never contain the token. cp and sessions also reach a local
 * `onlyboxes mcp` through its control socket with the same requests (unix_socket).
 */
#ifndef OBX_CLIENT_CLIENT_H
#define OBX_CLIENT_CLIENT_H

#include "common/executor.h"

/* Error codes of the client itself, next to the worker's OBX_ERR_* codes a task can end with. */
#define OBX_CLIENT_ERR_UNREACHABLE "console_unreachable"
#define OBX_CLIENT_ERR_UNAUTHORIZED "unauthorized"
#define OBX_CLIENT_ERR_CONSOLE "console_error"

struct obx_client_config {
    const char *url;     /* http:// or https:// base URL of the console (a path prefix is kept) */
    const char *token;   /* bearer token */
    const char *ca_file; /* PEM CA bundle to verify an https console with; NULL = system store */
    /* Instead of a console: the control socket of a local `onlyboxes mcp` (worker.h), which
     * serves the sessions and files routes to its own user without a token; name says in
     * messages whose it is ("onlyboxes mcp (pid 123)"). url is then "http://localhost". */
    const char *unix_socket;
    const char *name;
};

struct obx_client;

/* Copies the configuration. Fails on a URL that is not http(s) or a missing token (for a
 * console). */
struct obx_client *obx_client_new(const struct obx_client_config *cfg, struct obx_error *err);
void obx_client_free(struct obx_client *c);

/* The base URL, as shown in messages. Owned by the client. */
const char *obx_client_url(const struct obx_client *c);

/* One request to path (e.g. "/api/v1/tasks"); body may be NULL. On any HTTP answer returns 0 with
 * the status and the body (a new reference; NULL when empty or not JSON). A transport failure is a
 * negative errno with OBX_CLIENT_ERR_UNREACHABLE. Thread-safe. */
int obx_client_request(struct obx_client *c, const char *method, const char *path,
                       const json_t *body, long *ret_status, json_t **ret_body,
                       struct obx_error *err);

/* Checks that the console answers and accepts the token (OBX_CLIENT_ERR_UNAUTHORIZED if not). */
int obx_client_check(struct obx_client *c, struct obx_error *err);

/* The executor that runs capabilities as tasks on the console; owned by the client. exec() may run
 * on several threads at once. */
struct obx_executor *obx_client_executor(struct obx_client *c);

/* Cancels every call in flight and every later one: each exec() cancels its task on the console
 * and returns OBX_ERR_CANCELED. Does not wait; safe from any thread. */
void obx_client_cancel_all(struct obx_client *c);

/* ---- one connection, for a command that makes its own requests (cp, sessions) ---- */

struct obx_client_conn;
struct obx_client_conn *obx_client_conn_new(struct obx_client *c, struct obx_error *err);
void obx_client_conn_free(struct obx_client_conn *x);
/* Interrupts a request in progress (it fails with OBX_ERR_CANCELED) and every later one. Quick,
 * from any thread (a signal-waiting one). */
void obx_client_conn_wake(struct obx_client_conn *x);
/* A JSON request, as obx_client_request(), on this connection. */
int obx_client_conn_json(struct obx_client_conn *x, const char *method, const char *path,
                         const json_t *body, long *ret_status, json_t **ret_body,
                         struct obx_error *err);

/* The files route of a session for path, escaped, with extra ("&recursive=true") appended.
 * Caller frees. */
char *obx_client_files_path(struct obx_client_conn *x, const char *session, const char *path,
                            const char *extra);
/* A file transfer on path (client-files.c): PUT sends size bytes read from fd; GET writes a file's
 * bytes to fd (*ret_file true) or keeps a JSON answer (a listing, an error) in *ret_body.
 * progress(userdata, done, total) is called as bytes move. 0 with *ret_status on any HTTP
 * answer; a negative errno when the console cannot be reached, a local read or write failed,
 * or the transfer was interrupted (OBX_ERR_CANCELED). */
int obx_client_transfer(struct obx_client_conn *x, const char *method, const char *path, int fd,
                        uint64_t size,
                        void (*progress)(void *userdata, uint64_t done, uint64_t total),
                        void *userdata, long *ret_status, json_t **ret_body, bool *ret_file,
                        struct obx_error *err);

#endif
