/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MCP server core, transport-neutral: JSON-RPC 2.0, the MCP lifecycle and version negotiation,
 * the tool catalogue, argument validation and result shaping. A transport (stdio here, Streamable
 * HTTP in the console) feeds it messages and gives it a function to send messages back.
 */
#ifndef OBX_MCP_MCP_H
#define OBX_MCP_MCP_H

#include "common/executor.h"

struct obx_mcp_task_backend;

struct obx_mcp_server_config {
    const char *name;    /* serverInfo.name, e.g. "onlyboxes" */
    const char *version; /* serverInfo.version */
    struct obx_executor *executor;
    const char *account;   /* owner of everything in this server's sessions ("local" in stdio) */
    size_t page_size;      /* tools per tools/list page; 0 = all on one page */
    unsigned max_inflight; /* concurrent tools/call per session; 0 = default (32) */
    bool fixtures;         /* also list the conformance-suite fixture tools (tests only) */
    /* Tasks extension: a tools/call of a client that declared it and still runs after this many
     * milliseconds is answered with a task to poll (0: the default, 10 s; OBX_MCP_TASKS_OFF:
     * never). */
    int64_t task_after_ms;
    /* Where tasks of executor tools live; NULL: in this server's memory, for its lifetime. */
    const struct obx_mcp_task_backend *tasks;
    const char *cache_scope; /* cacheScope of list results: "public" (default) or "private" */
    /* What the operator changed in the tool list: hidden_tools names built-in tools (comma-
     * separated, any case) to leave out of tools/list, still callable; the variables of env that
     * start with tool_env_prefix override names, titles and descriptions (<prefix><TOOL>_NAME,
     * _TITLE, _DESCRIPTION, _PARAM_<PARAM>_DESCRIPTION). Check them at startup with
     * obx_mcp_server_config_check(); hidden_tools_var names the setting in its errors. */
    const char *hidden_tools;
    const char *hidden_tools_var;
    const char *tool_env_prefix;
    char *const *env;
};
/* -EINVAL with err naming the variable when the tool settings of cfg are wrong. */
int obx_mcp_server_config_check(const struct obx_mcp_server_config *cfg, struct obx_error *err);
#define OBX_MCP_TASKS_OFF (-1)
#define OBX_MCP_TASK_AFTER_DEFAULT_MS 10000
#define OBX_MCP_TASK_AFTER_MAX_MS 3600000

struct obx_mcp_server;
struct obx_mcp_session;

/* ---- tasks (the io.modelcontextprotocol/tasks extension) ---- */

enum obx_mcp_task_status {
    OBX_MCP_TASK_WORKING,
    OBX_MCP_TASK_COMPLETED, /* result, or error for a tool that failed (a tool error) */
    OBX_MCP_TASK_FAILED,    /* rpc_code and error.message: a JSON-RPC error */
    OBX_MCP_TASK_CANCELLED,
};

/* A task as its backend reports it. */
struct obx_mcp_task_info {
    enum obx_mcp_task_status status;
    int64_t created_ms, updated_ms; /* Unix milliseconds */
    int64_t ttl_ms;                 /* how long after creation it may be kept; -1: no limit */
    char capability[64];    /* the executor capability; "" when result is a CallToolResult */
    json_t *result;         /* owned; NULL when none */
    struct obx_error error; /* COMPLETED without result: why the tool failed */
    int rpc_code;           /* FAILED */
    char message[256];      /* statusMessage, may be "" */
};
void obx_mcp_task_info_done(struct obx_mcp_task_info *info);

/* What a task says while it runs (its output, the executor's log lines), for the call that
 * started it while that call still waits for it. A backend calls output() and log() from its own
 * threads, never after release(), and calls release() once when it is done with the watch (the
 * task ended); when start() fails it calls none of them. */
struct obx_mcp_task_watch {
    void (*output)(void *userdata, enum obx_stream stream, const char *data, size_t len);
    void (*log)(void *userdata, int level, const char *message); /* the executor's levels */
    void (*release)(void *userdata);
    void *userdata;
    /* The server's own tasks only (the conformance fixtures): their progress and log messages
     * (enum obx_mcp_log_level). */
    void (*progress)(void *userdata, double progress, double total, const char *message);
    void (*message)(void *userdata, int level, const char *text);
};

/* A store of tasks outside the server (the console's task table). Every function is called on
 * threads of the server's own and may block briefly. */
struct obx_mcp_task_backend {
    /* Creates the task (durably: get() finds it once this returns) and starts running capability
     * with payload (borrowed) for account. Fills id (NUL-terminated, at most 63 characters). */
    int (*start)(void *userdata, const char *account, const char *capability, json_t *payload,
                 uint64_t timeout_ms, const struct obx_mcp_task_watch *watch, char id[64],
                 struct obx_error *err);
    /* Waits until the task has ended or ms passed; true when it has ended. */
    bool (*wait)(void *userdata, const char *id, uint64_t ms);
    /* -ENOENT for an unknown task or another account's. */
    int (*get)(void *userdata, const char *account, const char *id, struct obx_mcp_task_info *ret);
    /* Stops the task and kills what it runs; -ENOENT as get(). */
    int (*cancel)(void *userdata, const char *account, const char *id);
    void *userdata;
};

/* For a backend: the task ended (or changed); subscribers hear of it. Any thread. */
void obx_mcp_server_task_changed(struct obx_mcp_server *srv, const char *id);

struct obx_mcp_server *obx_mcp_server_new(const struct obx_mcp_server_config *cfg);
void obx_mcp_server_free(struct obx_mcp_server *srv);

/* send() receives one compact JSON message without a trailing newline; it is called from the
 * thread that handles a message and from tool-call threads, never concurrently (the session
 * serialises it). */
struct obx_mcp_session *obx_mcp_session_new(struct obx_mcp_server *srv,
                                            void (*send)(void *userdata, const char *json),
                                            void *userdata);

/* Handles one incoming message (a line on stdio, a POST body over HTTP). Quick methods answer
 * before returning; tools/call answers later from its own thread. */
void obx_mcp_session_handle(struct obx_mcp_session *s, const char *text, size_t len);

/* Per-session options for transports that need more than one send() (Streamable HTTP). */
struct obx_mcp_session_config {
    const char *account; /* owner of the session's calls (copied); NULL: the server's account */
    /* Messages not tied to a sink (obx_mcp_session_handle()); may be
     * NULL, which drops them. */
    void (*send)(void *userdata, const char *json);
    void *userdata;
};
struct obx_mcp_session *obx_mcp_session_new_with(struct obx_mcp_server *srv,
                                                 const struct obx_mcp_session_config *cfg);

/* Where everything that one incoming message causes goes: the response(s) to the request(s) in
 * it and the notifications related to them (a call's progress and log messages). Streamable
 * HTTP gives each POST its own sink, so a response travels back on the POST that carried its
 * request. */
struct obx_mcp_sink {
    /* One compact JSON message; response is false for a notification. Calls for one session
     * never overlap (the session serialises them), and none follows close(). */
    void (*send)(void *userdata, const char *json, bool response);
    /* Called exactly once, when nothing more will come: after the last response, at once for a
     * message that needs none (a notification), after a cancelled call ended, or while the
     * session is freed. It may run before obx_mcp_session_handle_sink() returns or on a call's
     * thread, with the session's send lock held: it must not call into the session. */
    void (*close)(void *userdata);
    void *userdata;
};

/* As obx_mcp_session_handle(), with everything the message causes going to sink (copied). */
void obx_mcp_session_handle_sink(struct obx_mcp_session *s, const char *text, size_t len,
                                 const struct obx_mcp_sink *sink);

/* True once initialize succeeded on the session. */
bool obx_mcp_session_initialized(struct obx_mcp_session *s);

/* What a Streamable HTTP transport knows of a POST besides its body. */
struct obx_mcp_http_meta {
    const char *protocol_version; /* MCP-Protocol-Version, or NULL */
    const char *method;           /* Mcp-Method, or NULL */
    const char *name;             /* Mcp-Name, or NULL */
    /* The value of the header Mcp-Param-<name> (name as a tool's x-mcp-header says), or NULL. */
    const char *(*param)(void *userdata, const char *name);
    void *userdata;
};

/* The Mcp-Param-* headers the built-in tools declare ("mcp-param-session-id", ...), lower-case,
 * NULL-terminated, static. */
const char *const *obx_mcp_param_headers(void);

/* What a Streamable HTTP transport decides before it hands a POST body to a session. */
enum obx_mcp_inbound_kind {
    OBX_MCP_INBOUND_REJECT,     /* answer status with error (a JSON-RPC error response) */
    OBX_MCP_INBOUND_MODERN,     /* a modern request or notification: serve it on its own */
    OBX_MCP_INBOUND_INITIALIZE, /* a single legacy initialize request: a new session */
    OBX_MCP_INBOUND_LEGACY,     /* anything else of the legacy era */
};
struct obx_mcp_inbound {
    enum obx_mcp_inbound_kind kind;
    int status;  /* REJECT: the HTTP status */
    char *error; /* REJECT: the body (owned) */
    /* LEGACY: the version the MCP-Protocol-Version header names, when it is a legacy one we
     * speak; else -1. */
    int legacy_version;
};
/* Classifies one POST body: its era and, for the modern era, every check that answers with an
 * HTTP error (parse errors, the envelope, the headers, unknown methods with 404, missing client
 * capabilities). */
void obx_mcp_inbound_classify(struct obx_mcp_server *srv, const char *body, size_t len,
                              const struct obx_mcp_http_meta *meta, struct obx_mcp_inbound *ret);
void obx_mcp_inbound_done(struct obx_mcp_inbound *in);
/* True for a legacy protocol version this server speaks ("2025-11-25", ...). */
bool obx_mcp_version_supported(const char *version);
/* The legacy versions, newest first, comma-separated (static). */
const char *obx_mcp_versions_text(void);
/* Sets a session's negotiated legacy version as if initialize had run (a session the transport
 * brings back, or one request served without a session). -EINVAL for an unknown version. */
int obx_mcp_session_assume(struct obx_mcp_session *s, const char *version);
/* The version the session negotiated ("" before initialize), static. */
const char *obx_mcp_session_version_name(struct obx_mcp_session *s);
/* Cancels every call and subscription of the session that is still running: their answers are
 * dropped (a modern client closed the stream of its request). Never blocks on a call. */
void obx_mcp_session_cancel_all(struct obx_mcp_session *s);

/* Cancels every call in flight, waits for their threads, then frees the session. Once it starts,
 * nothing more is sent (responses of the cancelled calls are dropped); send() is never called after
 * it returns. Must not run concurrently with obx_mcp_session_handle() on the same session. */
void obx_mcp_session_free(struct obx_mcp_session *s);

/* The RFC 5424 levels of MCP logging, lowest first. */
enum obx_mcp_log_level {
    OBX_MCP_LOG_DEBUG,
    OBX_MCP_LOG_INFO,
    OBX_MCP_LOG_NOTICE,
    OBX_MCP_LOG_WARNING,
    OBX_MCP_LOG_ERROR,
    OBX_MCP_LOG_CRITICAL,
    OBX_MCP_LOG_ALERT,
    OBX_MCP_LOG_EMERGENCY,
};

/* Largest message accepted (a stdio line or an HTTP body); bigger ones get -32600. */
#define OBX_MCP_MAX_MESSAGE (16u * 1024 * 1024)
/* Most messages in one JSON-RPC batch (protocol 2025-03-26); bigger ones get -32600. */
#define OBX_MCP_MAX_BATCH 1000u

/* Serves MCP over stdio: one JSON message per line on in_fd, answers on out_fd. Returns 0 at EOF of
 * in_fd once every call in flight was cancelled and finished. */
int obx_mcp_stdio_run(struct obx_mcp_server *srv, int in_fd, int out_fd);

#endif
