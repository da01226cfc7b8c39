/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console's SQLite store: accounts, trusted tokens, dashboard sessions, tasks and workers
 * (reference §7 plus the hashed session ids we persist so a restart logs nobody out). sqlite3 is
 * used only in store*.c. One connection behind a mutex: every call is a short transaction, safe
 * from any pool thread and never from the HTTP service thread. Errors come back as negative errno:
 * -ENOENT (no such row), -EEXIST (unique conflict), -EIO (database failure, message in err).
 */
#ifndef OBX_CONSOLE_STORE_H
#define OBX_CONSOLE_STORE_H

#include "common/error.h"

struct obx_store;

struct obx_account {
    char id[40];
    char username[260];
    bool is_admin;
    int64_t created_ms;
    int64_t updated_ms;
};

struct obx_token {
    char id[40];
    char account_id[40];
    char name[260];
    char token_masked[300];
    char token_hash[65];
    bool generated;
    int64_t created_ms;
    int64_t updated_ms;
};

enum obx_store_conflict {
    OBX_STORE_CONFLICT_NONE,
    OBX_STORE_CONFLICT_ID,
    OBX_STORE_CONFLICT_NAME,
    OBX_STORE_CONFLICT_HASH,
    OBX_STORE_CONFLICT_OWNER, /* the account already has its one worker-sys */
};

int obx_store_open(const char *path, int busy_timeout_ms, struct obx_store **ret,
                   struct obx_error *err);
void obx_store_close(struct obx_store *st);
/* Schema version after migrations (PRAGMA user_version). */
int obx_store_schema_version(struct obx_store *st);

/* Accounts. username_key is lower(trim(username)). */
int obx_store_admin_count(struct obx_store *st, int64_t *ret, struct obx_error *err);
/* -EEXIST with *ret_conflict = ID or NAME. */
int obx_store_account_insert(struct obx_store *st, const struct obx_account *a,
                             const char *username_key, const char *password_hash,
                             const char *hash_algo, enum obx_store_conflict *ret_conflict,
                             struct obx_error *err);
/* ret_hash/ret_algo may be NULL; otherwise caller frees. */
int obx_store_account_by_key(struct obx_store *st, const char *username_key,
                             struct obx_account *ret, char **ret_hash, char **ret_algo,
                             struct obx_error *err);
int obx_store_account_by_id(struct obx_store *st, const char *id, struct obx_account *ret,
                            char **ret_hash, char **ret_algo, struct obx_error *err);
int obx_store_account_set_password(struct obx_store *st, const char *id, const char *hash,
                                   const char *algo, int64_t now_ms, struct obx_error *err);
/* Newest first. *ret is an array the caller frees. */
int obx_store_account_list(struct obx_store *st, int64_t limit, int64_t offset,
                           struct obx_account **ret, size_t *ret_n, int64_t *ret_total,
                           struct obx_error *err);
/* Deletes a non-admin account with its sessions and tokens. -ENOENT missing, -EPERM admin. */
int obx_store_account_delete(struct obx_store *st, const char *id, struct obx_error *err);

/* Tokens. -EEXIST with *ret_conflict = NAME, HASH or ID (checked in that order). */
int obx_store_token_insert(struct obx_store *st, const struct obx_token *t, const char *name_key,
                           enum obx_store_conflict *ret_conflict, struct obx_error *err);
/* Oldest first. */
int obx_store_token_list(struct obx_store *st, const char *account_id, struct obx_token **ret,
                         size_t *ret_n, struct obx_error *err);
/* Only the caller's own token; -ENOENT otherwise. */
int obx_store_token_delete(struct obx_store *st, const char *account_id, const char *token_id,
                           struct obx_error *err);
/* Bearer lookup: the token row (with its hash) for a hash. */
int obx_store_token_by_hash(struct obx_store *st, const char *token_hash, struct obx_token *ret,
                            struct obx_error *err);

/* Dashboard sessions, keyed by the HMAC of the cookie value. */
int obx_store_session_insert(struct obx_store *st, const char *session_hash, const char *account_id,
                             int64_t created_ms, int64_t expires_ms, struct obx_error *err);
/* The live session's account, read fresh (a role change applies at once). An expired session is
 * deleted and gives -ENOENT. */
int obx_store_session_lookup(struct obx_store *st, const char *session_hash, int64_t now_ms,
                             struct obx_account *ret, struct obx_error *err);
int obx_store_session_delete(struct obx_store *st, const char *session_hash, struct obx_error *err);
int obx_store_session_delete_account(struct obx_store *st, const char *account_id,
                                     struct obx_error *err);
int obx_store_session_prune(struct obx_store *st, int64_t now_ms, struct obx_error *err);

/* Tasks (reference §7). Statuses: queued, dispatched, running (live), then exactly one of
 * succeeded, failed, timeout, canceled. */
#define OBX_TASK_REQUEST_ID_MAX 256
struct obx_task {
    char id[40];
    char owner_id[40];
    char request_id[OBX_TASK_REQUEST_ID_MAX + 1];
    char capability[64];
    char input_hash[65];
    char status[16];
    char command_id[40];
    char *result_json; /* owned; "" when none */
    char error_code[64];
    char *error_message; /* owned; "" when none */
    int64_t created_ms, updated_ms, deadline_ms, completed_ms, expires_ms;
};
void obx_task_done(struct obx_task *t);
bool obx_task_status_terminal(const char *status);

/* Inserts a queued task. -EEXIST: (owner, request_id) or the id is taken. */
int obx_store_task_insert(struct obx_store *st, const struct obx_task *t, const char *input_json,
                          struct obx_error *err);
int obx_store_task_get(struct obx_store *st, const char *id, struct obx_task *ret,
                       struct obx_error *err);
int obx_store_task_by_request(struct obx_store *st, const char *owner_id, const char *request_id,
                              struct obx_task *ret, struct obx_error *err);
/* queued -> dispatched -> running (command_id may be NULL). Returns 1 when changed, 0 when the
 * task is no longer live. */
int obx_store_task_advance(struct obx_store *st, const char *id, const char *status,
                           const char *command_id, int64_t now_ms, struct obx_error *err);
/* A terminal write, guarded so the first writer wins: 1 when this call ended the task, 0 when it
 * had already ended. result_json, code and message may be NULL. */
int obx_store_task_finish(struct obx_store *st, const char *id, const char *status,
                          const char *result_json, const char *code, const char *message,
                          int64_t now_ms, int64_t retention_ms, struct obx_error *err);
/* An account's tasks, newest first (created, then id), optionally only those with status
 * (NULL: all). *ret is an array of n tasks (free each with obx_task_done(), then the array). */
int obx_store_task_list(struct obx_store *st, const char *owner_id, const char *status,
                        int64_t limit, int64_t offset, struct obx_task **ret, size_t *ret_n,
                        int64_t *ret_total, struct obx_error *err);
/* Startup: every live task becomes failed/console_restarted. Returns the number changed. */
int obx_store_task_recover(struct obx_store *st, int64_t now_ms, int64_t retention_ms,
                           struct obx_error *err);
/* Deletes ended tasks whose expires_at has passed. Returns the number deleted. */
int obx_store_task_prune(struct obx_store *st, int64_t now_ms, struct obx_error *err);

/* Workers (reference §1.5, §7): nodes with their capabilities and labels, the credential (only
 * the HMAC of the secret) and the one-worker-sys-per-account claim. */
#define OBX_WORKER_NODE_ID_MAX 128
#define OBX_WORKER_TYPE_NORMAL "normal"
#define OBX_WORKER_TYPE_SYS "worker-sys"
#define OBX_WORKER_LABEL_SOURCE "source"
#define OBX_WORKER_LABEL_OWNER "obx.owner_id"
#define OBX_WORKER_LABEL_TYPE "obx.worker_type"
#define OBX_WORKER_HASH_ALGO "hmac-sha256"

struct obx_store_worker_cap {
    char *name; /* as declared */
    int max_inflight;
};

struct obx_store_worker_label {
    char *key, *value;
};

struct obx_store_worker_node {
    char id[OBX_WORKER_NODE_ID_MAX + 1];
    char *name, *executor_kind, *version; /* owned */
    bool online;
    int64_t registered_ms, last_seen_ms;
    struct obx_store_worker_cap *caps; /* owned, n_caps */
    size_t n_caps;
    struct obx_store_worker_label *labels; /* owned, sorted by key */
    size_t n_labels;
};
/* Frees n nodes and the array. */
void obx_store_worker_nodes_free(struct obx_store_worker_node *nodes, size_t n);

enum obx_store_worker_status_filter {
    OBX_WORKER_STATUS_ALL,
    OBX_WORKER_STATUS_ONLINE,
    OBX_WORKER_STATUS_OFFLINE,
};

/* Which nodes a caller sees. A node is online when it has a live session that was seen at or
 * after online_since_ms. */
struct obx_store_worker_scope {
    const char *owner_id; /* NULL: every node (admin); else only this account's worker-sys */
    enum obx_store_worker_status_filter status;
    int64_t online_since_ms;
};

struct obx_store_worker_provision {
    const char *node_id, *node_name, *type, *owner_id, *source, *secret_hash;
    int64_t registered_ms, last_seen_ms;
};

/* Inserts a provisioned node, its labels, its credential and (worker-sys) the owner claim, in one
 * transaction. -EEXIST with *ret_conflict = ID or OWNER. */
int obx_store_worker_provision(struct obx_store *st, const struct obx_store_worker_provision *p,
                               enum obx_store_conflict *ret_conflict, struct obx_error *err);
/* Oldest registration first, then node id. *ret is freed with obx_store_worker_nodes_free(). */
int obx_store_worker_list(struct obx_store *st, const struct obx_store_worker_scope *scope,
                          int64_t limit, int64_t offset, struct obx_store_worker_node **ret,
                          size_t *ret_n, int64_t *ret_total, struct obx_error *err);
struct obx_store_worker_stats {
    int64_t total, online, stale;
};
/* Counts in scope (scope->status is ignored); stale: last seen before stale_before_ms. */
int obx_store_worker_stats(struct obx_store *st, const struct obx_store_worker_scope *scope,
                           int64_t stale_before_ms, struct obx_store_worker_stats *ret,
                           struct obx_error *err);
/* Deletes a node with everything hanging off it. owner_id as in the scope; -ENOENT when no such
 * node is visible to the caller. */
int obx_store_worker_delete(struct obx_store *st, const char *node_id, const char *owner_id,
                            struct obx_error *err);
/* The stored secret hash of a node (for the worker handshake). -ENOENT without a credential. */
int obx_store_worker_secret_hash(struct obx_store *st, const char *node_id, char out[static 65],
                                 struct obx_error *err);
/* Startup: no node has a live session any more. */
int obx_store_worker_clear_sessions(struct obx_store *st, struct obx_error *err);

/* The worker registry's writes (store-registry.c). */
struct obx_store_registration {
    const char *node_id, *session_id, *node_name, *executor_kind, *version;
    const struct obx_store_worker_cap *caps; /* replace the stored ones */
    size_t n_caps;
    const struct obx_store_worker_label *labels; /* merged into the stored ones (below) */
    size_t n_labels;
    int64_t now_ms;
    bool create; /* a node the console runs itself: created when missing, not provisioned, and
                  * its labels (type included) are the console's own */
};
/* A worker connected (reference §3.2 step 8), in one transaction: the node gets the session, its
 * name (unless blank: the stored one stays), kind and version, registered = last seen = now; its
 * capabilities are replaced; the hello's labels are merged into the stored ones, except owner and
 * type, which keep their stored values. -ENOENT for an unknown node without create. */
int obx_store_worker_register(struct obx_store *st, const struct obx_store_registration *reg,
                              struct obx_error *err);
/* The stored labels of a node; *ret (n entries) is freed with obx_store_worker_labels_free(). */
int obx_store_worker_labels(struct obx_store *st, const char *node_id,
                            struct obx_store_worker_label **ret, size_t *ret_n,
                            struct obx_error *err);
void obx_store_worker_labels_free(struct obx_store_worker_label *labels, size_t n);
/* A heartbeat: last seen = now for the node's session. -ENOENT when the node is gone, -ESTALE
 * when it has another session now. */
int obx_store_worker_seen(struct obx_store *st, const char *node_id, const char *session_id,
                          int64_t now_ms, struct obx_error *err);
/* A stream ended: clears the node's session if it still is session_id. */
int obx_store_worker_end_session(struct obx_store *st, const char *node_id, const char *session_id,
                                 struct obx_error *err);

/* exportFile's files: where each is (its id names the file in the console's export
 * directory), whose it is, what it is and until when its link lasts. */
struct obx_store_export {
    char id[40];
    char account_id[40];
    char session_id[130]; /* as the client named it */
    char *file_path;      /* in the box; owned */
    char *filename;       /* owned */
    char mime_type[64];
    int64_t size_bytes, created_ms, expires_ms;
};
void obx_store_export_done(struct obx_store_export *e);
int obx_store_export_insert(struct obx_store *st, const struct obx_store_export *e,
                            struct obx_error *err);
int obx_store_export_get(struct obx_store *st, const char *id, struct obx_store_export *ret,
                         struct obx_error *err);
/* The bytes of the exports whose links have not expired at now_ms. */
int obx_store_export_bytes(struct obx_store *st, int64_t now_ms, int64_t *ret,
                           struct obx_error *err);
/* Deletes the rows of the exports expired at now_ms; fn(userdata, id) for each first. Returns
 * how many. */
int obx_store_export_prune(struct obx_store *st, int64_t now_ms,
                           void (*fn)(void *userdata, const char *id), void *userdata,
                           struct obx_error *err);

/* Sticky routes: a (console-scoped) terminal session id to the node that has its box. */
int obx_store_route_put(struct obx_store *st, const char *session_id, const char *node_id,
                        int64_t now_ms, struct obx_error *err);
int obx_store_route_delete(struct obx_store *st, const char *session_id, struct obx_error *err);
/* Calls fn for every route; used once at startup. */
int obx_store_route_each(struct obx_store *st,
                         void (*fn)(void *userdata, const char *session_id, const char *node_id,
                                    int64_t last_used_ms),
                         void *userdata, struct obx_error *err);
/* Deletes routes unused since before_ms; returns how many. */
int obx_store_route_prune(struct obx_store *st, int64_t before_ms, struct obx_error *err);

#endif
