/* SPDX-License-Identifier: Apache-2.0 */
/* `onlyboxes doctor` and `onlyboxes version`. Doctor tells a user which runtime `auto` picks and,
 * when none works, what to install. */
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
        printf("config:  ERROR %s\n", err.message);
        return 1;
    }
    if (local.runtime_set)
        cfg.runtime = local.runtime;
    char *agent = obx_worker_find_agent(cfg.agent_path, &err);
    if (agent)
        printf("agent:   %s\n", agent);
    else {
        printf("agent:   ERROR %s\n", err.message);
        ok = 0;
    }
    free(agent);

    struct obx_runtime *rt = NULL;
    char why[160] = "";
    err = (struct obx_error)OBX_ERROR_INIT;
    if (obx_worker_pick_runtime(cfg.runtime, &rt, why, sizeof(why), &err) == 0) {
        char desc[512];
        rt->describe(rt, desc, sizeof(desc));
        printf("runtime: %s (%s)\n         %s\n", rt->name, why, desc);
        rt->free(rt);
    } else {
        printf("runtime: ERROR %s\n", err.message);
        ok = 0;
    }
    printf("docker:  not supported by this build yet\n");
    printf("%s\n", ok ? "ready: `onlyboxes mcp --stdio` will run code in sandboxes"
                      : "not ready: fix the errors above");
    return ok ? 0 : 1;
}
