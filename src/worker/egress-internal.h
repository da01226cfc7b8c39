/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between the egress proxy's files: egress.c (the event loop, boxes and connections),
 * egress-policy.c (the allow-list, host names and forbidden addresses), egress-http.c (proxy
 * requests and answers) and egress-resolve.c (the resolver threads). Not for other files.
 */
#ifndef OBX_WORKER_EGRESS_INTERNAL_H
#define OBX_WORKER_EGRESS_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "egress.h"

#define OBX_EGRESS_MAX_RULES 256
#define OBX_EGRESS_MAX_PINS 32
#define OBX_EGRESS_MAX_ADDRS 8  /* resolved addresses kept per request */
#define OBX_EGRESS_HOST_MAX 253 /* longest DNS name */
#define OBX_EGRESS_WHY_MAX 512  /* a refusal's text */

/* One allow-list entry: "host", "*.domain", either with ":port". */
struct obx_egress_rule {
    char *name;    /* lower-case; for a wildcard the domain after "*." */
    bool wildcard; /* matches names ending in ".<name>", not <name> itself */
    uint16_t port; /* 0: ports 80 and 443 */
};

/* ONLYBOXES_EGRESS_TEST_RESOLVE entry: name (under .test) -> address[:port]. */
struct obx_egress_pin {
    char *name;
    struct sockaddr_storage addr;
    socklen_t len;
    uint16_t port; /* 0: the requested port */
};

struct obx_egress_policy {
    struct obx_egress_rule *rules;
    size_t n_rules;
    struct obx_egress_pin *pins;
    size_t n_pins;
    char var[48]; /* the allow-list's variable, for messages */
};

int obx_egress_policy_parse(struct obx_egress_policy *p, const struct obx_egress_config *cfg,
                            struct obx_error *err);
void obx_egress_policy_done(struct obx_egress_policy *p);

/* Lower-cases host in place and drops one trailing dot. Returns 0 for a DNS name, 1 for an IP
 * address (any form inet_aton or inet_pton takes), -EINVAL with why for anything else. */
int obx_egress_host_normalize(char *host, char *why, size_t size);

/* Whether host:port may be reached; when not, why says so (the wording, naming var). */
bool obx_egress_policy_allows(const struct obx_egress_policy *p, const char *host, uint16_t port,
                              char *why, size_t size);

/* The pin for host, or NULL. */
const struct obx_egress_pin *obx_egress_policy_pin(const struct obx_egress_policy *p,
                                                   const char *host);

/* Addresses no box may reach through the proxy, whatever name leads there. */
struct obx_egress_denylist {
    char *name;                     /* the console's host name, lower-case, or NULL */
    struct sockaddr_storage *addrs; /* its addresses, resolved once */
    size_t n;
};

/* Resolves cfg->deny_host into *ret (a name that does not resolve is kept by name only). */
void obx_egress_denylist_init(struct obx_egress_denylist *ret, const char *deny_host);
void obx_egress_denylist_done(struct obx_egress_denylist *d);

/* Why addr (a resolved destination) is forbidden, or NULL when it may be used: loopback (unless
 * loopback_ok, for a test pin), an address of this host (getifaddrs, read at each call),
 * unspecified, link-local and the cloud metadata addresses, multicast, reserved, the console's. */
const char *obx_egress_addr_forbidden(const struct sockaddr *addr, bool loopback_ok,
                                      const struct obx_egress_denylist *deny);

/* "1.2.3.4" / "2001:db8::1" */
void obx_egress_addr_text(const struct sockaddr *addr, char *buf, size_t size);

/* ---- proxy requests (egress-http.c) ---- */

#define OBX_EGRESS_HEAD_MAX 16384 /* a request's line and headers */

struct obx_egress_request {
    bool connect; /* CONNECT host:port; else a plain-HTTP request to forward */
    char method[24];
    char host[OBX_EGRESS_HOST_MAX + 2];
    uint16_t port;
    bool is_ip;      /* host is an IP address, not a name */
    size_t head_len; /* bytes of the request head in the buffer; what follows belongs upstream */
    char *forward;   /* plain HTTP: the head to send upstream (origin-form, Host set, hop-by-hop
                        headers dropped, Connection: close); malloc'd */
    size_t forward_len;
};

/* Parses the head at the start of buf. Returns 0 (complete, *ret filled), -EAGAIN (incomplete;
 * more bytes may follow) or an HTTP status (400, 405, 431) with why. The caller frees ret->forward.
 */
int obx_egress_request_parse(const char *buf, size_t len, struct obx_egress_request *ret, char *why,
                             size_t size);

/* The whole answer for a refused or failed request: status line with why as its reason phrase (so
 * that clients that only show the status line show the reason), and why as the body. */
char *obx_egress_answer(int status, const char *why, size_t *ret_len);

/* ---- name resolution (egress-resolve.c) ---- */

struct obx_egress_job {
    /* in */
    char host[OBX_EGRESS_HOST_MAX + 2];
    uint16_t port;
    /* out */
    int status; /* 0: addrs hold the destinations; else the HTTP status of the refusal */
    char why[OBX_EGRESS_WHY_MAX];
    struct sockaddr_storage addrs[OBX_EGRESS_MAX_ADDRS];
    size_t n_addrs;
    /* the loop thread's: the connection waiting for it, NULL once that is gone */
    void *conn;
    struct obx_egress_job *next;
};

/* The resolver threads and their queues. It owns the policy (the loop reads it through
 * obx_egress_resolver_policy) and the deny list, and lives until its last thread is gone, since a
 * thread inside getaddrinfo() cannot be interrupted: stopping never waits for one. */
struct obx_egress_resolver;

/* Takes over *policy and *deny (left empty) and a duplicate of wake_fd, an eventfd it writes to
 * when a job is done. */
struct obx_egress_resolver *obx_egress_resolver_new(struct obx_egress_policy *policy,
                                                    struct obx_egress_denylist *deny, int wake_fd,
                                                    struct obx_error *err);
const struct obx_egress_policy *obx_egress_resolver_policy(const struct obx_egress_resolver *r);
/* Queues a job (the resolver's until it comes back from _take_done). -EAGAIN: the queue is
 * full. */
int obx_egress_resolver_submit(struct obx_egress_resolver *r, struct obx_egress_job *job);
/* The finished jobs, oldest first, as a list the caller now owns. */
struct obx_egress_job *obx_egress_resolver_take_done(struct obx_egress_resolver *r);
/* Drops the creator's reference: queued jobs are dropped, threads exit once their lookup
 * returns, and the last one frees everything. */
void obx_egress_resolver_stop(struct obx_egress_resolver *r);

/* Resolves and checks one job on the calling thread (what a resolver thread does). */
void obx_egress_resolve(const struct obx_egress_policy *policy,
                        const struct obx_egress_denylist *deny, struct obx_egress_job *job);

/* ---- the loop's objects (egress.c, egress-conn.c) ---- */

enum obx_egress_tag_kind {
    OBX_EGRESS_TAG_WAKE,
    OBX_EGRESS_TAG_LISTEN,
    OBX_EGRESS_TAG_CLIENT,
    OBX_EGRESS_TAG_UPSTREAM,
};

/* What an epoll event's data points at. */
struct obx_egress_tag {
    enum obx_egress_tag_kind kind;
    void *obj;
};

struct obx_egress_conn; /* egress-conn.c */

struct obx_egress_box {
    struct obx_egress *eg;
    int refs; /* atomic: the opener's, and the loop's until it shut the box down */
    char label[160];
    char path[108]; /* sizeof(sockaddr_un.sun_path) */
    bool unlinked;  /* atomic */
    int listen_fd;  /* the loop's once queued */
    struct obx_egress_tag tag;
    /* the loop's */
    uint32_t lev;
    struct obx_egress_conn *conns;
    unsigned clients, active;
    bool loop_ref; /* the loop still holds its reference */
    bool registered, over_bytes;
    uint64_t accept_paused_until;
    struct obx_egress_box *next;
    /* atomics */
    uint64_t allowed, refused, failed, bytes;
};

struct obx_egress_cmd {
    bool close; /* else add */
    struct obx_egress_box *box;
    struct obx_egress_cmd *next;
};

struct obx_egress {
    int refs; /* atomic: the creator's and one per box handle */
    unsigned max_conns;
    uint64_t max_bytes;
    unsigned connect_timeout_ms;
    char *sock_dir;
    int ep, wake;
    struct obx_egress_tag wake_tag;
    pthread_t thr;
    pthread_mutex_t lock; /* guards cmds, stopping, stopped */
    struct obx_egress_cmd *cmds, *cmds_tail;
    bool stopping, stopped;
    struct obx_egress_resolver *resolver;
    const struct obx_egress_policy *policy;
    /* the loop's */
    struct obx_egress_box *boxes;
    struct obx_egress_conn *graveyard;
};

/* Puts fd into the epoll set with want, changes it, or (want 0) takes it out, so that a hangup
 * that cannot be acted on yet is not reported again and again. *cur: what is watched now. */
void obx_egress_watch(struct obx_egress *eg, int fd, struct obx_egress_tag *tag, uint32_t *cur,
                      uint32_t want);

/* egress-conn.c, all on the loop thread: */
/* Accepts what waits on b's socket. */
void obx_egress_accept(struct obx_egress *eg, struct obx_egress_box *b);
/* An event on a connection's client or destination side (tag CLIENT or UPSTREAM). */
void obx_egress_conn_event(struct obx_egress *eg, struct obx_egress_tag *tag, uint32_t ev);
/* Hands finished lookups to their connections. */
void obx_egress_take_jobs(struct obx_egress *eg);
/* Expires what is due; returns the next deadline (monotonic ms, 0: none). */
uint64_t obx_egress_timers(struct obx_egress *eg);
/* Closes every connection of b. */
void obx_egress_box_kill_conns(struct obx_egress *eg, struct obx_egress_box *b);
/* Frees the connections closed during the last batch of events. */
void obx_egress_bury(struct obx_egress *eg);

#endif
