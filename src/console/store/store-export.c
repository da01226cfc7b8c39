/* SPDX-License-Identifier: Apache-2.0 */
/* The exports table: the files exportFile copied out of sessions (routes-export.c keeps the
 * bytes, in the console's export directory, named by the id). */
#include "store-internal.h"

#define EXPORT_COLS                                                                   \
    "export_id, account_id, session_id, file_path, filename, mime_type, size_bytes, " \
    "created_at_unix_ms, expires_at_unix_ms"

void obx_store_export_done(struct obx_store_export *e)
{
    free(e->file_path);
    free(e->filename);
    memset(e, 0, sizeof(*e));
}

int obx_store_export_insert(struct obx_store *st, const struct obx_store_export *e,
                            struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(
        st, "INSERT INTO exports (" EXPORT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", &s,
        err);
    if (r >= 0) {
        store_bind_text(s, 1, e->id);
        store_bind_text(s, 2, e->account_id);
        store_bind_text(s, 3, e->session_id);
        store_bind_text(s, 4, e->file_path);
        store_bind_text(s, 5, e->filename);
        store_bind_text(s, 6, e->mime_type);
        sqlite3_bind_int64(s, 7, e->size_bytes);
        sqlite3_bind_int64(s, 8, e->created_ms);
        sqlite3_bind_int64(s, 9, e->expires_ms);
        r = store_exec_stmt(st, s, "insert export", err);
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_export_get(struct obx_store *st, const char *id, struct obx_store_export *ret,
                         struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT " EXPORT_COLS " FROM exports WHERE export_id = ?1", &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, id);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            memset(ret, 0, sizeof(*ret));
            store_col_text(s, 0, ret->id, sizeof(ret->id));
            store_col_text(s, 1, ret->account_id, sizeof(ret->account_id));
            store_col_text(s, 2, ret->session_id, sizeof(ret->session_id));
            ret->file_path = store_col_dup(s, 3);
            ret->filename = store_col_dup(s, 4);
            store_col_text(s, 5, ret->mime_type, sizeof(ret->mime_type));
            ret->size_bytes = sqlite3_column_int64(s, 6);
            ret->created_ms = sqlite3_column_int64(s, 7);
            ret->expires_ms = sqlite3_column_int64(s, 8);
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = store_fail(st, err, rc, "read export");
        }
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_export_bytes(struct obx_store *st, int64_t now_ms, int64_t *ret,
                           struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(
        st, "SELECT coalesce(sum(size_bytes), 0) FROM exports WHERE expires_at_unix_ms > ?1", &s,
        err);
    if (r >= 0) {
        sqlite3_bind_int64(s, 1, now_ms);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *ret = sqlite3_column_int64(s, 0);
        else
            r = store_fail(st, err, rc, "sum exports");
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_export_prune(struct obx_store *st, int64_t now_ms,
                           void (*fn)(void *userdata, const char *id), void *userdata,
                           struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r =
        store_prepare(st, "SELECT export_id FROM exports WHERE expires_at_unix_ms <= ?1", &s, err);
    if (r >= 0) {
        sqlite3_bind_int64(s, 1, now_ms);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            fn(userdata, (const char *)sqlite3_column_text(s, 0));
        if (rc != SQLITE_DONE)
            r = store_fail(st, err, rc, "list expired exports");
        store_finalizep(&s);
        s = NULL;
    }
    if (r >= 0)
        r = store_prepare(st, "DELETE FROM exports WHERE expires_at_unix_ms <= ?1", &s, err);
    if (r >= 0) {
        sqlite3_bind_int64(s, 1, now_ms);
        r = store_exec_stmt(st, s, "prune exports", err);
    }
    store_unlock(st, &s);
    return r;
}
