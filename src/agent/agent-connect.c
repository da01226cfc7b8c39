/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --connect PATH: the docker runtime's direct path. The worker listens on a unix socket that is
 * bind-mounted (read-only) into the box; the agent connects to it twice at start-up and puts the
 * first connection on fd 0 (frames from the worker) and the second on fd 1 (frames to it), so the
 * rest of the agent speaks the frame protocol exactly as on stdin/stdout, without the container
 * daemon's attach proxy in between. Two connections, not one, so that each direction closes on
 * its own, as a pipe does: the worker closing its sending end is EOF here. The attach
 * stream's stdin is dropped: the connection carries the life cycle too, since it ends when the
 * worker stops the box or dies, and EOF on fd 0 is how the agent shuts down. Runs before
 * anything else in main(), on the only thread.
 */
#include "agent-connect.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_TRIES 500 /* 10 ms apart: the socket exists before the box starts */

static int connect_path(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "onlyboxes-agent: --connect %s: path too long\n", path);
        return -1;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    for (int i = 0;; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        int e = errno;
        close(fd);
        if ((e != ENOENT && e != ECONNREFUSED && e != EINTR) || i + 1 >= CONNECT_TRIES) {
            errno = e;
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "onlyboxes-agent: cannot connect to %s: %s\n", path, strerror(errno));
    return -1;
}

int agent_connect_from_args(int *argc, char **argv)
{
    const char *path = NULL;
    int kept = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--connect") == 0 && i + 1 < *argc) {
            path = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--connect=", 10) == 0) {
            path = argv[i] + 10;
            continue;
        }
        argv[kept++] = argv[i];
    }
    argv[kept] = NULL;
    *argc = kept;
    if (!path)
        return 0;
    /* The worker takes the connections in this order: the first is what it writes to. */
    int in = connect_path(path);
    if (in < 0)
        return -1;
    int out = connect_path(path);
    if (out < 0) {
        close(in);
        return -1;
    }
    /* dup2 clears close-on-exec on 0 and 1; every child gets its own 0-2 anyway. */
    int r = 0;
    if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0) {
        fprintf(stderr, "onlyboxes-agent: dup2: %s\n", strerror(errno));
        r = -1;
    }
    close(in);
    close(out);
    return r;
}
