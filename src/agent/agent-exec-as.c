/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes-agent --exec-as UID GID PROGRAM [ARG...]`: the step between a root worker and bwrap.
 * A threaded worker starts processes with posix_spawn, which can set up fds and signals but not
 * change the user; this step, run as root, drops every group and switches real, effective and
 * saved ids to UID and GID, checks that none of them can be taken back, and then executes PROGRAM
 * with ARGs (PROGRAM is also its argv[0]) and the environment it was given. PROGRAM is also opened
 * before the switch, and executed through that descriptor where UID cannot reach its path. Not a
 * way to gain anything: run by anyone but root the switch fails. Nothing else of the agent runs
 * in this mode.
 */
#include "agent-internal.h"

#include <fcntl.h>
#include <grp.h>

#include "common/util.h"

extern char **environ;

static int fail(const char *what, int e)
{
    fprintf(stderr, "onlyboxes-agent --exec-as: %s: %s\n", what, strerror(e));
    return 126;
}

static int parse_id(const char *s, unsigned *ret)
{
    int64_t v;
    /* 0 is root, and (uid_t)-1 means "unchanged" to setresuid(). */
    if (obx_parse_int64(s, 1, (int64_t)UINT32_MAX - 1, &v) < 0)
        return -EINVAL;
    *ret = (unsigned)v;
    return 0;
}

int agent_exec_as_main(int argc, char **argv)
{
    unsigned uid, gid;
    if (argc < 5 || parse_id(argv[2], &uid) < 0 || parse_id(argv[3], &gid) < 0) {
        fprintf(stderr, "usage: onlyboxes-agent --exec-as UID GID PROGRAM [ARG...] (UID and GID "
                        "not 0)\n");
        return 2;
    }
    const char *program = argv[4];
    int fd = open(program, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return fail(program, errno);
    if (setgroups(0, NULL) < 0)
        return fail("setgroups", errno);
    if (setresgid(gid, gid, gid) < 0)
        return fail("setresgid", errno);
    if (setresuid(uid, uid, uid) < 0)
        return fail("setresuid", errno);
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid ||
        getresgid(&rg, &eg, &sg) < 0 || rg != gid || eg != gid || sg != gid ||
        getgroups(0, NULL) != 0)
        return fail("the ids did not change", EPERM);
    if (setresuid(0, 0, 0) == 0 || setresgid(0, 0, 0) == 0)
        return fail("root could be taken back", EPERM);
    execve(program, argv + 4, environ);
    if (errno == EACCES || errno == ENOENT)
        fexecve(fd, argv + 4, environ);
    return fail(program, errno);
}
