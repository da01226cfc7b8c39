/* SPDX-License-Identifier: Apache-2.0 */
/* Agent wire protocol: header encoding and the incremental frame decoder (whole, split and
 * malformed input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Builds one frame into out; returns its size. */
static size_t build(uint8_t *out, uint8_t type, uint32_t id, const char *payload)
{
    size_t len = strlen(payload);
    obx_agent_header_encode(out, type, id, len);
    memcpy(out + OBX_AGENT_HEADER_SIZE, payload, len);
    return OBX_AGENT_HEADER_SIZE + len;
}

static void test_header_layout(void **state)
{
    (void)state;
    uint8_t h[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(h, OBX_AF_STDOUT, 0x01020304u, 3);
    const uint8_t want[] = {0, 0, 0, 8, OBX_AF_STDOUT, 1, 2, 3, 4};
    assert_memory_equal(h, want, sizeof(want));
}

static void test_decode_whole_frames(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = build(buf, OBX_AF_EXEC, 7, "{\"argv\":[\"true\"]}");
    n += build(buf + n, OBX_AF_PING, 8, "");
    struct obx_agent_decoder d;
    obx_agent_decoder_init(&d);
    assert_int_equal(obx_agent_decoder_feed(&d, buf, n), 0);
    struct obx_agent_frame f;
    assert_int_equal(obx_agent_decoder_next(&d, &f), 1);
    assert_int_equal(f.type, OBX_AF_EXEC);
    assert_int_equal(f.id, 7);
    assert_int_equal(f.len, strlen("{\"argv\":[\"true\"]}"));
    assert_memory_equal(f.payload, "{\"argv\":[\"true\"]}", f.len);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 1);
    assert_int_equal(f.type, OBX_AF_PING);
    assert_int_equal(f.id, 8);
    assert_int_equal(f.len, 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 0);
    obx_agent_decoder_done(&d);
}

static void test_decode_byte_by_byte(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t n = 0;
    for (uint32_t i = 1; i <= 5; i++)
        n += build(buf + n, OBX_AF_FREAD, i, i % 2 ? "{\"path\":\"a\"}" : "xyz");
    struct obx_agent_decoder d;
    obx_agent_decoder_init(&d);
    uint32_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(obx_agent_decoder_feed(&d, buf + i, 1), 0);
        struct obx_agent_frame f;
        int r;
        while ((r = obx_agent_decoder_next(&d, &f)) == 1) {
            seen++;
            assert_int_equal(f.id, seen);
            const char *want = seen % 2 ? "{\"path\":\"a\"}" : "xyz";
            assert_int_equal(f.len, strlen(want));
            assert_memory_equal(f.payload, want, f.len);
        }
        assert_int_equal(r, 0);
    }
    assert_int_equal(seen, 5);
    obx_agent_decoder_done(&d);
}

static void test_decode_odd_splits(void **state)
{
    (void)state;
    /* A large payload crossing the decoder's initial buffer, fed in uneven pieces. */
    size_t plen = 200000;
    uint8_t *buf = malloc(OBX_AGENT_HEADER_SIZE + plen + 64);
    assert_non_null(buf);
    obx_agent_header_encode(buf, OBX_AF_FWRITE, 42, plen);
    for (size_t i = 0; i < plen; i++)
        buf[OBX_AGENT_HEADER_SIZE + i] = (uint8_t)(i * 7);
    size_t n = OBX_AGENT_HEADER_SIZE + plen;
    n += build(buf + n, OBX_AF_CANCEL, 43, "");
    struct obx_agent_decoder d;
    obx_agent_decoder_init(&d);
    struct obx_agent_frame f;
    size_t off = 0, step = 3;
    int frames = 0;
    while (off < n) {
        size_t k = step < n - off ? step : n - off;
        assert_int_equal(obx_agent_decoder_feed(&d, buf + off, k), 0);
        off += k;
        step = step * 3 + 1;
        while (obx_agent_decoder_next(&d, &f) == 1) {
            frames++;
            if (f.id == 42) {
                assert_int_equal(f.type, OBX_AF_FWRITE);
                assert_int_equal(f.len, plen);
                assert_memory_equal(f.payload, buf + OBX_AGENT_HEADER_SIZE, plen);
            } else {
                assert_int_equal(f.id, 43);
                assert_int_equal(f.type, OBX_AF_CANCEL);
            }
        }
    }
    assert_int_equal(frames, 2);
    obx_agent_decoder_done(&d);
    free(buf);
}

static void test_decode_oversize(void **state)
{
    (void)state;
    struct obx_agent_decoder d;
    struct obx_agent_frame f;
    uint8_t h[OBX_AGENT_HEADER_SIZE];

    /* Rejected as soon as the length field is in, before any payload arrives. */
    obx_agent_decoder_init(&d);
    obx_be32_put(h, OBX_AGENT_MAX_FRAME + 1);
    assert_int_equal(obx_agent_decoder_feed(&d, h, 4), 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), -EBADMSG);
    obx_agent_decoder_done(&d);

    /* The largest allowed frame just waits for its bytes. */
    obx_agent_decoder_init(&d);
    obx_be32_put(h, OBX_AGENT_MAX_FRAME);
    assert_int_equal(obx_agent_decoder_feed(&d, h, 4), 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 0);
    obx_agent_decoder_done(&d);

    /* A length that cannot hold type + id. */
    obx_agent_decoder_init(&d);
    obx_be32_put(h, 4);
    assert_int_equal(obx_agent_decoder_feed(&d, h, 4), 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), -EBADMSG);
    obx_agent_decoder_done(&d);

    /* A bad frame after a good one: the good one still comes out first. */
    uint8_t buf[64];
    size_t n = build(buf, OBX_AF_PING, 1, "");
    obx_be32_put(buf + n, 0xffffffffu);
    n += 4;
    obx_agent_decoder_init(&d);
    assert_int_equal(obx_agent_decoder_feed(&d, buf, n), 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 1);
    assert_int_equal(f.id, 1);
    assert_int_equal(obx_agent_decoder_next(&d, &f), -EBADMSG);
    obx_agent_decoder_done(&d);
}

static void test_decode_needs_more(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = build(buf, OBX_AF_PING, 9, "abc");
    struct obx_agent_decoder d;
    struct obx_agent_frame f;
    obx_agent_decoder_init(&d);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 0); /* empty */
    assert_int_equal(obx_agent_decoder_feed(&d, buf, 2), 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 0); /* half a length */
    assert_int_equal(obx_agent_decoder_feed(&d, buf + 2, n - 3), 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 0); /* one byte short */
    assert_int_equal(obx_agent_decoder_feed(&d, buf + n - 1, 1), 0);
    assert_int_equal(obx_agent_decoder_next(&d, &f), 1);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.payload, "abc", 3);
    obx_agent_decoder_done(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_layout),       cmocka_unit_test(test_decode_whole_frames),
        cmocka_unit_test(test_decode_byte_by_byte), cmocka_unit_test(test_decode_odd_splits),
        cmocka_unit_test(test_decode_oversize),     cmocka_unit_test(test_decode_needs_more),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
