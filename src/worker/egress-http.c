/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress proxy's side of HTTP: parsing what a box's client sends (CONNECT host:port, or a
 * request for an absolute http:// URL), rewriting a plain request for the destination, and the
 * short answers that refuse one. Only the head is ever parsed; bodies and tunnels are relayed as
 * bytes. A plain request is sent on with "Connection: close", so each proxy connection carries
 * one request to one destination, and with the Host header set from the URL it was checked
 * against (a different Host would ask the same server for another site). Pure; any thread.
 */
#include "egress-internal.h"

#include <strings.h>

#include "common/buf.h"

/* Headers that concern the hop to the proxy, not the destination (and Host, set from the URL). */
static const char *const dropped_headers[] = {
    "host",       "connection",          "proxy-connection",
    "keep-alive", "proxy-authorization", "proxy-authenticate",
    "upgrade",
};

static int fail(char *why, size_t size, int status, const char *fmt, ...) OBX_PRINTF(4, 5);

static int fail(char *why, size_t size, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return status;
}

/* Offset just past the blank line that ends the head, or 0 when there is none yet. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* "host:port" or "[v6]:port" (the port optional when def_port is non-zero) into ret. */
static int parse_authority(const char *s, size_t n, uint16_t def_port,
                           struct obx_egress_request *ret, char *why, size_t size)
{
    const char *host = s, *port = NULL;
    size_t host_len = n;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return fail(why, size, 400, "bad proxy request: unclosed [ in the host");
        host = s + 1;
        host_len = (size_t)(close - s - 1);
        if (close + 1 < s + n) {
            if (close[1] != ':')
                return fail(why, size, 400, "bad proxy request: junk after ] in the host");
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon && memchr(colon + 1, ':', (size_t)(s + n - colon - 1)))
            return fail(why, size, 400,
                        "bad proxy request: an IPv6 address must be in brackets ([::1]:443)");
        if (colon) {
            host_len = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    if (host_len == 0 || host_len >= sizeof(ret->host))
        return fail(why, size, 400, "bad proxy request: %s host name",
                    host_len ? "an over-long" : "no");
    memcpy(ret->host, host, host_len);
    ret->host[host_len] = '\0';
    if (port) {
        size_t plen = (size_t)(s + n - port);
        char num[8];
        int64_t v;
        if (plen == 0 || plen >= sizeof(num))
            return fail(why, size, 400, "bad proxy request: invalid port");
        memcpy(num, port, plen);
        num[plen] = '\0';
        if (obx_parse_int64(num, 1, 65535, &v) < 0)
            return fail(why, size, 400, "bad proxy request: invalid port %s", num);
        ret->port = (uint16_t)v;
    } else if (def_port) {
        ret->port = def_port;
    } else {
        return fail(why, size, 400, "bad proxy request: CONNECT needs host:port");
    }
    char hwhy[160];
    int r = obx_egress_host_normalize(ret->host, hwhy, sizeof(hwhy));
    if (r < 0)
        return fail(why, size, 400, "bad proxy request: %s", hwhy);
    ret->is_ip = r == 1;
    return 0;
}

static bool dropped(const char *name, size_t n)
{
    for (size_t i = 0; i < OBX_ARRAY_SIZE(dropped_headers); i++)
        if (strlen(dropped_headers[i]) == n && strncasecmp(dropped_headers[i], name, n) == 0)
            return true;
    return false;
}

/* The head sent upstream for a plain request: origin-form target, the client's end-to-end
 * headers, our Host and Connection. lines points at the first header line; end at the blank
 * line. */
static int build_forward(struct obx_egress_request *ret, const char *path, size_t path_len,
                         const char *version, const char *lines, const char *end, char *why,
                         size_t size)
{
    struct obx_buf b = OBX_BUF_INIT(OBX_EGRESS_HEAD_MAX + 1024);
    bool v6 = strchr(ret->host, ':') != NULL;
    int r = obx_buf_appendf(&b, "%s %.*s %s\r\n", ret->method, (int)path_len, path, version);
    for (const char *l = lines; r >= 0 && l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t n = (size_t)(nl - l);
        if (n > 0 && l[n - 1] == '\r')
            n--;
        if (n == 0)
            break;
        const char *colon = memchr(l, ':', n);
        if (!colon || colon == l || l[0] == ' ' || l[0] == '\t' || memchr(l, '\r', n)) {
            obx_buf_free(&b);
            return fail(why, size, 400, "bad proxy request: malformed header line");
        }
        if (!dropped(l, (size_t)(colon - l))) {
            r = obx_buf_append(&b, l, n);
            if (r >= 0)
                r = obx_buf_append(&b, "\r\n", 2);
        }
        l = nl + 1;
    }
    if (r >= 0)
        r = obx_buf_appendf(&b, "Host: %s%s%s", v6 ? "[" : "", ret->host, v6 ? "]" : "");
    if (r >= 0 && ret->port != 80)
        r = obx_buf_appendf(&b, ":%u", (unsigned)ret->port);
    if (r >= 0)
        r = obx_buf_append(&b, "\r\nConnection: close\r\n\r\n", 23);
    if (r < 0) {
        obx_buf_free(&b);
        return fail(why, size, 431, "the request head is longer than %d bytes",
                    OBX_EGRESS_HEAD_MAX);
    }
    ret->forward = obx_buf_steal(&b, &ret->forward_len);
    return 0;
}

int obx_egress_request_parse(const char *buf, size_t len, struct obx_egress_request *ret, char *why,
                             size_t size)
{
    memset(ret, 0, sizeof(*ret));
    size_t end = head_end(buf, OBX_MIN(len, (size_t)OBX_EGRESS_HEAD_MAX));
    if (!end)
        return len >= OBX_EGRESS_HEAD_MAX
                   ? fail(why, size, 431, "the request head is longer than %d bytes",
                          OBX_EGRESS_HEAD_MAX)
                   : -EAGAIN;
    if (memchr(buf, '\0', end))
        return fail(why, size, 400, "bad proxy request: a NUL byte in the head");
    ret->head_len = end;
    const char *nl = memchr(buf, '\n', end);
    size_t line_len = (size_t)(nl - buf);
    if (line_len > 0 && buf[line_len - 1] == '\r')
        line_len--;
    /* METHOD SP target SP HTTP/1.x */
    const char *sp1 = memchr(buf, ' ', line_len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - buf)) : NULL;
    if (!sp1 || !sp2 || sp1 == buf || sp2 == sp1 + 1 || (size_t)(sp1 - buf) >= sizeof(ret->method))
        return fail(why, size, 400, "bad proxy request: not an HTTP request line");
    memcpy(ret->method, buf, (size_t)(sp1 - buf));
    for (const char *m = ret->method; *m; m++)
        if (!((*m >= 'A' && *m <= 'Z') || *m == '-' || *m == '_'))
            return fail(why, size, 400, "bad proxy request: not an HTTP method");
    char version[16];
    size_t vlen = line_len - (size_t)(sp2 + 1 - buf);
    if (vlen >= sizeof(version))
        return fail(why, size, 400, "bad proxy request: not an HTTP request line");
    memcpy(version, sp2 + 1, vlen);
    version[vlen] = '\0';
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return fail(why, size, 400, "bad proxy request: only HTTP/1.0 and HTTP/1.1 are spoken");
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);

    if (strcmp(ret->method, "CONNECT") == 0) {
        ret->connect = true;
        return parse_authority(target, tlen, 0, ret, why, size);
    }
    if (tlen >= 8 && strncasecmp(target, "https://", 8) == 0)
        return fail(why, size, 400,
                    "an https:// URL goes through CONNECT: set HTTPS_PROXY, not a plain request");
    if (tlen < 7 || strncasecmp(target, "http://", 7) != 0)
        return fail(why, size, 400,
                    "this is the box's egress proxy: ask for an absolute URL (GET "
                    "http://host/path) or CONNECT host:port");
    const char *auth = target + 7;
    size_t alen = 0;
    while (alen < tlen - 7 && !strchr("/?#", auth[alen]))
        alen++;
    if (memchr(auth, '@', alen))
        return fail(why, size, 400, "bad proxy request: user:password in a URL is not supported");
    int r = parse_authority(auth, alen, 80, ret, why, size);
    if (r != 0)
        return r;
    const char *path = auth + alen;
    size_t path_len = (size_t)(sp2 - path);
    const char *hash = memchr(path, '#', path_len);
    if (hash)
        path_len = (size_t)(hash - path);
    char slash_path[2] = "/";
    if (path_len == 0) {
        path = slash_path;
        path_len = 1;
    } else if (path[0] == '?') {
        /* "http://host?q" asks for "/?q" */
        _cleanup_free_ char *p = obx_xasprintf("/%.*s", (int)path_len, path);
        return build_forward(ret, p, path_len + 1, version, nl + 1, buf + end, why, size);
    }
    return build_forward(ret, path, path_len, version, nl + 1, buf + end, why, size);
}

static const char *status_text(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 408:
        return "Request Timeout";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

char *obx_egress_answer(int status, const char *why, size_t *ret_len)
{
    /* The reason phrase may hold any visible character; why never holds CR or LF (it is built
     * from checked host names and our own words), but make sure. */
    char phrase[OBX_EGRESS_WHY_MAX];
    snprintf(phrase, sizeof(phrase), "%s", why && *why ? why : status_text(status));
    for (char *p = phrase; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    char *s = obx_xasprintf("HTTP/1.1 %d %s\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n"
                            "Content-Length: %zu\r\n"
                            "Connection: close\r\n"
                            "Proxy-Agent: onlyboxes\r\n"
                            "\r\n"
                            "%s\n",
                            status, phrase, strlen(phrase) + 1, phrase);
    *ret_len = strlen(s);
    return s;
}
