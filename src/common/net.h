/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Listen addresses as users write them (CONSOLE_HTTP_ADDR, CONSOLE_GRPC_ADDR): "HOST:PORT",
 * "[IPv6]:PORT" or ":PORT" for every interface. A host name is resolved once, when the listener
 * is created, and every address it resolves to is bound; exactly those, never the wildcard
 * instead. Used by every listener of the console so they follow one rule.
 */
#ifndef OBX_COMMON_NET_H
#define OBX_COMMON_NET_H

#include <sys/socket.h>

#include "error.h"

#define OBX_NET_MAX_ADDRS 8

struct obx_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" (host "" = every interface). The host is returned
 * without brackets in *ret_host (caller frees). -EINVAL with err naming what is wrong; what names
 * the setting in the message (e.g. "CONSOLE_HTTP_ADDR"). */
int obx_net_parse_hostport(const char *what, const char *addr, char **ret_host, int *ret_port,
                           struct obx_error *err);

/* The addresses to bind for host and port: every address host resolves to (numeric or a name,
 * resolved now), or for "" the IPv6 wildcard (dual stack) where IPv6 works, else the IPv4 one.
 * Returns how many were written to out (at least 1), or a negative errno with err set. */
int obx_net_resolve_listen(const char *host, int port, struct obx_sockaddr *out, size_t max,
                           struct obx_error *err);

/* Creates a non-blocking, close-on-exec TCP listener for each address of host:port (see above).
 * With port 0 the first bind picks a port and the others take the same one. Returns how many
 * sockets were written to fds/addrs (their bound addresses), or a negative errno with err set and
 * nothing left open. */
int obx_net_listen(const char *host, int port, int backlog, int *fds, struct obx_sockaddr *addrs,
                   size_t max, struct obx_error *err);

/* "127.0.0.1:8089", "[::1]:8089", "[::]:8089". */
void obx_net_format(const struct obx_sockaddr *a, char *buf, size_t size);
int obx_net_port(const struct obx_sockaddr *a);
void obx_net_set_port(struct obx_sockaddr *a, int port);

/* True for a host that can only mean this machine: a loopback literal or "localhost". */
bool obx_net_host_is_loopback(const char *host);

#endif
