/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers every module uses: cleanup attributes for scope-bound ownership, TAKE_PTR/TAKE_FD
 * to hand ownership on, array sizes and a few checked conversions. Header only.
 */
#ifndef OBX_COMMON_UTIL_H
#define OBX_COMMON_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OBX_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define OBX_MIN(a, b) ((a) < (b) ? (a) : (b))
#define OBX_MAX(a, b) ((a) > (b) ? (a) : (b))
#define OBX_UNUSED __attribute__((unused))
#define OBX_PRINTF(f, a) __attribute__((format(printf, f, a)))

static inline void obx_freep(void *p)
{
    free(*(void **)p);
}

/* Closes *fd (when open) and leaves -1 behind, keeping errno, so that a cleanup that runs twice
 * or a descriptor reused after it cannot close another file. */
static inline void obx_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
        *fd = -1;
    }
}

static inline void obx_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(obx_freep)
#define _cleanup_close_ _cleanup_(obx_closep)
#define _cleanup_fclose_ _cleanup_(obx_fclosep)

/* Hand ownership on: returns the value and leaves NULL (or -1) behind. */
#define TAKE_PTR(p)             \
    ({                          \
        __typeof__(p) _p = (p); \
        (p) = NULL;             \
        _p;                     \
    })

#define TAKE_FD(fd)     \
    ({                  \
        int _fd = (fd); \
        (fd) = -1;      \
        _fd;            \
    })

/* Allocation that never returns NULL: out of memory aborts, as nothing sane can follow it. */
void *obx_xmalloc(size_t n);
void *obx_xcalloc(size_t n, size_t size);
void *obx_xrealloc(void *p, size_t n);
char *obx_xstrdup(const char *s);
char *obx_xstrndup(const char *s, size_t n);
char *obx_xasprintf(const char *fmt, ...) OBX_PRINTF(1, 2);
char *obx_xvasprintf(const char *fmt, va_list ap) OBX_PRINTF(1, 0);

static inline bool obx_streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static inline bool obx_str_empty(const char *s)
{
    return !s || !*s;
}

/* True when s is NULL, empty or only ASCII white space. */
bool obx_str_blank(const char *s);

/* Parses 1/true/yes/on and 0/false/no/off (case-insensitive); returns -EINVAL otherwise. */
int obx_parse_bool(const char *s, bool *ret);

/* Parses a whole decimal integer in [min, max]; returns -EINVAL or -ERANGE on failure. */
int obx_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);

/* Writes all of buf, retrying on EINTR and short writes. */
int obx_write_all(int fd, const void *buf, size_t len);

/* Sends all of buf on a socket with MSG_NOSIGNAL (a peer that went away is -EPIPE, not
 * SIGPIPE), retrying on EINTR and short sends. */
int obx_send_all(int fd, const void *buf, size_t len);

#endif
