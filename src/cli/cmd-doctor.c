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
    static const char usage[] =
        "Usage: onlyboxes doctor [--runtime NAME] [--help]\n\n"
        "Report which sandbox runtimes work here, which one onlyboxes would use, and the\n"
        "effective value of each setting.\n";
    struct obx_cli_local local = {0};
    static const struct option options[] = {
        {"runtime", required_argument, NULL, OBX_OPT_RUNTIME},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = obx_cli_getopt(argc, argv, "h", options, usage)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return 0;
        case OBX_OPT_RUNTIME:
            if (obx_cli_runtime_option(optarg, &local) < 0)
                return 2;
            break;
        default:
            return 2;
        }
    }
    if (obx_cli_no_operands(argc, argv, usage) < 0)
        return 2;
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
    struct obx_runtime *rt =
        obx_worker_docker_probe(cfg.runtime != OBX_RUNTIME_DOCKER, agent, &err);
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
    struct obx_worker_config bwrap_cfg = cfg;
    bwrap_cfg.runtime = OBX_RUNTIME_BUBBLEWRAP;
    if (obx_worker_pick_runtime(&bwrap_cfg, agent, &rt, why, sizeof(why), &err) == 0) {
        char desc[768];
        rt->describe(rt, desc, sizeof(desc));
        printf("bubblewrap: ok: %s\n", desc);
        rt->free(rt);
    } else {
        printf("bubblewrap: unavailable: %s\n", err.message);
    }
    err = (struct obx_error)OBX_ERROR_INIT;
    bool runtime_ok = false;
    if (obx_worker_pick_runtime(&cfg, agent, &rt, why, sizeof(why), &err) == 0) {
        printf("runtime:    %s -> %s\n", why, rt->name);
        rt->free(rt);
        runtime_ok = agent != NULL;
    } else {
        printf("runtime:    ERROR %s\n", err.message);
        ok = 0;
    }
    if (runtime_ok) {
        /* What pythonExec's pooled boxes will have: one box started and prepared now. */
        fflush(stdout);
        _cleanup_free_ char *py = NULL;
        err = (struct obx_error)OBX_ERROR_INIT;
        if (obx_worker_python_check(&cfg, &py, &err) == 0)
            printf("python:     %s\n", py);
        else
            printf("python:     ERROR %s\n", err.message);
    }
    if (cfg.egress_allow)
        printf("network:    \"allowlist\" reaches %.300s%s (%s); true is %s\n", cfg.egress_allow,
               strlen(cfg.egress_allow) > 300 ? "..." : "", cfg.egress_allow_var,
               cfg.allow_network ? "allowed" : "off (ONLYBOXES_ALLOW_NETWORK)");
    else
        printf("network:    \"allowlist\" is off (ONLYBOXES_EGRESS_ALLOW); true is %s\n",
               cfg.allow_network ? "allowed" : "off (ONLYBOXES_ALLOW_NETWORK)");
    free(agent);
    printf("settings:\n");
    fflush(stdout);
    err = (struct obx_error)OBX_ERROR_INIT;
    if (obx_worker_config_print(stdout, &cfg, &err) < 0)
        printf("  ERROR %s\n", err.message);
    obx_cli_log_print(stdout);
    printf("%s\n", ok ? "ready: `onlyboxes mcp --stdio` will run code in sandboxes"
                      : "not ready: fix the errors above");
    return ok ? 0 : 1;
}
