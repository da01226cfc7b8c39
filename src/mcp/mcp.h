/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MCP server core, transport-neutral: JSON-RPC 2.0, the MCP lifecycle and version negotiation,
 * the tool catalogue, argument validation and result shaping. A transport (stdio here, Streamable
 * HTTP in the console) feeds it messages and gives it a function to send messages back.
 */
#ifndef OBX_MCP_MCP_H
#define OBX_MCP_MCP_H

#include "common/executor.h"

struct obx_mcp_server_config {
    const char *name;    /* serverInfo.name, e.g. "onlyboxes" */
    const char *version; /* serverInfo.version */
    struct obx_executor *executor;
    const char *account;   /* owner of everything in this server's sessions ("local" in stdio) */
    size_t page_size;      /* tools per tools/list page; 0 = all on one page */
    unsigned max_inflight; /* concurrent tools/call per session; 0 = default (32) */
    bool fixtures;         /* also list the conformance-suite fixture tools (tests only) */
};

struct obx_mcp_server;
struct obx_mcp_session;

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
    /* Messages not tied to a sink (obx_mcp_session_handle(), obx_mcp_session_log()); may be
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

/* What a Streamable HTTP transport checks before it hands a POST body to a session. */
enum obx_mcp_message_kind {
    OBX_MCP_MESSAGE_UNPARSABLE, /* not UTF-8 JSON, or too large */
    OBX_MCP_MESSAGE_INITIALIZE, /* a single initialize request */
    OBX_MCP_MESSAGE_OTHER,
};
/* why (may be NULL) gets the reason of OBX_MCP_MESSAGE_UNPARSABLE, as the parse error's message. */
enum obx_mcp_message_kind obx_mcp_message_kind(const char *text, size_t len, char *why,
                                               size_t why_size);
/* True for a protocol version this server speaks ("2025-11-25", ...). */
bool obx_mcp_version_supported(const char *version);
/* The supported versions, newest first, comma-separated (static). */
const char *obx_mcp_versions_text(void);

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

/* Sends notifications/message {"level","logger":"onlyboxes","data":<text>} to the client when level
 * is at or above the level the client chose with logging/setLevel. Until the client calls
 * logging/setLevel nothing is sent. Thread-safe; never pass secrets. */
void obx_mcp_session_log(struct obx_mcp_session *s, enum obx_mcp_log_level level, const char *fmt,
                         ...) OBX_PRINTF(3, 4);

/* Largest message accepted (a stdio line or an HTTP body); bigger ones get -32600. */
#define OBX_MCP_MAX_MESSAGE (16u * 1024 * 1024)
/* Most messages in one JSON-RPC batch (protocol 2025-03-26); bigger ones get -32600. */
#define OBX_MCP_MAX_BATCH 1000u

/* Serves MCP over stdio: one JSON message per line on in_fd, answers on out_fd. Returns 0 at EOF of
 * in_fd once every call in flight was cancelled and finished. */
int obx_mcp_stdio_run(struct obx_mcp_server *srv, int in_fd, int out_fd);

#endif
