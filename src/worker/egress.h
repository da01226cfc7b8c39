/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Egress by allow-list: an HTTP proxy on the worker's side for boxes started with network
 * "allowlist". Such a box has no network of its own; each gets a unix socket of the proxy bound
 * into it, and the agent relays the box's 127.0.0.1:OBX_BOX_EGRESS_PORT to it. The proxy speaks
 * HTTP CONNECT and plain HTTP (absolute URLs), lets through only the host names and ports of the
 * operator's list, resolves names itself, refuses any resolved address of this host, loopback,
 * link-local (cloud metadata) and the like, connects to the address it checked, and enforces
 * per-box limits on connections and bytes. One socket per box, so every connection is counted and
 * logged with its box. Used by worker/ only.
 *
 * One event-loop thread serves every box; names are resolved on up to a few resolver threads. The
 * functions below may be called from any thread.
 */
#ifndef OBX_WORKER_EGRESS_H
#define OBX_WORKER_EGRESS_H

#include "common/error.h"

struct obx_egress_config {
    const char *allow;        /* "pypi.org,*.pythonhosted.org,api.example.com:8443" */
    const char *allow_var;    /* the variable allow came from, named in refusals */
    const char *test_resolve; /* ONLYBOXES_EGRESS_TEST_RESOLVE (tests only), or NULL */
    const char *deny_host;    /* the console's host: never a destination; NULL: none */
    const char *state_dir;    /* NULL: $XDG_RUNTIME_DIR/onlyboxes or /tmp/onlyboxes-<uid> */
    unsigned max_conns;       /* connections at once per box */
    uint64_t max_bytes;       /* bytes relayed per box, both directions, over its life */
    unsigned connect_timeout_ms;
};

/* Parses the allow-list and the test override the way obx_egress_new() will, for configuration
 * errors at start-up: -EINVAL with err naming the variable and the entry. */
int obx_egress_config_check(const struct obx_egress_config *cfg, struct obx_error *err);

struct obx_egress;
struct obx_egress_box;

/* Starts the proxy's thread. */
int obx_egress_new(const struct obx_egress_config *cfg, struct obx_egress **ret,
                   struct obx_error *err);
/* Stops the thread and closes every connection. Box handles stay valid until closed. */
void obx_egress_free(struct obx_egress *eg);

/* A listening socket for one box. label says whose box it is in log lines ("session <id>"). The
 * socket's path (obx_egress_box_path) is what the runtime binds into the box; once the box
 * runs, obx_egress_box_unlink() removes the name so that no other process can connect. */
int obx_egress_box_open(struct obx_egress *eg, const char *label, struct obx_egress_box **ret,
                        struct obx_error *err);
const char *obx_egress_box_path(const struct obx_egress_box *eb);
void obx_egress_box_unlink(struct obx_egress_box *eb);
/* Closes the socket and every connection of the box, logs its counts and frees the handle. */
void obx_egress_box_close(struct obx_egress_box *eb);

struct obx_egress_stats {
    uint64_t allowed; /* connections made to an allowed destination */
    uint64_t refused; /* requests answered with a refusal (403, 429, 400) */
    uint64_t failed;  /* allowed requests whose destination could not be reached (502, 504) */
    uint64_t bytes;   /* relayed, both directions */
};
void obx_egress_box_stats(const struct obx_egress_box *eb, struct obx_egress_stats *ret);

#endif
