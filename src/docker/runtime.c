/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The docker runtime's boxes. start(): create the container (hardened HostConfig, agent
 * bind-mounted read-only as its entrypoint, owner labels), attach to it, then start it, so not a
 * byte of the agent's HELLO is missed. The attach stream is multiplexed (Tty is off: 8-byte
 * headers, stream type + big-endian size), and the worker wants two plain fds, so each box has two
 * pump threads: one copies the worker's frames (a socketpair) to the container's stdin and
 * half-closes the attach connection when the worker closes its end, which makes Docker close the
 * agent's stdin (StdinOnce) so the agent kills everything and exits, exactly as with bubblewrap's
 * pipes; the other de-multiplexes the stream, handing stdout to the worker's socketpair and
 * logging stderr lines with the box id. stop(): close the worker's ends, remove the container
 * (force), shut the attach connection down, join the pumps. Images are image.c's business, the
 * owner labels (stale boxes, our own boxes on the way out) owner.c's.
 *
 * The direct path (a local daemon, ONLYBOXES_DOCKER_DIRECT): every frame through dockerd's attach
 * proxy and our two pumps costs time on each round trip, so for a daemon on this host the worker
 * listens on a unix socket of its own, <state>/docker/<container>.sock (directory 0700),
 * bind-mounts that one socket read-only into the box at /.onlyboxes/run/worker.sock and starts
 * the agent with --connect. The agent connects twice at start-up (one connection per direction,
 * so either side closing its sending end is EOF for the other, as with pipes) and speaks the
 * protocol on them. Nothing of the host is writable from the box (connecting needs no write
 * access to the mount), and the worker stops listening (and unlinks the socket) once the agent is
 * connected, so no other process in the box can connect later. The attach stream stays for the
 * agent's stderr. A tcp:// daemon runs the box on another host, where our socket does not exist:
 * it always uses the attach path.
 *
 * The runtime object is read-only after creation except for what pull_lock and log_lock guard.
 */
#include "runtime-internal.h"

#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "common/random.h"

#define BOX_MAGIC 0x646f636bu
#define STOP_TIMEOUT_MS 15000
#define STDERR_LINE_MAX 1024
#define AGENT_NOFILE 1024u
#define PUMP_BUF (64u * 1024)
#define CONNECT_TIMEOUT_MS 10000 /* the agent's connection on the direct path */
#define BOX_RUN_DIR "/.onlyboxes/run"
#define BOX_WORKER_SOCK BOX_RUN_DIR "/worker.sock"

struct docker_box {
    unsigned magic;
    struct docker_runtime *d;
    char id[72];
    int sock;    /* the hijacked attach connection */
    int in_end;  /* our end of the worker's to_agent pair: read and forward to sock */
    int out_end; /* our end of the worker's from_agent pair: stdout payloads go here */
    pthread_t in_thr, out_thr;
    bool in_started, out_started;
    bool direct;   /* the agent talks over sock_path's connection, the attach is life cycle */
    int listen_fd; /* direct: our listening socket until the agent connected */
    char sock_path[PATH_MAX];
    int stream_ended;       /* atomic: the out pump saw the attach stream end (the box exited) */
    char pending[PUMP_BUF]; /* stream bytes that came with the attach answer */
    size_t pending_len;
};

static void read_line_file(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

/* ---- the attach stream pumps ---- */

/* Worker -> container stdin. Ends when the worker closes its end (or the connection breaks),
 * and then half-closes the connection: Docker closes the agent's stdin. */
static void *in_pump(void *arg)
{
    struct docker_box *b = arg;
    uint8_t buf[PUMP_BUF];
    for (;;) {
        ssize_t n = recv(b->in_end, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || obx_send_all(b->sock, buf, (size_t)n) < 0)
            break;
    }
    shutdown(b->sock, SHUT_WR);
    return NULL;
}

struct demux {
    uint8_t hdr[8];
    size_t hdr_len;
    uint8_t stream;
    uint32_t left; /* payload bytes of the current frame still to come */
    char line[STDERR_LINE_MAX + 1];
    size_t line_len;
    bool worker_gone;
};

static void stderr_bytes(struct docker_box *b, struct demux *m, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool nl = p[i] == '\n';
        if (!nl)
            m->line[m->line_len++] = (char)p[i];
        if (nl || m->line_len == STDERR_LINE_MAX) {
            m->line[m->line_len] = '\0';
            if (m->line_len > 0)
                obx_warn("box %.12s: %s", b->id, m->line);
            m->line_len = 0;
        }
    }
}

/* Feeds received stream bytes through the de-multiplexer. Returns false on a broken stream. */
static bool demux_feed(struct docker_box *b, struct demux *m, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (m->left == 0 && m->hdr_len < sizeof(m->hdr)) {
            size_t take = OBX_MIN(n, sizeof(m->hdr) - m->hdr_len);
            memcpy(m->hdr + m->hdr_len, p, take);
            m->hdr_len += take;
            p += take;
            n -= take;
            if (m->hdr_len < sizeof(m->hdr))
                return true;
            m->stream = m->hdr[0];
            m->left = (uint32_t)m->hdr[4] << 24 | (uint32_t)m->hdr[5] << 16 |
                      (uint32_t)m->hdr[6] << 8 | m->hdr[7];
            m->hdr_len = 0;
            if (m->stream > 2 || m->hdr[1] || m->hdr[2] || m->hdr[3]) {
                obx_warn("box %.12s: unexpected attach stream header; closing", b->id);
                return false;
            }
            continue;
        }
        size_t take = OBX_MIN(n, (size_t)m->left);
        if (m->stream == 2) {
            stderr_bytes(b, m, p, take);
        } else if (!m->worker_gone && obx_send_all(b->out_end, p, take) < 0) {
            /* The worker closed its end: keep draining so Docker never blocks on us. */
            m->worker_gone = true;
        }
        p += take;
        n -= take;
        m->left -= (uint32_t)take;
    }
    return true;
}

/* Container stdout/stderr -> worker / log. Ends at the end of the stream (the container exited or
 * was removed, or stop() shut the connection down), then gives the worker EOF. */
static void *out_pump(void *arg)
{
    struct docker_box *b = arg;
    struct demux m = {.hdr_len = 0};
    uint8_t buf[PUMP_BUF];
    bool ok = demux_feed(b, &m, (const uint8_t *)b->pending, b->pending_len);
    while (ok) {
        ssize_t n = recv(b->sock, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ok = demux_feed(b, &m, buf, (size_t)n);
    }
    if (m.line_len > 0)
        stderr_bytes(b, &m, (const uint8_t *)"\n", 1);
    __atomic_store_n(&b->stream_ended, 1, __ATOMIC_RELEASE);
    if (b->out_end >= 0)
        shutdown(b->out_end, SHUT_WR);
    return NULL;
}

/* ---- create / remove ---- */

static void set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, json_string(v));
}

static void set_int(json_t *o, const char *k, int64_t v)
{
    json_object_set_new(o, k, json_integer(v));
}

/* The stricter of two limits where 0 means none. */
static uint64_t stricter(uint64_t a, uint64_t b)
{
    if (!a || !b)
        return a ? a : b;
    return OBX_MIN(a, b);
}

/* Network "allowlist": the worker's egress proxy socket, bound read-only like the direct path's
 * (the box's network stays cfg->network, "none"), and the agent told to relay to it. */
static void egress_bind(json_t *binds, const struct obx_box_spec *spec)
{
    if (!spec->egress_socket)
        return;
    _cleanup_free_ char *b = obx_xasprintf("%s:" OBX_BOX_EGRESS_SOCKET ":ro", spec->egress_socket);
    json_array_append_new(binds, json_string(b));
}

static void egress_agent_args(json_t *entry, const struct obx_box_spec *spec)
{
    if (!spec->egress_socket)
        return;
    json_array_append_new(entry, json_string(OBX_BOX_EGRESS_OPTION));
    json_array_append_new(entry, json_string(OBX_BOX_EGRESS_SOCKET));
}

/* The agent as PID 1, with its workspace, the direct socket and the box's limits. */
static json_t *create_entrypoint(const struct obx_box_spec *spec, const char *sock_path)
{
    json_t *entry = json_array();
    json_array_append_new(entry, json_string(OBX_BOX_AGENT_PATH));
    json_array_append_new(entry, json_string("--workspace"));
    json_array_append_new(entry, json_string(OBX_BOX_WORKSPACE));
    if (sock_path) {
        json_array_append_new(entry, json_string("--connect"));
        json_array_append_new(entry, json_string(BOX_WORKER_SOCK));
    }
    egress_agent_args(entry, spec);
    char num[32];
    /* No --nproc: without a user namespace RLIMIT_NPROC counts every process of the uid on the
     * host, across boxes; the cgroup pids limit below is per box. */
    const struct {
        const char *flag;
        uint64_t v;
    } lims[] = {{"--memory", spec->memory_bytes},
                {"--fsize", spec->fsize_bytes},
                {"--nofile", AGENT_NOFILE}};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(lims); i++) {
        if (!lims[i].v)
            continue;
        snprintf(num, sizeof(num), "%llu", (unsigned long long)lims[i].v);
        json_array_append_new(entry, json_string(lims[i].flag));
        json_array_append_new(entry, json_string(num));
    }
    return entry;
}

/* What finds the box again: ours, its worker and session, and its owner (owner.c). */
static json_t *create_labels(struct docker_runtime *d, const struct obx_box_spec *spec)
{
    json_t *labels = json_object();
    set_str(labels, OBX_LABEL_MANAGED, "true");
    set_str(labels, OBX_LABEL_WORKER, spec->worker_id ? spec->worker_id : "");
    set_str(labels, OBX_LABEL_SESSION, spec->session ? spec->session : "");
    set_str(labels, OBX_DOCKER_LABEL_OWNER_HOST, d->host);
    set_str(labels, OBX_DOCKER_LABEL_OWNER_BOOT, d->boot_id);
    set_str(labels, OBX_DOCKER_LABEL_OWNER_PID, d->self_pid);
    set_str(labels, OBX_DOCKER_LABEL_OWNER_START, d->self_start);
    return labels;
}

/* The agent, the direct socket, the egress socket and the operator's mounts; *ws_mounted tells
 * whether a mount is the workspace itself. */
static json_t *create_binds(const struct obx_box_spec *spec, const char *agent,
                            const char *sock_path, bool *ws_mounted)
{
    _cleanup_free_ char *bind = obx_xasprintf("%s:" OBX_BOX_AGENT_PATH ":ro", agent);
    json_t *binds = json_pack("[s]", bind);
    if (sock_path) {
        /* Read-only: connecting to a socket needs no write access to the mount. */
        _cleanup_free_ char *sb = obx_xasprintf("%s:" BOX_WORKER_SOCK ":ro", sock_path);
        json_array_append_new(binds, json_string(sb));
    }
    egress_bind(binds, spec);
    *ws_mounted = false;
    for (size_t i = 0; i < spec->n_mounts; i++) {
        _cleanup_free_ char *mb =
            obx_xasprintf("%s:%s:%s", spec->mounts[i].host, spec->mounts[i].box,
                          spec->mounts[i].rw ? "rw" : "ro");
        json_array_append_new(binds, json_string(mb));
        *ws_mounted = *ws_mounted || obx_streq(spec->mounts[i].box, OBX_BOX_WORKSPACE);
    }
    return binds;
}

/* The box's confinement and limits. */
static json_t *create_host_config(struct docker_runtime *d, const struct obx_box_spec *spec,
                                  const char *agent, const char *sock_path)
{
    const struct obx_docker_config *cfg = &d->cfg;
    json_t *hc = json_object();
    bool ws_mounted;
    json_object_set_new(hc, "Binds", create_binds(spec, agent, sock_path, &ws_mounted));
    set_str(hc, "NetworkMode", spec->network ? "bridge" : cfg->network);
    if (cfg->drop_caps)
        json_object_set_new(hc, "CapDrop", json_pack("[s]", "ALL"));
    if (cfg->no_new_privs)
        json_object_set_new(hc, "SecurityOpt", json_pack("[s]", "no-new-privileges"));
    json_object_set_new(hc, "ReadonlyRootfs", json_boolean(cfg->read_only_root));
    /* The workspace is a tmpfs owned by the box user: writable, sized, gone with the box. "exec":
     * Docker's tmpfs default is noexec, and people run scripts and venvs from both. */
    uint64_t ws = spec->workspace_bytes ? spec->workspace_bytes : cfg->workspace_bytes;
    _cleanup_free_ char *tmp_opts = obx_xasprintf("rw,exec,nosuid,nodev,size=%llu,mode=1777",
                                                  (unsigned long long)cfg->tmp_bytes);
    _cleanup_free_ char *ws_opts =
        obx_xasprintf("rw,exec,nosuid,nodev,size=%llu,uid=%u,gid=%u,mode=0755",
                      (unsigned long long)ws, cfg->uid, cfg->gid);
    json_t *tmpfs = json_pack("{s:s}", "/tmp", tmp_opts);
    if (!ws_mounted) /* a host directory mounted there is the workspace */
        json_object_set_new(tmpfs, OBX_BOX_WORKSPACE, json_string(ws_opts));
    json_object_set_new(hc, "Tmpfs", tmpfs);
    if (cfg->memory_bytes) {
        set_int(hc, "Memory", (int64_t)cfg->memory_bytes);
        set_int(hc, "MemorySwap", (int64_t)cfg->memory_bytes); /* no swap on top */
    }
    uint64_t cpu = stricter(spec->cpu_millis, cfg->cpu_millis);
    if (cpu)
        set_int(hc, "NanoCpus", (int64_t)cpu * 1000000);
    uint64_t pids = stricter(spec->pids, cfg->pids);
    if (pids)
        set_int(hc, "PidsLimit", (int64_t)pids);
    set_str(hc, "IpcMode", "private");
    /* The attach stream carries the protocol; a log driver would copy it all to disk. */
    json_object_set_new(hc, "LogConfig", json_pack("{s:s, s:{}}", "Type", "none", "Config"));
    json_object_set_new(hc, "AutoRemove", json_false());
    return hc;
}

static json_t *create_body(struct docker_runtime *d, const struct obx_box_spec *spec,
                           const char *image, const char *agent, const char *sock_path)
{
    const struct obx_docker_config *cfg = &d->cfg;
    json_t *body = json_object();
    set_str(body, "Image", image);
    char user[32];
    snprintf(user, sizeof(user), "%u:%u", cfg->uid, cfg->gid);
    if (!obx_str_empty(cfg->user))
        set_str(body, "User", user);
    set_str(body, "Hostname", "onlyboxes");
    set_str(body, "WorkingDir", OBX_BOX_WORKSPACE);
    json_object_set_new(body, "Env",
                        json_pack("[s,s,s]", "HOME=" OBX_BOX_WORKSPACE, "LANG=C.UTF-8",
                                  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
                                  "/bin"));
    /* The agent is PID 1; stdin stays open until we half-close the attach connection, then
     * Docker closes it (StdinOnce) and the agent exits. */
    json_object_set_new(body, "AttachStdin", json_true());
    json_object_set_new(body, "AttachStdout", json_true());
    json_object_set_new(body, "AttachStderr", json_true());
    json_object_set_new(body, "OpenStdin", json_true());
    json_object_set_new(body, "StdinOnce", json_true());
    json_object_set_new(body, "Tty", json_false());
    json_object_set_new(body, "Entrypoint", create_entrypoint(spec, sock_path));
    json_object_set_new(body, "Cmd", json_array());
    json_object_set_new(body, "Labels", create_labels(d, spec));
    json_object_set_new(body, "HostConfig", create_host_config(d, spec, agent, sock_path));
    return body;
}

/* Removes a container (force: killing it first). 404 and "already in progress" count as done. */
int obx_docker_remove_container(struct docker_runtime *d, const char *id, struct obx_error *err)
{
    _cleanup_free_ char *path = obx_xasprintf("/containers/%s?force=1&v=1", id);
    long status = 0;
    _cleanup_json_ json_t *j = NULL;
    int r = obx_docker_call(&d->c, "DELETE", path, NULL, STOP_TIMEOUT_MS, &status, &j, err);
    if (r < 0)
        return r;
    if (status == 204 || status == 404 || status == 409)
        return 0;
    return obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                         "cannot remove container %.12s: HTTP %ld %s", id, status,
                         obx_docker_message(j));
}

static int create_container(struct docker_runtime *d, const json_t *body, const char *name,
                            const char *image, const struct obx_box_spec *spec, char *ret_id,
                            size_t size, struct obx_error *err)
{
    _cleanup_free_ char *path = obx_xasprintf("/containers/create?name=%s", name);
    for (int attempt = 0;; attempt++) {
        long status = 0;
        _cleanup_json_ json_t *j = NULL;
        int r = obx_docker_call(&d->c, "POST", path, body, OBX_DOCKER_TIMEOUT_MS, &status, &j, err);
        if (r < 0)
            return r;
        if (status == 201) {
            const char *id = obx_json_get_str(j, "Id", NULL);
            if (obx_str_empty(id) || strlen(id) >= size)
                return obx_error_set(err, EPROTO, OBX_ERR_RUNTIME_UNAVAILABLE,
                                     "the Docker daemon created a container without an id");
            snprintf(ret_id, size, "%s", id);
            return 0;
        }
        if (status == 404 && attempt == 0) {
            /* No such image: pull it (or explain how to get it) and try once more. */
            r = obx_docker_ensure_image(d, image, spec, err);
            if (r < 0)
                return r;
            continue;
        }
        return obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot create a container from %s: HTTP %ld %s", image, status,
                             obx_docker_message(j));
    }
}

/* Tears down what start() built so far; the worker's fds are the caller's business. */
static void box_destroy(struct docker_box *b)
{
    struct obx_error err = OBX_ERROR_INIT;
    if (b->id[0] && obx_docker_remove_container(b->d, b->id, &err) < 0)
        obx_warn("docker: %s", err.message);
    if (b->sock >= 0)
        shutdown(b->sock, SHUT_RDWR); /* wakes both pumps if the daemon did not end the stream */
    if (b->in_end >= 0)
        shutdown(b->in_end, SHUT_RDWR);
    if (b->in_started)
        pthread_join(b->in_thr, NULL);
    if (b->out_started)
        pthread_join(b->out_thr, NULL);
    obx_closep(&b->sock);
    obx_closep(&b->in_end);
    obx_closep(&b->out_end);
    obx_closep(&b->listen_fd);
    if (b->sock_path[0])
        (void)unlink(b->sock_path);
    b->magic = 0;
    free(b);
}

/* The direct path's listening socket at path, which only the owner may use (the directory is
 * 0700; the box user reaches it through the bind mount, so the socket itself is 0666). */
static int listen_socket(const char *path, int *ret, struct obx_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return obx_error_set(err, ENAMETOOLONG, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "socket path %s is too long", path);
    memcpy(sa.sun_path, path, strlen(path)); /* fits with its NUL: checked above */
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return obx_error_set(err, errno, OBX_ERR_NO_CAPACITY, "socket: %s", strerror(errno));
    (void)unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
        listen(fd, 2) < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot listen on %s: %s",
                             path, strerror(errno));
    *ret = TAKE_FD(fd);
    return 0;
}

/* Waits for the agent's connection on the direct path. Gives up when the box exits first. */
static int accept_agent(struct docker_box *b, int *ret, struct obx_error *err)
{
    uint64_t deadline = obx_now_ms() + CONNECT_TIMEOUT_MS;
    for (;;) {
        int fd = accept4(b->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            *ret = fd;
            return 0;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "accept on %s: %s",
                                 b->sock_path, strerror(errno));
        if (__atomic_load_n(&b->stream_ended, __ATOMIC_ACQUIRE))
            return obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "box %.12s exited before its agent connected (see the log; an "
                                 "onlyboxes-agent without --connect, or set "
                                 "ONLYBOXES_DOCKER_DIRECT=false)",
                                 b->id);
        uint64_t now = obx_now_ms();
        if (now >= deadline)
            return obx_error_set(err, ETIMEDOUT, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "the agent of box %.12s did not connect to %s within %d ms (a "
                                 "daemon that cannot bind-mount this host's paths? set "
                                 "ONLYBOXES_DOCKER_DIRECT=false)",
                                 b->id, b->sock_path, CONNECT_TIMEOUT_MS);
        struct pollfd p = {.fd = b->listen_fd, .events = POLLIN};
        (void)poll(&p, 1, (int)OBX_MIN(deadline - now, 50));
    }
}

static int docker_start_counted(struct docker_runtime *d, const struct obx_box_spec *spec,
                                struct obx_box_handle *ret, struct obx_error *err);

static int docker_start(struct obx_runtime *rt, const struct obx_box_spec *spec,
                        struct obx_box_handle *ret, struct obx_error *err)
{
    struct docker_runtime *d = to_docker(rt);
    __atomic_add_fetch(&d->starting, 1, __ATOMIC_ACQ_REL);
    int r = __atomic_load_n(&d->stopping, __ATOMIC_ACQUIRE)
                ? obx_error_set(err, ESHUTDOWN, OBX_ERR_RUNTIME_UNAVAILABLE,
                                "the worker is stopping; no new box starts")
                : docker_start_counted(d, spec, ret, err);
    __atomic_sub_fetch(&d->starting, 1, __ATOMIC_ACQ_REL);
    return r;
}

/* True when the ELF file at fd asks for a dynamic loader (has a PT_INTERP header). The
 * agent runs inside images that have none of the host's libraries, so it must be static. */
static bool elf_is_dynamic(int fd)
{
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
        return false; /* not an ELF64 file we can read: let the box's own error speak */
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        off_t off = (off_t)eh.e_phoff + (off_t)i * (off_t)sizeof(ph);
        if (pread(fd, &ph, sizeof(ph), off) != (ssize_t)sizeof(ph))
            return false;
        if (ph.p_type == PT_INTERP)
            return true;
    }
    return false;
}

static int check_agent(const char *configured, char resolved[PATH_MAX], struct obx_error *err)
{
    if (!realpath(configured, resolved) || access(resolved, X_OK) < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "agent %s is not an executable file: %s", configured, strerror(errno));
    _cleanup_close_ int fd = open(resolved, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && elf_is_dynamic(fd))
        return obx_error_set(err, ENOEXEC, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "agent %s is dynamically linked; the docker runtime needs the "
                             "static onlyboxes-agent (a sanitizer build makes a dynamic one)",
                             resolved);
    return 0;
}

int obx_docker_agent_check(const char *agent_path, struct obx_error *err)
{
    char resolved[PATH_MAX];
    return check_agent(agent_path, resolved, err);
}

/* The worker's side of the channel to the agent, before the container runs: the attach stream,
 * and without the direct socket the socket pairs and the pumps that copy between them. */
static int open_channel(struct docker_box *b, int to[2], int from[2], struct obx_error *err)
{
    struct docker_runtime *d = b->d;
    int r = obx_docker_attach(&d->c, b->id, &b->sock, b->pending, sizeof(b->pending),
                              &b->pending_len, err);
    if (r < 0)
        return r;
    int e = 0;
    if (!b->direct) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, to) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, from) < 0)
            return obx_error_set(err, errno, OBX_ERR_NO_CAPACITY,
                                 "cannot create sockets for a box: %s", strerror(errno));
        b->in_end = TAKE_FD(to[1]);
        b->out_end = TAKE_FD(from[1]);
        e = pthread_create(&b->in_thr, NULL, in_pump, b);
        b->in_started = e == 0;
    }
    if (e == 0) {
        e = pthread_create(&b->out_thr, NULL, out_pump, b);
        b->out_started = e == 0;
    }
    if (e != 0)
        return obx_error_set(err, e, OBX_ERR_NO_CAPACITY, "cannot start the box's pump threads");
    return 0;
}

/* Starts the container and, on the direct path, takes the agent's two connections. */
static int run_box(struct docker_box *b, const char *image, int to[2], int from[2],
                   struct obx_error *err)
{
    struct docker_runtime *d = b->d;
    _cleanup_free_ char *path = obx_xasprintf("/containers/%s/start", b->id);
    _cleanup_json_ json_t *j = NULL;
    long status = 0;
    int r = obx_docker_call(&d->c, "POST", path, NULL, OBX_DOCKER_TIMEOUT_MS, &status, &j, err);
    if (r >= 0 && status != 204 && status != 304)
        r = obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                          "cannot start container %.12s from %s: HTTP %ld %s", b->id, image, status,
                          obx_docker_message(j));
    if (r < 0 || !b->direct)
        return r;
    /* The agent connects twice, in order: one connection per direction, so closing to_agent is
     * EOF for the agent, as with a pipe. */
    r = accept_agent(b, &to[0], err);
    if (r >= 0)
        r = accept_agent(b, &from[0], err);
    if (r < 0)
        return r;
    /* Nobody else may connect: stop listening and remove the name. */
    obx_closep(&b->listen_fd);
    (void)unlink(b->sock_path);
    b->sock_path[0] = '\0';
    return 0;
}

/* A box object named name, with its direct socket listening when the daemon is local (else the
 * attach stream carries the agent's frames). */
static struct docker_box *box_new(struct docker_runtime *d, char name[static 40])
{
    struct docker_box *b = obx_xcalloc(1, sizeof(*b));
    b->magic = BOX_MAGIC;
    b->d = d;
    b->sock = b->in_end = b->out_end = b->listen_fd = -1;
    memcpy(name, "obx-", 4);
    obx_random_hex(name + 4, 8);
    if (d->sock_dir) {
        struct obx_error lerr = OBX_ERROR_INIT;
        snprintf(b->sock_path, sizeof(b->sock_path), "%s/%s.sock", d->sock_dir, name);
        if (listen_socket(b->sock_path, &b->listen_fd, &lerr) == 0)
            b->direct = true;
        else
            obx_warn("docker: %s; using the attach stream", lerr.message);
    }
    return b;
}

static int docker_start_counted(struct docker_runtime *d, const struct obx_box_spec *spec,
                                struct obx_box_handle *ret, struct obx_error *err)
{
    char agent[PATH_MAX], name[40];
    if (!spec || obx_str_empty(spec->agent_path))
        return obx_error_set(err, EINVAL, OBX_ERR_INTERNAL, "box spec without an agent path");
    int r = check_agent(spec->agent_path, agent, err);
    if (r < 0)
        return r;
    const char *image = spec->image     ? spec->image
                        : spec->session ? d->terminal_image
                                        : d->python_image;
    struct docker_box *b = box_new(d, name);
    int to[2] = {-1, -1}, from[2] = {-1, -1};
    _cleanup_json_ json_t *body =
        create_body(d, spec, image, agent, b->direct ? b->sock_path : NULL);
    r = create_container(d, body, name, image, spec, b->id, sizeof(b->id), err);
    /* A container created while the worker began to stop may have missed remove_own()'s list:
     * this start removes it itself. */
    if (r >= 0 && __atomic_load_n(&d->stopping, __ATOMIC_ACQUIRE))
        r = obx_error_set(err, ESHUTDOWN, OBX_ERR_RUNTIME_UNAVAILABLE,
                          "the worker is stopping; no new box starts");
    if (r >= 0)
        r = open_channel(b, to, from, err);
    if (r >= 0)
        r = run_box(b, image, to, from, err);
    if (r < 0) {
        /* Closing the worker's ends first lets the pumps finish once the container is gone. */
        for (int i = 0; i < 2; i++) {
            obx_closep(&to[i]);
            obx_closep(&from[i]);
        }
        box_destroy(b);
        return r;
    }
    ret->to_agent = TAKE_FD(to[0]);
    ret->from_agent = TAKE_FD(from[0]);
    snprintf(ret->id, sizeof(ret->id), "%s", b->id);
    ret->pid = 0;
    ret->priv = b;
    obx_debug("docker: started box %.12s from %s (%s)", b->id, image,
              b->direct ? "direct socket" : "attach stream");
    return 0;
}

static void docker_stop(struct obx_runtime *rt, struct obx_box_handle *h)
{
    struct docker_box *b = h->priv;
    if (!b || b->magic != BOX_MAGIC)
        return;
    /* EOF on the worker's end: the in pump half-closes the attach connection, Docker closes the
     * agent's stdin and the agent kills what runs. The forced remove below ends it regardless. */
    obx_closep(&h->to_agent);
    obx_closep(&h->from_agent);
    box_destroy(b);
    h->priv = NULL;
}

/* ---- the runtime object ---- */

static const char *docker_default_image(struct obx_runtime *rt, bool session)
{
    struct docker_runtime *d = to_docker(rt);
    return session ? d->terminal_image : d->python_image;
}

static const char *docker_status(struct obx_runtime *rt)
{
    return to_docker(rt)->status;
}

/* mkdir + check that path is a directory of ours that nobody else may enter. */
static int private_dir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
        return -EPERM;
    if ((st.st_mode & 07777) != 0700 && chmod(path, 0700) < 0)
        return -errno;
    return 0;
}

/* The direct path's socket directory, or NULL (with a debug line saying why) for attach only. */
static char *direct_dir(struct docker_runtime *d, const struct obx_docker_config *cfg)
{
    if (!cfg->direct || !d->c.unix_path) {
        obx_debug("docker: %s; using the attach stream",
                  cfg->direct ? "the daemon is remote" : "ONLYBOXES_DOCKER_DIRECT=false");
        return NULL;
    }
    _cleanup_free_ char *base = NULL;
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (!obx_str_empty(cfg->state_dir))
        base = obx_xstrdup(cfg->state_dir);
    else if (xdg && xdg[0] == '/')
        base = obx_xasprintf("%s/onlyboxes", xdg);
    else
        base = obx_xasprintf("/tmp/onlyboxes-%u", (unsigned)geteuid());
    _cleanup_free_ char *dir = obx_xasprintf("%s/docker", base);
    int r = private_dir(base);
    if (r >= 0)
        r = private_dir(dir);
    /* "/obx-" + 16 hex + ".sock" must fit a socket address. */
    if (r >= 0 && strlen(dir) + 27 >= sizeof(((struct sockaddr_un *)0)->sun_path))
        r = -ENAMETOOLONG;
    if (r < 0) {
        obx_warn("docker: cannot use %s for the boxes' sockets (%s); using the attach stream", dir,
                 strerror(-r));
        return NULL;
    }
    return TAKE_PTR(dir);
}

static void docker_describe(struct obx_runtime *rt, char *buf, size_t size)
{
    struct docker_runtime *d = to_docker(rt);
    char mem[32] = "none", cpu[32] = "none";
    if (d->cfg.memory_bytes)
        snprintf(mem, sizeof(mem), "%llu MiB", (unsigned long long)(d->cfg.memory_bytes >> 20));
    if (d->cfg.cpu_millis)
        snprintf(cpu, sizeof(cpu), "%u.%03u", d->cfg.cpu_millis / 1000, d->cfg.cpu_millis % 1000);
    char user[32] = "(image's)";
    if (!obx_str_empty(d->user))
        snprintf(user, sizeof(user), "%u:%u", d->cfg.uid, d->cfg.gid);
    snprintf(buf, size,
             "docker %s (API %s) at %s; images %s (python), %s (terminal); data path %s; user "
             "%s, network %s, memory %s, cpus %s, pids %u%s%s%s",
             d->c.server_version, d->c.api_version, d->c.endpoint, d->python_image,
             d->terminal_image, d->sock_dir ? "direct socket" : "attach stream", user, d->network,
             mem, cpu, d->cfg.pids, d->cfg.read_only_root ? "" : "; root WRITABLE",
             d->cfg.drop_caps ? "" : "; capabilities KEPT",
             d->cfg.no_new_privs ? "" : "; new privileges ALLOWED");
}

static void docker_free(struct obx_runtime *rt)
{
    struct docker_runtime *d = to_docker(rt);
    if (!d)
        return;
    obx_docker_client_done(&d->c);
    free(d->python_image);
    free(d->terminal_image);
    free(d->user);
    free(d->network);
    free(d->sock_dir);
    pthread_mutex_destroy(&d->pull_lock);
    pthread_mutex_destroy(&d->log_lock);
    free(d);
}

struct obx_runtime *obx_docker_runtime_new(const struct obx_docker_config *cfg,
                                           struct obx_error *err)
{
    struct obx_docker_config defaults;
    if (!cfg) {
        if (obx_docker_config_from_env(&defaults, err) < 0)
            return NULL;
        cfg = &defaults;
    }
    struct docker_runtime *d = obx_xcalloc(1, sizeof(*d));
    d->rt.name = "docker";
    d->rt.start = docker_start;
    d->rt.stop = docker_stop;
    d->rt.cleanup_stale = obx_docker_cleanup_stale;
    d->rt.describe = docker_describe;
    d->rt.status = docker_status;
    d->rt.default_image = docker_default_image;
    d->rt.remove_own = obx_docker_remove_own;
    d->rt.free = docker_free;
    pthread_mutex_init(&d->pull_lock, NULL);
    pthread_mutex_init(&d->log_lock, NULL);
    d->cfg = *cfg;
    d->python_image = obx_xstrdup(cfg->python_image ? cfg->python_image : OBX_DOCKER_DEFAULT_IMAGE);
    d->terminal_image =
        obx_xstrdup(cfg->terminal_image ? cfg->terminal_image : OBX_DOCKER_DEFAULT_IMAGE);
    d->user = obx_xstrdup(cfg->user ? cfg->user : "");
    d->network =
        obx_xstrdup(obx_str_empty(cfg->network) ? OBX_DOCKER_DEFAULT_NETWORK : cfg->network);
    d->cfg.python_image = d->python_image;
    d->cfg.terminal_image = d->terminal_image;
    d->cfg.user = d->user;
    d->cfg.network = d->network;
    d->cfg.host = NULL;
    d->cfg.state_dir = NULL;
    if (d->cfg.tmp_bytes == 0)
        d->cfg.tmp_bytes = OBX_DOCKER_DEFAULT_TMP_BYTES;
    if (d->cfg.workspace_bytes == 0)
        d->cfg.workspace_bytes = OBX_DOCKER_DEFAULT_WORKSPACE_BYTES;

    if (gethostname(d->host, sizeof(d->host) - 1) < 0)
        snprintf(d->host, sizeof(d->host), "unknown");
    read_line_file("/proc/sys/kernel/random/boot_id", d->boot_id, sizeof(d->boot_id));
    unsigned long long start = 0;
    (void)obx_docker_proc_start_time(getpid(), &start);
    snprintf(d->self_pid, sizeof(d->self_pid), "%d", (int)getpid());
    snprintf(d->self_start, sizeof(d->self_start), "%llu", start);

    int r = obx_docker_client_init_timeout(&d->c, cfg->host, cfg->probe_timeout_ms, err);
    if (r >= 0)
        snprintf(d->status, sizeof(d->status), "daemon %s answers at %s", d->c.server_version,
                 d->c.endpoint);
    if (r >= 0 && cfg->check_images) {
        r = obx_docker_check_image(d, d->python_image, err);
        if (r >= 0 && !obx_streq(d->python_image, d->terminal_image))
            r = obx_docker_check_image(d, d->terminal_image, err);
    }
    if (r < 0) {
        docker_free(&d->rt);
        return NULL;
    }
    d->sock_dir = direct_dir(d, cfg);
    /* As for the direct path: a tcp:// daemon's boxes run elsewhere, and DIRECT=false is for
     * daemons in a VM that cannot pass a unix socket through a bind mount. */
    d->rt.host_sockets = cfg->direct && d->c.unix_path != NULL;
    obx_debug("docker: %s (API %s) at %s", d->c.server_version, d->c.api_version, d->c.endpoint);
    return &d->rt;
}
