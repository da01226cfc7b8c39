/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration reader every command uses: unset variables take their defaults, the
 * original's alias is read when ours is unset, and a malformed or out-of-range value is an error
 * that names the variable and what it expects (never a silent fallback). --help lists each
 * variable with its default and range; doctor's view hides secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/config.h"

struct settings {
    int count;
    uint64_t bytes;
    uint32_t millis;
    bool flag;
    int mode;
    const char *name;
    char *secret;
};

#define F(m) OBX_CONFIG_FIELD(struct settings, m)

static const char *const modes[] = {"auto", "fast", NULL};

static const struct obx_config_var vars[] = {
    {"TEST_CFG_COUNT", "OLD_CFG_COUNT", OBX_CONFIG_INT, F(count), "5", 1, 10, 0, NULL, 0,
     "how many"},
    {"TEST_CFG_MB", NULL, OBX_CONFIG_INT, F(bytes), "2", 1, 1024, 1 << 20, NULL, 0, "size, MiB"},
    {"TEST_CFG_CPUS", NULL, OBX_CONFIG_DECIMAL, F(millis), "1.5", 0, 64, 1000, NULL, 0, "CPUs"},
    {"TEST_CFG_FLAG", NULL, OBX_CONFIG_BOOL, F(flag), "false", 0, 0, 0, NULL, 0, "a switch"},
    {"TEST_CFG_MODE", NULL, OBX_CONFIG_CHOICE, F(mode), "auto", 0, 0, 0, modes, 0, "the mode"},
    {"TEST_CFG_NAME", NULL, OBX_CONFIG_STR, F(name), "box", 0, 0, 0, NULL, 0, "a name"},
    {"TEST_CFG_SECRET", NULL, OBX_CONFIG_STR, F(secret), NULL, 0, 0, 0, NULL,
     OBX_CONFIG_COPY | OBX_CONFIG_SECRET, "a secret"},
};

static void clear_env(void)
{
    static const char *const names[] = {"TEST_CFG_COUNT", "OLD_CFG_COUNT",  "TEST_CFG_MB",
                                        "TEST_CFG_CPUS",  "TEST_CFG_FLAG",  "TEST_CFG_MODE",
                                        "TEST_CFG_NAME",  "TEST_CFG_SECRET"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(names); i++)
        unsetenv(names[i]);
}

static int read_settings(struct settings *s, struct obx_error *err)
{
    memset(s, 0, sizeof(*s));
    return obx_config_read(vars, OBX_ARRAY_SIZE(vars), s, err);
}

static void test_defaults_and_values(void **state)
{
    (void)state;
    clear_env();
    struct settings s;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(read_settings(&s, &err), 0);
    assert_int_equal(s.count, 5);
    assert_int_equal(s.bytes, 2u << 20);
    assert_int_equal(s.millis, 1500);
    assert_false(s.flag);
    assert_int_equal(s.mode, 0);
    assert_string_equal(s.name, "box");
    assert_null(s.secret);

    setenv("TEST_CFG_COUNT", "7", 1);
    setenv("TEST_CFG_MB", "", 1); /* empty is unset */
    setenv("TEST_CFG_FLAG", "yes", 1);
    setenv("TEST_CFG_MODE", "FAST", 1);
    setenv("TEST_CFG_SECRET", "  s3cret \n", 1);
    assert_int_equal(read_settings(&s, &err), 0);
    assert_int_equal(s.count, 7);
    assert_int_equal(s.bytes, 2u << 20);
    assert_true(s.flag);
    assert_int_equal(s.mode, 1);
    assert_string_equal(s.secret, "s3cret");
    obx_config_free(vars, OBX_ARRAY_SIZE(vars), &s);
    assert_null(s.secret);
    clear_env();
}

static void test_alias(void **state)
{
    (void)state;
    clear_env();
    struct settings s;
    struct obx_error err = OBX_ERROR_INIT;
    setenv("OLD_CFG_COUNT", "3", 1);
    assert_int_equal(read_settings(&s, &err), 0);
    assert_int_equal(s.count, 3);
    assert_string_equal(obx_config_source(&vars[0]), "OLD_CFG_COUNT");
    setenv("TEST_CFG_COUNT", "4", 1); /* ours wins */
    assert_int_equal(read_settings(&s, &err), 0);
    assert_int_equal(s.count, 4);
    /* A malformed alias is named as such. */
    unsetenv("TEST_CFG_COUNT");
    setenv("OLD_CFG_COUNT", "many", 1);
    assert_int_equal(read_settings(&s, &err), -EINVAL);
    assert_non_null(strstr(err.message, "OLD_CFG_COUNT=many is invalid"));
    clear_env();
}

static void test_malformed_values_stop(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *expect;
    } cases[] = {
        {"TEST_CFG_COUNT", "11",
         "TEST_CFG_COUNT=11 is invalid: expected a whole number from 1 to 10"},
        {"TEST_CFG_COUNT", "5x", "TEST_CFG_COUNT=5x is invalid"},
        {"TEST_CFG_CPUS", "-1", "TEST_CFG_CPUS=-1 is invalid: expected a number from 0 to 64"},
        {"TEST_CFG_FLAG", "maybe", "TEST_CFG_FLAG=maybe is invalid: expected true or false"},
        {"TEST_CFG_MODE", "slow", "TEST_CFG_MODE=slow is invalid: expected auto or fast"},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++) {
        clear_env();
        setenv(cases[i].name, cases[i].value, 1);
        struct settings s;
        struct obx_error err = OBX_ERROR_INIT;
        assert_int_equal(read_settings(&s, &err), -EINVAL);
        if (!strstr(err.message, cases[i].expect))
            fail_msg("%s: got '%s'", cases[i].expect, err.message);
    }
    clear_env();
}

static void test_help_and_print(void **state)
{
    (void)state;
    clear_env();
    setenv("TEST_CFG_SECRET", "hunter2", 1);
    setenv("TEST_CFG_COUNT", "9", 1);
    struct settings s;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(read_settings(&s, &err), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    obx_config_help(f, vars, OBX_ARRAY_SIZE(vars));
    obx_config_print(f, vars, OBX_ARRAY_SIZE(vars), &s);
    fclose(f);
    assert_non_null(strstr(text, "TEST_CFG_COUNT"));
    assert_non_null(strstr(text, "how many (default 5, 1 to 10); also OLD_CFG_COUNT"));
    assert_non_null(strstr(text, "the mode (default auto: auto or fast)"));
    assert_non_null(strstr(text, "TEST_CFG_COUNT=9\n"));
    assert_non_null(strstr(text, "TEST_CFG_MB=2  (default)"));
    assert_non_null(strstr(text, "TEST_CFG_SECRET=(set)"));
    assert_null(strstr(text, "hunter2"));
    free(text);
    obx_config_free(vars, OBX_ARRAY_SIZE(vars), &s);
    clear_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_values),
        cmocka_unit_test(test_alias),
        cmocka_unit_test(test_malformed_values_stop),
        cmocka_unit_test(test_help_and_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
