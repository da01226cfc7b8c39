/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON-RPC 2.0 framing for the MCP server: parsing with the size, UTF-8 and depth limits,
 * classifying a message as request, notification, client response or invalid, and building
 * responses, errors and notifications. Pure functions; any thread.
 */
#include "mcp-internal.h"

#include <stdarg.h>

#include "common/utf8.h"

json_t *obx_rpc_parse(const char *text, size_t len, json_t **ret_error)
{
    *ret_error = NULL;
    if (len > OBX_MCP_MAX_MESSAGE) {
        *ret_error =
            obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                          "invalid request: message larger than %u bytes", OBX_MCP_MAX_MESSAGE);
        return NULL;
    }
    if (!obx_utf8_valid(text, len)) {
        *ret_error = obx_rpc_error(NULL, OBX_RPC_PARSE_ERROR, "parse error: invalid UTF-8");
        return NULL;
    }
    struct obx_error err = OBX_ERROR_INIT;
    json_t *j = obx_json_parse(text, len, &err);
    if (!j)
        *ret_error = obx_rpc_error(NULL, OBX_RPC_PARSE_ERROR, "parse error: %s", err.message);
    return j;
}

static bool id_valid(const json_t *id)
{
    return json_is_string(id) || json_is_integer(id);
}

enum obx_rpc_kind obx_rpc_classify(json_t *msg, struct obx_rpc_msg *ret_msg, json_t **ret_error)
{
    *ret_error = NULL;
    memset(ret_msg, 0, sizeof(*ret_msg));
    if (!json_is_object(msg)) {
        *ret_error = obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                                   "invalid request: a message must be a JSON object");
        return OBX_RPC_INVALID;
    }
    json_t *method = json_object_get(msg, "method");
    json_t *id = json_object_get(msg, "id");
    json_t *reply_id = id_valid(id) ? id : NULL;

    if (!method) {
        /* A response to a request we never send; nothing to do with it. */
        if (json_object_get(msg, "result") || json_object_get(msg, "error"))
            return OBX_RPC_RESPONSE;
        *ret_error = obx_rpc_error(reply_id, OBX_RPC_INVALID_REQUEST,
                                   "invalid request: \"method\" is required");
        return OBX_RPC_INVALID;
    }
    if (!obx_streq(json_string_value(json_object_get(msg, "jsonrpc")), "2.0")) {
        *ret_error = obx_rpc_error(reply_id, OBX_RPC_INVALID_REQUEST,
                                   "invalid request: \"jsonrpc\" must be \"2.0\"");
        return OBX_RPC_INVALID;
    }
    if (!json_is_string(method)) {
        *ret_error = obx_rpc_error(reply_id, OBX_RPC_INVALID_REQUEST,
                                   "invalid request: \"method\" must be a string");
        return OBX_RPC_INVALID;
    }
    if (id && !id_valid(id)) {
        *ret_error = obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                                   "invalid request: \"id\" must be a string or an integer");
        return OBX_RPC_INVALID;
    }
    ret_msg->method = json_string_value(method);
    ret_msg->id = id;
    json_t *params = json_object_get(msg, "params");
    ret_msg->params = json_is_null(params) ? NULL : params;
    return id ? OBX_RPC_REQUEST : OBX_RPC_NOTIFICATION;
}

json_t *obx_rpc_result(json_t *id, json_t *result)
{
    json_t *r = json_object();
    json_object_set_new(r, "jsonrpc", json_string("2.0"));
    json_object_set(r, "id", id ? id : json_null());
    json_object_set_new(r, "result", result ? result : json_object());
    return r;
}

json_t *obx_rpc_error(json_t *id, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = obx_xvasprintf(fmt, ap);
    va_end(ap);
    json_t *e = json_object();
    json_object_set_new(e, "code", json_integer(code));
    json_object_set_new(e, "message", obx_json_string_bytes(text, strlen(text)));
    free(text);
    json_t *r = json_object();
    json_object_set_new(r, "jsonrpc", json_string("2.0"));
    json_object_set(r, "id", id ? id : json_null());
    json_object_set_new(r, "error", e);
    return r;
}

json_t *obx_rpc_notification(const char *method, json_t *params)
{
    json_t *r = json_object();
    json_object_set_new(r, "jsonrpc", json_string("2.0"));
    json_object_set_new(r, "method", json_string(method));
    if (params)
        json_object_set_new(r, "params", params);
    return r;
}

bool obx_rpc_id_equal(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return false;
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_string(a) && json_is_string(b))
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    return false;
}
