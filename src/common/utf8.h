/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8, the one decoder of the project: validating, decoding and counting code points, cutting on
 * a character boundary and repairing invalid input. Every module uses these (the console's
 * trimming, the tool schemas' string lengths, the agent's output limits, the worker protocol's
 * string fields). libc only, so the agent links it too. */
#ifndef OBX_COMMON_UTF8_H
#define OBX_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the code point at s (len > 0) and stores its length in bytes in *ret_size. An invalid or
 * truncated sequence (overlong, surrogate, past U+10FFFF) decodes as U+FFFD of length 1, so a
 * loop over a string always advances. */
uint32_t obx_utf8_next(const char *s, size_t len, size_t *ret_size);

/* Code points in s[0..len), each invalid byte counting as one. */
size_t obx_utf8_count(const char *s, size_t len);

/* How many bytes at the end of s[0..len) begin a multi-byte sequence that is not complete yet (a
 * later chunk of the same stream may complete it): 0 to 3. */
size_t obx_utf8_incomplete_tail(const char *s, size_t len);

/* The largest n <= limit such that s[0..n) does not end inside a multi-byte sequence that
 * s[0..len) continues past n. With limit >= len returns len. */
size_t obx_utf8_cut(const char *s, size_t len, size_t limit);

/* True when s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
bool obx_utf8_valid(const char *s, size_t len);

/* A NUL-terminated copy of s[0..len) with every invalid sequence replaced by U+FFFD and NUL bytes
 * kept. *ret_len receives the output length. The caller frees the result. */
char *obx_utf8_sanitize(const char *s, size_t len, size_t *ret_len);

#endif
