/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the subcommands in src/cli/. */
#ifndef OBX_CLI_INTERNAL_H
#define OBX_CLI_INTERNAL_H

#include <getopt.h>
#include <strings.h>

#include "cli.h"
#include "common/config.h"
#include "worker/worker.h"

struct obx_cli_local {
    enum obx_runtime_choice runtime;
    bool runtime_set;
    bool keep_pool;                     /* long-running server: keep the warm pool */
    const struct obx_box_mount *mounts; /* --mount, checked */
    size_t n_mounts;
};

/* Where exec, python and call run: an in-process worker, or a console through its task API. */
struct obx_cli_target {
    struct obx_cli_local local;
    const char *console; /* --console, else ONLYBOXES_CONSOLE; NULL or "" = local */
    const char *token;   /* --token, else ONLYBOXES_TOKEN */
    const char *ca_file; /* --ca-file, else ONLYBOXES_CA_FILE */
};

/* getopt_long values of the long-only options (past any character). */
enum {
    OBX_OPT_RUNTIME = 0x100,
    OBX_OPT_CONSOLE,
    OBX_OPT_TOKEN,
    OBX_OPT_CA_FILE,
    OBX_OPT_STDIO,
    OBX_OPT_FIXTURES,
    OBX_OPT_WITH_WORKER,
    OBX_OPT_SESSION,
    OBX_OPT_TIMEOUT,
    OBX_OPT_NETWORK,
    OBX_OPT_MOUNT,
    OBX_OPT_EXPORT_DIR,
    OBX_OPT_RESET,
    OBX_OPT_PID,
};

/* The struct option rows of the target options, for a command's table. */
#define OBX_CLI_TARGET_OPTIONS                                 \
    {"runtime", required_argument, NULL, OBX_OPT_RUNTIME},     \
        {"console", required_argument, NULL, OBX_OPT_CONSOLE}, \
        {"token", required_argument, NULL, OBX_OPT_TOKEN},     \
    {                                                          \
        "ca-file", required_argument, NULL, OBX_OPT_CA_FILE    \
    }

/* getopt_long (options as --opt=value or --opt value, abbreviations allowed) with the program's
 * own messages: returns the next option's value, -1 after the last one (optind is then the first
 * argument), or '?' after printing what is wrong and the usage to stderr. Starts over when
 * optind is 0. */
int obx_cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
                   const char *usage);

/* After the options: refuses an operand (printing it and the usage) with -EINVAL. */
int obx_cli_no_operands(int argc, char **argv, const char *usage);

/* The help lines of the options obx_cli_target_option() takes. */
#define OBX_CLI_TARGET_HELP                                                                     \
    "  --runtime NAME     auto (default), bubblewrap or docker; also ONLYBOXES_RUNTIME\n"       \
    "  --console URL      run on the console at URL (http:// or https://) instead of a local\n" \
    "                     sandbox; also ONLYBOXES_CONSOLE\n"                                    \
    "  --token TOKEN      the console API token; better ONLYBOXES_TOKEN (argv is visible)\n"    \
    "  --ca-file FILE     PEM CA bundle for an https console; also ONLYBOXES_CA_FILE\n"

/* Takes a target option getopt returned (OBX_OPT_RUNTIME, _CONSOLE, _TOKEN, _CA_FILE) with its
 * value. Returns 1 when taken, 0 when opt is something else, -1 after printing an error. */
int obx_cli_target_option(int opt, const char *value, struct obx_cli_target *t);

/* The Environment lines of --help for a command that runs tools (locally, or on a console). */
void obx_cli_target_env_help(FILE *f);

/* The Environment lines of the logging variables; alias_prefix names the original's aliases
 * ("CONSOLE", "WORKER") or is NULL. */
void obx_cli_log_env_help(FILE *f, const char *alias_prefix);

/* doctor: the logging variables' effective values. */
void obx_cli_log_print(FILE *f);

/* Opens the target: a local worker, or a console client whose token was checked. Installs the
 * signal handling that fits (local: kill every box and exit; remote: cancel the remote task and let
 * the call return). Prints a one-line error and returns NULL on failure. Call before any thread. */
struct obx_cli_backend;
struct obx_cli_backend *obx_cli_backend_open(struct obx_cli_target *t);
struct obx_executor *obx_cli_backend_executor(struct obx_cli_backend *b);
void obx_cli_backend_close(struct obx_cli_backend *b);

/* The console of the target options (else ONLYBOXES_CONSOLE ...), its token checked, for a
 * command that makes its own requests; NULL with *ret_local when none is set, NULL after printing
 * an error otherwise. Installs the remote signal handling; free with obx_client_free(). */
struct obx_client;
struct obx_client *obx_cli_console_open(struct obx_cli_target *t, bool *ret_local);
/* Ctrl-C (SIGINT, SIGTERM) interrupts requests on x from now on; NULL stops that. */
struct obx_client_conn;
void obx_cli_watch_conn(struct obx_client_conn *x);

/* SIGINT and SIGTERM interrupt the request on the connection obx_cli_watch_conn() names (and
 * cancel a remote call's task); a second one exits at once. Call before any thread. */
void obx_cli_handle_interrupts(void);

/* The signal that interrupted a remote call (whose task was then canceled), or 0. */
int obx_cli_interrupted(void);

/* ---- what cp and sessions reach (cli-sessions.c) ---- */

/* One server of the sessions and files API: a console, or the control socket of a local
 * onlyboxes mcp. */
struct obx_cli_api {
    struct obx_client *client;
    struct obx_client_conn *conn;
    int pid; /* the local onlyboxes mcp; 0 for a console */
};

struct obx_cli_apis {
    struct obx_cli_api *v; /* a console's, or the local processes' by pid */
    size_t n;
    bool local;
    char where[108]; /* local: the directory of the control sockets */
};

/* Opens what cmd ("onlyboxes cp") reaches: the console of t, else every running local onlyboxes
 * mcp of this user (only the one of pid, when pid is not 0). Returns 0, or after printing why
 * not the exit status: 2 for a usage error and when there is nothing to reach, 1 when the
 * console refused or no local process answered. Installs the signal handling. */
int obx_cli_apis_open(struct obx_cli_target *t, const char *cmd, int pid, struct obx_cli_apis *ret);
void obx_cli_apis_close(struct obx_cli_apis *a);

/* The server that has session sid: the console, or the one local process that has it (each is
 * asked). NULL after printing why not, with *ret_status the exit status: 1 when none has it, 2
 * when several have (--pid chooses). Ctrl-C interrupts the requests of what it returns. */
struct obx_cli_api *obx_cli_apis_find(struct obx_cli_apis *a, const char *cmd, const char *sid,
                                      int *ret_status);

/* Parses --pid's value; -1 after printing why it is not a pid. */
int obx_cli_pid_option(const char *cmd, const char *value);

/* Ctrl-C interrupts a's requests from now on. */
void obx_cli_api_use(struct obx_cli_api *a);

/* "/api/v1/sessions/SID" + suffix into *ret (the caller frees it); -EINVAL for an id the API
 * does not take. */
int obx_cli_api_session_path(const char *sid, const char *suffix, char **ret);

/* Prints a server's refusal ("onlyboxes: WHAT: ERROR (HTTP STATUS)"); returns 1. */
int obx_cli_api_failed(const char *what, long status, const json_t *body);

/* Parses a --runtime value; prints the error itself. */
int obx_cli_runtime_option(const char *value, struct obx_cli_local *local);

/* A worker in this process, configured from the environment and the flags. */
struct obx_worker *obx_cli_local_worker(const struct obx_cli_local *local, struct obx_error *err);

/* SIGINT/SIGTERM/SIGHUP kill every box and exit; SIGPIPE is ignored. Call before any thread. */
void obx_cli_handle_signals(void);

/* The same, with waiter(sigset_t *) as the thread that sigwait()s for them. */
void obx_cli_handle_signals_with(void *(*waiter)(void *sigset));

#endif
