/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Listen addresses: parsing, resolution and binding, one rule for every listener (net.h).
 */
#include "net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>

int obx_net_parse_hostport(const char *what, const char *addr, char **ret_host, int *ret_port,
                           struct obx_error *err)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    int64_t port;
    if (!colon || obx_parse_int64(colon + 1, 0, 65535, &port) < 0)
        return obx_error_set(err, EINVAL, "",
                             "%s=%s: expected HOST:PORT, [IPv6]:PORT or :PORT (port 0..65535)",
                             what, addr ? addr : "");
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
        struct in6_addr a6;
        char tmp[INET6_ADDRSTRLEN + 16] = "";
        if (hlen < sizeof(tmp))
            memcpy(tmp, h, hlen);
        if (hlen >= sizeof(tmp) || inet_pton(AF_INET6, tmp, &a6) != 1)
            return obx_error_set(err, EINVAL, "",
                                 "%s=%s: the part in brackets is not an IPv6 address", what, addr);
    } else if (memchr(h, ':', hlen) || memchr(h, '[', hlen) || memchr(h, ']', hlen)) {
        return obx_error_set(err, EINVAL, "",
                             "%s=%s: write an IPv6 address in brackets, e.g. [::1]:%lld", what,
                             addr, (long long)port);
    }
    *ret_host = obx_xstrndup(h, hlen);
    *ret_port = (int)port;
    return 0;
}

static bool ipv6_works(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

int obx_net_resolve_listen(const char *host, int port, struct obx_sockaddr *out, size_t max,
                           struct obx_error *err)
{
    if (max == 0)
        return obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "no room for an address");
    if (obx_str_empty(host)) {
        memset(&out[0], 0, sizeof(out[0]));
        if (ipv6_works()) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&out[0].ss;
            a->sin6_family = AF_INET6;
            a->sin6_addr = in6addr_any;
            a->sin6_port = htons((uint16_t)port);
            out[0].len = sizeof(*a);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&out[0].ss;
            a->sin_family = AF_INET;
            a->sin_addr.s_addr = htonl(INADDR_ANY);
            a->sin_port = htons((uint16_t)port);
            out[0].len = sizeof(*a);
        }
        return 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int e = getaddrinfo(host, portstr, &hints, &res);
    if (e != 0)
        return obx_error_set(err, e == EAI_SYSTEM ? errno : ENOENT, OBX_ERR_INTERNAL,
                             "cannot resolve %s: %s", host,
                             e == EAI_SYSTEM ? strerror(errno) : gai_strerror(e));
    size_t n = 0;
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(out[0].ss))
            continue;
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = out[i].len == ai->ai_addrlen && memcmp(&out[i].ss, ai->ai_addr, out[i].len) == 0;
        if (dup)
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
        out[n].len = (socklen_t)ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    if (n == 0)
        return obx_error_set(err, ENOENT, OBX_ERR_INTERNAL, "%s has no IPv4 or IPv6 address", host);
    return (int)n;
}

void obx_net_set_port(struct obx_sockaddr *a, int port)
{
    if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
}

int obx_net_port(const struct obx_sockaddr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

void obx_net_format(const struct obx_sockaddr *a, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%d", ip, obx_net_port(a));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, ip, sizeof(ip));
        snprintf(buf, size, "%s:%d", ip, obx_net_port(a));
    }
}

static int listen_one(struct obx_sockaddr *a, bool wildcard, int backlog, struct obx_error *err)
{
    char where[INET6_ADDRSTRLEN + 16];
    obx_net_format(a, where, sizeof(where));
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot listen on %s: %s", where,
                             strerror(errno));
    int one = 1, zero = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* The IPv6 wildcard takes IPv4 too (":PORT" means every interface); a named IPv6 address
     * is that address only. */
    if (a->ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, wildcard ? &zero : &one, sizeof(int));
    if (bind(fd, (struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return obx_error_set(err, e, OBX_ERR_INTERNAL, "cannot listen on %s: %s", where,
                             e == EADDRINUSE ? "the address is in use" : strerror(e));
    }
    socklen_t len = sizeof(a->ss);
    if (getsockname(fd, (struct sockaddr *)&a->ss, &len) == 0)
        a->len = len;
    return fd;
}

int obx_net_listen(const char *host, int port, int backlog, int *fds, struct obx_sockaddr *addrs,
                   size_t max, struct obx_error *err)
{
    int n = obx_net_resolve_listen(host, port, addrs, max, err);
    if (n < 0)
        return n;
    bool wildcard = obx_str_empty(host);
    for (int i = 0; i < n; i++) {
        if (i > 0 && port == 0)
            obx_net_set_port(&addrs[i], obx_net_port(&addrs[0]));
        int fd = listen_one(&addrs[i], wildcard, backlog, err);
        if (fd < 0) {
            for (int j = 0; j < i; j++)
                close(fds[j]);
            return fd;
        }
        fds[i] = fd;
    }
    return n;
}

bool obx_net_host_is_loopback(const char *host)
{
    if (obx_str_empty(host))
        return false;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a) == 1)
        return (ntohl(a.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}
