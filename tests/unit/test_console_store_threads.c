/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console store used from several threads at once, as the console's pool threads use it while
 * HTTP requests come in: bearer lookups by token hash, account lookups by id, dashboard sessions,
 * token inserts, and the task life cycle (insert, advance, finish, read back), all on one store
 * opened on a WAL database file as the console opens it. Every thread checks each answer against
 * what it wrote, and a conflict's message against the statement that failed, so a connection
 * shared without the right locking (e.g. a statement finalized after the store lock was released,
 * which resets the error another thread is about to read) shows up as a wrong row, a wrong
 * message or a crash here, and as a report in the ThreadSanitizer build. The threads record their
 * first failure themselves: cmocka's asserts are for the main thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "console/store/store.h"

#define THREADS 6
#define ROUNDS 150
#define ACCOUNTS 8

struct hammer {
    struct obx_store *st;
    atomic_int go;
    atomic_int shared_wins[ROUNDS]; /* inserts of (acc_0, "shared-<round>") that succeeded */
};

struct worker {
    struct hammer *h;
    int index;
    int checks;
    char failure[512]; /* the first wrong answer; empty when all were right */
};

static void account_id(char out[40], int i)
{
    snprintf(out, 40, "acc_%d", i);
}

static void token_hash(char out[65], int i)
{
    /* 64 hex digits, distinct per i */
    snprintf(out, 65, "%064x", 0xab0000 + i);
}

static void seed(struct obx_store *st)
{
    for (int i = 0; i < ACCOUNTS; i++) {
        struct obx_account a = {0};
        account_id(a.id, i);
        snprintf(a.username, sizeof(a.username), "user%d", i);
        a.is_admin = i == 0;
        a.created_ms = a.updated_ms = 1000 + i;
        char phc[32];
        snprintf(phc, sizeof(phc), "phc-%d", i);
        enum obx_store_conflict c;
        struct obx_error err = OBX_ERROR_INIT;
        assert_int_equal(obx_store_account_insert(st, &a, a.username, phc, "test", &c, &err), 0);

        struct obx_token t = {0};
        snprintf(t.id, sizeof(t.id), "tok_%d", i);
        snprintf(t.account_id, sizeof(t.account_id), "%s", a.id);
        snprintf(t.name, sizeof(t.name), "seed");
        snprintf(t.token_masked, sizeof(t.token_masked), "obx_...%d", i);
        token_hash(t.token_hash, i);
        t.created_ms = t.updated_ms = 2000 + i;
        assert_int_equal(obx_store_token_insert(st, &t, "seed", &c, &err), 0);
    }
}

/* Records the first failure of a thread; returns false so callers can stop the round. */
static bool wrong(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool wrong(struct worker *w, const char *fmt, ...)
{
    if (w->failure[0])
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->failure, sizeof(w->failure), fmt, ap);
    va_end(ap);
    return false;
}

/* What the bearer middleware does: token by hash, then its account by id. */
static bool check_lookups(struct worker *w, int round)
{
    int i = (w->index + round) % ACCOUNTS;
    char hash[65], acc[40];
    token_hash(hash, i);
    account_id(acc, i);
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_token t;
    int r = obx_store_token_by_hash(w->h->st, hash, &t, &err);
    if (r != 0)
        return wrong(w, "token_by_hash(%d) = %d: %s", i, r, err.message);
    if (!obx_streq(t.account_id, acc) || !obx_streq(t.token_hash, hash) || t.created_ms != 2000 + i)
        return wrong(w, "token_by_hash(%d) gave account %s created %lld", i, t.account_id,
                     (long long)t.created_ms);

    struct obx_account a;
    char *phc = NULL, *algo = NULL;
    r = obx_store_account_by_id(w->h->st, acc, &a, &phc, &algo, &err);
    if (r != 0)
        return wrong(w, "account_by_id(%s) = %d: %s", acc, r, err.message);
    char want_user[16], want_phc[32];
    snprintf(want_user, sizeof(want_user), "user%d", i);
    snprintf(want_phc, sizeof(want_phc), "phc-%d", i);
    bool ok = obx_streq(a.id, acc) && obx_streq(a.username, want_user) &&
              obx_streq(phc, want_phc) && obx_streq(algo, "test") && a.is_admin == (i == 0);
    free(phc);
    free(algo);
    if (!ok)
        return wrong(w, "account_by_id(%s) gave %s/%s", acc, a.id, a.username);

    r = obx_store_token_by_hash(w->h->st, "0000", &t, &err);
    if (r != -ENOENT)
        return wrong(w, "token_by_hash(missing) = %d", r);
    r = obx_store_account_by_id(w->h->st, "acc_missing", &a, NULL, NULL, &err);
    if (r != -ENOENT)
        return wrong(w, "account_by_id(missing) = %d", r);
    w->checks += 4;
    return true;
}

/* A login: a session row, then the session lookup that every dashboard request makes. */
static bool check_session(struct worker *w, int round)
{
    int i = (w->index * 3 + round) % ACCOUNTS;
    char acc[40], sess[80];
    account_id(acc, i);
    snprintf(sess, sizeof(sess), "sess-%d-%d", w->index, round);
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_session_insert(w->h->st, sess, acc, 5000, 1000000, &err);
    if (r != 0)
        return wrong(w, "session_insert(%s) = %d: %s", sess, r, err.message);
    struct obx_account a;
    r = obx_store_session_lookup(w->h->st, sess, 6000, &a, &err);
    if (r != 0 || !obx_streq(a.id, acc))
        return wrong(w, "session_lookup(%s) = %d, account %s", sess, r, r == 0 ? a.id : "-");
    w->checks += 2;
    return true;
}

/* A token created from the API: insert, then find it by its hash and in the owner's list. */
static bool check_token_insert(struct worker *w, int round)
{
    int i = round % ACCOUNTS;
    struct obx_token t = {0};
    snprintf(t.id, sizeof(t.id), "tok_%d_%d", w->index, round);
    account_id(t.account_id, i);
    snprintf(t.name, sizeof(t.name), "t%d-%d", w->index, round);
    snprintf(t.token_masked, sizeof(t.token_masked), "obx_...");
    snprintf(t.token_hash, sizeof(t.token_hash), "%032x%032x", w->index + 1, round + 1);
    t.created_ms = t.updated_ms = 3000 + round;
    enum obx_store_conflict c;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_token_insert(w->h->st, &t, t.name, &c, &err);
    if (r != 0)
        return wrong(w, "token_insert(%s) = %d (conflict %d): %s", t.id, r, (int)c, err.message);
    /* The same name again for the same account: a NAME conflict, whatever else runs. */
    struct obx_token dup = t;
    snprintf(dup.id, sizeof(dup.id), "dup_%d_%d", w->index, round);
    snprintf(dup.token_hash, sizeof(dup.token_hash), "%032x%032x", w->index + 101, round + 1);
    r = obx_store_token_insert(w->h->st, &dup, dup.name, &c, &err);
    if (r != -EEXIST || c != OBX_STORE_CONFLICT_NAME)
        return wrong(w, "duplicate token name: %d, conflict %d", r, (int)c);
    /* The message is SQLite's for this statement, not whatever another thread did meanwhile. */
    if (!strstr(err.message, "UNIQUE constraint failed: trusted_tokens."))
        return wrong(w, "duplicate token name: message \"%s\"", err.message);
    struct obx_token got;
    r = obx_store_token_by_hash(w->h->st, t.token_hash, &got, &err);
    if (r != 0 || !obx_streq(got.id, t.id))
        return wrong(w, "new token by hash: %d, id %s", r, r == 0 ? got.id : "-");
    w->checks += 3;
    return true;
}

/* The task routes and the execution thread: insert, dispatched, running, a result, a losing
 * cancel, then the read a waiter makes. */
static bool check_task(struct worker *w, int round)
{
    struct obx_store *st = w->h->st;
    struct obx_task t = {0};
    snprintf(t.id, sizeof(t.id), "task_%d_%d", w->index, round);
    account_id(t.owner_id, round % ACCOUNTS);
    snprintf(t.request_id, sizeof(t.request_id), "req-%d-%d", w->index, round);
    snprintf(t.capability, sizeof(t.capability), "echo");
    t.created_ms = 10000 + round;
    t.deadline_ms = 20000 + round;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_task_insert(st, &t, "{\"message\":\"hi\"}", &err);
    if (r != 0)
        return wrong(w, "task_insert(%s) = %d: %s", t.id, r, err.message);
    char cmd[40];
    snprintf(cmd, sizeof(cmd), "cmd_%d_%d", w->index, round);
    if ((r = obx_store_task_advance(st, t.id, "dispatched", NULL, 11000, &err)) != 1)
        return wrong(w, "advance(%s, dispatched) = %d: %s", t.id, r, err.message);
    if ((r = obx_store_task_advance(st, t.id, "running", cmd, 11001, &err)) != 1)
        return wrong(w, "advance(%s, running) = %d: %s", t.id, r, err.message);
    char result[80];
    snprintf(result, sizeof(result), "{\"thread\":%d,\"round\":%d}", w->index, round);
    if ((r = obx_store_task_finish(st, t.id, "succeeded", result, NULL, NULL, 12000, 60000,
                                   &err)) != 1)
        return wrong(w, "finish(%s) = %d: %s", t.id, r, err.message);
    if ((r = obx_store_task_finish(st, t.id, "canceled", NULL, "canceled", "task canceled", 12001,
                                   60000, &err)) != 0)
        return wrong(w, "late cancel of %s changed %d rows", t.id, r);

    struct obx_task got;
    if ((r = obx_store_task_get(st, t.id, &got, &err)) != 0)
        return wrong(w, "task_get(%s) = %d: %s", t.id, r, err.message);
    bool ok = obx_streq(got.status, "succeeded") && obx_streq(got.result_json, result) &&
              obx_streq(got.command_id, cmd) && obx_streq(got.owner_id, t.owner_id) &&
              got.completed_ms == 12000 && got.expires_ms == 72000;
    char status[16];
    snprintf(status, sizeof(status), "%s", got.status);
    obx_task_done(&got);
    if (!ok)
        return wrong(w, "task %s read back as %s", t.id, status);
    if ((r = obx_store_task_by_request(st, t.owner_id, t.request_id, &got, &err)) != 0 ||
        !obx_streq(got.id, t.id))
        return wrong(w, "task_by_request(%s) = %d", t.request_id, r);
    obx_task_done(&got);

    /* Every thread submits the same (owner, request_id) in this round: exactly one insert wins
     * and the others get -EEXIST (checked by the main thread from the counts). */
    struct obx_task shared = t;
    snprintf(shared.id, sizeof(shared.id), "shared_%d_%d", w->index, round);
    account_id(shared.owner_id, 0);
    snprintf(shared.request_id, sizeof(shared.request_id), "shared-%d", round);
    r = obx_store_task_insert(st, &shared, "{}", &err);
    if (r == 0)
        atomic_fetch_add(&w->h->shared_wins[round], 1);
    else if (r != -EEXIST || !strstr(err.message, "UNIQUE constraint failed: tasks."))
        return wrong(w, "shared insert %d = %d: %s", round, r, err.message);
    w->checks += 8;
    return true;
}

static void *hammer_main(void *arg)
{
    struct worker *w = arg;
    while (!atomic_load(&w->h->go))
        sched_yield();
    for (int round = 0; round < ROUNDS; round++) {
        if (!check_lookups(w, round) || !check_session(w, round) || !check_token_insert(w, round) ||
            !check_task(w, round))
            break;
    }
    return NULL;
}

static void test_store_from_many_threads(void **state)
{
    char dir[] = "/tmp/obx-store-threads-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/console.db", dir);

    struct hammer h = {0};
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_store_open(path, 5000, &h.st, &err), 0);
    seed(h.st);

    struct worker workers[THREADS] = {0};
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){.h = &h, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer_main, &workers[i]), 0);
    }
    atomic_store(&h.go, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    int checks = 0;
    for (int i = 0; i < THREADS; i++) {
        if (workers[i].failure[0])
            fail_msg("thread %d: %s", i, workers[i].failure);
        checks += workers[i].checks;
    }
    assert_int_equal(checks, THREADS * ROUNDS * 17);
    for (int round = 0; round < ROUNDS; round++)
        assert_int_equal(atomic_load(&h.shared_wins[round]), 1);

    /* What the threads wrote is all there, once, in a fresh connection too. */
    obx_store_close(h.st);
    assert_int_equal(obx_store_open(path, 5000, &h.st, &err), 0);
    for (int i = 0; i < ACCOUNTS; i++) {
        char acc[40];
        account_id(acc, i);
        struct obx_token *toks = NULL;
        size_t n = 0;
        assert_int_equal(obx_store_token_list(h.st, acc, &toks, &n, &err), 0);
        /* the seed token plus one per (thread, round) with round % ACCOUNTS == i */
        size_t want = 1;
        for (int round = 0; round < ROUNDS; round++)
            want += round % ACCOUNTS == i ? THREADS : 0;
        assert_int_equal(n, want);
        free(toks);
    }
    for (int i = 0; i < THREADS; i++) {
        for (int round = 0; round < ROUNDS; round += 37) {
            char id[40];
            snprintf(id, sizeof(id), "task_%d_%d", i, round);
            struct obx_task t;
            assert_int_equal(obx_store_task_get(h.st, id, &t, &err), 0);
            assert_string_equal(t.status, "succeeded");
            obx_task_done(&t);
        }
    }
    obx_store_close(h.st);

    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char f[80];
        snprintf(f, sizeof(f), "%s%s", path, suffixes[i]);
        unlink(f);
    }
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_from_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
