/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bubblewrap runtime against the real bwrap and the real agent ($OBX_AGENT, set by ctest):
 * starts boxes, talks the agent protocol and checks from inside what a user would check (who am I,
 * which capabilities, which network, what can I read and write), that boxes cannot see each other,
 * that stop() leaves nothing behind and that cleanup_stale() removes only dead owners' boxes.
 * How long a start takes is measured by bench/run.sh (bench/box-start.c), not here.
 */
#include "test_sandbox_harness.h"

static int setup(void **state)
{
    return harness_setup(NULL);
}

static int teardown(void **state)
{
    return harness_teardown();
}

static void test_missing_bwrap(void **state)
{
    struct obx_sandbox_config cfg = {
        .bwrap_path = "/nonexistent/bwrap", .state_dir = state_dir, .agent_path = agent_path};
    struct obx_error err = OBX_ERROR_INIT;
    assert_null(obx_sandbox_runtime_new(&cfg, &err));
    assert_string_equal(err.code, OBX_ERR_RUNTIME_UNAVAILABLE);
    assert_non_null(strstr(err.message, "sudo apt-get install bubblewrap"));
    assert_non_null(strstr(err.message, "sudo dnf install bubblewrap"));
}

/* A bwrap that cannot create namespaces: the error names the switches to check. */
static void test_userns_unavailable(void **state)
{
    char fake[512];
    snprintf(fake, sizeof(fake), "%s/bwrap", tmp_root);
    FILE *f = fopen(fake, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n"
          "if [ \"$1\" = --version ]; then echo 'bubblewrap 0.8.0'; exit 0; fi\n"
          "echo 'bwrap: No permissions to create new namespace' >&2\n"
          "exit 1\n",
          f);
    fclose(f);
    assert_int_equal(chmod(fake, 0755), 0);
    struct obx_sandbox_config cfg = {
        .bwrap_path = fake, .state_dir = state_dir, .agent_path = agent_path};
    struct obx_error err = OBX_ERROR_INIT;
    assert_null(obx_sandbox_runtime_new(&cfg, &err));
    assert_string_equal(err.code, OBX_ERR_RUNTIME_UNAVAILABLE);
    assert_non_null(strstr(err.message, "No permissions to create new namespace"));
    assert_non_null(strstr(err.message, "user.max_user_namespaces"));
}

static void test_describe(void **state)
{
    char line[512];
    rt->describe(rt, line, sizeof(line));
    assert_non_null(strstr(line, "bubblewrap "));
    assert_non_null(strstr(line, "user namespaces: ok"));
    assert_non_null(strstr(line, state_dir));
}

static void test_identity(void **state)
{
    setenv("OBX_TEST_SECRET", "hunter2", 1); /* the worker's environment must not leak in */
    struct box b;
    box_start(&b, false);
    struct exec_result r;
    assert_string_equal(sh_ok(&b, "id -u", &r), "65532");
    assert_string_equal(sh_ok(&b, "id -g", &r), "65532");
    assert_string_equal(sh_ok(&b, "id -un", &r), "sandbox");
    assert_string_equal(sh_ok(&b, "hostname", &r), "onlyboxes");
    /* The agent is PID 1; sh's parent is the agent's per-request monitor, a child of PID 1. */
    assert_string_equal(sh_ok(&b, "cut -d' ' -f4 /proc/$PPID/stat", &r), "1");
    assert_string_equal(sh_ok(&b, "cat /proc/1/cmdline | tr '\\0' ' '", &r),
                        OBX_AGENT_PATH_IN_BOX " --workspace /workspace --memory 536870912 --nproc "
                                              "128 --fsize 1073741824 --nofile 1024 --cpu 900 ");
    assert_string_equal(sh_ok(&b, "grep CapEff /proc/self/status | tr -d ' \\t'", &r),
                        "CapEff:0000000000000000");
    assert_string_equal(sh_ok(&b, "grep CapBnd /proc/self/status | tr -d ' \\t'", &r),
                        "CapBnd:0000000000000000");
    assert_string_equal(sh_ok(&b, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", &r), "lo");
    assert_string_equal(sh_ok(&b, "pwd", &r), "/workspace");
    assert_string_equal(sh_ok(&b, "echo $HOME", &r), "/workspace");
    sh_ok(&b, "env", &r);
    assert_null(strstr(r.out, "OBX_TEST_SECRET"));
    assert_null(strstr(r.out, "hunter2"));
    /* Only the box's own processes are visible, not this test process. */
    sh_ok(&b, "cat /proc/[0-9]*/comm 2>/dev/null; true", &r); /* some may just exit */
    assert_null(strstr(r.out, "test_sandbox"));
    assert_non_null(strstr(r.out, "agent"));
    /* bwrap runs in its own process group, away from the worker's terminal signals. */
    assert_int_equal(getpgid(b.h.pid), b.h.pid);
    box_stop(&b);
}

static void test_filesystem(void **state)
{
    struct box b;
    box_start(&b, false);
    struct exec_result r;
    box_sh(&b, "echo x > /usr/x", &r);
    assert_int_not_equal(r.exit_code, 0);
    box_sh(&b, "touch /x", &r);
    assert_int_not_equal(r.exit_code, 0);
    box_sh(&b, "touch /etc/x", &r);
    assert_int_not_equal(r.exit_code, 0);
    sh_ok(&b, "test ! -e /etc/shadow && test ! -e /etc/gshadow && test ! -e /etc/ssl/private", &r);
    sh_ok(&b, "test ! -e /root && test ! -e /home && test ! -e /run && test ! -e /sys", &r);
    sh_ok(&b, "test ! -e /etc/resolv.conf", &r);
    sh_ok(&b, "test -x /bin/sh && test -r /etc/ld.so.cache", &r);
    sh_ok(&b, "echo tmp > /tmp/t && cat /tmp/t", &r);
    sh_ok(&b, "echo shm > /dev/shm/s && cat /dev/shm/s && echo x > /dev/null", &r);
    box_sh(&b, "touch /dev/x", &r);
    assert_int_not_equal(r.exit_code, 0);
    /* /workspace: the box's own tmpfs of the default size, nothing of it on the host's disk. */
    sh_ok(&b, "echo hello > /workspace/hello.txt && cat /workspace/hello.txt", &r);
    assert_string_equal(r.out, "hello");
    assert_string_equal(sh_ok(&b, "df -m /workspace | awk 'NR == 2 { print $1, $2 }'", &r),
                        "tmpfs 512");
    const char *dir = obx_sandbox_box_dir(&b.h);
    assert_non_null(dir);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/workspace/hello.txt", dir);
    assert_false(path_exists(path));
    box_stop(&b);
}

static void test_two_boxes_isolated(void **state)
{
    struct box a, b;
    box_start(&a, false);
    box_start(&b, false);
    struct exec_result r;
    sh_ok(&a, "echo a > /workspace/only-in-a", &r);
    assert_string_equal(sh_ok(&a, "ls /workspace", &r), "only-in-a");
    assert_string_equal(sh_ok(&b, "ls -A /workspace | wc -l | tr -d ' '", &r), "0");
    box_sh(&b, "find / -name only-in-a 2>/dev/null | grep -q .", &r);
    assert_int_not_equal(r.exit_code, 0);
    assert_string_not_equal(obx_sandbox_box_dir(&a.h), obx_sandbox_box_dir(&b.h));
    box_stop(&a);
    box_stop(&b);
}

static void test_network_opt_in(void **state)
{
    struct box b;
    box_start(&b, true);
    struct exec_result r;
    sh_ok(&b, "wc -l < /proc/net/dev", &r);
    char host[16], line[512];
    int lines = 0;
    FILE *f = fopen("/proc/net/dev", "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        lines++;
    fclose(f);
    snprintf(host, sizeof(host), "%d", lines);
    assert_string_equal(r.out, host); /* the host's interfaces, not a private loopback */
    box_stop(&b);
}

static void test_stop_removes_everything(void **state)
{
    /* Something outside the box that a careless rm -rf would follow a symlink into. */
    char outside[512], victim[PATH_MAX];
    snprintf(outside, sizeof(outside), "%s/outside", tmp_root);
    snprintf(victim, sizeof(victim), "%s/victim", outside);
    assert_int_equal(mkdir(outside, 0755), 0);
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fclose(f);

    struct box b;
    box_start(&b, false);
    struct exec_result r;
    /* Unreadable directories and a tree deeper than the remover holds open at once. */
    sh_ok(&b,
          "mkdir -p locked/inner && touch locked/inner/f && chmod 0 locked/inner locked && "
          "d=deep; for i in $(seq 100); do mkdir -p $d; d=$d/d; done; touch $d && "
          "chmod 0 deep/d/d/d",
          &r);
    char dir[1024], link[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", obx_sandbox_box_dir(&b.h));
    snprintf(link, sizeof(link), "%s/workspace/link", dir);
    assert_int_equal(symlink(outside, link), 0);
    snprintf(link, sizeof(link), "%s/workspace/rootlink", dir);
    assert_int_equal(symlink("/", link), 0);
    pid_t pid = b.h.pid;

    box_stop(&b);
    assert_false(path_exists(dir));
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_true(path_exists(victim));
}

/* Writes a box directory as a worker that has since died would have left it. */
static void fabricate_box(const char *id, pid_t owner, unsigned long long start)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/boxes/%s", state_dir, id);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/boxes/%s/workspace", state_dir, id);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/boxes/%s/workspace/file", state_dir, id);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/boxes/%s/owner", state_dir, id);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "owner_pid=%d\nowner_start=%llu\nworker=old\nsession=\n", (int)owner, start);
    fclose(f);
}

static void test_cleanup_stale(void **state)
{
    /* A pid that is certainly dead: a child we reaped. */
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    fabricate_box("obx-00000000000000aa", dead, 12345);
    /* Our own pid with another start time: pid reuse, also stale. */
    fabricate_box("obx-00000000000000bb", getpid(), 1);

    struct box live, orphan;
    box_start(&live, false);
    box_start(&orphan, false);
    /* Make `orphan` look like a box of a dead worker whose bwrap still runs. */
    char owner[PATH_MAX];
    snprintf(owner, sizeof(owner), "%s/owner", obx_sandbox_box_dir(&orphan.h));
    FILE *f = fopen(owner, "w");
    assert_non_null(f);
    fprintf(f, "owner_pid=%d\nowner_start=1\nworker=old\nsession=\n", (int)dead);
    fclose(f);
    char orphan_dir[PATH_MAX];
    snprintf(orphan_dir, sizeof(orphan_dir), "%s", obx_sandbox_box_dir(&orphan.h));

    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(rt->cleanup_stale(rt, &err), 3);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/boxes/obx-00000000000000aa", state_dir);
    assert_false(path_exists(path));
    snprintf(path, sizeof(path), "%s/boxes/obx-00000000000000bb", state_dir);
    assert_false(path_exists(path));
    assert_false(path_exists(orphan_dir));
    /* The orphan's bwrap was killed (it is our child, so it waits as a zombie to be reaped). */
    int status;
    assert_int_equal(waitpid(orphan.h.pid, &status, 0), orphan.h.pid);
    assert_true(WIFSIGNALED(status) || WIFEXITED(status));
    orphan.h.pid = 0;

    /* The live box is untouched and still works. */
    assert_true(path_exists(obx_sandbox_box_dir(&live.h)));
    struct exec_result r;
    assert_string_equal(sh_ok(&live, "echo still here", &r), "still here");
    assert_int_equal(rt->cleanup_stale(rt, &err), 0);
    box_stop(&live);
    box_stop(&orphan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_bwrap),  cmocka_unit_test(test_userns_unavailable),
        cmocka_unit_test(test_describe),       cmocka_unit_test(test_identity),
        cmocka_unit_test(test_filesystem),     cmocka_unit_test(test_two_boxes_isolated),
        cmocka_unit_test(test_network_opt_in), cmocka_unit_test(test_stop_removes_everything),
        cmocka_unit_test(test_cleanup_stale),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
