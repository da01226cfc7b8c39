/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker's settings (worker/config.c) as onlyboxes mcp, worker, console --with-worker and
 * doctor read them: ONLYBOXES_BWRAP_HOST_UIDS is one row of the table, so --help lists it, doctor
 * shows its value, and a malformed range stops the program at start-up naming the variable,
 * whichever runtime would have been picked. So does a malformed docker runtime setting, even
 * where "auto" would have fallen back to bubblewrap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/worker.h"

#define HOST_UIDS "ONLYBOXES_BWRAP_HOST_UIDS"

/* What doctor prints of cfg (values) or --help, in a string the caller frees. */
static char *printed(const struct obx_worker_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    struct obx_error err = OBX_ERROR_INIT;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    if (cfg)
        assert_int_equal(obx_worker_config_print(f, cfg, &err), 0);
    else
        obx_worker_config_help(f);
    assert_int_equal(fclose(f), 0);
    assert_non_null(text);
    return text;
}

static void test_host_uids_read(void **state)
{
    (void)state;
    struct obx_worker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    unsetenv(HOST_UIDS);
    assert_int_equal(obx_worker_config_from_env(&cfg, &err), 0);
    assert_null(cfg.bwrap_host_uids); /* the sandbox's own default range */
    setenv(HOST_UIDS, "", 1);         /* empty is unset */
    assert_int_equal(obx_worker_config_from_env(&cfg, &err), 0);
    assert_null(cfg.bwrap_host_uids);
    setenv(HOST_UIDS, "1879048192-1879050000", 1);
    assert_int_equal(obx_worker_config_from_env(&cfg, &err), 0);
    assert_string_equal(cfg.bwrap_host_uids, "1879048192-1879050000");
    char *values = printed(&cfg);
    assert_non_null(strstr(values, "  " HOST_UIDS "=1879048192-1879050000\n"));
    free(values);
    unsetenv(HOST_UIDS);
}

static void test_host_uids_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {"abc", "1000", "0-100", "2000-1000", "1-2147483648", "-5"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        struct obx_worker_config cfg;
        struct obx_error err = OBX_ERROR_INIT;
        setenv(HOST_UIDS, bad[i], 1);
        assert_int_equal(obx_worker_config_from_env(&cfg, &err), -EINVAL);
        char want[128];
        snprintf(want, sizeof(want), HOST_UIDS "=%s is invalid: expected FIRST-LAST", bad[i]);
        if (strncmp(err.message, want, strlen(want)) != 0)
            fail_msg("for %s: %s", bad[i], err.message);
    }
    unsetenv(HOST_UIDS);
}

static void test_host_uids_in_help(void **state)
{
    (void)state;
    char *help = printed(NULL);
    const char *line = strstr(help, "\n  " HOST_UIDS " ");
    assert_non_null(line);
    assert_non_null(strstr(line, "FIRST-LAST"));
    free(help);
}

static void test_docker_setting_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *says;
    } bad[] = {
        {"ONLYBOXES_DOCKER_MEMORY_MB", "abc", "expected a whole number"},
        {"ONLYBOXES_DOCKER_USER", "nobody", "expected UID:GID or UID"},
        {"ONLYBOXES_DOCKER_READONLY_ROOT", "maybe", "ONLYBOXES_DOCKER_READONLY_ROOT=maybe"},
    };
    for (int runtime = 0; runtime < 2; runtime++) {
        setenv("ONLYBOXES_RUNTIME", runtime ? "bubblewrap" : "auto", 1);
        for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
            struct obx_worker_config cfg;
            struct obx_error err = OBX_ERROR_INIT;
            setenv(bad[i].name, bad[i].value, 1);
            assert_true(obx_worker_config_from_env(&cfg, &err) < 0);
            if (!strstr(err.message, bad[i].name) || !strstr(err.message, bad[i].says))
                fail_msg("for %s=%s: %s", bad[i].name, bad[i].value, err.message);
            unsetenv(bad[i].name);
        }
    }
    unsetenv("ONLYBOXES_RUNTIME");
    struct obx_worker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_worker_config_from_env(&cfg, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_uids_read),
        cmocka_unit_test(test_host_uids_malformed),
        cmocka_unit_test(test_host_uids_in_help),
        cmocka_unit_test(test_docker_setting_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
