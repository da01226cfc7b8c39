/* SPDX-License-Identifier: Apache-2.0 */
/* Standard RFC 4648 base64 with padding and no line breaks (what MCP image content needs). */
#ifndef OBX_COMMON_BASE64_H
#define OBX_COMMON_BASE64_H

#include <stddef.h>

/* Returns a NUL-terminated encoding of data[0..len); the caller frees it. */
char *obx_base64_encode(const void *data, size_t len);

/* Decodes s (NUL-terminated); returns NULL on invalid input. *ret_len gets the decoded size. */
unsigned char *obx_base64_decode(const char *s, size_t *ret_len);

#endif
