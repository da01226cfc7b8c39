/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The docker runtime against the real Docker daemon and the real agent ($OBX_AGENT, set by ctest,
 * or $OBX_DOCKER_AGENT, which must be static to run in the image): starts boxes from the work image
 * (onlyboxes/work:bookworm-data, or $OBX_DOCKER_TEST_IMAGE), talks the agent protocol over the
 * attach stream and checks from inside what a user would check (who am I, which capabilities, which
 * network, what can I write, which limits), that stop() removes the
 * container and that cleanup_stale() removes only dead owners' containers. Also the errors a user
 * meets: no daemon, missing image. Every test is skipped, with a message saying why, when no daemon
 * answers or the image is missing (scripts/docker-up.sh provides both). How long a start takes is
 * measured by bench/run.sh (bench/box-start.c), not here.
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "agent/protocol.h"
#include "common/clock.h"
#include "common/json.h"
#include "docker/docker-internal.h"

#define FRAME_TIMEOUT_MS 30000

static struct obx_runtime *rt;
static struct obx_docker_client api; /* the test's own client, to look behind the runtime */
static const char *agent_path;
static const char *image;
static char skip_reason[1200];

struct box {
    struct obx_box_handle h;
    struct obx_agent_decoder dec;
    uint32_t next_id;
    bool started;
};

struct exec_result {
    char out[16384];
    size_t out_len;
    int exit_code;
};

#define SKIP_WITHOUT_DOCKER()                                           \
    do {                                                                \
        if (!rt) {                                                      \
            print_message("[  SKIPPED ] no docker: %s\n", skip_reason); \
            skip();                                                     \
        }                                                               \
    } while (0)

static int read_frame(struct box *b, struct obx_agent_frame *f)
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

static void box_start(struct box *b, const char *session)
{
    memset(b, 0, sizeof(*b));
    obx_agent_decoder_init(&b->dec);
    b->next_id = 1;
    struct obx_box_spec spec = {
        .agent_path = agent_path,
        .worker_id = "test-docker",
        .session = session,
        .image = image,
    };
    struct obx_error err = OBX_ERROR_INIT;
    int r = rt->start(rt, &spec, &b->h, &err);
    if (r < 0)
        fail_msg("start: %s: %s", err.code, err.message);
    b->started = true;
    struct obx_agent_frame f;
    r = read_frame(b, &f);
    if (r != 1)
        fail_msg("no HELLO from the agent (%d)", r);
    assert_int_equal(f.type, OBX_AF_HELLO);
    assert_int_equal(f.id, 0);
}

static void box_stop(struct box *b)
{
    if (b->started)
        rt->stop(rt, &b->h);
    b->started = false;
    obx_agent_decoder_done(&b->dec);
}

static void box_sh(struct box *b, const char *cmd, struct exec_result *res)
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
        } else if (f.type == OBX_AF_EXIT) {
            struct obx_error err = OBX_ERROR_INIT;
            _cleanup_json_ json_t *j = obx_json_parse((const char *)f.payload, f.len, &err);
            assert_non_null(j);
            res->exit_code = (int)obx_json_get_int(j, "exit_code", -99);
            return;
        } else if (f.type == OBX_AF_ERROR) {
            fail_msg("agent error for `%s`: %.*s", cmd, (int)f.len, f.payload);
        }
    }
}

/* Runs cmd and returns its trimmed stdout, failing the test on a non-zero exit. */
static const char *sh_ok(struct box *b, const char *cmd, struct exec_result *res)
{
    box_sh(b, cmd, res);
    if (res->exit_code != 0)
        fail_msg("`%s` exited %d: %s", cmd, res->exit_code, res->out);
    while (res->out_len > 0 && res->out[res->out_len - 1] == '\n')
        res->out[--res->out_len] = '\0';
    return res->out;
}

static long container_status(const char *id)
{
    _cleanup_free_ char *path = obx_xasprintf("/containers/%s/json", id);
    long status = 0;
    _cleanup_json_ json_t *j = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_docker_call(&api, "GET", path, NULL, 10000, &status, &j, &err), 0);
    return status;
}

static int setup(void **state)
{
    /* The agent runs inside the image, so it must be static: a sanitizer build's agent is not,
     * and OBX_DOCKER_AGENT then names the static one of a normal build. */
    agent_path = getenv("OBX_DOCKER_AGENT");
    if (!agent_path || !*agent_path)
        agent_path = getenv("OBX_AGENT");
    if (!agent_path || access(agent_path, X_OK) < 0) {
        fprintf(stderr, "OBX_AGENT must name the built onlyboxes-agent\n");
        return -1;
    }
    image = getenv("OBX_DOCKER_TEST_IMAGE");
    if (!image || !*image)
        image = OBX_DOCKER_DEFAULT_IMAGE;
    struct obx_docker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_docker_config_from_env(&cfg, &err), 0);
    cfg.python_image = cfg.terminal_image = image;
    cfg.pull = false; /* no registry here: a missing image is a skip with the reason */
    rt = obx_docker_runtime_new(&cfg, &err);
    if (!rt) {
        snprintf(skip_reason, sizeof(skip_reason), "%s (run scripts/docker-up.sh)", err.message);
        fprintf(stderr, "test_docker_runtime: every test SKIPPED: %s\n", skip_reason);
        return 0;
    }
    assert_int_equal(obx_docker_client_init(&api, cfg.host, &err), 0);
    return 0;
}

static int teardown(void **state)
{
    if (rt)
        rt->free(rt);
    obx_docker_client_done(&api);
    return 0;
}

static void test_no_daemon(void **state)
{
    struct obx_docker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_docker_config_from_env(&cfg, &err), 0);
    cfg.host = "unix:///nonexistent/docker.sock";
    struct obx_runtime *r = obx_docker_runtime_new(&cfg, &err);
    assert_null(r);
    assert_string_equal(err.code, OBX_ERR_RUNTIME_UNAVAILABLE);
    assert_non_null(strstr(err.message, "/nonexistent/docker.sock"));
    assert_non_null(strstr(err.message, "start it with"));

    cfg.host = "ftp://example";
    assert_null(obx_docker_runtime_new(&cfg, &err));
    assert_non_null(strstr(err.message, "DOCKER_HOST"));
}

static void test_missing_image(void **state)
{
    SKIP_WITHOUT_DOCKER();
    struct obx_docker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_docker_config_from_env(&cfg, &err), 0);
    cfg.python_image = cfg.terminal_image = "onlyboxes/no-such-image:0";
    cfg.pull = false;
    assert_null(obx_docker_runtime_new(&cfg, &err));
    assert_string_equal(err.code, OBX_ERR_RUNTIME_UNAVAILABLE);
    assert_non_null(strstr(err.message, "onlyboxes/no-such-image:0"));
    assert_non_null(strstr(err.message, "scripts/build-test-image.sh"));
}

static void test_describe(void **state)
{
    SKIP_WITHOUT_DOCKER();
    char buf[1024];
    rt->describe(rt, buf, sizeof(buf));
    assert_true(strncmp(buf, "docker ", 7) == 0);
    assert_non_null(strstr(buf, "(API 1."));
    assert_non_null(strstr(buf, "network none"));
    assert_non_null(strstr(buf, "user 65532:65532"));
}

static void expect_user(const char *value, int ok, uint32_t uid, uint32_t gid)
{
    struct obx_docker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    setenv("ONLYBOXES_DOCKER_USER", value, 1);
    int r = obx_docker_config_from_env(&cfg, &err);
    unsetenv("ONLYBOXES_DOCKER_USER");
    if (!ok) {
        assert_int_equal(r, -EINVAL);
        assert_non_null(strstr(err.message, "ONLYBOXES_DOCKER_USER="));
        assert_non_null(strstr(err.message, "expected UID:GID or UID"));
        return;
    }
    assert_int_equal(r, 0);
    assert_int_equal(cfg.uid, uid);
    assert_int_equal(cfg.gid, gid);
}

/* ONLYBOXES_DOCKER_USER: numbers only, GID defaults to UID, empty means the image's user. */
static void test_user_setting(void **state)
{
    struct obx_docker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    unsetenv("ONLYBOXES_DOCKER_USER");
    assert_int_equal(obx_docker_config_from_env(&cfg, &err), 0);
    assert_string_equal(cfg.user, "65532:65532");
    expect_user("12345", 1, 12345, 12345);
    expect_user("12345:23456", 1, 12345, 23456);
    expect_user("", 1, 65532, 65532);
    expect_user("sandbox", 0, 0, 0);
    expect_user("12345:", 0, 0, 0);
    expect_user(":5", 0, 0, 0);
    expect_user("-1:5", 0, 0, 0);
    expect_user("99999999999", 0, 0, 0);
}

/* Another uid from the setting: the box runs as it and owns its workspace. */
static void test_user_setting_applies(void **state)
{
    SKIP_WITHOUT_DOCKER();
    struct obx_docker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    setenv("ONLYBOXES_DOCKER_USER", "23456", 1);
    assert_int_equal(obx_docker_config_from_env(&cfg, &err), 0);
    unsetenv("ONLYBOXES_DOCKER_USER");
    cfg.python_image = cfg.terminal_image = image;
    cfg.pull = false;
    struct obx_runtime *keep = rt;
    rt = obx_docker_runtime_new(&cfg, &err);
    assert_non_null(rt);
    struct box b;
    struct exec_result res;
    box_start(&b, NULL);
    assert_string_equal(
        sh_ok(&b, "id -u; id -g; stat -c %u:%g /workspace; touch /workspace/f", &res),
        "23456\n23456\n23456:23456");
    box_stop(&b);
    rt->free(rt);
    rt = keep;
}

/* A dynamically linked agent cannot run in an image without the host's libraries: start()
 * refuses it up front, naming the file, instead of leaving a box that never says HELLO. */
static void test_dynamic_agent_refused(void **state)
{
    SKIP_WITHOUT_DOCKER();
    struct obx_box_spec spec = {
        .agent_path = "/bin/true",
        .worker_id = "test-docker",
        .image = image,
    };
    struct obx_box_handle h;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(rt->start(rt, &spec, &h, &err) < 0, true);
    assert_string_equal(err.code, OBX_ERR_RUNTIME_UNAVAILABLE);
    assert_non_null(strstr(err.message, "dynamically linked"));
    assert_non_null(strstr(err.message, "/true"));
}

static void test_hardened(void **state)
{
    SKIP_WITHOUT_DOCKER();
    struct box b;
    struct exec_result res;
    box_start(&b, NULL);
    /* The work image's user: uid 65532 of its own, not the host's first human account. */
    assert_string_equal(sh_ok(&b, "id -u; id -g; id -un", &res), "65532\n65532\nsandbox");
    assert_string_equal(sh_ok(&b, "stat -c %u:%g /workspace", &res), "65532:65532");
    /* The daemon's default seccomp profile applies. */
    assert_string_equal(sh_ok(&b, "grep ^Seccomp: /proc/self/status | tr -d ' \t'", &res),
                        "Seccomp:2");
    assert_string_equal(sh_ok(&b, "grep ^CapEff: /proc/self/status | tr -d ' \\t'", &res),
                        "CapEff:0000000000000000");
    assert_string_equal(sh_ok(&b, "grep ^NoNewPrivs: /proc/self/status | tr -d ' \\t'", &res),
                        "NoNewPrivs:1");
    /* The root is read-only; /tmp and the workspace are writable (and executable). */
    box_sh(&b, "touch /x 2>/dev/null", &res);
    assert_int_not_equal(res.exit_code, 0);
    box_sh(&b, "touch /etc/x 2>/dev/null", &res);
    assert_int_not_equal(res.exit_code, 0);
    assert_string_equal(sh_ok(&b,
                              "echo 'echo ran' > /workspace/s.sh && chmod +x /workspace/s.sh "
                              "&& /workspace/s.sh && cd /tmp && echo t > t && cat t && pwd",
                              &res),
                        "ran\nt\n/tmp");
    assert_string_equal(sh_ok(&b, "pwd", &res), OBX_BOX_WORKSPACE);
    /* Network none: only the loopback interface. */
    assert_string_equal(sh_ok(&b, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", &res),
                        "lo");
    /* Limits: cgroup v2 or v1, whichever the host has. */
    assert_string_equal(sh_ok(&b,
                              "cat /sys/fs/cgroup/pids.max 2>/dev/null || "
                              "cat /sys/fs/cgroup/pids/pids.max",
                              &res),
                        "128");
    assert_string_equal(sh_ok(&b,
                              "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
                              &res),
                        "268435456");
    /* The agent runs from a read-only bind mount. */
    box_sh(&b, "cp /bin/true " OBX_BOX_AGENT_PATH " 2>/dev/null", &res);
    assert_int_not_equal(res.exit_code, 0);
    /* The labels say who owns the box. */
    _cleanup_free_ char *path = obx_xasprintf("/containers/%s/json", b.h.id);
    long status = 0;
    _cleanup_json_ json_t *j = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_docker_call(&api, "GET", path, NULL, 10000, &status, &j, &err), 0);
    assert_int_equal(status, 200);
    json_t *labels = json_object_get(json_object_get(j, "Config"), "Labels");
    assert_string_equal(obx_json_get_str(labels, OBX_LABEL_MANAGED, ""), "true");
    assert_string_equal(obx_json_get_str(labels, OBX_LABEL_WORKER, ""), "test-docker");
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    assert_string_equal(obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_PID, ""), pid);
    box_stop(&b);
}

static void test_session_label_and_stop(void **state)
{
    SKIP_WITHOUT_DOCKER();
    struct box b;
    struct exec_result res;
    box_start(&b, "sess-1");
    char id[96];
    snprintf(id, sizeof(id), "%s", b.h.id);
    assert_string_equal(sh_ok(&b, "echo hello", &res), "hello");
    assert_int_equal(container_status(id), 200);
    box_stop(&b);
    assert_int_equal(container_status(id), 404);
}

/* A box whose worker closes its end (as when the worker dies) ends by itself: Docker closes the
 * agent's stdin and the container exits. */
static void test_agent_sees_eof(void **state)
{
    SKIP_WITHOUT_DOCKER();
    struct box b;
    box_start(&b, NULL);
    char id[96];
    snprintf(id, sizeof(id), "%s", b.h.id);
    obx_closep(&b.h.to_agent);
    b.h.to_agent = -1;
    struct obx_agent_frame f;
    assert_int_equal(read_frame(&b, &f), -EPIPE); /* the stream ends */
    box_stop(&b);
    assert_int_equal(container_status(id), 404);
}

static char *create_labelled(const char *pid, const char *start)
{
    struct obx_error err = OBX_ERROR_INIT;
    char host[256] = "", boot[64] = "";
    gethostname(host, sizeof(host) - 1);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    assert_non_null(f);
    assert_non_null(fgets(boot, sizeof(boot), f));
    fclose(f);
    boot[strcspn(boot, "\n")] = '\0';
    _cleanup_json_ json_t *body =
        json_pack("{s:s, s:[s], s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:{s:s}}", "Image", image,
                  "Entrypoint", "/bin/true", "Labels", OBX_LABEL_MANAGED, "true", OBX_LABEL_WORKER,
                  "local-dead", OBX_DOCKER_LABEL_OWNER_HOST, host, OBX_DOCKER_LABEL_OWNER_BOOT,
                  boot, OBX_DOCKER_LABEL_OWNER_PID, pid, OBX_DOCKER_LABEL_OWNER_START, start,
                  "HostConfig", "NetworkMode", "none");
    long status = 0;
    _cleanup_json_ json_t *j = NULL;
    assert_int_equal(
        obx_docker_call(&api, "POST", "/containers/create", body, 10000, &status, &j, &err), 0);
    assert_int_equal(status, 201);
    return obx_xstrdup(obx_json_get_str(j, "Id", ""));
}

static void test_cleanup_stale(void **state)
{
    SKIP_WITHOUT_DOCKER();
    /* A dead owner: a child we started and reaped. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    char dead_pid[16], live_pid[16], live_start[32] = "";
    snprintf(dead_pid, sizeof(dead_pid), "%d", (int)child);
    snprintf(live_pid, sizeof(live_pid), "%d", (int)getpid());
    /* Our own start time, as the runtime records it. */
    struct box b;
    box_start(&b, NULL);
    {
        _cleanup_free_ char *path = obx_xasprintf("/containers/%s/json", b.h.id);
        long status = 0;
        _cleanup_json_ json_t *j = NULL;
        struct obx_error err = OBX_ERROR_INIT;
        assert_int_equal(obx_docker_call(&api, "GET", path, NULL, 10000, &status, &j, &err), 0);
        json_t *labels = json_object_get(json_object_get(j, "Config"), "Labels");
        snprintf(live_start, sizeof(live_start), "%s",
                 obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_START, ""));
    }
    _cleanup_free_ char *dead = create_labelled(dead_pid, "1");
    _cleanup_free_ char *reused = create_labelled(live_pid, "12345"); /* pid reused */
    _cleanup_free_ char *live = create_labelled(live_pid, live_start);

    struct obx_error err = OBX_ERROR_INIT;
    int n = rt->cleanup_stale(rt, &err);
    assert_true(n >= 2);
    assert_int_equal(container_status(dead), 404);
    assert_int_equal(container_status(reused), 404);
    assert_int_equal(container_status(live), 200);
    assert_int_equal(container_status(b.h.id), 200); /* our running box stays */

    _cleanup_free_ char *path = obx_xasprintf("/containers/%s?force=1", live);
    long status = 0;
    _cleanup_json_ json_t *j = NULL;
    assert_int_equal(obx_docker_call(&api, "DELETE", path, NULL, 10000, &status, &j, &err), 0);
    box_stop(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_daemon),
        cmocka_unit_test(test_missing_image),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_user_setting),
        cmocka_unit_test(test_user_setting_applies),
        cmocka_unit_test(test_dynamic_agent_refused),
        cmocka_unit_test(test_hardened),
        cmocka_unit_test(test_session_label_and_stop),
        cmocka_unit_test(test_agent_sees_eof),
        cmocka_unit_test(test_cleanup_stale),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
