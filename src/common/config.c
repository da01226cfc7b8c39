/* SPDX-License-Identifier: Apache-2.0 */
/* The table-driven configuration reader; see config.h. */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <strings.h>

static bool usable(const char *s, const struct obx_config_var *v)
{
    return s && (*s || (v->type == OBX_CONFIG_STR && (v->flags & OBX_CONFIG_EMPTY)));
}

const char *obx_config_source(const struct obx_config_var *v)
{
    if (usable(getenv(v->name), v))
        return v->name;
    if (v->alias && usable(getenv(v->alias), v))
        return v->alias;
    return NULL;
}

static void store_int(void *field, size_t size, int64_t v)
{
    switch (size) {
    case 1: {
        int8_t x = (int8_t)v;
        memcpy(field, &x, 1);
        break;
    }
    case 2: {
        int16_t x = (int16_t)v;
        memcpy(field, &x, 2);
        break;
    }
    case 4: {
        int32_t x = (int32_t)v;
        memcpy(field, &x, 4);
        break;
    }
    default:
        memcpy(field, &v, sizeof(v));
        break;
    }
}

static int64_t load_int(const void *field, size_t size)
{
    switch (size) {
    case 1:
        return *(const int8_t *)field;
    case 2: {
        int16_t x;
        memcpy(&x, field, 2);
        return x;
    }
    case 4: {
        int32_t x;
        memcpy(&x, field, 4);
        return x;
    }
    default: {
        int64_t x;
        memcpy(&x, field, sizeof(x));
        return x;
    }
    }
}

static int64_t scale_of(const struct obx_config_var *v)
{
    return v->scale ? v->scale : 1;
}

/* "a, b or c" */
static void choice_list(const struct obx_config_var *v, char *buf, size_t size)
{
    size_t len = 0, count = 0;
    buf[0] = '\0';
    while (v->choices[count])
        count++;
    for (size_t i = 0; i < count && len < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
        int k = snprintf(buf + len, size - len, "%s%s", sep, v->choices[i]);
        if (k < 0)
            break;
        len += (size_t)k;
    }
}

static char *trimmed_copy(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return n ? obx_xstrndup(s, n) : NULL;
}

/* What a value must be, for an error message and --help. */
static void expectation(const struct obx_config_var *v, char *buf, size_t size)
{
    switch (v->type) {
    case OBX_CONFIG_INT:
        snprintf(buf, size, "a whole number from %lld to %lld", (long long)v->min,
                 (long long)v->max);
        break;
    case OBX_CONFIG_DECIMAL:
        snprintf(buf, size, "a number from %lld to %lld", (long long)v->min, (long long)v->max);
        break;
    case OBX_CONFIG_BOOL:
        snprintf(buf, size, "true or false");
        break;
    case OBX_CONFIG_CHOICE:
        choice_list(v, buf, size);
        break;
    case OBX_CONFIG_STR:
        snprintf(buf, size, "a value");
        break;
    }
}

static int parse_decimal(const char *s, const struct obx_config_var *v, int64_t *ret)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(d) || d < (double)v->min || d > (double)v->max)
        return -EINVAL;
    *ret = llround(d * (double)scale_of(v));
    return 0;
}

static int parse_choice(const char *s, const struct obx_config_var *v, int64_t *ret)
{
    for (int64_t i = 0; v->choices[i]; i++)
        if (strcasecmp(s, v->choices[i]) == 0) {
            *ret = i;
            return 0;
        }
    return -EINVAL;
}

/* Parses s (from the variable src) into v's field of cfg. */
static int read_one(const struct obx_config_var *v, const char *src, const char *s, void *cfg,
                    struct obx_error *err)
{
    void *field = (char *)cfg + v->offset;
    int64_t n = 0;
    bool b = false;
    int r = 0;
    switch (v->type) {
    case OBX_CONFIG_STR:
        if (v->flags & OBX_CONFIG_COPY) {
            char **slot = field;
            free(*slot);
            *slot = trimmed_copy(s);
            if (!*slot && (v->flags & OBX_CONFIG_REQUIRED))
                return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s is required (%s)",
                                     v->name, v->help);
        } else {
            *(const char **)field = s;
        }
        return 0;
    case OBX_CONFIG_INT:
        r = obx_parse_int64(s, v->min, v->max, &n);
        n *= scale_of(v);
        break;
    case OBX_CONFIG_DECIMAL:
        r = parse_decimal(s, v, &n);
        break;
    case OBX_CONFIG_BOOL:
        r = obx_parse_bool(s, &b);
        n = b;
        break;
    case OBX_CONFIG_CHOICE:
        r = parse_choice(s, v, &n);
        break;
    }
    if (r < 0) {
        char what[256];
        expectation(v, what, sizeof(what));
        if (!src) /* a default that does not parse: the table is wrong */
            return obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "%s: bad default '%s'", v->name, s);
        if (v->flags & OBX_CONFIG_SECRET)
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "%s is invalid: expected %s (%s)", src, what, v->help);
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s=%s is invalid: expected %s (%s)", src, s, what, v->help);
    }
    if (v->type == OBX_CONFIG_BOOL)
        *(bool *)field = b;
    else
        store_int(field, v->size, n);
    return 0;
}

int obx_config_read(const struct obx_config_var *vars, size_t n, void *cfg, struct obx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct obx_config_var *v = &vars[i];
        const char *src = obx_config_source(v);
        const char *s = src ? getenv(src) : v->def;
        if (!src && (v->flags & OBX_CONFIG_REQUIRED))
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s is required (%s)",
                                 v->name, v->help);
        if (!s)
            continue; /* no default: the field keeps what the caller put there */
        int r = read_one(v, src, s, cfg, err);
        if (r < 0)
            return r;
    }
    return 0;
}

void obx_config_free(const struct obx_config_var *vars, size_t n, void *cfg)
{
    for (size_t i = 0; i < n; i++) {
        const struct obx_config_var *v = &vars[i];
        if (v->type != OBX_CONFIG_STR || !(v->flags & OBX_CONFIG_COPY))
            continue;
        char **slot = (char **)((char *)cfg + v->offset);
        if (*slot && (v->flags & OBX_CONFIG_SECRET))
            explicit_bzero(*slot, strlen(*slot));
        free(*slot);
        *slot = NULL;
    }
}

/* Writes text wrapped to 100 columns, each line after the first indented by indent. */
static void wrap(FILE *f, const char *text, size_t col, size_t indent)
{
    const size_t width = 100;
    const char *p = text;
    while (*p) {
        size_t word = strcspn(p, " ");
        if (col > indent && col + 1 + word > width) {
            fprintf(f, "\n%*s", (int)indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, word, f);
        col += word;
        p += word;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}

void obx_config_help(FILE *f, const struct obx_config_var *vars, size_t n)
{
    const size_t indent = 34;
    for (size_t i = 0; i < n; i++) {
        const struct obx_config_var *v = &vars[i];
        if (v->flags & OBX_CONFIG_HIDDEN)
            continue;
        char text[1024], what[256] = "";
        if (v->type == OBX_CONFIG_INT || v->type == OBX_CONFIG_DECIMAL)
            snprintf(what, sizeof(what), ", %lld to %lld", (long long)v->min, (long long)v->max);
        else if (v->type == OBX_CONFIG_CHOICE) {
            memcpy(what, ": ", 2);
            choice_list(v, what + 2, sizeof(what) - 2);
        }
        if (v->flags & OBX_CONFIG_REQUIRED)
            snprintf(text, sizeof(text), "%s (required)", v->help);
        else if (!obx_str_empty(v->def))
            snprintf(text, sizeof(text), "%s (default %s%s)", v->help, v->def, what);
        else if (what[0])
            snprintf(text, sizeof(text), "%s (%s)", v->help, what + 2);
        else
            snprintf(text, sizeof(text), "%s", v->help);
        if (v->alias) {
            size_t len = strlen(text);
            snprintf(text + len, sizeof(text) - len, "; also %s", v->alias);
        }
        size_t name_len = strlen(v->name) + 2;
        fprintf(f, "  %s", v->name);
        if (name_len + 1 > indent) {
            fprintf(f, "\n%*s", (int)indent, "");
        } else {
            fprintf(f, "%*s", (int)(indent - name_len), "");
        }
        wrap(f, text, indent, indent);
    }
}

void obx_config_print(FILE *f, const struct obx_config_var *vars, size_t n, const void *cfg)
{
    for (size_t i = 0; i < n; i++) {
        const struct obx_config_var *v = &vars[i];
        const void *field = (const char *)cfg + v->offset;
        const char *src = obx_config_source(v);
        char value[512];
        switch (v->type) {
        case OBX_CONFIG_STR: {
            const char *s = *(const char *const *)field;
            if (v->flags & OBX_CONFIG_SECRET)
                snprintf(value, sizeof(value), "%s", obx_str_empty(s) ? "(not set)" : "(set)");
            else
                snprintf(value, sizeof(value), "%.300s%s", s ? s : "",
                         s && strlen(s) > 300 ? "..." : "");
            break;
        }
        case OBX_CONFIG_INT:
            snprintf(value, sizeof(value), "%lld",
                     (long long)(load_int(field, v->size) / scale_of(v)));
            break;
        case OBX_CONFIG_DECIMAL:
            snprintf(value, sizeof(value), "%g",
                     (double)load_int(field, v->size) / (double)scale_of(v));
            break;
        case OBX_CONFIG_BOOL:
            snprintf(value, sizeof(value), "%s", *(const bool *)field ? "true" : "false");
            break;
        case OBX_CONFIG_CHOICE: {
            int64_t k = load_int(field, v->size);
            snprintf(value, sizeof(value), "%s", v->choices[k]);
            break;
        }
        }
        char origin[128] = "(default)";
        if (src && src != v->name)
            snprintf(origin, sizeof(origin), "(from %s)", src);
        else if (src)
            origin[0] = '\0';
        fprintf(f, "  %s=%s%s%s\n", v->name, value, origin[0] ? "  " : "", origin);
    }
}
