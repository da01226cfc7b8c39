/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker object: runtime selection, agent discovery, box starts with the configured limits,
 * the warm pools (one per image) and the executor entry point that dispatches a capability to its
 * handler. Thread-safe: exec() runs on many caller threads; the session table, pools and boxes do
 * their own locking.
 *
 * auto: docker when its daemon answers and the images are there (or can be pulled now, when
 * pulling is allowed), else bubblewrap. The docker probe is bounded (AUTO_PROBE_TIMEOUT_MS) so a
 * hung daemon cannot hold up `mcp --stdio`'s start; without a daemon socket it costs one failed
 * connect().
 */
#include "worker-internal.h"

#include <libgen.h>
#include <limits.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"
#include "docker/docker.h"
#include "sandbox/sandbox.h"

#define BOX_START_TIMEOUT_MS 10000
#define AUTO_PROBE_TIMEOUT_MS 1500

static const struct capability {
    const char *name;
    int (*fn)(struct obx_worker *w, json_t *payload, struct obx_call *call, json_t **ret,
              struct obx_error *err);
} capabilities[] = {
    {"echo", obx_cap_echo},
    {"pythonexec", obx_cap_python},
    {"terminalexec", obx_cap_terminal},
    {"terminalresource", obx_cap_terminal_resource},
    {"terminalfiles", obx_cap_terminal_files},
    {"terminalsession", obx_cap_terminal_session},
    {"terminalpty", obx_cap_terminal_pty},
};

static int worker_exec(struct obx_executor *self, const char *capability, json_t *payload,
                       struct obx_call *call, json_t **ret, struct obx_error *err)
{
    struct obx_worker *w = (struct obx_worker *)self;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(capabilities); i++)
        if (strcasecmp(capability, capabilities[i].name) == 0)
            return capabilities[i].fn(w, payload, call, ret, err);
    return obx_error_set(err, ENOTSUP, OBX_ERR_UNSUPPORTED,
                         "this worker does not provide capability %s", capability);
}

char *obx_worker_find_agent(const char *configured, struct obx_error *err)
{
    if (configured) {
        if (access(configured, X_OK) == 0)
            return obx_xstrdup(configured);
        obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                      "ONLYBOXES_AGENT=%s is not an executable file", configured);
        return NULL;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0) {
        obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot find the running binary: %s",
                      strerror(errno));
        return NULL;
    }
    exe[n] = '\0';
    const char *dir = dirname(exe);
    const char *candidates[] = {"onlyboxes-agent", "../lib/onlyboxes/onlyboxes-agent"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(candidates); i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, candidates[i]);
        if (access(path, X_OK) == 0) {
            char real[PATH_MAX];
            return obx_xstrdup(realpath(path, real) ? real : path);
        }
    }
    obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                  "cannot find onlyboxes-agent next to %s (install it beside onlyboxes, or set "
                  "ONLYBOXES_AGENT to its path)",
                  dir);
    return NULL;
}

struct obx_runtime *obx_worker_docker_probe(bool for_auto, const char *agent_path,
                                            struct obx_error *err)
{
    /* A daemon that answers is no use with an agent its boxes cannot run (a sanitizer build's):
     * "auto" then takes bubblewrap. */
    if (agent_path && obx_docker_agent_check(agent_path, err) < 0)
        return NULL;
    struct obx_docker_config dcfg;
    if (obx_docker_config_from_env(&dcfg, err) < 0)
        return NULL;
    if (for_auto) {
        dcfg.probe_timeout_ms = AUTO_PROBE_TIMEOUT_MS;
        dcfg.verify_pullable = true;
    }
    return obx_docker_runtime_new(&dcfg, err);
}

int obx_worker_pick_runtime(const struct obx_worker_config *cfg, const char *agent_path,
                            struct obx_runtime **ret, char *why, size_t why_size,
                            struct obx_error *err)
{
    enum obx_runtime_choice choice = cfg->runtime;
    struct obx_error derr = OBX_ERROR_INIT;
    if (choice != OBX_RUNTIME_BUBBLEWRAP) {
        /* The runtime's errors say how to start the daemon or get the image. */
        struct obx_runtime *rt =
            obx_worker_docker_probe(choice == OBX_RUNTIME_AUTO, agent_path, &derr);
        if (rt) {
            if (choice == OBX_RUNTIME_AUTO)
                snprintf(why, why_size, "auto: docker (%s)", rt->status(rt));
            else
                snprintf(why, why_size, "docker, as asked (%s)", rt->status(rt));
            *ret = rt;
            return 0;
        }
        if (choice == OBX_RUNTIME_DOCKER) {
            *err = derr;
            return -derr.errnum;
        }
    }
    struct obx_sandbox_config scfg = {
        .agent_path = agent_path,
        .host_uids = cfg->bwrap_host_uids,
    };
    struct obx_error berr = OBX_ERROR_INIT;
    struct obx_runtime *rt = obx_sandbox_runtime_new(&scfg, &berr);
    if (!rt) {
        if (choice == OBX_RUNTIME_AUTO)
            return obx_error_set(err, berr.errnum, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "no sandbox runtime works on this host: docker: %s; bubblewrap: "
                                 "%s",
                                 derr.message, berr.message);
        *err = berr;
        return -berr.errnum;
    }
    if (choice == OBX_RUNTIME_AUTO)
        snprintf(why, why_size, "auto: bubblewrap (docker: %s)", derr.message);
    else
        snprintf(why, why_size, "bubblewrap, as asked");
    *ret = rt;
    return 0;
}

static int pool_box_start(void *userdata, struct obx_call *call, struct obx_box **ret,
                          struct obx_error *err)
{
    struct obx_worker_image_pool *wp = userdata;
    return obx_worker_start_box(wp->w, wp->image, OBX_NET_NONE, NULL, call, ret, err);
}

static void pool_box_prepare(void *userdata, struct obx_box *b)
{
    struct obx_worker_image_pool *wp = userdata;
    if (wp->python)
        obx_worker_python_prepare(wp->w, b);
}

static const struct obx_worker_pool_ops pool_ops = {pool_box_start, pool_box_prepare};

/* A new session takes a started box from its image's pool. The box carries no session label (it
 * was started before the session existed); the owner labels are what cleanup relies on. */
static int session_box_start(void *userdata, const char *session_id, enum obx_net net,
                             struct obx_call *call, struct obx_box **ret, struct obx_error *err)
{
    struct obx_worker *w = userdata;
    if (net != OBX_NET_NONE) { /* pool boxes have no network: this one is started for it */
        _cleanup_free_ char *label = obx_xasprintf("session %s", session_id);
        return obx_worker_start_box(w, w->terminal_pool->image, net, label, call, ret, err);
    }
    return obx_worker_pool_take(w->terminal_pool->pool, call, ret, err);
}

static void egress_box_close(void *userdata)
{
    obx_egress_box_close(userdata);
}

int obx_worker_start_box(struct obx_worker *w, const char *image, enum obx_net net,
                         const char *label, struct obx_call *call, struct obx_box **ret,
                         struct obx_error *err)
{
    struct obx_box_spec spec = {
        .agent_path = w->agent_path,
        .worker_id = w->worker_id,
        .image = image,
        .network = net == OBX_NET_FULL,
        .memory_bytes = w->cfg.memory_bytes,
        .pids = w->cfg.pids,
        .workspace_bytes = w->cfg.workspace_bytes,
        .on_log = call ? call->on_log : NULL,
        .log_userdata = call ? call->log_userdata : NULL,
        .mounts = w->cfg.mounts,
        .n_mounts = w->cfg.n_mounts,
    };
    struct obx_egress_box *eb = NULL;
    if (net == OBX_NET_ALLOWLIST) {
        int r = obx_egress_box_open(w->egress, label, &eb, err);
        if (r < 0)
            return r;
        spec.egress_socket = obx_egress_box_path(eb);
    }
    int r = obx_box_start(w->rt, &spec, BOX_START_TIMEOUT_MS, ret, err);
    if (eb) {
        /* The box has its own mount of the socket now: no other process may find it by name. */
        obx_egress_box_unlink(eb);
        if (r < 0)
            obx_egress_box_close(eb);
        else
            obx_box_on_free(*ret, egress_box_close, eb);
    }
    return r;
}

/* The pool for image, created on first use; both kinds share it when their image is the same.
 * python: pythonExec's pool, whose boxes get their interpreter ahead of the call. */
static struct obx_worker_image_pool *worker_pool(struct obx_worker *w, const char *image,
                                                 bool python)
{
    for (unsigned i = 0; i < w->n_pools; i++)
        if ((!image && !w->pools[i].image) ||
            (image && w->pools[i].image && obx_streq(image, w->pools[i].image)))
            return &w->pools[i];
    struct obx_worker_image_pool *wp = &w->pools[w->n_pools++];
    wp->w = w;
    wp->image = image ? obx_xstrdup(image) : NULL;
    wp->python = python;
    wp->pool = obx_worker_pool_new(w->cfg.warm_pool, w->cfg.warm_pool_max, &pool_ops, wp);
    return wp;
}

/* ONLYBOXES_PYTHON_PRELOAD as the PREPARE frame's list (checked when the configuration was
 * read). */
static json_t *preload_list(const char *text)
{
    json_t *list = json_array();
    if (!text || obx_streq(text, "none"))
        return list;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0)
            json_array_append_new(list, json_stringn(p, len));
        p += len + (end ? 1 : 0);
    }
    return list;
}

static void *cleanup_main(void *arg)
{
    struct obx_worker *w = arg;
    struct obx_error cerr = OBX_ERROR_INIT;
    int n = w->rt->cleanup_stale(w->rt, &cerr);
    if (n > 0)
        obx_info("removed %d box(es) left behind by a previous run", n);
    else if (n < 0)
        obx_warn("could not clean up old boxes: %s", cerr.message);
    return NULL;
}

struct obx_worker *obx_worker_new(const struct obx_worker_config *cfg, struct obx_error *err)
{
    struct obx_worker *w = obx_xcalloc(1, sizeof(*w));
    w->executor.exec = worker_exec;
    w->cfg = *cfg;
    if (cfg->worker_id)
        snprintf(w->worker_id, sizeof(w->worker_id), "%s", cfg->worker_id);
    else {
        char hex[17];
        obx_random_hex(hex, 8);
        snprintf(w->worker_id, sizeof(w->worker_id), "local-%s", hex);
    }
    w->agent_path = obx_worker_find_agent(cfg->agent_path, err);
    char why[1200];
    if (!w->agent_path ||
        obx_worker_pick_runtime(cfg, w->agent_path, &w->rt, why, sizeof(why), err) < 0) {
        free(w->agent_path);
        free(w);
        return NULL;
    }
    obx_debug("worker %s: runtime %s (%s), agent %s", w->worker_id, w->rt->name, why,
              w->agent_path);
    if (cfg->n_mounts && !w->rt->host_sockets) {
        obx_error_set(err, ENOTSUP, OBX_ERR_RUNTIME_UNAVAILABLE,
                      "--mount needs a runtime on this host that sees its files: the docker "
                      "daemon here is another host's (or ONLYBOXES_DOCKER_DIRECT=false); use "
                      "--runtime bubblewrap or a local daemon");
        w->rt->free(w->rt);
        free(w->agent_path);
        free(w);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_mounts; i++)
        obx_info("boxes see %s at %s (%s)", cfg->mounts[i].host, cfg->mounts[i].box,
                 cfg->mounts[i].rw ? "read-write" : "read-only");
    /* Removing a crashed life's boxes takes a daemon round trip per box: not on start-up's path. */
    w->cleanup_started = pthread_create(&w->cleanup_thr, NULL, cleanup_main, w) == 0;
    if (!w->cleanup_started)
        (void)cleanup_main(w);
    if (cfg->egress_allow) {
        struct obx_egress_config ec = {
            .allow = cfg->egress_allow,
            .allow_var = cfg->egress_allow_var,
            .test_resolve = cfg->egress_test_resolve,
            .deny_host = cfg->console_host,
            .max_conns = cfg->egress_max_conns,
            .max_bytes = cfg->egress_max_bytes,
            .connect_timeout_ms = cfg->egress_connect_timeout_ms,
        };
        if (obx_egress_new(&ec, &w->egress, err) < 0) {
            obx_error_wrap(err, "network \"allowlist\"");
            if (w->cleanup_started)
                pthread_join(w->cleanup_thr, NULL);
            w->rt->free(w->rt);
            free(w->agent_path);
            free(w);
            return NULL;
        }
    }
    w->preload = preload_list(cfg->python_preload);
    pthread_mutex_init(&w->preload_lock, NULL);
    struct obx_worker_session_factory f = {session_box_start, w};
    w->sessions = obx_worker_sessions_new(cfg->max_sessions, &f);
    const char *py = w->rt->default_image ? w->rt->default_image(w->rt, false) : NULL;
    const char *term = w->rt->default_image ? w->rt->default_image(w->rt, true) : NULL;
    w->python_pool = worker_pool(w, py, true);
    w->terminal_pool = worker_pool(w, term, false);
    return w;
}

void obx_worker_kill_all_boxes(void)
{
    obx_box_kill_all();
}

struct obx_executor *obx_worker_executor(struct obx_worker *w)
{
    return &w->executor;
}

struct obx_runtime *obx_worker_runtime(struct obx_worker *w)
{
    return w->rt;
}

void obx_worker_free(struct obx_worker *w)
{
    if (!w)
        return;
    if (w->cleanup_started)
        pthread_join(w->cleanup_thr, NULL);
    uint64_t t0 = obx_now_ms();
    obx_worker_sessions_free(w->sessions);
    obx_debug("worker: its sessions stopped in %llu ms", (unsigned long long)(obx_now_ms() - t0));
    for (unsigned i = 0; i < w->n_pools; i++) {
        obx_worker_pool_free(w->pools[i].pool);
        free(w->pools[i].image);
    }
    /* Boxes still held by calls close their sockets later; the proxy's state outlives it. */
    obx_egress_free(w->egress);
    json_decref(w->preload);
    pthread_mutex_destroy(&w->preload_lock);
    obx_box_forget_runtime(w->rt);
    w->rt->free(w->rt);
    free(w->agent_path);
    free(w);
}
