/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening the console database: pragmas (WAL, foreign keys, busy timeout), versioned migrations
 * keyed by PRAGMA user_version (each one in its own transaction, applied in order, never edited
 * once released), and the statement helpers the other store*.c files share.
 */
#include "store-internal.h"

#include <sys/stat.h>
#include <time.h>

#include "common/log.h"

/* Migration N brings user_version from N-1 to N. Append only. */
static const char *const migrations[] = {
    /* 1: accounts, tokens (reference §7) and persisted dashboard sessions. */
    "CREATE TABLE IF NOT EXISTS accounts ("
    "  account_id TEXT PRIMARY KEY,"
    "  username TEXT NOT NULL,"
    "  username_key TEXT NOT NULL UNIQUE,"
    "  password_hash TEXT NOT NULL,"
    "  hash_algo TEXT NOT NULL,"
    "  is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),"
    "  created_at_unix_ms INTEGER NOT NULL,"
    "  updated_at_unix_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS idx_accounts_created ON accounts(created_at_unix_ms);"
    "CREATE TABLE IF NOT EXISTS trusted_tokens ("
    "  token_id TEXT PRIMARY KEY,"
    "  account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  name_key TEXT NOT NULL,"
    "  token_hash TEXT NOT NULL,"
    "  token_masked TEXT NOT NULL,"
    "  generated INTEGER NOT NULL DEFAULT 0 CHECK (generated IN (0, 1)),"
    "  created_at_unix_ms INTEGER NOT NULL,"
    "  updated_at_unix_ms INTEGER NOT NULL,"
    "  UNIQUE (account_id, name_key),"
    "  UNIQUE (token_hash));"
    "CREATE INDEX IF NOT EXISTS idx_trusted_tokens_account_created"
    "  ON trusted_tokens(account_id, created_at_unix_ms);"
    "CREATE TABLE IF NOT EXISTS dashboard_sessions ("
    "  session_hash TEXT PRIMARY KEY,"
    "  account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,"
    "  created_at_unix_ms INTEGER NOT NULL,"
    "  expires_at_unix_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS idx_dashboard_sessions_account ON dashboard_sessions(account_id);"
    "CREATE INDEX IF NOT EXISTS idx_dashboard_sessions_expires"
    "  ON dashboard_sessions(expires_at_unix_ms);",
    /* 2: tasks (reference §7) plus input_hash, which makes a reused request_id with a different
     * input a conflict instead of a silent return of the old task. */
    "CREATE TABLE IF NOT EXISTS tasks ("
    "  task_id TEXT PRIMARY KEY,"
    "  owner_id TEXT NOT NULL,"
    "  request_id TEXT NOT NULL DEFAULT '',"
    "  capability TEXT NOT NULL,"
    "  input_json TEXT NOT NULL,"
    "  input_hash TEXT NOT NULL DEFAULT '',"
    "  status TEXT NOT NULL CHECK (status IN ('queued', 'dispatched', 'running', 'succeeded',"
    "    'failed', 'timeout', 'canceled')),"
    "  command_id TEXT NOT NULL DEFAULT '',"
    "  result_json TEXT NOT NULL DEFAULT '',"
    "  error_code TEXT NOT NULL DEFAULT '',"
    "  error_message TEXT NOT NULL DEFAULT '',"
    "  created_at_unix_ms INTEGER NOT NULL,"
    "  updated_at_unix_ms INTEGER NOT NULL,"
    "  deadline_at_unix_ms INTEGER NOT NULL,"
    "  completed_at_unix_ms INTEGER NOT NULL DEFAULT 0,"
    "  expires_at_unix_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_tasks_owner_request_unique"
    "  ON tasks(owner_id, request_id) WHERE request_id <> '';"
    "CREATE INDEX IF NOT EXISTS idx_tasks_owner_created ON tasks(owner_id, created_at_unix_ms "
    "DESC);"
    "CREATE INDEX IF NOT EXISTS idx_tasks_expires ON tasks(expires_at_unix_ms);"
    "CREATE INDEX IF NOT EXISTS idx_tasks_status ON tasks(status);",
    /* 3: workers (reference §7). Beyond the reference, deleting an account deletes its
     * worker-sys node (and with it the credential and the claim). */
    "CREATE TABLE IF NOT EXISTS worker_nodes ("
    "  node_id TEXT PRIMARY KEY,"
    "  session_id TEXT NOT NULL DEFAULT '',"
    "  provisioned INTEGER NOT NULL DEFAULT 0 CHECK (provisioned IN (0, 1)),"
    "  node_name TEXT NOT NULL DEFAULT '',"
    "  executor_kind TEXT NOT NULL DEFAULT '',"
    "  version TEXT NOT NULL DEFAULT '',"
    "  registered_at_unix_ms INTEGER NOT NULL,"
    "  last_seen_at_unix_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS idx_worker_nodes_last_seen ON worker_nodes(last_seen_at_unix_ms);"
    "CREATE INDEX IF NOT EXISTS idx_worker_nodes_status_probe"
    "  ON worker_nodes(session_id, last_seen_at_unix_ms);"
    "CREATE TABLE IF NOT EXISTS worker_capabilities ("
    "  node_id TEXT NOT NULL REFERENCES worker_nodes(node_id) ON DELETE CASCADE,"
    "  capability_name TEXT NOT NULL,"
    "  max_inflight INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (node_id, capability_name));"
    "CREATE INDEX IF NOT EXISTS idx_worker_caps_lookup"
    "  ON worker_capabilities(capability_name, node_id);"
    "CREATE TABLE IF NOT EXISTS worker_labels ("
    "  node_id TEXT NOT NULL REFERENCES worker_nodes(node_id) ON DELETE CASCADE,"
    "  label_key TEXT NOT NULL,"
    "  label_value TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (node_id, label_key));"
    "CREATE INDEX IF NOT EXISTS idx_worker_labels_lookup ON worker_labels(label_key, label_value);"
    "CREATE TABLE IF NOT EXISTS worker_credentials ("
    "  node_id TEXT PRIMARY KEY REFERENCES worker_nodes(node_id) ON DELETE CASCADE,"
    "  secret_hash TEXT NOT NULL,"
    "  hash_algo TEXT NOT NULL,"
    "  created_at_unix_ms INTEGER NOT NULL,"
    "  updated_at_unix_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS worker_sys_owner_claims ("
    "  owner_id TEXT PRIMARY KEY,"
    "  node_id TEXT NOT NULL UNIQUE REFERENCES worker_nodes(node_id) ON DELETE CASCADE,"
    "  claimed_at_unix_ms INTEGER NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS trg_accounts_delete_worker_sys AFTER DELETE ON accounts "
    "BEGIN DELETE FROM worker_nodes WHERE node_id IN "
    "(SELECT node_id FROM worker_sys_owner_claims WHERE owner_id = OLD.account_id); END;",
    /* 4: sticky routes of terminal sessions to the worker that has their box, so a console
     * restart or a worker reconnect forgets none. */
    "CREATE TABLE IF NOT EXISTS session_routes ("
    "  session_id TEXT PRIMARY KEY,"
    "  node_id TEXT NOT NULL REFERENCES worker_nodes(node_id) ON DELETE CASCADE,"
    "  created_at_unix_ms INTEGER NOT NULL,"
    "  last_used_at_unix_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS idx_session_routes_node ON session_routes(node_id);",
    /* 5: the files exportFile copied out of sessions, kept until their links expire. */
    "CREATE TABLE IF NOT EXISTS exports ("
    "  export_id TEXT PRIMARY KEY,"
    "  account_id TEXT NOT NULL,"
    "  session_id TEXT NOT NULL,"
    "  file_path TEXT NOT NULL,"
    "  filename TEXT NOT NULL,"
    "  mime_type TEXT NOT NULL,"
    "  size_bytes INTEGER NOT NULL,"
    "  created_at_unix_ms INTEGER NOT NULL,"
    "  expires_at_unix_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS idx_exports_expires ON exports(expires_at_unix_ms);",
};

int store_fail(struct obx_store *st, struct obx_error *err, int rc, const char *what)
{
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return obx_error_set(err, EEXIST, "", "%s: %s", what, sqlite3_errmsg(st->db));
    /* A full disk is the operator's to fix, not a bug: callers tell the client so. */
    if ((rc & 0xff) == SQLITE_FULL)
        return obx_error_set(err, ENOSPC, OBX_ERR_INTERNAL, "%s: %s", what, sqlite3_errmsg(st->db));
    return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "%s: %s", what, sqlite3_errmsg(st->db));
}

int store_prepare(struct obx_store *st, const char *sql, sqlite3_stmt **ret, struct obx_error *err)
{
    int rc = sqlite3_prepare_v2(st->db, sql, -1, ret, NULL);
    if (rc != SQLITE_OK)
        return store_fail(st, err, rc, "prepare");
    return 0;
}

void store_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

void store_col_text(sqlite3_stmt *s, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(out, size, "%s", t ? (const char *)t : "");
}

char *store_col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return obx_xstrdup(t ? (const char *)t : "");
}

int store_exec_stmt(struct obx_store *st, sqlite3_stmt *s, const char *what, struct obx_error *err)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, err, rc, what);
    return sqlite3_changes(st->db);
}

static int exec_sql(struct obx_store *st, const char *sql, struct obx_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        obx_error_set(err, EIO, OBX_ERR_INTERNAL, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

int obx_store_schema_version(struct obx_store *st)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    if (sqlite3_step(s) != SQLITE_ROW)
        return -EIO;
    return sqlite3_column_int(s, 0);
}

/* One integer a query gives (its first column of its first row), or -1. */
static int64_t query_int(struct obx_store *st, const char *sql)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW)
        return -1;
    return sqlite3_column_int64(s, 0);
}

/* A database the original console made (goose migrations, user_version 0): its tables are the
 * ones the migrations below create, so they are kept as they are and those migrations skip them;
 * only what they would have added to an existing table is added first. A copy of the file as it
 * was is kept beside it before anything changes. */
static int adopt_original(struct obx_store *st, const char *path, struct obx_error *err)
{
    if (query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                      "'goose_db_version'") != 1)
        return 0;
    int64_t goose = query_int(st, "SELECT max(version_id) FROM goose_db_version WHERE is_applied");
    if (query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                      "'accounts'") != 1)
        return obx_error_set(err, EPROTO, OBX_ERR_INTERNAL,
                             "this database was made by an early version of the original console "
                             "(its schema version %lld has no accounts yet): start that console "
                             "once on it (it migrates the database to its own latest schema), "
                             "then start onlyboxes on it",
                             (long long)goose);
    if (obx_streq(path, ":memory:") || strncmp(path, "file:", 5) == 0)
        goto alter;
    {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", gmtime_r(&now, &tm));
        _cleanup_free_ char *copy = obx_xasprintf("%s.original-%s", path, stamp);
        _cleanup_free_ char *sql = obx_xasprintf("VACUUM INTO '%s';", copy);
        if (strchr(copy, '\'') || exec_sql(st, sql, err) < 0)
            return obx_error_wrap(err, "keeping a copy of the original console's database at %s",
                                  copy);
        obx_info("this database was made by the original console (its schema version %lld); "
                 "a copy of it as it was is kept at %s",
                 (long long)goose, copy);
    }
alter:
    if (query_int(st, "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = "
                      "'input_hash'") == 0 &&
        exec_sql(st, "ALTER TABLE tasks ADD COLUMN input_hash TEXT NOT NULL DEFAULT '';", err) < 0)
        return obx_error_wrap(err, "adding input_hash to the original's tasks");
    return 0;
}

static int migrate(struct obx_store *st, const char *path, struct obx_error *err)
{
    int v = obx_store_schema_version(st);
    if (v < 0)
        return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot read the schema version");
    if (v == 0) {
        int r = adopt_original(st, path, err);
        if (r < 0)
            return r;
    }
    if ((size_t)v > OBX_ARRAY_SIZE(migrations))
        return obx_error_set(err, EPROTO, OBX_ERR_INTERNAL,
                             "the database schema (version %d) is newer than this console "
                             "(version %zu); upgrade onlyboxes",
                             v, OBX_ARRAY_SIZE(migrations));
    for (size_t i = (size_t)v; i < OBX_ARRAY_SIZE(migrations); i++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %zu;", i + 1);
        int r = exec_sql(st, "BEGIN IMMEDIATE;", err);
        if (r >= 0)
            r = exec_sql(st, migrations[i], err);
        if (r >= 0)
            r = exec_sql(st, pragma, err);
        if (r >= 0)
            r = exec_sql(st, "COMMIT;", err);
        if (r < 0) {
            exec_sql(st, "ROLLBACK;", NULL);
            return obx_error_wrap(err, "database migration %zu", i + 1);
        }
        obx_info("database migrated to schema version %zu", i + 1);
    }
    return 0;
}

static int make_parent_dir(const char *path, struct obx_error *err)
{
    if (obx_streq(path, ":memory:") || strncmp(path, "file:", 5) == 0)
        return 0;
    _cleanup_free_ char *dir = obx_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    /* mkdir -p */
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot create %s: %s", dir,
                                 strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return obx_error_set(err, errno, OBX_ERR_INTERNAL, "cannot create %s: %s", dir,
                             strerror(errno));
    return 0;
}

int obx_store_open(const char *path, int busy_timeout_ms, struct obx_store **ret,
                   struct obx_error *err)
{
    int r = make_parent_dir(path, err);
    if (r < 0)
        return r;
    struct obx_store *st = obx_xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    /* st->lock makes each store call atomic, statements included (store_unlock() finalizes
     * them before it releases the lock). The connection keeps its own mutex too (FULLMUTEX), so
     * a statement that outlives the lock by mistake cannot corrupt the connection. */
    int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_FULLMUTEX;
    int rc = sqlite3_open_v2(path, &st->db, flags, NULL);
    if (rc != SQLITE_OK) {
        obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot open database %s: %s", path,
                      st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        obx_store_close(st);
        return -EIO;
    }
    sqlite3_busy_timeout(st->db, busy_timeout_ms);
    r = exec_sql(st,
                 "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                 "PRAGMA foreign_keys = ON;",
                 err);
    if (r >= 0)
        r = migrate(st, path, err);
    if (r < 0) {
        obx_error_wrap(err, "database %s", path);
        obx_store_close(st);
        return r;
    }
    *ret = st;
    return 0;
}

void obx_store_close(struct obx_store *st)
{
    if (!st)
        return;
    if (st->db)
        sqlite3_close_v2(st->db);
    pthread_mutex_destroy(&st->lock);
    free(st);
}
