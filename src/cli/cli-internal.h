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

/* Where exec, python and call run: an in-process worker, or a console through its task API. */
struct obx_cli_target {
    struct obx_cli_local local;
    const char *console; /* --console, else ONLYBOXES_CONSOLE; NULL or "" = local */
    const char *token;   /* --token, else ONLYBOXES_TOKEN */
    const char *ca_file; /* --ca-file, else ONLYBOXES_CA_FILE */
};

/* The help lines of the options obx_cli_target_option() takes. */
#define OBX_CLI_TARGET_HELP                                                                     \
    "  --runtime NAME     auto (default), bubblewrap or docker; also ONLYBOXES_RUNTIME\n"       \
    "  --console URL      run on the console at URL (http:// or https://) instead of a local\n" \
    "                     sandbox; also ONLYBOXES_CONSOLE\n"                                    \
    "  --token TOKEN      the console API token; better ONLYBOXES_TOKEN (argv is visible)\n"    \
    "  --ca-file FILE     PEM CA bundle for an https console; also ONLYBOXES_CA_FILE\n"

/* Takes argv[*i] when it is a target option (--runtime, --console, --token, --ca-file) and moves *i
 * past its value. Returns 1 when taken, 0 when argv[*i] is something else, -1 after printing an
 * error. */
int obx_cli_target_option(int argc, char **argv, int *i, struct obx_cli_target *t);

/* Opens the target: a local worker, or a console client whose token was checked. Installs the
 * signal handling that fits (local: kill every box and exit; remote: cancel the remote task and let
 * the call return). Prints a one-line error and returns NULL on failure. Call before any thread. */
struct obx_cli_backend;
struct obx_cli_backend *obx_cli_backend_open(struct obx_cli_target *t);
struct obx_executor *obx_cli_backend_executor(struct obx_cli_backend *b);
void obx_cli_backend_close(struct obx_cli_backend *b);

/* The signal that interrupted a remote call (whose task was then canceled), or 0. */
int obx_cli_interrupted(void);

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
