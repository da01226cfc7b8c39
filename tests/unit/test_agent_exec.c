/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The real onlyboxes-agent binary (path in $OBX_AGENT, set by ctest), driven the way the worker
 * drives it: frames over its stdin/stdout pipes. Each test starts a fresh agent on a temporary
 * workspace and checks what a user would: output, exit codes, limits, terminal state, files, and
 * that no process is left behind after a timeout, a cancel or shutdown (by scanning /proc).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/protocol.h"
#include "common/util.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_IDS 64

struct result {
    char *out, *err;
    size_t out_len, err_len;
    int out_frames;
    bool done;
    uint8_t type;  /* terminal frame type */
    json_t *json;  /* EXIT/OK/ERROR payload, or FILE metadata */
    uint8_t *data; /* FILE data, or an FGET's FCHUNKs */
    size_t data_len;
    json_t *meta;       /* an FGET's FMETA */
    size_t max_chunk;   /* largest FCHUNK */
    size_t unacked_max; /* most FGET bytes ever received beyond what the test acknowledged */
    size_t acked;
};

struct harness {
    pid_t pid;
    int in_fd, out_fd;
    char dir[64];
    char ws[128], state[128];
    struct obx_agent_decoder dec;
    json_t *hello;
    struct result res[MAX_IDS];
    uint32_t order[4096]; /* ids of STDOUT frames in arrival order */
    size_t n_order;
};

static char marker[32]; /* "1000.<pid>": unique sleep argument of this test run */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void send_frame(struct harness *h, uint8_t type, uint32_t id, const void *p, size_t len)
{
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(hdr, type, id, len);
    assert_int_equal(obx_write_all(h->in_fd, hdr, sizeof(hdr)), 0);
    if (len)
        assert_int_equal(obx_write_all(h->in_fd, p, len), 0);
}

static void send_json(struct harness *h, uint8_t type, uint32_t id, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    assert_non_null(s);
    send_frame(h, type, id, s, strlen(s));
    free(s);
}

static size_t cap_for(size_t n)
{
    size_t cap = 64;
    while (cap < n)
        cap *= 2;
    return cap;
}

static void append(char **buf, size_t *len, const uint8_t *p, size_t n)
{
    /* Capacity doubles, so a large output is not copied once per frame. */
    if (!*buf || cap_for(*len + n + 1) != cap_for(*len + 1))
        *buf = realloc(*buf, cap_for(*len + n + 1));
    assert_non_null(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void handle(struct harness *h, const struct obx_agent_frame *f)
{
    if (f->type == OBX_AF_HELLO) {
        h->hello = json_loadb((const char *)f->payload, f->len, 0, NULL);
        return;
    }
    assert_true(f->id < MAX_IDS);
    struct result *r = &h->res[f->id];
    assert_false(r->done);
    switch (f->type) {
    case OBX_AF_STDOUT:
        assert_true(f->len > 0 && f->len <= OBX_AGENT_OUTPUT_CHUNK);
        append(&r->out, &r->out_len, f->payload, f->len);
        r->out_frames++;
        if (h->n_order < OBX_ARRAY_SIZE(h->order))
            h->order[h->n_order++] = f->id;
        return;
    case OBX_AF_STDERR:
        append(&r->err, &r->err_len, f->payload, f->len);
        return;
    case OBX_AF_FMETA:
        assert_null(r->meta);
        r->meta = json_loadb((const char *)f->payload, f->len, 0, NULL);
        assert_non_null(r->meta);
        return;
    case OBX_AF_FCHUNK:
        assert_non_null(r->meta);
        append((char **)&r->data, &r->data_len, f->payload, f->len);
        r->max_chunk = OBX_MAX(r->max_chunk, f->len);
        r->unacked_max = OBX_MAX(r->unacked_max, r->data_len - r->acked);
        return;
    case OBX_AF_FILE: {
        assert_true(f->len >= 4);
        uint32_t jl = obx_be32_get(f->payload);
        assert_true(4 + (size_t)jl <= f->len);
        r->json = json_loadb((const char *)f->payload + 4, jl, 0, NULL);
        r->data_len = f->len - 4 - jl;
        r->data = malloc(r->data_len + 1);
        memcpy(r->data, f->payload + 4 + jl, r->data_len);
        break;
    }
    case OBX_AF_EXIT:
    case OBX_AF_ERROR:
    case OBX_AF_OK:
        r->json = f->len ? json_loadb((const char *)f->payload, f->len, 0, NULL) : json_object();
        break;
    default:
        fail_msg("unexpected frame type 0x%02x", f->type);
    }
    assert_non_null(r->json);
    r->type = f->type;
    r->done = true;
}

/* Reads frames until pred(h, arg) holds; fails after timeout_ms. Returns false on agent EOF. */
static bool pump_until(struct harness *h, bool (*pred)(struct harness *, uint32_t), uint32_t arg,
                       int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (!pred(h, arg)) {
        uint64_t now = now_ms();
        assert_true(now < end);
        struct pollfd p = {.fd = h->out_fd, .events = POLLIN};
        int k = poll(&p, 1, (int)(end - now));
        if (k <= 0)
            continue;
        uint8_t buf[65536];
        ssize_t n = read(h->out_fd, buf, sizeof(buf));
        if (n == 0)
            return false;
        assert_true(n > 0);
        assert_int_equal(obx_agent_decoder_feed(&h->dec, buf, (size_t)n), 0);
        struct obx_agent_frame f;
        int r;
        while ((r = obx_agent_decoder_next(&h->dec, &f)) == 1)
            handle(h, &f);
        assert_int_equal(r, 0);
    }
    return true;
}

static bool is_done(struct harness *h, uint32_t id)
{
    return h->res[id].done;
}

static bool has_hello(struct harness *h, uint32_t id)
{
    (void)id;
    return h->hello != NULL;
}

static bool has_output(struct harness *h, uint32_t id)
{
    return h->res[id].out_len > 0;
}

static struct result *wait_done(struct harness *h, uint32_t id)
{
    /* A hang guard, not a speed check: sanitizer builds on a loaded machine are slow. */
    assert_true(pump_until(h, is_done, id, 60000));
    return &h->res[id];
}

static struct result *request(struct harness *h, uint8_t type, uint32_t id, json_t *o)
{
    send_json(h, type, id, o);
    return wait_done(h, id);
}

static struct result *exec_json(struct harness *h, uint32_t id, const char *js)
{
    json_error_t je;
    json_t *o = json_loads(js, 0, &je);
    if (!o)
        fail_msg("bad test JSON: %s: %s", js, je.text);
    struct result *r = request(h, OBX_AF_EXEC, id, o);
    assert_int_equal(r->type, OBX_AF_EXIT);
    return r;
}

static json_int_t jint(const struct result *r, const char *k)
{
    json_t *v = json_object_get(r->json, k);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static bool jbool(const struct result *r, const char *k)
{
    json_t *v = json_object_get(r->json, k);
    assert_true(json_is_boolean(v));
    return json_is_true(v);
}

static const char *jstr(const struct result *r, const char *k)
{
    json_t *v = json_object_get(r->json, k);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static const char *out_of(const struct result *r)
{
    return r->out ? r->out : "";
}

static const char *err_of(const struct result *r)
{
    return r->err ? r->err : "";
}

static int setup(void **state)
{
    struct harness *h = calloc(1, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/obx-agent-test-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->ws, sizeof(h->ws), "%s/ws", h->dir);
    snprintf(h->state, sizeof(h->state), "%s/state", h->dir);
    const char *bin = getenv("OBX_AGENT");
    assert_non_null(bin);
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    h->pid = fork();
    assert_true(h->pid >= 0);
    if (h->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        /* A secret in the agent's own environment must never reach a command. */
        setenv("OBX_TEST_SECRET", "hunter2", 1);
        execl(bin, bin, "--workspace", h->ws, "--state-dir", h->state, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    h->in_fd = in[1];
    h->out_fd = out[0];
    obx_agent_decoder_init(&h->dec);
    assert_true(pump_until(h, has_hello, 0, 5000));
    *state = h;
    return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

/* Waits for the agent to exit after stdin closed; returns its wait status. */
static int stop_agent(struct harness *h)
{
    if (h->in_fd >= 0)
        close(h->in_fd);
    h->in_fd = -1;
    int st = -1;
    for (int i = 0; i < 400; i++) {
        if (waitpid(h->pid, &st, WNOHANG) == h->pid)
            return st;
        usleep(5000);
    }
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &st, 0);
    return -1;
}

static int teardown(void **state)
{
    struct harness *h = *state;
    if (h->pid > 0)
        stop_agent(h);
    close(h->out_fd);
    for (size_t i = 0; i < MAX_IDS; i++) {
        free(h->res[i].out);
        free(h->res[i].err);
        free(h->res[i].data);
        json_decref(h->res[i].json);
        json_decref(h->res[i].meta);
    }
    json_decref(h->hello);
    obx_agent_decoder_done(&h->dec);
    nftw(h->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(h);
    return 0;
}

/* Number of live processes whose command line contains needle. */
static int count_procs(const char *needle)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        for (ssize_t i = 0; i < len; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[len] = '\0';
        if (strstr(buf, needle))
            n++;
    }
    closedir(d);
    return n;
}

/* Number of live `sleep MARKER+SUFFIX` processes themselves (not the shells naming them). */
static int count_exact(const char *marker_, const char *suffix)
{
    char want[96];
    snprintf(want, sizeof(want), "sleep %s%s", marker_, suffix);
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], buf[256];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        for (ssize_t i = 0; i < len; i++)
            if (!buf[i])
                buf[i] = ' ';
        while (len > 0 && buf[len - 1] == ' ')
            len--;
        buf[len] = '\0';
        n += strcmp(buf, want) == 0;
    }
    closedir(d);
    return n;
}

/* Number of zombies anywhere below pid. */
static int count_zombies_below(pid_t root)
{
    static long ppid[1 << 22];
    static char st[1 << 22];
    long maxpid = 0;
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        long pid = strtol(de->d_name, NULL, 10);
        if (pid <= 0 || pid >= (long)OBX_ARRAY_SIZE(ppid))
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %c %ld", &st[pid], &ppid[pid]) != 2)
            continue;
        if (pid > maxpid)
            maxpid = pid;
    }
    closedir(d);
    int n = 0;
    for (long pid = 1; pid <= maxpid; pid++) {
        if (st[pid] != 'Z')
            continue;
        for (long q = ppid[pid], hops = 0; q > 0 && q <= maxpid && hops < 64; q = ppid[q], hops++)
            if (q == root) {
                n++;
                break;
            }
    }
    memset(st, 0, (size_t)maxpid + 1);
    return n;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(obx_write_all(fd, data, len), 0);
    close(fd);
}

/* ---- EXEC ---- */

static void test_echo(void **state)
{
    struct harness *h = *state;
    assert_string_equal(json_string_value(json_object_get(h->hello, "version")),
                        OBX_AGENT_PROTOCOL_VERSION);
    assert_int_equal(json_integer_value(json_object_get(h->hello, "pid")), h->pid);
    struct result *r = exec_json(h, 1, "{\"argv\":[\"echo\",\"hello\"]}");
    assert_string_equal(out_of(r), "hello\n");
    assert_string_equal(err_of(r), "");
    assert_int_equal(jint(r, "exit_code"), 0);
    assert_int_equal(jint(r, "signal"), 0);
    assert_false(jbool(r, "timed_out"));
    assert_false(jbool(r, "canceled"));
    assert_false(jbool(r, "stdout_truncated"));
    assert_true(jint(r, "duration_ms") >= 0);
    /* The command runs in the workspace with HOME there too. */
    r = exec_json(h, 2, "{\"argv\":[\"sh\",\"-c\",\"pwd; echo $HOME\"]}");
    char want[300];
    snprintf(want, sizeof(want), "%s\n%s\n", h->ws, h->ws);
    assert_string_equal(out_of(r), want);
}

static void test_stderr_and_exit_code(void **state)
{
    struct harness *h = *state;
    struct result *r =
        exec_json(h, 1, "{\"argv\":[\"sh\",\"-c\",\"echo out; echo err >&2; exit 3\"]}");
    assert_string_equal(out_of(r), "out\n");
    assert_string_equal(err_of(r), "err\n");
    assert_int_equal(jint(r, "exit_code"), 3);
    r = exec_json(h, 2, "{\"argv\":[\"no-such-program-xyz\"]}");
    assert_int_equal(jint(r, "exit_code"), 127);
    assert_non_null(strstr(err_of(r), "no-such-program-xyz"));
}

static void test_killed_by_signal(void **state)
{
    struct harness *h = *state;
    struct result *r = exec_json(h, 1, "{\"argv\":[\"sh\",\"-c\",\"kill -TERM $$\"]}");
    assert_int_equal(jint(r, "exit_code"), -1);
    assert_int_equal(jint(r, "signal"), SIGTERM);
    assert_false(jbool(r, "timed_out"));
}

static void test_env(void **state)
{
    struct harness *h = *state;
    struct result *r = exec_json(
        h, 1, "{\"argv\":[\"sh\",\"-c\",\"echo $FOO; env\"],\"env\":{\"FOO\":\"bar baz\"}}");
    assert_true(strncmp(out_of(r), "bar baz\n", 8) == 0);
    assert_non_null(strstr(out_of(r), "LANG=C.UTF-8\n"));
    assert_non_null(strstr(out_of(r), "USER=sandbox\n"));
    assert_null(strstr(out_of(r), "OBX_TEST_SECRET"));
    /* PATH from the request is the one searched. */
    r = exec_json(h, 2, "{\"argv\":[\"sh\",\"-c\",\"echo $PATH\"],\"env\":{\"PATH\":\"/x:/bin\"}}");
    assert_string_equal(out_of(r), "/x:/bin\n");
}

static void test_stdin(void **state)
{
    struct harness *h = *state;
    struct result *r = exec_json(h, 1, "{\"argv\":[\"cat\"],\"stdin\":\"abc\\ndef\"}");
    assert_string_equal(out_of(r), "abc\ndef");
    r = exec_json(h, 2, "{\"argv\":[\"cat\"]}");
    assert_string_equal(out_of(r), "");
    assert_int_equal(jint(r, "exit_code"), 0);
    /* More than a pipe buffer: written without blocking the agent. */
    size_t n = 300000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    json_t *o = json_pack("{s:[s], s:s}", "argv", "cat", "stdin", big);
    r = request(h, OBX_AF_EXEC, 3, o);
    assert_int_equal(r->out_len, n);
    assert_memory_equal(r->out, big, n);
    free(big);
}

static void test_concurrent(void **state)
{
    struct harness *h = *state;
    send_json(h, OBX_AF_EXEC, 1,
              json_pack("{s:[s,s,s]}", "argv", "sh", "-c",
                        "for i in 1 2 3 4; do echo a$i; sleep 0.05; done"));
    send_json(h, OBX_AF_EXEC, 2,
              json_pack("{s:[s,s,s]}", "argv", "sh", "-c",
                        "for i in 1 2 3 4; do echo b$i; sleep 0.05; done"));
    wait_done(h, 1);
    wait_done(h, 2);
    assert_string_equal(out_of(&h->res[1]), "a1\na2\na3\na4\n");
    assert_string_equal(out_of(&h->res[2]), "b1\nb2\nb3\nb4\n");
    assert_int_equal(jint(&h->res[1], "exit_code"), 0);
    assert_int_equal(jint(&h->res[2], "exit_code"), 0);
    /* Streamed, not collected: the two requests' frames interleave. */
    size_t switches = 0;
    for (size_t i = 1; i < h->n_order; i++)
        switches += h->order[i] != h->order[i - 1];
    assert_true(switches >= 2);
}

static void test_timeout_kills_escaped(void **state)
{
    struct harness *h = *state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "setsid sleep %s1 & (setsid sh -c 'sleep %s2' &) ; echo started; sleep %s3", marker,
             marker, marker);
    /* The command would sleep 1000 s: its answer, timed_out, is the timeout firing. */
    struct result *r =
        request(h, OBX_AF_EXEC, 1,
                json_pack("{s:[s,s,s], s:i}", "argv", "sh", "-c", cmd, "timeout_ms", 300));
    assert_int_equal(r->type, OBX_AF_EXIT);
    assert_true(jbool(r, "timed_out"));
    assert_false(jbool(r, "canceled"));
    assert_int_equal(jint(r, "exit_code"), -1);
    assert_int_equal(jint(r, "signal"), SIGKILL);
    assert_string_equal(out_of(r), "started\n");
    assert_int_equal(count_procs(marker), 0);
    assert_int_equal(count_zombies_below(h->pid), 0);
}

static void test_cancel(void **state)
{
    struct harness *h = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "echo before; setsid sleep %s4 & sleep %s5", marker, marker);
    send_json(h, OBX_AF_EXEC, 7, json_pack("{s:[s,s,s]}", "argv", "sh", "-c", cmd));
    assert_true(pump_until(h, has_output, 7, 5000));
    /* Both sleeps started (the escaped one too), so the cancel has them to kill. */
    for (int i = 0; i < 6000 && count_exact(marker, "4") + count_exact(marker, "5") < 2; i++)
        usleep(5000);
    assert_int_equal(count_exact(marker, "4") + count_exact(marker, "5"), 2);
    send_frame(h, OBX_AF_CANCEL, 7, NULL, 0);
    send_frame(h, OBX_AF_CANCEL, 8, NULL, 0); /* unknown ids are ignored */
    struct result *r = wait_done(h, 7);
    assert_int_equal(r->type, OBX_AF_EXIT);
    assert_true(jbool(r, "canceled"));
    assert_false(jbool(r, "timed_out"));
    assert_int_equal(jint(r, "signal"), SIGKILL);
    assert_int_equal(jint(r, "exit_code"), -1);
    assert_string_equal(out_of(r), "before\n");
    assert_int_equal(count_procs(marker), 0);
    /* The agent still works afterwards, and the id can be reused. */
    r = exec_json(h, 9, "{\"argv\":[\"true\"]}");
    assert_int_equal(jint(r, "exit_code"), 0);
}

static void test_output_limit_utf8(void **state)
{
    struct harness *h = *state;
    /* 'é' is 2 bytes; an odd limit must not split one. */
    struct result *r = exec_json(h, 1,
                                 "{\"argv\":[\"sh\",\"-c\",\"i=0; while [ $i -lt 100 ]; do printf "
                                 "'\\\\303\\\\251'; i=$((i+1)); done; echo done >&2\"],"
                                 "\"stdout_limit\":11}");
    assert_int_equal(r->out_len, 10);
    assert_string_equal(out_of(r), "ééééé");
    assert_true(jbool(r, "stdout_truncated"));
    assert_false(jbool(r, "stderr_truncated"));
    assert_string_equal(err_of(r), "done\n");
    assert_int_equal(jint(r, "exit_code"), 0);

    /* Several chunks: pipe reads split characters anywhere; the result must still be whole. */
    r = exec_json(h, 2,
                  "{\"argv\":[\"sh\",\"-c\",\"yes 'éa€' | head -c 1000000\"],"
                  "\"stdout_limit\":200001}");
    /* "éa€\n" is 7 bytes; 200001 = 28571 * 7 + 4 cuts into the '€' after "éa" */
    assert_int_equal(r->out_len, 28571 * 7 + 3);
    assert_true(jbool(r, "stdout_truncated"));
    for (size_t i = 0; i < r->out_len; i += 7)
        assert_memory_equal(r->out + i, "éa€\n", OBX_MIN((size_t)7, r->out_len - i));

    /* Default limit 1 MiB; output past it is drained so the child finishes. */
    r = exec_json(h, 3, "{\"argv\":[\"head\",\"-c\",\"3000000\",\"/dev/zero\"]}");
    assert_int_equal(r->out_len, 1024 * 1024);
    assert_true(jbool(r, "stdout_truncated"));
    assert_int_equal(jint(r, "exit_code"), 0);
}

static void test_background_job(void **state)
{
    struct harness *h = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "sleep %s6 & echo done", marker);
    /* The job sleeps 1000 s: an answer at all means the request did not wait for it. */
    struct result *r =
        request(h, OBX_AF_EXEC, 1, json_pack("{s:[s,s,s]}", "argv", "sh", "-c", cmd));
    assert_string_equal(out_of(r), "done\n");
    assert_int_equal(jint(r, "exit_code"), 0);
    /* Like a terminal, the job keeps running... */
    assert_int_equal(count_procs(marker), 1);
    /* ...until the agent shuts down (stdin EOF), which kills everything it started. */
    int st = stop_agent(h);
    h->pid = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(count_procs(marker), 0);
}

static void test_zombie_factory(void **state)
{
    struct harness *h = *state;
    struct result *r =
        exec_json(h, 1, "{\"argv\":[\"sh\",\"-c\",\"for i in $(seq 50); do (sleep 0 &) ; done\"]}");
    assert_int_equal(jint(r, "exit_code"), 0);
    int z = 0;
    for (int i = 0; i < 100; i++) {
        z = count_zombies_below(h->pid);
        if (z == 0)
            break;
        usleep(10000);
    }
    assert_int_equal(z, 0);
    r = request(h, OBX_AF_PING, 2, json_object());
    assert_int_equal(r->type, OBX_AF_OK);
}

/* ---- terminal mode ---- */

static struct result *sh(struct harness *h, uint32_t id, const char *key, const char *cmd)
{
    return request(h, OBX_AF_EXEC, id, json_pack("{s:s, s:s}", "shell", cmd, "state", key));
}

static void test_terminal_state(void **state)
{
    struct harness *h = *state;
    struct result *r = sh(h, 1, "s1", "cd /tmp");
    assert_int_equal(jint(r, "exit_code"), 0);
    assert_string_equal(out_of(sh(h, 2, "s1", "pwd")), "/tmp\n");
    sh(h, 3, "s1", "export A=1; B=2");
    assert_string_equal(out_of(sh(h, 4, "s1", "echo \"$A\"; env | grep -c '^B=' || true")),
                        "1\n0\n");
    /* exit N ends the command with N and still saves the state. */
    r = sh(h, 5, "s1", "export C='x y'; cd /; exit 3");
    assert_int_equal(jint(r, "exit_code"), 3);
    assert_string_equal(out_of(sh(h, 6, "s1", "echo \"$C\"; pwd")), "x y\n/\n");
    /* Other keys are separate terminals starting in the workspace. */
    char want[200];
    snprintf(want, sizeof(want), "%s\n\n", h->ws);
    assert_string_equal(out_of(sh(h, 7, "s2", "pwd; echo \"$A\"")), want);
    /* The state never shows up in the user's workspace. */
    assert_string_equal(out_of(sh(h, 8, "s2", "ls -A")), "");
    /* Request env wins over restored variables for that command. */
    r = request(h, OBX_AF_EXEC, 9,
                json_pack("{s:s, s:s, s:{s:s}}", "shell", "echo $A", "state", "s1", "env", "A",
                          "from-env"));
    assert_string_equal(out_of(r), "from-env\n");
}

static void test_terminal_quoting(void **state)
{
    struct harness *h = *state;
    const char *cmd = "printf '%s|' \"a'b\" '$HOME' \"x\\\"y\" `echo q`; echo\n"
                      "cat <<'EOF'\n$NOT ${EXPANDED} \\n\nEOF\n"
                      "if true; then\n  echo multi\nfi";
    struct result *r = sh(h, 1, "q", cmd);
    assert_string_equal(out_of(r), "a'b|$HOME|x\"y|q|\n$NOT ${EXPANDED} \\n\nmulti\n");
    assert_int_equal(jint(r, "exit_code"), 0);
    /* Positional parameters are empty, as in a fresh terminal. */
    assert_string_equal(out_of(sh(h, 2, "q", "echo \"[$#][$1]\"")), "[0][]\n");
    /* A syntax error is the shell's error, not the wrapper's. */
    r = sh(h, 3, "q", "echo 'unterminated");
    assert_int_equal(jint(r, "exit_code"), 2);
}

static void test_terminal_timeout_keeps_state(void **state)
{
    struct harness *h = *state;
    sh(h, 1, "t", "cd /tmp; export K=old");
    struct result *r = request(h, OBX_AF_EXEC, 2,
                               json_pack("{s:s, s:s, s:i}", "shell", "cd /; export K=new; sleep 5",
                                         "state", "t", "timeout_ms", 200));
    assert_true(jbool(r, "timed_out"));
    assert_string_equal(out_of(sh(h, 3, "t", "pwd; echo $K")), "/tmp\nold\n");
}

/* ---- files ---- */

static const uint8_t png[] =
    "\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00"
    "\x01\x08\x02\x00\x00\x00\x90\x77\x53\xde\x00\x00\x00\x0c\x49\x44\x41\x54\x78\x9c\x63\xf8\xcf"
    "\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";

static struct result *fread_req(struct harness *h, uint32_t id, const char *path, bool data,
                                int max)
{
    return request(h, OBX_AF_FREAD, id,
                   json_pack("{s:s, s:b, s:i}", "path", path, "data", data, "max_bytes", max));
}

static void test_fread_png_and_text(void **state)
{
    struct harness *h = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/picture.txt", h->ws); /* the name lies; the bytes do not */
    write_file(path, png, sizeof(png) - 1);
    struct result *r = fread_req(h, 1, "picture.txt", true, 1000);
    assert_int_equal(r->type, OBX_AF_FILE);
    assert_string_equal(jstr(r, "mime_type"), "image/png");
    assert_string_equal(jstr(r, "path"), path);
    assert_int_equal(jint(r, "size_bytes"), sizeof(png) - 1);
    assert_false(jbool(r, "is_dir"));
    assert_int_equal(r->data_len, sizeof(png) - 1);
    assert_memory_equal(r->data, png, sizeof(png) - 1);

    snprintf(path, sizeof(path), "%s/notes.png", h->ws);
    write_file(path, "héllo\n", 7);
    r = fread_req(h, 2, path, true, 0);
    assert_string_equal(jstr(r, "mime_type"), "text/plain");
    assert_int_equal(r->data_len, 7);
    assert_memory_equal(r->data, "héllo\n", 7);
    /* Metadata only. */
    r = fread_req(h, 3, "notes.png", false, 1);
    assert_int_equal(r->type, OBX_AF_FILE);
    assert_int_equal(r->data_len, 0);
    assert_int_equal(jint(r, "size_bytes"), 7);
}

static void test_fread_mime_table(void **state)
{
    struct harness *h = *state;
    static const struct {
        const char *bytes;
        size_t len;
        const char *mime;
    } cases[] = {
        {"\xff\xd8\xff\xe0\x00\x10JFIF", 10, "image/jpeg"},
        {"GIF89a\x01\x00\x01\x00", 10, "image/gif"},
        {"RIFF\x10\x00\x00\x00WEBPVP8 ", 16, "image/webp"},
        {"%PDF-1.7\n", 9, "application/pdf"},
        {"PK\x03\x04\x14\x00", 6, "application/zip"},
        {"\x1f\x8b\x08\x00", 4, "application/gzip"},
        {"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>", 63,
         "image/svg+xml"},
        {"\x00\x01\x02\x03", 4, "application/octet-stream"},
        {"\xc3\x28 invalid", 10, "application/octet-stream"},
        {"BMW is a car\n", 13, "text/plain"},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/f%zu", h->ws, i);
        write_file(path, cases[i].bytes, cases[i].len);
        struct result *r = fread_req(h, (uint32_t)(i + 1), path, false, 0);
        assert_int_equal(r->type, OBX_AF_FILE);
        assert_string_equal(jstr(r, "mime_type"), cases[i].mime);
    }
}

static void test_fread_errors(void **state)
{
    struct harness *h = *state;
    struct result *r = fread_req(h, 1, "nope.txt", true, 10);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "file_not_found");
    assert_string_equal(jstr(r, "message"), "file not found: nope.txt");

    r = fread_req(h, 2, ".", true, 10);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "path_is_directory");

    char path[256], big[100];
    snprintf(path, sizeof(path), "%s/big.bin", h->ws);
    memset(big, 'x', sizeof(big));
    write_file(path, big, sizeof(big));
    r = fread_req(h, 3, "big.bin", true, 10);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "file_too_large");
    assert_string_equal(jstr(r, "message"), "file is 100 bytes; the limit is 10 bytes");
    /* Without data the size does not matter. */
    r = fread_req(h, 4, "big.bin", false, 10);
    assert_int_equal(r->type, OBX_AF_FILE);
    assert_int_equal(jint(r, "size_bytes"), 100);
}

static void test_fwrite_then_fread(void **state)
{
    struct harness *h = *state;
    const uint8_t bin[] = {0, 1, 2, 0xff, 0xfe, 'a', '\n'};
    char *b64 = NULL;
    {
        /* tiny local encoder, so the test does not trust the agent's decoder's twin */
        static const char tbl[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t n = sizeof(bin), o = 0;
        b64 = calloc(4 * ((n + 2) / 3) + 1, 1);
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)bin[i] << 16 | (i + 1 < n ? (uint32_t)bin[i + 1] << 8 : 0) |
                         (i + 2 < n ? bin[i + 2] : 0);
            b64[o++] = tbl[v >> 18 & 63];
            b64[o++] = tbl[v >> 12 & 63];
            b64[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
            b64[o++] = i + 2 < n ? tbl[v & 63] : '=';
        }
    }
    struct result *r =
        request(h, OBX_AF_FWRITE, 1,
                json_pack("{s:s, s:s, s:i}", "path", "out.bin", "data_b64", b64, "mode", 0600));
    free(b64);
    assert_int_equal(r->type, OBX_AF_OK);
    char path[256];
    snprintf(path, sizeof(path), "%s/out.bin", h->ws);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    r = fread_req(h, 2, "out.bin", true, 100);
    assert_int_equal(r->type, OBX_AF_FILE);
    assert_int_equal(r->data_len, sizeof(bin));
    assert_memory_equal(r->data, bin, sizeof(bin));
    assert_string_equal(jstr(r, "mime_type"), "application/octet-stream");

    r = request(h, OBX_AF_FWRITE, 3,
                json_pack("{s:s, s:s}", "path", "no/such/dir/x", "data_b64", "eA=="));
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "file_not_found");
    r = request(h, OBX_AF_FWRITE, 4, json_pack("{s:s, s:s}", "path", "x", "data_b64", "!!"));
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "invalid_payload");
}

/* ---- file transfers and file operations ---- */

/* Sends an FGET and reads it to its end, acknowledging what arrived after every read. */
static struct result *fget(struct harness *h, uint32_t id, json_t *req)
{
    send_json(h, OBX_AF_FGET, id, req);
    struct result *r = &h->res[id];
    uint64_t end = now_ms() + 60000;
    while (!r->done) {
        assert_true(now_ms() < end);
        struct pollfd p = {.fd = h->out_fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            continue;
        uint8_t buf[65536];
        ssize_t n = read(h->out_fd, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(obx_agent_decoder_feed(&h->dec, buf, (size_t)n), 0);
        struct obx_agent_frame f;
        while (obx_agent_decoder_next(&h->dec, &f) == 1)
            handle(h, &f);
        if (r->data_len > r->acked && !r->done) {
            uint8_t ack[8];
            obx_be32_put(ack, (uint32_t)((uint64_t)r->data_len >> 32));
            obx_be32_put(ack + 4, (uint32_t)r->data_len);
            send_frame(h, OBX_AF_FACK, id, ack, sizeof(ack));
            r->acked = r->data_len;
        }
    }
    return r;
}

/* Starts an FPUT and sends len bytes of data (of the announced size) in chunks; end: FEND. */
static void fput_send(struct harness *h, uint32_t id, json_t *req, const uint8_t *data, size_t len,
                      bool end)
{
    send_json(h, OBX_AF_FPUT, id, req);
    for (size_t off = 0; off < len; off += OBX_AGENT_FILE_CHUNK)
        send_frame(h, OBX_AF_FDATA, id, data + off, OBX_MIN(len - off, OBX_AGENT_FILE_CHUNK));
    if (end)
        send_frame(h, OBX_AF_FEND, id, NULL, 0);
}

/* Names in dir (sorted, newline-separated), to see what a transfer left behind. */
static char *listing(const char *dir)
{
    struct dirent **v = NULL;
    int n = scandir(dir, &v, NULL, alphasort);
    char *out = calloc(1, 1);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(v[i]->d_name, ".") && strcmp(v[i]->d_name, "..")) {
            append(&out, &len, (const uint8_t *)v[i]->d_name, strlen(v[i]->d_name));
            append(&out, &len, (const uint8_t *)"\n", 1);
        }
        free(v[i]);
    }
    free(v);
    return out;
}

static uint8_t *pattern(size_t len)
{
    uint8_t *p = malloc(len);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

static void test_fput_fget_roundtrip(void **state)
{
    struct harness *h = *state;
    size_t len = 3u * 1024 * 1024 + 12345;
    uint8_t *data = pattern(len);
    fput_send(h, 1,
              json_pack("{s:s, s:I, s:b}", "path", "a/b/big.bin", "size_bytes", (json_int_t)len,
                        "parents", true),
              data, len, true);
    struct result *r = wait_done(h, 1);
    assert_int_equal(r->type, OBX_AF_OK);
    char path[256];
    snprintf(path, sizeof(path), "%s/a/b/big.bin", h->ws);
    assert_string_equal(jstr(r, "path"), path);
    assert_int_equal(jint(r, "size_bytes"), len);
    assert_true(jbool(r, "created"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, len);
    assert_int_equal(st.st_mode & 07777, 0644);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/a/b", h->ws);
    char *names = listing(dir);
    assert_string_equal(names, "big.bin\n"); /* no temporary file left */
    free(names);

    /* Back, through a window much smaller than the file. */
    r = fget(h, 2, json_pack("{s:s, s:i}", "path", "a/b/big.bin", "window", 512 * 1024));
    assert_int_equal(r->type, OBX_AF_OK);
    assert_int_equal(jint(r, "size_bytes"), len);
    assert_int_equal(json_integer_value(json_object_get(r->meta, "size_bytes")), len);
    assert_string_equal(json_string_value(json_object_get(r->meta, "mime_type")),
                        "application/octet-stream");
    assert_string_equal(json_string_value(json_object_get(r->meta, "type")), "file");
    assert_int_equal(r->data_len, len);
    assert_memory_equal(r->data, data, len);
    assert_true(r->max_chunk <= OBX_AGENT_FILE_CHUNK);
    assert_true(r->unacked_max <= 512 * 1024);

    /* Replacing a file keeps its mode unless one is given; created is false. */
    assert_int_equal(chmod(path, 0600), 0);
    fput_send(h, 3, json_pack("{s:s, s:i}", "path", path, "size_bytes", 5),
              (const uint8_t *)"hello", 5, true);
    r = wait_done(h, 3);
    assert_int_equal(r->type, OBX_AF_OK);
    assert_false(jbool(r, "created"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 5);
    /* An empty file. */
    fput_send(h, 4, json_pack("{s:s, s:i, s:i}", "path", "empty", "size_bytes", 0, "mode", 0755),
              NULL, 0, true);
    r = wait_done(h, 4);
    assert_int_equal(r->type, OBX_AF_OK);
    r = fget(h, 5, json_pack("{s:s}", "path", "empty"));
    assert_int_equal(r->type, OBX_AF_OK);
    assert_int_equal(r->data_len, 0);
    assert_int_equal(json_integer_value(json_object_get(r->meta, "mode")), 0755);
    free(data);
}

static void test_fput_failures_leave_nothing(void **state)
{
    struct harness *h = *state;
    uint8_t *data = pattern(600000);
    /* Fewer bytes than announced: no file, and no parent it created. */
    fput_send(h, 1,
              json_pack("{s:s, s:i, s:b}", "path", "new/dir/f.bin", "size_bytes", 600000, "parents",
                        true),
              data, 300000, true);
    struct result *r = wait_done(h, 1);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "invalid_payload");
    assert_string_equal(jstr(r, "message"),
                        "the upload ended after 300000 of 600000 bytes; nothing was written");
    char *names = listing(h->ws);
    assert_string_equal(names, "");
    free(names);
    /* More bytes than announced. */
    fput_send(h, 2, json_pack("{s:s, s:i}", "path", "f.bin", "size_bytes", 10), data, 11, true);
    r = wait_done(h, 2);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "invalid_payload");
    /* Canceled half-way: the existing file is untouched. */
    char path[256];
    snprintf(path, sizeof(path), "%s/keep.txt", h->ws);
    write_file(path, "old", 3);
    fput_send(h, 3, json_pack("{s:s, s:i}", "path", "keep.txt", "size_bytes", 600000), data, 300000,
              false);
    send_frame(h, OBX_AF_CANCEL, 3, NULL, 0);
    r = wait_done(h, 3);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "canceled");
    names = listing(h->ws);
    assert_string_equal(names, "keep.txt\n");
    free(names);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 3);
    /* Frames of a transfer that ended are ignored. */
    send_frame(h, OBX_AF_FDATA, 3, data, 10);
    send_frame(h, OBX_AF_FEND, 3, NULL, 0);
    /* A missing parent without parents, a directory as target, a file as a parent. */
    fput_send(h, 4, json_pack("{s:s, s:i}", "path", "no/such/f", "size_bytes", 1), data, 1, true);
    r = wait_done(h, 4);
    assert_string_equal(jstr(r, "code"), "file_not_found");
    fput_send(h, 5, json_pack("{s:s, s:i}", "path", ".", "size_bytes", 1), data, 1, true);
    r = wait_done(h, 5);
    assert_string_equal(jstr(r, "code"), "path_is_directory");
    fput_send(h, 6,
              json_pack("{s:s, s:i, s:b}", "path", "keep.txt/x", "size_bytes", 1, "parents", true),
              data, 1, true);
    r = wait_done(h, 6);
    assert_string_equal(jstr(r, "code"), "not_a_directory");
    fput_send(h, 7, json_pack("{s:s}", "path", "x"), NULL, 0, false);
    r = wait_done(h, 7);
    assert_string_equal(jstr(r, "code"), "invalid_payload");
    assert_string_equal(jstr(r, "message"), "FPUT: \"size_bytes\" is required");
    /* The agent ends in the middle of an upload: the temporary file goes with it. */
    fput_send(h, 8, json_pack("{s:s, s:i}", "path", "cut.bin", "size_bytes", 600000), data, 300000,
              false);
    r = request(h, OBX_AF_PING, 9, json_object()); /* the data was taken */
    assert_int_equal(stop_agent(h), 0);
    h->pid = 0;
    names = listing(h->ws);
    assert_string_equal(names, "keep.txt\n");
    free(names);
    free(data);
}

static void test_paths_follow_the_session_cwd(void **state)
{
    struct harness *h = *state;
    struct result *r = exec_json(
        h, 1,
        "{\"shell\": \"mkdir -p \\\"d'q x\\\" && cd \\\"d'q x\\\" && printf hi > plot.txt\"}");
    assert_int_equal(jint(r, "exit_code"), 0);
    r = request(h, OBX_AF_FREAD, 2,
                json_pack("{s:s, s:b, s:s}", "path", "plot.txt", "data", true, "state", "default"));
    assert_int_equal(r->type, OBX_AF_FILE);
    char path[256];
    snprintf(path, sizeof(path), "%s/d'q x/plot.txt", h->ws);
    assert_string_equal(jstr(r, "path"), path);
    /* Without the state key a relative path is the workspace's, as before. */
    r = request(h, OBX_AF_FREAD, 3, json_pack("{s:s, s:b}", "path", "plot.txt", "data", true));
    assert_string_equal(jstr(r, "code"), "file_not_found");
    /* Every file request follows it. */
    r = fget(h, 4, json_pack("{s:s, s:s}", "path", "plot.txt", "state", "default"));
    assert_int_equal(r->type, OBX_AF_OK);
    assert_int_equal(r->data_len, 2);
    fput_send(h, 5,
              json_pack("{s:s, s:i, s:s}", "path", "up.txt", "size_bytes", 2, "state", "default"),
              (const uint8_t *)"ok", 2, true);
    r = wait_done(h, 5);
    snprintf(path, sizeof(path), "%s/d'q x/up.txt", h->ws);
    assert_string_equal(jstr(r, "path"), path);
    r = request(h, OBX_AF_FLIST, 6, json_pack("{s:s, s:s}", "path", ".", "state", "default"));
    assert_int_equal(json_array_size(json_object_get(r->json, "entries")), 2);
    /* A cwd removed since is no base: the workspace is. */
    char dir[256], cmd[400];
    snprintf(dir, sizeof(dir), "%s/gone", h->ws);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(cmd, sizeof(cmd), "cd %s", dir);
    r = request(h, OBX_AF_EXEC, 7, json_pack("{s:s}", "shell", cmd));
    assert_int_equal(jint(r, "exit_code"), 0);
    assert_int_equal(rmdir(dir), 0);
    r = request(
        h, OBX_AF_FREAD, 8,
        json_pack("{s:s, s:b, s:s}", "path", "d'q x/plot.txt", "data", false, "state", "default"));
    assert_int_equal(r->type, OBX_AF_FILE);
}

static void test_list_delete_mkdir(void **state)
{
    struct harness *h = *state;
    struct result *r = request(h, OBX_AF_FMKDIR, 1, json_pack("{s:s}", "path", "x/y/z"));
    assert_int_equal(r->type, OBX_AF_OK);
    assert_true(jbool(r, "created"));
    r = request(h, OBX_AF_FMKDIR, 2, json_pack("{s:s}", "path", "x/y/z"));
    assert_false(jbool(r, "created"));
    char path[256];
    snprintf(path, sizeof(path), "%s/x/b.txt", h->ws);
    write_file(path, "12345", 5);
    snprintf(path, sizeof(path), "%s/x/a-link", h->ws);
    assert_int_equal(symlink("y", path), 0);
    r = request(h, OBX_AF_FLIST, 3, json_pack("{s:s}", "path", "x"));
    assert_int_equal(r->type, OBX_AF_OK);
    json_t *e = json_object_get(r->json, "entries");
    assert_int_equal(json_array_size(e), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(e, 0), "name")), "a-link");
    assert_string_equal(json_string_value(json_object_get(json_array_get(e, 0), "type")),
                        "symlink");
    assert_string_equal(json_string_value(json_object_get(json_array_get(e, 0), "target")), "y");
    assert_string_equal(json_string_value(json_object_get(json_array_get(e, 1), "name")), "b.txt");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(e, 1), "size_bytes")), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(e, 2), "type")),
                        "directory");
    assert_false(jbool(r, "truncated"));
    r = request(h, OBX_AF_FLIST, 4, json_pack("{s:s, s:i}", "path", "x", "max_entries", 2));
    assert_true(jbool(r, "truncated"));
    r = request(h, OBX_AF_FLIST, 5, json_pack("{s:s}", "path", "x/b.txt"));
    assert_string_equal(jstr(r, "code"), "not_a_directory");
    /* A symlink to a directory goes, not what it points to. */
    r = request(h, OBX_AF_FDELETE, 6, json_pack("{s:s}", "path", "x/a-link"));
    assert_int_equal(r->type, OBX_AF_OK);
    snprintf(path, sizeof(path), "%s/x/y/z", h->ws);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    r = request(h, OBX_AF_FDELETE, 7, json_pack("{s:s}", "path", "x"));
    assert_string_equal(jstr(r, "code"), "directory_not_empty");
    r = request(h, OBX_AF_FDELETE, 8, json_pack("{s:s, s:b}", "path", "x", "recursive", true));
    assert_int_equal(r->type, OBX_AF_OK);
    char *names = listing(h->ws);
    assert_string_equal(names, "");
    free(names);
    r = request(h, OBX_AF_FDELETE, 9, json_pack("{s:s}", "path", "x"));
    assert_string_equal(jstr(r, "code"), "file_not_found");
    r = request(h, OBX_AF_FDELETE, 10, json_pack("{s:s, s:b}", "path", "/", "recursive", true));
    assert_string_equal(jstr(r, "code"), "permission_denied");
    /* Bad requests name what is wrong. */
    r = request(h, OBX_AF_FDELETE, 11, json_pack("{s:s, s:s}", "path", "x", "recursive", "yes"));
    assert_string_equal(jstr(r, "message"), "FDELETE: \"recursive\" must be a boolean");
    r = request(h, OBX_AF_FLIST, 12, json_pack("{s:s#}", "path", "a\0b", (size_t)3));
    assert_string_equal(jstr(r, "code"), "invalid_payload");
    r = request(h, OBX_AF_FGET, 13, json_pack("{s:s}", "path", "."));
    assert_string_equal(jstr(r, "code"), "path_is_directory");
}

/* ---- protocol errors and shutdown ---- */

static void test_bad_requests(void **state)
{
    struct harness *h = *state;
    struct result *r = request(h, OBX_AF_PING, 1, json_object());
    assert_int_equal(r->type, OBX_AF_OK);

    send_frame(h, 0x33, 2, NULL, 0);
    r = wait_done(h, 2);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "invalid_payload");

    send_frame(h, OBX_AF_EXEC, 3, "{not json", 9);
    r = wait_done(h, 3);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "invalid_payload");

    r = request(h, OBX_AF_EXEC, 4, json_pack("{s:s}", "argv", "echo"));
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "invalid_payload");
    assert_non_null(strstr(jstr(r, "message"), "argv"));

    r = request(h, OBX_AF_EXEC, 5, json_pack("{s:[s], s:s}", "argv", "true", "timeout_ms", "1"));
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_non_null(strstr(jstr(r, "message"), "timeout_ms"));

    /* A duplicate id while the first request still runs. */
    send_json(h, OBX_AF_EXEC, 6, json_pack("{s:[s,s]}", "argv", "sleep", "0.3"));
    send_json(h, OBX_AF_EXEC, 6, json_pack("{s:[s]}", "argv", "true"));
    r = wait_done(h, 6);
    assert_int_equal(r->type, OBX_AF_ERROR);
    assert_string_equal(jstr(r, "code"), "invalid_payload");
    json_decref(r->json);
    r->json = NULL;
    r->done = false;
    r = wait_done(h, 6);
    assert_int_equal(r->type, OBX_AF_EXIT);
}

static void test_shutdown_kills_everything(void **state)
{
    struct harness *h = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "setsid sleep %s7 & echo up; sleep %s8", marker, marker);
    send_json(h, OBX_AF_EXEC, 1, json_pack("{s:[s,s,s]}", "argv", "sh", "-c", cmd));
    assert_true(pump_until(h, has_output, 1, 5000));
    /* Both sleeps run: counted as the sleep processes themselves, not as any process whose
     * command line names the marker (the shell does too, until it execs the last one). */
    for (int i = 0; i < 6000 && count_exact(marker, "7") + count_exact(marker, "8") < 2; i++)
        usleep(5000);
    if (count_exact(marker, "7") + count_exact(marker, "8") < 2)
        fail_msg("sleeps seen: %d; request 1 done %d, stdout '%.*s', stderr '%.*s'",
                 count_exact(marker, "7") + count_exact(marker, "8"), (int)h->res[1].done,
                 (int)h->res[1].out_len, h->res[1].out, (int)h->res[1].err_len, h->res[1].err);
    /* A frame longer than the limit makes the stream unusable: the agent cleans up and exits,
     * with status 1 (a broken stream is a failure). */
    uint8_t bad[4];
    obx_be32_put(bad, OBX_AGENT_MAX_FRAME + 1);
    assert_int_equal(obx_write_all(h->in_fd, bad, sizeof(bad)), 0);
    int st = stop_agent(h);
    h->pid = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_int_equal(count_procs(marker), 0);
}

static long rss_kib(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    const char *p = strstr(buf, "VmRSS:");
    assert_non_null(p);
    return strtol(p + 6, NULL, 10);
}

/* The pid of the process whose command line is exactly cmdline (arguments joined by spaces), or
 * 0. */
static pid_t find_exact_pid(const char *cmdline)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    pid_t found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], buf[256];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        for (ssize_t i = 0; i < len; i++)
            if (!buf[i])
                buf[i] = ' ';
        while (len > 0 && buf[len - 1] == ' ')
            len--;
        buf[len] = '\0';
        if (strcmp(buf, cmdline) == 0)
            found = (pid_t)atol(de->d_name);
    }
    closedir(d);
    return found;
}

/* True while pid sleeps in a write to a full pipe. */
static bool in_pipe_write(pid_t pid)
{
    char path[64], buf[128] = "";
    snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return strstr(buf, "pipe_write") != NULL;
}

/* Bytes pid has written so far (/proc/PID/io). */
static long long bytes_written(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    const char *p = strstr(buf, "wchar:");
    assert_non_null(p);
    return strtoll(p + 6, NULL, 10);
}

static void test_backpressure(void **state)
{
    struct harness *h = *state;
    /* 32 MB of output while we do not read: the agent must stop reading the child rather than
     * buffer it all, and lose nothing once we read again. */
    send_json(h, OBX_AF_EXEC, 1,
              json_pack("{s:[s,s,s,s], s:i}", "argv", "head", "-c", "32000000", "/dev/zero",
                        "stdout_limit", 64000000));
    long before = rss_kib(h->pid);
    /* Held back, the writer ends up asleep in a write to its full pipe, short of its 32 MB: an
     * event to wait for rather than a while. An agent that read everything into memory would let
     * it write all of it instead (and grow by as much). */
    pid_t writer = 0;
    bool blocked = false;
    for (int i = 0; i < 6000 && !blocked; i++) {
        if (!writer)
            writer = find_exact_pid("head -c 32000000 /dev/zero");
        blocked = writer && in_pipe_write(writer);
        if (!blocked)
            usleep(5000);
    }
    assert_true(blocked);
    assert_true(bytes_written(writer) < 32000000);
    long during = rss_kib(h->pid);
    assert_true(during - before < 20 * 1024);
    struct result *r = wait_done(h, 1);
    assert_int_equal(r->out_len, 32000000);
    assert_false(jbool(r, "stdout_truncated"));
    assert_int_equal(jint(r, "exit_code"), 0);
}

static void test_sigterm_kills_everything(void **state)
{
    struct harness *h = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "(setsid sleep %s9 &); echo up; sleep %s9", marker, marker);
    send_json(h, OBX_AF_EXEC, 1, json_pack("{s:[s,s,s]}", "argv", "sh", "-c", cmd));
    assert_true(pump_until(h, has_output, 1, 5000));
    assert_int_equal(kill(h->pid, SIGTERM), 0);
    int st;
    assert_int_equal(waitpid(h->pid, &st, 0), h->pid);
    h->pid = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(count_procs(marker), 0);
}

static void test_rlimits(void **state)
{
    struct harness *h = *state;
    struct result *r =
        exec_json(h, 1,
                  "{\"argv\":[\"sh\",\"-c\",\"ulimit -n; ulimit -c; head -c 5000 /dev/zero > f; "
                  "echo $?; wc -c < f\"],\"limits\":{\"nofile\":64,\"fsize_bytes\":4096}}");
    /* The write past RLIMIT_FSIZE fails (SIGXFSZ kills head). */
    assert_string_equal(out_of(r), "64\n0\n153\n4096\n");
}

int main(void)
{
    snprintf(marker, sizeof(marker), "1000.%d", (int)getpid());
    signal(SIGPIPE, SIG_IGN);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_echo),
        T(test_stderr_and_exit_code),
        T(test_killed_by_signal),
        T(test_env),
        T(test_stdin),
        T(test_concurrent),
        T(test_timeout_kills_escaped),
        T(test_cancel),
        T(test_output_limit_utf8),
        T(test_background_job),
        T(test_zombie_factory),
        T(test_terminal_state),
        T(test_terminal_quoting),
        T(test_terminal_timeout_keeps_state),
        T(test_fread_png_and_text),
        T(test_fread_mime_table),
        T(test_fread_errors),
        T(test_fwrite_then_fread),
        T(test_fput_fget_roundtrip),
        T(test_fput_failures_leave_nothing),
        T(test_paths_follow_the_session_cwd),
        T(test_list_delete_mkdir),
        T(test_bad_requests),
        T(test_shutdown_kills_everything),
        T(test_sigterm_kills_everything),
        T(test_rlimits),
        T(test_backpressure),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
