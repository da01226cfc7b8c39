/* SPDX-License-Identifier: Apache-2.0 */
/*
 * How long a runtime takes to start a box, from start() to the agent's HELLO, and to stop it: the
 * cost the warm pool hides. Prints one Markdown row per measurement in bench/run.sh's format:
 *
 *   bench-box-start RUNTIME N      RUNTIME: bubblewrap or docker
 *
 * The agent is found as `onlyboxes` finds it ($ONLYBOXES_AGENT, or next to this binary).
 */
#include <poll.h>
#include <stdlib.h>

#include "agent/protocol.h"
#include "common/clock.h"
#include "worker/worker.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Reads from the agent until its first frame; true when that is HELLO. */
static bool wait_hello(int fd)
{
    struct obx_agent_decoder dec;
    obx_agent_decoder_init(&dec);
    bool ok = false;
    for (;;) {
        struct obx_agent_frame f;
        int r = obx_agent_decoder_next(&dec, &f);
        if (r == 1) {
            ok = f.type == OBX_AF_HELLO;
            break;
        }
        if (r < 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 60000) <= 0)
            break;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0 || obx_agent_decoder_feed(&dec, buf, (size_t)n) < 0)
            break;
    }
    obx_agent_decoder_done(&dec);
    return ok;
}

static void row(const char *what, const char *runtime, uint64_t *us, int n)
{
    qsort(us, (size_t)n, sizeof(us[0]), cmp_u64);
    printf("| %s (%s) | %d | %.2f | %.2f | %.2f | — |\n", what, runtime, n, us[n / 2] / 1000.0,
           us[n * 9 / 10] / 1000.0, us[n * 99 / 100] / 1000.0);
}

int main(int argc, char **argv)
{
    enum obx_runtime_choice choice;
    int64_t n = 0;
    if (argc != 3 || obx_runtime_choice_parse(argv[1], &choice) < 0 || choice == OBX_RUNTIME_AUTO ||
        obx_parse_int64(argv[2], 1, 10000, &n) < 0) {
        fprintf(stderr, "usage: bench-box-start bubblewrap|docker N (1 to 10000)\n");
        return 2;
    }
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_worker_config cfg; /* the runtimes' settings, as onlyboxes reads them */
    if (obx_worker_config_from_env(&cfg, &err) < 0) {
        fprintf(stderr, "bench-box-start: %s\n", err.message);
        return 2;
    }
    cfg.runtime = choice;
    _cleanup_free_ char *agent = obx_worker_find_agent(NULL, &err);
    struct obx_runtime *rt = NULL;
    char why[512];
    if (!agent || obx_worker_pick_runtime(&cfg, agent, &rt, why, sizeof(why), &err) < 0) {
        fprintf(stderr, "bench-box-start: %s\n", err.message);
        return 1;
    }
    uint64_t *hello = obx_xcalloc((size_t)n, sizeof(uint64_t));
    uint64_t *stop = obx_xcalloc((size_t)n, sizeof(uint64_t));
    int r = 0;
    for (int i = 0; i < n && r == 0; i++) {
        struct obx_box_spec spec = {.agent_path = agent, .worker_id = "bench", .session = "bench"};
        struct obx_box_handle h;
        uint64_t t0 = obx_now_us();
        if (rt->start(rt, &spec, &h, &err) < 0) {
            fprintf(stderr, "bench-box-start: %s\n", err.message);
            r = 1;
            break;
        }
        if (!wait_hello(h.from_agent)) {
            fprintf(stderr, "bench-box-start: no HELLO from the agent\n");
            r = 1;
        }
        hello[i] = obx_now_us() - t0;
        t0 = obx_now_us();
        rt->stop(rt, &h);
        stop[i] = obx_now_us() - t0;
    }
    if (r == 0) {
        row("runtime start() → agent HELLO", rt->name, hello, (int)n);
        row("runtime stop()", rt->name, stop, (int)n);
    }
    free(hello);
    free(stop);
    rt->free(rt);
    return r;
}
