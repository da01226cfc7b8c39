/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the test_sandbox_*.c unit tests: a bubblewrap runtime on a temporary state directory,
 * boxes started with the real agent ($OBX_AGENT, set by ctest), and commands run in them through
 * the agent protocol (EXEC frames), as the worker does.
 */
#ifndef OBX_TEST_SANDBOX_HARNESS_H
#define OBX_TEST_SANDBOX_HARNESS_H

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "agent/protocol.h"
#include "common/clock.h"
#include "common/json.h"
#include "sandbox/sandbox.h"

#define H_UNUSED __attribute__((unused))

static struct obx_runtime *rt;
static const char *agent_path;
static char tmp_root[] = "/tmp/obx-test-sandbox-XXXXXX";
static char state_dir[256];

#define FRAME_TIMEOUT_MS 15000

struct box {
    struct obx_box_handle h;
    struct obx_agent_decoder dec;
    uint32_t next_id;
    bool started;
};

struct exec_result {
    char out[16384];
    size_t out_len;
    char err[4096];
    size_t err_len;
    int exit_code;
};

static H_UNUSED bool path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Waits for the next whole frame from the agent. */
static H_UNUSED int read_frame(struct box *b, struct obx_agent_frame *f)
{
    uint64_t deadline = obx_now_ms() + FRAME_TIMEOUT_MS;
    for (;;) {
        int r = obx_agent_decoder_next(&b->dec, f);
        if (r != 0)
            return r;
        uint64_t now = obx_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = b->h.from_agent, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        char buf[65536];
        ssize_t n = read(b->h.from_agent, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EPIPE;
        assert_int_equal(obx_agent_decoder_feed(&b->dec, buf, (size_t)n), 0);
    }
}

static H_UNUSED int box_start_spec(struct box *b, const struct obx_box_spec *spec)
{
    memset(b, 0, sizeof(*b));
    obx_agent_decoder_init(&b->dec);
    b->next_id = 1;
    struct obx_error err = OBX_ERROR_INIT;
    int r = rt->start(rt, spec, &b->h, &err);
    if (r < 0) {
        print_error("start: %s: %s\n", err.code, err.message);
        return r;
    }
    b->started = true;
    struct obx_agent_frame f;
    r = read_frame(b, &f);
    if (r != 1) {
        print_error("no HELLO from the agent (%d)\n", r);
        return r < 0 ? r : -EIO;
    }
    assert_int_equal(f.type, OBX_AF_HELLO);
    assert_int_equal(f.id, 0);
    return 0;
}

static H_UNUSED void box_start(struct box *b, bool network)
{
    struct obx_box_spec spec = {
        .agent_path = agent_path,
        .worker_id = "test-worker",
        .session = "test-session",
        .network = network,
    };
    assert_int_equal(box_start_spec(b, &spec), 0);
}

static H_UNUSED void box_stop(struct box *b)
{
    if (b->started)
        rt->stop(rt, &b->h);
    b->started = false;
    obx_agent_decoder_done(&b->dec);
}

/* Runs `sh -c cmd` in the box through an EXEC frame and collects output up to EXIT. */
static H_UNUSED void box_sh(struct box *b, const char *cmd, struct exec_result *res)
{
    memset(res, 0, sizeof(*res));
    uint32_t id = b->next_id++;
    _cleanup_json_ json_t *req = json_pack("{s:[s,s,s]}", "argv", "sh", "-c", cmd);
    _cleanup_free_ char *payload = obx_json_dumps(req);
    size_t len = strlen(payload);
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(hdr, OBX_AF_EXEC, id, len);
    assert_int_equal(obx_write_all(b->h.to_agent, hdr, sizeof(hdr)), 0);
    assert_int_equal(obx_write_all(b->h.to_agent, payload, len), 0);
    for (;;) {
        struct obx_agent_frame f;
        int r = read_frame(b, &f);
        if (r != 1)
            fail_msg("no EXIT for `%s` (%d)", cmd, r);
        if (f.id != id)
            continue;
        if (f.type == OBX_AF_STDOUT) {
            size_t take = OBX_MIN(f.len, sizeof(res->out) - 1 - res->out_len);
            memcpy(res->out + res->out_len, f.payload, take);
            res->out_len += take;
            res->out[res->out_len] = '\0';
        } else if (f.type == OBX_AF_STDERR) {
            size_t take = OBX_MIN(f.len, sizeof(res->err) - 1 - res->err_len);
            memcpy(res->err + res->err_len, f.payload, take);
            res->err_len += take;
            res->err[res->err_len] = '\0';
        } else if (f.type == OBX_AF_EXIT) {
            struct obx_error err = OBX_ERROR_INIT;
            _cleanup_json_ json_t *j = obx_json_parse((const char *)f.payload, f.len, &err);
            assert_non_null(j);
            res->exit_code = (int)obx_json_get_int(j, "exit_code", -999);
            return;
        } else if (f.type == OBX_AF_ERROR) {
            fail_msg("ERROR frame for `%s`: %.*s", cmd, (int)f.len, (const char *)f.payload);
        }
    }
}

/* Runs cmd and expects exit 0; returns stdout with the trailing newline cut. */
static H_UNUSED const char *sh_ok(struct box *b, const char *cmd, struct exec_result *res)
{
    box_sh(b, cmd, res);
    if (res->exit_code != 0)
        fail_msg("`%s` exited %d: %s", cmd, res->exit_code, res->err);
    if (res->out_len && res->out[res->out_len - 1] == '\n')
        res->out[--res->out_len] = '\0';
    return res->out;
}

static H_UNUSED int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Makes tmp_root (0755: a root worker's boxes run as another uid, and the fake bwrap of some tests
 * lives there) and the runtime on state_dir below it; extra, if set, adjusts the config first. */
static H_UNUSED int harness_setup(void (*extra)(struct obx_sandbox_config *cfg))
{
    agent_path = getenv("OBX_AGENT");
    if (obx_str_empty(agent_path)) {
        print_error("OBX_AGENT is not set (ctest sets it to the built onlyboxes-agent)\n");
        return -1;
    }
    if (!mkdtemp(tmp_root) || chmod(tmp_root, 0755) < 0)
        return -1;
    snprintf(state_dir, sizeof(state_dir), "%s/state", tmp_root);
    struct obx_sandbox_config cfg = {.state_dir = state_dir, .agent_path = agent_path};
    if (extra)
        extra(&cfg);
    struct obx_error err = OBX_ERROR_INIT;
    rt = obx_sandbox_runtime_new(&cfg, &err);
    if (!rt) {
        print_error("runtime: %s: %s\n", err.code, err.message);
        return -1;
    }
    return 0;
}

static H_UNUSED int harness_teardown(void)
{
    if (rt)
        rt->free(rt);
    rt = NULL;
    return nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
