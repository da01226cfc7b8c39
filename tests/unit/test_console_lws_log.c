/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console answers a request head that does not fit with 431 by reading libwebsockets' log
 * (src/console/http/http.c): lws has no callback for it. This pins that dependency: every text
 * http.c looks for must be in the libwebsockets this program is linked with, so an upgrade that
 * rewords one fails here, naming it, rather than the 431 quietly becoming a bare close.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "console/http/http.h"

static int find_lws(struct dl_phdr_info *info, size_t size, void *data)
{
    char *path = data;
    if (info->dlpi_name && strstr(info->dlpi_name, "libwebsockets")) {
        snprintf(path, PATH_MAX, "%s", info->dlpi_name);
        return 1;
    }
    return 0;
}

static void test_lws_still_writes_what_the_431_reads(void **state)
{
    (void)state;
    char path[PATH_MAX] = "";
    dl_iterate_phdr(find_lws, path);
    if (!path[0])
        fail_msg("libwebsockets is not among the loaded libraries (a static build?): check the "
                 "texts of src/console/http/http.c against it by hand");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    const char *lib = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    assert_true(lib != MAP_FAILED);
    close(fd);
    for (size_t i = 0; i < obx_http_lws_log_n_texts; i++) {
        const char *t = obx_http_lws_log_texts[i];
        if (!memmem(lib, (size_t)st.st_size, t, strlen(t)))
            fail_msg("%s no longer contains the log text '%s' that the console's 431 answer "
                     "reads (src/console/http/http.c, lws_log_emit): adapt it to this "
                     "libwebsockets",
                     path, t);
    }
    munmap((void *)lib, (size_t)st.st_size);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lws_still_writes_what_the_431_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
