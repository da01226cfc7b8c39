/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes console`: the control plane for a team (accounts, tokens, REST API), configured
 * from the CONSOLE_* environment. SIGINT/SIGTERM stop it gracefully: requests already accepted are
 * answered, then the database is closed. A second signal exits at once.
 */
#include "cli-internal.h"

#include <pthread.h>
#include <signal.h>

#include "common/log.h"

#if OBX_HAVE_CONSOLE
#    include "console/console.h"

static const char usage[] =
    "Usage: onlyboxes console [--with-worker] [--help]\n"
    "\n"
    "Run the console: the HTTP API, accounts, tokens and dashboard sessions in SQLite.\n"
    "  --with-worker                  also run capabilities on this host with an in-process\n"
    "                                 worker (same as CONSOLE_EMBEDDED_WORKER=true; it reads the\n"
    "                                 variables of `onlyboxes mcp`, ONLYBOXES_RUNTIME among them)\n"
    "\n"
    "Configuration comes from the environment (a malformed value stops the console, naming the\n"
    "variable; docs/console.md says more about each):\n";
static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    for (int count = 0;; count++) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (count > 0)
            _exit(128 + sig);
        obx_info("received %s; stopping (send it again to exit at once)", strsignal(sig));
        obx_console_request_stop();
    }
    return NULL;
}

int obx_cmd_console(int argc, char **argv)
{
    bool with_worker = false;
    static const struct option options[] = {
        {"with-worker", no_argument, NULL, OBX_OPT_WITH_WORKER},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = obx_cli_getopt(argc, argv, "h", options, usage)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            obx_console_config_help(stdout);
            obx_cli_log_env_help(stdout, "CONSOLE");
            return 0;
        case OBX_OPT_WITH_WORKER:
            with_worker = true;
            break;
        default:
            return 2;
        }
    }
    if (obx_cli_no_operands(argc, argv, usage) < 0)
        return 2;
    obx_log_set_prefix("console");

    struct obx_console_config cfg;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_console_config_from_env(&cfg, &err) < 0) {
        fprintf(stderr, "onlyboxes console: %s\n", err.message);
        obx_console_config_done(&cfg);
        return 2;
    }
    if (with_worker)
        cfg.embedded_worker = true;
    /* The password is in cfg now; children and /proc/PID/environ need not see it. */
    unsetenv("CONSOLE_DASHBOARD_PASSWORD");
    obx_cli_handle_signals_with(signal_main);
    int r = obx_console_run(&cfg, &err);
    obx_console_config_done(&cfg);
    if (r < 0) {
        fprintf(stderr, "onlyboxes console: %s\n", err.message);
        return 1;
    }
    return 0;
}

#else /* a build without the console (-DOBX_CONSOLE=OFF) */

int obx_cmd_console(int argc, char **argv)
{
    fprintf(stderr, "onlyboxes console: this onlyboxes was built without the console "
                    "(-DOBX_CONSOLE=OFF); build it with the console to serve a team, or use "
                    "`onlyboxes mcp --stdio`\n");
    return 2;
}

#endif
