/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes cp` and `onlyboxes sessions`: files in and out of a console's terminal sessions and
 * the sessions themselves, over the sessions API (docs/console.md). A download is written to a
 * temporary file beside its target and renamed when whole, so an interrupted copy leaves no part
 * of a file; an upload the console cuts short leaves none in the box either. On a terminal a copy
 * of more than a few megabytes shows a progress bar on stderr.
 *
 * Without a console there is no session to reach: a terminal session of this computer lives in
 * the process that made it (onlyboxes mcp --stdio, one exec), so both commands say so and how to
 * reach one (onlyboxes mcp --mount shares a directory with a local agent's boxes instead).
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
    "Usage: onlyboxes cp [-r] SOURCE DEST\n"
    "\n"
    "Copy a file (a directory with -r) into or out of a terminal session on a console. One side\n"
    "is SESSION:PATH (PATH absolute, or relative to the session's working directory), the other\n"
    "a path on this computer (write ./a:b for a local name with a colon).\n"
    "  onlyboxes cp data.csv dev:input/           # into the session dev\n"
    "  onlyboxes cp -r dev:/workspace/out ./out   # a directory out of it\n"
    "\n"
    "Options:\n"
    "  -r, --recursive    copy directories and what they hold\n"
    "  --console URL      the console (http:// or https://); also ONLYBOXES_CONSOLE\n"
    "  --token TOKEN      the console API token; better ONLYBOXES_TOKEN (argv is visible)\n"
    "  --ca-file FILE     PEM CA bundle for an https console; also ONLYBOXES_CA_FILE\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 when everything was copied, 1 when something was not, 2 for bad usage,\n"
    "130 when Ctrl-C stopped it (no partial file is left).\n";

static const char sessions_usage[] =
    "Usage: onlyboxes sessions [ls] [--json]\n"
    "       onlyboxes sessions rm SESSION...\n"
    "       onlyboxes sessions renew SESSION [--lease SECONDS]\n"
    "\n"
    "List the terminal sessions of the token's account on a console, end them (their processes\n"
    "are killed and their files go), or keep one longer (within the worker's bounds).\n"
    "\n"
    "Options:\n"
    "  --json             ls: the console's answer as JSON\n"
    "  --lease SECONDS    renew: how long the session lives from now (default: the worker's)\n"
    "  --console URL      the console (http:// or https://); also ONLYBOXES_CONSOLE\n"
    "  --token TOKEN      the console API token; better ONLYBOXES_TOKEN (argv is visible)\n"
    "  --ca-file FILE     PEM CA bundle for an https console; also ONLYBOXES_CA_FILE\n"
    "  -h, --help         show this help\n";

static const char no_console[] =
    "%s needs a console (--console URL or ONLYBOXES_CONSOLE): without one a terminal session "
    "lives only inside the process that made it (onlyboxes mcp --stdio, or one exec), where no "
    "other command can reach it. To share files of this computer with a local agent's boxes, "
    "start onlyboxes mcp --stdio with --mount HOST_DIR:BOX_PATH; exportFile with --export-dir "
    "copies files out.\n";

/* ---- what both commands share ---- */

struct remote {
    struct obx_client *client;
    struct obx_client_conn *conn;
};

/* The console and one connection; 0, 2 for usage/no console, 1 for a console that refused. */
static int remote_open(struct obx_cli_target *t, const char *cmd, struct remote *ret)
{
    bool local = false;
    memset(ret, 0, sizeof(*ret));
    ret->client = obx_cli_console_open(t, &local);
    if (!ret->client) {
        if (local)
            fprintf(stderr, no_console, cmd);
        return local ? 2 : 1;
    }
    struct obx_error err = OBX_ERROR_INIT;
    ret->conn = obx_client_conn_new(ret->client, &err);
    if (!ret->conn) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        obx_client_free(ret->client);
        return 1;
    }
    obx_cli_watch_conn(ret->conn);
    return 0;
}

static void remote_close(struct remote *r)
{
    obx_cli_watch_conn(NULL);
    obx_client_conn_free(r->conn);
    obx_client_free(r->client);
}

/* An answer that is not what was asked: prints the console's error; returns 1. */
static int failed(const char *what, long status, const json_t *body)
{
    const char *msg = obx_json_get_str(body, "error", NULL);
    fprintf(stderr, "onlyboxes: %s: %s (HTTP %ld)\n", what, msg ? msg : "the console refused",
            status);
    return 1;
}

/* ---- cp ---- */

struct cp {
    struct remote r;
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
    _cleanup_free_ char *route = obx_client_files_path(c->r.conn, sid, path, NULL);
    _cleanup_free_ char *name_buf = obx_xstrdup(local);
    struct bar b = {basename(name_buf), 0, obx_now_ms(), false};
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_client_transfer(c->r.conn, "PUT", route, fd, (uint64_t)st.st_size,
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
    _cleanup_free_ char *route = obx_client_files_path(c->r.conn, sid, path, "&type=directory");
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r =
        obx_client_transfer(c->r.conn, "PUT", route, -1, 0, NULL, NULL, &status, &body, NULL, &err);
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
    _cleanup_free_ char *route = obx_client_files_path(c->r.conn, sid, path, NULL);
    _cleanup_free_ char *name_buf = obx_xstrdup(path);
    struct bar b = {basename(name_buf), 0, obx_now_ms(), false};
    long status = 0;
    json_t *body = NULL;
    bool file = false;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_client_transfer(c->r.conn, "GET", route, fd, 0, c->tty ? bar_draw : NULL, &b,
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

int obx_cmd_cp(int argc, char **argv)
{
    struct obx_cli_target target = {0};
    struct cp c = {.tty = isatty(STDERR_FILENO)};
    static const struct option options[] = {
        {"recursive", no_argument, NULL, 'r'},
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
        if (opt != 'r')
            return 2;
        c.recursive = true;
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
        fprintf(stderr,
                "onlyboxes cp: --runtime does not apply: cp copies to a console's session\n");
        return 2;
    }
    int rc = remote_open(&target, "onlyboxes cp", &c.r);
    if (rc)
        return rc;
    int r;
    if (up) {
        struct stat st;
        if (stat(src, &st) < 0) {
            fprintf(stderr, "onlyboxes cp: %s: %s\n", src, strerror(errno));
            remote_close(&c.r);
            return 1;
        }
        if (S_ISDIR(st.st_mode) && !c.recursive) {
            fprintf(stderr, "onlyboxes cp: %s is a directory (use -r to copy it)\n", src);
            remote_close(&c.r);
            return 1;
        }
        /* DEST ending in '/' (or a session's cwd ".") names a directory: the file goes in it. */
        size_t n = strlen(rpath);
        _cleanup_free_ char *name_buf = obx_xstrdup(src);
        _cleanup_free_ char *into =
            rpath[n - 1] == '/' || obx_streq(rpath, ".")
                ? obx_xasprintf("%s%s%s", rpath, rpath[n - 1] == '/' ? "" : "/", basename(name_buf))
                : obx_xstrdup(rpath);
        r = upload_tree(&c, src, sid, into);
    } else {
        snprintf(sid, sizeof(sid), "%s", src_sid);
        rpath = src_path;
        struct stat st;
        _cleanup_free_ char *name_buf = obx_xstrdup(rpath);
        _cleanup_free_ char *into = stat(dst, &st) == 0 && S_ISDIR(st.st_mode)
                                        ? obx_xasprintf("%s/%s", dst, basename(name_buf))
                                        : obx_xstrdup(dst);
        r = download_tree(&c, sid, rpath, into);
    }
    remote_close(&c.r);
    if (r == -ECANCELED || obx_cli_interrupted())
        return 128 + (obx_cli_interrupted() ? obx_cli_interrupted() : 2);
    return c.errors ? 1 : 0;
}

/* ---- sessions ---- */

static void print_time(const char *iso)
{
    /* "2026-12-07T05:16:16.125Z" to the second */
    printf("%-20.19s", iso && strlen(iso) >= 19 ? iso : "-");
}

static int sessions_ls(struct remote *r, bool as_json)
{
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_client_conn_json(r->conn, "GET", "/api/v1/sessions?page_size=100", NULL, &status, &body,
                             &err) < 0) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        return 1;
    }
    if (status != 200)
        return failed("listing the sessions", status, body);
    if (as_json) {
        _cleanup_free_ char *s = json_dumps(body, JSON_INDENT(2));
        printf("%s\n", s);
        return 0;
    }
    printf("%-24s %-12s %-11s %-20s %-20s %-20s %s\n", "SESSION", "WORKER", "STATUS", "CREATED",
           "LAST USED", "LEASE EXPIRES", "BUSY");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(body, "items"), i, s)
    {
        printf("%-24s %-12.12s %-11s ", obx_json_get_str(s, "session_id", ""),
               obx_json_get_str(s, "worker", ""), obx_json_get_str(s, "status", ""));
        print_time(obx_json_get_str(s, "created_at", NULL));
        printf(" ");
        print_time(obx_json_get_str(s, "last_used_at", NULL));
        printf(" ");
        print_time(obx_json_get_str(s, "lease_expires_at", NULL));
        json_t *busy = json_object_get(s, "busy");
        printf(" %s\n", !busy ? "-" : json_is_true(busy) ? "yes" : "no");
    }
    if (obx_json_get_int(body, "total", 0) >
        (int64_t)json_array_size(json_object_get(body, "items")))
        printf("(%lld sessions in all; the first 100 are shown)\n",
               (long long)obx_json_get_int(body, "total", 0));
    return 0;
}

static int session_path(struct obx_client_conn *x, const char *sid, const char *suffix, char **ret)
{
    (void)x;
    for (const char *p = sid; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '/' || *p == '?' || *p == '#' || *p == '%')
            return -EINVAL;
    if (!*sid || strlen(sid) > SESSION_ID_MAX)
        return -EINVAL;
    *ret = obx_xasprintf("/api/v1/sessions/%s%s", sid, suffix);
    return 0;
}

int obx_cmd_sessions(int argc, char **argv)
{
    struct obx_cli_target target = {0};
    bool as_json = false;
    int64_t lease = 0;
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"lease", required_argument, NULL, 'l'},
        OBX_CLI_TARGET_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int opt, taken;
    while ((opt = obx_cli_getopt(argc, argv, "h", options, sessions_usage)) != -1) {
        if ((taken = obx_cli_target_option(opt, optarg, &target)) != 0) {
            if (taken < 0)
                return 2;
            continue;
        }
        if (opt == 'h') {
            fputs(sessions_usage, stdout);
            return 0;
        }
        if (opt == 'j') {
            as_json = true;
        } else if (opt == 'l') {
            if (obx_parse_int64(optarg, 1, 86400, &lease) < 0) {
                fprintf(stderr,
                        "onlyboxes sessions: --lease %s is invalid: expected 1 to 86400 "
                        "seconds\n",
                        optarg);
                return 2;
            }
        } else {
            return 2;
        }
    }
    const char *action = optind < argc ? argv[optind++] : "ls";
    bool ls = obx_streq(action, "ls") || obx_streq(action, "list");
    bool rm = obx_streq(action, "rm");
    bool renew = obx_streq(action, "renew");
    if ((!ls && !rm && !renew) || (ls && optind != argc) || (rm && optind >= argc) ||
        (renew && argc - optind != 1)) {
        fprintf(stderr, "onlyboxes sessions: %s\n%s",
                !ls && !rm && !renew ? "unknown action (ls, rm or renew)" : "wrong arguments",
                sessions_usage);
        return 2;
    }
    struct remote r;
    int rc = remote_open(&target, "onlyboxes sessions", &r);
    if (rc)
        return rc;
    if (ls) {
        rc = sessions_ls(&r, as_json);
        remote_close(&r);
        return rc;
    }
    for (int i = optind; i < argc; i++) {
        _cleanup_free_ char *p = NULL;
        if (session_path(r.conn, argv[i], renew ? "/renew" : "", &p) < 0) {
            fprintf(stderr,
                    "onlyboxes sessions: %s: a session id is 1 to 128 visible ASCII "
                    "characters\n",
                    argv[i]);
            rc = 1;
            continue;
        }
        _cleanup_json_ json_t *req =
            renew && lease ? json_pack("{s:I}", "lease_ttl_sec", lease) : NULL;
        long status = 0;
        _cleanup_json_ json_t *body = NULL;
        struct obx_error err = OBX_ERROR_INIT;
        if (obx_client_conn_json(r.conn, renew ? "POST" : "DELETE", p, req, &status, &body, &err) <
            0) {
            fprintf(stderr, "onlyboxes: %s\n", err.message);
            rc = 1;
            break;
        }
        _cleanup_free_ char *what = obx_xasprintf("session %s", argv[i]);
        if (rm && status == 204)
            printf("removed session %s\n", argv[i]);
        else if (renew && status == 200)
            printf("session %s: its lease runs until %s\n", argv[i],
                   obx_json_get_str(body, "lease_expires_at", "?"));
        else
            rc = failed(what, status, body);
    }
    remote_close(&r);
    return rc;
}
