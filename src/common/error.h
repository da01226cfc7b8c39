/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error values passed across module boundaries. A function that can fail returns a negative errno
 * and, at a module boundary, also fills a struct obx_error owned by the caller (usually on its
 * stack): a wire code that clients see ("session_not_found", "invalid_payload", ...) and a message
 * for humans. obx_error_wrap() prefixes context on the way up.
 */
#ifndef OBX_COMMON_ERROR_H
#define OBX_COMMON_ERROR_H

#include "util.h"

/* Wire codes shared with the original Onlyboxes workers (reference §3.5) plus our own. */
#define OBX_ERR_INVALID_PAYLOAD "invalid_payload"
#define OBX_ERR_SESSION_NOT_FOUND "session_not_found"
#define OBX_ERR_SESSION_BUSY "session_busy"
#define OBX_ERR_FILE_NOT_FOUND "file_not_found"
#define OBX_ERR_PATH_IS_DIRECTORY "path_is_directory"
#define OBX_ERR_FILE_TOO_LARGE "file_too_large"
/* Files in a box (the agent's file requests). */
#define OBX_ERR_PERMISSION_DENIED "permission_denied"
#define OBX_ERR_NO_SPACE "no_space"
#define OBX_ERR_NOT_A_DIRECTORY "not_a_directory"
#define OBX_ERR_DIRECTORY_NOT_EMPTY "directory_not_empty"
#define OBX_ERR_DEADLINE_EXCEEDED "deadline_exceeded"
#define OBX_ERR_CANCELED "canceled"
#define OBX_ERR_EXECUTION_FAILED "execution_failed"
#define OBX_ERR_UNSUPPORTED "unsupported_capability"
#define OBX_ERR_NO_CAPACITY "no_capacity"
#define OBX_ERR_RUNTIME_UNAVAILABLE "runtime_unavailable"
#define OBX_ERR_INTERNAL "internal_error"
/* The console's worker registry. */
#define OBX_ERR_NO_WORKER "no_worker"
#define OBX_ERR_SESSION_UNAVAILABLE "session_unavailable"
#define OBX_ERR_SESSION_CAPACITY "session_capacity_exceeded"
#define OBX_ERR_WORKER_LOST "worker_lost"
#define OBX_ERR_TIMEOUT "timeout"
/* Request errors of the console's API (their messages are the original's). */
#define OBX_ERR_BAD_REQUEST "bad_request"
#define OBX_ERR_UNAUTHENTICATED "unauthenticated"
#define OBX_ERR_FORBIDDEN "forbidden"
#define OBX_ERR_NOT_FOUND "not_found"
#define OBX_ERR_METHOD_NOT_ALLOWED "method_not_allowed"
#define OBX_ERR_CONFLICT "conflict"
#define OBX_ERR_GONE "gone"
#define OBX_ERR_RATE_LIMITED "rate_limited"
#define OBX_ERR_BAD_GATEWAY "bad_gateway" /* a worker's answer that cannot be used */
#define OBX_ERR_UNAVAILABLE "unavailable" /* the server cannot take more work now */
#define OBX_ERR_STORAGE_FULL "storage_full"
/* Refusals of the MCP HTTP transport (/mcp), before any JSON-RPC message is read. */
#define OBX_ERR_NOT_ACCEPTABLE "not_acceptable"                 /* Accept admits neither answer */
#define OBX_ERR_UNSUPPORTED_MEDIA_TYPE "unsupported_media_type" /* the body is not JSON */

struct obx_error {
    int errnum;         /* positive errno-style number, 0 when unset */
    char code[40];      /* wire code, "" when unset */
    char message[1024]; /* human-readable, never holds secrets */
};

#define OBX_ERROR_INIT \
    {                  \
        0, "", ""      \
    }

/* Sets the error (err may be NULL) and returns -errnum, so callers can `return obx_error_set(...)`.
 */
int obx_error_set(struct obx_error *err, int errnum, const char *code, const char *fmt, ...)
    OBX_PRINTF(4, 5);

/* Prefixes "context: " to the message; returns -errnum. */
int obx_error_wrap(struct obx_error *err, const char *fmt, ...) OBX_PRINTF(2, 3);

/* Where a failure is answered. A few codes answer differently on the task API than on a call
 * answered at once, as the original's API does; the exceptions are documented with the table in
 * error.c. */
enum obx_error_where {
    OBX_ERROR_AT_CALL,     /* the REST routes, a session and its files: the table's status */
    OBX_ERROR_AT_TASK,     /* a command or task no worker took, a terminal command that failed */
    OBX_ERROR_AT_SNAPSHOT, /* the snapshot of a task that failed (POST /api/v1/tasks) */
};

/* The one outward mapping of error codes (the table in error.c). The HTTP status a code answers
 * with where (def for a code the table does not name, and where an exception says so);
 * obx_error_http_status() is where = OBX_ERROR_AT_CALL. */
int obx_error_http_status_at(const char *code, enum obx_error_where where, int def);
int obx_error_http_status(const char *code, int def);

/* The JSON-RPC error code where a code becomes the error of a method (-32602 invalid params for
 * bad input, -32600 for a request the transport refused, -32601 for a method that is not there,
 * else -32603 internal error). */
int obx_error_jsonrpc_code(const char *code);

/* The JSON-RPC error code in the body of an MCP HTTP transport's own refusal (a 4xx or 5xx answer
 * to /mcp, with the code's HTTP status): -32001 for a session that is not there, else -32000, as
 * the MCP SDKs' transports answer and expect. */
int obx_error_jsonrpc_transport_code(const char *code);

/* "code: message", or either alone when the other is empty. Returns a pointer into buf. */
const char *obx_error_text(const struct obx_error *err, char *buf, size_t size);

#endif
