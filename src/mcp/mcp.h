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

/* Serves MCP over stdio: one JSON message per line on in_fd, answers on out_fd. Returns 0 at EOF of
 * in_fd once every call in flight was cancelled and finished. */
int obx_mcp_stdio_run(struct obx_mcp_server *srv, int in_fd, int out_fd);

#endif
