/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bubblewrap runtime: finds bwrap, probes once that it can build a box here, and starts each
 * box as one bwrap process whose PID 1 is the agent, talking over the box's stdin/stdout pipes.
 * Boxes are started with posix_spawn (no code runs between fork and exec, so it is safe from a
 * multi-threaded worker) in their own process group. start/stop run on the caller's thread; the
 * runtime object is read-only after obx_sandbox_runtime_new(), so calls may come from any thread.
 * The on-disk side (state directory, box directories, stale cleanup) is in bwrap-state.c, the
 * host uids of a root worker's boxes in bwrap-uid.c, the seccomp filter in bwrap-seccomp.c.
 */
#include "bwrap-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"
#include "common/thread.h"

#define PROBE_TIMEOUT_MS 10000
#define INFO_TIMEOUT_MS 10000
#define STOP_GRACE_MS 1000
#define REMOVE_OWN_WAIT_MS 2000 /* for starts to get past bwrap's info write, on a signal */
#define MIN_VERSION 400         /* 0.4.0: --as-pid-1, --cap-drop, --info-fd, --unshare-cgroup-try */
#define SIZE_VERSION 800        /* 0.8.0: --size for tmpfs, --disable-userns */
#define CLEARENV_VERSION 500
#define PERMS_VERSION 500 /* 0.5.0: --perms */

#define INSTALL_HINT                                                                        \
    "install it with: sudo apt-get install bubblewrap (Debian/Ubuntu) or sudo dnf install " \
    "bubblewrap (Fedora)"

/* Host directories next to /usr: on a merged-/usr system they are symlinks into usr/ and are
 * recreated as symlinks; elsewhere they are bound read-only. */
static const char *const sys_dirs[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};

/* Not the whole /etc: the user namespace maps the box's user onto the uid that runs bwrap (the
 * worker's, or a root worker's host uid for the box), and whatever that uid may read on the host
 * a box could read. Only what programs need to run is shown, read-only, and only where the host
 * has it. */
static const char *const etc_entries[] = {
    "ld.so.cache", "ld.so.conf",      "ld.so.conf.d",    "alternatives",
    "ssl/certs",   "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf",
    "localtime",   "timezone",        "mime.types",      "magic",
    "magic.mime",  "nsswitch.conf",   "os-release",      "debian_version",
    "hosts",       "host.conf",       "protocols",       "services",
    "gai.conf",    "locale.alias",    "bash.bashrc",     "profile",
    "inputrc",     "fonts",           "matplotlibrc",
};

/* Bound read-only over the box's /proc, as Docker does. bwrap covers /proc/sys only when the
 * directory looks writable to it, which (mode 0555) it never does, while the sysctl files in it
 * are 0644 root: were a box's user ever the host's uid 0, it could otherwise set the host's kernel
 * settings (kernel.core_pattern names a program the kernel runs as root on the host). */
static const char *const proc_ro[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus",
                                      "/proc/fs"};

struct argv_buf {
    const char *v[OBX_BWRAP_MAX_ARGS + 1];
    size_t n;
    bool overflow;
};

/* Numbers formatted for one box's argument list, and how it is run; lives as long as the argv. */
struct box_nums {
    char uid[16], memory[24], nproc[16], fsize[24], nofile[16], cpu[16], tmp[24], shm[24], ws[24];
    char host_uid[16]; /* "": bwrap runs as the worker's uid; else the agent's --exec-as first */
    bool agent_copy;   /* the agent is handed over as data (its path is not public) */
    char marker[sizeof(OBX_BWRAP_MARKER) + OBX_BWRAP_ID_LEN];
};

/* Decimal names of the fds a box's bwrap gets. */
static const char *const fd_names[] = {"0", "1", "2", "3", "4", "5", "6", "7"};
_Static_assert(OBX_ARRAY_SIZE(fd_names) == OBX_BWRAP_SPAWN_FDS, "a name for every fd");

static struct obx_bwrap_runtime *to_bwrap(struct obx_runtime *rt)
{
    return (struct obx_bwrap_runtime *)rt;
}

static void arg(struct argv_buf *a, const char *s)
{
    if (a->n >= OBX_BWRAP_MAX_ARGS) {
        a->overflow = true;
        return;
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static void arg3(struct argv_buf *a, const char *x, const char *y, const char *z)
{
    arg(a, x);
    arg(a, y);
    if (z)
        arg(a, z);
}

static int find_bwrap(const char *configured, char **ret, struct obx_error *err)
{
    const char *name = obx_str_empty(configured) ? "bwrap" : configured;
    char found[PATH_MAX];
    if (strchr(name, '/')) {
        if (access(name, X_OK) < 0 || !realpath(name, found))
            return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "bubblewrap (bwrap) not found at %s: %s; " INSTALL_HINT, name,
                                 strerror(errno));
        *ret = obx_xstrdup(found);
        return 0;
    }
    const char *path = getenv("PATH");
    if (obx_str_empty(path))
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        int n = snprintf(found, sizeof(found), "%.*s/%s", (int)dlen, p, name);
        struct stat st;
        if (dlen > 0 && p[0] == '/' && n > 0 && n < (int)sizeof(found) && stat(found, &st) == 0 &&
            S_ISREG(st.st_mode) && access(found, X_OK) == 0) {
            *ret = obx_xstrdup(found);
            return 0;
        }
        p += dlen + (colon ? 1 : 0);
    }
    return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                         "bubblewrap (bwrap) is not installed; " INSTALL_HINT);
}

static int read_version(struct obx_bwrap_runtime *b, struct obx_error *err)
{
    const char *argv[] = {b->bwrap_path, "--version", NULL};
    char out[256];
    struct obx_bwrap_spawn sp;
    obx_bwrap_spawn_init(&sp);
    int status, r = obx_bwrap_run_capture(b->bwrap_path, argv, &sp, out, sizeof(out),
                                          PROBE_TIMEOUT_MS, &status);
    unsigned major, minor, patch = 0;
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(out, "bubblewrap %u.%u.%u", &major, &minor, &patch) < 2)
        return obx_error_set(err, r < 0 ? r : EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "%s --version failed; is it bubblewrap? " INSTALL_HINT, b->bwrap_path);
    snprintf(b->version, sizeof(b->version), "%u.%u.%u", major, minor, patch);
    b->version_num =
        (int)(OBX_MIN(major, 99u) * 10000 + OBX_MIN(minor, 99u) * 100 + OBX_MIN(patch, 99u));
    return 0;
}

static void add_mount(struct obx_bwrap_runtime *b, enum obx_bwrap_mount_kind kind, const char *src,
                      const char *dst)
{
    if (b->n_mounts >= OBX_BWRAP_MAX_MOUNTS) {
        obx_warn("sandbox: more than %d system mounts, skipping %s", OBX_BWRAP_MAX_MOUNTS, dst);
        return;
    }
    struct obx_bwrap_mount *m = &b->mounts[b->n_mounts++];
    m->kind = kind;
    m->src = obx_xstrdup(src);
    m->dst = obx_xstrdup(dst);
}

/* Adds host path `path` as it is: a symlink is recreated (its target is resolved inside the box),
 * a directory or file is bound read-only, anything else or nothing is skipped. */
static void add_host_path(struct obx_bwrap_runtime *b, const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
            return;
        target[n] = '\0';
        add_mount(b, OBX_BWRAP_SYMLINK, target, path);
    } else if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
        add_mount(b, OBX_BWRAP_RO_BIND, path, path);
    }
}

static int mounts_init(struct obx_bwrap_runtime *b, struct obx_error *err)
{
    struct stat st;
    if (stat("/usr", &st) < 0 || !S_ISDIR(st.st_mode))
        return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "this host has no /usr directory to give the boxes");
    add_mount(b, OBX_BWRAP_RO_BIND, "/usr", "/usr");
    char path[PATH_MAX];
    for (size_t i = 0; i < OBX_ARRAY_SIZE(sys_dirs); i++) {
        snprintf(path, sizeof(path), "/%s", sys_dirs[i]);
        add_host_path(b, path);
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(etc_entries); i++) {
        snprintf(path, sizeof(path), "/etc/%s", etc_entries[i]);
        add_host_path(b, path);
    }
    /* /etc/python3, /etc/python3.11, ...: interpreter configuration (sitecustomize). */
    DIR *d = opendir("/etc");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, "python3", 7) != 0)
                continue;
            snprintf(path, sizeof(path), "/etc/%s", de->d_name);
            add_host_path(b, path);
        }
        closedir(d);
    }
    return 0;
}

/* Network "allowlist": the worker's egress proxy socket, bound read-only (connecting to a socket
 * needs no write access), and the agent told to relay to it. */
static void egress_mount(struct argv_buf *a, const struct obx_box_spec *spec)
{
    if (spec && spec->egress_socket)
        arg3(a, "--ro-bind", spec->egress_socket, OBX_BOX_EGRESS_SOCKET);
}

static void egress_agent_args(struct argv_buf *a, const struct obx_box_spec *spec)
{
    if (spec && spec->egress_socket)
        arg3(a, OBX_BOX_EGRESS_OPTION, OBX_BOX_EGRESS_SOCKET, NULL);
}

/* The bwrap argument list. box NULL builds the probe: the same namespaces and system mounts,
 * running /usr/bin/true. */
static void build_args(const struct obx_bwrap_runtime *b, const struct obx_bwrap_box *box,
                       const char *agent, const struct obx_box_spec *spec, struct box_nums *nums,
                       struct argv_buf *a)
{
    int version = b->version_num;
    char *uid = nums->uid;
    snprintf(nums->uid, sizeof(nums->uid), "%u", OBX_SANDBOX_UID);

    if (nums->host_uid[0]) { /* the agent switches to the box's host uid and executes bwrap */
        arg3(a, b->agent_path, "--exec-as", nums->host_uid);
        arg(a, nums->host_uid); /* gid = uid */
    }
    arg(a, b->bwrap_path);
    arg(a, "--unshare-user");
    arg(a, "--unshare-pid");
    arg(a, "--unshare-ipc");
    arg(a, "--unshare-uts");
    arg(a, "--unshare-cgroup-try");
    if (!spec || !spec->network)
        arg(a, "--unshare-net");
    if (version >= SIZE_VERSION)
        arg(a, "--disable-userns"); /* no nested user namespaces: less kernel surface */
    arg3(a, "--uid", uid, NULL);
    arg3(a, "--gid", uid, NULL);
    arg3(a, "--hostname", OBX_SANDBOX_HOSTNAME, NULL);
    arg3(a, "--cap-drop", "ALL", NULL);
    arg3(a, "--seccomp", fd_names[OBX_BWRAP_FD_SECCOMP], NULL);
    arg(a, "--new-session"); /* setsid(): a box cannot push input into our terminal (TIOCSTI) */
    arg(a, "--as-pid-1");
    if (version >= CLEARENV_VERSION)
        arg(a, "--clearenv");
    arg3(a, "--setenv", "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    arg3(a, "--setenv", "HOME", OBX_BOX_WORKSPACE);
    arg3(a, "--setenv", "LANG", "C.UTF-8");
    if (box) {
        snprintf(nums->marker, sizeof(nums->marker), "%s%s", OBX_BWRAP_MARKER,
                 strrchr(box->dir, '/') + 1); /* <boxes_dir>/<id> */
        arg3(a, "--unsetenv", nums->marker, NULL);
    }
    for (size_t i = 0; i < b->n_mounts; i++) {
        const struct obx_bwrap_mount *m = &b->mounts[i];
        arg3(a, m->kind == OBX_BWRAP_SYMLINK ? "--symlink" : "--ro-bind", m->src, m->dst);
    }
    if (spec && spec->network && access("/etc/resolv.conf", R_OK) == 0)
        arg3(a, "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"); /* follows a symlink */
    arg3(a, "--proc", "/proc", NULL);
    for (size_t i = 0; i < OBX_ARRAY_SIZE(proc_ro); i++)
        arg3(a, "--ro-bind-try", proc_ro[i], proc_ro[i]);
    arg3(a, "--dev", "/dev", NULL);
    if (version >= SIZE_VERSION) {
        snprintf(nums->tmp, sizeof(nums->tmp), "%llu", OBX_SANDBOX_TMP_BYTES);
        snprintf(nums->shm, sizeof(nums->shm), "%llu", OBX_SANDBOX_SHM_BYTES);
        arg3(a, "--size", nums->shm, NULL);
    }
    arg3(a, "--tmpfs", "/dev/shm", NULL);
    if (version >= SIZE_VERSION)
        arg3(a, "--size", nums->tmp, NULL);
    arg3(a, "--tmpfs", "/tmp", NULL);
    if (box) {
        if (version >= PERMS_VERSION)
            arg3(a, "--perms", "0644", NULL);
        arg3(a, "--ro-bind-data", fd_names[OBX_BWRAP_FD_PASSWD], "/etc/passwd");
        if (version >= PERMS_VERSION)
            arg3(a, "--perms", "0644", NULL);
        arg3(a, "--ro-bind-data", fd_names[OBX_BWRAP_FD_GROUP], "/etc/group");
        /* /workspace: a tmpfs of its own size, so that a box cannot fill the host's disk (and,
         * with a memory cgroup, counted in the box's memory). A bubblewrap too old to size a
         * tmpfs gets a directory on the host instead, capped per file only. */
        if (version >= SIZE_VERSION) {
            uint64_t ws =
                spec->workspace_bytes ? spec->workspace_bytes : OBX_SANDBOX_DEFAULT_WORKSPACE_BYTES;
            snprintf(nums->ws, sizeof(nums->ws), "%llu", (unsigned long long)ws);
            arg3(a, "--size", nums->ws, NULL);
            arg3(a, "--tmpfs", OBX_BOX_WORKSPACE, NULL);
        } else {
            arg3(a, "--bind", box->workspace, OBX_BOX_WORKSPACE);
        }
        if (nums->agent_copy) { /* a copy on the box's root: its user cannot reach the file */
            arg3(a, "--perms", "0555", NULL);
            arg3(a, "--ro-bind-data", fd_names[OBX_BWRAP_FD_AGENT], OBX_BOX_AGENT_PATH);
        } else {
            arg3(a, "--ro-bind", agent, OBX_BOX_AGENT_PATH);
        }
        egress_mount(a, spec);
        /* Host directories the worker was given (outermost first, so inner ones stay on top);
         * the box's user is the worker's on the host, so it writes what the worker may. */
        for (size_t i = 0; i < spec->n_mounts; i++)
            arg3(a, spec->mounts[i].rw ? "--bind" : "--ro-bind", spec->mounts[i].host,
                 spec->mounts[i].box);
        arg3(a, "--info-fd", fd_names[OBX_BWRAP_FD_INFO], NULL);
    }
    /* The box's root and /dev are tmpfs mounts bwrap built; nothing needs to write there, and
     * read-only they cannot be used to fill memory. /tmp, /dev/shm and /workspace stay writable. */
    arg3(a, "--remount-ro", "/dev", NULL);
    arg3(a, "--remount-ro", "/", NULL);
    arg3(a, "--chdir", box ? OBX_BOX_WORKSPACE : "/", NULL);
    arg(a, "--");
    if (!box) {
        arg(a, access("/usr/bin/true", X_OK) == 0 ? "/usr/bin/true" : "/bin/true");
        return;
    }
    /* No --die-with-parent: PR_SET_PDEATHSIG fires when the *thread* that spawned bwrap exits,
     * and boxes are started from short-lived call threads. The agent exits when its stdin reaches
     * EOF, which happens when the worker closes the pipe or dies, and PID 1 exiting tears down
     * the whole pid namespace. */
    /* cpu_millis would need a cpu cgroup; it is not enforced by this runtime. */
    uint64_t mem = spec->memory_bytes ? spec->memory_bytes : OBX_SANDBOX_DEFAULT_MEMORY_BYTES;
    uint32_t pids = spec->pids ? spec->pids : OBX_SANDBOX_DEFAULT_PIDS;
    uint64_t fsize = spec->fsize_bytes ? spec->fsize_bytes : OBX_SANDBOX_DEFAULT_FSIZE_BYTES;
    snprintf(nums->memory, sizeof(nums->memory), "%llu", (unsigned long long)mem);
    snprintf(nums->nproc, sizeof(nums->nproc), "%u", pids);
    snprintf(nums->fsize, sizeof(nums->fsize), "%llu", (unsigned long long)fsize);
    snprintf(nums->nofile, sizeof(nums->nofile), "%u", OBX_SANDBOX_NOFILE);
    snprintf(nums->cpu, sizeof(nums->cpu), "%u", OBX_SANDBOX_CPU_SEC);
    arg(a, OBX_BOX_AGENT_PATH);
    arg3(a, "--workspace", OBX_BOX_WORKSPACE, NULL);
    arg3(a, "--memory", nums->memory, NULL);
    arg3(a, "--nproc", nums->nproc, NULL);
    arg3(a, "--fsize", nums->fsize, NULL);
    arg3(a, "--nofile", nums->nofile, NULL);
    arg3(a, "--cpu", nums->cpu, NULL);
    egress_agent_args(a, spec);
}

/* The agent, whose --exec-as step runs bwrap as a box's host uid under a root worker. */
static int agent_init(struct obx_bwrap_runtime *b, const char *configured, struct obx_error *err)
{
    char real[PATH_MAX];
    if (obx_str_empty(configured)) {
        if (geteuid() != 0)
            return 0; /* only a root worker switches users */
        return obx_error_set(err, EINVAL, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "a root worker needs the agent to start boxes as another user");
    }
    if (!realpath(configured, real) || access(real, X_OK) < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "agent %s is not an executable file: %s", configured, strerror(errno));
    b->agent_path = obx_xstrdup(real);
    return 0;
}

static int read_sysctl(const char *path)
{
    char buf[32];
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    int64_t v;
    buf[strcspn(buf, "\n")] = '\0';
    return obx_parse_int64(buf, 0, INT32_MAX, &v) < 0 ? -1 : (int)v;
}

/* Says which switch keeps user namespaces from working, or lists the candidates. */
static void userns_hint(const struct obx_bwrap_runtime *b, char *buf, size_t size)
{
    bool root = geteuid() == 0 && !b->host_uid_count; /* bwrap runs as root */
    if (!root && read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == 0)
        snprintf(
            buf, size,
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); "
            "enable them with: sudo sysctl -w kernel.unprivileged_userns_clone=1");
    else if (read_sysctl("/proc/sys/user/max_user_namespaces") == 0)
        snprintf(buf, size,
                 "user namespaces are disabled (user.max_user_namespaces = 0); enable them with: "
                 "sudo sysctl -w user.max_user_namespaces=15000");
    else if (!root && read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1)
        snprintf(buf, size,
                 "AppArmor restricts unprivileged user namespaces "
                 "(kernel.apparmor_restrict_unprivileged_userns = 1); allow bwrap with an AppArmor "
                 "profile (userns,) or set the sysctl to 0");
    else
        snprintf(
            buf, size,
            "check that user namespaces are enabled (sysctls kernel.unprivileged_userns_clone, "
            "user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns) and that "
            "no container or seccomp policy blocks them");
}

static void close_fds(struct obx_bwrap_spawn *sp)
{
    for (int i = 0; i < OBX_BWRAP_SPAWN_FDS; i++)
        obx_closep(&sp->fd[i]);
}

/* What a run of bwrap needs besides its arguments: the host uid it runs as (root worker) in nums,
 * and the files it reads in sp: the seccomp filter and, for a box (agent set), its passwd and
 * group, and the agent itself where the box's host uid could not reach its path. */
static int run_setup(const struct obx_bwrap_runtime *b, uid_t host_uid, const char *agent,
                     struct box_nums *nums, struct obx_bwrap_spawn *sp)
{
    int r;
    nums->host_uid[0] = '\0';
    nums->agent_copy = false;
    if (host_uid)
        snprintf(nums->host_uid, sizeof(nums->host_uid), "%u", (unsigned)host_uid);
    if ((r = obx_bwrap_data_fd("onlyboxes-seccomp", b->seccomp_bpf, b->seccomp_len,
                               &sp->fd[OBX_BWRAP_FD_SECCOMP])) < 0)
        return r;
    if (!agent)
        return 0;
    if ((r = obx_bwrap_data_fd("onlyboxes-passwd", obx_bwrap_box_passwd,
                               strlen(obx_bwrap_box_passwd), &sp->fd[OBX_BWRAP_FD_PASSWD])) < 0 ||
        (r = obx_bwrap_data_fd("onlyboxes-group", obx_bwrap_box_group, strlen(obx_bwrap_box_group),
                               &sp->fd[OBX_BWRAP_FD_GROUP])) < 0)
        return r;
    if (host_uid && !obx_bwrap_path_public(agent)) {
        sp->fd[OBX_BWRAP_FD_AGENT] = open(agent, O_RDONLY | O_CLOEXEC);
        if (sp->fd[OBX_BWRAP_FD_AGENT] < 0)
            return -errno;
        nums->agent_copy = true;
    }
    return 0;
}

/* Runs a throw-away box that only starts /usr/bin/true: proves namespaces, mounts and the uid map,
 * the host uid switch and the seccomp filter work here before any real box is started. */
static int probe(struct obx_bwrap_runtime *b, struct obx_error *err)
{
    struct argv_buf a = {.n = 0};
    struct box_nums nums;
    uid_t host_uid;
    _cleanup_close_ int lock = -1;
    int r = obx_bwrap_uid_acquire(b, &host_uid, &lock, err);
    if (r < 0)
        return r;
    struct obx_bwrap_spawn sp;
    obx_bwrap_spawn_init(&sp);
    r = run_setup(b, host_uid, NULL, &nums, &sp);
    if (r < 0) {
        close_fds(&sp);
        return obx_error_set(err, -r, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot prepare the probe box: %s", strerror(-r));
    }
    build_args(b, NULL, NULL, NULL, &nums, &a);
    if (a.overflow) {
        close_fds(&sp);
        return obx_error_set(err, E2BIG, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "too many bwrap arguments (more than %d)", OBX_BWRAP_MAX_ARGS);
    }
    char out[1024];
    int status;
    r = obx_bwrap_run_capture(a.v[0], a.v, &sp, out, sizeof(out), PROBE_TIMEOUT_MS, &status);
    close_fds(&sp);
    if (r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    out[strcspn(out, "\n")] = '\0';
    char hint[512];
    userns_hint(b, hint, sizeof(hint));
    if (r == -ETIMEDOUT)
        snprintf(out, sizeof(out), "no answer within %d s", PROBE_TIMEOUT_MS / 1000);
    else if (r < 0)
        snprintf(out, sizeof(out), "%s", strerror(-r));
    else if (!out[0])
        snprintf(out, sizeof(out), "exit status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    char as[64] = ""; /* as whom it ran: the switches for ordinary users apply to a root worker */
    if (host_uid)
        snprintf(as, sizeof(as), " as host uid %u (ONLYBOXES_BWRAP_HOST_UIDS)", (unsigned)host_uid);
    return obx_error_set(err, EPERM, OBX_ERR_RUNTIME_UNAVAILABLE,
                         "bubblewrap %s at %s cannot create a sandbox here%s (%s); %s", b->version,
                         b->bwrap_path, as, out, hint);
}

/* Reads bwrap's --info-fd JSON up to its closing brace and returns "child-pid": the host pid of
 * the box's PID 1. EOF first means bwrap failed (its message went to our stderr). */
static int read_child_pid(int fd, pid_t *ret)
{
    char buf[1024];
    size_t len = 0;
    uint64_t deadline = obx_now_ms() + INFO_TIMEOUT_MS;
    while (len < sizeof(buf) - 1) {
        uint64_t now = obx_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)(deadline - now));
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n <= 0)
            continue;
        ssize_t got = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return -EPIPE;
        len += (size_t)got;
        buf[len] = '\0';
        if (strchr(buf, '}'))
            break;
    }
    buf[len] = '\0';
    const char *p = strstr(buf, "\"child-pid\"");
    if (!p || !(p = strchr(p, ':')))
        return -EBADMSG;
    int64_t pid;
    char num[24];
    size_t i = 0;
    for (p++; *p == ' '; p++)
        ;
    while (i + 1 < sizeof(num) && *p >= '0' && *p <= '9')
        num[i++] = *p++;
    num[i] = '\0';
    if (obx_parse_int64(num, 2, INT32_MAX, &pid) < 0)
        return -EBADMSG;
    *ret = (pid_t)pid;
    return 0;
}

/* Enters a box start into the list of this process's boxes; NULL when the runtime is stopping. */
static struct obx_bwrap_own *own_begin(struct obx_bwrap_runtime *b, const char *id)
{
    pthread_mutex_lock(&b->own_lock);
    struct obx_bwrap_own *o = NULL;
    if (!b->stopping) {
        o = obx_xcalloc(1, sizeof(*o));
        snprintf(o->id, sizeof(o->id), "%s", id);
        o->next = b->own;
        b->own = o;
        b->starting++;
    }
    pthread_mutex_unlock(&b->own_lock);
    return o;
}

static void own_set_pids(struct obx_bwrap_runtime *b, struct obx_bwrap_own *o, pid_t bwrap_pid,
                         pid_t child_pid, unsigned long long child_start)
{
    pthread_mutex_lock(&b->own_lock);
    o->bwrap_pid = bwrap_pid;
    o->child_pid = child_pid;
    o->child_start = child_start;
    pthread_mutex_unlock(&b->own_lock);
}

/* Takes box id off the list (if remove_own() has not taken it already); returns it, unlinked. */
static struct obx_bwrap_own *own_unlink(struct obx_bwrap_runtime *b, const char *id)
{
    for (struct obx_bwrap_own **pp = &b->own; *pp; pp = &(*pp)->next)
        if (obx_streq((*pp)->id, id)) {
            struct obx_bwrap_own *o = *pp;
            *pp = o->next;
            return o;
        }
    return NULL;
}

/* A start is over: the box stays listed when it runs, and is dropped when the start failed. */
static void own_end(struct obx_bwrap_runtime *b, const char *id, bool started)
{
    pthread_mutex_lock(&b->own_lock);
    if (!started)
        free(own_unlink(b, id));
    b->starting--;
    pthread_cond_broadcast(&b->own_cond);
    pthread_mutex_unlock(&b->own_lock);
}

/* bwrap's command line for the box: its host uid, the host side it needs prepared, the arguments
 * (some of them point into nums, which must live as long as a). */
static int prepare_box(struct obx_bwrap_runtime *b, struct obx_bwrap_box *box, const char *id,
                       const char *agent, const struct obx_box_spec *spec, struct box_nums *nums,
                       struct argv_buf *a, struct obx_bwrap_spawn *sp, struct obx_error *err)
{
    int r = obx_bwrap_uid_acquire(b, &box->host_uid, &box->uid_lock, err);
    if (r < 0)
        return r;
    r = run_setup(b, box->host_uid, agent, nums, sp);
    if (r < 0)
        return obx_error_set(err, -r, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot prepare box %s: %s", id,
                             strerror(-r));
    build_args(b, box, agent, spec, nums, a);
    if (a->overflow)
        return obx_error_set(err, E2BIG, OBX_ERR_INTERNAL,
                             "too many bwrap arguments (more than %d)", OBX_BWRAP_MAX_ARGS);
    return 0;
}

/* Runs bwrap with the box's pipes, learns the agent's pid and puts it into the box's cgroups
 * before anything is sent to it; on success the pids are in box and the worker's ends in to[1]
 * and from[0]. */
static int launch_box(struct obx_bwrap_runtime *b, struct obx_bwrap_box *box, const char *id,
                      struct obx_bwrap_own *own, const struct obx_box_spec *spec,
                      struct argv_buf *a, struct obx_bwrap_spawn *sp, int to[2], int from[2],
                      struct obx_error *err)
{
    _cleanup_close_ int info_rd = -1;
    int info[2] = {-1, -1};
    if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0 || pipe2(info, O_CLOEXEC) < 0)
        return obx_error_set(err, errno, OBX_ERR_NO_CAPACITY, "cannot create pipes for a box: %s",
                             strerror(errno));
    info_rd = info[0];
    /* bwrap writes our info pipe before it lets its sandboxed child go on; if we are gone by
     * then, the write kills bwrap and leaves the child waiting forever. remove_own() therefore
     * waits for starts in progress (they are counted from own_begin() to own_end()). */
    sp->fd[0] = TAKE_FD(to[0]);
    sp->fd[1] = TAKE_FD(from[1]);
    sp->fd[OBX_BWRAP_FD_INFO] = info[1];
    pid_t pid = 0, child = 0;
    int r = obx_bwrap_spawn(a->v[0], a->v, sp, &pid);
    close_fds(sp);
    if (r < 0)
        return obx_error_set(err, r, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot run %s: %s",
                             b->bwrap_path, strerror(-r));
    own_set_pids(b, own, pid, 0, 0);
    r = read_child_pid(info_rd, &child);
    if (r < 0) {
        obx_bwrap_kill_and_reap(pid);
        return obx_error_set(err, r, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "bubblewrap failed to start box %s (%s); its message is in the log",
                             id, r == -ETIMEDOUT ? "timed out" : "exited early");
    }
    /* Before the agent is sent anything, so that it forks nothing outside the cgroup. */
    r = obx_bwrap_cgroup_attach(b, id, child, spec->pids ? spec->pids : OBX_SANDBOX_DEFAULT_PIDS,
                                spec->memory_bytes ? spec->memory_bytes
                                                   : OBX_SANDBOX_DEFAULT_MEMORY_BYTES);
    if (r < 0) {
        kill(child, SIGKILL);
        obx_bwrap_kill_and_reap(pid);
        obx_bwrap_cgroup_remove(b, id);
        return obx_error_set(err, r, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot put box %s into its cgroups below %s: %s", id,
                             b->cgroup_dir ? b->cgroup_dir : b->memory_cgroup_dir, strerror(-r));
    }
    (void)obx_bwrap_proc_start_time(child, &box->child_start);
    box->bwrap_pid = pid;
    box->child_pid = child;
    own_set_pids(b, own, pid, child, box->child_start);
    r = obx_bwrap_box_record_pids(b, id, pid, child);
    if (r < 0)
        obx_warn("sandbox: cannot record pids of box %s: %s", id, strerror(-r));
    return 0;
}

static int bwrap_start(struct obx_runtime *rt, const struct obx_box_spec *spec,
                       struct obx_box_handle *ret, struct obx_error *err)
{
    struct obx_bwrap_runtime *b = to_bwrap(rt);
    char agent[PATH_MAX];
    if (!spec || obx_str_empty(spec->agent_path))
        return obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "box spec without an agent path");
    if (!realpath(spec->agent_path, agent) || access(agent, X_OK) < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "agent %s is not an executable file: %s", spec->agent_path,
                             strerror(errno));

    _cleanup_free_ struct obx_bwrap_box *box = obx_xcalloc(1, sizeof(*box));
    box->magic = OBX_BWRAP_BOX_MAGIC;
    box->uid_lock = -1;
    char id[OBX_BWRAP_ID_LEN + 1];
    memcpy(id, OBX_BWRAP_BOX_PREFIX, strlen(OBX_BWRAP_BOX_PREFIX));
    obx_random_hex(id + strlen(OBX_BWRAP_BOX_PREFIX), OBX_BWRAP_ID_HEX_BYTES);
    struct obx_bwrap_own *own = own_begin(b, id);
    if (!own)
        return obx_error_set(err, ESHUTDOWN, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "the worker is stopping; no new box starts");
    obx_debug("sandbox: starting box %s", id);
    int r = obx_bwrap_box_create(b, spec, id, box, err);
    if (r < 0) {
        own_end(b, id, false);
        return r;
    }

    struct argv_buf a = {.n = 0};
    struct box_nums nums; /* the numbers a's arguments point to */
    struct obx_bwrap_spawn sp;
    obx_bwrap_spawn_init(&sp);
    int to[2] = {-1, -1}, from[2] = {-1, -1};
    r = prepare_box(b, box, id, agent, spec, &nums, &a, &sp, err);
    if (r >= 0)
        r = launch_box(b, box, id, own, spec, &a, &sp, to, from, err);
    if (r < 0) {
        for (int i = 0; i < 2; i++) {
            obx_closep(&to[i]);
            obx_closep(&from[i]);
        }
        close_fds(&sp);
        obx_closep(&box->uid_lock);
        (void)obx_bwrap_box_remove(b, id);
        own_end(b, id, false);
        return r;
    }
    ret->to_agent = TAKE_FD(to[1]);
    ret->from_agent = TAKE_FD(from[0]);
    snprintf(ret->id, sizeof(ret->id), "%s", id);
    ret->pid = (int)box->bwrap_pid;
    obx_debug("sandbox: started box %s (bwrap pid %d, agent pid %d, host uid %u)", id,
              (int)box->bwrap_pid, (int)box->child_pid,
              (unsigned)(box->host_uid ? box->host_uid : geteuid()));
    ret->priv = TAKE_PTR(box);
    own_end(b, id, true);
    return 0;
}

/* Waits for our child pid to exit until deadline (monotonic ms). ECHILD (someone else reaped it)
 * counts as exited. */
static bool wait_exit(pid_t pid, uint64_t deadline)
{
    long step_us = 500;
    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        if (r < 0 && errno != EINTR)
            return true;
        if (obx_now_ms() >= deadline)
            return false;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step_us * 1000};
        nanosleep(&ts, NULL);
        step_us = OBX_MIN(step_us * 2, 20000L);
    }
}

static void bwrap_stop(struct obx_runtime *rt, struct obx_box_handle *h)
{
    struct obx_bwrap_runtime *b = to_bwrap(rt);
    struct obx_bwrap_box *box = h->priv;
    if (!box || box->magic != OBX_BWRAP_BOX_MAGIC)
        return;
    pthread_mutex_lock(&b->own_lock);
    free(own_unlink(b, h->id));
    b->removing++;
    pthread_mutex_unlock(&b->own_lock);
    /* EOF on its stdin makes the agent kill everything and exit; closing its stdout too keeps
     * it from blocking on a full pipe nobody reads any more. */
    obx_closep(&h->to_agent);
    obx_closep(&h->from_agent);
    if (!wait_exit(box->bwrap_pid, obx_now_ms() + STOP_GRACE_MS)) {
        obx_warn("sandbox: box %s did not exit within %d ms; killing it", h->id, STOP_GRACE_MS);
        /* SIGKILL to the box's PID 1 ends its whole pid namespace; bwrap itself is outside it. */
        (void)obx_bwrap_kill_if_same(box->child_pid, box->child_start, NULL);
        obx_bwrap_kill_and_reap(box->bwrap_pid);
    }
    obx_bwrap_cgroup_remove(b, h->id);
    /* The box's processes are gone with its PID 1: its host uid is free for another box. */
    obx_closep(&box->uid_lock);
    int r = obx_bwrap_box_remove(b, h->id);
    if (r < 0)
        obx_warn("sandbox: cannot remove %s: %s", box->dir, strerror(-r));
    box->magic = 0;
    free(box);
    h->priv = NULL;
    h->pid = 0;
    pthread_mutex_lock(&b->own_lock);
    b->removing--;
    pthread_cond_broadcast(&b->own_cond);
    pthread_mutex_unlock(&b->own_lock);
}

/* For a worker going away on a signal: no new box starts, starts in progress finish (a few ms;
 * at most REMOVE_OWN_WAIT_MS), then every box of this process is killed and its cgroups and
 * directory removed, and stops under way in other threads end, so nothing of it is left once
 * the process exits. */
static int bwrap_remove_own(struct obx_runtime *rt, struct obx_error *err)
{
    (void)err;
    struct obx_bwrap_runtime *b = to_bwrap(rt);
    struct timespec until = obx_ms_to_timespec(obx_now_ms() + REMOVE_OWN_WAIT_MS);
    pthread_mutex_lock(&b->own_lock);
    b->stopping = true;
    while (b->starting > 0 &&
           pthread_cond_timedwait(&b->own_cond, &b->own_lock, &until) != ETIMEDOUT)
        ;
    struct obx_bwrap_own *list = TAKE_PTR(b->own);
    pthread_mutex_unlock(&b->own_lock);

    int n = 0;
    for (struct obx_bwrap_own *o = list; o; o = o->next) {
        /* SIGKILL to the box's PID 1 ends its whole pid namespace. */
        if (o->child_pid > 0)
            (void)obx_bwrap_kill_if_same(o->child_pid, o->child_start, NULL);
        if (o->bwrap_pid > 0) {
            kill(-o->bwrap_pid, SIGKILL);
            kill(o->bwrap_pid, SIGKILL);
        }
    }
    uint64_t deadline = obx_now_ms() + STOP_GRACE_MS;
    while (list) {
        struct obx_bwrap_own *o = list;
        list = o->next;
        if (o->bwrap_pid > 0)
            (void)wait_exit(o->bwrap_pid, deadline);
        obx_bwrap_cgroup_remove(b, o->id);
        (void)obx_bwrap_box_remove(b, o->id);
        free(o);
        n++;
    }
    /* Boxes that other threads stop are off the list but not gone yet: the process must not
     * exit before their directories and cgroups are (a stop takes at most STOP_GRACE_MS). */
    until = obx_ms_to_timespec(obx_now_ms() + STOP_GRACE_MS + REMOVE_OWN_WAIT_MS);
    pthread_mutex_lock(&b->own_lock);
    while (b->removing > 0 &&
           pthread_cond_timedwait(&b->own_cond, &b->own_lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&b->own_lock);
    return n;
}

static void bwrap_describe(struct obx_runtime *rt, char *buf, size_t size)
{
    struct obx_bwrap_runtime *b = to_bwrap(rt);
    const char *limits = b->cgroup_dir && b->memory_cgroup_dir ? "a pids and a memory cgroup"
                         : b->cgroup_dir                       ? "a pids cgroup, memory per process"
                         : b->memory_cgroup_dir
                             ? "a memory cgroup, processes per user (RLIMIT_NPROC)"
                             : "per process (no cgroup could be made)";
    char uids[96];
    obx_bwrap_describe_uids(b, uids, sizeof(uids));
    snprintf(buf, size,
             "bubblewrap %s at %s; user namespaces: ok; limits per box: %s; state dir %s; boxes "
             "run as %s; seccomp filter: %u rules",
             b->version, b->bwrap_path, limits, b->state_dir, uids, b->seccomp_rules);
}

static void bwrap_free(struct obx_runtime *rt)
{
    struct obx_bwrap_runtime *b = to_bwrap(rt);
    if (!b)
        return;
    for (size_t i = 0; i < b->n_mounts; i++) {
        free(b->mounts[i].src);
        free(b->mounts[i].dst);
    }
    obx_closep(&b->boxes_fd);
    while (b->own) {
        struct obx_bwrap_own *o = b->own;
        b->own = o->next;
        free(o);
    }
    pthread_mutex_destroy(&b->own_lock);
    pthread_cond_destroy(&b->own_cond);
    free(b->cgroup_dir);
    free(b->memory_cgroup_dir);
    free(b->bwrap_path);
    free(b->agent_path);
    free(b->seccomp_bpf);
    free(b->state_dir);
    free(b->boxes_dir);
    free(b);
}

struct obx_runtime *obx_sandbox_runtime_new(const struct obx_sandbox_config *cfg,
                                            struct obx_error *err)
{
    struct obx_bwrap_runtime *b = obx_xcalloc(1, sizeof(*b));
    b->rt.name = "bubblewrap";
    b->rt.host_sockets = true;
    b->rt.start = bwrap_start;
    b->rt.stop = bwrap_stop;
    b->rt.cleanup_stale = obx_bwrap_cleanup_stale;
    b->rt.remove_own = bwrap_remove_own;
    b->rt.describe = bwrap_describe;
    b->rt.free = bwrap_free;
    b->boxes_fd = -1;
    pthread_mutex_init(&b->own_lock, NULL);
    obx_cond_init_monotonic(&b->own_cond);

    int r = find_bwrap(cfg ? cfg->bwrap_path : NULL, &b->bwrap_path, err);
    if (r >= 0)
        r = read_version(b, err);
    if (r >= 0 && b->version_num < MIN_VERSION)
        r = obx_error_set(err, ENOTSUP, OBX_ERR_RUNTIME_UNAVAILABLE,
                          "bubblewrap %s at %s is too old (need 0.4.0 or newer); upgrade it: "
                          "sudo apt-get install bubblewrap (Debian/Ubuntu) or sudo dnf install "
                          "bubblewrap (Fedora)",
                          b->version, b->bwrap_path);
    if (r >= 0)
        r = agent_init(b, cfg ? cfg->agent_path : NULL, err);
    if (r >= 0)
        r = obx_bwrap_uids_init(b, cfg ? cfg->host_uids : NULL, err);
    /* A root worker's boxes get a tmpfs workspace of their own (a host directory below our 0700
     * state directory is out of their host uid's reach) and --perms. */
    if (r >= 0 && b->host_uid_count && b->version_num < SIZE_VERSION)
        r = obx_error_set(err, ENOTSUP, OBX_ERR_RUNTIME_UNAVAILABLE,
                          "bubblewrap %s at %s is too old to run a root worker's boxes as an "
                          "unprivileged host user (need 0.8.0 or newer); upgrade it, or run the "
                          "worker as an ordinary user",
                          b->version, b->bwrap_path);
    if (r >= 0)
        r = obx_bwrap_seccomp_init(b, err);
    if (r >= 0)
        r = mounts_init(b, err);
    if (r >= 0)
        r = probe(b, err);
    if (r >= 0)
        r = obx_bwrap_state_open(b, cfg ? cfg->state_dir : NULL, err);
    if (r >= 0)
        obx_bwrap_cgroup_init(b);
    if (r < 0) {
        bwrap_free(&b->rt);
        return NULL;
    }
    obx_debug("sandbox: bubblewrap %s at %s, state in %s, %zu system mounts", b->version,
              b->bwrap_path, b->state_dir, b->n_mounts);
    return &b->rt;
}

const char *obx_sandbox_box_dir(const struct obx_box_handle *h)
{
    const struct obx_bwrap_box *box = h ? h->priv : NULL;
    return box && box->magic == OBX_BWRAP_BOX_MAGIC ? box->dir : NULL;
}
