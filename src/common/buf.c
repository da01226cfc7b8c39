/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded growable buffer; see buf.h. */
#include "buf.h"

#include <stdarg.h>

int obx_buf_append(struct obx_buf *b, const void *data, size_t len)
{
    if (b->max && (len > b->max || b->len > b->max - len))
        return -E2BIG;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        b->data = obx_xrealloc(b->data, cap);
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int obx_buf_appendf(struct obx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    int r = obx_buf_append(b, s, (size_t)n);
    free(s);
    return r;
}

void obx_buf_consume(struct obx_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void obx_buf_reset(struct obx_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *obx_buf_steal(struct obx_buf *b, size_t *ret_len)
{
    char *p = b->data ? b->data : obx_xstrdup("");
    if (ret_len)
        *ret_len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void obx_buf_free(struct obx_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
