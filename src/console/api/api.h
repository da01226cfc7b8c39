/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console's API layer: the console object its handlers serve (console.c assembles it), the
 * route table types, the helpers handlers use, and what console.c starts and stops here (the
 * router, /mcp, terminals, transfers, exports). Handlers run on pool threads; each gets a struct
 * obx_route_ctx it owns for the duration of the call. The arrows point one way: console.c uses
 * this layer, which uses the console's parts below it and never console.c.
 */
#ifndef OBX_CONSOLE_API_H
#define OBX_CONSOLE_API_H

#include "common/json.h"
#include "console/auth/ratelimit.h"
#include "console/console.h"
#include "console/http/http.h"
#include "console/registry/dispatch.h"
#include "console/store/store.h"
#include "console/tasks/tasks.h"
#include "console/util/pool.h"

#define OBX_CONSOLE_SESSION_COOKIE "onlyboxes_console_session"
#define OBX_CONSOLE_SESSION_TTL_MS (12LL * 3600 * 1000)
#define OBX_CONSOLE_REPO_URL "https://github.com/Coooolfan/onlyboxes"
#define OBX_CONSOLE_NAME_MAX_RUNES 64
#define OBX_CONSOLE_PASSWORD_MAX_BYTES 1024
#define OBX_CONSOLE_TOKEN_MAX_BYTES 256
/* A chosen token value must be hard to guess: it alone signs in as its account, and since values
 * are unique across accounts, a 409 tells whoever tries a value that someone uses it. */
#define OBX_CONSOLE_TOKEN_MIN_BYTES 32
#define OBX_CONSOLE_TOKEN_MIN_DISTINCT 12
#define OBX_CONSOLE_INSERT_ATTEMPTS 8
/* The variables that change what /mcp's tools/list says (see CONSOLE_HIDDEN_TOOLS). */
#define OBX_CONSOLE_MCP_TOOL_PREFIX "CONSOLE_MCP_TOOL_"

struct obx_console {
    const struct obx_console_config *cfg;
    struct obx_store *store;
    struct obx_console_pool *pool;
    struct obx_http_server *http;
    struct obx_ratelimit *login_limit;
    struct obx_worker *worker; /* the embedded worker, or NULL */
    struct obx_dispatch *dispatch;
    struct obx_tasks *tasks;
    int64_t started_ms; /* when this console started (the embedded worker's registration) */
    struct obx_console_mcp *mcp;         /* MCP over Streamable HTTP at /mcp */
    struct obx_console_xfers *xfers;     /* file uploads and downloads in progress */
    struct obx_console_terms *terms;     /* live terminals (WebSockets) */
    struct obx_console_exports *exports; /* exportFile's files and their signed URLs */
};

enum obx_route_auth {
    OBX_ROUTE_AUTH_NONE,
    OBX_ROUTE_AUTH_COOKIE,
    OBX_ROUTE_AUTH_ADMIN, /* cookie, then is_admin */
    OBX_ROUTE_AUTH_BEARER,
    OBX_ROUTE_AUTH_ACCOUNT, /* a Bearer token when one is sent, else the dashboard's cookie */
};

enum obx_route_result {
    OBX_ROUTE_DONE,  /* req->resp is set; the router completes the request */
    OBX_ROUTE_ASYNC, /* the handler kept the completion reference and completes it later */
};

#define OBX_ROUTE_MAX_PARAMS 4

struct obx_route_ctx {
    struct obx_console *console;
    struct obx_http_request *req;
    char *params[OBX_ROUTE_MAX_PARAMS];
    size_t n_params;
    bool authed;
    struct obx_account account; /* the caller, when authed */
    char session_hash[65];      /* cookie auth only */
};

typedef enum obx_route_result (*obx_route_fn)(struct obx_route_ctx *ctx);

struct obx_route {
    enum obx_http_method method;
    const char *pattern; /* "/api/v1/console/tokens/:token_id" */
    enum obx_route_auth auth;
    obx_route_fn fn;
};

/* Matches path against the table. params receive copies of the ":name" segments (caller frees).
 * *ret_redirect is set when only the path without its trailing slash matches. */
/* Appends to out (", "-separated) the methods of routes whose pattern matches path, each once;
 * returns how many it found. */
size_t obx_router_allowed(const struct obx_route *routes, size_t n, const char *path, char *out,
                          size_t size);
const struct obx_route *obx_router_match(const struct obx_route *routes, size_t n,
                                         enum obx_http_method method, const char *path,
                                         char **params, size_t *n_params, bool *ret_redirect);
/* The HTTP dispatch callback: queues the request on the pool (service thread, never blocks). */
void obx_router_dispatch(struct obx_http_request *req, void *userdata);
/* What a pool thread does with a dispatched request: match, authenticate, run the handler and
 * complete the request unless the handler went asynchronous. Consumes the completion reference.
 * Blocking; the fuzz harness calls it directly. */
void obx_router_handle(struct obx_console *c, struct obx_http_request *req);

extern const struct obx_route obx_account_routes[];
extern const size_t obx_account_routes_n;
extern const struct obx_route obx_token_routes[];
extern const size_t obx_token_routes_n;
extern const struct obx_route obx_task_routes[];
extern const size_t obx_task_routes_n;
extern const struct obx_route obx_worker_routes[];
extern const size_t obx_worker_routes_n;
extern const struct obx_route obx_mcp_routes[];
extern const size_t obx_mcp_routes_n;
extern const struct obx_route obx_web_routes[];
extern const size_t obx_web_routes_n;
extern const struct obx_route obx_session_routes[];
extern const size_t obx_session_routes_n;
extern const struct obx_route obx_terminal_routes[];
extern const size_t obx_terminal_routes_n;
extern const struct obx_route obx_export_routes[];
extern const size_t obx_export_routes_n;

/* The HTTP server's stream_body: for the uploads of PUT /api/v1/sessions/:id/files
 * (routes-session.c), CONSOLE_MAX_UPLOAD_MB; -1 for every other request. */
int64_t obx_router_stream_body(const struct obx_http_request *req, void *userdata);

/* File transfers of the sessions API (routes-session.c): at most max at once, each on a thread
 * of its own. free() cancels those in progress and waits for them: before the HTTP server and
 * the registry go. */
/* The dashboard's live terminals (terminal.c): WebSockets of the subprotocol below at
 * /api/v1/sessions/{id}/terminal, relayed to terminalPty calls. */
#define OBX_TERMINAL_PROTOCOL "onlyboxes-terminal.v1"
struct obx_console_terms;
struct obx_console_terms *obx_console_terms_new(void);
/* The HTTP server's WebSocket callbacks (they find the list at c->terms). */
void obx_console_terms_ws_config(struct obx_console *c, struct obx_http_ws_config *ret);
/* Closes every terminal and waits for their calls to end: after the pool, before the HTTP server
 * and the registry go. */
void obx_console_terms_stop(struct obx_console_terms *l);
void obx_console_terms_free(struct obx_console_terms *l);

struct obx_console_xfers;
struct obx_console_xfers *obx_console_xfers_new(unsigned max);
void obx_console_xfers_free(struct obx_console_xfers *t);
/* Answers with the size bytes of fd (owned from here) as an attachment named filename, on a
 * transfer thread. */
enum obx_route_result obx_console_send_file(struct obx_route_ctx *ctx, int fd, uint64_t size,
                                            const char *filename, const char *mime);

/* exportFile on the console (routes-export.c): the file of a session copied into the console's
 * export space, answered with a signed download URL; the executor hook of /mcp calls it for the
 * capability "exportfile". */
struct obx_console_exports;
int obx_console_exports_new(struct obx_console *c, struct obx_console_exports **ret,
                            struct obx_error *err);
void obx_console_exports_free(struct obx_console_exports *e);
int obx_console_export_run(struct obx_console *c, json_t *payload, struct obx_call *call,
                           json_t **ret_result, struct obx_error *err);

/* MCP over Streamable HTTP (routes-mcp.c): the endpoint's sessions and its executor. free()
 * terminates every session (their calls are cancelled and answered), so it must run before the
 * HTTP server and the dispatcher go away, and after no handler runs any more. */
struct obx_mcp_task_backend;
/* The console's task table as the MCP core's task backend (mcp-tasks.c). */
void obx_console_mcp_task_backend(struct obx_console *c, struct obx_mcp_task_backend *ret);
struct obx_console_mcp *obx_console_mcp_new(struct obx_console *c);
void obx_console_mcp_free(struct obx_console_mcp *m);

/* Creates an account with a fresh id, retrying id collisions (routes-account.c). -EEXIST: the
 * username is taken. Hashes the password: pool threads or startup only. */
int obx_console_account_create(struct obx_console *c, const char *username, const char *password,
                               bool is_admin, struct obx_account *ret, struct obx_error *err);

/* Handler helpers (router.c). */
/* Bearer auth for a route that checks more first (AUTH_NONE in the table): fills ctx->account, or
 * answers 401 with a WWW-Authenticate challenge and returns false. */
bool obx_route_auth_bearer(struct obx_route_ctx *ctx);
/* The same for a token given in the URL (?token=, for MCP clients that cannot set headers). */
bool obx_route_auth_query_token(struct obx_route_ctx *ctx, const char *token);
/* The body as a JSON object, or NULL after answering 400 "invalid request body". */
json_t *obx_route_body_object(struct obx_route_ctx *ctx);
/* A string member: absent or null gives def; another type gives -EINVAL. */
int obx_route_body_string(json_t *obj, const char *key, const char *def, const char **ret);
json_t *obx_route_time(int64_t unix_ms);
/* Answers {"error": message} with the HTTP status of code (common/error.h's table). */
void obx_route_fail(struct obx_http_request *req, const char *code, const char *message);

/* Answers a failed store call r (negative errno): 507 naming the full disk for -ENOSPC, else 500;
 * message says what failed ("failed to create token"). */
void obx_route_store_error(struct obx_route_ctx *ctx, int r, const char *message);
json_t *obx_route_account_json(const struct obx_account *a, bool with_times);
void obx_route_set_session_cookie(struct obx_route_ctx *ctx, const char *value);
void obx_route_clear_session_cookie(struct obx_route_ctx *ctx);
/* A new dashboard session for account_id: stores its hash and sets the cookie. */
int obx_route_session_start(struct obx_route_ctx *ctx, const char *account_id);
void obx_route_session_hash(const struct obx_console *c, const char *value, char out[static 65]);
/* The client address used for rate limiting. */
const char *obx_route_client_ip(const struct obx_route_ctx *ctx);
/* ?page (default 1) and ?page_size (default 20, clamped to 100) and the row offset they give.
 * False after answering 400. */
bool obx_route_page(struct obx_route_ctx *ctx, int64_t *ret_page, int64_t *ret_page_size,
                    int64_t *ret_offset);

#endif
