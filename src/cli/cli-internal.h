/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the subcommands in src/cli/. */
#ifndef OBX_CLI_INTERNAL_H
#define OBX_CLI_INTERNAL_H

#include <strings.h>

#include "cli.h"
#include "worker/worker.h"

struct obx_cli_local {
    enum obx_runtime_choice runtime;
    bool runtime_set;
    bool keep_pool; /* long-running server: keep the warm pool */
};

/* Parses a --runtime value; prints the error itself. */
int obx_cli_runtime_option(const char *value, struct obx_cli_local *local);

/* A worker in this process, configured from the environment and the flags. */
struct obx_worker *obx_cli_local_worker(const struct obx_cli_local *local, struct obx_error *err);

/* SIGINT/SIGTERM/SIGHUP kill every box and exit; SIGPIPE is ignored. Call before any thread. */
void obx_cli_handle_signals(void);

/* The same, with waiter(sigset_t *) as the thread that sigwait()s for them. */
void obx_cli_handle_signals_with(void *(*waiter)(void *sigset));

bool obx_cli_is_help(const char *arg);

#endif
