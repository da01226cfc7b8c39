/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker configuration: one row per option in the shared configuration table (common/config.h):
 * environment variable, default, bounds, what it does. Names are the original Onlyboxes' where it
 * had the option (WORKER_*), ours otherwise (ONLYBOXES_*). A malformed or out-of-range value is an
 * error naming the variable, not a silent fallback.
 */
#include "worker-internal.h"

#include <strings.h>

#include "common/config.h"
#include "docker/docker.h"
#include "egress.h"
#include "sandbox/sandbox.h"

#define F(m) OBX_CONFIG_FIELD(struct obx_worker_config, m)
#define MIB (1 << 20)

static const char *const runtimes[] = {"auto", "bubblewrap", "docker", "bwrap", NULL};

static const struct obx_config_var vars[] = {
    {"ONLYBOXES_RUNTIME", NULL, OBX_CONFIG_CHOICE, F(runtime), "auto", 0, 0, 0, runtimes, 0,
     "sandbox runtime: auto picks docker when its daemon answers, else bubblewrap"},
    {"ONLYBOXES_AGENT", NULL, OBX_CONFIG_STR, F(agent_path), NULL, 0, 0, 0, NULL, 0,
     "path of onlyboxes-agent (default: next to onlyboxes, or ../lib/onlyboxes/)"},
    {"WORKER_TERMINAL_LEASE_MIN_SEC", NULL, OBX_CONFIG_INT, F(lease_min_sec), "60", 1, 86400, 0,
     NULL, 0, "shortest lease a terminalExec call may ask for, seconds"},
    {"WORKER_TERMINAL_LEASE_MAX_SEC", NULL, OBX_CONFIG_INT, F(lease_max_sec), "1800", 1, 86400, 0,
     NULL, 0, "longest lease a terminalExec call may ask for, seconds"},
    {"WORKER_TERMINAL_LEASE_DEFAULT_SEC", NULL, OBX_CONFIG_INT, F(lease_default_sec), "60", 1,
     86400, 0, NULL, 0, "lease when a call names none, seconds"},
    {"WORKER_TERMINAL_OUTPUT_LIMIT_BYTES", NULL, OBX_CONFIG_INT, F(output_limit), "1048576", 1024,
     16 << 20, 0, NULL, 0, "stdout and stderr kept per call, each, bytes"},
    {"WORKER_READ_IMAGE_LIMIT_BYTES", NULL, OBX_CONFIG_INT, F(read_limit), "5242880", 1024,
     16 << 20, 0, NULL, 0, "largest file readImage returns, bytes"},
    {"ONLYBOXES_BOX_MEMORY_MB", NULL, OBX_CONFIG_INT, F(memory_bytes), "512", 16, 65536, MIB, NULL,
     0, "address-space limit per process in a box, MiB"},
    {"ONLYBOXES_BOX_PIDS", NULL, OBX_CONFIG_INT, F(pids), "128", 8, 65536, 0, NULL, 0,
     "processes per box"},
    /* No default here: unset, the sandbox takes its own range (and says so in its messages). */
    {"ONLYBOXES_BWRAP_HOST_UIDS", NULL, OBX_CONFIG_STR, F(bwrap_host_uids), NULL, 0, 0, 0, NULL, 0,
     "bubblewrap under a root worker: the host uids boxes run as, one per box, FIRST-LAST "
     "(default " OBX_SANDBOX_HOST_UIDS_DEFAULT ")"},
    /* No default: the runtime's own (bubblewrap 512 MiB; docker ONLYBOXES_DOCKER_WORKSPACE_MB). */
    {"ONLYBOXES_BOX_WORKSPACE_MB", NULL, OBX_CONFIG_INT, F(workspace_bytes), NULL, 16, 65536, MIB,
     NULL, 0, "size of a box's /workspace, MiB (default: the runtime's, 512)"},
    {"ONLYBOXES_MAX_SESSIONS", NULL, OBX_CONFIG_INT, F(max_sessions), "64", 1, 4096, 0, NULL, 0,
     "terminal sessions at once"},
    {"ONLYBOXES_WARM_POOL", NULL, OBX_CONFIG_INT, F(warm_pool), "2", 0, 32, 0, NULL, 0,
     "started boxes kept ready per image, for pythonExec and new terminal sessions (0: none)"},
    {"ONLYBOXES_WARM_POOL_MAX", NULL, OBX_CONFIG_INT, F(warm_pool_max), "8", 0, 64, 0, NULL, 0,
     "how many boxes a pool grows to while calls come faster than it refills (at least "
     "ONLYBOXES_WARM_POOL); it shrinks back after a minute without such a burst"},
    {"ONLYBOXES_PYTHON_PRELOAD", NULL, OBX_CONFIG_STR, F(python_preload),
     "numpy,pandas,matplotlib.pyplot", 0, 0, 0, NULL, 0,
     "modules a pooled box's Python imports before its pythonExec call, comma-separated (one "
     "that is not installed is skipped); none: start the interpreter without imports"},
    {"WORKER_MAX_INFLIGHT", NULL, OBX_CONFIG_INT, F(max_inflight), "16", 1, 256, 0, NULL, 0,
     "calls of one capability this worker runs at once; more get no_capacity"},
    {"ONLYBOXES_TERMINAL_IDLE_SEC", NULL, OBX_CONFIG_INT, F(pty_idle_sec), "900", 60, 86400, 0,
     NULL, 0, "a live terminal (the dashboard's) without input this long closes, seconds"},
    {"ONLYBOXES_ALLOW_NETWORK", NULL, OBX_CONFIG_BOOL, F(allow_network), "false", 0, 0, 0, NULL, 0,
     "calls may ask for a box with network access (\"network\": true)"},
    {"ONLYBOXES_EGRESS_ALLOW", "WORKER_EGRESS_ALLOW", OBX_CONFIG_STR, F(egress_allow), NULL, 0, 0,
     0, NULL, 0,
     "hosts a box with \"network\": \"allowlist\" reaches, comma-separated (pypi.org,*.example.com,"
     "api.example.com:8443); unset: \"allowlist\" is refused"},
    {"ONLYBOXES_EGRESS_MAX_CONNECTIONS", NULL, OBX_CONFIG_INT, F(egress_max_conns), "32", 1, 1024,
     0, NULL, 0, "connections through the egress proxy at once, per box"},
    {"ONLYBOXES_EGRESS_MAX_MB", NULL, OBX_CONFIG_INT, F(egress_max_bytes), "1024", 1, 1048576, MIB,
     NULL, 0, "MiB through the egress proxy per box, both directions"},
    {"ONLYBOXES_EGRESS_CONNECT_TIMEOUT_SEC", NULL, OBX_CONFIG_INT, F(egress_connect_timeout_ms),
     "10", 1, 120, 1000, NULL, 0,
     "how long the egress proxy waits for a destination to accept a connection, seconds"},
    {"ONLYBOXES_EGRESS_TEST_RESOLVE", NULL, OBX_CONFIG_STR, F(egress_test_resolve), NULL, 0, 0, 0,
     NULL, OBX_CONFIG_HIDDEN, "tests only: name=address[:port],... pins names under .test"},
};

int obx_worker_preload_check(const char *list, struct obx_error *err)
{
    if (!list || obx_streq(list, "none"))
        return 0;
    size_t n = 0;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        bool ok = len > 0 && len <= OBX_WORKER_PRELOAD_NAME_MAX && p[0] != '.' && p[len - 1] != '.';
        for (size_t i = 0; ok && i < len; i++)
            ok = p[i] == '_' || p[i] == '.' || (p[i] >= '0' && p[i] <= '9') ||
                 (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z');
        if (!ok)
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "ONLYBOXES_PYTHON_PRELOAD: \"%.*s\" is not a module name (a "
                                 "comma-separated list such as numpy,pandas; none for no imports)",
                                 (int)OBX_MIN(len, (size_t)200), p);
        if (++n > OBX_WORKER_PRELOAD_MAX)
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "ONLYBOXES_PYTHON_PRELOAD: more than %d modules",
                                 OBX_WORKER_PRELOAD_MAX);
        p += len + (end ? 1 : 0);
        if (end && !*p)
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "ONLYBOXES_PYTHON_PRELOAD: the list ends with a comma");
    }
    return 0;
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

/* The allow-list: ONLYBOXES_EGRESS_ALLOW or the worker's name for it, WORKER_EGRESS_ALLOW (both set
 * to different lists is an error); checked here so that a bad entry stops the program at
 * start-up. */
static int egress_check(struct obx_worker_config *cfg, struct obx_error *err)
{
    const char *w = getenv("WORKER_EGRESS_ALLOW"), *o = getenv("ONLYBOXES_EGRESS_ALLOW");
    if (!obx_str_blank(w) && !obx_str_blank(o) && !obx_streq(w, o))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "WORKER_EGRESS_ALLOW and ONLYBOXES_EGRESS_ALLOW are both set, to "
                             "different lists; set one of them");
    cfg->egress_allow_var =
        obx_str_blank(o) && !obx_str_blank(w) ? "WORKER_EGRESS_ALLOW" : "ONLYBOXES_EGRESS_ALLOW";
    cfg->egress_allow = !obx_str_blank(o) ? o : !obx_str_blank(w) ? w : NULL;
    if (obx_str_blank(cfg->egress_test_resolve))
        cfg->egress_test_resolve = NULL;
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

void obx_worker_config_help(FILE *f)
{
    size_t n;
    obx_config_help(f, vars, OBX_ARRAY_SIZE(vars));
    const struct obx_config_var *docker = obx_docker_config_vars(&n);
    obx_config_help(f, docker, n);
}

int obx_worker_config_print(FILE *f, const struct obx_worker_config *cfg, struct obx_error *err)
{
    obx_config_print(f, vars, OBX_ARRAY_SIZE(vars), cfg);
    struct obx_docker_config dcfg;
    int r = obx_docker_config_from_env(&dcfg, err);
    if (r < 0)
        return r;
    size_t n;
    const struct obx_config_var *docker = obx_docker_config_vars(&n);
    obx_config_print(f, docker, n, &dcfg);
    return 0;
}

int obx_worker_config_from_env(struct obx_worker_config *cfg, struct obx_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    int r = obx_config_read(vars, OBX_ARRAY_SIZE(vars), cfg, err);
    if (r < 0)
        return r;
    if ((int)cfg->runtime == 3) /* "bwrap" */
        cfg->runtime = OBX_RUNTIME_BUBBLEWRAP;
    /* As the original: a max below the min is raised to it, the default clamped into range. */
    if (cfg->lease_max_sec < cfg->lease_min_sec)
        cfg->lease_max_sec = cfg->lease_min_sec;
    cfg->lease_default_sec =
        (int)OBX_MIN(OBX_MAX(cfg->lease_default_sec, cfg->lease_min_sec), cfg->lease_max_sec);
    if (cfg->warm_pool_max < cfg->warm_pool)
        cfg->warm_pool_max = cfg->warm_pool;
    int r2 = obx_worker_preload_check(cfg->python_preload, err);
    if (r2 >= 0)
        r2 = obx_sandbox_host_uids_check(cfg->bwrap_host_uids, err);
    if (r2 < 0)
        return r2;
    /* The docker runtime's settings too, whichever runtime is chosen: "auto" would otherwise
     * fall back to bubblewrap without a word about the malformed one. */
    struct obx_docker_config dcfg;
    r2 = obx_docker_config_from_env(&dcfg, err);
    if (r2 < 0)
        return r2;
    return egress_check(cfg, err);
}
