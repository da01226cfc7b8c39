/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by store*.c only: the connection, its lock and small statement helpers. */
#ifndef OBX_CONSOLE_STORE_INTERNAL_H
#define OBX_CONSOLE_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store.h"

struct obx_store {
    sqlite3 *db;
    pthread_mutex_t lock;
};

static inline void store_finalizep(sqlite3_stmt **s)
{
    if (*s)
        sqlite3_finalize(*s);
}
#define _cleanup_stmt_ _cleanup_(store_finalizep)

/* Ends a store call: finalizes its statement, then releases st->lock. A statement must not be
 * finalized after the lock is released: finalizing writes the connection's error state, which
 * another thread may be reading under the lock (sqlite3_errmsg() in store_fail()). */
static inline void store_unlock(struct obx_store *st, sqlite3_stmt **s)
{
    store_finalizep(s);
    *s = NULL;
    pthread_mutex_unlock(&st->lock);
}

/* Translates a SQLite failure into err once: -EEXIST for constraint violations, else -EIO. */
int store_fail(struct obx_store *st, struct obx_error *err, int rc, const char *what);
/* Prepares sql; on failure fills err and returns a negative errno. */
int store_prepare(struct obx_store *st, const char *sql, sqlite3_stmt **ret, struct obx_error *err);
void store_bind_text(sqlite3_stmt *s, int i, const char *v);
/* Copies column i into a fixed buffer, truncating (fields have bounded lengths by validation). */
void store_col_text(sqlite3_stmt *s, int i, char *out, size_t size);
char *store_col_dup(sqlite3_stmt *s, int i);
/* Runs a statement that returns no rows; returns sqlite3_changes() or a negative errno. */
int store_exec_stmt(struct obx_store *st, sqlite3_stmt *s, const char *what, struct obx_error *err);

#endif
