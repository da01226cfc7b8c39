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
#include "console/console.h"

static const char usage[] =
    "Usage: onlyboxes console [--with-worker] [--help]\n"
    "\n"
    "Run the console: the HTTP API, accounts, tokens and dashboard sessions in SQLite.\n"
    "  --with-worker                  also run capabilities on this host with an in-process\n"
    "                                 worker (same as CONSOLE_EMBEDDED_WORKER=true; the runtime\n"
    "                                 follows ONLYBOXES_RUNTIME)\n"
    "Configuration comes from the environment:\n"
    "  CONSOLE_HASH_KEY               required; HMAC key for tokens and sessions\n"
    "  CONSOLE_HTTP_ADDR              listen address (default :8089; 127.0.0.1:0 = any free port)\n"
    "  CONSOLE_DB_PATH                SQLite file (default ./db/onlyboxes-console.db)\n"
    "  CONSOLE_DB_BUSY_TIMEOUT_MS     SQLite busy timeout (default 5000)\n"
    "  CONSOLE_ENABLE_REGISTRATION    let the admin create accounts (default false)\n"
    "  CONSOLE_DASHBOARD_USERNAME     first admin's name (first start only)\n"
    "  CONSOLE_DASHBOARD_PASSWORD     first admin's password (first start only; when empty one\n"
    "                                 is generated and written next to the database, mode 0600)\n"
    "  CONSOLE_TLS_CERT_FILE          PEM certificate: serve HTTPS only (with ..._KEY_FILE)\n"
    "  CONSOLE_TLS_KEY_FILE           PEM private key for CONSOLE_TLS_CERT_FILE\n"
    "  CONSOLE_MCP_ALLOWED_ORIGINS    comma-separated Origins allowed to call /mcp\n"
    "  CONSOLE_MCP_MAX_SESSIONS       MCP sessions at once (default 1024; per account:\n"
    "                                 CONSOLE_MCP_MAX_SESSIONS_PER_ACCOUNT, default 64)\n"
    "  CONSOLE_GRPC_ADDR              workers' gRPC address, shown to new workers (:50051)\n"
    "  CONSOLE_TRUST_PROXY_HEADERS    trust X-Forwarded-Proto/-For from a reverse proxy\n"
    "  CONSOLE_TASK_RETENTION_DAYS    days an ended task stays readable (default 30)\n"
    "  CONSOLE_EMBEDDED_WORKER        true: as --with-worker\n"
    "  CONSOLE_LOG_LEVEL              debug, info, warn, error (default info)\n"
    "See docs/console.md for every option.\n";

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
    for (int i = 1; i < argc; i++) {
        if (obx_cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
        if (obx_streq(argv[i], "--with-worker")) {
            with_worker = true;
            continue;
        }
        fprintf(stderr, "onlyboxes console: unknown option '%s'\n%s", argv[i], usage);
        return 2;
    }
    const char *lvl = getenv("CONSOLE_LOG_LEVEL");
    enum obx_log_level l;
    if (lvl && *lvl && obx_log_level_parse(lvl, &l) == 0)
        obx_log_threshold = l;
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
