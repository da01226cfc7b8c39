/* SPDX-License-Identifier: Apache-2.0 */
/* Trusted tokens and dashboard sessions in the console store. Only hashes are stored. */
#include "store-internal.h"

#define TOKEN_COLS                                                                          \
    "token_id, account_id, name, token_masked, token_hash, generated, created_at_unix_ms, " \
    "updated_at_unix_ms"

static void read_token(sqlite3_stmt *s, struct obx_token *t)
{
    memset(t, 0, sizeof(*t));
    store_col_text(s, 0, t->id, sizeof(t->id));
    store_col_text(s, 1, t->account_id, sizeof(t->account_id));
    store_col_text(s, 2, t->name, sizeof(t->name));
    store_col_text(s, 3, t->token_masked, sizeof(t->token_masked));
    store_col_text(s, 4, t->token_hash, sizeof(t->token_hash));
    t->generated = sqlite3_column_int(s, 5) != 0;
    t->created_ms = sqlite3_column_int64(s, 6);
    t->updated_ms = sqlite3_column_int64(s, 7);
}

static bool row_exists(struct obx_store *st, const char *sql, const char *a, const char *b)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return false;
    store_bind_text(s, 1, a);
    if (b)
        store_bind_text(s, 2, b);
    return sqlite3_step(s) == SQLITE_ROW;
}

int obx_store_token_insert(struct obx_store *st, const struct obx_token *t, const char *name_key,
                           enum obx_store_conflict *ret_conflict, struct obx_error *err)
{
    *ret_conflict = OBX_STORE_CONFLICT_NONE;
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "INSERT INTO trusted_tokens (token_id, account_id, name, name_key, "
                          "token_hash, token_masked, generated, created_at_unix_ms, "
                          "updated_at_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, t->id);
        store_bind_text(s, 2, t->account_id);
        store_bind_text(s, 3, t->name);
        store_bind_text(s, 4, name_key);
        store_bind_text(s, 5, t->token_hash);
        store_bind_text(s, 6, t->token_masked);
        sqlite3_bind_int(s, 7, t->generated ? 1 : 0);
        sqlite3_bind_int64(s, 8, t->created_ms);
        sqlite3_bind_int64(s, 9, t->updated_ms);
        r = store_exec_stmt(st, s, "insert token", err);
    }
    if (r == -EEXIST) {
        if (row_exists(st, "SELECT 1 FROM trusted_tokens WHERE account_id = ?1 AND name_key = ?2",
                       t->account_id, name_key))
            *ret_conflict = OBX_STORE_CONFLICT_NAME;
        else if (row_exists(st, "SELECT 1 FROM trusted_tokens WHERE token_hash = ?1", t->token_hash,
                            NULL))
            *ret_conflict = OBX_STORE_CONFLICT_HASH;
        else
            *ret_conflict = OBX_STORE_CONFLICT_ID;
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_token_list(struct obx_store *st, const char *account_id, struct obx_token **ret,
                         size_t *ret_n, struct obx_error *err)
{
    struct obx_token *items = NULL;
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT " TOKEN_COLS " FROM trusted_tokens WHERE account_id = ?1 "
                          "ORDER BY created_at_unix_ms ASC, rowid ASC",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, account_id);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            items = obx_xrealloc(items, (n + 1) * sizeof(*items));
            read_token(s, &items[n++]);
        }
        if (rc != SQLITE_DONE)
            r = store_fail(st, err, rc, "list tokens");
    }
    store_unlock(st, &s);
    if (r < 0) {
        free(items);
        return r;
    }
    *ret = items;
    *ret_n = n;
    return 0;
}

int obx_store_token_delete(struct obx_store *st, const char *account_id, const char *token_id,
                           struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "DELETE FROM trusted_tokens WHERE token_id = ?1 AND account_id = ?2",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, token_id);
        store_bind_text(s, 2, account_id);
        r = store_exec_stmt(st, s, "delete token", err);
        if (r == 0)
            r = -ENOENT;
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_token_by_hash(struct obx_store *st, const char *token_hash, struct obx_token *ret,
                            struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT " TOKEN_COLS " FROM trusted_tokens WHERE token_hash = ?1", &s,
                          err);
    if (r >= 0) {
        store_bind_text(s, 1, token_hash);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            read_token(s, ret);
        else if (rc == SQLITE_DONE)
            r = -ENOENT;
        else
            r = store_fail(st, err, rc, "read token");
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_session_insert(struct obx_store *st, const char *session_hash, const char *account_id,
                             int64_t created_ms, int64_t expires_ms, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "INSERT INTO dashboard_sessions (session_hash, account_id, "
                          "created_at_unix_ms, expires_at_unix_ms) VALUES (?1, ?2, ?3, ?4)",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, session_hash);
        store_bind_text(s, 2, account_id);
        sqlite3_bind_int64(s, 3, created_ms);
        sqlite3_bind_int64(s, 4, expires_ms);
        r = store_exec_stmt(st, s, "insert session", err);
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

static int session_delete_where(struct obx_store *st, const char *sql, const char *v, int64_t n,
                                struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, sql, &s, err);
    if (r >= 0) {
        if (v)
            store_bind_text(s, 1, v);
        else
            sqlite3_bind_int64(s, 1, n);
        r = store_exec_stmt(st, s, "delete sessions", err);
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_session_lookup(struct obx_store *st, const char *session_hash, int64_t now_ms,
                             struct obx_account *ret, struct obx_error *err)
{
    int64_t expires = 0;
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r =
        store_prepare(st,
                      "SELECT a.account_id, a.username, a.is_admin, a.created_at_unix_ms, "
                      "a.updated_at_unix_ms, s.expires_at_unix_ms FROM dashboard_sessions s "
                      "JOIN accounts a ON a.account_id = s.account_id WHERE s.session_hash = ?1",
                      &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, session_hash);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            memset(ret, 0, sizeof(*ret));
            store_col_text(s, 0, ret->id, sizeof(ret->id));
            store_col_text(s, 1, ret->username, sizeof(ret->username));
            ret->is_admin = sqlite3_column_int(s, 2) != 0;
            ret->created_ms = sqlite3_column_int64(s, 3);
            ret->updated_ms = sqlite3_column_int64(s, 4);
            expires = sqlite3_column_int64(s, 5);
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = store_fail(st, err, rc, "read session");
        }
    }
    store_unlock(st, &s);
    if (r < 0)
        return r;
    if (expires <= now_ms) {
        obx_store_session_delete(st, session_hash, NULL);
        return -ENOENT;
    }
    return 0;
}

int obx_store_session_delete(struct obx_store *st, const char *session_hash, struct obx_error *err)
{
    return session_delete_where(st, "DELETE FROM dashboard_sessions WHERE session_hash = ?1",
                                session_hash, 0, err);
}

int obx_store_session_delete_account(struct obx_store *st, const char *account_id,
                                     struct obx_error *err)
{
    return session_delete_where(st, "DELETE FROM dashboard_sessions WHERE account_id = ?1",
                                account_id, 0, err);
}

int obx_store_session_prune(struct obx_store *st, int64_t now_ms, struct obx_error *err)
{
    return session_delete_where(st, "DELETE FROM dashboard_sessions WHERE expires_at_unix_ms <= ?1",
                                NULL, now_ms, err);
}
