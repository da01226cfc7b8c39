/* SPDX-License-Identifier: Apache-2.0 */
/*
 * onlyboxes: one binary, many subcommands. This file is only the table and the dispatch; each
 * subcommand lives in src/cli/.
 */
#include "cli/cli.h"
#include "common/log.h"

static const struct obx_cli_command commands[] = {
    {"mcp", obx_cmd_mcp, "Serve MCP over stdio with an in-process worker", NULL},
    {"console", obx_cmd_console, "Run the console (HTTP API, accounts, tokens) for a team",
     "CONSOLE"},
    {"worker", obx_cmd_worker, "Run sandboxes on this host for a console (the execution plane)",
     "WORKER"},
    {"exec", obx_cmd_exec, "Run one command in a box: onlyboxes exec [--session ID] -- CMD ARGS...",
     NULL},
    {"python", obx_cmd_python, "Run Python in a box: onlyboxes python (-c CODE | FILE | -)", NULL},
    {"call", obx_cmd_call, "Call one tool and print its result as JSON: onlyboxes call TOOL 'JSON'",
     NULL},
    {"cp", obx_cmd_cp,
     "Copy files into or out of a console's session: onlyboxes cp SRC SESSION:PATH", NULL},
    {"sessions", obx_cmd_sessions, "List, end or renew a console's sessions: onlyboxes sessions",
     NULL},
    {"doctor", obx_cmd_doctor, "Report which sandbox runtimes work on this machine", NULL},
    {"version", obx_cmd_version, "Print the version", NULL},
    {"help", obx_cmd_help, "Show this help", NULL},
};

int obx_cmd_help(int argc, char **argv)
{
    fprintf(stdout,
            "onlyboxes %s - code-execution sandboxes for AI agents\n\n"
            "Usage: onlyboxes COMMAND [OPTIONS]\n\nCommands:\n",
            OBX_VERSION);
    for (size_t i = 0; i < OBX_ARRAY_SIZE(commands); i++)
        fprintf(stdout, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(stdout, "\nRun 'onlyboxes COMMAND --help' for a command's options.\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        obx_cmd_help(argc, argv);
        return 2;
    }
    const char *name = argv[1];
    if (obx_streq(name, "--help") || obx_streq(name, "-h"))
        return obx_cmd_help(argc - 1, argv + 1);
    if (obx_streq(name, "--version"))
        return obx_cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < OBX_ARRAY_SIZE(commands); i++) {
        if (!obx_streq(name, commands[i].name))
            continue;
        if (obx_cli_setup_logging(commands[i].log_alias) < 0)
            return 2;
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "onlyboxes: unknown command '%s' (try 'onlyboxes help')\n", name);
    return 2;
}
