/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the sessions API and a session's files API answer (docs/console.md), whoever serves them:
 * the console's routes (console/api/routes-session.c) and the control socket of a local
 * `onlyboxes mcp` (worker/local-control.c). One place for the status codes, the JSON shapes and
 * the headers of a download, so a client (the CLI's cp and sessions) reads both the same way.
 */
#ifndef OBX_COMMON_SESSIONS_API_H
#define OBX_COMMON_SESSIONS_API_H

#include "json.h"

#define OBX_SESSIONS_API_PATH_MAX 4095 /* bytes of a file's path in ?path= */

/* The HTTP status of a failed call on a session or its files. */
int obx_sessions_api_status(const char *code);

/* {"error": message, "code": code} for a failed call; *ret_status its HTTP status. */
json_t *obx_sessions_api_error(const struct obx_error *err, int *ret_status);

/* A session as the API shows it: its id as the client named it, the worker that has it, its
 * status and, from info (a terminalSession answer of the worker; NULL when it cannot say), its
 * times, lease and busy flag. */
json_t *obx_sessions_api_session(const char *user_id, const char *worker, const json_t *info,
                                 const char *status);

/* The Content-Type of a download for the type the agent detected: a static string, text as
 * UTF-8, application/octet-stream for what is not known. */
const char *obx_sessions_api_content_type(const char *mime);

/* "attachment; filename=...; filename*=UTF-8''..." for the last part of path (RFC 6266: an ASCII
 * fallback and the UTF-8 name percent-encoded). Caller frees. */
char *obx_sessions_api_content_disposition(const char *path);

/* True for a session id the API takes: 1 to 128 visible ASCII characters. */
bool obx_sessions_api_id_valid(const char *sid);

#endif
