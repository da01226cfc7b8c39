/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dashboard's HTTP rules (web.h): response headers, asset lookup, If-None-Match,
 * Accept-Encoding and same-origin checks. Parsers here see what clients send: they read
 * bounded, NUL-terminated strings and never write outside their own small buffers.
 */
#include "web.h"

#include <ctype.h>
#include <strings.h>

/* No inline script or style anywhere, no plugin, no framing, fetches to this console only. */
const char *const obx_web_response_headers[][2] = {
    {"content-security-policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
     "form-action 'self'; frame-ancestors 'none'"},
    {"x-content-type-options", "nosniff"},
    {"referrer-policy", "no-referrer"},
    {"x-frame-options", "DENY"},
    {"cross-origin-opener-policy", "same-origin"},
    {NULL, NULL},
};

const struct obx_web_asset *obx_web_asset_find(const char *path)
{
    for (size_t i = 0; i < obx_web_assets_n; i++)
        if (strcmp(obx_web_assets[i].path, path) == 0)
            return &obx_web_assets[i];
    return NULL;
}

/* The next comma-separated element of a header list: its start in *ret and its length (without
 * surrounding blanks); advances *p. False at the end. */
static bool next_element(const char **p, const char **ret, size_t *ret_len)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',')
        s++;
    if (!*s)
        return false;
    const char *e = s;
    bool quoted = false;
    while (*e && (quoted || *e != ',')) {
        if (*e == '"')
            quoted = !quoted;
        e++;
    }
    *p = e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *ret = s;
    *ret_len = (size_t)(e - s);
    return true;
}

/* A q value of zero: "q=0", "q=0.", "q=0.000". */
static bool q_is_zero(const char *params, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (params[i] != ';')
            continue;
        size_t j = i + 1;
        while (j < len && (params[j] == ' ' || params[j] == '\t'))
            j++;
        if (j + 2 > len || tolower((unsigned char)params[j]) != 'q' || params[j + 1] != '=')
            continue;
        j += 2;
        if (j >= len || params[j] != '0')
            return false;
        for (j++; j < len && params[j] != ';'; j++)
            if (params[j] != '.' && params[j] != '0' && params[j] != ' ')
                return false;
        return true;
    }
    return false;
}

bool obx_web_accepts_gzip(const char *accept_encoding)
{
    const char *p = accept_encoding, *el;
    size_t len;
    bool star = false, gzip = false, gzip_zero = false;
    while (p && next_element(&p, &el, &len)) {
        size_t tok = strcspn(el, "; \t,");
        if (tok > len)
            tok = len;
        if ((tok == 4 && strncasecmp(el, "gzip", 4) == 0) ||
            (tok == 6 && strncasecmp(el, "x-gzip", 6) == 0)) {
            gzip = true;
            gzip_zero = q_is_zero(el + tok, len - tok);
        } else if (tok == 1 && el[0] == '*') {
            star = !q_is_zero(el + tok, len - tok);
        }
    }
    return gzip ? !gzip_zero : star;
}

static bool tag_equal(const char *el, size_t len, const char *etag)
{
    if (!etag)
        return false;
    if (len > 2 && el[0] == 'W' && el[1] == '/') {
        el += 2;
        len -= 2;
    }
    return strlen(etag) == len && memcmp(el, etag, len) == 0;
}

bool obx_web_etag_matches(const char *if_none_match, const char *etag, const char *etag2)
{
    const char *p = if_none_match, *el;
    size_t len;
    while (p && next_element(&p, &el, &len)) {
        if (len == 1 && el[0] == '*')
            return true;
        if (tag_equal(el, len, etag) || tag_equal(el, len, etag2))
            return true;
    }
    return false;
}

/* "host:port", "[v6]:port" or "host" into a lower-cased host (brackets kept) and a port (0 when
 * absent). False when malformed. */
static bool split_authority(const char *a, size_t len, char *host, size_t size, unsigned *port)
{
    const char *colon = NULL;
    if (len == 0)
        return false;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (!close)
            return false;
        size_t rest = len - (size_t)(close + 1 - a);
        if (rest && close[1] != ':')
            return false;
        colon = rest ? close + 1 : NULL;
    } else {
        colon = memchr(a, ':', len);
    }
    size_t hlen = colon ? (size_t)(colon - a) : len;
    if (hlen == 0 || hlen >= size)
        return false;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)a[i];
        if (!isalnum(c) && !strchr(".-_[]:", c))
            return false;
        host[i] = (char)tolower(c);
    }
    host[hlen] = '\0';
    *port = 0;
    if (colon) {
        size_t plen = len - hlen - 1;
        if (plen == 0 || plen > 5)
            return false;
        unsigned v = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)colon[1 + i]))
                return false;
            v = v * 10 + (unsigned)(colon[1 + i] - '0');
        }
        if (v == 0 || v > 65535)
            return false;
        *port = v;
    }
    return true;
}

bool obx_web_same_origin(const char *origin, const char *host)
{
    if (!origin || !host)
        return false;
    unsigned def;
    const char *a;
    if (strncasecmp(origin, "http://", 7) == 0) {
        def = 80;
        a = origin + 7;
    } else if (strncasecmp(origin, "https://", 8) == 0) {
        def = 443;
        a = origin + 8;
    } else {
        return false; /* "null", another scheme, garbage */
    }
    char oh[256], hh[256];
    unsigned op, hp;
    /* An origin is scheme://host[:port], nothing after it. */
    if (strpbrk(a, "/?#@ ") || !split_authority(a, strlen(a), oh, sizeof(oh), &op) ||
        !split_authority(host, strlen(host), hh, sizeof(hh), &hp))
        return false;
    return strcmp(oh, hh) == 0 && (op ? op : def) == (hp ? hp : def);
}
