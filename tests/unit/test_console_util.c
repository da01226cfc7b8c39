/* SPDX-License-Identifier: Apache-2.0 */
/* Pure pieces of the console: token masking, HMAC hex, cookie parsing, pagination parameters,
 * Unicode trimming, route matching and the login limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "common/clock.h"
#include "console/api/api.h"
#include "console/auth/auth.h"
#include "console/auth/ratelimit.h"
#include "console/util/console-util.h"

static void test_token_mask(void **state)
{
    char out[300];
    obx_console_token_mask("", out, sizeof(out));
    assert_string_equal(out, "");
    obx_console_token_mask("abc", out, sizeof(out));
    assert_string_equal(out, "***");
    obx_console_token_mask("12345678", out, sizeof(out));
    assert_string_equal(out, "********");
    obx_console_token_mask("123456789", out, sizeof(out));
    assert_string_equal(out, "1234******6789"); /* max(1, 6) stars */
    obx_console_token_mask("my-secret-token", out, sizeof(out));
    assert_string_equal(out, "my-s*******oken");
    char tok[69] = "obx_";
    memset(tok + 4, 'a', 64);
    tok[68] = '\0';
    obx_console_token_mask(tok, out, sizeof(out));
    assert_int_equal(strlen(out), 68);
    assert_memory_equal(out, "obx_", 4);
    /* A small buffer truncates instead of overflowing. */
    obx_console_token_mask(tok, out, 10);
    assert_int_equal(strlen(out), 9);
}

static void test_hmac_hex(void **state)
{
    assert_int_equal(obx_auth_init(), 0);
    char out[65];
    const char *msg = "what do ya want for nothing?";
    obx_auth_hmac_hex("Jefe", msg, strlen(msg), out); /* RFC 4231 test case 2 */
    assert_string_equal(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* Keys longer than the block size are hashed first (RFC 4231 test case 6). */
    char key[132];
    memset(key, 0xaa, 131);
    key[131] = '\0';
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    obx_auth_hmac_hex(key, m6, strlen(m6), out);
    assert_string_equal(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    assert_true(obx_auth_equal("abc", "abc", 3));
    assert_false(obx_auth_equal("abc", "abd", 3));
}

static void test_cookie_value(void **state)
{
    char v[70];
    assert_int_equal(obx_console_cookie_value(NULL, "s", v, sizeof(v)), -ENOENT);
    assert_int_equal(obx_console_cookie_value("a=1; s=xyz; b=2", "s", v, sizeof(v)), 0);
    assert_string_equal(v, "xyz");
    assert_int_equal(obx_console_cookie_value("s=first;s=second", "s", v, sizeof(v)), 0);
    assert_string_equal(v, "first");
    assert_int_equal(obx_console_cookie_value("ss=1; xs=2", "s", v, sizeof(v)), -ENOENT);
    assert_int_equal(obx_console_cookie_value("s=\"quoted\"", "s", v, sizeof(v)), 0);
    assert_string_equal(v, "quoted");
    assert_int_equal(obx_console_cookie_value("s=", "s", v, sizeof(v)), 0);
    assert_string_equal(v, ""); /* present but blank: the router answers 401 */
    assert_int_equal(obx_console_cookie_value("s=0123456789", "s", v, 5), -E2BIG);
}

static void test_page_param(void **state)
{
    int64_t v;
    assert_int_equal(obx_console_parse_page_param(NULL, 20, 100, &v), 0);
    assert_int_equal(v, 20);
    assert_int_equal(obx_console_parse_page_param("7", 20, 100, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(obx_console_parse_page_param("1000", 20, 100, &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(obx_console_parse_page_param("0", 20, 100, &v), -EINVAL);
    assert_int_equal(obx_console_parse_page_param("-3", 20, 100, &v), -EINVAL);
    assert_int_equal(obx_console_parse_page_param("abc", 20, 100, &v), -EINVAL);
    assert_int_equal(obx_console_parse_page_param("", 20, 100, &v), -EINVAL);
    assert_int_equal(obx_console_parse_page_param("99999999999999999999", 20, 100, &v), -EINVAL);
}

static void test_unicode(void **state)
{
    char *t = obx_console_trim("\xc2\xa0 \t hi there \xe3\x80\x80");
    assert_string_equal(t, "hi there");
    free(t);
    t = obx_console_trim("   ");
    assert_string_equal(t, "");
    free(t);
    assert_true(obx_console_has_space("a\xe2\x80\x82z"));
    assert_false(obx_console_has_space("a-z"));
}

static void test_time_format(void **state)
{
    setenv("TZ", "UTC", 1);
    tzset();
    char out[40];
    obx_time_rfc3339(1700000000123, out);
    assert_string_equal(out, "2023-11-14T22:13:20.123Z");
    obx_time_rfc3339(1700000000100, out);
    assert_string_equal(out, "2023-11-14T22:13:20.1Z");
    obx_time_rfc3339(1700000000000, out);
    assert_string_equal(out, "2023-11-14T22:13:20Z");
    obx_console_format_http_date(0, out);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
}

static enum obx_route_result dummy(struct obx_route_ctx *ctx)
{
    return OBX_ROUTE_DONE;
}

static void test_route_match(void **state)
{
    static const struct obx_route routes[] = {
        {OBX_HTTP_GET, "/api/v1/console/tokens", OBX_ROUTE_AUTH_COOKIE, dummy},
        {OBX_HTTP_DELETE, "/api/v1/console/tokens/:token_id", OBX_ROUTE_AUTH_COOKIE, dummy},
        {OBX_HTTP_GET, "/api/v1/console/tokens/:token_id/value", OBX_ROUTE_AUTH_COOKIE, dummy},
    };
    char *params[OBX_ROUTE_MAX_PARAMS];
    size_t n = 0;
    bool redirect;
    const struct obx_route *r =
        obx_router_match(routes, 3, OBX_HTTP_GET, "/api/v1/console/tokens", params, &n, &redirect);
    assert_ptr_equal(r, &routes[0]);
    assert_int_equal(n, 0);
    r = obx_router_match(routes, 3, OBX_HTTP_GET, "/api/v1/console/tokens/tok_1/value", params, &n,
                         &redirect);
    assert_ptr_equal(r, &routes[2]);
    assert_int_equal(n, 1);
    assert_string_equal(params[0], "tok_1");
    free(params[0]);
    r = obx_router_match(routes, 3, OBX_HTTP_GET, "/api/v1/console/tokens/tok_1", params, &n,
                         &redirect);
    assert_null(r); /* wrong method */
    assert_false(redirect);
    r = obx_router_match(routes, 3, OBX_HTTP_DELETE, "/api/v1/console/tokens//value", params, &n,
                         &redirect);
    assert_null(r);
    r = obx_router_match(routes, 3, OBX_HTTP_GET, "/api/v1/console/tokens/", params, &n, &redirect);
    assert_null(r);
    assert_true(redirect);
    r = obx_router_match(routes, 3, OBX_HTTP_GET, "/API/v1/console/tokens", params, &n, &redirect);
    assert_null(r);
    assert_false(redirect);
    r = obx_router_match(routes, 3, OBX_HTTP_GET, "/api/v1/console/tokensX", params, &n, &redirect);
    assert_null(r);
}

static void test_ratelimit(void **state)
{
    struct obx_ratelimit *rl = obx_ratelimit_new(3, 1000, 2);
    for (int i = 0; i < 3; i++) {
        assert_false(obx_ratelimit_blocked(rl, "a", 100));
        obx_ratelimit_fail(rl, "a", 100 + (uint64_t)i);
    }
    assert_true(obx_ratelimit_blocked(rl, "a", 500));
    assert_false(obx_ratelimit_blocked(rl, "b", 500));
    assert_false(obx_ratelimit_blocked(rl, "a", 1100)); /* the first failure left the window */
    obx_ratelimit_fail(rl, "a", 1100);
    assert_true(obx_ratelimit_blocked(rl, "a", 1100));
    obx_ratelimit_reset(rl, "a");
    assert_false(obx_ratelimit_blocked(rl, "a", 1100));
    /* A full table forgets the oldest key rather than growing. */
    obx_ratelimit_fail(rl, "x", 2000);
    obx_ratelimit_fail(rl, "y", 2001);
    obx_ratelimit_fail(rl, "z", 2002);
    obx_ratelimit_free(rl);
}

static void test_mcp_http_helpers(void **state)
{
    char h[32];
    assert_int_equal(obx_console_authority_host("Example.COM:8089", h, sizeof(h)), 0);
    assert_string_equal(h, "example.com");
    assert_int_equal(obx_console_authority_host("127.0.0.1", h, sizeof(h)), 0);
    assert_string_equal(h, "127.0.0.1");
    assert_int_equal(obx_console_authority_host("[::1]:80", h, sizeof(h)), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(obx_console_authority_host("[::1", h, sizeof(h)), -EINVAL);
    assert_int_equal(obx_console_authority_host("[::1]x", h, sizeof(h)), -EINVAL);
    assert_int_equal(obx_console_authority_host(":80", h, sizeof(h)), -EINVAL);
    assert_int_equal(
        obx_console_authority_host("a-very-long-host-name-that-does-not-fit", h, sizeof(h)),
        -EINVAL);

    assert_true(obx_console_accepts("application/json, text/event-stream", "application/json"));
    assert_true(obx_console_accepts("text/event-stream, application/json", "text/event-stream"));
    assert_true(obx_console_accepts("Application/JSON;q=0.9", "application/json"));
    assert_true(obx_console_accepts("text/html, */*;q=0.1", "application/json"));
    assert_true(obx_console_accepts("application/*", "application/json"));
    assert_false(obx_console_accepts("text/*", "application/json"));
    assert_false(obx_console_accepts("application/jsonx", "application/json"));
    assert_false(obx_console_accepts("text/plain", "text/event-stream"));
    assert_false(obx_console_accepts("", "application/json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_mask),       cmocka_unit_test(test_hmac_hex),
        cmocka_unit_test(test_cookie_value),     cmocka_unit_test(test_page_param),
        cmocka_unit_test(test_unicode),          cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_route_match),      cmocka_unit_test(test_ratelimit),
        cmocka_unit_test(test_mcp_http_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
