/* SPDX-License-Identifier: Apache-2.0 */
/* `onlyboxes doctor` and `onlyboxes version`. Doctor shows what each runtime found, which one
 * `auto` (or --runtime) picks and why, and, when none works, what to install. */
#include "cli-internal.h"

#include "common/runtime.h"

int obx_cmd_version(int argc, char **argv)
{
    printf("onlyboxes %s\n", OBX_VERSION);
    return 0;
}

int obx_cmd_doctor(int argc, char **argv)
{
    struct obx_cli_local local = {0};
    for (int i = 1; i < argc; i++) {
        if (obx_cli_is_help(argv[i])) {
            printf("Usage: onlyboxes doctor [--runtime NAME]\n\nReport which sandbox runtimes "
                   "work here and which one onlyboxes would use.\n");
            return 0;
        } else if (obx_streq(argv[i], "--runtime") && i + 1 < argc) {
            if (obx_cli_runtime_option(argv[++i], &local) < 0)
                return 2;
        } else {
            fprintf(stderr, "onlyboxes doctor: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    struct obx_worker_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    int ok = 1;
    printf("onlyboxes %s\n", OBX_VERSION);
    if (obx_worker_config_from_env(&cfg, &err) < 0) {
        printf("config:     ERROR %s\n", err.message);
        return 1;
    }
    if (local.runtime_set)
        cfg.runtime = local.runtime;
    char *agent = obx_worker_find_agent(cfg.agent_path, &err);
    if (agent)
        printf("agent:      %s\n", agent);
    else {
        printf("agent:      ERROR %s\n", err.message);
        ok = 0;
    }

    /* Each runtime on its own, then the one the worker would use and why. */
    err = (struct obx_error)OBX_ERROR_INIT;
    struct obx_runtime *rt = obx_worker_docker_probe(cfg.runtime != OBX_RUNTIME_DOCKER, &err);
    if (rt) {
        char desc[768];
        rt->describe(rt, desc, sizeof(desc));
        printf("docker:     ok: %s\n            %s\n", rt->status ? rt->status(rt) : rt->name,
               desc);
        rt->free(rt);
    } else {
        printf("docker:     unavailable: %s\n", err.message);
    }
    char why[1200] = "";
    err = (struct obx_error)OBX_ERROR_INIT;
    if (obx_worker_pick_runtime(OBX_RUNTIME_BUBBLEWRAP, agent, &rt, why, sizeof(why), &err) == 0) {
        char desc[768];
        rt->describe(rt, desc, sizeof(desc));
        printf("bubblewrap: ok: %s\n", desc);
        rt->free(rt);
    } else {
        printf("bubblewrap: unavailable: %s\n", err.message);
    }
    err = (struct obx_error)OBX_ERROR_INIT;
    if (obx_worker_pick_runtime(cfg.runtime, agent, &rt, why, sizeof(why), &err) == 0) {
        printf("runtime:    %s -> %s\n", why, rt->name);
        rt->free(rt);
    } else {
        printf("runtime:    ERROR %s\n", err.message);
        ok = 0;
    }
    if (cfg.egress_allow)
        printf("network:    \"allowlist\" reaches %.300s%s (%s); true is %s\n", cfg.egress_allow,
               strlen(cfg.egress_allow) > 300 ? "..." : "", cfg.egress_allow_var,
               cfg.allow_network ? "allowed" : "off (ONLYBOXES_ALLOW_NETWORK)");
    else
        printf("network:    \"allowlist\" is off (ONLYBOXES_EGRESS_ALLOW); true is %s\n",
               cfg.allow_network ? "allowed" : "off (ONLYBOXES_ALLOW_NETWORK)");
    free(agent);
    printf("%s\n", ok ? "ready: `onlyboxes mcp --stdio` will run code in sandboxes"
                      : "not ready: fix the errors above");
    return ok ? 0 : 1;
}
