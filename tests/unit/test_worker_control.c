/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who may reach the control socket of `onlyboxes mcp` (worker/control-dir.c): its directory is
 * made 0700 and refused when it is a symlink, looser, or another user's; XDG_RUNTIME_DIR is used
 * only when it is the user's own; a peer of another uid is refused (SO_PEERCRED); sockets whose
 * process is gone, or that nothing listens on, are removed by whoever finds them. The checks
 * that need another uid run as root only (they are skipped otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "worker/control-internal.h"

#define NOBODY 65534

static char base[32];

static int setup(void **state)
{
    snprintf(base, sizeof(base), "/tmp/obx-ctl-test-XXXXXX");
    assert_non_null(mkdtemp(base));
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    return nftw(base, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_dir_check(void **state)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/own", base);
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_control_dir_check(dir, false, &err), -ENOENT);
    assert_int_equal(obx_control_dir_check(dir, true, &err), 0);
    struct stat st;
    assert_int_equal(lstat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    /* a looser mode is refused, not repaired */
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(obx_control_dir_check(dir, true, &err), -EPERM);
    assert_non_null(strstr(err.message, "0755"));
    assert_int_equal(chmod(dir, 0700), 0);
    /* a symlink to a good directory is not trusted */
    char link[128];
    snprintf(link, sizeof(link), "%s/link", base);
    assert_int_equal(symlink(dir, link), 0);
    assert_int_equal(obx_control_dir_check(link, true, &err), -ENOTDIR);
    if (geteuid() != 0)
        return;
    assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
    assert_int_equal(obx_control_dir_check(dir, true, &err), -EPERM);
    assert_non_null(strstr(err.message, "belongs to uid 65534"));
}

static void test_dir_own(void **state)
{
    char out[108], want[128];
    struct obx_error err = OBX_ERROR_INIT;
    setenv("XDG_RUNTIME_DIR", base, 1);
    assert_int_equal(obx_control_dir_own(out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/onlyboxes", base);
    assert_string_equal(out, want);
    /* unset, relative, missing: /tmp/onlyboxes-UID */
    snprintf(want, sizeof(want), "/tmp/onlyboxes-%u", (unsigned)geteuid());
    const char *bad[] = {"relative/dir", "/nonexistent/obx", ""};
    for (size_t i = 0; i < 3; i++) {
        setenv("XDG_RUNTIME_DIR", bad[i], 1);
        assert_int_equal(obx_control_dir_own(out, sizeof(out), &err), 0);
        assert_string_equal(out, want);
    }
    unsetenv("XDG_RUNTIME_DIR");
    assert_int_equal(obx_control_dir_own(out, sizeof(out), &err), 0);
    assert_string_equal(out, want);
    if (geteuid() != 0)
        return;
    /* another user's runtime directory is not this user's */
    char other[128];
    snprintf(other, sizeof(other), "%s/other", base);
    assert_int_equal(mkdir(other, 0700), 0);
    assert_int_equal(chown(other, NOBODY, NOBODY), 0);
    setenv("XDG_RUNTIME_DIR", other, 1);
    assert_int_equal(obx_control_dir_own(out, sizeof(out), &err), 0);
    assert_string_equal(out, want);
    unsetenv("XDG_RUNTIME_DIR");
}

static void test_names(void **state)
{
    bool final = false;
    assert_int_equal(obx_control_name_pid("mcp-123.sock", &final), 123);
    assert_true(final);
    assert_int_equal(obx_control_name_pid("mcp-77.new", &final), 77);
    assert_false(final);
    const char *no[] = {"mcp-.sock",     "mcp-12a.sock",         "mcp-0.sock", "boxes",
                        "mcp-12.sock.x", "mcp-99999999999.sock", "xmcp-1.sock"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(no); i++)
        assert_int_equal(obx_control_name_pid(no[i], &final), 0);
}

/* A pid that no process has: a child's, once it was reaped. */
static int dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

static int listen_at(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static void test_find_prunes(void **state)
{
    char dir[64], path[100];
    setenv("XDG_RUNTIME_DIR", base, 1);
    snprintf(dir, sizeof(dir), "%s/onlyboxes", base);
    struct obx_worker_control_peers peers;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_worker_control_find(&peers, &err), 0); /* no directory yet */
    assert_string_equal(peers.where, dir);
    assert_int_equal(obx_control_dir_check(dir, true, &err), 0);
    /* a live one (the parent's pid), one of a process that is gone, one nothing listens on */
    snprintf(path, sizeof(path), "%s/mcp-%d.sock", dir, (int)getppid());
    int live = listen_at(path);
    snprintf(path, sizeof(path), "%s/mcp-%d.sock", dir, dead_pid());
    close(listen_at(path));
    snprintf(path, sizeof(path), "%s/mcp-%d.new", dir, dead_pid());
    close(listen_at(path));
    snprintf(path, sizeof(path), "%s/mcp-1.sock", dir);
    close(listen_at(path));
    assert_int_equal(obx_worker_control_find(&peers, &err), 1);
    assert_int_equal(peers.v[0].pid, (int)getppid());
    int left = 0;
    DIR *d = opendir(dir);
    for (struct dirent *de; (de = readdir(d));)
        left += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(left, 1);
    close(live);
    /* a directory that lets others in is refused, naming it */
    assert_int_equal(chmod(dir, 0711), 0);
    assert_int_equal(obx_worker_control_find(&peers, &err), -EPERM);
    assert_non_null(strstr(err.message, dir));
    assert_int_equal(chmod(dir, 0700), 0);
    unsetenv("XDG_RUNTIME_DIR");
}

static void test_peer_check(void **state)
{
    int sv[2];
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(obx_control_peer_check(sv[0], &err), 0);
    close(sv[0]);
    close(sv[1]);
    if (geteuid() != 0)
        return;
    /* a peer of another uid: nobody connects to a socket it may reach */
    char dir[64], path[100];
    assert_int_equal(chmod(base, 0711), 0);
    snprintf(dir, sizeof(dir), "%s/open", base);
    assert_int_equal(mkdir(dir, 0777), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    int lfd = listen_at(path);
    assert_int_equal(chmod(path, 0666), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
            _exit(2);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        _exit(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : 3);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0); /* connected: the connection waits in the backlog */
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(obx_control_peer_check(fd, &err), -EACCES);
    assert_non_null(strstr(err.message, "came from uid 65534"));
    close(fd);
    close(lfd);
    assert_int_equal(chmod(base, 0700), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dir_check),  cmocka_unit_test(test_dir_own),
        cmocka_unit_test(test_names),      cmocka_unit_test(test_find_prunes),
        cmocka_unit_test(test_peer_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
