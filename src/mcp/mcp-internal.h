/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Declarations shared by the files of src/mcp/ and its unit tests; nothing else includes it.
 * jsonrpc.c classifies messages and builds responses, schema.c validates tool arguments,
 * tools.c holds the tool catalogue, fixtures.c the conformance fixtures, version.c the protocol
 * versions, server.c the sessions and methods, call.c each tools/call (session.h holds the types
 * those two share).
 */
#ifndef OBX_MCP_INTERNAL_H
#define OBX_MCP_INTERNAL_H

#include "mcp.h"

#define OBX_MCP_DEFAULT_MAX_INFLIGHT 32
/* Most task ids one subscriptions/listen may name. */
#define OBX_MCP_MAX_LISTEN_TASKS 100u
/* Added to timeout_ms for the call's deadline, so the box's own timeout fires first and the caller
 * gets deadline_exceeded from the worker rather than a cut-off wait. */
#define OBX_MCP_DEADLINE_GRACE_MS 2000
/* Longest text in one progress notification's message. */
#define OBX_MCP_PROGRESS_MAX_TEXT 8192

/* JSON-RPC 2.0 error codes, and the ones protocol 2026-07-28 defines. */
#define OBX_RPC_PARSE_ERROR (-32700)
#define OBX_RPC_INVALID_REQUEST (-32600)
#define OBX_RPC_METHOD_NOT_FOUND (-32601)
#define OBX_RPC_INVALID_PARAMS (-32602)
#define OBX_RPC_INTERNAL_ERROR (-32603)
#define OBX_RPC_HEADER_MISMATCH (-32020)
#define OBX_RPC_MISSING_CAPABILITY (-32021)
#define OBX_RPC_UNSUPPORTED_VERSION (-32022)

/* The reserved _meta keys of protocol 2026-07-28 and of the tasks extension. */
#define OBX_MCP_META_PREFIX "io.modelcontextprotocol/"
#define OBX_MCP_META_VERSION OBX_MCP_META_PREFIX "protocolVersion"
#define OBX_MCP_META_CLIENT_INFO OBX_MCP_META_PREFIX "clientInfo"
#define OBX_MCP_META_CLIENT_CAPS OBX_MCP_META_PREFIX "clientCapabilities"
#define OBX_MCP_META_LOG_LEVEL OBX_MCP_META_PREFIX "logLevel"
#define OBX_MCP_META_SERVER_INFO OBX_MCP_META_PREFIX "serverInfo"
#define OBX_MCP_META_SUBSCRIPTION OBX_MCP_META_PREFIX "subscriptionId"
#define OBX_MCP_EXT_TASKS OBX_MCP_META_PREFIX "tasks"

/* ---- protocol versions (version.c) ---- */

/* Ordered: a later version compares greater. Up to 2025-11-25 the legacy era (an initialize
 * handshake opens a session); from 2026-07-28 the modern era (every request carries its version,
 * client capabilities and client info in _meta, and is served on its own). */
enum obx_mcp_version {
    OBX_MCP_V2024_11_05,
    OBX_MCP_V2025_03_26,
    OBX_MCP_V2025_06_18,
    OBX_MCP_V2025_11_25,
    OBX_MCP_V2026_07_28,
};
/* What a session speaks until initialize negotiated something else. */
#define OBX_MCP_VERSION_DEFAULT OBX_MCP_V2025_03_26
/* The newest version initialize can negotiate. */
#define OBX_MCP_VERSION_LATEST OBX_MCP_V2025_11_25
#define OBX_MCP_VERSION_FIRST_MODERN OBX_MCP_V2026_07_28

static inline bool obx_mcp_version_modern(enum obx_mcp_version v)
{
    return v >= OBX_MCP_VERSION_FIRST_MODERN;
}

/* Returns 0 and sets *ret for a supported version string, -EINVAL otherwise. */
int obx_mcp_version_parse(const char *s, enum obx_mcp_version *ret);
const char *obx_mcp_version_name(enum obx_mcp_version v);
/* The version to answer in initialize: the requested one when it is a legacy version we speak,
 * else the latest legacy one (initialize never negotiates a modern version). */
enum obx_mcp_version obx_mcp_version_negotiate(const char *requested);
/* The modern versions, newest first, as a new JSON array. */
json_t *obx_mcp_modern_versions(void);

/* ---- JSON-RPC messages (jsonrpc.c) ---- */

enum obx_rpc_kind {
    OBX_RPC_REQUEST,      /* method + id */
    OBX_RPC_NOTIFICATION, /* method, no id member */
    OBX_RPC_RESPONSE,     /* result or error from the client: ignored */
    OBX_RPC_INVALID,      /* *ret_error holds the -32600 response */
};

struct obx_rpc_msg {
    const char *method; /* borrowed from the message */
    json_t *id;         /* borrowed; NULL for notifications */
    json_t *params;     /* borrowed; NULL when absent or null */
};

/* Parses one message: size cap, UTF-8 and JSON checks. Returns a new reference, or NULL with
 * *ret_error set to the error response to send (-32700, or -32600 when too large). */
json_t *obx_rpc_parse(const char *text, size_t len, json_t **ret_error);

/* Classifies a parsed value that is not an array. ret_msg borrows from msg. */
enum obx_rpc_kind obx_rpc_classify(json_t *msg, struct obx_rpc_msg *ret_msg, json_t **ret_error);

/* {"jsonrpc":"2.0","id":id,"result":result}; steals result. */
json_t *obx_rpc_result(json_t *id, json_t *result);
/* {"jsonrpc":"2.0","id":id or null,"error":{"code","message"}}. */
json_t *obx_rpc_error(json_t *id, int code, const char *fmt, ...) OBX_PRINTF(3, 4);
/* {"jsonrpc":"2.0","method":method,"params":params}; steals params. */
json_t *obx_rpc_notification(const char *method, json_t *params);
/* True when both are the same JSON-RPC id: same type and value. */
bool obx_rpc_id_equal(const json_t *a, const json_t *b);

/* ---- the modern era (modern.c) ---- */

/* The RFC 5424 level for a name ("debug" .. "emergency"), or -1. */
int obx_mcp_log_level_parse(const char *name);
const char *obx_mcp_log_level_name(int level);

/* What one request says about itself. A legacy request (no modern envelope) gets modern = false
 * and is served by its session's negotiated version. */
struct obx_mcp_envelope {
    bool modern;
    enum obx_mcp_version version;
    int log_level;         /* enum obx_mcp_log_level the client asked for; -1: no log messages */
    const json_t *caps;    /* the client's capabilities (borrowed from the request) */
    bool tasks;            /* the client declared the tasks extension */
    const char *requested; /* the version it names (borrowed) */
    bool supported;        /* ... is one this server serves per request */
};

/* True when params._meta carries any of the modern per-request keys. */
bool obx_mcp_envelope_claimed(const json_t *params);
/* Reads the envelope of a request's params. Without a modern key in _meta and without
 * modern_hint (server/discover, or an HTTP header naming a modern version) the request is legacy:
 * returns 0. A modern request returns 1 with env filled (env->supported false for a version this
 * server does not serve per request: answer obx_mcp_unsupported_version()), or -EINVAL with
 * *ret_error set to -32602 for a missing or malformed field (error.data.envelope names it). */
int obx_mcp_envelope_read(const json_t *params, json_t *id, bool modern_hint,
                          struct obx_mcp_envelope *env, json_t **ret_error);
/* -32022 with data.supported (the modern versions) and data.requested. */
json_t *obx_mcp_unsupported_version(json_t *id, const char *requested);
/* True when caps declares everything in required (both ClientCapabilities objects). */
bool obx_mcp_caps_have(const json_t *caps, const json_t *required);

/* An error response with data (stolen, may be NULL). */
json_t *obx_mcp_error_data(json_t *id, int code, json_t *data, const char *fmt, ...)
    OBX_PRINTF(4, 5);
/* -32021 naming the capabilities (stolen) the request needs; what says what needs them. */
json_t *obx_mcp_missing_capability(json_t *id, json_t *required, const char *what);
json_t *obx_mcp_missing_tasks_capability(json_t *id, const char *what);
/* Sets resultType "complete" (unless the result has one) and _meta serverInfo. */
void obx_mcp_modern_result(json_t *result, const char *server_name, const char *server_version);
/* Decodes a header value that may use the =?base64?...?= form: 0 and *ret (malloc'd), or -EINVAL
 * for characters a header value cannot carry or a malformed Base64 value. */
int obx_mcp_header_decode(const char *raw, char **ret);

struct obx_mcp_catalog;
/* The Streamable HTTP checks of a modern request against its headers; the -32020 error response,
 * or NULL when they agree with the body. The version check comes first (before the version is
 * known to be served), the others after. */
json_t *obx_mcp_http_version_check(const struct obx_rpc_msg *m, const struct obx_mcp_envelope *env,
                                   const struct obx_mcp_http_meta *h);
json_t *obx_mcp_http_check(const struct obx_mcp_catalog *cat, const struct obx_rpc_msg *m,
                           const struct obx_mcp_envelope *env, const struct obx_mcp_http_meta *h);

/* ---- argument validation (schema.c) ---- */

enum {
    OBX_SCHEMA_DEFAULTS = 1 << 0,  /* fill in "default" for missing properties */
    OBX_SCHEMA_NOT_BLANK = 1 << 1, /* required strings must not be blank */
};

/* Validates value against a JSON Schema of the subset the tools use: type (object, string,
 * integer, number, boolean, array), properties, required, additionalProperties:false, minimum,
 * maximum, minLength, maxLength (in characters), default. A null property counts as absent. May
 * change value: defaults are added and integral reals become integers. Returns 0, or -EINVAL with
 * a message naming the field, e.g. "\"code\" is required". */
int obx_mcp_schema_validate(const json_t *schema, json_t *value, unsigned flags, char *msg,
                            size_t size);

/* ---- sessions (server.c) ---- */

/* For transports: sends msg (stolen) on the session, e.g. the error for a line too long to read. */
void obx_mcp_session_send_json(struct obx_mcp_session *s, json_t *msg);

/* ---- tool calls (server.c, used by tools.c and fixtures.c) ---- */

struct obx_mcp_call;

/* Waits ms milliseconds; returns false early when the call was cancelled. */
bool obx_mcp_call_sleep(struct obx_mcp_call *c, unsigned ms);
/* Logs to the call's client when it asked for this level (logging/setLevel, or the request's
 * logLevel in protocol 2026-07-28). */
void obx_mcp_call_log(struct obx_mcp_call *c, enum obx_mcp_log_level level, const char *text);
/* Sends notifications/progress when the request carried a progress token (total < 0: none). */
void obx_mcp_call_progress(struct obx_mcp_call *c, double progress, double total,
                           const char *message);
enum obx_mcp_version obx_mcp_call_version(struct obx_mcp_call *c);
/* The call's validated arguments (fixtures), borrowed. */
const json_t *obx_mcp_call_args(struct obx_mcp_call *c);
/* Makes the call answer with a JSON-RPC error instead of a result (its run returns NULL). */
void obx_mcp_call_fail(struct obx_mcp_call *c, int code, const char *message);

/* ---- the tool catalogue (tools.c) ---- */

struct obx_mcp_tool_entry;

/* Whether a tools/call may become a task (the tasks extension). */
enum obx_mcp_task_support {
    OBX_MCP_TASK_OPTIONAL, /* when the client declared the extension and the call runs long */
    OBX_MCP_TASK_REQUIRED, /* always a task; -32021 for a client without the extension */
    OBX_MCP_TASK_FORBIDDEN,
};

struct obx_mcp_tool {
    const char *name;
    const char *title; /* Tool.title and annotations.title; NULL for none */
    const char *description;
    const char *input_schema;  /* JSON text */
    const char *output_schema; /* JSON text or NULL */
    const char *annotations;   /* JSON text or NULL */
    const char *capability;    /* executor capability; NULL for fixtures */
    /* Turns validated arguments into the capability payload (new reference). Returns NULL and
     * fills msg for an argument the schema cannot check. */
    json_t *(*build_payload)(const json_t *args, char *msg, size_t size);
    /* Turns the executor's result into a CallToolResult (new reference). */
    json_t *(*shape_result)(const struct obx_mcp_tool_entry *t, json_t *result,
                            enum obx_mcp_version v);
    /* Fixtures only: runs in the server and returns the CallToolResult, or NULL after
     * obx_mcp_call_fail() for a JSON-RPC error. */
    json_t *(*run)(struct obx_mcp_call *c);
    enum obx_mcp_task_support task_support;
    /* How long a call of a client with the tasks extension runs before it becomes a task:
     * 0 = the server's setting, > 0 milliseconds, OBX_MCP_TASK_AT_ONCE = at once. */
    int task_after_ms;
    const char *requires; /* JSON text of the ClientCapabilities it needs, or NULL */
};
#define OBX_MCP_TASK_AT_ONCE (-1)

struct obx_mcp_header_param {
    char *property; /* top-level argument */
    char *header;   /* Mcp-Param-<header> */
};

struct obx_mcp_tool_entry {
    const struct obx_mcp_tool *def;
    char *name;  /* what clients see and call: def->name unless overridden */
    char *title; /* NULL when none */
    char *description;
    bool hidden;                /* not in tools/list, still callable */
    json_t *input_schema;       /* what tools/call validates against */
    json_t *list_schema;        /* as modern clients see it (with x-mcp-header) */
    json_t *list_schema_legacy; /* without the modern-only keywords */
    json_t *output_schema;      /* NULL when none */
    json_t *annotations;        /* NULL when none */
    json_t *requires;           /* ClientCapabilities the tool needs, or NULL */
    struct obx_mcp_header_param *header_params;
    size_t n_header_params;
};

/* What the operator changed (overrides.c). */
struct obx_mcp_param_override {
    char *param;
    char *description; /* NULL: hidden from tools/list */
};
struct obx_mcp_tool_override {
    const struct obx_mcp_tool *def;
    char *name, *title, *description; /* NULL: the built-in one */
    bool hidden;
    struct obx_mcp_param_override *params;
    size_t n_params;
};
struct obx_mcp_tool_settings {
    struct obx_mcp_tool_override *tools;
    size_t n;
};
/* Reads the hidden tools (comma-separated built-in names, any case; hidden_var names the setting
 * in errors) and the variables of env starting with prefix. -EINVAL names what is wrong. */
int obx_mcp_tool_settings_read(const char *hidden, const char *hidden_var, const char *prefix,
                               char *const *env, bool fixtures, struct obx_mcp_tool_settings *ret,
                               struct obx_error *err);
void obx_mcp_tool_settings_done(struct obx_mcp_tool_settings *s);

struct obx_mcp_catalog {
    struct obx_mcp_tool_entry *tools; /* sorted by name */
    size_t n;
};

extern const struct obx_mcp_tool obx_mcp_builtin_tools[];
extern const size_t obx_mcp_builtin_tools_count;
extern const struct obx_mcp_tool obx_mcp_fixture_tools[];
extern const size_t obx_mcp_fixture_tools_count;

/* Builds the catalogue from the built-in tools (plus the fixtures) with the operator's changes
 * (may be NULL); aborts on a malformed built-in schema, which is a programming error. */
void obx_mcp_catalog_init(struct obx_mcp_catalog *c, bool fixtures,
                          const struct obx_mcp_tool_settings *settings);
void obx_mcp_catalog_done(struct obx_mcp_catalog *c);
const struct obx_mcp_tool_entry *obx_mcp_catalog_find(const struct obx_mcp_catalog *c,
                                                      const char *name);
/* The tool whose executor capability this is, or NULL. */
const struct obx_mcp_tool_entry *obx_mcp_catalog_by_capability(const struct obx_mcp_catalog *c,
                                                               const char *capability);
/* The tools/list result for a page, or NULL for an invalid cursor. */
json_t *obx_mcp_catalog_list(const struct obx_mcp_catalog *c, enum obx_mcp_version v,
                             const char *cursor, size_t page_size);

/* Validates arguments (a copy is changed, not args) and builds the payload. On success returns 0,
 * *ret_payload (new reference; the validated arguments for fixtures) and *ret_timeout_ms (0 when
 * the tool has none).
 * On an argument error returns -EINVAL and the text of the tool error in msg. */
int obx_mcp_tool_prepare(const struct obx_mcp_tool_entry *t, const json_t *args,
                         json_t **ret_payload, uint64_t *ret_timeout_ms, char *msg, size_t size);

/* CallToolResult helpers (new references). */
json_t *obx_mcp_result_text(const char *text);
json_t *obx_mcp_result_error(const char *fmt, ...) OBX_PRINTF(1, 2);

#endif
