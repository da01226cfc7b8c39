/* SPDX-License-Identifier: Apache-2.0 */
/* The answers of the sessions and files API (sessions-api.h). Pure functions. */
#include "sessions-api.h"

#include <ctype.h>

#include "clock.h"

int obx_sessions_api_status(const char *code)
{
    return obx_error_http_status(code, 502);
}

json_t *obx_sessions_api_error(const struct obx_error *err, int *ret_status)
{
    const char *code = err->code[0] ? err->code : OBX_ERR_EXECUTION_FAILED;
    *ret_status = obx_sessions_api_status(code);
    return json_pack("{s:s, s:s}", "error", err->message[0] ? err->message : "the call failed",
                     "code", code);
}

static json_t *time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[40];
    obx_time_rfc3339(ms, buf);
    return json_string(buf);
}

json_t *obx_sessions_api_session(const char *user_id, const char *worker, const json_t *info,
                                 const char *status)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s}", "session_id", user_id, "worker", worker, "status", status);
    if (info) {
        int64_t lease = obx_json_get_int(info, "lease_expires_unix_ms", 0);
        json_object_set_new(j, "created_at",
                            time_or_null(obx_json_get_int(info, "created_unix_ms", 0)));
        json_object_set_new(j, "last_used_at",
                            time_or_null(obx_json_get_int(info, "last_used_unix_ms", 0)));
        json_object_set_new(j, "lease_expires_at", time_or_null(lease));
        json_object_set_new(j, "lease_expires_unix_ms", json_integer(lease));
        json_object_set_new(j, "busy", json_boolean(obx_json_get_bool(info, "busy", false)));
    }
    return j;
}

const char *obx_sessions_api_content_type(const char *mime)
{
    static const char *const known[] = {
        "image/png",       "image/jpeg",      "image/gif",        "image/webp",
        "image/bmp",       "image/tiff",      "image/x-icon",     "image/svg+xml",
        "application/pdf", "application/zip", "application/gzip",
    };
    if (obx_streq(mime, "text/plain"))
        return "text/plain; charset=utf-8";
    for (size_t i = 0; i < OBX_ARRAY_SIZE(known); i++)
        if (obx_streq(mime, known[i]))
            return known[i];
    return "application/octet-stream";
}

char *obx_sessions_api_content_disposition(const char *path)
{
    const char *name = strrchr(path, '/');
    name = name && name[1] ? name + 1 : path;
    size_t n = strlen(name);
    _cleanup_free_ char *ascii = obx_xmalloc(n + 1);
    _cleanup_free_ char *enc = obx_xmalloc(3 * n + 1);
    size_t e = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        ascii[i] = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? (char)ch : '_';
        if (isalnum(ch) || strchr("!#$&+-.^_`|~", ch))
            enc[e++] = (char)ch;
        else
            e += (size_t)snprintf(enc + e, 4, "%%%02X", ch);
    }
    ascii[n] = '\0';
    enc[e] = '\0';
    return obx_xasprintf("attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii, enc);
}

bool obx_sessions_api_id_valid(const char *sid)
{
    size_t n = strlen(sid);
    bool ok = n > 0 && n <= 128;
    for (size_t i = 0; ok && i < n; i++)
        ok = sid[i] > 0x20 && sid[i] < 0x7f;
    return ok;
}
