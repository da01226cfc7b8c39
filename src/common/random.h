/* SPDX-License-Identifier: Apache-2.0 */
/* Random identifiers from getrandom(2): hex strings and UUIDv4. */
#ifndef OBX_COMMON_RANDOM_H
#define OBX_COMMON_RANDOM_H

#include "util.h"

/* Fills buf with n random bytes; aborts if the kernel cannot provide them. */
void obx_random_bytes(void *buf, size_t n);

/* Writes 2*nbytes lower-hex characters plus NUL into out (size >= 2*nbytes+1). */
void obx_random_hex(char *out, size_t nbytes);

/* Writes a lower-case 8-4-4-4-12 UUIDv4 plus NUL into out (size >= 37). */
void obx_random_uuid(char out[static 37]);

#endif
