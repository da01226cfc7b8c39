/* SPDX-License-Identifier: Apache-2.0 */
/* struct obx_error helpers. */
#include "error.h"

#include <stdarg.h>

int obx_error_set(struct obx_error *err, int errnum, const char *code, const char *fmt, ...)
{
    if (errnum < 0)
        errnum = -errnum;
    if (errnum == 0)
        errnum = EIO;
    if (!err)
        return -errnum;
    err->errnum = errnum;
    snprintf(err->code, sizeof(err->code), "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -errnum;
}

int obx_error_wrap(struct obx_error *err, const char *fmt, ...)
{
    if (!err)
        return -EIO;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char old[sizeof(err->message)];
    memcpy(old, err->message, sizeof(old));
    size_t n = strlen(prefix);
    if (n + 2 >= sizeof(err->message))
        n = sizeof(err->message) - 3;
    memcpy(err->message, prefix, n);
    memcpy(err->message + n, ": ", 2);
    size_t rest = sizeof(err->message) - n - 3;
    size_t olen = strnlen(old, rest);
    memcpy(err->message + n + 2, old, olen);
    err->message[n + 2 + olen] = '\0';
    if (err->errnum == 0)
        err->errnum = EIO;
    return -err->errnum;
}

const char *obx_error_text(const struct obx_error *err, char *buf, size_t size)
{
    if (err->code[0] && err->message[0])
        snprintf(buf, size, "%s: %s", err->code, err->message);
    else
        snprintf(buf, size, "%s", err->code[0] ? err->code : err->message);
    return buf;
}
