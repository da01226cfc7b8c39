/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one UTF-8 module: what the console's name limits, the tool schemas' string lengths and the
 * agent's output cuts rely on. Characters are counted as a person counts them, invalid bytes
 * never stall a loop, and a cut never splits a character.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/utf8.h"
#include "common/util.h"

static void test_next(void **state)
{
    (void)state;
    size_t n;
    assert_int_equal(obx_utf8_next("a", 1, &n), 'a');
    assert_int_equal(n, 1);
    assert_int_equal(obx_utf8_next("\xc3\xa9", 2, &n), 0xe9);
    assert_int_equal(n, 2);
    assert_int_equal(obx_utf8_next("\xe3\x80\x80", 3, &n), 0x3000);
    assert_int_equal(n, 3);
    assert_int_equal(obx_utf8_next("\xf0\x9f\x98\x80", 4, &n), 0x1f600);
    assert_int_equal(n, 4);
    /* Invalid: a lone continuation byte, an overlong '/', a surrogate, past U+10FFFF, cut short. */
    static const char *const bad[] = {"\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                      "\xe3\x80"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        assert_int_equal(obx_utf8_next(bad[i], strlen(bad[i]), &n), 0xfffd);
        assert_int_equal(n, 1);
    }
}

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(obx_utf8_count("\xc3\xa9t\xc3\xa9", 5), 3);
    assert_int_equal(obx_utf8_count("\xff\xfe", 2), 2);
    assert_int_equal(obx_utf8_count("", 0), 0);
    assert_int_equal(obx_utf8_count("\xf0\x9f\x98\x80!", 5), 2);
}

static void test_incomplete_tail(void **state)
{
    (void)state;
    assert_int_equal(obx_utf8_incomplete_tail("ab", 2), 0);
    assert_int_equal(obx_utf8_incomplete_tail("a\xc3", 2), 1);
    assert_int_equal(obx_utf8_incomplete_tail("a\xe3\x80", 3), 2);
    assert_int_equal(obx_utf8_incomplete_tail("a\xf0\x9f\x98", 4), 3);
    assert_int_equal(obx_utf8_incomplete_tail("a\xf0\x9f\x98\x80", 5), 0);
    assert_int_equal(obx_utf8_incomplete_tail("\x80\x80\x80\x80", 4), 0);
}

static void test_cut_and_sanitize(void **state)
{
    (void)state;
    /* "é" is 2 bytes: a limit of 2 on "aé" keeps only "a". */
    assert_int_equal(obx_utf8_cut("a\xc3\xa9", 3, 2), 1);
    assert_int_equal(obx_utf8_cut("a\xc3\xa9", 3, 3), 3);
    assert_true(obx_utf8_valid("a\xc3\xa9", 3));
    assert_false(obx_utf8_valid("a\xc3", 2));
    size_t len;
    char *s = obx_utf8_sanitize("a\xffz", 3, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "a\xef\xbf\xbdz", 5);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_incomplete_tail),
        cmocka_unit_test(test_cut_and_sanitize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
