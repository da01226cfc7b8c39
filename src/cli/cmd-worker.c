/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes worker`: the execution plane. Runs capabilities in sandboxes on this host for a
 * console it connects to over the worker protocol (gRPC), configured from the WORKER_* environment
 * as the original worker is. SIGINT/SIGTERM drain it: no new commands, running ones finish (or are
 * canceled after WORKER_DRAIN_TIMEOUT_SEC), then every box is removed. A second signal kills every
 * box and exits at once.
 */
#include "cli-internal.h"

#include <signal.h>

#include "common/log.h"

static const char usage[] =
    "Usage: onlyboxes worker [--runtime auto|bubblewrap|docker] [--help]\n"
    "\n"
    "Run capabilities in sandboxes on this host for a console. The console's dashboard (or\n"
    "POST /api/v1/workers) gives the command line with the id and secret.\n"
    "\n"
    "Options:\n"
    "  --runtime NAME     sandbox runtime: auto (default), bubblewrap, docker; also\n"
    "                     ONLYBOXES_RUNTIME\n"
    "\n"
    "  -h, --help         show this help\n"
    "\n"
    "Environment (a malformed value stops the worker, naming the variable):\n";
static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    for (int count = 0;; count++) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (count > 0) {
            obx_info("received %s again; removing every box and exiting", strsignal(sig));
            obx_worker_kill_all_boxes();
            _exit(128 + sig);
        }
        obx_info("received %s; draining (send it again to stop at once)", strsignal(sig));
        obx_worker_remote_stop();
    }
    return NULL;
}

int obx_cmd_worker(int argc, char **argv)
{
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
            obx_worker_remote_config_help(stdout);
            obx_worker_config_help(stdout);
            obx_cli_log_env_help(stdout, "WORKER");
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
    obx_log_set_prefix("worker");
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_worker_remote_config rcfg;
    if (obx_worker_remote_config_from_env(&rcfg, &err) < 0) {
        fprintf(stderr, "onlyboxes worker: %s\n", err.message);
        return 2;
    }
    /* The secret is in rcfg now; boxes and /proc/PID/environ need not see it. */
    unsetenv("WORKER_SECRET");
    obx_cli_handle_signals_with(signal_main);
    /* The console's own host is never an egress destination of a box. */
    char console_host[256];
    snprintf(console_host, sizeof(console_host), "%s", rcfg.target);
    char *colon = strrchr(console_host, ':');
    if (colon)
        *colon = '\0';
    char *host = console_host;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        host[strlen(host) - 1] = '\0';
        host++;
    }
    struct obx_worker_config wcfg;
    if (obx_worker_config_from_env(&wcfg, &err) < 0) { /* a malformed setting: as above */
        fprintf(stderr, "onlyboxes worker: %s\n", err.message);
        obx_worker_remote_config_done(&rcfg);
        return 2;
    }
    if (local.runtime_set)
        wcfg.runtime = local.runtime;
    wcfg.console_host = host;
    struct obx_worker *w = obx_worker_new(&wcfg, &err);
    if (!w) {
        fprintf(stderr, "onlyboxes worker: %s\n", err.message);
        obx_worker_remote_config_done(&rcfg);
        return 1;
    }
    int r = obx_worker_remote_run(w, &rcfg, &err);
    obx_worker_free(w);
    obx_worker_remote_config_done(&rcfg);
    if (r < 0) {
        fprintf(stderr, "onlyboxes worker: %s\n", err.message);
        return 1;
    }
    obx_info("worker stopped; every box is removed");
    return 0;
}
