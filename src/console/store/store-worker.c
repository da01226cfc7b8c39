/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker nodes in the console store: provisioning (node, labels, credential hash and the
 * worker-sys claim in one transaction), the scoped list and counts behind /api/v1/workers, delete,
 * and the credential lookup for the worker handshake. Scope and status are SQL conditions so a
 * page reads only its own rows. Every call holds the store lock for one short statement or
 * transaction.
 */
#include "store-internal.h"

/* ?1 owner (NULL: every node), ?2 online_since_ms, ?3 status filter. */
#define SCOPE_SQL                                                                                \
    "(?1 IS NULL OR (EXISTS (SELECT 1 FROM worker_labels l WHERE l.node_id = n.node_id AND "     \
    "l.label_key = '" OBX_WORKER_LABEL_OWNER "' AND l.label_value = ?1) AND EXISTS (SELECT 1 "   \
    "FROM worker_labels l WHERE l.node_id = n.node_id AND l.label_key = '" OBX_WORKER_LABEL_TYPE \
    "' AND l.label_value = '" OBX_WORKER_TYPE_SYS "')))"
/* Online needs a live session, not only a recent heartbeat: a worker that disconnected is offline
 * at once. */
#define ONLINE_SQL "(n.session_id <> '' AND n.last_seen_at_unix_ms >= ?2)"
#define STATUS_SQL "(?3 = 0 OR (?3 = 1) = " ONLINE_SQL ")"
#define NODE_COLS                                                                   \
    "n.node_id, n.node_name, n.executor_kind, n.version, n.registered_at_unix_ms, " \
    "n.last_seen_at_unix_ms, " ONLINE_SQL

static void bind_scope(sqlite3_stmt *s, const struct obx_store_worker_scope *scope)
{
    if (scope->owner_id)
        store_bind_text(s, 1, scope->owner_id);
    else
        sqlite3_bind_null(s, 1);
    sqlite3_bind_int64(s, 2, scope->online_since_ms);
    sqlite3_bind_int(s, 3, (int)scope->status);
}

static void node_done(struct obx_store_worker_node *n)
{
    free(n->name);
    free(n->executor_kind);
    free(n->version);
    for (size_t i = 0; i < n->n_caps; i++)
        free(n->caps[i].name);
    free(n->caps);
    for (size_t i = 0; i < n->n_labels; i++) {
        free(n->labels[i].key);
        free(n->labels[i].value);
    }
    free(n->labels);
}

void obx_store_worker_nodes_free(struct obx_store_worker_node *nodes, size_t n)
{
    for (size_t i = 0; nodes && i < n; i++)
        node_done(&nodes[i]);
    free(nodes);
}

static int tx(struct obx_store *st, const char *sql, struct obx_error *err)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : store_fail(st, err, rc, sql);
}

/* One parameterised insert or delete; returns the number of rows changed. */
static int exec_text(struct obx_store *st, const char *sql, const char *const *args, size_t n,
                     const int64_t *nums, size_t n_nums, struct obx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, sql, &s, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        store_bind_text(s, (int)i + 1, args[i]);
    for (size_t i = 0; i < n_nums; i++)
        sqlite3_bind_int64(s, (int)(n + i) + 1, nums[i]);
    return store_exec_stmt(st, s, sql, err);
}

static int provision_rows(struct obx_store *st, const struct obx_store_worker_provision *p,
                          enum obx_store_conflict *ret_conflict, struct obx_error *err)
{
    const char *node[] = {p->node_id, p->node_name};
    const int64_t times[] = {p->registered_ms, p->last_seen_ms};
    int r = exec_text(st,
                      "INSERT INTO worker_nodes (node_id, provisioned, node_name, "
                      "registered_at_unix_ms, last_seen_at_unix_ms) VALUES (?1, 1, ?2, ?3, ?4)",
                      node, 2, times, 2, err);
    if (r == -EEXIST)
        *ret_conflict = OBX_STORE_CONFLICT_ID;
    if (r < 0)
        return r;
    const char *labels[][2] = {
        {OBX_WORKER_LABEL_SOURCE, p->source},
        {OBX_WORKER_LABEL_OWNER, p->owner_id},
        {OBX_WORKER_LABEL_TYPE, p->type},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(labels); i++) {
        const char *args[] = {p->node_id, labels[i][0], labels[i][1]};
        r = exec_text(st,
                      "INSERT INTO worker_labels (node_id, label_key, label_value) "
                      "VALUES (?1, ?2, ?3)",
                      args, 3, NULL, 0, err);
        if (r < 0)
            return r;
    }
    if (obx_streq(p->type, OBX_WORKER_TYPE_SYS)) {
        /* The primary key on owner_id is what makes "one worker-sys per account" hold under
         * concurrent requests. */
        const char *args[] = {p->owner_id, p->node_id};
        r = exec_text(st,
                      "INSERT OR IGNORE INTO worker_sys_owner_claims (owner_id, node_id, "
                      "claimed_at_unix_ms) VALUES (?1, ?2, ?3)",
                      args, 2, &p->registered_ms, 1, err);
        if (r == 0) {
            *ret_conflict = OBX_STORE_CONFLICT_OWNER;
            return obx_error_set(err, EEXIST, "", "worker-sys already claimed");
        }
        if (r < 0)
            return r;
    }
    const char *cred[] = {p->node_id, p->secret_hash, OBX_WORKER_HASH_ALGO};
    const int64_t created[] = {p->registered_ms, p->registered_ms};
    r = exec_text(st,
                  "INSERT INTO worker_credentials (node_id, secret_hash, hash_algo, "
                  "created_at_unix_ms, updated_at_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                  cred, 3, created, 2, err);
    return r < 0 ? r : 0;
}

int obx_store_worker_provision(struct obx_store *st, const struct obx_store_worker_provision *p,
                               enum obx_store_conflict *ret_conflict, struct obx_error *err)
{
    *ret_conflict = OBX_STORE_CONFLICT_NONE;
    pthread_mutex_lock(&st->lock);
    int r = tx(st, "BEGIN IMMEDIATE", err);
    if (r >= 0) {
        r = provision_rows(st, p, ret_conflict, err);
        if (r >= 0)
            r = tx(st, "COMMIT", err);
        if (r < 0)
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&st->lock);
    return r < 0 ? r : 0;
}

/* Capabilities and labels of one node (lock held). */
static int read_children(struct obx_store *st, struct obx_store_worker_node *n,
                         struct obx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *c = NULL, *l = NULL;
    int r = store_prepare(st,
                          "SELECT capability_name, max_inflight FROM worker_capabilities "
                          "WHERE node_id = ?1 ORDER BY capability_name",
                          &c, err);
    if (r < 0)
        return r;
    store_bind_text(c, 1, n->id);
    int rc;
    while ((rc = sqlite3_step(c)) == SQLITE_ROW) {
        n->caps = obx_xrealloc(n->caps, (n->n_caps + 1) * sizeof(*n->caps));
        n->caps[n->n_caps].name = store_col_dup(c, 0);
        n->caps[n->n_caps++].max_inflight = sqlite3_column_int(c, 1);
    }
    if (rc != SQLITE_DONE)
        return store_fail(st, err, rc, "read worker capabilities");
    r = store_prepare(st,
                      "SELECT label_key, label_value FROM worker_labels WHERE node_id = ?1 "
                      "ORDER BY label_key",
                      &l, err);
    if (r < 0)
        return r;
    store_bind_text(l, 1, n->id);
    while ((rc = sqlite3_step(l)) == SQLITE_ROW) {
        n->labels = obx_xrealloc(n->labels, (n->n_labels + 1) * sizeof(*n->labels));
        n->labels[n->n_labels].key = store_col_dup(l, 0);
        n->labels[n->n_labels++].value = store_col_dup(l, 1);
    }
    if (rc != SQLITE_DONE)
        return store_fail(st, err, rc, "read worker labels");
    return 0;
}

static int list_locked(struct obx_store *st, const struct obx_store_worker_scope *scope,
                       int64_t limit, int64_t offset, struct obx_store_worker_node **items,
                       size_t *n, int64_t *ret_total, struct obx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *c = NULL, *s = NULL;
    int r = store_prepare(
        st, "SELECT count(*) FROM worker_nodes n WHERE " SCOPE_SQL " AND " STATUS_SQL, &c, err);
    if (r < 0)
        return r;
    bind_scope(c, scope);
    int rc = sqlite3_step(c);
    if (rc != SQLITE_ROW)
        return store_fail(st, err, rc, "count workers");
    *ret_total = sqlite3_column_int64(c, 0);
    r = store_prepare(st,
                      "SELECT " NODE_COLS " FROM worker_nodes n WHERE " SCOPE_SQL " AND " STATUS_SQL
                      " ORDER BY n.registered_at_unix_ms ASC, n.rowid ASC "
                      "LIMIT ?4 OFFSET ?5",
                      &s, err);
    if (r < 0)
        return r;
    bind_scope(s, scope);
    sqlite3_bind_int64(s, 4, limit);
    sqlite3_bind_int64(s, 5, offset);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        *items = obx_xrealloc(*items, (*n + 1) * sizeof(**items));
        struct obx_store_worker_node *w = &(*items)[(*n)++];
        memset(w, 0, sizeof(*w));
        store_col_text(s, 0, w->id, sizeof(w->id));
        w->name = store_col_dup(s, 1);
        w->executor_kind = store_col_dup(s, 2);
        w->version = store_col_dup(s, 3);
        w->registered_ms = sqlite3_column_int64(s, 4);
        w->last_seen_ms = sqlite3_column_int64(s, 5);
        w->online = sqlite3_column_int(s, 6) != 0;
    }
    if (rc != SQLITE_DONE)
        return store_fail(st, err, rc, "list workers");
    for (size_t i = 0; i < *n; i++) {
        r = read_children(st, &(*items)[i], err);
        if (r < 0)
            return r;
    }
    return 0;
}

int obx_store_worker_list(struct obx_store *st, const struct obx_store_worker_scope *scope,
                          int64_t limit, int64_t offset, struct obx_store_worker_node **ret,
                          size_t *ret_n, int64_t *ret_total, struct obx_error *err)
{
    struct obx_store_worker_node *items = NULL;
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    int r = list_locked(st, scope, limit, offset, &items, &n, ret_total, err);
    pthread_mutex_unlock(&st->lock);
    if (r < 0) {
        obx_store_worker_nodes_free(items, n);
        return r;
    }
    *ret = items;
    *ret_n = n;
    return 0;
}

int obx_store_worker_stats(struct obx_store *st, const struct obx_store_worker_scope *scope,
                           int64_t stale_before_ms, struct obx_store_worker_stats *ret,
                           struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT count(*), coalesce(sum(" ONLINE_SQL "), 0), "
                          "coalesce(sum(n.last_seen_at_unix_ms < ?4), 0) "
                          "FROM worker_nodes n WHERE " SCOPE_SQL,
                          &s, err);
    if (r >= 0) {
        bind_scope(s, scope);
        sqlite3_bind_int64(s, 4, stale_before_ms);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            ret->total = sqlite3_column_int64(s, 0);
            ret->online = sqlite3_column_int64(s, 1);
            ret->stale = sqlite3_column_int64(s, 2);
        } else {
            r = store_fail(st, err, rc, "count workers");
        }
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_worker_delete(struct obx_store *st, const char *node_id, const char *owner_id,
                            struct obx_error *err)
{
    const char *args[] = {owner_id, node_id}; /* a NULL owner binds SQL NULL: every node */
    pthread_mutex_lock(&st->lock);
    /* Capabilities, labels, the credential and the claim go with the node (ON DELETE CASCADE). */
    int r = exec_text(st,
                      "DELETE FROM worker_nodes WHERE node_id IN (SELECT n.node_id FROM "
                      "worker_nodes n WHERE n.node_id = ?2 AND " SCOPE_SQL ")",
                      args, 2, NULL, 0, err);
    pthread_mutex_unlock(&st->lock);
    return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int obx_store_worker_secret_hash(struct obx_store *st, const char *node_id, char out[static 65],
                                 struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT secret_hash FROM worker_credentials WHERE node_id = ?1 AND "
                          "hash_algo = '" OBX_WORKER_HASH_ALGO "'",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, node_id);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            store_col_text(s, 0, out, 65);
        else if (rc == SQLITE_DONE)
            r = -ENOENT;
        else
            r = store_fail(st, err, rc, "read worker credential");
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_worker_clear_sessions(struct obx_store *st, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    int r = exec_text(st, "UPDATE worker_nodes SET session_id = '' WHERE session_id <> ''", NULL, 0,
                      NULL, 0, err);
    pthread_mutex_unlock(&st->lock);
    return r < 0 ? r : 0;
}
