/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the worker registry keeps in the store: a connected worker's registration (one
 * transaction), its heartbeats and the end of its stream, the stored labels the handshake checks,
 * and the sticky routes of terminal sessions. Each call holds the store lock for one statement or
 * transaction.
 */
#include "store-internal.h"

static int tx(struct obx_store *st, const char *sql, struct obx_error *err)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : store_fail(st, err, rc, sql);
}

/* Runs sql with text parameters args[0..n) then integers nums[0..n_nums); returns the number of
 * rows changed or a negative errno. Lock held. */
static int run(struct obx_store *st, const char *sql, const char *const *args, size_t n,
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

static bool protected_label(const char *key)
{
    return obx_streq(key, OBX_WORKER_LABEL_OWNER) || obx_streq(key, OBX_WORKER_LABEL_TYPE);
}

static int register_rows(struct obx_store *st, const struct obx_store_registration *reg,
                         struct obx_error *err)
{
    const char *id[] = {reg->node_id};
    if (reg->create) {
        int r = run(st,
                    "INSERT OR IGNORE INTO worker_nodes (node_id, provisioned, "
                    "registered_at_unix_ms, last_seen_at_unix_ms) VALUES (?1, 0, ?2, ?2)",
                    id, 1, &reg->now_ms, 1, err);
        if (r < 0)
            return r;
    }
    const char *node[] = {reg->node_id, reg->session_id, reg->node_name ? reg->node_name : "",
                          reg->executor_kind ? reg->executor_kind : "",
                          reg->version ? reg->version : ""};
    int r = run(st,
                "UPDATE worker_nodes SET session_id = ?2, node_name = CASE WHEN trim(?3) = '' "
                "THEN node_name ELSE ?3 END, executor_kind = ?4, version = ?5, "
                "registered_at_unix_ms = ?6, last_seen_at_unix_ms = ?6 WHERE node_id = ?1",
                node, 5, &reg->now_ms, 1, err);
    if (r == 0)
        return obx_error_set(err, ENOENT, "", "unknown worker");
    if (r < 0)
        return r;
    r = run(st, "DELETE FROM worker_capabilities WHERE node_id = ?1", id, 1, NULL, 0, err);
    for (size_t i = 0; r >= 0 && i < reg->n_caps; i++) {
        const char *args[] = {reg->node_id, reg->caps[i].name};
        const int64_t max = reg->caps[i].max_inflight;
        r = run(st,
                "INSERT OR REPLACE INTO worker_capabilities (node_id, capability_name, "
                "max_inflight) VALUES (?1, ?2, ?3)",
                args, 2, &max, 1, err);
    }
    for (size_t i = 0; r >= 0 && i < reg->n_labels; i++) {
        if (protected_label(reg->labels[i].key) && !reg->create)
            continue;
        const char *args[] = {reg->node_id, reg->labels[i].key, reg->labels[i].value};
        r = run(st,
                "INSERT OR REPLACE INTO worker_labels (node_id, label_key, label_value) VALUES "
                "(?1, ?2, ?3)",
                args, 3, NULL, 0, err);
    }
    return r < 0 ? r : 0;
}

int obx_store_worker_register(struct obx_store *st, const struct obx_store_registration *reg,
                              struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    int r = tx(st, "BEGIN IMMEDIATE", err);
    if (r >= 0) {
        r = register_rows(st, reg, err);
        if (r >= 0)
            r = tx(st, "COMMIT", err);
        if (r < 0)
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&st->lock);
    return r;
}

void obx_store_worker_labels_free(struct obx_store_worker_label *labels, size_t n)
{
    for (size_t i = 0; labels && i < n; i++) {
        free(labels[i].key);
        free(labels[i].value);
    }
    free(labels);
}

int obx_store_worker_labels(struct obx_store *st, const char *node_id,
                            struct obx_store_worker_label **ret, size_t *ret_n,
                            struct obx_error *err)
{
    struct obx_store_worker_label *v = NULL;
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT label_key, label_value FROM worker_labels WHERE node_id = ?1 "
                          "ORDER BY label_key",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, node_id);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            v = obx_xrealloc(v, (n + 1) * sizeof(*v));
            v[n].key = store_col_dup(s, 0);
            v[n++].value = store_col_dup(s, 1);
        }
        if (rc != SQLITE_DONE)
            r = store_fail(st, err, rc, "read worker labels");
    }
    store_unlock(st, &s);
    if (r < 0) {
        obx_store_worker_labels_free(v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int obx_store_worker_seen(struct obx_store *st, const char *node_id, const char *session_id,
                          int64_t now_ms, struct obx_error *err)
{
    const char *args[] = {node_id, session_id};
    pthread_mutex_lock(&st->lock);
    int r = run(st,
                "UPDATE worker_nodes SET last_seen_at_unix_ms = ?3 WHERE node_id = ?1 AND "
                "session_id = ?2",
                args, 2, &now_ms, 1, err);
    if (r == 0) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        r = store_prepare(st, "SELECT 1 FROM worker_nodes WHERE node_id = ?1", &s, err);
        if (r >= 0) {
            store_bind_text(s, 1, node_id);
            int rc = sqlite3_step(s);
            r = rc == SQLITE_ROW    ? -ESTALE
                : rc == SQLITE_DONE ? -ENOENT
                                    : store_fail(st, err, rc, "read worker");
        }
        store_finalizep(&s);
        s = NULL;
    }
    pthread_mutex_unlock(&st->lock);
    return r < 0 ? r : 0;
}

int obx_store_worker_end_session(struct obx_store *st, const char *node_id, const char *session_id,
                                 struct obx_error *err)
{
    const char *args[] = {node_id, session_id};
    pthread_mutex_lock(&st->lock);
    int r =
        run(st, "UPDATE worker_nodes SET session_id = '' WHERE node_id = ?1 AND session_id = ?2",
            args, 2, NULL, 0, err);
    pthread_mutex_unlock(&st->lock);
    return r < 0 ? r : 0;
}

int obx_store_route_put(struct obx_store *st, const char *session_id, const char *node_id,
                        int64_t now_ms, struct obx_error *err)
{
    const char *args[] = {session_id, node_id};
    pthread_mutex_lock(&st->lock);
    int r =
        run(st,
            "INSERT INTO session_routes (session_id, node_id, created_at_unix_ms, "
            "last_used_at_unix_ms) VALUES (?1, ?2, ?3, ?3) ON CONFLICT(session_id) DO UPDATE "
            "SET node_id = excluded.node_id, last_used_at_unix_ms = excluded.last_used_at_unix_ms",
            args, 2, &now_ms, 1, err);
    pthread_mutex_unlock(&st->lock);
    return r < 0 ? r : 0;
}

int obx_store_route_delete(struct obx_store *st, const char *session_id, struct obx_error *err)
{
    const char *args[] = {session_id};
    pthread_mutex_lock(&st->lock);
    int r = run(st, "DELETE FROM session_routes WHERE session_id = ?1", args, 1, NULL, 0, err);
    pthread_mutex_unlock(&st->lock);
    return r < 0 ? r : 0;
}

int obx_store_route_each(struct obx_store *st,
                         void (*fn)(void *userdata, const char *session_id, const char *node_id,
                                    int64_t last_used_ms),
                         void *userdata, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(
        st, "SELECT session_id, node_id, last_used_at_unix_ms FROM session_routes", &s, err);
    if (r >= 0) {
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            fn(userdata, (const char *)sqlite3_column_text(s, 0),
               (const char *)sqlite3_column_text(s, 1), sqlite3_column_int64(s, 2));
        if (rc != SQLITE_DONE)
            r = store_fail(st, err, rc, "read session routes");
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_route_prune(struct obx_store *st, int64_t before_ms, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    int r = run(st, "DELETE FROM session_routes WHERE last_used_at_unix_ms < ?1", NULL, 0,
                &before_ms, 1, err);
    pthread_mutex_unlock(&st->lock);
    return r;
}
