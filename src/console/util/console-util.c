/* SPDX-License-Identifier: Apache-2.0 */
/* Pure helpers of the console; see console-util.h. */
#include "console-util.h"

#include "common/utf8.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <strings.h>
#include <time.h>

bool obx_console_is_space(uint32_t cp)
{
    switch (cp) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

char *obx_console_trim(const char *s)
{
    size_t len = strlen(s), start = 0, end = 0, i = 0;
    bool seen = false;
    while (i < len) {
        size_t n;
        uint32_t cp = obx_utf8_next(s + i, len - i, &n);
        if (!obx_console_is_space(cp)) {
            if (!seen)
                start = i;
            seen = true;
            end = i + n;
        }
        i += n;
    }
    return seen ? obx_xstrndup(s + start, end - start) : obx_xstrdup("");
}

bool obx_console_has_space(const char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0, n; i < len; i += n)
        if (obx_console_is_space(obx_utf8_next(s + i, len - i, &n)))
            return true;
    return false;
}

char *obx_console_lower(const char *s)
{
    char *out = obx_xstrdup(s);
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

void obx_console_token_mask(const char *token, char *out, size_t size)
{
    size_t len = strlen(token), pos = 0;
    if (size == 0)
        return;
#define PUT(c)                \
    do {                      \
        if (pos + 1 < size)   \
            out[pos++] = (c); \
    } while (0)
    if (len <= 8) {
        for (size_t i = 0; i < len; i++)
            PUT('*');
    } else {
        size_t stars = OBX_MAX(len - 8, (size_t)6);
        for (size_t i = 0; i < 4; i++)
            PUT(token[i]);
        for (size_t i = 0; i < stars; i++)
            PUT('*');
        for (size_t i = len - 4; i < len; i++)
            PUT(token[i]);
    }
#undef PUT
    out[pos] = '\0';
}

int obx_console_cookie_value(const char *header, const char *name, char *out, size_t size)
{
    if (!header)
        return -ENOENT;
    size_t nlen = strlen(name);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = plen - nlen - 1;
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            if (vlen + 1 > size)
                return -E2BIG;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 0;
        }
        p += plen;
    }
    return -ENOENT;
}

int obx_console_parse_page_param(const char *s, int64_t def, int64_t max, int64_t *ret)
{
    if (!s) {
        *ret = def;
        return 0;
    }
    int64_t v;
    if (obx_parse_int64(s, 1, INT64_MAX, &v) < 0)
        return -EINVAL;
    *ret = OBX_MIN(v, max);
    return 0;
}

int obx_console_authority_host(const char *authority, char *out, size_t size)
{
    const char *h = authority, *end;
    if (*h == '[') {
        h++;
        end = strchr(h, ']');
        if (!end || (end[1] && end[1] != ':'))
            return -EINVAL;
    } else {
        end = strchrnul(h, ':');
    }
    size_t n = (size_t)(end - h);
    if (n == 0 || n >= size)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)h[i]);
    out[n] = '\0';
    return 0;
}

bool obx_console_accepts(const char *accept, const char *type)
{
    const char *slash = strchr(type, '/');
    size_t major = slash ? (size_t)(slash - type) : strlen(type);
    for (const char *p = accept; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",;");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if ((n == strlen(type) && strncasecmp(p, type, n) == 0) ||
            (n == 3 && !strncmp(p, "*/*", 3)) ||
            (n == major + 2 && strncasecmp(p, type, major + 1) == 0 && p[major + 1] == '*'))
            return true;
        p = strchr(p, ',');
    }
    return false;
}

void obx_console_format_http_date(int64_t unix_ms, char out[static 40])
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
