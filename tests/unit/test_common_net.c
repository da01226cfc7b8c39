/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Listen addresses: what users write in CONSOLE_HTTP_ADDR / CONSOLE_GRPC_ADDR is parsed with clear
 * errors, and a listener binds exactly the address given (checked on the bound socket itself).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/net.h"

static void test_parse(void **state)
{
    (void)state;
    char *host = NULL;
    int port = -1;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_net_parse_hostport("X", "127.0.0.1:8089", &host, &port, &err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8089);
    free(host);
    assert_int_equal(obx_net_parse_hostport("X", "[::1]:0", &host, &port, &err), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    free(host);
    assert_int_equal(obx_net_parse_hostport("X", ":50051", &host, &port, &err), 0);
    assert_string_equal(host, "");
    assert_int_equal(port, 50051);
    free(host);
    assert_int_equal(obx_net_parse_hostport("X", "localhost:1", &host, &port, &err), 0);
    assert_string_equal(host, "localhost");
    free(host);

    static const char *const bad[] = {"8089",      "host:",     "host:65536", "host:-1", "::1:80",
                                      "[nope]:80", "[::1]x:80", "",           "[::1]"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        err = (struct obx_error)OBX_ERROR_INIT;
        assert_int_equal(obx_net_parse_hostport("CONSOLE_HTTP_ADDR", bad[i], &host, &port, &err),
                         -EINVAL);
        assert_non_null(strstr(err.message, "CONSOLE_HTTP_ADDR="));
    }
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(obx_net_host_is_loopback("127.0.0.1"));
    assert_true(obx_net_host_is_loopback("127.1.2.3"));
    assert_true(obx_net_host_is_loopback("::1"));
    assert_true(obx_net_host_is_loopback("LocalHost"));
    assert_false(obx_net_host_is_loopback(""));
    assert_false(obx_net_host_is_loopback("0.0.0.0"));
    assert_false(obx_net_host_is_loopback("::"));
    assert_false(obx_net_host_is_loopback("10.0.0.1"));
    assert_false(obx_net_host_is_loopback("128.0.0.1"));
}

/* The socket's own address, as `ss -ltn` shows it. */
static void bound(int fd, char *buf, size_t size)
{
    struct obx_sockaddr a = {.len = sizeof(a.ss)};
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a.ss, &a.len), 0);
    obx_net_format(&a, buf, size);
}

static void test_listen_exact(void **state)
{
    (void)state;
    int fds[OBX_NET_MAX_ADDRS];
    struct obx_sockaddr addrs[OBX_NET_MAX_ADDRS];
    struct obx_error err = OBX_ERROR_INIT;
    char got[80], want[80];

    int n = obx_net_listen("127.0.0.1", 0, 16, fds, addrs, OBX_NET_MAX_ADDRS, &err);
    assert_int_equal(n, 1);
    bound(fds[0], got, sizeof(got));
    snprintf(want, sizeof(want), "127.0.0.1:%d", obx_net_port(&addrs[0]));
    assert_string_equal(got, want);
    assert_true(obx_net_port(&addrs[0]) > 0);
    /* The same address and port again: in use, said so. */
    int fds2[OBX_NET_MAX_ADDRS];
    struct obx_sockaddr addrs2[OBX_NET_MAX_ADDRS];
    assert_int_equal(obx_net_listen("127.0.0.1", obx_net_port(&addrs[0]), 16, fds2, addrs2,
                                    OBX_NET_MAX_ADDRS, &err),
                     -EADDRINUSE);
    assert_non_null(strstr(err.message, "in use"));
    close(fds[0]);

    n = obx_net_listen("::1", 0, 16, fds, addrs, OBX_NET_MAX_ADDRS, &err);
    if (n == 1) { /* a host without IPv6 loopback skips this part */
        bound(fds[0], got, sizeof(got));
        snprintf(want, sizeof(want), "[::1]:%d", obx_net_port(&addrs[0]));
        assert_string_equal(got, want);
        close(fds[0]);
    }

    n = obx_net_listen("", 0, 16, fds, addrs, OBX_NET_MAX_ADDRS, &err);
    assert_int_equal(n, 1);
    bound(fds[0], got, sizeof(got));
    int port = obx_net_port(&addrs[0]);
    snprintf(want, sizeof(want), "[::]:%d", port);
    char want4[80];
    snprintf(want4, sizeof(want4), "0.0.0.0:%d", port);
    assert_true(strcmp(got, want) == 0 || strcmp(got, want4) == 0);
    close(fds[0]);

    /* A name: every address it has, on one port. */
    n = obx_net_listen("localhost", 0, 16, fds, addrs, OBX_NET_MAX_ADDRS, &err);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) {
        assert_int_equal(obx_net_port(&addrs[i]), obx_net_port(&addrs[0]));
        bound(fds[i], got, sizeof(got));
        assert_true(strncmp(got, "127.", 4) == 0 || strncmp(got, "[::1]", 5) == 0);
        close(fds[i]);
    }

    err = (struct obx_error)OBX_ERROR_INIT;
    assert_true(obx_net_listen("no-such-host.invalid", 0, 16, fds, addrs, OBX_NET_MAX_ADDRS, &err) <
                0);
    assert_non_null(strstr(err.message, "no-such-host.invalid"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_listen_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
