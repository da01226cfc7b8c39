/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes cp`: files in and out of a terminal session's box, over the files API
 * (docs/console.md) of a console, or without one of the local `onlyboxes mcp` that has the
 * session (cli-sessions.c). A download is written to a temporary file beside its target and
 * renamed when whole, so an interrupted copy leaves no part of a file; an upload cut short leaves
 * none in the box either. On a terminal a copy of more than a few megabytes shows a progress bar
 * on stderr.
 */
#include "cli-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>

#include "client/client.h"
#include "common/clock.h"

#define PROGRESS_MIN_BYTES (4u << 20) /* smaller copies show no bar */
#define SESSION_ID_MAX 128

static const char cp_usage[] =
    "Usage: onlyboxes cp [-r] [--pid PID] SOURCE DEST\n"
    "\n"
    "Copy a file (a directory with -r) into or out of a terminal session. One side is\n"
    "SESSION:PATH (PATH absolute, or relative to the session's working directory), the other a\n"
    "path on this computer (write ./a:b for a local name with a colon).\n"
    "  onlyboxes cp data.csv dev:input/           # into the session dev\n"
    "  onlyboxes cp -r dev:/workspace/out ./out   # a directory out of it\n"
    "\n"
    "With a console (--console or ONLYBOXES_CONSOLE) the session is one of the token's account\n"
    "there. Without one it is a session of a local agent: one of the onlyboxes mcp --stdio\n"
    "processes running on this computer as this user has it, and is reached through that\n"
    "process's control socket (in $XDG_RUNTIME_DIR/onlyboxes or /tmp/onlyboxes-UID).\n"
    "\n"
    "Options:\n"
    "  -r, --recursive    copy directories and what they hold\n"
    "  --pid PID          without a console: the onlyboxes mcp process whose session it is,\n"
    "                     when more than one has a session of that name\n"
    "  --console URL      the console (http:// or https://); also ONLYBOXES_CONSOLE\n"
    "  --token TOKEN      the console API token; better ONLYBOXES_TOKEN (argv is visible)\n"
    "  --ca-file FILE     PEM CA bundle for an https console; also ONLYBOXES_CA_FILE\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 when everything was copied, 1 when something was not (the session not\n"
    "found among them), 2 for bad usage, no console and no onlyboxes mcp running, or a session\n"
    "name several of them have; 130 when Ctrl-C stopped it (no partial file is left).\n";

/* ---- cp ---- */

struct cp {
    struct obx_cli_api *api;
    bool recursive;
    bool tty;
    int errors;
};

/* SESSION:PATH: the session id (visible ASCII, no '/') before the first ':'. */
static bool split_remote(const char *arg, char *sid, size_t sid_size, const char **path)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg || (size_t)(colon - arg) > SESSION_ID_MAX ||
        (size_t)(colon - arg) >= sid_size)
        return false;
    for (const char *p = arg; p < colon; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '/')
            return false;
    snprintf(sid, sid_size, "%.*s", (int)(colon - arg), arg);
    *path = colon[1] ? colon + 1 : ".";
    return true;
}

struct bar {
    const char *name;
    uint64_t last_ms, start_ms;
    bool shown;
};

static void human(uint64_t n, char *out, size_t size)
{
    if (n >= (1u << 30))
        snprintf(out, size, "%.1f GiB", (double)n / (1u << 30));
    else if (n >= (1u << 20))
        snprintf(out, size, "%.1f MiB", (double)n / (1u << 20));
    else
        snprintf(out, size, "%.0f KiB", (double)n / 1024);
}

static void bar_draw(void *userdata, uint64_t done, uint64_t total)
{
    struct bar *b = userdata;
    uint64_t now = obx_now_ms();
    if (total < PROGRESS_MIN_BYTES || (now - b->last_ms < 100 && done < total))
        return;
    b->last_ms = now;
    b->shown = true;
    char d[32], t[32], rate[32];
    human(done, d, sizeof(d));
    human(total, t, sizeof(t));
    double secs = (double)(now - b->start_ms) / 1000;
    human(secs > 0 ? (uint64_t)((double)done / secs) : 0, rate, sizeof(rate));
    int pct = (int)(done * 100 / total);
    char hashes[31];
    memset(hashes, '#', (size_t)pct * 30 / 100);
    hashes[pct * 30 / 100] = '\0';
    fprintf(stderr, "\r%-24.24s [%-30s] %3d%% %s / %s  %s/s ", b->name, hashes, pct, d, t, rate);
}

static void bar_end(struct bar *b)
{
    if (b->shown)
        fputc('\n', stderr);
}

static void cp_error(struct cp *c, const char *fmt, ...) OBX_PRINTF(2, 3);
static void cp_error(struct cp *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("onlyboxes cp: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    c->errors++;
}

/* A transfer that was interrupted ends the command. */
static bool interrupted(const struct obx_error *err)
{
    return obx_streq(err->code, OBX_ERR_CANCELED);
}

static int upload_file(struct cp *c, const char *local, const char *sid, const char *path)
{
    _cleanup_close_ int fd = open(local, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        cp_error(c, "%s: %s", local, strerror(errno));
        return 0;
    }
    _cleanup_free_ char *route = obx_client_files_path(c->api->conn, sid, path, NULL);
    _cleanup_free_ char *name_buf = obx_xstrdup(local);
    struct bar b = {basename(name_buf), 0, obx_now_ms(), false};
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_client_transfer(c->api->conn, "PUT", route, fd, (uint64_t)st.st_size,
                                c->tty ? bar_draw : NULL, &b, &status, &body, NULL, &err);
    bar_end(&b);
    if (r < 0) {
        cp_error(c, "%s: %s", local, err.message);
        return interrupted(&err) ? -ECANCELED : 0;
    }
    if (status != 200 && status != 201)
        cp_error(c, "%s -> %s:%s: %s", local, sid, path,
                 obx_json_get_str(body, "error", "the console refused it"));
    return 0;
}

static int mkdir_remote(struct cp *c, const char *sid, const char *path)
{
    _cleanup_free_ char *route = obx_client_files_path(c->api->conn, sid, path, "&type=directory");
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_client_transfer(c->api->conn, "PUT", route, -1, 0, NULL, NULL, &status, &body, NULL,
                                &err);
    if (r < 0) {
        cp_error(c, "%s:%s: %s", sid, path, err.message);
        return interrupted(&err) ? -ECANCELED : -EIO;
    }
    if (status != 201) {
        cp_error(c, "%s:%s: %s", sid, path, obx_json_get_str(body, "error", "refused"));
        return -EIO;
    }
    return 0;
}

static int upload_tree(struct cp *c, const char *local, const char *sid, const char *path)
{
    struct stat st;
    if (stat(local, &st) < 0) {
        cp_error(c, "%s: %s", local, strerror(errno));
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (!S_ISREG(st.st_mode)) {
            cp_error(c, "%s: not a regular file; skipped", local);
            return 0;
        }
        return upload_file(c, local, sid, path);
    }
    int r = mkdir_remote(c, sid, path);
    if (r < 0)
        return r == -ECANCELED ? r : 0;
    DIR *d = opendir(local);
    if (!d) {
        cp_error(c, "%s: %s", local, strerror(errno));
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d)) && r == 0) {
        if (obx_streq(de->d_name, ".") || obx_streq(de->d_name, ".."))
            continue;
        _cleanup_free_ char *l = obx_xasprintf("%s/%s", local, de->d_name);
        _cleanup_free_ char *p = obx_xasprintf("%s/%s", path, de->d_name);
        r = upload_tree(c, l, sid, p);
    }
    closedir(d);
    return r;
}

/* Downloads sid:path into the file target (through a temporary file beside it). 1: path is a
 * directory (*ret_listing holds it), 0: done or reported, -ECANCELED: interrupted. */
static int download_file(struct cp *c, const char *sid, const char *path, const char *target,
                         json_t **ret_listing)
{
    _cleanup_free_ char *dir_buf = obx_xstrdup(target);
    _cleanup_free_ char *tmp = obx_xasprintf("%s/.onlyboxes-cp-XXXXXX", dirname(dir_buf));
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        cp_error(c, "%s: %s", target, strerror(errno));
        return 0;
    }
    _cleanup_free_ char *route = obx_client_files_path(c->api->conn, sid, path, NULL);
    _cleanup_free_ char *name_buf = obx_xstrdup(path);
    struct bar b = {basename(name_buf), 0, obx_now_ms(), false};
    long status = 0;
    json_t *body = NULL;
    bool file = false;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_client_transfer(c->api->conn, "GET", route, fd, 0, c->tty ? bar_draw : NULL, &b,
                                &status, &body, &file, &err);
    bar_end(&b);
    if (r == 0 && status == 200 && file && (fchmod(fd, 0644) < 0 || fsync(fd) < 0)) {
        r = -errno;
        obx_error_set(&err, errno, "", "%s", strerror(errno));
    }
    close(fd);
    if (r == 0 && status == 200 && file && rename(tmp, target) == 0) {
        json_decref(body);
        return 0;
    }
    int e = errno;
    (void)unlink(tmp);
    if (r < 0) {
        cp_error(c, "%s:%s: %s", sid, path, err.message);
        json_decref(body);
        return interrupted(&err) ? -ECANCELED : 0;
    }
    if (status == 200 && !file) {
        *ret_listing = body;
        return 1;
    }
    if (status == 200)
        cp_error(c, "%s: %s", target, strerror(e));
    else
        cp_error(c, "%s:%s: %s", sid, path, obx_json_get_str(body, "error", "refused"));
    json_decref(body);
    return 0;
}

static int download_tree(struct cp *c, const char *sid, const char *path, const char *target)
{
    json_t *listing = NULL;
    int r = download_file(c, sid, path, target, &listing);
    if (r <= 0)
        return r;
    _cleanup_json_ json_t *l = listing;
    if (!c->recursive) {
        cp_error(c, "%s:%s is a directory (use -r to copy it)", sid, path);
        return 0;
    }
    if (mkdir(target, 0755) < 0 && errno != EEXIST) {
        cp_error(c, "%s: %s", target, strerror(errno));
        return 0;
    }
    if (obx_json_get_bool(l, "truncated", false))
        cp_error(c, "%s:%s holds more entries than one listing gives; some were not copied", sid,
                 path);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(l, "entries"), i, e)
    {
        const char *name = obx_json_get_str(e, "name", "");
        const char *type = obx_json_get_str(e, "type", "");
        if (!*name || strchr(name, '/') || obx_streq(name, ".") || obx_streq(name, ".."))
            continue;
        _cleanup_free_ char *p = obx_xasprintf("%s/%s", path, name);
        _cleanup_free_ char *t = obx_xasprintf("%s/%s", target, name);
        if (obx_streq(type, "file") || obx_streq(type, "directory"))
            r = download_tree(c, sid, p, t);
        else
            cp_error(c, "%s:%s is a %s; skipped", sid, p, type);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Copies between src and dst (one of them sid:rpath) through c->api: 0 or -ECANCELED with
 * c->errors counting what failed, 1 for a source that cannot be copied at all. */
static int cp_run(struct cp *c, bool up, const char *src, const char *dst, const char *sid,
                  const char *rpath)
{
    struct stat st;
    if (up) {
        if (stat(src, &st) < 0) {
            fprintf(stderr, "onlyboxes cp: %s: %s\n", src, strerror(errno));
            return 1;
        }
        if (S_ISDIR(st.st_mode) && !c->recursive) {
            fprintf(stderr, "onlyboxes cp: %s is a directory (use -r to copy it)\n", src);
            return 1;
        }
        /* DEST ending in '/' (or a session's cwd ".") names a directory: the file goes in it. */
        size_t n = strlen(rpath);
        _cleanup_free_ char *name_buf = obx_xstrdup(src);
        _cleanup_free_ char *into =
            rpath[n - 1] == '/' || obx_streq(rpath, ".")
                ? obx_xasprintf("%s%s%s", rpath, rpath[n - 1] == '/' ? "" : "/", basename(name_buf))
                : obx_xstrdup(rpath);
        return upload_tree(c, src, sid, into);
    }
    _cleanup_free_ char *name_buf = obx_xstrdup(rpath);
    _cleanup_free_ char *into = stat(dst, &st) == 0 && S_ISDIR(st.st_mode)
                                    ? obx_xasprintf("%s/%s", dst, basename(name_buf))
                                    : obx_xstrdup(dst);
    return download_tree(c, sid, rpath, into);
}

int obx_cmd_cp(int argc, char **argv)
{
    struct obx_cli_target target = {0};
    struct cp c = {.tty = isatty(STDERR_FILENO)};
    int pid = 0;
    static const struct option options[] = {
        {"recursive", no_argument, NULL, 'r'},
        {"pid", required_argument, NULL, OBX_OPT_PID},
        OBX_CLI_TARGET_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int opt, taken;
    while ((opt = obx_cli_getopt(argc, argv, "hr", options, cp_usage)) != -1) {
        if ((taken = obx_cli_target_option(opt, optarg, &target)) != 0) {
            if (taken < 0)
                return 2;
            continue;
        }
        if (opt == 'h') {
            fputs(cp_usage, stdout);
            return 0;
        }
        if (opt == 'r')
            c.recursive = true;
        else if (opt != OBX_OPT_PID || (pid = obx_cli_pid_option("onlyboxes cp", optarg)) < 0)
            return 2;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "onlyboxes cp: give a SOURCE and a DEST\n%s", cp_usage);
        return 2;
    }
    const char *src = argv[optind], *dst = argv[optind + 1];
    char sid[SESSION_ID_MAX + 1], src_sid[SESSION_ID_MAX + 1];
    const char *rpath = NULL, *src_path = NULL;
    bool up = split_remote(dst, sid, sizeof(sid), &rpath);
    bool down = split_remote(src, src_sid, sizeof(src_sid), &src_path);
    if (up == down) {
        fprintf(stderr,
                "onlyboxes cp: one of SOURCE and DEST must be SESSION:PATH and the other "
                "a local path (write ./%s for a local name with a colon)\n",
                up ? src : dst);
        return 2;
    }
    if (target.local.runtime_set) {
        fprintf(stderr, "onlyboxes cp: --runtime does not apply: cp copies into a session that "
                        "runs already\n");
        return 2;
    }
    if (down) {
        snprintf(sid, sizeof(sid), "%s", src_sid);
        rpath = src_path;
    }
    struct obx_cli_apis apis;
    int rc = obx_cli_apis_open(&target, "onlyboxes cp", pid, &apis);
    if (rc)
        return rc;
    c.api = obx_cli_apis_find(&apis, "onlyboxes cp", sid, &rc);
    int r = c.api ? cp_run(&c, up, src, dst, sid, rpath) : rc;
    obx_cli_apis_close(&apis);
    if (r == -ECANCELED || obx_cli_interrupted())
        return 128 + (obx_cli_interrupted() ? obx_cli_interrupted() : 2);
    return r > 0 ? r : c.errors ? 1 : 0;
}
