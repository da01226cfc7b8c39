/* SPDX-License-Identifier: Apache-2.0 */
/* jansson helpers; see json.h. */
#include "json.h"

#include "utf8.h"

/* Scans for nesting depth without parsing: brackets outside strings. */
static bool depth_ok(const char *s, size_t len, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return false;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

json_t *obx_json_parse(const char *text, size_t len, struct obx_error *err)
{
    if (!depth_ok(text, len, OBX_JSON_MAX_DEPTH)) {
        obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "JSON nesting deeper than %d levels",
                      OBX_JSON_MAX_DEPTH);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) {
        obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "invalid JSON at line %d column %d: %s",
                      je.line, je.column, je.text);
        return NULL;
    }
    return j;
}

char *obx_json_dumps(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ESCAPE_SLASH * 0);
    if (!s)
        abort();
    return s;
}

json_t *obx_json_string_bytes(const char *s, size_t len)
{
    if (obx_utf8_valid(s, len))
        return json_stringn_nocheck(s, len);
    size_t n;
    char *clean = obx_utf8_sanitize(s, len, &n);
    json_t *j = json_stringn_nocheck(clean, n);
    free(clean);
    return j;
}

const char *obx_json_get_str(const json_t *obj, const char *key, const char *def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

int64_t obx_json_get_int(const json_t *obj, const char *key, int64_t def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

bool obx_json_get_bool(const json_t *obj, const char *key, bool def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}
