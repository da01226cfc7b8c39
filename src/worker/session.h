/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Terminal sessions: a session id maps to one long-lived box. A session runs one command at a time
 * (busy), has a lease that each command extends (counted from the command's end, never
 * shortened), and is reaped by a background thread once idle past its lease. Busy sessions are
 * never reaped.
 */
#ifndef OBX_WORKER_SESSION_H
#define OBX_WORKER_SESSION_H

#include "box.h"

struct obx_worker_sessions;

/* The network of a box, from a call's "network": false, true or "allowlist". */
enum obx_net {
    OBX_NET_NONE,      /* loopback only */
    OBX_NET_FULL,      /* the runtime's network */
    OBX_NET_ALLOWLIST, /* loopback only, plus the worker's egress proxy */
};

struct obx_worker_session_factory {
    /* Gets a started box for a new session (called without any session lock held); call is the
     * caller's, for its on_log; net: the box's network. */
    int (*start)(void *userdata, const char *session_id, enum obx_net net, struct obx_call *call,
                 struct obx_box **ret, struct obx_error *err);
    void *userdata;
};

struct obx_worker_sessions *
obx_worker_sessions_new(unsigned max_sessions, const struct obx_worker_session_factory *factory);
/* Stops the reaper and every session's box. */
void obx_worker_sessions_free(struct obx_worker_sessions *s);

struct obx_worker_session_lease {
    struct obx_box *box; /* a reference owned by the lease */
    bool created;
    char id[129];
};

enum {
    OBX_WORKER_SESSION_CREATE = 1 << 0, /* create the session when it does not exist */
};

/* Takes the session for one command: marks it busy and returns its box. Unknown id: creates it
 * with OBX_WORKER_SESSION_CREATE (starting a box with network net), else session_not_found. A busy
 * session: session_busy. The session count is bounded: no_capacity. A net other than
 * OBX_NET_NONE that is not the session's own is invalid_payload: network is chosen when a
 * session starts. */
int obx_worker_sessions_acquire(struct obx_worker_sessions *s, const char *id, unsigned flags,
                                enum obx_net net, struct obx_call *call,
                                struct obx_worker_session_lease *ret, struct obx_error *err);

/* Ends the command: marks the session idle and, when extend_sec > 0, extends its lease to at
 * least now + extend_sec. A session whose box died is dropped. Returns the lease expiry in Unix
 * ms. */
int64_t obx_worker_sessions_release(struct obx_worker_sessions *s,
                                    struct obx_worker_session_lease *lease, int extend_sec);

/* Number of live sessions. */
unsigned obx_worker_sessions_count(struct obx_worker_sessions *s);

struct obx_worker_session_info {
    char id[129];
    int64_t lease_until_unix_ms;
    bool busy;
    int64_t created_unix_ms, last_used_unix_ms;
};

/* Copies up to max live sessions (those whose box started) into out; returns how many. */
size_t obx_worker_sessions_list(struct obx_worker_sessions *s, struct obx_worker_session_info *out,
                                size_t max);

/* Takes the session for a file operation, which may run beside a command and beside other file
 * operations: it is not made busy, but it is not reaped while the operation runs. Errors:
 * session_not_found (saying how it ended, when it did), session_busy while its first command
 * starts it. */
int obx_worker_sessions_use(struct obx_worker_sessions *s, const char *id,
                            struct obx_worker_session_lease *ret, struct obx_error *err);
/* Ends the file operation; the lease lasts at least extend_sec from now. */
void obx_worker_sessions_unuse(struct obx_worker_sessions *s,
                               struct obx_worker_session_lease *lease, int extend_sec);

/* A session's state; errors as obx_worker_sessions_use(). */
int obx_worker_sessions_info(struct obx_worker_sessions *s, const char *id,
                             struct obx_worker_session_info *ret, struct obx_error *err);
/* Extends the lease to at least now + sec (never shortening it); *ret: the session after. */
int obx_worker_sessions_renew(struct obx_worker_sessions *s, const char *id, int sec,
                              struct obx_worker_session_info *ret, struct obx_error *err);
/* Ends the session now: its box is killed with every process in it (a command running there
 * fails) and removed. A later call naming it learns that it was closed. */
int obx_worker_sessions_close(struct obx_worker_sessions *s, const char *id, struct obx_error *err);

#endif
