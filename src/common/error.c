/* SPDX-License-Identifier: Apache-2.0 */
/*
 * struct obx_error helpers, and the one table from an error code to what a client is told: the
 * HTTP status of a REST answer, the JSON-RPC error of an MCP method or of the MCP HTTP transport.
 */
#include "error.h"

#include <stdarg.h>

int obx_error_set(struct obx_error *err, int errnum, const char *code, const char *fmt, ...)
{
    if (errnum < 0)
        errnum = -errnum;
    if (errnum == 0)
        errnum = EIO;
    if (!err)
        return -errnum;
    err->errnum = errnum;
    snprintf(err->code, sizeof(err->code), "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -errnum;
}

int obx_error_wrap(struct obx_error *err, const char *fmt, ...)
{
    if (!err)
        return -EIO;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char old[sizeof(err->message)];
    memcpy(old, err->message, sizeof(old));
    size_t n = strlen(prefix);
    if (n + 2 >= sizeof(err->message))
        n = sizeof(err->message) - 3;
    memcpy(err->message, prefix, n);
    memcpy(err->message + n, ": ", 2);
    size_t rest = sizeof(err->message) - n - 3;
    size_t olen = strnlen(old, rest);
    memcpy(err->message + n + 2, old, olen);
    err->message[n + 2 + olen] = '\0';
    if (err->errnum == 0)
        err->errnum = EIO;
    return -err->errnum;
}

const char *obx_error_text(const struct obx_error *err, char *buf, size_t size)
{
    if (err->code[0] && err->message[0])
        snprintf(buf, size, "%s: %s", err->code, err->message);
    else
        snprintf(buf, size, "%s", err->code[0] ? err->code : err->message);
    return buf;
}

#define JSONRPC_INVALID_REQUEST (-32600)
#define JSONRPC_METHOD_NOT_FOUND (-32601)
#define JSONRPC_INVALID_PARAMS (-32602)
#define JSONRPC_INTERNAL (-32603)
#define JSONRPC_TRANSPORT (-32000)         /* an MCP HTTP transport's refusal */
#define JSONRPC_SESSION_NOT_FOUND (-32001) /* ... of a session it does not have */

/* The exceptions: where a route answers a code other than its row's status, as the original's
 * API does (its REST shapes are pinned by tests). A row's flags say which apply to it.
 *
 * CALL_ONLY: the status is that of a call answered at once (a session and its files,
 *   docs/console.md). The task API has no such statuses: a command or task no worker took
 *   answers 503 there, a failed terminal command or task 502 (the def its routes pass).
 * NOT_ON_SNAPSHOT: the snapshot of a task that failed answers 502 rather than a fault of the
 *   request (400, 404, 409) or a timeout (504): there the original maps availability and access
 *   only. A terminal command (OBX_ERROR_AT_TASK) still answers the row's status. */
enum {
    CALL_ONLY = 1 << 0,
    NOT_ON_SNAPSHOT = 1 << 1,
};

static const struct {
    const char *code;
    int http_status;
    int jsonrpc;   /* the error of a method: obx_error_jsonrpc_code() */
    int transport; /* an MCP HTTP transport's refusal; 0: JSONRPC_TRANSPORT */
    unsigned flags;
} error_map[] = {
    {OBX_ERR_INVALID_PAYLOAD, 400, JSONRPC_INVALID_PARAMS, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_BAD_REQUEST, 400, JSONRPC_INVALID_PARAMS, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_UNAUTHENTICATED, 401, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_FORBIDDEN, 403, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_PERMISSION_DENIED, 403, JSONRPC_INVALID_PARAMS, 0, 0},
    {OBX_ERR_NOT_FOUND, 404, JSONRPC_INVALID_PARAMS, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_SESSION_NOT_FOUND, 404, JSONRPC_INVALID_PARAMS, JSONRPC_SESSION_NOT_FOUND,
     NOT_ON_SNAPSHOT},
    {OBX_ERR_FILE_NOT_FOUND, 404, JSONRPC_INVALID_PARAMS, 0, CALL_ONLY},
    {OBX_ERR_METHOD_NOT_ALLOWED, 405, JSONRPC_METHOD_NOT_FOUND, 0, 0},
    {OBX_ERR_NOT_ACCEPTABLE, 406, JSONRPC_INVALID_REQUEST, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_CONFLICT, 409, JSONRPC_INVALID_PARAMS, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_SESSION_BUSY, 409, JSONRPC_INTERNAL, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_CANCELED, 409, JSONRPC_INTERNAL, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_PATH_IS_DIRECTORY, 409, JSONRPC_INVALID_PARAMS, 0, CALL_ONLY},
    {OBX_ERR_NOT_A_DIRECTORY, 409, JSONRPC_INVALID_PARAMS, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_DIRECTORY_NOT_EMPTY, 409, JSONRPC_INVALID_PARAMS, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_GONE, 410, JSONRPC_INVALID_PARAMS, 0, 0},
    {OBX_ERR_FILE_TOO_LARGE, 413, JSONRPC_INVALID_PARAMS, 0, CALL_ONLY},
    {OBX_ERR_UNSUPPORTED_MEDIA_TYPE, 415, JSONRPC_INVALID_REQUEST, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_RATE_LIMITED, 429, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_NO_CAPACITY, 429, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_SESSION_CAPACITY, 429, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_INTERNAL, 500, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_UNSUPPORTED, 501, JSONRPC_INVALID_PARAMS, 0, CALL_ONLY},
    {OBX_ERR_EXECUTION_FAILED, 502, JSONRPC_INTERNAL, 0, CALL_ONLY},
    {OBX_ERR_BAD_GATEWAY, 502, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_WORKER_LOST, 502, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_NO_WORKER, 503, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_SESSION_UNAVAILABLE, 503, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_RUNTIME_UNAVAILABLE, 503, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_UNAVAILABLE, 503, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_TIMEOUT, 504, JSONRPC_INTERNAL, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_DEADLINE_EXCEEDED, 504, JSONRPC_INTERNAL, 0, NOT_ON_SNAPSHOT},
    {OBX_ERR_NO_SPACE, 507, JSONRPC_INTERNAL, 0, 0},
    {OBX_ERR_STORAGE_FULL, 507, JSONRPC_INTERNAL, 0, 0},
};

/* The row of code, or -1. */
static ssize_t find(const char *code)
{
    for (size_t i = 0; code && i < OBX_ARRAY_SIZE(error_map); i++)
        if (strcmp(code, error_map[i].code) == 0)
            return (ssize_t)i;
    return -1;
}

int obx_error_http_status_at(const char *code, enum obx_error_where where, int def)
{
    ssize_t i = find(code);
    if (i < 0)
        return def;
    unsigned flags = error_map[i].flags;
    if (where != OBX_ERROR_AT_CALL && (flags & CALL_ONLY))
        return def;
    if (where == OBX_ERROR_AT_SNAPSHOT && (flags & NOT_ON_SNAPSHOT))
        return def;
    return error_map[i].http_status;
}

int obx_error_http_status(const char *code, int def)
{
    return obx_error_http_status_at(code, OBX_ERROR_AT_CALL, def);
}

int obx_error_jsonrpc_code(const char *code)
{
    ssize_t i = find(code);
    return i < 0 ? JSONRPC_INTERNAL : error_map[i].jsonrpc;
}

int obx_error_jsonrpc_transport_code(const char *code)
{
    ssize_t i = find(code);
    return i < 0 || !error_map[i].transport ? JSONRPC_TRANSPORT : error_map[i].transport;
}
