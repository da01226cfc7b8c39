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
/* Added to timeout_ms for the call's deadline, so the box's own timeout fires first and the caller
 * gets deadline_exceeded from the worker rather than a cut-off wait. */
#define OBX_MCP_DEADLINE_GRACE_MS 2000
/* Longest text in one progress notification's message. */
#define OBX_MCP_PROGRESS_MAX_TEXT 8192

/* JSON-RPC 2.0 error codes. */
#define OBX_RPC_PARSE_ERROR (-32700)
#define OBX_RPC_INVALID_REQUEST (-32600)
#define OBX_RPC_METHOD_NOT_FOUND (-32601)
#define OBX_RPC_INVALID_PARAMS (-32602)
#define OBX_RPC_INTERNAL_ERROR (-32603)

/* ---- protocol versions (version.c) ---- */

/* Ordered: a later version compares greater. */
enum obx_mcp_version {
    OBX_MCP_V2024_11_05,
    OBX_MCP_V2025_03_26,
    OBX_MCP_V2025_06_18,
    OBX_MCP_V2025_11_25,
};
/* What a session speaks until initialize negotiated something else. */
#define OBX_MCP_VERSION_DEFAULT OBX_MCP_V2025_03_26
#define OBX_MCP_VERSION_LATEST OBX_MCP_V2025_11_25

/* Returns 0 and sets *ret for a supported version string, -EINVAL otherwise. */
int obx_mcp_version_parse(const char *s, enum obx_mcp_version *ret);
const char *obx_mcp_version_name(enum obx_mcp_version v);
/* The version to answer in initialize: the requested one when supported, else the latest. */
enum obx_mcp_version obx_mcp_version_negotiate(const char *requested);

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
/* Logs to the call's session (see obx_mcp_session_log). */
void obx_mcp_call_log(struct obx_mcp_call *c, enum obx_mcp_log_level level, const char *text);
/* Sends notifications/progress when the request carried a progress token (total < 0: none). */
void obx_mcp_call_progress(struct obx_mcp_call *c, double progress, double total,
                           const char *message);
enum obx_mcp_version obx_mcp_call_version(struct obx_mcp_call *c);

/* ---- the tool catalogue (tools.c) ---- */

struct obx_mcp_tool_entry;

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
    /* Fixtures only: runs in the server and returns the CallToolResult. */
    json_t *(*run)(struct obx_mcp_call *c);
};

struct obx_mcp_tool_entry {
    const struct obx_mcp_tool *def;
    json_t *input_schema;
    json_t *output_schema; /* NULL when none */
    json_t *annotations;   /* NULL when none */
};

struct obx_mcp_catalog {
    struct obx_mcp_tool_entry *tools; /* sorted by name */
    size_t n;
};

extern const struct obx_mcp_tool obx_mcp_fixture_tools[];
extern const size_t obx_mcp_fixture_tools_count;

/* Builds the catalogue from the built-in tools (plus the fixtures); aborts on a malformed
 * built-in schema, which is a programming error. */
void obx_mcp_catalog_init(struct obx_mcp_catalog *c, bool fixtures);
void obx_mcp_catalog_done(struct obx_mcp_catalog *c);
const struct obx_mcp_tool_entry *obx_mcp_catalog_find(const struct obx_mcp_catalog *c,
                                                      const char *name);
/* The tools/list result for a page, or NULL for an invalid cursor. */
json_t *obx_mcp_catalog_list(const struct obx_mcp_catalog *c, enum obx_mcp_version v,
                             const char *cursor, size_t page_size);

/* Validates arguments (a copy is changed, not args) and builds the payload. On success returns 0,
 * *ret_payload (new reference, NULL for fixtures) and *ret_timeout_ms (0 when the tool has none).
 * On an argument error returns -EINVAL and the text of the tool error in msg. */
int obx_mcp_tool_prepare(const struct obx_mcp_tool_entry *t, const json_t *args,
                         json_t **ret_payload, uint64_t *ret_timeout_ms, char *msg, size_t size);

/* CallToolResult helpers (new references). */
json_t *obx_mcp_result_text(const char *text);
json_t *obx_mcp_result_error(const char *fmt, ...) OBX_PRINTF(1, 2);

#endif
