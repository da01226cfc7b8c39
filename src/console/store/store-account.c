/* SPDX-License-Identifier: Apache-2.0 */
/* Accounts in the console store: insert, lookup by id or username key, password, list, delete. */
#include "store-internal.h"

#define ACCOUNT_COLS                                                                          \
    "account_id, username, is_admin, created_at_unix_ms, updated_at_unix_ms, password_hash, " \
    "hash_algo"

static void read_account(sqlite3_stmt *s, struct obx_account *a)
{
    memset(a, 0, sizeof(*a));
    store_col_text(s, 0, a->id, sizeof(a->id));
    store_col_text(s, 1, a->username, sizeof(a->username));
    a->is_admin = sqlite3_column_int(s, 2) != 0;
    a->created_ms = sqlite3_column_int64(s, 3);
    a->updated_ms = sqlite3_column_int64(s, 4);
}

int obx_store_admin_count(struct obx_store *st, int64_t *ret, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT count(*) FROM accounts WHERE is_admin = 1", &s, err);
    if (r >= 0) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *ret = sqlite3_column_int64(s, 0);
        else
            r = store_fail(st, err, rc, "count admins");
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

static int account_key_exists(struct obx_store *st, const char *col, const char *v)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    _cleanup_free_ char *sql = obx_xasprintf("SELECT 1 FROM accounts WHERE %s = ?1", col);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return 0;
    store_bind_text(s, 1, v);
    return sqlite3_step(s) == SQLITE_ROW;
}

int obx_store_account_insert(struct obx_store *st, const struct obx_account *a,
                             const char *username_key, const char *password_hash,
                             const char *hash_algo, enum obx_store_conflict *ret_conflict,
                             struct obx_error *err)
{
    *ret_conflict = OBX_STORE_CONFLICT_NONE;
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "INSERT INTO accounts (account_id, username, username_key, "
                          "password_hash, hash_algo, is_admin, created_at_unix_ms, "
                          "updated_at_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, a->id);
        store_bind_text(s, 2, a->username);
        store_bind_text(s, 3, username_key);
        store_bind_text(s, 4, password_hash);
        store_bind_text(s, 5, hash_algo);
        sqlite3_bind_int(s, 6, a->is_admin ? 1 : 0);
        sqlite3_bind_int64(s, 7, a->created_ms);
        sqlite3_bind_int64(s, 8, a->updated_ms);
        r = store_exec_stmt(st, s, "insert account", err);
        if (r == -EEXIST)
            *ret_conflict = account_key_exists(st, "username_key", username_key)
                                ? OBX_STORE_CONFLICT_NAME
                                : OBX_STORE_CONFLICT_ID;
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

static int account_get(struct obx_store *st, const char *col, const char *v,
                       struct obx_account *ret, char **ret_hash, char **ret_algo,
                       struct obx_error *err)
{
    _cleanup_free_ char *sql =
        obx_xasprintf("SELECT " ACCOUNT_COLS " FROM accounts WHERE %s = ?1", col);
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, sql, &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, v);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            read_account(s, ret);
            if (ret_hash)
                *ret_hash = store_col_dup(s, 5);
            if (ret_algo)
                *ret_algo = store_col_dup(s, 6);
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = store_fail(st, err, rc, "read account");
        }
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_account_by_key(struct obx_store *st, const char *username_key,
                             struct obx_account *ret, char **ret_hash, char **ret_algo,
                             struct obx_error *err)
{
    return account_get(st, "username_key", username_key, ret, ret_hash, ret_algo, err);
}

int obx_store_account_by_id(struct obx_store *st, const char *id, struct obx_account *ret,
                            char **ret_hash, char **ret_algo, struct obx_error *err)
{
    return account_get(st, "account_id", id, ret, ret_hash, ret_algo, err);
}

int obx_store_account_set_password(struct obx_store *st, const char *id, const char *hash,
                                   const char *algo, int64_t now_ms, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "UPDATE accounts SET password_hash = ?2, hash_algo = ?3, "
                          "updated_at_unix_ms = ?4 WHERE account_id = ?1",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, id);
        store_bind_text(s, 2, hash);
        store_bind_text(s, 3, algo);
        sqlite3_bind_int64(s, 4, now_ms);
        r = store_exec_stmt(st, s, "update password", err);
        if (r == 0)
            r = -ENOENT;
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_account_list(struct obx_store *st, int64_t limit, int64_t offset,
                           struct obx_account **ret, size_t *ret_n, int64_t *ret_total,
                           struct obx_error *err)
{
    struct obx_account *items = NULL;
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *c = NULL, *s = NULL;
    int r = store_prepare(st, "SELECT count(*) FROM accounts", &c, err);
    if (r >= 0) {
        int rc = sqlite3_step(c);
        if (rc == SQLITE_ROW)
            *ret_total = sqlite3_column_int64(c, 0);
        else
            r = store_fail(st, err, rc, "count accounts");
    }
    if (r >= 0)
        r = store_prepare(st,
                          "SELECT " ACCOUNT_COLS " FROM accounts ORDER BY created_at_unix_ms "
                          "DESC, rowid DESC LIMIT ?1 OFFSET ?2",
                          &s, err);
    if (r >= 0) {
        sqlite3_bind_int64(s, 1, limit);
        sqlite3_bind_int64(s, 2, offset);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            items = obx_xrealloc(items, (n + 1) * sizeof(*items));
            read_account(s, &items[n++]);
        }
        if (rc != SQLITE_DONE)
            r = store_fail(st, err, rc, "list accounts");
    }
    store_finalizep(&c);
    c = NULL;
    store_unlock(st, &s);
    if (r < 0) {
        free(items);
        return r;
    }
    *ret = items;
    *ret_n = n;
    return 0;
}

int obx_store_account_delete(struct obx_store *st, const char *id, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    /* Sessions and tokens go with the account (ON DELETE CASCADE). */
    int r =
        store_prepare(st, "DELETE FROM accounts WHERE account_id = ?1 AND is_admin = 0", &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, id);
        r = store_exec_stmt(st, s, "delete account", err);
    }
    if (r == 0)
        r = account_key_exists(st, "account_id", id) ? -EPERM : -ENOENT;
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}
