/* SPDX-License-Identifier: Apache-2.0 */
/* The egress proxy (worker/egress*.c): the allow-list as an operator writes it (and the errors a
 * bad entry gets), which names, ports and addresses pass, what a proxy request is turned into,
 * and the proxy itself over real sockets: a client on a box's unix socket, destinations on this
 * test's loopback reached through test pins, refusals read back as a client reads them, and the
 * per-box limits on connections and bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "worker/egress-internal.h"

/* ---- the allow-list ---- */

static int parse(const char *allow, const char *pins, struct obx_egress_policy *p,
                 struct obx_error *err)
{
    struct obx_egress_config cfg = {.allow = allow, .test_resolve = pins};
    return obx_egress_policy_parse(p, &cfg, err);
}

static void assert_refused_entry(const char *allow, const char *words)
{
    struct obx_egress_policy p;
    struct obx_error err = OBX_ERROR_INIT;
    assert_true(parse(allow, NULL, &p, &err) < 0);
    if (!strstr(err.message, "ONLYBOXES_EGRESS_ALLOW") || !strstr(err.message, words))
        fail_msg("%s: unexpected message: %s", allow, err.message);
}

static void test_allow_list_errors(void **state)
{
    (void)state;
    assert_refused_entry("pypi.org,1.2.3.4", "is an IP address");
    assert_refused_entry("[::1]", "not a host name");
    assert_refused_entry("pypi.org:0", "invalid port");
    assert_refused_entry("pypi.org:70000", "invalid port");
    assert_refused_entry("pypi.org:http", "invalid port");
    assert_refused_entry("*.com", "too broad");
    assert_refused_entry("*", "not a host name");
    assert_refused_entry("py pi.org", "not a host name");
    assert_refused_entry("a..b", "empty or over-long label");
    assert_refused_entry("example.123", "last label is a number");
    assert_refused_entry("   ", "is empty");
    assert_refused_entry(" , ,", "lists no host");

    struct obx_egress_policy p;
    struct obx_error err = OBX_ERROR_INIT;
    assert_true(parse("a.test", "a.example=127.0.0.1", &p, &err) < 0);
    assert_non_null(strstr(err.message, "ONLYBOXES_EGRESS_TEST_RESOLVE"));
    assert_non_null(strstr(err.message, "under .test"));
    assert_true(parse("a.test", "a.test=localhost", &p, &err) < 0);
    assert_true(parse("a.test", "a.test=127.0.0.1:99999", &p, &err) < 0);
    assert_int_equal(parse("a.test", " a.test=127.0.0.1:8080 , b.test=[::1]:443", &p, &err), 0);
    assert_int_equal(p.n_pins, 2);
    assert_int_equal(obx_egress_policy_pin(&p, "a.test")->port, 8080);
    assert_null(obx_egress_policy_pin(&p, "c.test"));
    obx_egress_policy_done(&p);
}

static void test_allow_list_matching(void **state)
{
    (void)state;
    struct obx_egress_policy p;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(parse(" PyPI.org., *.pythonhosted.org ,api.example.com:8443,"
                           "api.example.com:9443",
                           NULL, &p, &err),
                     0);
    char why[OBX_EGRESS_WHY_MAX];
    assert_true(obx_egress_policy_allows(&p, "pypi.org", 443, why, sizeof(why)));
    assert_true(obx_egress_policy_allows(&p, "pypi.org", 80, why, sizeof(why)));
    assert_true(obx_egress_policy_allows(&p, "files.pythonhosted.org", 443, why, sizeof(why)));
    assert_true(obx_egress_policy_allows(&p, "a.b.pythonhosted.org", 443, why, sizeof(why)));
    assert_true(obx_egress_policy_allows(&p, "api.example.com", 9443, why, sizeof(why)));

    assert_false(obx_egress_policy_allows(&p, "pythonhosted.org", 443, why, sizeof(why)));
    assert_string_equal(why, "egress to pythonhosted.org is not allowed (ONLYBOXES_EGRESS_ALLOW)");
    assert_false(obx_egress_policy_allows(&p, "evilpythonhosted.org", 443, why, sizeof(why)));
    assert_false(obx_egress_policy_allows(&p, "pypi.org.evil.example", 443, why, sizeof(why)));
    assert_false(obx_egress_policy_allows(&p, "pypi.org", 22, why, sizeof(why)));
    assert_string_equal(why, "egress to pypi.org port 22 is not allowed: pypi.org is listed for "
                             "ports 80, 443 (ONLYBOXES_EGRESS_ALLOW)");
    assert_false(obx_egress_policy_allows(&p, "api.example.com", 443, why, sizeof(why)));
    assert_string_equal(why, "egress to api.example.com port 443 is not allowed: api.example.com "
                             "is listed for ports 8443, 9443 (ONLYBOXES_EGRESS_ALLOW)");
    obx_egress_policy_done(&p);
}

static void test_host_names(void **state)
{
    (void)state;
    const char *ips[] = {"127.0.0.1", "127.1", "0x7f.0.0.1", "2130706433", "::1", "::ffff:1.2.3.4"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(ips); i++) {
        char h[64], why[160];
        snprintf(h, sizeof(h), "%s", ips[i]);
        if (obx_egress_host_normalize(h, why, sizeof(why)) != 1)
            fail_msg("%s is an IP address", ips[i]);
    }
    char h[64], why[160];
    snprintf(h, sizeof(h), "Files.PythonHosted.ORG.");
    assert_int_equal(obx_egress_host_normalize(h, why, sizeof(why)), 0);
    assert_string_equal(h, "files.pythonhosted.org");
    snprintf(h, sizeof(h), "a/b.example");
    assert_int_equal(obx_egress_host_normalize(h, why, sizeof(why)), -EINVAL);
}

/* ---- forbidden addresses ---- */

static const char *forbidden(const char *text, bool loopback_ok,
                             const struct obx_egress_denylist *deny)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    else
        fail_msg("bad test address %s", text);
    return obx_egress_addr_forbidden((struct sockaddr *)&ss, loopback_ok, deny);
}

static void assert_forbidden(const char *addr, const char *why)
{
    const char *got = forbidden(addr, false, NULL);
    if (!got || strcmp(got, why) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", addr, why, got ? got : "(allowed)");
}

static void test_forbidden_addresses(void **state)
{
    (void)state;
    assert_forbidden("127.0.0.1", "a loopback address");
    assert_forbidden("127.53.0.9", "a loopback address");
    assert_forbidden("::1", "a loopback address");
    assert_forbidden("::ffff:127.0.0.1", "a loopback address");
    assert_forbidden("169.254.169.254", "a cloud metadata address");
    assert_forbidden("::ffff:169.254.169.254", "a cloud metadata address");
    assert_forbidden("64:ff9b::a9fe:a9fe", "a cloud metadata address");
    assert_forbidden("fd00:ec2::254", "a cloud metadata address");
    assert_forbidden("100.100.100.200", "a cloud metadata address");
    assert_forbidden("169.254.1.1", "a link-local address");
    assert_forbidden("fe80::1", "a link-local address");
    assert_forbidden("0.0.0.0", "an unspecified address");
    assert_forbidden("::", "an unspecified address");
    assert_forbidden("224.0.0.251", "a multicast address");
    assert_forbidden("ff02::1", "a multicast address");
    assert_forbidden("255.255.255.255", "a reserved or broadcast address");
    assert_null(forbidden("93.184.215.14", false, NULL));
    assert_null(forbidden("2606:2800:21f:cb07:6820:80da:af6b:8b2c", false, NULL));
    /* A test pin may lead to loopback, and to nothing else that is forbidden. */
    assert_null(forbidden("127.0.0.1", true, NULL));
    assert_non_null(forbidden("169.254.169.254", true, NULL));

    /* This host's own addresses, whatever they are. */
    struct ifaddrs *ifs = NULL;
    assert_int_equal(getifaddrs(&ifs), 0);
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr ||
            (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
            continue;
        char text[64];
        obx_egress_addr_text(i->ifa_addr, text, sizeof(text));
        if (!forbidden(text, true, NULL) && strncmp(text, "127.", 4) != 0 && strcmp(text, "::1"))
            fail_msg("%s (%s) is this host's address but allowed", text, i->ifa_name);
    }
    freeifaddrs(ifs);

    struct obx_egress_denylist deny;
    obx_egress_denylist_init(&deny, "192.0.2.7");
    const char *why = forbidden("192.0.2.7", false, &deny);
    assert_non_null(why);
    assert_string_equal(why, "the console's address");
    assert_null(forbidden("192.0.2.8", false, &deny));
    obx_egress_denylist_done(&deny);
}

/* ---- proxy requests ---- */

static int req(const char *text, struct obx_egress_request *r, char *why)
{
    return obx_egress_request_parse(text, strlen(text), r, why, OBX_EGRESS_WHY_MAX);
}

static void test_requests(void **state)
{
    (void)state;
    struct obx_egress_request r;
    char why[OBX_EGRESS_WHY_MAX];
    assert_int_equal(req("CONNECT Pypi.org:443 HTTP/1.1\r\nHost: x\r\n\r\nTLS", &r, why), 0);
    assert_true(r.connect);
    assert_string_equal(r.host, "pypi.org");
    assert_int_equal(r.port, 443);
    assert_int_equal(r.head_len, strlen("CONNECT Pypi.org:443 HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_false(r.is_ip);
    assert_int_equal(req("CONNECT [::1]:443 HTTP/1.1\r\n\r\n", &r, why), 0);
    assert_true(r.is_ip);
    assert_string_equal(r.host, "::1");
    assert_int_equal(req("CONNECT 2130706433:443 HTTP/1.1\r\n\r\n", &r, why), 0);
    assert_true(r.is_ip);

    const char *get = "GET http://Example.test:8080/simple/?q=1#frag HTTP/1.1\r\n"
                      "Host: other.example\r\n"
                      "Proxy-Connection: keep-alive\r\n"
                      "Proxy-Authorization: Basic c2VjcmV0\r\n"
                      "Accept: */*\r\n"
                      "\r\n";
    assert_int_equal(req(get, &r, why), 0);
    assert_false(r.connect);
    assert_string_equal(r.host, "example.test");
    assert_int_equal(r.port, 8080);
    assert_string_equal(r.forward, "GET /simple/?q=1 HTTP/1.1\r\n"
                                   "Accept: */*\r\n"
                                   "Host: example.test:8080\r\n"
                                   "Connection: close\r\n\r\n");
    free(r.forward);
    assert_int_equal(req("HEAD http://a.test?x HTTP/1.0\n\n", &r, why), 0);
    assert_string_equal(r.forward,
                        "HEAD /?x HTTP/1.0\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    free(r.forward);

    assert_int_equal(req("GET http://a.test/ HTTP/1.1\r\nHost: a", &r, why), -EAGAIN);
    assert_int_equal(req("GET https://a.test/ HTTP/1.1\r\n\r\n", &r, why), 400);
    assert_non_null(strstr(why, "CONNECT"));
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", &r, why), 400);
    assert_non_null(strstr(why, "absolute URL"));
    assert_int_equal(req("GET http://user:pw@a.test/ HTTP/1.1\r\n\r\n", &r, why), 400);
    assert_int_equal(req("CONNECT a.test HTTP/1.1\r\n\r\n", &r, why), 400);
    assert_int_equal(req("CONNECT a.test:443 HTTP/2\r\n\r\n", &r, why), 400);
    assert_int_equal(req("GET http://a.test/ HTTP/1.1\r\n folded\r\n\r\n", &r, why), 400);
    char *big = malloc(OBX_EGRESS_HEAD_MAX + 10);
    memset(big, 'a', OBX_EGRESS_HEAD_MAX + 9);
    memcpy(big, "GET http://a.test/ HTTP/1.1\r\nX: ", 32);
    big[OBX_EGRESS_HEAD_MAX + 9] = '\0';
    assert_int_equal(req(big, &r, why), 431);
    free(big);

    size_t len;
    char *a = obx_egress_answer(403, "egress to evil.test is not allowed (X)", &len);
    assert_int_equal(strncmp(a, "HTTP/1.1 403 egress to evil.test is not allowed (X)\r\n", 53), 0);
    assert_non_null(strstr(a, "\r\n\r\negress to evil.test is not allowed (X)\n"));
    free(a);
}

/* ---- the proxy, over real sockets ---- */

struct server {
    int fd;
    uint16_t port;
    bool http; /* answer one HTTP request (recording its head); else echo until EOF */
    char head[4096];
    pthread_t thr;
    int accepted;          /* atomic */
    pthread_t clients[64]; /* joined by server_stop(), once the proxy closed its connections */
    size_t n_clients;
};

struct client_job {
    struct server *s;
    int fd;
};

static void *serve_client(void *arg)
{
    struct client_job *j = arg;
    char buf[16384];
    if (j->s->http) {
        size_t len = 0;
        while (len < sizeof(j->s->head) - 1 && !strstr(j->s->head, "\r\n\r\n")) {
            ssize_t n = read(j->fd, j->s->head + len, sizeof(j->s->head) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            j->s->head[len] = '\0';
        }
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        (void)!write(j->fd, ok, sizeof(ok) - 1);
    } else {
        for (;;) {
            ssize_t n = read(j->fd, buf, sizeof(buf));
            if (n <= 0)
                break;
            if (write(j->fd, buf, (size_t)n) != n)
                break;
        }
    }
    close(j->fd);
    free(j);
    return NULL;
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        __atomic_add_fetch(&s->accepted, 1, __ATOMIC_SEQ_CST);
        if (s->n_clients == OBX_ARRAY_SIZE(s->clients)) {
            close(fd);
            continue;
        }
        struct client_job *j = malloc(sizeof(*j));
        j->s = s;
        j->fd = fd;
        pthread_create(&s->clients[s->n_clients++], NULL, serve_client, j);
    }
}

static void server_start(struct server *s, bool http)
{
    memset(s, 0, sizeof(*s));
    s->http = http;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(s->fd, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(listen(s->fd, 64), 0);
    pthread_create(&s->thr, NULL, server_main, s);
}

static void server_stop(struct server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(s->thr, NULL);
    for (size_t i = 0; i < s->n_clients; i++)
        pthread_join(s->clients[i], NULL);
}

struct proxy {
    char dir[64];
    struct obx_egress *eg;
    struct obx_egress_box *box;
    struct server echo, http;
};

static int accepted(const struct proxy *p)
{
    return __atomic_load_n(&p->echo.accepted, __ATOMIC_SEQ_CST) +
           __atomic_load_n(&p->http.accepted, __ATOMIC_SEQ_CST);
}

static void proxy_start(struct proxy *p, unsigned max_conns, uint64_t max_bytes)
{
    server_start(&p->echo, false);
    server_start(&p->http, true);
    snprintf(p->dir, sizeof(p->dir), "/tmp/obx-egress-test-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    char allow[256], pins[256];
    snprintf(allow, sizeof(allow), "echo.test:%u,web.test,meta.test", p->echo.port);
    snprintf(pins, sizeof(pins),
             "echo.test=127.0.0.1,web.test=127.0.0.1:%u,meta.test=169.254.169.254", p->http.port);
    struct obx_egress_config cfg = {.allow = allow,
                                    .test_resolve = pins,
                                    .state_dir = p->dir,
                                    .max_conns = max_conns,
                                    .max_bytes = max_bytes,
                                    .connect_timeout_ms = 2000};
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_egress_new(&cfg, &p->eg, &err) < 0)
        fail_msg("obx_egress_new: %s", err.message);
    if (obx_egress_box_open(p->eg, "test box", &p->box, &err) < 0)
        fail_msg("obx_egress_box_open: %s", err.message);
}

static void proxy_stop(struct proxy *p)
{
    obx_egress_box_close(p->box);
    obx_egress_free(p->eg);
    server_stop(&p->echo);
    server_stop(&p->http);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "%s/egress", p->dir);
    rmdir(cmd);
    rmdir(p->dir);
}

static int dial(struct proxy *p)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", obx_egress_box_path(p->box));
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads until the end of an answer's head (or EOF); returns what came. */
static char *read_head(int fd)
{
    static char buf[8192];
    size_t len = 0;
    buf[0] = '\0';
    while (len < sizeof(buf) - 1 && !strstr(buf, "\r\n\r\n")) {
        ssize_t n = read(fd, buf + len, 1);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
    }
    return buf;
}

/* Sends text and returns the answer's status line. */
static char *ask(int fd, const char *text)
{
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    char *head = read_head(fd);
    char *eol = strstr(head, "\r\n");
    if (eol)
        *eol = '\0';
    return head;
}

static void assert_status(const char *got, const char *want)
{
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("expected \"%s...\", got \"%s\"", want, got);
}

static void test_proxy_tunnel_and_forward(void **state)
{
    (void)state;
    struct proxy p;
    proxy_start(&p, 8, 64 << 20);
    char text[256];

    int fd = dial(&p);
    snprintf(text, sizeof(text), "CONNECT echo.test:%u HTTP/1.1\r\nHost: x\r\n\r\nearly",
             p.echo.port);
    assert_status(ask(fd, text), "HTTP/1.1 200 ");
    char buf[64] = "";
    ssize_t n = read(fd, buf, 5); /* the bytes that came with the head went through */
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "early", 5);
    assert_int_equal(write(fd, "ping", 4), 4);
    assert_int_equal(read(fd, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    shutdown(fd, SHUT_WR);
    assert_int_equal(read(fd, buf, sizeof(buf)), 0); /* the half-close reached the echo server */
    close(fd);

    fd = dial(&p);
    assert_status(ask(fd, "GET http://web.test/simple/pkg/ HTTP/1.1\r\nHost: evil.example\r\n"
                          "Proxy-Connection: keep-alive\r\n\r\n"),
                  "HTTP/1.1 200 OK");
    assert_int_equal(read(fd, buf, 5), 5);
    assert_memory_equal(buf, "hello", 5);
    close(fd);
    assert_non_null(strstr(p.http.head, "GET /simple/pkg/ HTTP/1.1\r\n"));
    assert_non_null(strstr(p.http.head, "\r\nHost: web.test\r\n"));
    assert_null(strstr(p.http.head, "evil.example"));
    assert_null(strstr(p.http.head, "Proxy-Connection"));

    struct obx_egress_stats st;
    obx_egress_box_stats(p.box, &st);
    assert_int_equal(st.allowed, 2);
    assert_int_equal(st.refused, 0);
    assert_true(st.bytes > 0);
    proxy_stop(&p);
}

static void test_proxy_refusals(void **state)
{
    (void)state;
    struct proxy p;
    proxy_start(&p, 8, 64 << 20);
    int before = accepted(&p);
    const struct {
        const char *request;
        const char *status;
    } cases[] = {
        {"CONNECT evil.test:443 HTTP/1.1\r\n\r\n",
         "HTTP/1.1 403 egress to evil.test is not allowed (ONLYBOXES_EGRESS_ALLOW)"},
        {"CONNECT web.test:22 HTTP/1.1\r\n\r\n",
         "HTTP/1.1 403 egress to web.test port 22 is not allowed"},
        {"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n",
         "HTTP/1.1 403 egress to 127.0.0.1 is not allowed: an IP address"},
        {"GET http://[::1]/ HTTP/1.1\r\n\r\n", "HTTP/1.1 403 egress to ::1 is not allowed"},
        {"CONNECT meta.test:443 HTTP/1.1\r\n\r\n",
         "HTTP/1.1 403 egress to meta.test is not allowed: it resolves to 169.254.169.254, a "
         "cloud metadata address"},
        {"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n", "HTTP/1.1 400 this is the box's egress"},
        {"hello\r\n\r\n", "HTTP/1.1 400 bad proxy request"},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++) {
        int fd = dial(&p);
        assert_status(ask(fd, cases[i].request), cases[i].status);
        char c;
        /* The body repeats the reason; then the proxy closes. */
        while (read(fd, &c, 1) == 1)
            ;
        close(fd);
    }
    /* Nothing reached a destination. */
    assert_int_equal(accepted(&p), before);
    struct obx_egress_stats st;
    obx_egress_box_stats(p.box, &st);
    assert_int_equal(st.refused, OBX_ARRAY_SIZE(cases));
    assert_int_equal(st.allowed, 0);
    proxy_stop(&p);
}

static void test_proxy_limits(void **state)
{
    (void)state;
    struct proxy p;
    proxy_start(&p, 2, 1 << 20);
    char text[256], buf[16384];
    snprintf(text, sizeof(text), "CONNECT echo.test:%u HTTP/1.1\r\n\r\n", p.echo.port);
    int a = dial(&p), b = dial(&p), c = dial(&p);
    assert_status(ask(a, text), "HTTP/1.1 200");
    assert_status(ask(b, text), "HTTP/1.1 200");
    assert_status(ask(c, text), "HTTP/1.1 429 egress: this box has 2 connections open, its limit "
                                "(ONLYBOXES_EGRESS_MAX_CONNECTIONS)");
    close(c);
    close(b);
    /* One closed: room for another (the proxy notices the close on its own time). */
    uint64_t deadline = obx_now_ms() + 5000;
    char *status;
    do {
        c = dial(&p);
        status = ask(c, text);
        if (strncmp(status, "HTTP/1.1 200", 12) == 0)
            break;
        close(c);
        c = -1;
        usleep(20000);
    } while (obx_now_ms() < deadline);
    assert_status(status, "HTTP/1.1 200");

    /* The byte limit: echo until it is used up; the tunnel ends, later requests are refused. */
    memset(buf, 'x', sizeof(buf));
    size_t echoed = 0;
    for (int i = 0; i < 128; i++) {
        if (write(a, buf, sizeof(buf)) < 0)
            break;
        ssize_t n = read(a, buf, sizeof(buf));
        if (n <= 0)
            break;
        echoed += (size_t)n;
    }
    assert_true(echoed < (1 << 20));
    close(a);
    close(c);
    int d = dial(&p);
    assert_status(ask(d, text), "HTTP/1.1 403 egress: this box has used its 1 MiB of egress "
                                "traffic (ONLYBOXES_EGRESS_MAX_MB)");
    close(d);
    struct obx_egress_stats st;
    obx_egress_box_stats(p.box, &st);
    assert_true(st.bytes > (1 << 20));
    proxy_stop(&p);
}

/* A box handle closed after its proxy was freed (a call still held the box). */
static void test_close_after_free(void **state)
{
    (void)state;
    struct proxy p;
    proxy_start(&p, 4, 1 << 20);
    struct obx_egress_box *extra;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_egress_box_open(p.eg, "second", &extra, &err), 0);
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(path, sizeof(path), "%s", obx_egress_box_path(extra));
    assert_int_equal(access(path, F_OK), 0);
    obx_egress_box_unlink(extra);
    assert_int_equal(access(path, F_OK), -1); /* no name left for another process to find */
    obx_egress_free(p.eg);
    obx_egress_box_close(extra);
    obx_egress_box_close(p.box);
    server_stop(&p.echo);
    server_stop(&p.http);
    char d[128];
    snprintf(d, sizeof(d), "%s/egress", p.dir);
    assert_int_equal(rmdir(d), 0); /* every socket name is gone */
    rmdir(p.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_list_errors), cmocka_unit_test(test_allow_list_matching),
        cmocka_unit_test(test_host_names),        cmocka_unit_test(test_forbidden_addresses),
        cmocka_unit_test(test_requests),          cmocka_unit_test(test_proxy_tunnel_and_forward),
        cmocka_unit_test(test_proxy_refusals),    cmocka_unit_test(test_proxy_limits),
        cmocka_unit_test(test_close_after_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
