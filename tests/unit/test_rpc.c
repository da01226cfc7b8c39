/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker protocol module: every frame survives encoding and decoding; bytes that are not a
 * frame (or carry a string that is not UTF-8) are refused; and a real gRPC server and client on
 * loopback carry frames both ways, in order, and report how a stream ended with its status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "common/clock.h"
#include "rpc/rpc.h"

static struct obx_rpc_frame roundtrip(const struct obx_rpc_frame *in, bool to_console)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(obx_rpc_encode(in, &buf, &len), 0);
    struct obx_rpc_frame out;
    assert_int_equal(obx_rpc_decode(to_console, buf, len, &out), 0);
    free(buf);
    assert_int_equal(out.kind, in->kind);
    return out;
}

static void test_codec(void **state)
{
    (void)state;
    char *exts[] = {OBX_RPC_EXT_CANCEL, OBX_RPC_EXT_OUTPUT};
    struct obx_rpc_label labels[] = {{"zone", "eu"}, {"gpu", "no"}};
    struct obx_rpc_capability caps[] = {{"echo", 8}, {"pythonExec", 4}};
    struct obx_rpc_live_session live[] = {{"obx:acc:s1", 1234, true}};
    struct obx_rpc_frame h = {.kind = OBX_RPC_HELLO};
    h.u.hello = (struct obx_rpc_hello){.node_id = "node-1",
                                       .node_name = "n1",
                                       .executor_kind = "docker",
                                       .version = "v1",
                                       .worker_secret = "s3cret",
                                       .labels = labels,
                                       .n_labels = 2,
                                       .capabilities = caps,
                                       .n_capabilities = 2,
                                       .has_terminal_capacity = true,
                                       .max_active_sessions = 9,
                                       .active_session_count = 3,
                                       .extensions = exts,
                                       .n_extensions = 2,
                                       .live_sessions = live,
                                       .n_live_sessions = 1};
    struct obx_rpc_frame o = roundtrip(&h, true);
    assert_string_equal(o.u.hello.node_id, "node-1");
    assert_string_equal(o.u.hello.worker_secret, "s3cret");
    assert_int_equal(o.u.hello.n_labels, 2);
    assert_int_equal(o.u.hello.n_capabilities, 2);
    assert_string_equal(o.u.hello.capabilities[1].name, "pythonExec");
    assert_int_equal(o.u.hello.capabilities[1].max_inflight, 4);
    assert_true(o.u.hello.has_terminal_capacity);
    assert_int_equal(o.u.hello.max_active_sessions, 9);
    assert_true(obx_rpc_has_extension(o.u.hello.extensions, o.u.hello.n_extensions, "output"));
    assert_false(obx_rpc_has_extension(o.u.hello.extensions, o.u.hello.n_extensions, "nope"));
    assert_int_equal(o.u.hello.n_live_sessions, 1);
    assert_int_equal(o.u.hello.live_sessions[0].lease_expires_unix_ms, 1234);
    assert_true(o.u.hello.live_sessions[0].busy);
    obx_rpc_frame_done(&o);

    /* Absent optional parts stay absent. */
    struct obx_rpc_frame bare = {.kind = OBX_RPC_HELLO};
    o = roundtrip(&bare, true);
    assert_string_equal(o.u.hello.node_id, "");
    assert_false(o.u.hello.has_terminal_capacity);
    obx_rpc_frame_done(&o);

    uint8_t payload[] = "{\"message\":\"hi\"}";
    struct obx_rpc_frame d = {.kind = OBX_RPC_DISPATCH};
    d.u.dispatch = (struct obx_rpc_dispatch){"c1", "echo", payload, sizeof(payload) - 1, 99};
    o = roundtrip(&d, false);
    assert_string_equal(o.u.dispatch.capability, "echo");
    assert_int_equal(o.u.dispatch.payload_len, sizeof(payload) - 1);
    assert_memory_equal(o.u.dispatch.payload, payload, sizeof(payload) - 1);
    assert_int_equal(o.u.dispatch.deadline_unix_ms, 99);
    obx_rpc_frame_done(&o);

    struct obx_rpc_frame r = {.kind = OBX_RPC_RESULT};
    r.u.result = (struct obx_rpc_result){.command_id = "c1",
                                         .has_error = true,
                                         .error_code = "session_busy",
                                         .error_message = "busy"};
    o = roundtrip(&r, true);
    assert_true(o.u.result.has_error);
    assert_string_equal(o.u.result.error_code, "session_busy");
    assert_null(o.u.result.payload);
    obx_rpc_frame_done(&o);

    struct obx_rpc_frame c = {.kind = OBX_RPC_CANCEL};
    c.u.cancel = (struct obx_rpc_cancel){"c1", "canceled by the caller"};
    o = roundtrip(&c, false);
    assert_string_equal(o.u.cancel.reason, "canceled by the caller");
    obx_rpc_frame_done(&o);

    struct obx_rpc_frame out = {.kind = OBX_RPC_OUTPUT};
    out.u.output = (struct obx_rpc_output){"c1", OBX_RPC_OUTPUT_STDERR, payload, 3, 0};
    o = roundtrip(&out, true);
    assert_int_equal(o.u.output.stream, OBX_RPC_OUTPUT_STDERR);
    assert_int_equal(o.u.output.data_len, 3);
    obx_rpc_frame_done(&o);

    /* "files": chunks and acknowledgements, both ways; a chunk of the largest size stays far
     * below the 4 MiB message limit. */
    static uint8_t chunk_data[OBX_RPC_FILE_CHUNK_BYTES];
    memset(chunk_data, 0xab, sizeof(chunk_data));
    const enum obx_rpc_kind chunk_kinds[] = {OBX_RPC_FILE_CHUNK, OBX_RPC_FILE_CHUNK_TO_WORKER};
    for (size_t i = 0; i < 2; i++) {
        struct obx_rpc_frame ch = {.kind = chunk_kinds[i]};
        ch.u.chunk = (struct obx_rpc_file_chunk){"c9", chunk_data, sizeof(chunk_data), i == 1};
        o = roundtrip(&ch, i == 0);
        assert_string_equal(o.u.chunk.command_id, "c9");
        assert_int_equal(o.u.chunk.data_len, sizeof(chunk_data));
        assert_memory_equal(o.u.chunk.data, chunk_data, sizeof(chunk_data));
        assert_int_equal(o.u.chunk.eof, i == 1);
        obx_rpc_frame_done(&o);
    }
    const enum obx_rpc_kind ack_kinds[] = {OBX_RPC_FILE_ACK, OBX_RPC_FILE_ACK_TO_WORKER};
    for (size_t i = 0; i < 2; i++) {
        struct obx_rpc_frame fa = {.kind = ack_kinds[i]};
        fa.u.file_ack = (struct obx_rpc_file_ack){"c9", 5368709120LL};
        o = roundtrip(&fa, i == 0);
        assert_int_equal(o.u.file_ack.received, 5368709120LL);
        obx_rpc_frame_done(&o);
    }

    struct obx_rpc_frame ack = {.kind = OBX_RPC_ACK};
    ack.u.ack = (struct obx_rpc_ack){"sess", 5, exts, 1};
    o = roundtrip(&ack, false);
    assert_int_equal(o.u.ack.heartbeat_interval_sec, 5);
    assert_int_equal(o.u.ack.n_extensions, 1);
    obx_rpc_frame_done(&o);

    /* What a peer can send wrongly. */
    struct obx_rpc_frame bad;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(obx_rpc_decode(true, garbage, sizeof(garbage), &bad), -EBADMSG);
    /* field 50, length-delimited, empty: a payload this side does not know */
    const uint8_t unknown[] = {0x92, 0x03, 0x00};
    assert_int_equal(obx_rpc_decode(true, unknown, sizeof(unknown), &bad), 0);
    assert_int_equal(bad.kind, OBX_RPC_NONE);
    assert_int_equal(obx_rpc_decode(true, NULL, 0, &bad), 0);
    assert_int_equal(bad.kind, OBX_RPC_NONE);
    /* heartbeat { node_id: "\xff" } */
    const uint8_t not_utf8[] = {0x12, 0x03, 0x0a, 0x01, 0xff};
    assert_int_equal(obx_rpc_decode(true, not_utf8, sizeof(not_utf8), &bad), -EBADMSG);
    /* Too large to send. */
    size_t big = OBX_RPC_MAX_MESSAGE_BYTES + 1;
    uint8_t *huge = calloc(1, big);
    struct obx_rpc_frame hr = {.kind = OBX_RPC_RESULT};
    hr.u.result = (struct obx_rpc_result){.command_id = "x", .payload = huge, .payload_len = big};
    uint8_t *buf;
    size_t len;
    assert_int_equal(obx_rpc_encode(&hr, &buf, &len), -EMSGSIZE);
    free(huge);
}

/* ---- a server and a client on loopback ---- */

struct side {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int frames;
    enum obx_rpc_kind kinds[256];
    char ids[256][32];
    bool closed;
    int status;
    char message[256];
    struct obx_rpc_stream *stream;
};

static void side_init(struct side *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void on_frame(void *ud, struct obx_rpc_stream *st, struct obx_rpc_frame *f)
{
    (void)st;
    struct side *s = ud;
    pthread_mutex_lock(&s->lock);
    if (s->frames < 256) {
        s->kinds[s->frames] = f->kind;
        const char *id = f->kind == OBX_RPC_RESULT     ? f->u.result.command_id
                         : f->kind == OBX_RPC_DISPATCH ? f->u.dispatch.command_id
                         : f->kind == OBX_RPC_HELLO    ? f->u.hello.node_id
                                                       : "";
        snprintf(s->ids[s->frames], sizeof(s->ids[0]), "%s", id);
    }
    s->frames++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void on_closed(void *ud, struct obx_rpc_stream *st, int status, const char *message)
{
    (void)st;
    struct side *s = ud;
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    s->status = status;
    snprintf(s->message, sizeof(s->message), "%s", message);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static const struct obx_rpc_stream_ops ops = {on_frame, on_closed, NULL};

static void on_stream(void *ud, struct obx_rpc_stream *st)
{
    struct side *s = ud;
    pthread_mutex_lock(&s->lock);
    s->stream = obx_rpc_stream_ref(st);
    pthread_mutex_unlock(&s->lock);
    obx_rpc_stream_set_ops(st, &ops, s);
}

/* Waits (up to 10 s) for n frames, or for the close when n < 0. */
static bool wait_for(struct side *s, int n)
{
    uint64_t end = obx_now_ms() + 10000;
    pthread_mutex_lock(&s->lock);
    while ((n >= 0 ? s->frames < n : !s->closed) && obx_now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    bool ok = n >= 0 ? s->frames >= n : s->closed;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* "pty": a live terminal's output and events to the console, its input, size and acks to the
 * worker. */
static void test_pty_codec(void **state)
{
    (void)state;
    uint8_t bytes[] = "hi\r\n\x1b[0m\xff";
    struct obx_rpc_frame po = {.kind = OBX_RPC_PTY_OUTPUT};
    po.u.pty_output = (struct obx_rpc_pty_output){"t1", bytes, sizeof(bytes) - 1, NULL, 0};
    struct obx_rpc_frame o = roundtrip(&po, true);
    assert_string_equal(o.u.pty_output.command_id, "t1");
    assert_int_equal(o.u.pty_output.data_len, sizeof(bytes) - 1);
    assert_memory_equal(o.u.pty_output.data, bytes, sizeof(bytes) - 1);
    assert_null(o.u.pty_output.event);
    obx_rpc_frame_done(&o);

    uint8_t ev[] = "{\"type\":\"exec\",\"exec\":3,\"command\":\"ls\"}";
    po.u.pty_output = (struct obx_rpc_pty_output){"t1", NULL, 0, ev, sizeof(ev) - 1};
    o = roundtrip(&po, true);
    assert_null(o.u.pty_output.data);
    assert_int_equal(o.u.pty_output.event_len, sizeof(ev) - 1);
    assert_memory_equal(o.u.pty_output.event, ev, sizeof(ev) - 1);
    obx_rpc_frame_done(&o);

    struct obx_rpc_frame pi = {.kind = OBX_RPC_PTY_INPUT};
    pi.u.pty_input = (struct obx_rpc_pty_input){"t1", (uint8_t *)"ls\r", 3, 132, 43, 5000000000LL};
    o = roundtrip(&pi, false);
    assert_string_equal(o.u.pty_input.command_id, "t1");
    assert_int_equal(o.u.pty_input.data_len, 3);
    assert_memory_equal(o.u.pty_input.data, "ls\r", 3);
    assert_int_equal(o.u.pty_input.cols, 132);
    assert_int_equal(o.u.pty_input.rows, 43);
    assert_int_equal(o.u.pty_input.acked, 5000000000LL);
    obx_rpc_frame_done(&o);

    /* Only an ack: the rest stays absent. */
    pi.u.pty_input = (struct obx_rpc_pty_input){.command_id = "t1", .acked = 7};
    o = roundtrip(&pi, false);
    assert_null(o.u.pty_input.data);
    assert_int_equal(o.u.pty_input.cols, 0);
    assert_int_equal(o.u.pty_input.acked, 7);
    obx_rpc_frame_done(&o);

    /* Field 110 of the other direction's message: each side reads its own kind only, and a
     * command id that is not UTF-8 is refused like any string. */
    uint8_t *buf = NULL;
    size_t len = 0;
    pi.u.pty_input = (struct obx_rpc_pty_input){.command_id = "t1", .cols = 80, .rows = 24};
    assert_int_equal(obx_rpc_encode(&pi, &buf, &len), 0);
    struct obx_rpc_frame bad;
    int r = obx_rpc_decode(true, buf, len, &bad);
    assert_true(r == -EBADMSG || bad.kind != OBX_RPC_PTY_INPUT);
    if (r == 0)
        obx_rpc_frame_done(&bad);
    free(buf);
    po.u.pty_output = (struct obx_rpc_pty_output){"\xff", NULL, 0, NULL, 0};
    assert_int_equal(obx_rpc_encode(&po, &buf, &len), 0);
    assert_int_equal(obx_rpc_decode(true, buf, len, &bad), -EBADMSG);
    free(buf);
}

static void test_stream(void **state)
{
    (void)state;
    struct side srv_side, cli_side;
    side_init(&srv_side);
    side_init(&cli_side);
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_rpc_server_config scfg = {.host = "127.0.0.1",
                                         .port = 0,
                                         .max_streams = 4,
                                         .on_stream = on_stream,
                                         .userdata = &srv_side};
    struct obx_rpc_server *srv = NULL;
    assert_int_equal(obx_rpc_server_new(&scfg, &srv, &err), 0);
    int port = obx_rpc_server_port(srv);
    assert_true(port > 0);
    char addrs[128], target[64];
    obx_rpc_server_addrs(srv, addrs, sizeof(addrs));
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    assert_string_equal(addrs, target);

    struct obx_rpc_client_config ccfg = {.target = target, .insecure = true};
    struct obx_rpc_client *cli = NULL;
    assert_int_equal(obx_rpc_client_new(&ccfg, &cli, &err), 0);
    struct obx_rpc_stream *cs = NULL;
    assert_int_equal(obx_rpc_client_open(cli, &ops, &cli_side, &cs, &err), 0);

    struct obx_rpc_frame h = {.kind = OBX_RPC_HELLO};
    h.u.hello.node_id = "node-a";
    assert_int_equal(obx_rpc_stream_send(cs, &h, true), 0);
    assert_true(wait_for(&srv_side, 1));
    assert_int_equal(srv_side.kinds[0], OBX_RPC_HELLO);
    assert_string_equal(srv_side.ids[0], "node-a");

    /* Both ways, many frames, in order. */
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        struct obx_rpc_frame d = {.kind = OBX_RPC_DISPATCH};
        d.u.dispatch.command_id = id;
        d.u.dispatch.capability = "echo";
        assert_int_equal(obx_rpc_stream_send(srv_side.stream, &d, false), 0);
        struct obx_rpc_frame r = {.kind = OBX_RPC_RESULT};
        r.u.result.command_id = id;
        assert_int_equal(obx_rpc_stream_send(cs, &r, false), 0);
    }
    assert_true(wait_for(&cli_side, 100));
    assert_true(wait_for(&srv_side, 101));
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        assert_string_equal(cli_side.ids[i], id);
        assert_string_equal(srv_side.ids[i + 1], id);
    }

    /* The server refuses: the worker sees the status and its message. */
    obx_rpc_stream_close(srv_side.stream, OBX_RPC_UNAUTHENTICATED, "invalid worker credential");
    assert_true(wait_for(&cli_side, -1));
    assert_int_equal(cli_side.status, OBX_RPC_UNAUTHENTICATED);
    assert_string_equal(cli_side.message, "invalid worker credential");
    assert_true(wait_for(&srv_side, -1));
    assert_int_equal(obx_rpc_stream_send(cs, &h, true), -EPIPE);
    obx_rpc_stream_unref(cs);
    obx_rpc_stream_unref(srv_side.stream);

    /* The worker goes away: the server hears of it. */
    struct side srv2;
    side_init(&srv2);
    struct side cli2;
    side_init(&cli2);
    struct obx_rpc_server *srv_b = NULL;
    scfg.userdata = &srv2;
    assert_int_equal(obx_rpc_server_new(&scfg, &srv_b, &err), 0);
    snprintf(target, sizeof(target), "127.0.0.1:%d", obx_rpc_server_port(srv_b));
    struct obx_rpc_client *cli_b = NULL;
    ccfg.target = target;
    assert_int_equal(obx_rpc_client_new(&ccfg, &cli_b, &err), 0);
    assert_int_equal(obx_rpc_client_open(cli_b, &ops, &cli2, &cs, &err), 0);
    assert_int_equal(obx_rpc_stream_send(cs, &h, true), 0);
    assert_true(wait_for(&srv2, 1));
    obx_rpc_client_free(cli_b);
    assert_true(wait_for(&srv2, -1));
    assert_int_equal(srv2.status, OBX_RPC_CANCELLED);
    assert_true(wait_for(&cli2, -1));
    obx_rpc_stream_unref(cs);
    obx_rpc_stream_unref(srv2.stream);
    obx_rpc_server_free(srv_b);

    /* Nothing listens: the stream ends UNAVAILABLE. */
    struct side cli3;
    side_init(&cli3);
    obx_rpc_server_free(srv);
    assert_int_equal(obx_rpc_client_open(cli, &ops, &cli3, &cs, &err), 0);
    (void)obx_rpc_stream_send(cs, &h, true);
    assert_true(wait_for(&cli3, -1));
    assert_int_equal(cli3.status, OBX_RPC_UNAVAILABLE);
    obx_rpc_stream_unref(cs);
    obx_rpc_client_free(cli);
}

static void test_server_address(void **state)
{
    (void)state;
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_rpc_server_config scfg = {.host = "127.0.0.1", .port = 0};
    struct obx_rpc_server *a = NULL, *b = NULL;
    assert_int_equal(obx_rpc_server_new(&scfg, &a, &err), 0);
    scfg.port = obx_rpc_server_port(a);
    assert_true(obx_rpc_server_new(&scfg, &b, &err) < 0);
    assert_non_null(strstr(err.message, "cannot listen on 127.0.0.1:"));
    obx_rpc_server_free(a);
    scfg = (struct obx_rpc_server_config){.host = "127.0.0.1",
                                          .tls_cert_file = "/nonexistent.pem",
                                          .tls_key_file = "/nonexistent.key"};
    err = (struct obx_error)OBX_ERROR_INIT;
    assert_true(obx_rpc_server_new(&scfg, &b, &err) < 0);
    assert_non_null(strstr(err.message, "/nonexistent.pem"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_pty_codec),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_server_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
