/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bubblewrap runtime's second line of defence, seen from the host and from inside a box: under
 * a root worker every box runs as an unprivileged host uid of its own (never 0, never another
 * box's, free again once the box is gone, taken from a range that holds no account of the host);
 * every box runs under the seccomp filter (Seccomp: 2), which refuses what it should with EPERM;
 * and the usual workloads still run under it: Python with sqlite, ssl, multiprocessing, threads
 * and numpy, pip, git, a C compiler, node. Tools the host lacks are reported and skipped.
 */
#include <dirent.h>
#include <sys/utsname.h>

#include "test_sandbox_harness.h"

/* The default ONLYBOXES_BWRAP_HOST_UIDS. */
#define DEFAULT_FIRST 1879048192u
#define DEFAULT_LAST 1879113727u
/* One uid outside the default range, for the test of a range with room for one box. */
#define ONE_UID "1879200000"

static bool root;

static int setup(void **state)
{
    root = geteuid() == 0;
    return harness_setup(NULL);
}

static int teardown(void **state)
{
    return harness_teardown();
}

/* The value of field (e.g. "Uid:") in /proc/<pid>/status, up to the end of its line. */
static void proc_status(pid_t pid, const char *field, char *out, size_t size)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, strlen(field)) != 0)
            continue;
        const char *v = line + strlen(field);
        v += strspn(v, " \t");
        snprintf(out, size, "%.*s", (int)strcspn(v, "\n"), v);
        break;
    }
    fclose(f);
    assert_true(out[0] != '\0');
}

/* The host pid of the box's PID 1 (the agent): bwrap's only child. */
static pid_t box_child(const struct box *b)
{
    char path[96], buf[64] = "";
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", b->h.pid, b->h.pid);
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    int64_t pid;
    buf[strcspn(buf, " \n")] = '\0';
    assert_int_equal(obx_parse_int64(buf, 2, INT32_MAX, &pid), 0);
    return (pid_t)pid;
}

/* The host uid a box's process runs as, with real, effective, saved and fs uid all equal. */
static unsigned host_uid_of(pid_t pid)
{
    char uid[128];
    unsigned r, e, s, fs;
    proc_status(pid, "Uid:", uid, sizeof(uid));
    assert_int_equal(sscanf(uid, "%u %u %u %u", &r, &e, &s, &fs), 4);
    assert_true(r == e && e == s && s == fs);
    return r;
}

/* Checks that every host process in pid's pid namespace runs as uid; returns how many there are. */
static int ns_uids_are(pid_t pid, unsigned uid)
{
    char path[64], ns[64], other[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
    ssize_t n = readlink(path, ns, sizeof(ns) - 1);
    assert_true(n > 0);
    ns[n] = '\0';
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t p;
        if (obx_parse_int64(de->d_name, 1, INT32_MAX, &p) < 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)p);
        n = readlink(path, other, sizeof(other) - 1);
        if (n <= 0)
            continue;
        other[n] = '\0';
        if (strcmp(other, ns) != 0)
            continue;
        assert_int_equal(host_uid_of((pid_t)p), uid);
        count++;
    }
    closedir(d);
    return count;
}

static void test_host_uid(void **state)
{
    struct box a, b;
    box_start(&a, false);
    box_start(&b, false);
    struct exec_result r;
    /* Inside, the same user as ever. */
    assert_string_equal(sh_ok(&a, "id -un; id -u; id -g", &r), "sandbox\n65532\n65532");
    /* A process the box started, seen from the host, as a user sees it with ps. */
    sh_ok(&a, "sleep 30 >/dev/null 2>&1 & echo $!", &r);
    unsigned ua = host_uid_of(box_child(&a)), ub = host_uid_of(box_child(&b));
    assert_int_equal(host_uid_of(a.h.pid), ua); /* bwrap itself too */
    if (root) {
        print_message("root worker: boxes run as host uids %u and %u\n", ua, ub);
        assert_int_not_equal(ua, 0);
        assert_true(ua >= DEFAULT_FIRST && ua <= DEFAULT_LAST);
        assert_true(ub >= DEFAULT_FIRST && ub <= DEFAULT_LAST);
        assert_int_not_equal(ua, ub);
        char line[512];
        rt->describe(rt, line, sizeof(line));
        assert_non_null(strstr(line, "boxes run as host uids 1879048192-1879113727, one per box"));
    } else {
        assert_int_equal(ua, geteuid());
        assert_int_equal(ub, geteuid());
    }
    /* Every process of the box, the one started in the background included. */
    assert_true(ns_uids_are(box_child(&a), ua) >= 3); /* agent, its monitor or shell, sleep */
    box_stop(&a);
    box_stop(&b);
}

/* A range with room for one box: a second box is refused until the first is gone. */
static void test_uid_range_exhausted_then_freed(void **state)
{
    if (!root)
        skip(); /* only a root worker switches to host uids */
    struct obx_runtime *keep = rt;
    struct obx_sandbox_config cfg = {
        .state_dir = state_dir, .agent_path = agent_path, .host_uids = ONE_UID "-" ONE_UID};
    struct obx_error err = OBX_ERROR_INIT;
    rt = obx_sandbox_runtime_new(&cfg, &err);
    assert_non_null(rt);
    struct box a, b;
    box_start(&a, false);
    assert_int_equal(host_uid_of(box_child(&a)), 1879200000u);
    struct obx_box_spec spec = {.agent_path = agent_path, .worker_id = "w"};
    struct obx_box_handle h;
    assert_int_equal(rt->start(rt, &spec, &h, &err), -EAGAIN);
    assert_string_equal(err.code, OBX_ERR_NO_CAPACITY);
    assert_non_null(strstr(err.message, "all 1 host uids of ONLYBOXES_BWRAP_HOST_UIDS are taken"));
    box_stop(&a);
    box_start(&b, false);
    assert_int_equal(host_uid_of(box_child(&b)), 1879200000u);
    box_stop(&b);
    rt->free(rt);
    rt = keep;
}

/* The agent's path is not reachable by the boxes' host uids (a 0700 directory of root's): the
 * agent is handed to bwrap as data and the box starts all the same. */
static void test_private_agent_path(void **state)
{
    if (!root)
        skip();
    char dir[512], priv[600];
    snprintf(dir, sizeof(dir), "%s/private", tmp_root);
    snprintf(priv, sizeof(priv), "%s/agent", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    int in = open(agent_path, O_RDONLY | O_CLOEXEC);
    int outfd = open(priv, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    assert_true(in >= 0 && outfd >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(obx_write_all(outfd, buf, (size_t)n), 0);
    close(in);
    close(outfd);
    struct obx_box_spec spec = {.agent_path = priv};
    struct box b;
    assert_int_equal(box_start_spec(&b, &spec), 0);
    struct exec_result r;
    assert_string_equal(sh_ok(&b, "stat -c %a " OBX_AGENT_PATH_IN_BOX "; id -u", &r), "555\n65532");
    box_stop(&b);
}

/* Runs argv, returns its exit status and its stdout and stderr in out. */
static int run(char *const argv[], char *out, size_t size)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < size && (n = read(p[0], out + len, size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The agent's step from root to a box's host uid: all ids and no groups, never uid 0. */
static void test_exec_as(void **state)
{
    char out[512];
    char *zero[] = {(char *)agent_path, "--exec-as", "0", "0", "/usr/bin/id", NULL};
    assert_int_equal(run(zero, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "UID and GID not 0"));
    /* Groups: without supplementary groups the line holds only blanks. */
    const char *cmd = "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups):' /proc/self/status | "
                      "tr -s '\\t ' ' '";
    char *as[] = {(char *)agent_path, "--exec-as", "1879200001", "1879200002",
                  "/bin/sh",          "-c",        (char *)cmd,  NULL};
    int rc = run(as, out, sizeof(out));
    if (!root) { /* nothing to gain: the switch fails */
        assert_int_equal(rc, 126);
        assert_non_null(strstr(out, "Operation not permitted"));
        return;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(out, "1879200001\n1879200002\n1879200002\n"
                             "Uid: 1879200001 1879200001 1879200001 1879200001\n"
                             "Gid: 1879200002 1879200002 1879200002 1879200002\nGroups: \n");
}

static void expect_refused(const char *range, const char *needle)
{
    struct obx_sandbox_config cfg = {
        .state_dir = state_dir, .agent_path = agent_path, .host_uids = range};
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_runtime *r = obx_sandbox_runtime_new(&cfg, &err);
    if (r)
        fail_msg("ONLYBOXES_BWRAP_HOST_UIDS=%s was accepted", range);
    assert_string_equal(err.code, OBX_ERR_INVALID_PAYLOAD);
    if (!strstr(err.message, "ONLYBOXES_BWRAP_HOST_UIDS=") || !strstr(err.message, needle))
        fail_msg("for %s: %s", range, err.message);
}

static void test_uid_range_refused(void **state)
{
    expect_refused("1000", "expected FIRST-LAST");
    expect_refused("0-100", "expected FIRST-LAST"); /* never root */
    expect_refused("300-200", "FIRST <= LAST");
    expect_refused("1-4294967295", "expected FIRST-LAST"); /* above 2^31 - 1 */
    expect_refused("-5", "expected FIRST-LAST");
    if (!root)
        return; /* the range is checked against the host's ids where it is used */
    expect_refused("65535-65535", "65535");
    /* An account of this host: the overflow user every distribution has. */
    expect_refused("65534-65534", "nobody");
    /* A person's files: a home directory whose owner no database here names. */
    char home[64];
    snprintf(home, sizeof(home), "/home/obx-test-%d", (int)getpid());
    if (mkdir(home, 0700) < 0) {
        print_message("cannot create %s (%s): the /home check is skipped\n", home, strerror(errno));
        return;
    }
    struct obx_sandbox_config cfg = {
        .state_dir = state_dir, .agent_path = agent_path, .host_uids = "1879299990-1879300010"};
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_runtime *other = NULL;
    int r = chown(home, 1879300000, 1879300000);
    if (r == 0)
        other = obx_sandbox_runtime_new(&cfg, &err);
    rmdir(home); /* before asserting: nothing left in /home */
    assert_int_equal(r, 0);
    assert_null(other);
    assert_non_null(strstr(err.message, "holds 1879300000, the owner of /home/obx-test-"));
}

static void test_seccomp_status(void **state)
{
    struct box b;
    box_start(&b, false);
    struct exec_result r;
    char v[64];
    proc_status(box_child(&b), "Seccomp:", v, sizeof(v));
    assert_string_equal(v, "2");
    proc_status(box_child(&b), "NoNewPrivs:", v, sizeof(v));
    assert_string_equal(v, "1");
    assert_string_equal(sh_ok(&b, "grep '^Seccomp:' /proc/self/status | tr -d ' \\t'", &r),
                        "Seccomp:2");
    char line[512];
    rt->describe(rt, line, sizeof(line));
    assert_non_null(strstr(line, "; seccomp filter: "));
    box_stop(&b);
}

static bool have(const char *path)
{
    return access(path, X_OK) == 0;
}

/* A C program compiled and run in the box: denied calls fail with EPERM (clone3 with ENOSYS, so
 * that glibc falls back to clone), allowed ones still work, threads and fork too. */
static const char probe_c[] =
    "#define _GNU_SOURCE\n"
    "#include <errno.h>\n#include <pthread.h>\n#include <sched.h>\n#include <signal.h>\n"
    "#include <stdio.h>\n#include <sys/ioctl.h>\n#include <sys/mount.h>\n"
    "#include <sys/personality.h>\n#include <sys/socket.h>\n#include <sys/syscall.h>\n"
    "#include <sys/wait.h>\n#include <unistd.h>\n"
    "static void show(const char *n, long r) { printf(\"%s=%s\\n\", n, r < 0 ? "
    "(errno == EPERM ? \"EPERM\" : errno == ENOSYS ? \"ENOSYS\" : \"other\") : \"ok\"); }\n"
    "static void *th(void *a) { return a; }\n"
    "int main(void) {\n"
    "  show(\"keyctl\", syscall(SYS_keyctl, 0, -3, 0));\n"
    "  show(\"bpf\", syscall(SYS_bpf, 0, 0, 0));\n"
    "  show(\"userfaultfd\", syscall(SYS_userfaultfd, 1));\n"
    "  show(\"io_uring_setup\", syscall(SYS_io_uring_setup, 1, 0));\n"
    "  show(\"unshare\", unshare(CLONE_NEWUSER));\n"
    "  show(\"setns\", setns(-1, 0));\n"
    "  show(\"mount\", mount(\"none\", \"/tmp\", \"tmpfs\", 0, 0));\n"
    "  show(\"clone\", syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));\n"
    "  show(\"clone3\", syscall(SYS_clone3, 0, 0));\n"
    "  show(\"personality\", personality(ADDR_NO_RANDOMIZE));\n"
    "  show(\"tiocsti\", ioctl(0, TIOCSTI, \"x\"));\n"
    "  show(\"vsock\", socket(40, SOCK_STREAM, 0));\n"
    "  show(\"getpid\", getpid());\n"
    "  show(\"linux\", personality(PER_LINUX));\n"
    "  pthread_t t; show(\"thread\", pthread_create(&t, 0, th, 0) ? -1 : pthread_join(t, 0));\n"
    "  pid_t p = fork(); if (p == 0) _exit(7); int st; waitpid(p, &st, 0);\n"
    "  show(\"fork\", WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : -1);\n"
    "  return 0;\n}\n";

static const char probe_expected[] = "keyctl=EPERM\nbpf=EPERM\nuserfaultfd=EPERM\n"
                                     "io_uring_setup=EPERM\nunshare=EPERM\nsetns=EPERM\n"
                                     "mount=EPERM\nclone=EPERM\nclone3=ENOSYS\n"
                                     "personality=EPERM\ntiocsti=EPERM\nvsock=EPERM\n"
                                     "getpid=ok\nlinux=ok\nthread=ok\nfork=ok";

static void test_seccomp_denies_from_c(void **state)
{
    if (!have("/usr/bin/gcc") && !have("/usr/bin/cc")) {
        print_message("no C compiler on this host: skipped\n");
        skip();
    }
    struct box b;
    box_start(&b, false);
    struct exec_result r;
    _cleanup_free_ char *cmd =
        obx_xasprintf("cat > p.c <<'EOF'\n%sEOF\ncc -pthread -o p p.c && ./p </dev/null", probe_c);
    assert_string_equal(sh_ok(&b, cmd, &r), probe_expected);
    box_stop(&b);
}

/* The same from Python, through the calls Python offers and ctypes. */
static void test_seccomp_denies_from_python(void **state)
{
    struct utsname u;
    assert_int_equal(uname(&u), 0);
    if (strcmp(u.machine, "x86_64") != 0) {
        print_message("system call numbers below are x86_64's: skipped on %s\n", u.machine);
        skip();
    }
    struct box b;
    box_start(&b, false);
    struct exec_result r;
    const char *py = "python3 - <<'EOF'\n"
                     "import ctypes, errno, fcntl, os, socket, termios\n"
                     "libc = ctypes.CDLL(None, use_errno=True)\n"
                     "def c(name, rv):\n"
                     "    e = ctypes.get_errno() if rv < 0 else 0\n"
                     "    print(name, errno.errorcode.get(e, 'ok'))\n"
                     "def py(name, f):\n"
                     "    try:\n"
                     "        f(); print(name, 'ok')\n"
                     "    except OSError as e:\n"
                     "        print(name, errno.errorcode[e.errno])\n"
                     "c('keyctl', libc.syscall(250, 0, -3, 0))\n"
                     "c('add_key', libc.syscall(248, b'user', b'k', b'v', 1, -2))\n"
                     "c('perf_event_open', libc.syscall(298, 0, 0, -1, -1, 0))\n"
                     "c('unshare', libc.unshare(0x10000000))\n"
                     "c('personality', libc.personality(0x0040000))\n"
                     "py('chroot', lambda: os.chroot('/'))\n"
                     "py('vsock', lambda: socket.socket(40, socket.SOCK_STREAM))\n"
                     "py('tiocsti', lambda: fcntl.ioctl(0, termios.TIOCSTI, b'x'))\n"
                     "py('fork', lambda: os.waitpid(os.fork() or os._exit(0), 0))\n"
                     "EOF";
    assert_string_equal(sh_ok(&b, py, &r),
                        "keyctl EPERM\nadd_key EPERM\nperf_event_open EPERM\nunshare EPERM\n"
                        "personality EPERM\nchroot EPERM\nvsock EPERM\ntiocsti EPERM\nfork ok");
    box_stop(&b);
}

/* What people run in boxes still runs under the filter. */
static void test_workloads(void **state)
{
    struct box b;
    box_start(&b, false);
    struct exec_result r;
    const char *py = "python3 - <<'EOF'\n"
                     "import json, multiprocessing, sqlite3, ssl, threading\n"
                     "ssl.create_default_context()\n"
                     "db = sqlite3.connect('t.db'); db.execute('create table t(x)')\n"
                     "db.execute('insert into t values (42)'); db.commit()\n"
                     "def sq(x): return x * x\n"
                     "with multiprocessing.Pool(2) as p: squares = p.map(sq, range(4))\n"
                     "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
                     "print(json.dumps([db.execute('select x from t').fetchone()[0], squares]))\n"
                     "EOF";
    assert_string_equal(sh_ok(&b, py, &r), "thread\n[42, [0, 1, 4, 9]]");
    box_sh(&b, "python3 -c 'import numpy'", &r);
    if (r.exit_code == 0)
        assert_string_equal(sh_ok(&b,
                                  "python3 -c 'import numpy as n; "
                                  "print(round(n.linalg.det(n.eye(3) * 2)), n.arange(4).sum())'",
                                  &r),
                            "8 6");
    else
        print_message("numpy is not installed on this host: its check is skipped\n");
    box_sh(&b, "python3 -m pip --version", &r);
    if (r.exit_code == 0)
        assert_string_equal(
            sh_ok(&b,
                  "mkdir -p pkg/obxdemo && echo 'X = 42' > pkg/obxdemo/__init__.py && "
                  "printf 'from setuptools import setup\\nsetup(name=\"obxdemo\", version=\"1\", "
                  "packages=[\"obxdemo\"])\\n' > pkg/setup.py && "
                  "python3 -m pip install -q --no-index --no-build-isolation --target t ./pkg "
                  ">/dev/null 2>&1; PYTHONPATH=t python3 -c 'import obxdemo; print(obxdemo.X)'",
                  &r),
            "42");
    else
        print_message("pip is not installed on this host: its check is skipped\n");
    if (have("/usr/bin/git"))
        assert_string_equal(sh_ok(&b,
                                  "git init -q repo && cd repo && echo hi > f && git add f && "
                                  "git -c user.name=t -c user.email=t@example.com commit -qm one "
                                  "&& git log --format=%s",
                                  &r),
                            "one");
    else
        print_message("git is not installed on this host: its check is skipped\n");
    box_stop(&b);
    if (!have("/usr/bin/node")) {
        print_message("node is not installed on this host: its check is skipped\n");
        return;
    }
    /* V8 reserves more address space than the default per-process limit (RLIMIT_AS) allows,
     * with or without the filter: node gets a box with a larger one. */
    struct obx_box_spec spec = {.agent_path = agent_path, .memory_bytes = 16ull << 30};
    assert_int_equal(box_start_spec(&b, &spec), 0);
    assert_string_equal(
        sh_ok(&b,
              "node -e 'const fs = require(\"fs\"); fs.writeFileSync(\"n\", \"ok\"); "
              "require(\"child_process\").execSync(\"true\"); "
              "new (require(\"worker_threads\").Worker)(\"1\", {eval: true}).on(\"exit\", () => "
              "console.log(fs.readFileSync(\"n\", \"utf8\")))'",
              &r),
        "ok");
    box_stop(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_uid),
        cmocka_unit_test(test_uid_range_exhausted_then_freed),
        cmocka_unit_test(test_uid_range_refused),
        cmocka_unit_test(test_private_agent_path),
        cmocka_unit_test(test_exec_as),
        cmocka_unit_test(test_seccomp_status),
        cmocka_unit_test(test_seccomp_denies_from_c),
        cmocka_unit_test(test_seccomp_denies_from_python),
        cmocka_unit_test(test_workloads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
