/* SPDX-License-Identifier: Apache-2.0 */
/* Random ids; see random.h. */
#include "random.h"

#include <sys/random.h>

void obx_random_bytes(void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}

void obx_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[64];
    size_t done = 0;
    while (done < nbytes) {
        size_t chunk = OBX_MIN(sizeof(b), nbytes - done);
        obx_random_bytes(b, chunk);
        for (size_t i = 0; i < chunk; i++) {
            out[2 * (done + i)] = hex[b[i] >> 4];
            out[2 * (done + i) + 1] = hex[b[i] & 15];
        }
        done += chunk;
    }
    out[2 * nbytes] = '\0';
}

void obx_random_uuid(char out[static 37])
{
    unsigned char b[16];
    obx_random_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
