/* SPDX-License-Identifier: Apache-2.0 */
/* The dashboard's HTTP rules: the same-origin check that refuses cross-site requests, gzip
 * negotiation, If-None-Match, the embedded asset table and the headers every answer carries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "console/web/web.h"

static void test_same_origin(void **state)
{
    (void)state;
    assert_true(obx_web_same_origin("http://127.0.0.1:8089", "127.0.0.1:8089"));
    assert_true(obx_web_same_origin("http://Console.Example.com:8089", "console.example.COM:8089"));
    assert_true(obx_web_same_origin("https://console.example.com", "console.example.com"));
    assert_true(obx_web_same_origin("https://console.example.com", "console.example.com:443"));
    assert_true(obx_web_same_origin("http://console.example.com:80", "console.example.com"));
    assert_true(obx_web_same_origin("http://[::1]:8089", "[::1]:8089"));
    /* Another port of the same host is another origin (and the same site for cookies). */
    assert_false(obx_web_same_origin("http://127.0.0.1:9999", "127.0.0.1:8089"));
    assert_false(obx_web_same_origin("http://evil.example", "console.example.com"));
    assert_false(
        obx_web_same_origin("http://console.example.com.evil.example", "console.example.com"));
    assert_false(obx_web_same_origin("https://console.example.com:8443", "console.example.com"));
    /* Not an origin, or nothing to compare with. */
    assert_false(obx_web_same_origin("null", "console.example.com"));
    assert_false(obx_web_same_origin("file://", "console.example.com"));
    assert_false(obx_web_same_origin("http://console.example.com/path", "console.example.com"));
    assert_false(obx_web_same_origin("http://user@console.example.com", "console.example.com"));
    assert_false(obx_web_same_origin("http://console.example.com:0", "console.example.com:0"));
    assert_false(obx_web_same_origin("http://console.example.com:99999", "console.example.com"));
    assert_false(obx_web_same_origin("http://", ""));
    assert_false(obx_web_same_origin("http://a", NULL));
    assert_false(obx_web_same_origin(NULL, "a"));
    assert_false(obx_web_same_origin("http://[::1", "[::1"));
}

static void test_accepts_gzip(void **state)
{
    (void)state;
    assert_true(obx_web_accepts_gzip("gzip, deflate, br, zstd"));
    assert_true(obx_web_accepts_gzip("br;q=1.0, GZIP;q=0.5"));
    assert_true(obx_web_accepts_gzip("*"));
    assert_true(obx_web_accepts_gzip("x-gzip"));
    assert_false(obx_web_accepts_gzip(NULL));
    assert_false(obx_web_accepts_gzip(""));
    assert_false(obx_web_accepts_gzip("identity"));
    assert_false(obx_web_accepts_gzip("br"));
    assert_false(obx_web_accepts_gzip("gzip;q=0"));
    assert_false(obx_web_accepts_gzip("gzip; q=0.000, br"));
    assert_false(obx_web_accepts_gzip("*;q=0"));
    assert_false(obx_web_accepts_gzip("gzip;q=0, *"));
    assert_true(obx_web_accepts_gzip("gzip;q=0.01"));
    assert_false(obx_web_accepts_gzip("gzipx"));
}

static void test_etag_matches(void **state)
{
    (void)state;
    const char *e = "\"0123456789abcdef\"", *g = "\"0123456789abcdef-gzip\"";
    assert_true(obx_web_etag_matches("\"0123456789abcdef\"", e, g));
    assert_true(obx_web_etag_matches("\"0123456789abcdef-gzip\"", e, g));
    assert_true(obx_web_etag_matches("W/\"0123456789abcdef\"", e, NULL));
    assert_true(obx_web_etag_matches("\"other\", \"0123456789abcdef\"", e, NULL));
    assert_true(obx_web_etag_matches("*", e, NULL));
    assert_false(obx_web_etag_matches(NULL, e, g));
    assert_false(obx_web_etag_matches("", e, g));
    assert_false(obx_web_etag_matches("\"0123456789abcde\"", e, g));
    assert_false(obx_web_etag_matches("0123456789abcdef", e, g));
    assert_false(obx_web_etag_matches("\"0123456789abcdef-gzip\"", e, NULL));
}

static void test_assets(void **state)
{
    (void)state;
    const struct obx_web_asset *index = obx_web_asset_find("/");
    assert_non_null(index);
    assert_string_equal(index->content_type, "text/html; charset=utf-8");
    assert_false(index->immutable);
    assert_non_null(
        memmem(index->data, index->len, "<div id=\"app\">", strlen("<div id=\"app\">")));
    assert_null(obx_web_asset_find("/index.html"));
    assert_null(obx_web_asset_find("/assets/"));
    size_t scripts = 0;
    for (size_t i = 0; i < obx_web_assets_n; i++) {
        const struct obx_web_asset *a = &obx_web_assets[i];
        assert_true(a->path[0] == '/');
        assert_int_equal(strlen(a->etag), 18);
        if (strncmp(a->path, "/assets/", 8) == 0)
            assert_true(a->immutable);
        if (a->gz)
            assert_true(a->gz_len < a->len && a->gz[0] == 0x1f && a->gz[1] == 0x8b);
        if (strstr(a->path, ".js") && strncmp(a->path, "/assets/chunk-", 14) != 0) {
            scripts++; /* the entry point: named by the page */
            assert_non_null(memmem(index->data, index->len, a->path, strlen(a->path)));
        } else if (strstr(a->path, ".js")) {
            /* a chunk loaded on demand: some other script imports it by its file name */
            const char *name = a->path + strlen("/assets/");
            bool imported = false;
            for (size_t j = 0; j < obx_web_assets_n && !imported; j++)
                imported = j != i && strstr(obx_web_assets[j].path, ".js") &&
                           memmem(obx_web_assets[j].data, obx_web_assets[j].len, name,
                                  strlen(name)) != NULL;
            assert_true(imported);
        }
    }
    assert_int_equal(scripts, 1);
    assert_non_null(obx_web_asset_find("/THIRD_PARTY_NOTICES.txt"));
}

static void test_response_headers(void **state)
{
    (void)state;
    bool csp = false, nosniff = false;
    for (size_t i = 0; obx_web_response_headers[i][0]; i++) {
        const char *n = obx_web_response_headers[i][0], *v = obx_web_response_headers[i][1];
        if (strcmp(n, "content-security-policy") == 0) {
            csp = true;
            assert_null(strstr(v, "unsafe-inline"));
            assert_null(strstr(v, "unsafe-eval"));
            assert_non_null(strstr(v, "frame-ancestors 'none'"));
            assert_non_null(strstr(v, "script-src 'self'"));
        }
        nosniff =
            nosniff || (strcmp(n, "x-content-type-options") == 0 && strcmp(v, "nosniff") == 0);
    }
    assert_true(csp && nosniff);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_origin),      cmocka_unit_test(test_accepts_gzip),
        cmocka_unit_test(test_etag_matches),     cmocka_unit_test(test_assets),
        cmocka_unit_test(test_response_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
