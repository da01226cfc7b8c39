/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 helpers: cutting on a character boundary and repairing invalid input. libc only, so the
 * agent links it too. */
#ifndef OBX_COMMON_UTF8_H
#define OBX_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The largest n <= limit such that s[0..n) does not end inside a multi-byte sequence that
 * s[0..len) continues past n. With limit >= len returns len. */
size_t obx_utf8_cut(const char *s, size_t len, size_t limit);

/* True when s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
bool obx_utf8_valid(const char *s, size_t len);

/* A NUL-terminated copy of s[0..len) with every invalid sequence replaced by U+FFFD and NUL bytes
 * kept. *ret_len receives the output length. The caller frees the result. */
char *obx_utf8_sanitize(const char *s, size_t len, size_t *ret_len);

#endif
