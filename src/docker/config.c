/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The docker runtime's options: one table row per environment variable with its default, bounds
 * and meaning. The image variables are the original Onlyboxes' (WORKER_*_DOCKER_IMAGE); the rest
 * are ours (ONLYBOXES_DOCKER_*). Every hardening switch is on by default and can be turned off
 * here, never silently: a malformed value is an error naming the variable.
 */
#include "docker-internal.h"

#include <math.h>
#include <strings.h>

enum opt_kind {
    OPT_STR,
    OPT_MB,   /* whole MiB, stored as bytes */
    OPT_U32,  /* whole number */
    OPT_CPUS, /* decimal CPUs, stored as millis */
    OPT_BOOL,
};

static const struct option_row {
    const char *env;
    enum opt_kind kind;
    size_t offset;
    int64_t min, max; /* for numbers, in the unit the user writes */
    const char *help;
} options[] = {
    {"DOCKER_HOST", OPT_STR, offsetof(struct obx_docker_config, host), 0, 0,
     "the daemon: unix:///path or tcp://host:port (default " OBX_DOCKER_DEFAULT_HOST ")"},
    {"WORKER_PYTHON_EXEC_DOCKER_IMAGE", OPT_STR, offsetof(struct obx_docker_config, python_image),
     0, 0, "image for pythonExec boxes"},
    {"WORKER_TERMINAL_EXEC_DOCKER_IMAGE", OPT_STR,
     offsetof(struct obx_docker_config, terminal_image), 0, 0, "image for terminal sessions"},
    {"ONLYBOXES_DOCKER_USER", OPT_STR, offsetof(struct obx_docker_config, user), 0, 0,
     "UID:GID (or UID, then GID = UID) commands run as; empty: the image's user"},
    {"ONLYBOXES_DOCKER_NETWORK", OPT_STR, offsetof(struct obx_docker_config, network), 0, 0,
     "network mode of boxes without network access (none)"},
    {"ONLYBOXES_DOCKER_MEMORY_MB", OPT_MB, offsetof(struct obx_docker_config, memory_bytes), 0,
     1 << 20, "cgroup memory limit per box, MiB, tmpfs included; 0 = none"},
    {"ONLYBOXES_DOCKER_CPUS", OPT_CPUS, offsetof(struct obx_docker_config, cpu_millis), 0, 1024,
     "CPUs per box, decimal; 0 = none"},
    {"ONLYBOXES_DOCKER_PIDS", OPT_U32, offsetof(struct obx_docker_config, pids), 0, 1 << 22,
     "processes per box (the stricter of this and ONLYBOXES_BOX_PIDS); 0 = none"},
    {"ONLYBOXES_DOCKER_TMP_MB", OPT_MB, offsetof(struct obx_docker_config, tmp_bytes), 1, 1 << 20,
     "size of /tmp, MiB"},
    {"ONLYBOXES_DOCKER_WORKSPACE_MB", OPT_MB, offsetof(struct obx_docker_config, workspace_bytes),
     1, 1 << 20, "size of /workspace, MiB"},
    {"ONLYBOXES_DOCKER_READONLY_ROOT", OPT_BOOL, offsetof(struct obx_docker_config, read_only_root),
     0, 0, "read-only root file system"},
    {"ONLYBOXES_DOCKER_CAP_DROP", OPT_BOOL, offsetof(struct obx_docker_config, drop_caps), 0, 0,
     "drop all capabilities"},
    {"ONLYBOXES_DOCKER_NO_NEW_PRIVILEGES", OPT_BOOL,
     offsetof(struct obx_docker_config, no_new_privs), 0, 0, "no-new-privileges"},
    {"ONLYBOXES_DOCKER_PULL", OPT_BOOL, offsetof(struct obx_docker_config, pull), 0, 0,
     "pull a missing image"},
    {"ONLYBOXES_DOCKER_DIRECT", OPT_BOOL, offsetof(struct obx_docker_config, direct), 0, 0,
     "with a local daemon, reach the agent over a unix socket in a bind-mounted directory "
     "instead of the daemon's attach stream"},
    {"ONLYBOXES_DOCKER_STATE_DIR", OPT_STR, offsetof(struct obx_docker_config, state_dir), 0, 0,
     "host directory for the boxes' sockets (default $XDG_RUNTIME_DIR/onlyboxes or "
     "/tmp/onlyboxes-<uid>)"},
};

static int parse_cpus(const char *s, int64_t max, uint32_t *ret)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0 || v > (double)max)
        return -EINVAL;
    *ret = (uint32_t)llround(v * 1000);
    return 0;
}

/* "UID" or "UID:GID", numbers only: Docker would look a name up in the image, and the workspace
 * tmpfs needs the numbers. */
static int parse_user(const char *s, uint32_t *uid, uint32_t *gid)
{
    char a[16];
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    int64_t u, g;
    if (n == 0 || n >= sizeof(a))
        return -EINVAL;
    memcpy(a, s, n);
    a[n] = '\0';
    if (obx_parse_int64(a, 0, INT32_MAX, &u) < 0 ||
        (colon && obx_parse_int64(colon + 1, 0, INT32_MAX, &g) < 0))
        return -EINVAL;
    *uid = (uint32_t)u;
    *gid = colon ? (uint32_t)g : (uint32_t)u;
    return 0;
}

int obx_docker_config_from_env(struct obx_docker_config *cfg, struct obx_error *err)
{
    *cfg = (struct obx_docker_config){
        .host = NULL,
        .python_image = OBX_DOCKER_DEFAULT_IMAGE,
        .terminal_image = OBX_DOCKER_DEFAULT_IMAGE,
        .user = OBX_DOCKER_DEFAULT_USER,
        .uid = OBX_DOCKER_DEFAULT_UID,
        .gid = OBX_DOCKER_DEFAULT_UID,
        .network = OBX_DOCKER_DEFAULT_NETWORK,
        .memory_bytes = OBX_DOCKER_DEFAULT_MEMORY_BYTES,
        .cpu_millis = OBX_DOCKER_DEFAULT_CPU_MILLIS,
        .pids = OBX_DOCKER_DEFAULT_PIDS,
        .tmp_bytes = OBX_DOCKER_DEFAULT_TMP_BYTES,
        .workspace_bytes = OBX_DOCKER_DEFAULT_WORKSPACE_BYTES,
        .read_only_root = true,
        .drop_caps = true,
        .no_new_privs = true,
        .pull = true,
        .check_images = true,
        .direct = true,
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(options); i++) {
        const struct option_row *o = &options[i];
        const char *s = getenv(o->env);
        if (!s || (!*s && o->kind != OPT_STR))
            continue;
        void *field = (char *)cfg + o->offset;
        int r = 0;
        int64_t v = 0;
        switch (o->kind) {
        case OPT_STR:
            /* An empty user means the image's own; an empty image or network is a mistake. */
            if (!*s && o->offset != offsetof(struct obx_docker_config, user))
                continue;
            *(const char **)field = s;
            break;
        case OPT_MB:
            r = obx_parse_int64(s, o->min, o->max, &v);
            if (r >= 0)
                *(uint64_t *)field = (uint64_t)v << 20;
            break;
        case OPT_U32:
            r = obx_parse_int64(s, o->min, o->max, &v);
            if (r >= 0)
                *(uint32_t *)field = (uint32_t)v;
            break;
        case OPT_CPUS:
            r = parse_cpus(s, o->max, (uint32_t *)field);
            break;
        case OPT_BOOL:
            r = obx_parse_bool(s, (bool *)field);
            break;
        }
        if (r < 0) {
            if (o->kind == OPT_BOOL)
                return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                     "%s=%s is invalid: expected true or false (%s)", o->env, s,
                                     o->help);
            return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                                 "%s=%s is invalid: expected a number from %lld to %lld (%s)",
                                 o->env, s, (long long)o->min, (long long)o->max, o->help);
        }
    }
    if (!obx_str_empty(cfg->user) && parse_user(cfg->user, &cfg->uid, &cfg->gid) < 0)
        return obx_error_set(
            err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
            "ONLYBOXES_DOCKER_USER=%s is invalid: expected UID:GID or UID, numbers "
            "from 0 to %d (or empty for the image's user)",
            cfg->user, INT32_MAX);
    return 0;
}
