/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: what the worker reads from a box's agent. A box is started on a runtime whose
 * "box" is a pair of pipes with this harness at the other end playing the agent: it says HELLO,
 * reads the worker's request, answers with the input bytes as the agent's stream, and hangs up.
 * The worker side is the real one (worker/box.c: its reader thread, the frame decoder, routing by
 * request id, the EXIT and ERROR payloads). A real agent never sends malformed frames, so this is
 * the one way to see what a broken or hostile one would cause.
 *   byte 0, bit 0   0: the worker runs an EXEC (obx_box_exec), 1: an FREAD (obx_box_request)
 *   the rest        the agent's stream after HELLO; the worker's first request has id 1
 * Checked: the call returns at once after the harness hung up (a missing answer is an error, not a
 * wait for the call's deadline), a failure has a code and a message, a result is consistent.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include "agent/protocol.h"
#include "common/clock.h"
#include "common/runtime.h"
#include "fuzz.h"
#include "worker/box.h"

struct fake_agent {
    int from_worker; /* read end of the worker's pipe */
    int to_worker;   /* write end of the agent's pipe */
    const uint8_t *stream;
    size_t len;
};

static struct fake_agent agent;

static int rt_start(struct obx_runtime *rt, const struct obx_box_spec *spec,
                    struct obx_box_handle *ret, struct obx_error *err)
{
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) < 0)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "pipe: %s", strerror(errno));
    if (pipe2(up, O_CLOEXEC) < 0) {
        close(down[0]);
        close(down[1]);
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "pipe: %s", strerror(errno));
    }
    memset(ret, 0, sizeof(*ret));
    ret->to_agent = down[1];
    ret->from_agent = up[0];
    snprintf(ret->id, sizeof(ret->id), "fuzz-box");
    agent.from_worker = down[0];
    agent.to_worker = up[1];
    static const char hello[] = "{\"version\":\"1\",\"pid\":1,\"workspace\":\"/workspace\"}";
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(hdr, OBX_AF_HELLO, 0, sizeof(hello) - 1);
    FUZZ_CHECK(write(agent.to_worker, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
                   write(agent.to_worker, hello, sizeof(hello) - 1) == (ssize_t)sizeof(hello) - 1,
               "cannot write HELLO");
    return 0;
}

static void rt_stop(struct obx_runtime *rt, struct obx_box_handle *h)
{
    obx_closep(&h->to_agent);
    h->to_agent = -1;
}

static void rt_free(struct obx_runtime *rt)
{
}

static struct obx_runtime runtime = {
    .name = "fuzz",
    .start = rt_start,
    .stop = rt_stop,
    .free = rt_free,
};

static bool read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* The agent's side: take the worker's request off the pipe, answer with the input, hang up. */
static void *agent_main(void *arg)
{
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    if (read_full(agent.from_worker, hdr, sizeof(hdr))) {
        size_t left = obx_be32_get(hdr) - 5;
        uint8_t buf[4096];
        while (left > 0 && read_full(agent.from_worker, buf, OBX_MIN(left, sizeof(buf))))
            left -= OBX_MIN(left, sizeof(buf));
        const uint8_t *p = agent.stream;
        size_t len = agent.len;
        while (len > 0) {
            ssize_t n = write(agent.to_worker, p, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break; /* the worker stopped reading (a malformed frame) and closed its end */
            p += n;
            len -= (size_t)n;
        }
    }
    close(agent.to_worker);
    close(agent.from_worker);
    return NULL;
}

static size_t output_bytes;

static void on_output(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    FUZZ_CHECK(stream == OBX_STREAM_STDOUT || stream == OBX_STREAM_STDERR, "stream %d", stream);
    output_bytes += len;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool fread_req = data[0] & 1;
    agent.stream = data + 1;
    agent.len = size - 1;

    struct obx_box_spec spec = {.agent_path = "/nonexistent", .worker_id = "fuzz"};
    struct obx_box *box = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    FUZZ_CHECK(obx_box_start(&runtime, &spec, 5000, &box, &err) == 0, "box start: %s", err.message);
    pthread_t agent_thread;
    FUZZ_CHECK(pthread_create(&agent_thread, NULL, agent_main, NULL) == 0, "thread");

    struct obx_call call;
    obx_call_init(&call);
    call.account = "fuzz";
    call.on_output = on_output;
    /* Far beyond how long an answer takes: a call still waiting when the harness has hung up
     * would only return at its deadline. */
    call.deadline = obx_now_ms() + 20000;
    output_bytes = 0;
    uint64_t t0 = obx_now_ms();
    int r;
    if (fread_req) {
        json_t *req = json_pack("{sssisb}", "path", "plot.png", "max_bytes", 1 << 20, "data", 1);
        uint8_t type = 0, *payload = NULL;
        size_t len = 0;
        r = obx_box_request(box, OBX_AF_FREAD, req, &call, &type, &payload, &len, &err);
        if (r == 0) {
            FUZZ_CHECK(payload && type != OBX_AF_ERROR && payload[len] == '\0',
                       "FREAD answer type 0x%02x", type);
            free(payload);
        }
        json_decref(req);
    } else {
        json_t *req = json_pack("{s[ss]si}", "argv", "python3", "-c", "timeout_ms", 15000);
        struct obx_box_exec_result res;
        r = obx_box_exec(box, req, &call, &res, &err);
        if (r == 0) {
            FUZZ_CHECK(res.out && res.err && res.out[res.out_len] == '\0' &&
                           res.err[res.err_len] == '\0',
                       "EXEC output is not terminated");
            FUZZ_CHECK(res.out_len + res.err_len <= output_bytes,
                       "more output kept (%zu) than received (%zu)", res.out_len + res.err_len,
                       output_bytes);
            obx_box_exec_result_done(&res);
        }
        json_decref(req);
    }
    uint64_t took = obx_now_ms() - t0;
    FUZZ_CHECK(took < 5000, "the call took %llu ms after the agent had hung up",
               (unsigned long long)took);
    if (r < 0)
        FUZZ_CHECK(err.code[0] && err.message[0], "a failure without code or message (%d)", r);
    obx_call_done(&call);
    obx_box_unref(box);
    pthread_join(agent_thread, NULL);
    return 0;
}
