/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the worker protocol's frames as they come off the wire (src/rpc/codec.c). The input
 * is one gRPC message, decoded both ways: as a ConnectRequest (what the console reads from a
 * worker) and as a ConnectResponse (what a worker reads from the console). A frame that decodes
 * is encoded again and the encoding decoded once more.
 * Checked: a decode either fails with -EBADMSG or gives a kind of its own direction; a decoded
 * frame has no NULL string and no byte field with a length but no data; a known frame encodes,
 * its encoding decodes to the same kind, and encoding that again gives the same bytes (what one
 * side re-sends is stable); an unset or unknown payload does not encode.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "rpc/rpc.h"

static bool is_request_kind(enum obx_rpc_kind k)
{
    return k == OBX_RPC_HELLO || k == OBX_RPC_HEARTBEAT || k == OBX_RPC_RESULT ||
           k == OBX_RPC_OUTPUT || k == OBX_RPC_FILE_CHUNK || k == OBX_RPC_FILE_ACK ||
           k == OBX_RPC_PTY_OUTPUT;
}

static bool is_response_kind(enum obx_rpc_kind k)
{
    return k == OBX_RPC_ACK || k == OBX_RPC_HEARTBEAT_ACK || k == OBX_RPC_DISPATCH ||
           k == OBX_RPC_CANCEL || k == OBX_RPC_FILE_CHUNK_TO_WORKER ||
           k == OBX_RPC_FILE_ACK_TO_WORKER || k == OBX_RPC_PTY_INPUT;
}

#define CHECK_STR(s) FUZZ_CHECK((s) != NULL, "%s is NULL", #s)
#define CHECK_BYTES(p, n) FUZZ_CHECK((n) == 0 || (p) != NULL, "%s has %zu bytes but no data", #p, n)

static void check_strings(char *const *v, size_t n)
{
    FUZZ_CHECK(n == 0 || v != NULL, "a list of %zu strings without storage", n);
    for (size_t i = 0; i < n; i++)
        CHECK_STR(v[i]);
}

static void check_frame(const struct obx_rpc_frame *f)
{
    switch (f->kind) {
    case OBX_RPC_HELLO: {
        const struct obx_rpc_hello *h = &f->u.hello;
        CHECK_STR(h->node_id);
        CHECK_STR(h->node_name);
        CHECK_STR(h->executor_kind);
        CHECK_STR(h->version);
        CHECK_STR(h->worker_secret);
        FUZZ_CHECK(h->n_labels == 0 || h->labels, "labels without storage");
        for (size_t i = 0; i < h->n_labels; i++) {
            CHECK_STR(h->labels[i].key);
            CHECK_STR(h->labels[i].value);
        }
        FUZZ_CHECK(h->n_capabilities == 0 || h->capabilities, "capabilities without storage");
        for (size_t i = 0; i < h->n_capabilities; i++)
            CHECK_STR(h->capabilities[i].name);
        check_strings(h->extensions, h->n_extensions);
        FUZZ_CHECK(h->n_live_sessions == 0 || h->live_sessions, "live sessions without storage");
        for (size_t i = 0; i < h->n_live_sessions; i++)
            CHECK_STR(h->live_sessions[i].session_id);
        break;
    }
    case OBX_RPC_HEARTBEAT:
        CHECK_STR(f->u.heartbeat.node_id);
        CHECK_STR(f->u.heartbeat.session_id);
        break;
    case OBX_RPC_RESULT:
        CHECK_STR(f->u.result.command_id);
        CHECK_STR(f->u.result.error_code);
        CHECK_STR(f->u.result.error_message);
        CHECK_BYTES(f->u.result.payload, f->u.result.payload_len);
        break;
    case OBX_RPC_OUTPUT:
        CHECK_STR(f->u.output.command_id);
        CHECK_BYTES(f->u.output.data, f->u.output.data_len);
        break;
    case OBX_RPC_ACK:
        CHECK_STR(f->u.ack.session_id);
        check_strings(f->u.ack.extensions, f->u.ack.n_extensions);
        break;
    case OBX_RPC_DISPATCH:
        CHECK_STR(f->u.dispatch.command_id);
        CHECK_STR(f->u.dispatch.capability);
        CHECK_BYTES(f->u.dispatch.payload, f->u.dispatch.payload_len);
        break;
    case OBX_RPC_CANCEL:
        CHECK_STR(f->u.cancel.command_id);
        CHECK_STR(f->u.cancel.reason);
        break;
    case OBX_RPC_FILE_CHUNK:
    case OBX_RPC_FILE_CHUNK_TO_WORKER:
        CHECK_STR(f->u.chunk.command_id);
        CHECK_BYTES(f->u.chunk.data, f->u.chunk.data_len);
        break;
    case OBX_RPC_FILE_ACK:
    case OBX_RPC_FILE_ACK_TO_WORKER:
        CHECK_STR(f->u.file_ack.command_id);
        break;
    case OBX_RPC_PTY_OUTPUT:
        CHECK_STR(f->u.pty_output.command_id);
        CHECK_BYTES(f->u.pty_output.data, f->u.pty_output.data_len);
        CHECK_BYTES(f->u.pty_output.event, f->u.pty_output.event_len);
        break;
    case OBX_RPC_PTY_INPUT:
        CHECK_STR(f->u.pty_input.command_id);
        CHECK_BYTES(f->u.pty_input.data, f->u.pty_input.data_len);
        break;
    case OBX_RPC_HEARTBEAT_ACK:
    case OBX_RPC_NONE:
        break;
    }
}

static void one_direction(bool to_console, const uint8_t *data, size_t size)
{
    const char *dir = to_console ? "ConnectRequest" : "ConnectResponse";
    struct obx_rpc_frame f;
    int r = obx_rpc_decode(to_console, data, size, &f);
    if (r < 0) {
        FUZZ_CHECK(r == -EBADMSG, "%s: decode failed with %d, not -EBADMSG", dir, r);
        return;
    }
    FUZZ_CHECK(r == 0, "%s: decode returned %d", dir, r);
    FUZZ_CHECK(f.kind == OBX_RPC_NONE ||
                   (to_console ? is_request_kind(f.kind) : is_response_kind(f.kind)),
               "%s decoded as kind %d", dir, f.kind);
    check_frame(&f);

    uint8_t *enc = NULL;
    size_t enc_len = 0;
    r = obx_rpc_encode(&f, &enc, &enc_len);
    if (f.kind == OBX_RPC_NONE) {
        FUZZ_CHECK(r == -EINVAL, "%s: a frame without payload encoded (%d)", dir, r);
        obx_rpc_frame_done(&f);
        return;
    }
    FUZZ_CHECK(r == 0, "%s: kind %d decoded but does not encode (%d)", dir, f.kind, r);

    struct obx_rpc_frame again;
    r = obx_rpc_decode(to_console, enc, enc_len, &again);
    FUZZ_CHECK(r == 0, "%s: our own encoding of kind %d does not decode (%d)", dir, f.kind, r);
    FUZZ_CHECK(again.kind == f.kind, "%s: kind %d came back as %d", dir, f.kind, again.kind);
    check_frame(&again);

    uint8_t *enc2 = NULL;
    size_t enc2_len = 0;
    r = obx_rpc_encode(&again, &enc2, &enc2_len);
    FUZZ_CHECK(r == 0, "%s: kind %d does not encode a second time (%d)", dir, f.kind, r);
    FUZZ_CHECK(enc2_len == enc_len && memcmp(enc, enc2, enc_len) == 0,
               "%s: kind %d encodes to %zu bytes, then to %zu different ones", dir, f.kind, enc_len,
               enc2_len);

    free(enc2);
    free(enc);
    obx_rpc_frame_done(&again);
    obx_rpc_frame_done(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one_direction(true, data, size);
    one_direction(false, data, size);
    return 0;
}
