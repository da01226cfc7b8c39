/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The docker runtime's options: one row per environment variable in the shared configuration
 * table (common/config.h) with its default, bounds and meaning. The image variables are the
 * original Onlyboxes' (WORKER_*_DOCKER_IMAGE); the rest are ours (ONLYBOXES_DOCKER_*). Every
 * hardening switch is on by default and can be turned off here, never silently: a malformed value
 * is an error naming the variable.
 */
#include "docker-internal.h"

#include "common/config.h"

#define F(m) OBX_CONFIG_FIELD(struct obx_docker_config, m)
#define MIB (1 << 20)

static const struct obx_config_var vars[] = {
    {"DOCKER_HOST", NULL, OBX_CONFIG_STR, F(host), NULL, 0, 0, 0, NULL, 0,
     "the daemon: unix:///path or tcp://host:port (default " OBX_DOCKER_DEFAULT_HOST ")"},
    {"WORKER_PYTHON_EXEC_DOCKER_IMAGE", NULL, OBX_CONFIG_STR, F(python_image),
     OBX_DOCKER_DEFAULT_IMAGE, 0, 0, 0, NULL, 0, "image for pythonExec boxes"},
    {"WORKER_TERMINAL_EXEC_DOCKER_IMAGE", NULL, OBX_CONFIG_STR, F(terminal_image),
     OBX_DOCKER_DEFAULT_IMAGE, 0, 0, 0, NULL, 0, "image for terminal sessions"},
    {"ONLYBOXES_DOCKER_USER", NULL, OBX_CONFIG_STR, F(user), OBX_DOCKER_DEFAULT_USER, 0, 0, 0, NULL,
     OBX_CONFIG_EMPTY, "UID:GID (or UID, then GID = UID) commands run as; empty: the image's user"},
    {"ONLYBOXES_DOCKER_NETWORK", NULL, OBX_CONFIG_STR, F(network), OBX_DOCKER_DEFAULT_NETWORK, 0, 0,
     0, NULL, 0, "network mode of boxes without network access"},
    {"ONLYBOXES_DOCKER_MEMORY_MB", NULL, OBX_CONFIG_INT, F(memory_bytes), "256", 0, 1 << 20, MIB,
     NULL, 0, "cgroup memory limit per box, MiB, tmpfs included; 0 = none"},
    {"ONLYBOXES_DOCKER_CPUS", NULL, OBX_CONFIG_DECIMAL, F(cpu_millis), "1", 0, 1024, 1000, NULL, 0,
     "CPUs per box, decimal; 0 = none"},
    {"ONLYBOXES_DOCKER_PIDS", NULL, OBX_CONFIG_INT, F(pids), "128", 0, 1 << 22, 0, NULL, 0,
     "processes per box (the stricter of this and ONLYBOXES_BOX_PIDS); 0 = none"},
    {"ONLYBOXES_DOCKER_TMP_MB", NULL, OBX_CONFIG_INT, F(tmp_bytes), "256", 1, 1 << 20, MIB, NULL, 0,
     "size of /tmp, MiB"},
    {"ONLYBOXES_DOCKER_WORKSPACE_MB", NULL, OBX_CONFIG_INT, F(workspace_bytes), "512", 1, 1 << 20,
     MIB, NULL, 0, "size of /workspace, MiB"},
    {"ONLYBOXES_DOCKER_READONLY_ROOT", NULL, OBX_CONFIG_BOOL, F(read_only_root), "true", 0, 0, 0,
     NULL, 0, "read-only root file system"},
    {"ONLYBOXES_DOCKER_CAP_DROP", NULL, OBX_CONFIG_BOOL, F(drop_caps), "true", 0, 0, 0, NULL, 0,
     "drop all capabilities"},
    {"ONLYBOXES_DOCKER_NO_NEW_PRIVILEGES", NULL, OBX_CONFIG_BOOL, F(no_new_privs), "true", 0, 0, 0,
     NULL, 0, "no-new-privileges"},
    {"ONLYBOXES_DOCKER_PULL", NULL, OBX_CONFIG_BOOL, F(pull), "true", 0, 0, 0, NULL, 0,
     "pull a missing image"},
    {"ONLYBOXES_DOCKER_DIRECT", NULL, OBX_CONFIG_BOOL, F(direct), "true", 0, 0, 0, NULL, 0,
     "with a local daemon, reach the agent over a unix socket in a bind-mounted directory instead "
     "of the daemon's attach stream"},
    {"ONLYBOXES_DOCKER_STATE_DIR", NULL, OBX_CONFIG_STR, F(state_dir), NULL, 0, 0, 0, NULL, 0,
     "host directory for the boxes' sockets (default $XDG_RUNTIME_DIR/onlyboxes or "
     "/tmp/onlyboxes-<uid>)"},
};

const struct obx_config_var *obx_docker_config_vars(size_t *ret_n)
{
    *ret_n = OBX_ARRAY_SIZE(vars);
    return vars;
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
        .uid = OBX_DOCKER_DEFAULT_UID,
        .gid = OBX_DOCKER_DEFAULT_UID,
        .check_images = true,
    };
    int r = obx_config_read(vars, OBX_ARRAY_SIZE(vars), cfg, err);
    if (r < 0)
        return r;
    if (!obx_str_empty(cfg->user) && parse_user(cfg->user, &cfg->uid, &cfg->gid) < 0)
        return obx_error_set(
            err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
            "ONLYBOXES_DOCKER_USER=%s is invalid: expected UID:GID or UID, numbers "
            "from 0 to %d (or empty for the image's user)",
            cfg->user, INT32_MAX);
    return 0;
}
