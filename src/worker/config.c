/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker configuration: one table row per option (environment variable, default, bounds, what it
 * does). Names are the original Onlyboxes' where it had the option (WORKER_*), ours otherwise
 * (ONLYBOXES_*). A malformed or out-of-range value is an error naming the variable, not a silent
 * fallback.
 */
#include "worker-internal.h"

#include <stddef.h>

#include "egress.h"
#include <strings.h>

enum opt_target {
    OPT_LEASE_MIN,
    OPT_LEASE_MAX,
    OPT_LEASE_DEFAULT,
    OPT_OUTPUT_LIMIT,
    OPT_READ_LIMIT,
    OPT_MEMORY_MB,
    OPT_PIDS,
    OPT_WORKSPACE_MB,
    OPT_MAX_SESSIONS,
    OPT_WARM_POOL,
    OPT_MAX_INFLIGHT,
    OPT_EGRESS_CONNS,
    OPT_EGRESS_MB,
    OPT_EGRESS_TIMEOUT,
};

static const struct option_row {
    const char *env;
    enum opt_target target;
    int64_t def, min, max;
    const char *help;
} options[] = {
    {"WORKER_TERMINAL_LEASE_MIN_SEC", OPT_LEASE_MIN, 60, 1, 86400,
     "shortest lease a terminalExec call may ask for"},
    {"WORKER_TERMINAL_LEASE_MAX_SEC", OPT_LEASE_MAX, 1800, 1, 86400,
     "longest lease a terminalExec call may ask for"},
    {"WORKER_TERMINAL_LEASE_DEFAULT_SEC", OPT_LEASE_DEFAULT, 60, 1, 86400,
     "lease when a call names none"},
    {"WORKER_TERMINAL_OUTPUT_LIMIT_BYTES", OPT_OUTPUT_LIMIT, 1 << 20, 1024, 16 << 20,
     "stdout and stderr kept per call, each"},
    {"WORKER_READ_IMAGE_LIMIT_BYTES", OPT_READ_LIMIT, 5 << 20, 1024, 16 << 20,
     "largest file readImage returns"},
    {"ONLYBOXES_BOX_MEMORY_MB", OPT_MEMORY_MB, 512, 16, 65536,
     "address-space limit per process in a box, MiB"},
    {"ONLYBOXES_BOX_PIDS", OPT_PIDS, 128, 8, 65536, "processes per box"},
    /* 0: the runtime's own default (bubblewrap 512 MiB; docker ONLYBOXES_DOCKER_WORKSPACE_MB). */
    {"ONLYBOXES_BOX_WORKSPACE_MB", OPT_WORKSPACE_MB, 0, 16, 65536,
     "size of a box's /workspace, MiB"},
    {"ONLYBOXES_MAX_SESSIONS", OPT_MAX_SESSIONS, 64, 1, 4096, "terminal sessions per worker"},
    {"ONLYBOXES_WARM_POOL", OPT_WARM_POOL, 2, 0, 32,
     "started boxes kept ready per image, for pythonExec and new terminal sessions"},
    {"WORKER_MAX_INFLIGHT", OPT_MAX_INFLIGHT, 16, 1, 256,
     "calls of one capability this worker runs at once; more get no_capacity"},
    {"ONLYBOXES_EGRESS_MAX_CONNECTIONS", OPT_EGRESS_CONNS, 32, 1, 1024,
     "connections through the egress proxy at once, per box"},
    {"ONLYBOXES_EGRESS_MAX_MB", OPT_EGRESS_MB, 1024, 1, 1048576,
     "MiB through the egress proxy per box, both directions"},
    {"ONLYBOXES_EGRESS_CONNECT_TIMEOUT_SEC", OPT_EGRESS_TIMEOUT, 10, 1, 120,
     "how long the egress proxy waits for a destination to accept a connection"},
};

static void set_option(struct obx_worker_config *cfg, enum opt_target t, int64_t v)
{
    switch (t) {
    case OPT_LEASE_MIN:
        cfg->lease_min_sec = (int)v;
        break;
    case OPT_LEASE_MAX:
        cfg->lease_max_sec = (int)v;
        break;
    case OPT_LEASE_DEFAULT:
        cfg->lease_default_sec = (int)v;
        break;
    case OPT_OUTPUT_LIMIT:
        cfg->output_limit = (size_t)v;
        break;
    case OPT_READ_LIMIT:
        cfg->read_limit = (size_t)v;
        break;
    case OPT_MEMORY_MB:
        cfg->memory_bytes = (uint64_t)v << 20;
        break;
    case OPT_PIDS:
        cfg->pids = (uint32_t)v;
        break;
    case OPT_WORKSPACE_MB:
        cfg->workspace_bytes = (uint64_t)v << 20;
        break;
    case OPT_MAX_SESSIONS:
        cfg->max_sessions = (unsigned)v;
        break;
    case OPT_WARM_POOL:
        cfg->warm_pool = (unsigned)v;
        break;
    case OPT_MAX_INFLIGHT:
        cfg->max_inflight = (unsigned)v;
        break;
    case OPT_EGRESS_CONNS:
        cfg->egress_max_conns = (unsigned)v;
        break;
    case OPT_EGRESS_MB:
        cfg->egress_max_bytes = (uint64_t)v << 20;
        break;
    case OPT_EGRESS_TIMEOUT:
        cfg->egress_connect_timeout_ms = (unsigned)v * 1000;
        break;
    }
}

int obx_runtime_choice_parse(const char *s, enum obx_runtime_choice *ret)
{
    if (!s || strcasecmp(s, "auto") == 0)
        *ret = OBX_RUNTIME_AUTO;
    else if (strcasecmp(s, "bubblewrap") == 0 || strcasecmp(s, "bwrap") == 0)
        *ret = OBX_RUNTIME_BUBBLEWRAP;
    else if (strcasecmp(s, "docker") == 0)
        *ret = OBX_RUNTIME_DOCKER;
    else
        return -EINVAL;
    return 0;
}

/* The allow-list: WORKER_EGRESS_ALLOW (the worker's name, as for its other settings) or
 * ONLYBOXES_EGRESS_ALLOW; checked here so that a bad entry stops the program at start-up. */
static int egress_from_env(struct obx_worker_config *cfg, struct obx_error *err)
{
    const char *w = getenv("WORKER_EGRESS_ALLOW"), *o = getenv("ONLYBOXES_EGRESS_ALLOW");
    if (!obx_str_blank(w) && !obx_str_blank(o) && !obx_streq(w, o))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "WORKER_EGRESS_ALLOW and ONLYBOXES_EGRESS_ALLOW are both set, to "
                             "different lists; set one of them");
    cfg->egress_allow_var = !obx_str_blank(w) ? "WORKER_EGRESS_ALLOW" : "ONLYBOXES_EGRESS_ALLOW";
    cfg->egress_allow = !obx_str_blank(w) ? w : !obx_str_blank(o) ? o : NULL;
    const char *pins = getenv("ONLYBOXES_EGRESS_TEST_RESOLVE");
    cfg->egress_test_resolve = obx_str_blank(pins) ? NULL : pins;
    if (!cfg->egress_allow) {
        if (cfg->egress_test_resolve)
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "ONLYBOXES_EGRESS_TEST_RESOLVE is set without an allow-list "
                                 "(ONLYBOXES_EGRESS_ALLOW)");
        return 0;
    }
    struct obx_egress_config ec = {.allow = cfg->egress_allow,
                                   .allow_var = cfg->egress_allow_var,
                                   .test_resolve = cfg->egress_test_resolve};
    return obx_egress_config_check(&ec, err);
}

int obx_worker_config_from_env(struct obx_worker_config *cfg, struct obx_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < OBX_ARRAY_SIZE(options); i++) {
        const struct option_row *o = &options[i];
        int64_t v = o->def;
        const char *s = getenv(o->env);
        if (s && *s) {
            int r = obx_parse_int64(s, o->min, o->max, &v);
            if (r < 0)
                return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                     "%s=%s is invalid: expected a whole number from %lld to %lld "
                                     "(%s)",
                                     o->env, s, (long long)o->min, (long long)o->max, o->help);
        }
        set_option(cfg, o->target, v);
    }
    /* As the original: a max below the min is raised to it, the default clamped into range. */
    if (cfg->lease_max_sec < cfg->lease_min_sec)
        cfg->lease_max_sec = cfg->lease_min_sec;
    cfg->lease_default_sec =
        (int)OBX_MIN(OBX_MAX(cfg->lease_default_sec, cfg->lease_min_sec), cfg->lease_max_sec);

    const char *rt = getenv("ONLYBOXES_RUNTIME");
    if (rt && *rt && obx_runtime_choice_parse(rt, &cfg->runtime) < 0)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "ONLYBOXES_RUNTIME=%s is invalid: expected auto, bubblewrap or docker",
                             rt);
    const char *net = getenv("ONLYBOXES_ALLOW_NETWORK");
    if (net && *net && obx_parse_bool(net, &cfg->allow_network) < 0)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "ONLYBOXES_ALLOW_NETWORK=%s is invalid: expected true or false", net);
    int r = egress_from_env(cfg, err);
    if (r < 0)
        return r;
    const char *agent = getenv("ONLYBOXES_AGENT");
    if (agent && *agent)
        cfg->agent_path = agent;
    return 0;
}
