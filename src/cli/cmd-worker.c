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
    "Environment:\n"
    "  WORKER_ID                      required; the worker's id at the console\n"
    "  WORKER_SECRET                  required; its secret (shown once by the console)\n"
    "  WORKER_CONSOLE_GRPC_TARGET     the console's gRPC address (default 127.0.0.1:50051)\n"
    "  WORKER_CONSOLE_INSECURE        exactly 'true': plaintext; otherwise TLS\n"
    "  WORKER_CONSOLE_CA_FILE         PEM CA bundle that signed the console's certificate\n"
    "                                 (default: the system's roots)\n"
    "  WORKER_CONSOLE_CERT_FILE       PEM client certificate, for a console that requires one\n"
    "  WORKER_CONSOLE_KEY_FILE        its private key\n"
    "  WORKER_HEARTBEAT_INTERVAL_SEC  seconds between heartbeats until the console says (5)\n"
    "  WORKER_HEARTBEAT_JITTER_PCT    random spread of the interval, percent (20)\n"
    "  WORKER_CALL_TIMEOUT_SEC        how long an answer may take (2.5 x the interval)\n"
    "  WORKER_DRAIN_TIMEOUT_SEC       on SIGTERM, how long running commands may take (30)\n"
    "  WORKER_NODE_NAME               name shown by the console (worker-RUNTIME-ID)\n"
    "  WORKER_LABELS                  labels, k=v,k2=v2\n"
    "  WORKER_VERSION                 version shown by the console (this build's)\n"
    "  WORKER_MAX_INFLIGHT            calls of one capability at once (16)\n"
    "  WORKER_TERMINAL_LEASE_MIN_SEC / _MAX_SEC / _DEFAULT_SEC, "
    "WORKER_TERMINAL_OUTPUT_LIMIT_BYTES,\n"
    "  WORKER_READ_IMAGE_LIMIT_BYTES, ONLYBOXES_BOX_*, ONLYBOXES_MAX_SESSIONS, "
    "ONLYBOXES_WARM_POOL,\n"
    "  ONLYBOXES_ALLOW_NETWORK, ONLYBOXES_DOCKER_*: as for `onlyboxes mcp` (see the README)\n"
    "  ONLYBOXES_LOG_LEVEL            debug, info, warn, error (default info)\n";

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
    for (int i = 1; i < argc; i++) {
        if (obx_cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        } else if (obx_streq(argv[i], "--runtime") && i + 1 < argc) {
            if (obx_cli_runtime_option(argv[++i], &local) < 0)
                return 2;
        } else if (strncmp(argv[i], "--runtime=", 10) == 0) {
            if (obx_cli_runtime_option(argv[i] + 10, &local) < 0)
                return 2;
        } else {
            fprintf(stderr, "onlyboxes worker: unknown option '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
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
    struct obx_worker *w = NULL;
    if (obx_worker_config_from_env(&wcfg, &err) == 0) {
        if (local.runtime_set)
            wcfg.runtime = local.runtime;
        wcfg.console_host = host;
        w = obx_worker_new(&wcfg, &err);
    }
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
