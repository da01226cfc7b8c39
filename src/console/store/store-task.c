/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tasks in the console store (reference §7). Every terminal write is guarded with
 * "WHERE status IN (queued, dispatched, running)", so of a finishing executor, a cancel and the
 * restart recovery exactly one wins and the others see 0 rows changed.
 */
#include "store-internal.h"

#define TASK_COLS                                                                              \
    "task_id, owner_id, request_id, capability, input_hash, status, command_id, result_json, " \
    "error_code, error_message, created_at_unix_ms, updated_at_unix_ms, deadline_at_unix_ms, " \
    "completed_at_unix_ms, expires_at_unix_ms"

#define LIVE "status IN ('queued', 'dispatched', 'running')"

void obx_task_done(struct obx_task *t)
{
    free(t->result_json);
    free(t->error_message);
    memset(t, 0, sizeof(*t));
}

bool obx_task_status_terminal(const char *status)
{
    return obx_streq(status, "succeeded") || obx_streq(status, "failed") ||
           obx_streq(status, "timeout") || obx_streq(status, "canceled");
}

static void read_task(sqlite3_stmt *s, struct obx_task *t)
{
    memset(t, 0, sizeof(*t));
    store_col_text(s, 0, t->id, sizeof(t->id));
    store_col_text(s, 1, t->owner_id, sizeof(t->owner_id));
    store_col_text(s, 2, t->request_id, sizeof(t->request_id));
    store_col_text(s, 3, t->capability, sizeof(t->capability));
    store_col_text(s, 4, t->input_hash, sizeof(t->input_hash));
    store_col_text(s, 5, t->status, sizeof(t->status));
    store_col_text(s, 6, t->command_id, sizeof(t->command_id));
    t->result_json = store_col_dup(s, 7);
    store_col_text(s, 8, t->error_code, sizeof(t->error_code));
    t->error_message = store_col_dup(s, 9);
    t->created_ms = sqlite3_column_int64(s, 10);
    t->updated_ms = sqlite3_column_int64(s, 11);
    t->deadline_ms = sqlite3_column_int64(s, 12);
    t->completed_ms = sqlite3_column_int64(s, 13);
    t->expires_ms = sqlite3_column_int64(s, 14);
}

int obx_store_task_insert(struct obx_store *st, const struct obx_task *t, const char *input_json,
                          struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "INSERT INTO tasks (task_id, owner_id, request_id, capability, "
                          "input_json, input_hash, status, created_at_unix_ms, "
                          "updated_at_unix_ms, deadline_at_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, "
                          "?6, 'queued', ?7, ?7, ?8)",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, t->id);
        store_bind_text(s, 2, t->owner_id);
        store_bind_text(s, 3, t->request_id);
        store_bind_text(s, 4, t->capability);
        store_bind_text(s, 5, input_json);
        store_bind_text(s, 6, t->input_hash);
        sqlite3_bind_int64(s, 7, t->created_ms);
        sqlite3_bind_int64(s, 8, t->deadline_ms);
        r = store_exec_stmt(st, s, "insert task", err);
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

static int task_query(struct obx_store *st, const char *sql, const char *a, const char *b,
                      struct obx_task *ret, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, sql, &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, a);
        if (b)
            store_bind_text(s, 2, b);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            read_task(s, ret);
        else if (rc == SQLITE_DONE)
            r = -ENOENT;
        else
            r = store_fail(st, err, rc, "read task");
    }
    store_unlock(st, &s);
    return r < 0 ? r : 0;
}

int obx_store_task_get(struct obx_store *st, const char *id, struct obx_task *ret,
                       struct obx_error *err)
{
    return task_query(st, "SELECT " TASK_COLS " FROM tasks WHERE task_id = ?1", id, NULL, ret, err);
}

int obx_store_task_by_request(struct obx_store *st, const char *owner_id, const char *request_id,
                              struct obx_task *ret, struct obx_error *err)
{
    return task_query(st, "SELECT " TASK_COLS " FROM tasks WHERE owner_id = ?1 AND request_id = ?2",
                      owner_id, request_id, ret, err);
}

int obx_store_task_advance(struct obx_store *st, const char *id, const char *status,
                           const char *command_id, int64_t now_ms, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "UPDATE tasks SET status = ?2, command_id = COALESCE(?3, command_id), "
                          "updated_at_unix_ms = ?4 WHERE task_id = ?1 AND " LIVE,
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, id);
        store_bind_text(s, 2, status);
        if (command_id)
            store_bind_text(s, 3, command_id);
        sqlite3_bind_int64(s, 4, now_ms);
        r = store_exec_stmt(st, s, "update task", err);
    }
    store_unlock(st, &s);
    return r;
}

int obx_store_task_finish(struct obx_store *st, const char *id, const char *status,
                          const char *result_json, const char *code, const char *message,
                          int64_t now_ms, int64_t retention_ms, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "UPDATE tasks SET status = ?2, result_json = ?3, error_code = ?4, "
                          "error_message = ?5, updated_at_unix_ms = ?6, completed_at_unix_ms = ?6, "
                          "expires_at_unix_ms = ?7 WHERE task_id = ?1 AND " LIVE,
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, id);
        store_bind_text(s, 2, status);
        store_bind_text(s, 3, result_json ? result_json : "");
        store_bind_text(s, 4, code ? code : "");
        store_bind_text(s, 5, message ? message : "");
        sqlite3_bind_int64(s, 6, now_ms);
        sqlite3_bind_int64(s, 7, now_ms + retention_ms);
        r = store_exec_stmt(st, s, "finish task", err);
    }
    store_unlock(st, &s);
    return r;
}

int obx_store_task_recover(struct obx_store *st, int64_t now_ms, int64_t retention_ms,
                           struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "UPDATE tasks SET status = 'failed', error_code = 'console_restarted', "
                          "error_message = 'task interrupted by console restart', "
                          "updated_at_unix_ms = ?1, completed_at_unix_ms = ?1, "
                          "expires_at_unix_ms = ?2 WHERE " LIVE,
                          &s, err);
    if (r >= 0) {
        sqlite3_bind_int64(s, 1, now_ms);
        sqlite3_bind_int64(s, 2, now_ms + retention_ms);
        r = store_exec_stmt(st, s, "recover tasks", err);
    }
    store_unlock(st, &s);
    return r;
}

int obx_store_task_prune(struct obx_store *st, int64_t now_ms, struct obx_error *err)
{
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "DELETE FROM tasks WHERE status IN ('succeeded', 'failed', 'timeout', "
                          "'canceled') AND expires_at_unix_ms > 0 AND expires_at_unix_ms <= ?1",
                          &s, err);
    if (r >= 0) {
        sqlite3_bind_int64(s, 1, now_ms);
        r = store_exec_stmt(st, s, "prune tasks", err);
    }
    store_unlock(st, &s);
    return r;
}

int obx_store_task_list(struct obx_store *st, const char *owner_id, const char *status,
                        int64_t limit, int64_t offset, struct obx_task **ret, size_t *ret_n,
                        int64_t *ret_total, struct obx_error *err)
{
    *ret = NULL;
    *ret_n = 0;
    pthread_mutex_lock(&st->lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT count(*) FROM tasks WHERE owner_id = ?1 AND (?2 IS NULL OR "
                          "status = ?2)",
                          &s, err);
    if (r >= 0) {
        store_bind_text(s, 1, owner_id);
        if (status)
            store_bind_text(s, 2, status);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *ret_total = sqlite3_column_int64(s, 0);
        else
            r = store_fail(st, err, rc, "count tasks");
        store_finalizep(&s);
        s = NULL;
    }
    if (r >= 0)
        r = store_prepare(st,
                          "SELECT " TASK_COLS " FROM tasks WHERE owner_id = ?1 AND (?2 IS NULL OR "
                          "status = ?2) ORDER BY created_at_unix_ms DESC, task_id DESC LIMIT ?3 "
                          "OFFSET ?4",
                          &s, err);
    size_t n = 0, cap = 0;
    struct obx_task *v = NULL;
    if (r >= 0) {
        store_bind_text(s, 1, owner_id);
        if (status)
            store_bind_text(s, 2, status);
        sqlite3_bind_int64(s, 3, limit);
        sqlite3_bind_int64(s, 4, offset);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                v = obx_xrealloc(v, cap * sizeof(*v));
            }
            read_task(s, &v[n++]);
        }
        if (rc != SQLITE_DONE)
            r = store_fail(st, err, rc, "list tasks");
    }
    store_unlock(st, &s);
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            obx_task_done(&v[i]);
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}
