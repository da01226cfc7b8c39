/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by http.c (requests) and http-ws.c (WebSockets); not for other modules. */
#ifndef OBX_CONSOLE_HTTP_INTERNAL_H
#define OBX_CONSOLE_HTTP_INTERNAL_H

#include <libwebsockets.h>

#include "http.h"

struct http_ws_server;

/* http.c */
/* A request read from wsi's headers (its upgrade request, for a WebSocket); NULL when it has no
 * URI. One reference for the caller. */
struct obx_http_request *http_request_new(struct obx_http_server *srv, struct lws *wsi);
/* Writes a last answer ({"error": message}) straight to a connection lws is about to close. */
void http_answer_before_close(struct lws *wsi, int status, const char *reason, const char *fmt, ...)
    OBX_PRINTF(4, 5);
struct http_ws_server *http_server_ws(struct obx_http_server *srv);
/* Wakes the service thread (any thread). */
void http_server_wake(struct obx_http_server *srv);
const struct obx_http_server_config *http_server_config(const struct obx_http_server *srv);

/* http-ws.c */
struct http_ws_server *http_ws_server_new(void);
/* After lws_context_destroy(): every connection is closed. */
void http_ws_server_free(struct http_ws_server *w);
/* The WebSocket protocol's lws callback. */
int http_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);
/* An upgrade that asked for no subprotocol of ours (it reached the "http" protocol): refused
 * with an answer that says so. Returns the callback's result. */
int http_ws_refuse_unknown(struct lws *wsi);
/* Size of the WebSocket protocol's per-connection data. */
size_t http_ws_pss_size(void);

#endif
