/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A growable byte buffer with a hard ceiling. Appending past the ceiling fails with -E2BIG and
 * leaves the buffer as it was, so a peer can never make us allocate more than we allow.
 * The data is always NUL-terminated (the NUL is not counted in len).
 */
#ifndef OBX_COMMON_BUF_H
#define OBX_COMMON_BUF_H

#include "util.h"

struct obx_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = no ceiling */
};

#define OBX_BUF_INIT(ceiling) \
    {                         \
        NULL, 0, 0, (ceiling) \
    }

int obx_buf_append(struct obx_buf *b, const void *data, size_t len);
int obx_buf_appendf(struct obx_buf *b, const char *fmt, ...) OBX_PRINTF(2, 3);
/* Drops the first n bytes. */
void obx_buf_consume(struct obx_buf *b, size_t n);
void obx_buf_reset(struct obx_buf *b);
/* Returns the data (caller frees) and empties the buffer. Never NULL. */
char *obx_buf_steal(struct obx_buf *b, size_t *ret_len);
void obx_buf_free(struct obx_buf *b);

#endif
