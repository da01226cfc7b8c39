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

/* Cancels every call in flight, waits for their threads, then frees the session. */
void obx_mcp_session_free(struct obx_mcp_session *s);

/* Serves MCP over stdio: one JSON message per line on in_fd, answers on out_fd. Returns 0 at EOF of
 * in_fd once every call in flight was cancelled and finished. */
int obx_mcp_stdio_run(struct obx_mcp_server *srv, int in_fd, int out_fd);

#endif
