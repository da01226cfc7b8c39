/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the egress proxy lets through: the operator's allow-list (host names and *.domain
 * wildcards, each for ports 80 and 443 or the one port it names), the test-only name pins of
 * ONLYBOXES_EGRESS_TEST_RESOLVE, and the addresses no box may reach whatever name leads there.
 * Names are compared lower-case without a trailing dot; IP addresses are never on the list, in
 * any of the forms the C library would accept ("127.1", "0x7f.0.0.1", "2130706433").
 *
 * The test pins exist so that the tests can point a name at a server on their own loopback
 * without DNS. They are honoured only for names under .test (a top-level domain reserved for
 * testing, which no real DNS name can be under), only when the name is also on the allow-list,
 * and the only check they relax is loopback; every other forbidden address stays forbidden.
 *
 * Pure functions on read-only data, except that the forbidden-address check reads this host's
 * addresses (getifaddrs) at each call, so that an interface added later is covered too.
 */
#include "egress-internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netdb.h>

#include "common/log.h"

#define ALLOW_MAX_LEN 16384
#define TEST_TLD ".test"

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

int obx_egress_host_normalize(char *host, char *why, size_t size)
{
    size_t n = strlen(host);
    for (size_t i = 0; i < n; i++)
        host[i] = (char)tolower((unsigned char)host[i]);
    if (n > 1 && host[n - 1] == '.')
        host[--n] = '\0';
    if (n == 0) {
        snprintf(why, size, "the host name is empty");
        return -EINVAL;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_aton(host, &a4) || inet_pton(AF_INET6, host, &a6) == 1)
        return 1;
    if (n > OBX_EGRESS_HOST_MAX) {
        snprintf(why, size, "the host name is longer than %d characters", OBX_EGRESS_HOST_MAX);
        return -EINVAL;
    }
    size_t label = 0;
    bool numeric = true; /* the current label is all digits */
    for (size_t i = 0; i <= n; i++) {
        char c = host[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63) {
                snprintf(why, size, "%.*s is not a host name (empty or over-long label)",
                         (int)OBX_MIN(n, 100), host);
                return -EINVAL;
            }
            if (c == '\0' && numeric) {
                snprintf(why, size, "%.*s is not a host name (its last label is a number)",
                         (int)OBX_MIN(n, 100), host);
                return -EINVAL;
            }
            label = 0;
            numeric = true;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-' && c != '_') {
            snprintf(why, size, "%.*s is not a host name (character '%c')", (int)OBX_MIN(n, 100),
                     host, isprint((unsigned char)c) ? c : '?');
            return -EINVAL;
        }
        numeric = numeric && isdigit((unsigned char)c);
        label++;
    }
    return 0;
}

/* "name[:port]" with the port 1..65535; name is copied into buf (NUL-terminated). */
static int split_port(const char *s, size_t n, char *buf, size_t size, uint16_t *port)
{
    *port = 0;
    const char *colon = memrchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    if (colon && memchr(s, ':', name_len))
        return -EINVAL; /* more than one colon: an IPv6 address */
    if (name_len >= size)
        return -ENAMETOOLONG;
    memcpy(buf, s, name_len);
    buf[name_len] = '\0';
    if (colon) {
        char num[8];
        size_t plen = n - name_len - 1;
        int64_t v;
        if (plen == 0 || plen >= sizeof(num))
            return -ERANGE;
        memcpy(num, colon + 1, plen);
        num[plen] = '\0';
        if (obx_parse_int64(num, 1, 65535, &v) < 0)
            return -ERANGE;
        *port = (uint16_t)v;
    }
    return 0;
}

static int parse_rule(struct obx_egress_policy *p, const char *var, const char *s, size_t n,
                      struct obx_error *err)
{
    char name[OBX_EGRESS_HOST_MAX + 8];
    uint16_t port;
    int r = split_port(s, n, name, sizeof(name), &port);
    if (r == -ERANGE)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s: entry \"%.*s\" has an invalid port (expected 1 to 65535)", var,
                             (int)OBX_MIN(n, 200), s);
    if (r < 0)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s: entry \"%.*s\" is not a host name; list names such as "
                             "pypi.org, *.pythonhosted.org or api.example.com:8443",
                             var, (int)OBX_MIN(n, 200), s);
    bool wildcard = strncmp(name, "*.", 2) == 0;
    char *host = wildcard ? name + 2 : name;
    char why[160];
    r = obx_egress_host_normalize(host, why, sizeof(why));
    if (r == 1)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s: entry \"%.*s\" is an IP address; list host names (the proxy "
                             "refuses IP addresses)",
                             var, (int)OBX_MIN(n, 200), s);
    if (r < 0)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s: entry \"%.*s\": %s", var,
                             (int)OBX_MIN(n, 200), s, why);
    if (wildcard && !strchr(host, '.'))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s: entry \"%.*s\" is too broad; a wildcard needs a domain of two "
                             "labels or more (*.example.com)",
                             var, (int)OBX_MIN(n, 200), s);
    if (p->n_rules >= OBX_EGRESS_MAX_RULES)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s has more than %d entries",
                             var, OBX_EGRESS_MAX_RULES);
    struct obx_egress_rule *rule = &p->rules[p->n_rules++];
    rule->name = obx_xstrdup(host);
    rule->wildcard = wildcard;
    rule->port = port;
    return 0;
}

/* "name=1.2.3.4", "name=1.2.3.4:8080", "name=[::1]:8443" */
static int parse_pin(struct obx_egress_policy *p, const char *s, size_t n, struct obx_error *err)
{
    static const char var[] = "ONLYBOXES_EGRESS_TEST_RESOLVE";
    const char *eq = memchr(s, '=', n);
    char name[OBX_EGRESS_HOST_MAX + 2], addr[64], why[160];
    size_t name_len = eq ? (size_t)(eq - s) : 0;
    if (!eq || name_len == 0 || name_len >= sizeof(name))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s: entry \"%.*s\" is not name=address[:port]", var,
                             (int)OBX_MIN(n, 200), s);
    memcpy(name, s, name_len);
    name[name_len] = '\0';
    if (obx_egress_host_normalize(name, why, sizeof(why)) != 0 ||
        strlen(name) <= strlen(TEST_TLD) ||
        strcmp(name + strlen(name) - strlen(TEST_TLD), TEST_TLD) != 0)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s: \"%.*s\" is not a name under .test; this setting is for tests "
                             "and pins only such names",
                             var, (int)OBX_MIN(name_len, 200), s);
    const char *a = eq + 1;
    size_t alen = n - name_len - 1, host_len = alen;
    const char *host = a, *port_s = NULL;
    if (alen > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            goto bad;
        host = a + 1;
        host_len = (size_t)(close - a - 1);
        if (close + 1 < a + alen) {
            if (close[1] != ':')
                goto bad;
            port_s = close + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        if (colon) {
            host_len = (size_t)(colon - a);
            port_s = colon + 1;
        }
    }
    if (host_len == 0 || host_len >= sizeof(addr))
        goto bad;
    memcpy(addr, host, host_len);
    addr[host_len] = '\0';
    if (p->n_pins >= OBX_EGRESS_MAX_PINS)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s has more than %d entries",
                             var, OBX_EGRESS_MAX_PINS);
    struct obx_egress_pin *pin = &p->pins[p->n_pins];
    memset(pin, 0, sizeof(*pin));
    struct sockaddr_in *sin = (struct sockaddr_in *)&pin->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&pin->addr;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        pin->len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        pin->len = sizeof(*sin6);
    } else {
        goto bad;
    }
    if (port_s) {
        char num[8];
        size_t plen = (size_t)(a + alen - port_s);
        int64_t v;
        if (plen == 0 || plen >= sizeof(num))
            goto bad;
        memcpy(num, port_s, plen);
        num[plen] = '\0';
        if (obx_parse_int64(num, 1, 65535, &v) < 0)
            goto bad;
        pin->port = (uint16_t)v;
    }
    pin->name = obx_xstrdup(name);
    p->n_pins++;
    return 0;
bad:
    return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                         "%s: entry \"%.*s\" is not name=address[:port] with an IPv4 or [IPv6] "
                         "address",
                         var, (int)OBX_MIN(n, 200), s);
}

/* Calls fn for each comma-separated, trimmed, non-empty entry of list. */
static int each_entry(struct obx_egress_policy *p, const char *var, const char *list,
                      int (*fn)(struct obx_egress_policy *, const char *, const char *, size_t,
                                struct obx_error *),
                      struct obx_error *err)
{
    for (const char *s = list; *s;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        const char *e = s;
        size_t en = n;
        trim(&e, &en);
        if (en > 0) {
            int r = fn(p, var, e, en, err);
            if (r < 0)
                return r;
        }
        s += n + (comma ? 1 : 0);
    }
    return 0;
}

static int pin_entry(struct obx_egress_policy *p, const char *var, const char *s, size_t n,
                     struct obx_error *err)
{
    (void)var;
    return parse_pin(p, s, n, err);
}

int obx_egress_policy_parse(struct obx_egress_policy *p, const struct obx_egress_config *cfg,
                            struct obx_error *err)
{
    memset(p, 0, sizeof(*p));
    const char *var = cfg->allow_var ? cfg->allow_var : "ONLYBOXES_EGRESS_ALLOW";
    snprintf(p->var, sizeof(p->var), "%s", var);
    if (obx_str_blank(cfg->allow))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s is empty", var);
    if (strlen(cfg->allow) > ALLOW_MAX_LEN)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s is longer than %d characters", var, ALLOW_MAX_LEN);
    p->rules = obx_xcalloc(OBX_EGRESS_MAX_RULES, sizeof(*p->rules));
    p->pins = obx_xcalloc(OBX_EGRESS_MAX_PINS, sizeof(*p->pins));
    int r = each_entry(p, var, cfg->allow, parse_rule, err);
    if (r >= 0 && p->n_rules == 0)
        r = obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "%s lists no host", var);
    if (r >= 0 && !obx_str_blank(cfg->test_resolve))
        r = each_entry(p, var, cfg->test_resolve, pin_entry, err);
    if (r < 0)
        obx_egress_policy_done(p);
    return r;
}

void obx_egress_policy_done(struct obx_egress_policy *p)
{
    for (size_t i = 0; i < p->n_rules; i++)
        free(p->rules[i].name);
    for (size_t i = 0; i < p->n_pins; i++)
        free(p->pins[i].name);
    free(p->rules);
    free(p->pins);
    p->rules = NULL;
    p->pins = NULL;
    p->n_rules = p->n_pins = 0;
}

static bool rule_matches(const struct obx_egress_rule *r, const char *host)
{
    if (!r->wildcard)
        return strcmp(r->name, host) == 0;
    size_t hn = strlen(host), rn = strlen(r->name);
    return hn > rn + 1 && host[hn - rn - 1] == '.' && strcmp(host + hn - rn, r->name) == 0;
}

bool obx_egress_policy_allows(const struct obx_egress_policy *p, const char *host, uint16_t port,
                              char *why, size_t size)
{
    char ports[96] = "";
    size_t plen = 0;
    bool listed = false, defaults = false;
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct obx_egress_rule *r = &p->rules[i];
        if (!rule_matches(r, host))
            continue;
        listed = true;
        if (r->port ? r->port == port : port == 80 || port == 443)
            return true;
        if (!r->port) {
            defaults = true;
        } else if (plen + 8 < sizeof(ports)) {
            int w = snprintf(ports + plen, sizeof(ports) - plen, "%s%u", plen ? ", " : "",
                             (unsigned)r->port);
            plen += w > 0 ? (size_t)w : 0;
        }
    }
    if (!listed) {
        snprintf(why, size, "egress to %s is not allowed (%s)", host, p->var);
    } else {
        snprintf(why, size,
                 "egress to %s port %u is not allowed: %s is listed for port%s %s%s%s (%s)", host,
                 (unsigned)port, host, defaults || strchr(ports, ',') ? "s" : "",
                 defaults ? "80, 443" : "", defaults && plen ? ", " : "", ports, p->var);
    }
    return false;
}

const struct obx_egress_pin *obx_egress_policy_pin(const struct obx_egress_policy *p,
                                                   const char *host)
{
    for (size_t i = 0; i < p->n_pins; i++)
        if (strcmp(p->pins[i].name, host) == 0)
            return &p->pins[i];
    return NULL;
}

/* ---- forbidden addresses ---- */

void obx_egress_addr_text(const struct sockaddr *addr, char *buf, size_t size)
{
    const void *a = addr->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)addr)->sin_addr;
    if (!inet_ntop(addr->sa_family, a, buf, (socklen_t)size))
        snprintf(buf, size, "?");
}

/* Why the IPv4 address (host byte order) is forbidden, or NULL. */
static const char *v4_forbidden(uint32_t a, bool loopback_ok)
{
    if ((a >> 24) == 127)
        return loopback_ok ? NULL : "a loopback address";
    if ((a >> 24) == 0)
        return "an unspecified address";
    if (a == 0xa9fea9feu || a == 0x646464c8u) /* 169.254.169.254, 100.100.100.200 */
        return "a cloud metadata address";
    if ((a >> 16) == 0xa9fe) /* 169.254.0.0/16 */
        return "a link-local address";
    if ((a >> 28) == 0xe)
        return "a multicast address";
    if ((a >> 28) == 0xf)
        return "a reserved or broadcast address";
    return NULL;
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
    return false;
}

/* For an IPv6 address that carries an IPv4 one (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96): that
 * IPv4 address as a sockaddr_in in *v4. */
static bool embedded_v4(const struct in6_addr *a, struct sockaddr_in *v4)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a->s6_addr, mapped, 12) != 0 && memcmp(a->s6_addr, nat64, 12) != 0)
        return false;
    memset(v4, 0, sizeof(*v4));
    v4->sin_family = AF_INET;
    memcpy(&v4->sin_addr, a->s6_addr + 12, 4);
    return true;
}

static bool is_host_addr(const struct sockaddr *addr)
{
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) < 0)
        return false;
    bool found = false;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next)
        found = i->ifa_addr && same_addr(i->ifa_addr, addr);
    freeifaddrs(ifs);
    return found;
}

const char *obx_egress_addr_forbidden(const struct sockaddr *addr, bool loopback_ok,
                                      const struct obx_egress_denylist *deny)
{
    struct sockaddr_in v4;
    const char *why = NULL;
    if (addr->sa_family == AF_INET) {
        memcpy(&v4, addr, sizeof(v4));
    } else if (addr->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        /* fd00:ec2::254 */
        static const uint8_t metadata[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0,    0,
                                             0,    0, 0,    0,    0, 0, 0x02, 0x54};
        if (embedded_v4(a, &v4))
            return obx_egress_addr_forbidden((const struct sockaddr *)&v4, loopback_ok, deny);
        if (IN6_IS_ADDR_LOOPBACK(a))
            why = loopback_ok ? NULL : "a loopback address";
        else if (IN6_IS_ADDR_UNSPECIFIED(a))
            why = "an unspecified address";
        else if (memcmp(a->s6_addr, metadata, 16) == 0)
            why = "a cloud metadata address";
        else if (IN6_IS_ADDR_LINKLOCAL(a))
            why = "a link-local address";
        else if (IN6_IS_ADDR_SITELOCAL(a))
            why = "a reserved address";
        else if (IN6_IS_ADDR_MULTICAST(a))
            why = "a multicast address";
        else if (memcmp(a->s6_addr, (const uint8_t[12]){0}, 12) == 0)
            why = "a reserved address"; /* ::/96, IPv4-compatible */
        if (why || (IN6_IS_ADDR_LOOPBACK(a) && loopback_ok))
            return why;
        goto common;
    } else {
        return "not an IP address";
    }
    why = v4_forbidden(ntohl(v4.sin_addr.s_addr), loopback_ok);
    if (why || (ntohl(v4.sin_addr.s_addr) >> 24) == 127)
        return why; /* a pinned loopback address is this host's, by design */
common:
    for (size_t i = 0; deny && i < deny->n; i++)
        if (same_addr((const struct sockaddr *)&deny->addrs[i], addr))
            return "the console's address";
    if (is_host_addr(addr))
        return "an address of this host";
    return NULL;
}

void obx_egress_denylist_init(struct obx_egress_denylist *ret, const char *deny_host)
{
    memset(ret, 0, sizeof(*ret));
    if (obx_str_blank(deny_host))
        return;
    char name[OBX_EGRESS_HOST_MAX + 2], why[160];
    snprintf(name, sizeof(name), "%s", deny_host);
    int r = obx_egress_host_normalize(name, why, sizeof(why));
    if (r == 0)
        ret->name = obx_xstrdup(name);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(deny_host, NULL, &hints, &res);
    if (e != 0) {
        obx_warn("egress: cannot resolve the console's host %s (%s); its name stays forbidden",
                 deny_host, gai_strerror(e));
        return;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    ret->addrs = obx_xcalloc(n ? n : 1, sizeof(*ret->addrs));
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_addrlen <= sizeof(*ret->addrs))
            memcpy(&ret->addrs[ret->n++], ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
}

void obx_egress_denylist_done(struct obx_egress_denylist *d)
{
    free(d->name);
    free(d->addrs);
    memset(d, 0, sizeof(*d));
}
