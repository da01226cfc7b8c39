/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The docker runtime's owner labels at work. Every box is labelled with its owner: this host, this
 * boot, our pid and its start time. cleanup_stale() removes boxes whose owner on this host and
 * boot is gone (or whose pid is another process now), so a crash leaves nothing behind for long;
 * boxes of live owners and of other hosts sharing the daemon are left alone. remove_own() removes
 * every box labelled with this very process, those still being started included, for the last
 * moments before exiting on a signal.
 */
#include "runtime-internal.h"

#include <fcntl.h>
#include <limits.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "common/thread.h"

/* Start time of pid in clock ticks since boot (field 22 of /proc/<pid>/stat). */
int obx_docker_proc_start_time(pid_t pid, unsigned long long *ret)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return -EIO;
    /* After ")": field 3 (state) onwards; the start time is field 22. */
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p && sscanf(p + 1, "%llu", ret) == 1 ? 0 : -EIO;
}

/* True when the labels name an owner on this host and boot that no longer runs. */
static bool owner_is_dead(struct docker_runtime *d, const json_t *labels)
{
    const char *host = obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_HOST, NULL);
    const char *boot = obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_BOOT, NULL);
    const char *pid_s = obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_PID, NULL);
    const char *start_s = obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_START, "");
    /* Another host's worker may share this daemon: its pids mean nothing here. */
    if (!host || !pid_s || !obx_streq(host, d->host))
        return false;
    if (!obx_streq(boot, d->boot_id))
        return true; /* started before this boot: that process is gone */
    int64_t pid;
    if (obx_parse_int64(pid_s, 1, INT32_MAX, &pid) < 0)
        return false;
    unsigned long long start;
    int r = obx_docker_proc_start_time((pid_t)pid, &start);
    if (r == -ESRCH)
        return true;
    if (r < 0)
        return false; /* cannot tell: keep it */
    char now[24];
    snprintf(now, sizeof(now), "%llu", start);
    return !obx_streq(now, start_s); /* the pid is another process now */
}

/* Containers removed at once: the daemon kills and unmounts them in parallel. */
#define REMOVE_PARALLEL 8

struct removal {
    struct docker_runtime *d;
    const char *id;
    int r;
    struct obx_error err;
};

static void removal_run(void *arg)
{
    struct removal *x = arg;
    x->err = (struct obx_error)OBX_ERROR_INIT;
    x->r = obx_docker_remove_container(x->d, x->id, &x->err);
}

/* Removes the containers of x[0..n) (each x[i].id), several at a time: a daemon takes a few
 * hundred milliseconds for each running one, which one after the other would hold up an exit.
 * Each x[i].r is 0 or the error that x[i].err tells. */
static void remove_all(struct removal *x, size_t n)
{
    obx_parallel_each(x, n, sizeof(*x), removal_run, REMOVE_PARALLEL);
}

int obx_docker_cleanup_stale(struct obx_runtime *rt, struct obx_error *err)
{
    struct docker_runtime *d = to_docker(rt);
    _cleanup_free_ char *filter = obx_docker_escape("{\"label\":[\"" OBX_LABEL_MANAGED "=true\"]}");
    _cleanup_free_ char *path = obx_xasprintf("/containers/json?all=1&filters=%s", filter);
    long status = 0;
    _cleanup_json_ json_t *list = NULL;
    int r = obx_docker_call(&d->c, "GET", path, NULL, OBX_DOCKER_TIMEOUT_MS, &status, &list, err);
    if (r < 0)
        return r;
    if (status != 200 || !json_is_array(list))
        return obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot list containers: HTTP %ld %s", status,
                             obx_docker_message(list));
    size_t n = 0, i;
    json_t *c;
    _cleanup_free_ struct removal *x = obx_xcalloc(json_array_size(list) + 1, sizeof(*x));
    _cleanup_free_ json_t **of = obx_xcalloc(json_array_size(list) + 1, sizeof(*of));
    json_array_foreach(list, i, c)
    {
        const char *id = obx_json_get_str(c, "Id", NULL);
        if (id && owner_is_dead(d, json_object_get(c, "Labels"))) {
            of[n] = c;
            x[n++] = (struct removal){.d = d, .id = id};
        }
    }
    remove_all(x, n);
    int removed = 0;
    for (i = 0; i < n; i++) {
        if (x[i].r < 0) {
            obx_warn("docker: stale box %.12s: %s", x[i].id, x[i].err.message);
            continue;
        }
        obx_debug("docker: removed stale box %.12s", x[i].id);
        removed++;
        /* Its direct-path socket, if that life crashed while the box started. */
        const char *name = json_string_value(json_array_get(json_object_get(of[i], "Names"), 0));
        if (d->sock_dir && name && strncmp(name, "/obx-", 5) == 0 && !strchr(name + 1, '/')) {
            _cleanup_free_ char *sp = obx_xasprintf("%s/%s.sock", d->sock_dir, name + 1);
            (void)unlink(sp);
        }
    }
    return removed;
}

/* Lists (into *ret) the containers labelled with filter_label=value, all states. */
static int list_labelled(struct docker_runtime *d, const char *label, const char *value,
                         json_t **ret, struct obx_error *err)
{
    _cleanup_json_ json_t *f = json_pack("{s:[s]}", "label", "x");
    _cleanup_free_ char *lv = obx_xasprintf("%s=%s", label, value);
    json_array_set_new(json_object_get(f, "label"), 0, json_string(lv));
    _cleanup_free_ char *text = obx_json_dumps(f);
    _cleanup_free_ char *filter = obx_docker_escape(text);
    _cleanup_free_ char *path = obx_xasprintf("/containers/json?all=1&filters=%s", filter);
    long status = 0;
    json_t *list = NULL;
    int r = obx_docker_call(&d->c, "GET", path, NULL, OBX_DOCKER_TIMEOUT_MS, &status, &list, err);
    if (r < 0)
        return r;
    if (status != 200 || !json_is_array(list)) {
        r = obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                          "cannot list containers: HTTP %ld %s", status, obx_docker_message(list));
        json_decref(list);
        return r;
    }
    *ret = list;
    return 0;
}

/* Every container whose owner labels name this process, in whatever state; then again while
 * a start() is still in flight (its container may appear after the list), for up to 2 s. */
int obx_docker_remove_own(struct obx_runtime *rt, struct obx_error *err)
{
    struct docker_runtime *d = to_docker(rt);
    int removed = 0;
    /* Starts under way finish or remove their own container; a daemon under load may take
     * seconds to answer one, so wait for them, within a bound. */
    __atomic_store_n(&d->stopping, true, __ATOMIC_RELEASE);
    uint64_t until = obx_now_ms() + OBX_DOCKER_TIMEOUT_MS;
    for (;;) {
        _cleanup_json_ json_t *list = NULL;
        int r = list_labelled(d, OBX_DOCKER_LABEL_OWNER_PID, d->self_pid, &list, err);
        if (r < 0)
            return r;
        size_t i, n = 0;
        json_t *c;
        _cleanup_free_ struct removal *x = obx_xcalloc(json_array_size(list) + 1, sizeof(*x));
        json_array_foreach(list, i, c)
        {
            const json_t *labels = json_object_get(c, "Labels");
            const char *id = obx_json_get_str(c, "Id", NULL);
            if (id &&
                obx_streq(obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_HOST, ""), d->host) &&
                obx_streq(obx_json_get_str(labels, OBX_DOCKER_LABEL_OWNER_START, ""),
                          d->self_start))
                x[n++] = (struct removal){.d = d, .id = id};
        }
        remove_all(x, n);
        for (i = 0; i < n; i++)
            removed += x[i].r == 0;
        if (__atomic_load_n(&d->starting, __ATOMIC_ACQUIRE) == 0 || obx_now_ms() >= until)
            return removed;
        usleep(50 * 1000);
    }
}
