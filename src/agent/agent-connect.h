/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's --connect option (the docker runtime's direct path); see agent-connect.c. */
#ifndef OBX_AGENT_CONNECT_H
#define OBX_AGENT_CONNECT_H

/* Takes `--connect PATH` (or --connect=PATH) out of argv, if there, and connects to the unix
 * socket PATH; the connection then replaces stdin and stdout as the frame stream. Returns 0 (also
 * without the option) or -1 after logging why it failed. */
int agent_connect_from_args(int *argc, char **argv);

#endif
