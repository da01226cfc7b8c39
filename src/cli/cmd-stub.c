/* SPDX-License-Identifier: Apache-2.0 */
/* Temporary placeholders replaced as subcommands land. */
#include "cli.h"

#include "common/log.h"

int obx_cmd_mcp(int argc, char **argv)
{
    return 1;
}
int obx_cmd_exec(int argc, char **argv)
{
    return 1;
}
int obx_cmd_python(int argc, char **argv)
{
    return 1;
}
int obx_cmd_call(int argc, char **argv)
{
    return 1;
}
int obx_cmd_doctor(int argc, char **argv)
{
    return 1;
}
int obx_cmd_version(int argc, char **argv)
{
    printf("onlyboxes %s\n", OBX_VERSION);
    return 0;
}
void obx_cli_setup_logging(void)
{
}
