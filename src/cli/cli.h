/* SPDX-License-Identifier: Apache-2.0 */
/* Subcommands of the onlyboxes binary. Each takes argv starting at its own name and returns the
 * process exit status. */
#ifndef OBX_CLI_CLI_H
#define OBX_CLI_CLI_H

#include "common/util.h"

struct obx_cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
    const char *log_alias; /* the original's prefix of its logging variables, or NULL */
};

/* Applies the logging variables of a command (ONLYBOXES_LOG_*, with the aliases of
 * alias_prefix: "CONSOLE" or "WORKER"). Prints the error and returns < 0 when one is malformed. */
int obx_cli_setup_logging(const char *alias_prefix);

int obx_cmd_mcp(int argc, char **argv);
int obx_cmd_console(int argc, char **argv);
int obx_cmd_worker(int argc, char **argv);
int obx_cmd_exec(int argc, char **argv);
int obx_cmd_python(int argc, char **argv);
int obx_cmd_call(int argc, char **argv);
int obx_cmd_cp(int argc, char **argv);
int obx_cmd_sessions(int argc, char **argv);
int obx_cmd_doctor(int argc, char **argv);
int obx_cmd_version(int argc, char **argv);
int obx_cmd_help(int argc, char **argv);

#endif
