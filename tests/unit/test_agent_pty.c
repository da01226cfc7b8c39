/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's live terminals (PTY_* frames), driven through the real onlyboxes-agent ($OBX_AGENT)
 * over its stdin and stdout as the worker drives it: a shell that echoes what is typed, starts
 * where the terminalExec commands of its state key left off, shows those commands as events,
 * takes a resize, sends no more than its window ahead of the acknowledgements, and leaves no
 * process behind when it is closed, idles out or exits.
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

#define PTY 7 /* the terminal's request id */

struct term {
    pid_t pid;
    int to, from;
    char dir[64];
    struct obx_agent_decoder dec;
    char *screen; /* every PTY_OUTPUT byte */
    size_t screen_len;
    json_t *events;  /* every PTY_EVENT, in order */
    json_t *end[16]; /* the terminal frame (EXIT/ERROR) of each id, with its type in "frame" */
    bool hello;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void frame(struct term *t, uint8_t type, uint32_t id, const void *p, size_t len)
{
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(hdr, type, id, len);
    assert_int_equal(obx_write_all(t->to, hdr, sizeof(hdr)), 0);
    if (len)
        assert_int_equal(obx_write_all(t->to, p, len), 0);
}

static void type_text(struct term *t, const char *s)
{
    frame(t, OBX_AF_PTY_INPUT, PTY, s, strlen(s));
}

static void ack(struct term *t, uint64_t n)
{
    uint8_t b[8];
    obx_be32_put(b, (uint32_t)(n >> 32));
    obx_be32_put(b + 4, (uint32_t)n);
    frame(t, OBX_AF_PTY_ACK, PTY, b, sizeof(b));
}

static void open_json(struct term *t, uint32_t id, const char *js)
{
    frame(t, OBX_AF_PTY_OPEN, id, js, strlen(js));
}

static void take(struct term *t, const struct obx_agent_frame *f)
{
    if (f->type == OBX_AF_HELLO) {
        t->hello = true;
        return;
    }
    assert_true(f->id < OBX_ARRAY_SIZE(t->end));
    json_t *j;
    switch (f->type) {
    case OBX_AF_PTY_OUTPUT:
        t->screen = realloc(t->screen, t->screen_len + f->len + 1);
        memcpy(t->screen + t->screen_len, f->payload, f->len);
        t->screen_len += f->len;
        t->screen[t->screen_len] = '\0';
        break;
    case OBX_AF_PTY_EVENT:
        j = json_loadb((const char *)f->payload, f->len, 0, NULL);
        assert_non_null(j);
        json_array_append_new(t->events, j);
        break;
    case OBX_AF_STDOUT:
    case OBX_AF_STDERR:
        break;
    case OBX_AF_EXIT:
    case OBX_AF_ERROR:
        j = json_loadb((const char *)f->payload, f->len, 0, NULL);
        assert_non_null(j);
        json_object_set_new(j, "frame", json_integer(f->type));
        assert_null(t->end[f->id]);
        t->end[f->id] = j;
        break;
    default:
        fail_msg("unexpected frame 0x%02x", f->type);
    }
}

/* Reads frames until pred holds; fails after timeout_ms. */
static void pump(struct term *t, bool (*pred)(struct term *, const void *), const void *arg,
                 int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (!pred(t, arg)) {
        uint64_t now = now_ms();
        if (now >= end)
            fail_msg("timed out; the terminal shows: %s", t->screen ? t->screen : "");
        struct pollfd p = {.fd = t->from, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) <= 0)
            continue;
        uint8_t buf[65536];
        ssize_t n = read(t->from, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(obx_agent_decoder_feed(&t->dec, buf, (size_t)n), 0);
        struct obx_agent_frame f;
        while (obx_agent_decoder_next(&t->dec, &f) == 1)
            take(t, &f);
    }
}

static bool screen_has(struct term *t, const void *s)
{
    return t->screen && strstr(t->screen, s);
}

static bool ended(struct term *t, const void *id)
{
    return t->end[*(const uint32_t *)id] != NULL;
}

static json_t *event(struct term *t, const char *type)
{
    size_t i;
    json_t *e;
    json_array_foreach(t->events, i, e)
    {
        if (obx_streq(json_string_value(json_object_get(e, "type")), type))
            return e;
    }
    return NULL;
}

static bool hello_seen(struct term *t, const void *arg)
{
    (void)arg;
    return t->hello;
}

static bool has_event(struct term *t, const void *type)
{
    return event(t, type) != NULL;
}

static json_t *wait_end(struct term *t, uint32_t id)
{
    pump(t, ended, &id, 20000);
    return t->end[id];
}

static int setup(void **state)
{
    struct term *t = calloc(1, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/obx-pty-test-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    char ws[128], st[128];
    snprintf(ws, sizeof(ws), "%s/ws", t->dir);
    snprintf(st, sizeof(st), "%s/state", t->dir);
    const char *bin = getenv("OBX_AGENT");
    assert_non_null(bin);
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    t->pid = fork();
    assert_true(t->pid >= 0);
    if (t->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl(bin, bin, "--workspace", ws, "--state-dir", st, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    t->to = in[1];
    t->from = out[0];
    t->events = json_array();
    obx_agent_decoder_init(&t->dec);
    pump(t, hello_seen, NULL, 5000);
    *state = t;
    return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static int teardown(void **state)
{
    struct term *t = *state;
    close(t->to);
    int st;
    for (int i = 0; i < 400 && waitpid(t->pid, &st, WNOHANG) != t->pid; i++)
        usleep(5000);
    kill(t->pid, SIGKILL);
    waitpid(t->pid, &st, 0);
    close(t->from);
    free(t->screen);
    json_decref(t->events);
    for (size_t i = 0; i < OBX_ARRAY_SIZE(t->end); i++)
        json_decref(t->end[i]);
    obx_agent_decoder_done(&t->dec);
    nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

/* Live processes whose command line contains needle. */
static int count_procs(const char *needle)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[300], buf[4096];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        int fd = de->d_name[0] >= '1' && de->d_name[0] <= '9' ? open(path, O_RDONLY) : -1;
        ssize_t len = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0)
            close(fd);
        for (ssize_t i = 0; i < len; i++)
            buf[i] = buf[i] ? buf[i] : ' ';
        if (len > 0 && (buf[len] = '\0', strstr(buf, needle)))
            n++;
    }
    closedir(d);
    return n;
}

static int64_t jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void run_exec(struct term *t, uint32_t id, const char *command)
{
    json_t *o = json_pack("{s:s, s:s}", "shell", command, "state", "default");
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    frame(t, OBX_AF_EXEC, id, s, strlen(s));
    free(s);
    json_t *end = wait_end(t, id);
    assert_int_equal(jint(end, "frame"), OBX_AF_EXIT);
}

/* ---- tests ---- */

static void test_echo_and_exit(void **state)
{
    struct term *t = *state;
    open_json(t, PTY, "{\"cols\":80,\"rows\":24}");
    pump(t, has_event, "open", 5000);
    json_t *open = event(t, "open");
    assert_int_equal(jint(open, "cols"), 80);
    assert_true(jint(open, "pid") > 0);
    type_text(t, "echo hi-$((6*7))\r");
    pump(t, screen_has, "hi-42", 10000);
    /* The terminal echoes what was typed, as a terminal does. */
    assert_non_null(strstr(t->screen, "echo hi-$((6*7))"));
    type_text(t, "exit 3\r");
    json_t *end = wait_end(t, PTY);
    assert_int_equal(jint(end, "frame"), OBX_AF_EXIT);
    assert_int_equal(jint(end, "exit_code"), 3);
    assert_string_equal(jstr(end, "reason"), "exited");
}

static void test_starts_where_commands_left_off(void **state)
{
    struct term *t = *state;
    run_exec(t, 1, "mkdir -p sub/dir && cd sub/dir && export OBX_PTY_FOO=bar-1");
    open_json(t, PTY, "{}");
    pump(t, has_event, "open", 5000);
    type_text(t, "echo \"[$OBX_PTY_FOO]\" \"<$(basename \"$PWD\")>\"\r");
    pump(t, screen_has, "[bar-1] <dir>", 10000);
    /* What the person does in the terminal does not become the commands' state. */
    type_text(t, "cd / && export OBX_PTY_FOO=changed\r");
    type_text(t, "echo done-cd\r");
    pump(t, screen_has, "done-cd\r\n", 10000);
    run_exec(t, 2, "echo \"$OBX_PTY_FOO\" > ../seen && pwd >> ../seen");
    /* The session's files are the terminal's files. */
    type_text(t, "cat \"$OLDPWD/../seen\"\r");
    pump(t, screen_has, "bar-1\r\n", 10000);
}

static void test_commands_are_shown(void **state)
{
    struct term *t = *state;
    open_json(t, PTY, "{\"state\":\"default\"}");
    pump(t, has_event, "open", 5000);
    run_exec(t, 1, "echo mirrored-out; echo mirrored-err >&2; exit 4");
    pump(t, has_event, "exec_end", 5000);
    json_t *e = event(t, "exec");
    assert_int_equal(jint(e, "exec"), 1);
    assert_string_equal(jstr(e, "command"), "echo mirrored-out; echo mirrored-err >&2; exit 4");
    size_t i;
    json_t *x;
    bool out = false, err = false;
    json_array_foreach(t->events, i, x)
    {
        if (!obx_streq(jstr(x, "type"), "exec_output"))
            continue;
        out = out ||
              (obx_streq(jstr(x, "stream"), "stdout") && strstr(jstr(x, "data"), "mirrored-out"));
        err = err ||
              (obx_streq(jstr(x, "stream"), "stderr") && strstr(jstr(x, "data"), "mirrored-err"));
    }
    assert_true(out && err);
    json_t *end = event(t, "exec_end");
    assert_int_equal(jint(end, "exit_code"), 4);
    assert_int_equal(jint(end, "dropped_bytes"), 0);
    /* A command of another state key is not shown. */
    size_t before = json_array_size(t->events);
    json_t *o = json_pack("{s:s, s:s}", "shell", "echo other", "state", "other");
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    frame(t, OBX_AF_EXEC, 2, s, strlen(s));
    free(s);
    wait_end(t, 2);
    assert_int_equal(json_array_size(t->events), before);
}

static void test_resize(void **state)
{
    struct term *t = *state;
    open_json(t, PTY, "{\"cols\":80,\"rows\":24}");
    pump(t, has_event, "open", 5000);
    type_text(t, "stty size\r");
    pump(t, screen_has, "24 80", 10000);
    uint8_t sz[4] = {0, 132, 0, 40};
    frame(t, OBX_AF_PTY_RESIZE, PTY, sz, sizeof(sz));
    type_text(t, "stty size\r");
    pump(t, screen_has, "40 132", 10000);
}

static bool got_bytes(struct term *t, const void *n)
{
    return t->screen_len >= *(const size_t *)n;
}

static void test_window_and_close(void **state)
{
    struct term *t = *state;
    char marker[64];
    snprintf(marker, sizeof(marker), "sleep 1001.%d", (int)getpid());
    open_json(t, PTY, "{\"window\":8192}");
    pump(t, has_event, "open", 5000);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "(%s &) ; yes 0123456789\r", marker);
    type_text(t, cmd);
    size_t want = 8192;
    pump(t, got_bytes, &want, 10000);
    usleep(300 * 1000);
    /* Nothing past the window until it is acknowledged. */
    assert_true(t->screen_len <= 8192);
    ack(t, t->screen_len);
    want = t->screen_len + 4096;
    pump(t, got_bytes, &want, 10000);
    assert_true(count_procs(marker) >= 1);
    frame(t, OBX_AF_CANCEL, PTY, NULL, 0);
    json_t *end = wait_end(t, PTY);
    assert_int_equal(jint(end, "frame"), OBX_AF_EXIT);
    assert_true(json_is_true(json_object_get(end, "canceled")));
    assert_string_equal(jstr(end, "reason"), "closed");
    /* Everything started in it is gone, the job that left the shell's group too. */
    assert_int_equal(count_procs(marker), 0);
    assert_int_equal(count_procs("yes 0123456789"), 0);
}

static void test_idle_timeout(void **state)
{
    struct term *t = *state;
    open_json(t, PTY, "{\"idle_timeout_ms\":400}");
    pump(t, has_event, "open", 5000);
    uint64_t t0 = now_ms();
    json_t *end = wait_end(t, PTY);
    assert_string_equal(jstr(end, "reason"), "idle");
    assert_true(now_ms() - t0 >= 350);
}

static void test_bad_requests(void **state)
{
    struct term *t = *state;
    open_json(t, 1, "{\"cols\":0}");
    assert_string_equal(jstr(wait_end(t, 1), "code"), "invalid_payload");
    open_json(t, 2, "{\"state\":\"../x\"}");
    assert_string_equal(jstr(wait_end(t, 2), "code"), "invalid_payload");
    open_json(t, 3, "[1]");
    assert_string_equal(jstr(wait_end(t, 3), "code"), "invalid_payload");
    /* A malformed resize, ack or input for a terminal that does not exist changes nothing. */
    frame(t, OBX_AF_PTY_RESIZE, 9, "x", 1);
    frame(t, OBX_AF_PTY_ACK, 9, "x", 1);
    frame(t, OBX_AF_PTY_INPUT, 9, "x", 1);
    /* Terminals in one box are bounded. */
    for (uint32_t id = 4; id < 4 + 8; id++)
        open_json(t, id, "{}");
    open_json(t, 12, "{}");
    assert_string_equal(jstr(wait_end(t, 12), "code"), "no_capacity");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_echo_and_exit),      T(test_starts_where_commands_left_off),
        T(test_commands_are_shown), T(test_resize),
        T(test_window_and_close),   T(test_idle_timeout),
        T(test_bad_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
