/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 helpers; see utf8.h. */
#include "utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid sequence starting at s (at most len bytes), or 0 if it is invalid or
 * truncated. */
static size_t seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

uint32_t obx_utf8_next(const char *s, size_t len, size_t *ret_size)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = seq_len(u, len);
    if (n == 0) {
        *ret_size = 1;
        return 0xfffd;
    }
    *ret_size = n;
    if (n == 1)
        return u[0];
    uint32_t cp = u[0] & (0xff >> (n + 1));
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (u[i] & 0x3f);
    return cp;
}

size_t obx_utf8_count(const char *s, size_t len)
{
    size_t count = 0;
    for (size_t i = 0, n; i < len; i += n, count++)
        obx_utf8_next(s + i, len - i, &n);
    return count;
}

size_t obx_utf8_incomplete_tail(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = u[len - back];
        if ((c & 0xc0) == 0x80)
            continue;
        if (c < 0xc0)
            return 0;
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        return back < need ? back : 0;
    }
    return 0;
}

size_t obx_utf8_cut(const char *s, size_t len, size_t limit)
{
    if (limit >= len)
        return len;
    const unsigned char *u = (const unsigned char *)s;
    /* Step back over at most 3 continuation bytes to the start of the character at limit. */
    size_t n = limit;
    for (int i = 0; i < 4 && n > 0; i++) {
        if ((u[n] & 0xc0) != 0x80)
            break;
        n--;
    }
    if ((u[n] & 0xc0) == 0x80)
        return limit; /* not UTF-8 at all; any cut is as good as another */
    return n;
}

bool obx_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = seq_len(u + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

char *obx_utf8_sanitize(const char *s, size_t len, size_t *ret_len)
{
    const unsigned char *u = (const unsigned char *)s;
    /* Each invalid byte becomes 3 bytes at most. */
    char *out = malloc(len * 3 + 1);
    if (!out)
        abort();
    size_t o = 0, i = 0;
    while (i < len) {
        size_t n = seq_len(u + i, len - i);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0';
    if (ret_len)
        *ret_len = o;
    return out;
}
