/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's side of the agent stream (worker/box.c) against a fake agent behind a pair of
 * pipes: a runtime whose start() hands out the pipes and whose agent thread reads the worker's
 * request and answers with scripted bytes. Corrupt, oversized and truncated frames must mark the
 * box broken and fail the call in flight with a clear error, fast; a broken or unreadable answer
 * must not pass for a result; frames for other requests are ignored; an agent that says nothing
 * more is given up on at the call's deadline. The runtime's stop() runs exactly once per box. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "agent/protocol.h"
#include "common/clock.h"
#include "worker/box.h"

/* What the fake agent sends once it has read the worker's request; "@@@@" in it is replaced by
 * the request's id. */
struct script {
    const uint8_t *bytes;
    size_t len;
    bool close_after; /* then closes its stdout: the worker sees EOF */
};

struct fake_agent {
    int in, out; /* the agent's ends: reads requests, writes answers */
    const struct script *script;
    pthread_t thr;
    bool thr_started;
};

struct fake_rt {
    struct obx_runtime rt;
    const struct script *script;
    int starts, stops;
};

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

static bool read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

static void *agent_main(void *arg)
{
    struct fake_agent *a = arg;
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    if (!read_all(a->in, hdr, sizeof(hdr)))
        return NULL;
    size_t len = obx_be32_get(hdr) - 5;
    uint8_t *payload = malloc(len + 1);
    bool ok = read_all(a->in, payload, len);
    free(payload);
    if (!ok)
        return NULL;
    uint8_t *out = malloc(a->script->len);
    memcpy(out, a->script->bytes, a->script->len);
    for (size_t i = 0; i + 4 <= a->script->len; i++)
        if (memcmp(out + i, "@@@@", 4) == 0)
            memcpy(out + i, hdr + 5, 4);
    write_all(a->out, out, a->script->len);
    free(out);
    if (a->script->close_after) {
        close(a->out);
        a->out = -1;
    }
    /* Stay until the worker closes our stdin, as an agent would. */
    char buf[4096];
    while (read(a->in, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

static int fake_start(struct obx_runtime *rt, const struct obx_box_spec *spec,
                      struct obx_box_handle *ret, struct obx_error *err)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    int to[2], from[2];
    assert_int_equal(pipe2(to, O_CLOEXEC), 0);
    assert_int_equal(pipe2(from, O_CLOEXEC), 0);
    struct fake_agent *a = calloc(1, sizeof(*a));
    a->in = to[0];
    a->out = from[1];
    a->script = f->script;
    uint8_t hello[OBX_AGENT_HEADER_SIZE + 2];
    obx_agent_header_encode(hello, OBX_AF_HELLO, 0, 2);
    memcpy(hello + OBX_AGENT_HEADER_SIZE, "{}", 2);
    write_all(a->out, hello, sizeof(hello));
    a->thr_started = pthread_create(&a->thr, NULL, agent_main, a) == 0;
    ret->to_agent = to[1];
    ret->from_agent = from[0];
    snprintf(ret->id, sizeof(ret->id), "fake-%d", ++f->starts);
    ret->pid = 0;
    ret->priv = a;
    return 0;
}

static void fake_stop(struct obx_runtime *rt, struct obx_box_handle *h)
{
    struct fake_rt *f = (struct fake_rt *)rt;
    struct fake_agent *a = h->priv;
    f->stops++;
    close(h->to_agent); /* the agent sees EOF and returns */
    h->to_agent = -1;
    if (h->from_agent >= 0)
        close(h->from_agent);
    h->from_agent = -1;
    if (a->thr_started)
        pthread_join(a->thr, NULL);
    close(a->in);
    if (a->out >= 0)
        close(a->out); /* ends the worker's reader if the agent kept its stdout open */
    free(a);
    h->priv = NULL;
}

static int fake_cleanup(struct obx_runtime *rt, struct obx_error *err)
{
    return 0;
}

static void fake_free(struct obx_runtime *rt)
{
}

static struct fake_rt *fake_new(const struct script *s)
{
    struct fake_rt *f = calloc(1, sizeof(*f));
    f->rt.name = "fake";
    f->rt.start = fake_start;
    f->rt.stop = fake_stop;
    f->rt.cleanup_stale = fake_cleanup;
    f->rt.free = fake_free;
    f->script = s;
    return f;
}

/* One frame with "@@@@" as its id (filled in by the fake agent), appended to buf. */
static size_t put_frame(uint8_t *buf, uint8_t type, const char *payload)
{
    size_t len = strlen(payload);
    obx_agent_header_encode(buf, type, 0, len);
    memcpy(buf + 5, "@@@@", 4);
    memcpy(buf + OBX_AGENT_HEADER_SIZE, payload, len);
    return OBX_AGENT_HEADER_SIZE + len;
}

struct outcome {
    int rc;
    struct obx_error err;
    struct obx_box_exec_result res;
    bool alive_after;
    uint64_t ms;
    int stops_before_unref, stops;
    int rc_again;
    struct obx_error err_again;
};

/* Starts a box on the fake runtime, runs one EXEC (timeout_ms given) against the script, with
 * `again` a second EXEC on the same box (which a broken box must refuse at once), then lets the
 * box go. */
static void run_script(const struct script *s, int64_t timeout_ms, bool again, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->err = (struct obx_error)OBX_ERROR_INIT;
    o->err_again = (struct obx_error)OBX_ERROR_INIT;
    struct fake_rt *f = fake_new(s);
    struct obx_box_spec spec = {.agent_path = "/nonexistent", .worker_id = "test"};
    struct obx_box *b = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_box_start(&f->rt, &spec, 5000, &b, &err), 0);
    json_t *req = json_pack("{s:[s], s:I}", "argv", "true", "timeout_ms", (json_int_t)timeout_ms);
    uint64_t t0 = obx_now_ms();
    o->rc = obx_box_exec(b, req, NULL, &o->res, &o->err);
    o->ms = obx_now_ms() - t0;
    o->alive_after = obx_box_alive(b);
    if (again) {
        struct obx_box_exec_result res2 = {0};
        o->rc_again = obx_box_exec(b, req, NULL, &res2, &o->err_again);
        if (o->rc_again == 0)
            obx_box_exec_result_done(&res2);
    }
    json_decref(req);
    o->stops_before_unref = f->stops;
    obx_box_unref(b);
    o->stops = f->stops;
    free(f);
}

static void assert_broken(const struct outcome *o, const char *why)
{
    assert_true(o->rc < 0);
    assert_string_equal(o->err.code, OBX_ERR_EXECUTION_FAILED);
    assert_non_null(strstr(o->err.message, why));
    assert_false(o->alive_after);
    assert_true(o->ms < 2000); /* at once, not at a timeout */
    assert_true(o->rc_again < 0);
    assert_non_null(strstr(o->err_again.message, "the box is gone"));
    assert_int_equal(o->stops, 1);
}

static void test_length_below_header(void **state)
{
    static const uint8_t bytes[] = {0, 0, 0, 2, 0xff, 0xff};
    struct script s = {bytes, sizeof(bytes), false};
    struct outcome o;
    run_script(&s, 60000, true, &o);
    assert_broken(&o, "malformed frame");
}

static void test_oversized_frame(void **state)
{
    uint8_t bytes[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(bytes, OBX_AF_STDOUT, 0, OBX_AGENT_MAX_FRAME);
    memcpy(bytes + 5, "@@@@", 4);
    struct script s = {bytes, sizeof(bytes), false};
    struct outcome o;
    run_script(&s, 60000, true, &o);
    assert_broken(&o, "malformed frame");
}

static void test_truncated_then_eof(void **state)
{
    uint8_t buf[256];
    size_t n = put_frame(buf, OBX_AF_EXIT, "{\"exit_code\":0,\"signal\":0}");
    struct script s = {buf, n - 10, true};
    struct outcome o;
    run_script(&s, 60000, true, &o);
    assert_broken(&o, "the box exited");
}

static void test_garbage_after_output(void **state)
{
    /* Output first (delivered), then a corrupt header: the call fails, it does not succeed with
     * half an answer. */
    uint8_t buf[256];
    size_t n = put_frame(buf, OBX_AF_STDOUT, "partial");
    static const uint8_t junk[] = {0x80, 0, 0, 0, 0x84};
    memcpy(buf + n, junk, sizeof(junk));
    struct script s = {buf, n + sizeof(junk), false};
    struct outcome o;
    run_script(&s, 60000, true, &o);
    assert_broken(&o, "malformed frame");
}

static void test_unreadable_exit_report(void **state)
{
    uint8_t buf[256];
    size_t n = put_frame(buf, OBX_AF_EXIT, "{\"exit_code\": 0, trunc");
    struct script s = {buf, n, false};
    struct outcome o;
    run_script(&s, 60000, true, &o);
    assert_broken(&o, "unreadable EXIT report");
}

static void test_unexpected_answer_type(void **state)
{
    uint8_t buf[256];
    size_t n = put_frame(buf, 0x99, "{}");
    struct script s = {buf, n, false};
    struct outcome o;
    run_script(&s, 60000, true, &o);
    assert_broken(&o, "unexpected answer 0x99");
}

static void test_other_ids_ignored(void **state)
{
    /* Frames for an id nobody waits for, and a second HELLO, change nothing; the real answer
     * then arrives and is a normal result. */
    uint8_t buf[512];
    size_t n = 0;
    uint8_t h[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(h, OBX_AF_STDOUT, 0xdeadbeef, 5);
    memcpy(buf + n, h, sizeof(h));
    memcpy(buf + n + sizeof(h), "stray", 5);
    n += sizeof(h) + 5;
    obx_agent_header_encode(h, OBX_AF_EXIT, 0xdeadbeef, 2);
    memcpy(buf + n, h, sizeof(h));
    memcpy(buf + n + sizeof(h), "{}", 2);
    n += sizeof(h) + 2;
    obx_agent_header_encode(h, OBX_AF_HELLO, 0, 2);
    memcpy(buf + n, h, sizeof(h));
    memcpy(buf + n + sizeof(h), "{}", 2);
    n += sizeof(h) + 2;
    n += put_frame(buf + n, OBX_AF_STDOUT, "mine\n");
    n += put_frame(buf + n, OBX_AF_EXIT, "{\"exit_code\":3,\"signal\":0,\"duration_ms\":1}");
    struct script s = {buf, n, false};
    struct outcome o;
    run_script(&s, 60000, false, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.res.exit_code, 3);
    assert_string_equal(o.res.out, "mine\n");
    assert_true(o.alive_after);
    assert_int_equal(o.stops_before_unref, 0);
    assert_int_equal(o.stops, 1);
    obx_box_exec_result_done(&o.res);
}

static void test_silent_agent(void **state)
{
    /* The agent reads the request and never answers: the call gives up past its own timeout plus
     * the grace period, and the box is stopped so nothing keeps running in it. */
    struct script s = {(const uint8_t *)"", 0, false};
    struct outcome o;
    run_script(&s, 100, true, &o);
    assert_true(o.rc < 0);
    assert_string_equal(o.err.code, OBX_ERR_DEADLINE_EXCEEDED);
    assert_non_null(strstr(o.err.message, "did not answer in time"));
    assert_false(o.alive_after);
    assert_int_equal(o.stops_before_unref, 1);
    assert_int_equal(o.stops, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_below_header),
        cmocka_unit_test(test_oversized_frame),
        cmocka_unit_test(test_truncated_then_eof),
        cmocka_unit_test(test_garbage_after_output),
        cmocka_unit_test(test_unreadable_exit_report),
        cmocka_unit_test(test_unexpected_answer_type),
        cmocka_unit_test(test_other_ids_ignored),
        cmocka_unit_test(test_silent_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
