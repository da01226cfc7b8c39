/* SPDX-License-Identifier: Apache-2.0 */
/* The worker store on an in-memory database: provisioning with its two conflicts (node id, one
 * worker-sys per account), owner scoping of list, stats and delete, the stored credential hash,
 * and an account's deletion taking its worker-sys along. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "console/store/store.h"

static struct obx_store *open_store(void)
{
    struct obx_store *st = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_store_open(":memory:", 1000, &st, &err), 0);
    assert_int_equal(obx_store_schema_version(st), 5);
    return st;
}

static int provision(struct obx_store *st, const char *id, const char *type, const char *owner,
                     int64_t registered_ms, enum obx_store_conflict *conflict)
{
    struct obx_store_worker_provision p = {
        .node_id = id,
        .node_name = "worker-x",
        .type = type,
        .owner_id = owner,
        .source = "console-ui",
        .secret_hash = "ab12",
        .registered_ms = registered_ms,
        .last_seen_ms = registered_ms - 16000,
    };
    struct obx_error err = OBX_ERROR_INIT;
    return obx_store_worker_provision(st, &p, conflict, &err);
}

static int64_t count(struct obx_store *st, const char *owner, enum obx_store_worker_status_filter f)
{
    struct obx_store_worker_scope scope = {.owner_id = owner, .status = f, .online_since_ms = 0};
    struct obx_store_worker_node *items = NULL;
    size_t n = 0;
    int64_t total = -1;
    assert_int_equal(obx_store_worker_list(st, &scope, 100, 0, &items, &n, &total, NULL), 0);
    assert_int_equal((int64_t)n, total);
    obx_store_worker_nodes_free(items, n);
    return total;
}

static void test_provision_conflicts(void **state)
{
    struct obx_store *st = open_store();
    enum obx_store_conflict c;
    assert_int_equal(provision(st, "n1", OBX_WORKER_TYPE_NORMAL, "acc_a", 1000, &c), 0);
    assert_int_equal(provision(st, "n1", OBX_WORKER_TYPE_NORMAL, "acc_a", 1000, &c), -EEXIST);
    assert_int_equal(c, OBX_STORE_CONFLICT_ID);
    assert_int_equal(provision(st, "s1", OBX_WORKER_TYPE_SYS, "acc_a", 1001, &c), 0);
    assert_int_equal(provision(st, "s2", OBX_WORKER_TYPE_SYS, "acc_a", 1002, &c), -EEXIST);
    assert_int_equal(c, OBX_STORE_CONFLICT_OWNER);
    /* The losing node was rolled back with its claim attempt. */
    assert_int_equal(count(st, NULL, OBX_WORKER_STATUS_ALL), 2);
    char hash[65];
    assert_int_equal(obx_store_worker_secret_hash(st, "s1", hash, NULL), 0);
    assert_string_equal(hash, "ab12");
    assert_int_equal(obx_store_worker_secret_hash(st, "s2", hash, NULL), -ENOENT);
    obx_store_close(st);
}

static void test_scope_list_stats_delete(void **state)
{
    struct obx_store *st = open_store();
    enum obx_store_conflict c;
    assert_int_equal(provision(st, "n1", OBX_WORKER_TYPE_NORMAL, "acc_admin", 3000, &c), 0);
    assert_int_equal(provision(st, "sa", OBX_WORKER_TYPE_SYS, "acc_a", 2000, &c), 0);
    assert_int_equal(provision(st, "sb", OBX_WORKER_TYPE_SYS, "acc_b", 1000, &c), 0);

    struct obx_store_worker_scope all = {.status = OBX_WORKER_STATUS_ALL};
    struct obx_store_worker_node *items = NULL;
    size_t n = 0;
    int64_t total = 0;
    assert_int_equal(obx_store_worker_list(st, &all, 2, 1, &items, &n, &total, NULL), 0);
    assert_int_equal(total, 3);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].id, "sa"); /* oldest registration first */
    assert_string_equal(items[1].id, "n1");
    assert_false(items[1].online);
    assert_int_equal(items[1].n_labels, 3);
    assert_string_equal(items[1].labels[0].key, OBX_WORKER_LABEL_OWNER);
    assert_string_equal(items[1].labels[0].value, "acc_admin");
    obx_store_worker_nodes_free(items, n);

    assert_int_equal(count(st, "acc_a", OBX_WORKER_STATUS_ALL), 1);
    assert_int_equal(count(st, "acc_admin", OBX_WORKER_STATUS_ALL), 0); /* normal: admin view */
    assert_int_equal(count(st, NULL, OBX_WORKER_STATUS_ONLINE), 0);
    assert_int_equal(count(st, NULL, OBX_WORKER_STATUS_OFFLINE), 3);

    struct obx_store_worker_scope a = {.owner_id = "acc_a"};
    struct obx_store_worker_stats s;
    assert_int_equal(obx_store_worker_stats(st, &all, -1000000, &s, NULL), 0);
    assert_int_equal(s.total, 3);
    assert_int_equal(s.online, 0);
    assert_int_equal(s.stale, 0);
    assert_int_equal(obx_store_worker_stats(st, &a, 1000000, &s, NULL), 0);
    assert_int_equal(s.total, 1);
    assert_int_equal(s.stale, 1);

    assert_int_equal(obx_store_worker_delete(st, "sb", "acc_a", NULL), -ENOENT);
    assert_int_equal(obx_store_worker_delete(st, "n1", "acc_a", NULL), -ENOENT);
    assert_int_equal(obx_store_worker_delete(st, "sa", "acc_a", NULL), 0);
    assert_int_equal(obx_store_worker_delete(st, "sb", NULL, NULL), 0);
    assert_int_equal(obx_store_worker_delete(st, "sb", NULL, NULL), -ENOENT);
    /* The claim went with the node. */
    assert_int_equal(provision(st, "sa2", OBX_WORKER_TYPE_SYS, "acc_a", 4000, &c), 0);
    assert_int_equal(obx_store_worker_clear_sessions(st, NULL), 0);
    obx_store_close(st);
}

static void test_account_delete_takes_worker_sys(void **state)
{
    struct obx_store *st = open_store();
    struct obx_account acc = {.id = "acc_m", .username = "m", .created_ms = 1, .updated_ms = 1};
    enum obx_store_conflict c;
    assert_int_equal(obx_store_account_insert(st, &acc, "m", "x", "argon2id", &c, NULL), 0);
    assert_int_equal(provision(st, "sm", OBX_WORKER_TYPE_SYS, "acc_m", 1000, &c), 0);
    assert_int_equal(provision(st, "n1", OBX_WORKER_TYPE_NORMAL, "acc_admin", 1000, &c), 0);
    assert_int_equal(obx_store_account_delete(st, "acc_m", NULL), 0);
    assert_int_equal(count(st, NULL, OBX_WORKER_STATUS_ALL), 1);
    char hash[65];
    assert_int_equal(obx_store_worker_secret_hash(st, "sm", hash, NULL), -ENOENT);
    obx_store_close(st);
}

/* A worker connects (§3.2 step 8), heartbeats, goes away; its routes survive a restart. */
static void test_registration_and_routes(void **state)
{
    struct obx_store *st = open_store();
    enum obx_store_conflict conflict;
    assert_int_equal(provision(st, "n1", OBX_WORKER_TYPE_NORMAL, "acc_1", 1000, &conflict), 0);
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_store_worker_cap caps[] = {{"echo", 4}, {"pythonExec", 2}};
    struct obx_store_worker_label labels[] = {{"zone", "eu"},
                                              {OBX_WORKER_LABEL_OWNER, "someone-else"},
                                              {OBX_WORKER_LABEL_TYPE, OBX_WORKER_TYPE_SYS}};
    struct obx_store_registration reg = {.node_id = "n1",
                                         .session_id = "s-1",
                                         .node_name = "  ",
                                         .executor_kind = "bubblewrap",
                                         .version = "1.2",
                                         .caps = caps,
                                         .n_caps = 2,
                                         .labels = labels,
                                         .n_labels = 3,
                                         .now_ms = 5000};
    assert_int_equal(obx_store_worker_register(st, &reg, &err), 0);
    struct obx_store_worker_scope scope = {.status = OBX_WORKER_STATUS_ONLINE,
                                           .online_since_ms = 4000};
    struct obx_store_worker_node *items = NULL;
    size_t n = 0;
    int64_t total = 0;
    assert_int_equal(obx_store_worker_list(st, &scope, 10, 0, &items, &n, &total, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].name, "worker-x"); /* a blank name keeps the stored one */
    assert_string_equal(items[0].executor_kind, "bubblewrap");
    assert_int_equal(items[0].n_caps, 2);
    obx_store_worker_nodes_free(items, n);
    struct obx_store_worker_label *stored = NULL;
    size_t n_stored = 0;
    assert_int_equal(obx_store_worker_labels(st, "n1", &stored, &n_stored, &err), 0);
    bool zone = false;
    for (size_t i = 0; i < n_stored; i++) {
        if (obx_streq(stored[i].key, OBX_WORKER_LABEL_OWNER))
            assert_string_equal(stored[i].value, "acc_1"); /* owner and type are kept */
        if (obx_streq(stored[i].key, OBX_WORKER_LABEL_TYPE))
            assert_string_equal(stored[i].value, OBX_WORKER_TYPE_NORMAL);
        zone = zone || (obx_streq(stored[i].key, "zone") && obx_streq(stored[i].value, "eu"));
    }
    assert_true(zone);
    obx_store_worker_labels_free(stored, n_stored);

    assert_int_equal(obx_store_worker_seen(st, "n1", "s-1", 6000, &err), 0);
    assert_int_equal(obx_store_worker_seen(st, "n1", "s-old", 6000, &err), -ESTALE);
    assert_int_equal(obx_store_worker_seen(st, "nope", "s-1", 6000, &err), -ENOENT);
    reg.node_id = "nope";
    assert_int_equal(obx_store_worker_register(st, &reg, &err), -ENOENT);

    assert_int_equal(obx_store_route_put(st, "obx:acc_1:a", "n1", 7000, &err), 0);
    assert_int_equal(obx_store_route_put(st, "obx:acc_1:b", "n1", 1000, &err), 0);
    assert_int_equal(obx_store_route_prune(st, 2000, &err), 1);
    assert_int_equal(obx_store_worker_end_session(st, "n1", "s-other", &err), 0);
    assert_int_equal(count(st, NULL, OBX_WORKER_STATUS_ONLINE), 1); /* not its session: kept */
    assert_int_equal(obx_store_worker_end_session(st, "n1", "s-1", &err), 0);
    assert_int_equal(count(st, NULL, OBX_WORKER_STATUS_ONLINE), 0);
    /* Deleting the node takes its routes. */
    assert_int_equal(obx_store_worker_delete(st, "n1", NULL, &err), 0);
    assert_int_equal(obx_store_route_put(st, "obx:acc_1:c", "n1", 7000, &err), -EEXIST);
    obx_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provision_conflicts),
        cmocka_unit_test(test_scope_list_stats_delete),
        cmocka_unit_test(test_account_delete_takes_worker_sys),
        cmocka_unit_test(test_registration_and_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
