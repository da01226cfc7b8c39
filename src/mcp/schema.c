/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small JSON Schema validator for the subset our tool schemas use, so that the schema a client
 * reads in tools/list is the same object we check arguments against. The messages name the field
 * and say what it must be, because a model reads them and corrects its call. Pure; any thread.
 */
#include "mcp-internal.h"

#include <stdarg.h>

#include "common/utf8.h"

static int fail(char *msg, size_t size, const char *fmt, ...) OBX_PRINTF(3, 4);

static int fail(char *msg, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, size, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static bool get_int(const json_t *schema, const char *key, json_int_t *ret)
{
    json_t *v = json_object_get(schema, key);
    if (json_is_integer(v)) {
        *ret = json_integer_value(v);
        return true;
    }
    return false;
}

static int check_string(const char *name, const json_t *schema, const json_t *v, bool not_blank,
                        char *msg, size_t size)
{
    json_int_t min = 0, max = 0;
    bool has_min = get_int(schema, "minLength", &min);
    bool has_max = get_int(schema, "maxLength", &max);
    char what[96] = "a string";
    if (has_min && has_max)
        snprintf(what, sizeof(what), "a string of %lld to %lld characters", (long long)min,
                 (long long)max);
    else if (has_max)
        snprintf(what, sizeof(what), "a string of at most %lld characters", (long long)max);
    else if (has_min)
        snprintf(what, sizeof(what), "a string of at least %lld characters", (long long)min);

    if (!json_is_string(v))
        return fail(msg, size, "\"%s\" must be %s", name, what);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    /* Everything behind a tool reads C strings: a NUL would silently cut the value short. */
    if (memchr(s, '\0', len))
        return fail(msg, size, "\"%s\" must not contain NUL characters", name);
    /* Blank before minLength: "must not be blank" says more than "at least 1 character". */
    if (not_blank) {
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++)
            blank = s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r');
        if (blank)
            return fail(msg, size, "\"%s\" must not be blank", name);
    }
    size_t chars = obx_utf8_count(s, len); /* JSON Schema counts characters */
    if ((has_min && (json_int_t)chars < min) || (has_max && (json_int_t)chars > max))
        return fail(msg, size, "\"%s\" must be %s", name, what);
    return 0;
}

/* Accepts integers and integral reals (JSON Schema counts 5.0 as an integer); the latter are
 * replaced by integers so later code reads them with json_integer_value(). */
static int check_integer(const char *name, const json_t *schema, json_t *parent, json_t *v,
                         char *msg, size_t size)
{
    json_int_t min = 0, max = 0;
    bool has_min = get_int(schema, "minimum", &min);
    bool has_max = get_int(schema, "maximum", &max);
    char what[96] = "an integer";
    if (has_min && has_max)
        snprintf(what, sizeof(what), "an integer between %lld and %lld", (long long)min,
                 (long long)max);
    else if (has_min)
        snprintf(what, sizeof(what), "an integer >= %lld", (long long)min);
    else if (has_max)
        snprintf(what, sizeof(what), "an integer <= %lld", (long long)max);

    json_int_t n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= -9.0e18 && d <= 9.0e18) || (double)(json_int_t)d != d)
            return fail(msg, size, "\"%s\" must be %s", name, what);
        n = (json_int_t)d;
        if (parent)
            json_object_set_new(parent, name, json_integer(n));
    } else {
        return fail(msg, size, "\"%s\" must be %s", name, what);
    }
    if ((has_min && n < min) || (has_max && n > max))
        return fail(msg, size, "\"%s\" must be %s", name, what);
    return 0;
}

static int check_number(const char *name, const json_t *schema, const json_t *v, char *msg,
                        size_t size)
{
    if (!json_is_number(v))
        return fail(msg, size, "\"%s\" must be a number", name);
    double d = json_number_value(v);
    json_t *min = json_object_get(schema, "minimum");
    json_t *max = json_object_get(schema, "maximum");
    if ((json_is_number(min) && d < json_number_value(min)) ||
        (json_is_number(max) && d > json_number_value(max)))
        return fail(msg, size, "\"%s\" is out of range", name);
    return 0;
}

static int check_value(const char *name, const json_t *schema, json_t *parent, json_t *v,
                       bool required, unsigned flags, char *msg, size_t size);

static int check_object(const char *name, const json_t *schema, json_t *obj, unsigned flags,
                        char *msg, size_t size)
{
    if (!json_is_object(obj))
        return name ? fail(msg, size, "\"%s\" must be an object", name)
                    : fail(msg, size, "arguments must be an object");
    json_t *props = json_object_get(schema, "properties");
    json_t *required = json_object_get(schema, "required");
    json_t *additional = json_object_get(schema, "additionalProperties");

    /* A null member means "not given": clients and models send it for optional arguments. */
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(obj, tmp, key, v)
    {
        if (json_is_null(v))
            json_object_del(obj, key);
    }
    if (json_is_false(additional)) {
        json_object_foreach(obj, key, v)
        {
            if (!json_object_get(props, key))
                return fail(msg, size, "unknown argument \"%s\"", key);
        }
    }
    size_t i;
    json_t *r;
    json_array_foreach(required, i, r)
    {
        if (json_is_string(r) && !json_object_get(obj, json_string_value(r)))
            return fail(msg, size, "\"%s\" is required", json_string_value(r));
    }
    json_t *ps;
    json_object_foreach(props, key, ps)
    {
        v = json_object_get(obj, key);
        if (!v) {
            json_t *def = json_object_get(ps, "default");
            if (def && (flags & OBX_SCHEMA_DEFAULTS))
                json_object_set_new(obj, key, json_deep_copy(def));
            continue;
        }
        bool is_required = false;
        json_array_foreach(required, i, r)
        {
            if (obx_streq(json_string_value(r), key))
                is_required = true;
        }
        int ret = check_value(key, ps, obj, v, is_required, flags, msg, size);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* "enum": v must equal one of the listed values; the message lists them as JSON. */
static int check_enum(const char *name, const json_t *choices, const json_t *v, char *msg,
                      size_t size)
{
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c)
    {
        if (json_equal(c, v))
            return 0;
    }
    char list[256] = "";
    size_t len = 0;
    json_array_foreach(choices, i, c)
    {
        _cleanup_free_ char *text = json_dumps(c, JSON_ENCODE_ANY | JSON_COMPACT);
        bool last = i + 1 == json_array_size(choices);
        int n = snprintf(list + len, sizeof(list) - len, "%s%s%s",
                         i == 0 ? ""
                         : last ? " or "
                                : ", ",
                         text ? text : "?", "");
        if (n < 0 || (size_t)n >= sizeof(list) - len)
            break;
        len += (size_t)n;
    }
    return fail(msg, size, "\"%s\" must be %s", name ? name : "value", list);
}

static int check_value(const char *name, const json_t *schema, json_t *parent, json_t *v,
                       bool required, unsigned flags, char *msg, size_t size)
{
    json_t *choices = json_object_get(schema, "enum");
    if (json_is_array(choices))
        return check_enum(name, choices, v, msg, size);
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (!type)
        return 0;
    if (obx_streq(type, "object"))
        return check_object(name, schema, v, flags, msg, size);
    if (!name)
        name = "value";
    if (obx_streq(type, "string"))
        return check_string(name, schema, v, required && (flags & OBX_SCHEMA_NOT_BLANK), msg, size);
    if (obx_streq(type, "integer"))
        return check_integer(name, schema, parent, v, msg, size);
    if (obx_streq(type, "number"))
        return check_number(name, schema, v, msg, size);
    if (obx_streq(type, "boolean"))
        return json_is_boolean(v) ? 0 : fail(msg, size, "\"%s\" must be a boolean", name);
    if (obx_streq(type, "array"))
        return json_is_array(v) ? 0 : fail(msg, size, "\"%s\" must be an array", name);
    return 0;
}

int obx_mcp_schema_validate(const json_t *schema, json_t *value, unsigned flags, char *msg,
                            size_t size)
{
    if (size)
        msg[0] = '\0';
    return check_value(NULL, schema, NULL, value, false, flags, msg, size);
}
