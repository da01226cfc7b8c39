/* SPDX-License-Identifier: Apache-2.0 */
/* struct obx_error helpers. */
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

#define JSONRPC_INVALID_PARAMS (-32602)
#define JSONRPC_METHOD_NOT_FOUND (-32601)
#define JSONRPC_INTERNAL (-32603)

/* http_status 0: the caller's default (it depends on where the code arises: a worker's failure
 * answers 502 on a task, 503 at submit). */
static const struct {
    const char *code;
    int http_status;
    int jsonrpc;
} error_map[] = {
    {OBX_ERR_INVALID_PAYLOAD, 400, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_BAD_REQUEST, 400, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_UNAUTHENTICATED, 401, JSONRPC_INTERNAL},
    {OBX_ERR_FORBIDDEN, 403, JSONRPC_INTERNAL},
    {OBX_ERR_NOT_FOUND, 404, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_SESSION_NOT_FOUND, 404, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_FILE_NOT_FOUND, 0, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_METHOD_NOT_ALLOWED, 405, JSONRPC_METHOD_NOT_FOUND},
    {OBX_ERR_CONFLICT, 409, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_SESSION_BUSY, 409, JSONRPC_INTERNAL},
    {OBX_ERR_CANCELED, 409, JSONRPC_INTERNAL},
    {OBX_ERR_GONE, 410, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_PATH_IS_DIRECTORY, 0, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_FILE_TOO_LARGE, 0, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_PERMISSION_DENIED, 403, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_NOT_A_DIRECTORY, 409, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_DIRECTORY_NOT_EMPTY, 409, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_NO_SPACE, 507, JSONRPC_INTERNAL},
    {OBX_ERR_RATE_LIMITED, 429, JSONRPC_INTERNAL},
    {OBX_ERR_NO_CAPACITY, 429, JSONRPC_INTERNAL},
    {OBX_ERR_SESSION_CAPACITY, 429, JSONRPC_INTERNAL},
    {OBX_ERR_INTERNAL, 500, JSONRPC_INTERNAL},
    {OBX_ERR_EXECUTION_FAILED, 0, JSONRPC_INTERNAL},
    {OBX_ERR_BAD_GATEWAY, 502, JSONRPC_INTERNAL},
    {OBX_ERR_WORKER_LOST, 502, JSONRPC_INTERNAL},
    {OBX_ERR_UNSUPPORTED, 0, JSONRPC_INVALID_PARAMS},
    {OBX_ERR_NO_WORKER, 503, JSONRPC_INTERNAL},
    {OBX_ERR_SESSION_UNAVAILABLE, 503, JSONRPC_INTERNAL},
    {OBX_ERR_RUNTIME_UNAVAILABLE, 503, JSONRPC_INTERNAL},
    {OBX_ERR_UNAVAILABLE, 503, JSONRPC_INTERNAL},
    {OBX_ERR_TIMEOUT, 504, JSONRPC_INTERNAL},
    {OBX_ERR_DEADLINE_EXCEEDED, 504, JSONRPC_INTERNAL},
    {OBX_ERR_STORAGE_FULL, 507, JSONRPC_INTERNAL},
};

int obx_error_http_status(const char *code, int def)
{
    for (size_t i = 0; code && i < OBX_ARRAY_SIZE(error_map); i++)
        if (strcmp(code, error_map[i].code) == 0)
            return error_map[i].http_status ? error_map[i].http_status : def;
    return def;
}

int obx_error_jsonrpc_code(const char *code)
{
    for (size_t i = 0; code && i < OBX_ARRAY_SIZE(error_map); i++)
        if (strcmp(code, error_map[i].code) == 0)
            return error_map[i].jsonrpc;
    return JSONRPC_INTERNAL;
}
