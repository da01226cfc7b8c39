/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Terminal mode's warm shells, through the real onlyboxes-agent binary ($OBX_AGENT) driven over
 * its frame pipes. After a key was used the agent keeps /bin/sh started for the key's next
 * command; these tests find that shell in /proc before sending the command and check with `$$`
 * that the command really ran in it, then check what a user would: the terminal state carries
 * over, the command arrives byte for byte, a timeout leaves nothing behind, a request the warm
 * shell cannot take runs cold and the same, and shutdown kills the warm shells too.
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

#define MAX_IDS 256

struct result {
    char *out, *err;
    size_t out_len, err_len;
    bool done;
    uint8_t type;
    json_t *json;
};

struct harness {
    pid_t pid;
    int in_fd, out_fd;
    char dir[64], ws[128], state[128];
    struct obx_agent_decoder dec;
    bool hello;
    struct result res[MAX_IDS];
};

static char marker[32]; /* "2000.<pid>": unique sleep argument of this test run */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void append(char **buf, size_t *len, const uint8_t *p, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    assert_non_null(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void handle(struct harness *h, const struct obx_agent_frame *f)
{
    if (f->type == OBX_AF_HELLO) {
        h->hello = true;
        return;
    }
    assert_true(f->id < MAX_IDS);
    struct result *r = &h->res[f->id];
    assert_false(r->done);
    if (f->type == OBX_AF_STDOUT) {
        append(&r->out, &r->out_len, f->payload, f->len);
        return;
    }
    if (f->type == OBX_AF_STDERR) {
        append(&r->err, &r->err_len, f->payload, f->len);
        return;
    }
    r->json = f->len ? json_loadb((const char *)f->payload, f->len, 0, NULL) : json_object();
    assert_non_null(r->json);
    r->type = f->type;
    r->done = true;
}

/* Reads frames until id is done (id 0: until HELLO); false on agent EOF. */
static bool pump(struct harness *h, uint32_t id, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (id ? !h->res[id].done : !h->hello) {
        uint64_t now = now_ms();
        assert_true(now < end);
        struct pollfd p = {.fd = h->out_fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) <= 0)
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

static void send_json(struct harness *h, uint8_t type, uint32_t id, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    assert_non_null(s);
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(hdr, type, id, strlen(s));
    assert_int_equal(obx_write_all(h->in_fd, hdr, sizeof(hdr)), 0);
    assert_int_equal(obx_write_all(h->in_fd, s, strlen(s)), 0);
    free(s);
}

/* Sends an EXEC and waits for its EXIT (a hang guard, not a speed check). */
static struct result *exec(struct harness *h, uint32_t id, json_t *o)
{
    send_json(h, OBX_AF_EXEC, id, o);
    assert_true(pump(h, id, 60000));
    assert_int_equal(h->res[id].type, OBX_AF_EXIT);
    return &h->res[id];
}

static struct result *sh(struct harness *h, uint32_t id, const char *key, const char *cmd)
{
    return exec(h, id, json_pack("{s:s, s:s}", "shell", cmd, "state", key));
}

static const char *out_of(const struct result *r)
{
    return r->out ? r->out : "";
}

static const char *err_of(const struct result *r)
{
    return r->err ? r->err : "";
}

static json_int_t jint(const struct result *r, const char *k)
{
    json_t *v = json_object_get(r->json, k);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static bool jbool(const struct result *r, const char *k)
{
    return json_is_true(json_object_get(r->json, k));
}

static int setup(void **state)
{
    struct harness *h = calloc(1, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/obx-shell-test-XXXXXX");
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
        execl(bin, bin, "--workspace", h->ws, "--state-dir", h->state, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    h->in_fd = in[1];
    h->out_fd = out[0];
    obx_agent_decoder_init(&h->dec);
    assert_true(pump(h, 0, 5000));
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
        json_decref(h->res[i].json);
    }
    obx_agent_decoder_done(&h->dec);
    nftw(h->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(h);
    return 0;
}

/* Live processes whose command line (NULs as spaces) contains needle and, unless NULL, needle2;
 * returns how many, the first one's pid in *first. */
static int find_procs2(const char *needle, const char *needle2, pid_t *first)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], buf[8192];
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
        if (strstr(buf, needle) && (!needle2 || strstr(buf, needle2)) && n++ == 0 && first)
            *first = (pid_t)atol(de->d_name);
    }
    closedir(d);
    return n;
}

static int find_procs(const char *needle, pid_t *first)
{
    return find_procs2(needle, NULL, first);
}

/* The persistent shells of this test's agent, of one key or (key NULL) all: their command line
 * reads "/bin/sh -c <script sourcing .z.<id>.sh files> sh <state dir>/<key> <workspace> <state
 * dir>". */
#define SHELL_SCRIPT_MARK ".z.$__obx_id.sh"

static int count_warm(struct harness *h, const char *key, pid_t *pid)
{
    char needle[400];
    snprintf(needle, sizeof(needle), "%s/%s %s ", h->state, key ? key : "", h->ws);
    if (key)
        return find_procs2(needle, SHELL_SCRIPT_MARK, pid);
    snprintf(needle, sizeof(needle), "%s/", h->state);
    return find_procs2(needle, SHELL_SCRIPT_MARK, pid);
}

/* Waits for the key's warm shell to be exec'ed and returns its pid. */
static pid_t warm_pid(struct harness *h, const char *key)
{
    pid_t pid = 0;
    for (int i = 0; i < 2000; i++) {
        if (count_warm(h, key, &pid) == 1)
            return pid;
        usleep(5000);
    }
    fail_msg("no warm shell for key %s", key);
    return 0;
}

/* Removes the first line of r's output. */
static void drop_first_line(struct result *r)
{
    char *nl = r->out ? strchr(r->out, '\n') : NULL;
    assert_non_null(nl);
    size_t skip = (size_t)(nl + 1 - r->out);
    memmove(r->out, nl + 1, r->out_len - skip + 1);
    r->out_len -= skip;
}

/* Runs cmd on key in the key's warm shell: checks that `$$` of the command was that shell. The
 * command's first line of output must be `$$`; it is removed from the result. */
static struct result *sh_warm(struct harness *h, uint32_t id, const char *key, const char *cmd)
{
    pid_t pid = warm_pid(h, key);
    char *full = obx_xasprintf("echo $$\n%s", cmd);
    struct result *r = sh(h, id, key, full);
    free(full);
    assert_int_equal(atol(out_of(r)), pid);
    drop_first_line(r);
    return r;
}

static void test_warm_keeps_state(void **state)
{
    struct harness *h = *state;
    /* The key's first command is cold; it leaves a warm shell for the next. */
    struct result *r = sh(h, 1, "k", "cd /tmp");
    assert_int_equal(jint(r, "exit_code"), 0);
    assert_string_equal(out_of(sh_warm(h, 2, "k", "pwd")), "/tmp\n");
    sh_warm(h, 3, "k", "export A=1; B=2; cd /");
    r = sh_warm(h, 4, "k", "echo \"$A\"; pwd; env | grep -c '^B=' || true");
    assert_string_equal(out_of(r), "1\n/\n0\n");
    /* exit N ends the command with N and still saves the state. */
    r = sh_warm(h, 5, "k", "export C='x y'; cd /tmp; exit 3");
    assert_int_equal(jint(r, "exit_code"), 3);
    r = sh_warm(h, 6, "k", "echo \"$C\"; pwd\nif true; then\n  echo multi\nfi");
    assert_string_equal(out_of(r), "x y\n/tmp\nmulti\n");
    assert_int_equal(jint(r, "exit_code"), 0);
    /* Positional parameters are empty and stdin is /dev/null, as on the cold path. */
    r = sh_warm(h, 7, "k", "echo \"[$#][$1]\"; cat; ls /proc/self/fd | wc -l");
    assert_string_equal(out_of(r), "[0][]\n4\n"); /* 0-2 and the fd ls reads */
    /* A command killed by a signal. */
    r = sh_warm(h, 8, "k", "kill -TERM $$");
    assert_int_equal(jint(r, "signal"), SIGTERM);
    /* Only the key's own state: another key starts fresh in the workspace. */
    char want[200];
    snprintf(want, sizeof(want), "%s\n\n", h->ws);
    assert_string_equal(out_of(sh(h, 9, "other", "pwd; echo \"$A\"")), want);
    assert_string_equal(out_of(sh_warm(h, 10, "other", "pwd; echo \"$A\"")), want);
}

/* Every ASCII character but NUL, and characters whose UTF-8 holds the bytes 0x80-0x8f that the
 * shell's parser uses internally. */
static char *nasty_payload(void)
{
    char *p = malloc(1024);
    size_t o = 0;
    for (int c = 1; c < 128; c++)
        p[o++] = (char)c;
    for (int c = 0x80; c < 0x100; c++) {
        p[o++] = (char)(0xc0 | c >> 6);
        p[o++] = (char)(0x80 | (c & 0x3f));
    }
    static const char tail[] = "\n'\\''\"$(x)`y`${z}\\\n\\";
    memcpy(p + o, tail, sizeof(tail) - 1);
    o += sizeof(tail) - 1;
    p[o] = '\0';
    return p;
}

static void test_warm_command_verbatim(void **state)
{
    struct harness *h = *state;
    char *payload = nasty_payload();
    char *cmd = obx_xasprintf("cat <<'EOF_OBX'\n%s\nEOF_OBX\nprintf '%%s|' \"a'b\" '$HOME' "
                              "\"x\\\"y\" `echo q`",
                              payload);
    char *want = obx_xasprintf("%s\na'b|$HOME|x\"y|q|", payload);
    /* Cold (first use), then warm: the same bytes come out. */
    struct result *r = sh(h, 1, "q", cmd);
    assert_string_equal(out_of(r), want);
    r = sh_warm(h, 2, "q", cmd);
    assert_string_equal(out_of(r), want);
    assert_string_equal(err_of(r), "");
    free(cmd);
    free(want);
    free(payload);
    /* Errors read the same on both paths: the shell's own, not the wrapper's. */
    static const char *const bad[] = {"echo 'unterminated", "no-such-command-xyz", "if then",
                                      "cd /no/such/dir"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        uint32_t id = 10 + 2 * (uint32_t)i;
        /* Same text as sh_warm() runs, so that line numbers in messages match. */
        char *cmd2 = obx_xasprintf("echo $$\n%s", bad[i]);
        struct result *cold = exec(h, id,
                                   json_pack("{s:s, s:s, s:{s:s}}", "shell", cmd2, "state", "q",
                                             "env", "FORCE_COLD", "1"));
        free(cmd2);
        struct result *warm = sh_warm(h, id + 1, "q", bad[i]);
        assert_int_equal(jint(warm, "exit_code"), jint(cold, "exit_code"));
        assert_string_equal(err_of(warm), err_of(cold));
        assert_true(jint(warm, "exit_code") != 0);
    }
}

static void test_warm_starts_like_cold(void **state)
{
    struct harness *h = *state;
    /* A first command that dies without saving state leaves the key fresh, with a warm shell. */
    struct result *r = sh(h, 1, "f1", "kill -KILL $$");
    assert_int_equal(jint(r, "signal"), SIGKILL);
    const char *cmd = "export -p; pwd; echo \"[${OLDPWD-unset}]\"; umask; ls /proc/self/fd | wc -l";
    struct result *warm = sh_warm(h, 2, "f1", cmd);
    char *full = obx_xasprintf("echo $$\n%s", cmd);
    struct result *cold = sh(h, 3, "f2", full);
    free(full);
    drop_first_line(cold);
    assert_string_equal(out_of(warm), out_of(cold));
    assert_string_equal(err_of(warm), err_of(cold));
    assert_non_null(strstr(out_of(warm), "[unset]"));
}

static void test_warm_timeout_kills_everything(void **state)
{
    struct harness *h = *state;
    sh(h, 1, "t", "cd /tmp; export K=old");
    pid_t pid = warm_pid(h, "t");
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "echo $$; cd /; export K=new; setsid sleep %s1 & (setsid sh -c 'sleep %s2' &); "
             "sleep %s3",
             marker, marker, marker);
    uint64_t t0 = now_ms();
    struct result *r =
        exec(h, 2, json_pack("{s:s, s:s, s:i}", "shell", cmd, "state", "t", "timeout_ms", 300));
    assert_true(now_ms() - t0 < 3000);
    assert_int_equal(atol(out_of(r)), pid);
    assert_true(jbool(r, "timed_out"));
    assert_int_equal(jint(r, "signal"), SIGKILL);
    assert_int_equal(jint(r, "exit_code"), -1);
    assert_int_equal(find_procs(marker, NULL), 0);
    /* The killed command's state changes are not kept. */
    assert_string_equal(out_of(sh_warm(h, 3, "t", "pwd; echo $K")), "/tmp\nold\n");

    /* Cancel on the warm path, too. */
    snprintf(cmd, sizeof(cmd), "setsid sleep %s4 & echo up; sleep %s5", marker, marker);
    warm_pid(h, "t");
    send_json(h, OBX_AF_EXEC, 4, json_pack("{s:s, s:s}", "shell", cmd, "state", "t"));
    for (int i = 0; i < 2000 && find_procs(marker, NULL) < 2; i++)
        usleep(5000);
    uint8_t hdr[OBX_AGENT_HEADER_SIZE];
    obx_agent_header_encode(hdr, OBX_AF_CANCEL, 4, 0);
    assert_int_equal(obx_write_all(h->in_fd, hdr, sizeof(hdr)), 0);
    assert_true(pump(h, 4, 60000));
    assert_true(jbool(&h->res[4], "canceled"));
    assert_int_equal(find_procs(marker, NULL), 0);
}

/* Files in the state directory other than the keys' state files, once the agent had a moment
 * to remove them (it does so after sending EXIT). */
static int stray_state_files(struct harness *h)
{
    int n = 0;
    for (int i = 0; i < 400; i++, usleep(5000)) {
        DIR *d = opendir(h->state);
        assert_non_null(d);
        n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
            if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                n++;
        closedir(d);
        if (n == 0)
            break;
    }
    return n;
}

static void test_shell_reused_per_key(void **state)
{
    struct harness *h = *state;
    sh(h, 1, "r", "cd /tmp");
    pid_t pid = warm_pid(h, "r");
    /* One shell runs the key's commands one after the other; each starts from the saved state
     * only: what a command sets without exporting is gone for the next one. */
    assert_string_equal(out_of(sh_warm(h, 2, "r", "pwd; X=1; export Y=2")), "/tmp\n");
    assert_string_equal(out_of(sh_warm(h, 3, "r", "echo \"[${X-}][$Y]\"; cd /")), "[][2]\n");
    assert_int_equal(warm_pid(h, "r"), pid);
    /* Exit statuses: above 128 from exit is an exit code, a subshell killed is a signal. */
    struct result *r = sh_warm(h, 4, "r", "exit 137");
    assert_int_equal(jint(r, "exit_code"), 137);
    assert_int_equal(jint(r, "signal"), 0);
    r = sh_warm(h, 5, "r", "sh -c 'kill -KILL $PPID'; echo not-reached");
    assert_int_equal(jint(r, "signal"), SIGKILL);
    assert_int_equal(jint(r, "exit_code"), -1);
    assert_string_equal(out_of(r), "");
    /* Only the killed command's changes are lost. (The shell may have been replaced: its killed
     * subshell's child can still be there when the command ends.) */
    assert_string_equal(out_of(sh(h, 6, "r", "pwd; echo $Y")), "/\n2\n");
    assert_int_equal(stray_state_files(h), 0);
}

static void test_shell_background_job_outlives_it(void **state)
{
    struct harness *h = *state;
    sh(h, 1, "b", "true");
    pid_t pid = warm_pid(h, "b");
    char cmd[256];
    /* A job left running: the command ends, the job keeps running, and the shell that ran it
     * takes no more commands, so a later timeout on the key cannot reach the job. */
    snprintf(cmd, sizeof(cmd), "sleep %s6 >/dev/null 2>&1 &", marker);
    assert_int_equal(jint(sh_warm(h, 2, "b", cmd), "exit_code"), 0);
    assert_int_equal(find_procs(marker, NULL), 1);
    pid_t next = warm_pid(h, "b");
    for (int i = 0; i < 2000 && next == pid; i++) {
        usleep(5000);
        next = warm_pid(h, "b");
    }
    assert_true(next != pid);
    snprintf(cmd, sizeof(cmd), "echo $$; setsid sleep %s7 & sleep %s8", marker, marker);
    struct result *r =
        exec(h, 3, json_pack("{s:s, s:s, s:i}", "shell", cmd, "state", "b", "timeout_ms", 300));
    assert_true(jbool(r, "timed_out"));
    assert_int_equal(atol(out_of(r)), next);
    assert_int_equal(find_procs(marker, NULL), 1);
    char six[64];
    snprintf(six, sizeof(six), "%s6", marker);
    pid_t job = 0;
    assert_int_equal(find_procs(six, &job), 1);
    kill(job, SIGKILL);
    /* A new shell again, and the key works as before. */
    assert_true(warm_pid(h, "b") != next);
    assert_string_equal(out_of(sh_warm(h, 4, "b", "echo ok")), "ok\n");
    assert_int_equal(stray_state_files(h), 0);
}

static void test_cold_requests_and_fresh_state(void **state)
{
    struct harness *h = *state;
    sh(h, 1, "c", "export V=1");
    pid_t pid = warm_pid(h, "c");
    /* A request with its own env cannot use the warm shell: it runs cold, with its env, and
     * the state it leaves is what the (older) warm shell restores when its command runs. */
    struct result *r =
        exec(h, 2,
             json_pack("{s:s, s:s, s:{s:s}}", "shell", "echo $$ $E $V; export V=2; cd /tmp",
                       "state", "c", "env", "E", "from-env"));
    char want[64];
    snprintf(want, sizeof(want), "%d from-env 1\n", (int)pid);
    assert_string_not_equal(out_of(r), want);
    assert_non_null(strstr(out_of(r), " from-env 1\n"));
    assert_int_equal(warm_pid(h, "c"), pid);
    /* (Request env is exported, so it is saved with the state.) */
    assert_string_equal(out_of(sh_warm(h, 3, "c", "echo $V $E; pwd")), "2 from-env\n/tmp\n");
    pid = warm_pid(h, "c");
    /* A command longer than the warm limit runs cold, and as well. */
    size_t n = 70000;
    char *big = malloc(n + 16);
    memcpy(big, ": '", 3);
    memset(big + 3, 'x', n);
    memcpy(big + 3 + n, "'; pwd", 7);
    r = sh(h, 4, "c", big);
    free(big);
    assert_string_equal(out_of(r), "/tmp\n");
    /* So do "stdin", "limits" and "cwd" requests. */
    r = exec(h, 5, json_pack("{s:s, s:s, s:s}", "shell", "cat", "state", "c", "stdin", "in"));
    assert_string_equal(out_of(r), "in");
    r = exec(h, 6,
             json_pack("{s:s, s:s, s:{s:i}}", "shell", "ulimit -n", "state", "c", "limits",
                       "nofile", 77));
    assert_string_equal(out_of(r), "77\n");
    r = exec(h, 7, json_pack("{s:s, s:s, s:s}", "shell", "pwd", "state", "c", "cwd", "/"));
    assert_string_equal(out_of(r), "/\n");
    /* The command's directory became the terminal's. */
    assert_int_equal(warm_pid(h, "c"), pid);
    assert_string_equal(out_of(sh_warm(h, 8, "c", "pwd")), "/\n");
}

static pid_t ppid_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(len > 0);
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    char st;
    long ppid = 0;
    assert_non_null(p);
    assert_int_equal(sscanf(p + 1, " %c %ld", &st, &ppid), 2);
    return (pid_t)ppid;
}

static void test_warm_shell_killed_is_replaced(void **state)
{
    struct harness *h = *state;
    sh(h, 1, "d", "cd /tmp");
    pid_t pid = warm_pid(h, "d");
    pid_t monitor = ppid_of(pid);
    assert_int_equal(kill(pid, SIGKILL), 0);
    /* Its monitor exits and is reaped by the agent, which drops the shell; the next command
     * runs cold and right. */
    for (int i = 0; i < 2000 && kill(monitor, 0) == 0; i++)
        usleep(5000);
    assert_int_equal(kill(monitor, 0), -1);
    struct result *r = sh(h, 2, "d", "pwd");
    assert_string_equal(out_of(r), "/tmp\n");
    assert_int_equal(jint(r, "exit_code"), 0);
    assert_true(warm_pid(h, "d") != pid);
}

static void test_warm_limits_and_shutdown(void **state)
{
    struct harness *h = *state;
    /* Twelve keys: at most eight warm shells, the most recent keys'. */
    for (uint32_t i = 0; i < 12; i++) {
        char key[16];
        snprintf(key, sizeof(key), "key%u", i);
        sh(h, 1 + i, key, "true");
        warm_pid(h, key);
    }
    /* (An evicted shell takes a moment to be killed by its monitor.) */
    for (int i = 0; i < 2000 && count_warm(h, NULL, NULL) > 8; i++)
        usleep(5000);
    assert_int_equal(count_warm(h, NULL, NULL), 8);
    assert_int_equal(count_warm(h, "key0", NULL), 0);
    assert_int_equal(count_warm(h, "key11", NULL), 1);
    /* Warm shells are not requests: 64 requests still fit beside them. */
    for (uint32_t i = 0; i < 64; i++)
        send_json(h, OBX_AF_EXEC, 100 + i, json_pack("{s:[s,s]}", "argv", "sleep", "0.5"));
    for (uint32_t i = 0; i < 64; i++) {
        assert_true(pump(h, 100 + i, 60000));
        assert_int_equal(h->res[100 + i].type, OBX_AF_EXIT);
    }
    /* Shutdown takes them with it. */
    int st = stop_agent(h);
    h->pid = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(count_warm(h, NULL, NULL), 0);
    assert_int_equal(find_procs(h->state, NULL), 0);
}

int main(void)
{
    snprintf(marker, sizeof(marker), "2000.%d", (int)getpid());
    signal(SIGPIPE, SIG_IGN);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_warm_keeps_state),
        T(test_warm_command_verbatim),
        T(test_warm_starts_like_cold),
        T(test_warm_timeout_kills_everything),
        T(test_shell_reused_per_key),
        T(test_shell_background_job_outlives_it),
        T(test_cold_requests_and_fresh_state),
        T(test_warm_shell_killed_is_replaced),
        T(test_warm_limits_and_shutdown),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
