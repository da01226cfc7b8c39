/* SPDX-License-Identifier: Apache-2.0 */
/* Frame encoding and incremental decoding for the agent protocol; libc only (linked into both the
 * static agent and onlyboxes). */
#include "protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void obx_agent_header_encode(uint8_t out[OBX_AGENT_HEADER_SIZE], uint8_t type, uint32_t id,
                             size_t len)
{
    obx_be32_put(out, (uint32_t)(len + 5));
    out[4] = type;
    obx_be32_put(out + 5, id);
}

void obx_agent_decoder_init(struct obx_agent_decoder *d)
{
    memset(d, 0, sizeof(*d));
}

void obx_agent_decoder_done(struct obx_agent_decoder *d)
{
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

int obx_agent_decoder_feed(struct obx_agent_decoder *d, const void *data, size_t len)
{
    /* Drop consumed bytes before growing. */
    if (d->off > 0) {
        memmove(d->buf, d->buf + d->off, d->len - d->off);
        d->len -= d->off;
        d->off = 0;
    }
    if (d->len + len > d->cap) {
        size_t cap = d->cap ? d->cap : 64 * 1024;
        while (cap < d->len + len)
            cap *= 2;
        uint8_t *p = realloc(d->buf, cap);
        if (!p)
            return -ENOMEM;
        d->buf = p;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, data, len);
    d->len += len;
    return 0;
}

int obx_agent_decoder_next(struct obx_agent_decoder *d, struct obx_agent_frame *f)
{
    size_t avail = d->len - d->off;
    if (avail < 4)
        return 0;
    uint32_t flen = obx_be32_get(d->buf + d->off);
    if (flen < 5 || flen > OBX_AGENT_MAX_FRAME)
        return -EBADMSG;
    if (avail < 4 + (size_t)flen)
        return 0;
    const uint8_t *p = d->buf + d->off;
    f->type = p[4];
    f->id = obx_be32_get(p + 5);
    f->payload = p + OBX_AGENT_HEADER_SIZE;
    f->len = flen - 5;
    d->off += 4 + (size_t)flen;
    return 1;
}
