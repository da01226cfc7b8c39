/* SPDX-License-Identifier: Apache-2.0 */
/* Log lines never carry a token given in a URL, in text or JSON form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"

/* What one log call writes to stderr. */
static char *logged(const char *fmt, const char *arg)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved = dup(STDERR_FILENO);
    dup2(p[1], STDERR_FILENO);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    obx_log_write(OBX_LOG_ERROR, NULL, 0, fmt, arg);
#pragma GCC diagnostic pop
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    static char buf[8192];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    return buf;
}

static void test_redacts_tokens(void **state)
{
    static const char secret[] = "obx_9f3c2a7e61d04b5a8c11e2f3a4b5c6d7";
    static const char *const forms[] = {
        "POST /mcp?token=%s HTTP/1.1",
        "GET /mcp?session=1&token=%s&x=2",
        "url \"http://h/mcp?access_token=%s\"",
        "token=%s",
        "short token=%.3s end",
    };
    for (int json = 0; json < 2; json++) {
        obx_log_set_json(json);
        for (size_t i = 0; i < OBX_ARRAY_SIZE(forms); i++) {
            const char *line = logged(forms[i], secret);
            if (strstr(line, "obx_9f3") || strstr(line, "61d04b5a8c11")) {
                fprintf(stderr, "leaked: %s", line);
                fail();
            }
            assert_non_null(strstr(line, "token="));
        }
        assert_non_null(strstr(logged("next=%s", "/mcp?session=1&x=2"), "session=1&x=2"));
    }
    obx_log_set_json(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redacts_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
