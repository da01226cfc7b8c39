/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pure helpers of the console (no I/O, no third-party calls), kept apart so unit tests reach
 * them directly: Unicode-aware trimming as the reference's Go code does it (decoding with
 * common/utf8.h), token masking, cookie parsing, pagination parameters and HTTP dates.
 */
#ifndef OBX_CONSOLE_UTIL_H
#define OBX_CONSOLE_UTIL_H

#include "common/util.h"

/* Go's unicode.IsSpace. */
bool obx_console_is_space(uint32_t cp);
/* A copy of s without leading and trailing Unicode white space. Caller frees. */
char *obx_console_trim(const char *s);
/* True when s contains any Unicode white space. */
bool obx_console_has_space(const char *s);
/* ASCII-lower-cased copy (the key for case-insensitive uniqueness). Caller frees. */
char *obx_console_lower(const char *s);

/* The reference's mask: L <= 8 gives L asterisks, else first 4 + max(L-8, 6) asterisks + last 4
 * (L in bytes). Writes at most size-1 bytes plus NUL. */
void obx_console_token_mask(const char *token, char *out, size_t size);

/* Copies the value of cookie `name` from a Cookie header into out. Returns 0, -ENOENT when
 * absent, -E2BIG when the value does not fit. */
int obx_console_cookie_value(const char *header, const char *name, char *out, size_t size);

/* A pagination parameter: NULL gives def; a positive integer is clamped to max; anything else
 * is -EINVAL. */
int obx_console_parse_page_param(const char *s, int64_t def, int64_t max, int64_t *ret);

/* HTTP date (IMF-fixdate) for cookie Expires. out must hold 40 bytes. */
void obx_console_format_http_date(int64_t unix_ms, char out[static 40]);
/* The host of an authority "host", "host:port" or "[v6]:port" (brackets removed), lower-cased,
 * into out. -EINVAL when malformed or longer than size-1. */
int obx_console_authority_host(const char *authority, char *out, size_t size);
/* True when a media-range list (an Accept header) admits type ("application/json"): the type
 * itself, its "major/ *" or "* / *" wildcard, compared case-insensitively, parameters ignored. */
bool obx_console_accepts(const char *accept, const char *type);

#endif
