/* SPDX-License-Identifier: Apache-2.0 */
/* The task store (first terminal writer wins, restart recovery, retention pruning, request_id
 * uniqueness per owner) on an in-memory database, the owner scoping of terminal session ids, and
 * the dispatcher's availability and capacity answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "console/registry/dispatch.h"
#include "console/store/store.h"
#include "console/tasks/tasks.h"

static struct obx_store *open_store(void)
{
    struct obx_store *st = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_store_open(":memory:", 1000, &st, &err), 0);
    assert_true(obx_store_schema_version(st) >= 2);
    return st;
}

static void insert(struct obx_store *st, const char *id, const char *owner, const char *rid,
                   int expect)
{
    struct obx_task t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    snprintf(t.owner_id, sizeof(t.owner_id), "%s", owner);
    snprintf(t.request_id, sizeof(t.request_id), "%s", rid);
    snprintf(t.capability, sizeof(t.capability), "echo");
    t.created_ms = 1000;
    t.deadline_ms = 2000;
    assert_int_equal(obx_store_task_insert(st, &t, "{}", NULL), expect);
}

static void expect_status(struct obx_store *st, const char *id, const char *status,
                          const char *code)
{
    struct obx_task t;
    assert_int_equal(obx_store_task_get(st, id, &t, NULL), 0);
    assert_string_equal(t.status, status);
    assert_string_equal(t.error_code, code);
    obx_task_done(&t);
}

static void test_first_writer_wins(void **state)
{
    struct obx_store *st = open_store();
    insert(st, "t1", "a", "", 0);
    assert_int_equal(obx_store_task_advance(st, "t1", "running", "cmd", 1100, NULL), 1);
    assert_int_equal(obx_store_task_finish(st, "t1", "canceled", NULL, "canceled", "task canceled",
                                           1200, 10, NULL),
                     1);
    assert_int_equal(
        obx_store_task_finish(st, "t1", "succeeded", "{\"x\":1}", NULL, NULL, 1300, 10, NULL), 0);
    assert_int_equal(obx_store_task_advance(st, "t1", "running", NULL, 1400, NULL), 0);
    struct obx_task t;
    assert_int_equal(obx_store_task_get(st, "t1", &t, NULL), 0);
    assert_string_equal(t.status, "canceled");
    assert_string_equal(t.command_id, "cmd");
    assert_string_equal(t.result_json, "");
    assert_int_equal(t.completed_ms, 1200);
    assert_int_equal(t.expires_ms, 1210);
    obx_task_done(&t);
    assert_int_equal(obx_store_task_get(st, "nope", &t, NULL), -ENOENT);
    obx_store_close(st);
}

static void test_request_id_unique_per_owner(void **state)
{
    struct obx_store *st = open_store();
    insert(st, "t1", "a", "r", 0);
    insert(st, "t2", "a", "r", -EEXIST);
    insert(st, "t3", "b", "r", 0);
    insert(st, "t4", "a", "", 0);
    insert(st, "t5", "a", "", 0); /* an empty request_id never conflicts */
    struct obx_task t;
    assert_int_equal(obx_store_task_by_request(st, "a", "r", &t, NULL), 0);
    assert_string_equal(t.id, "t1");
    obx_task_done(&t);
    assert_int_equal(obx_store_task_by_request(st, "c", "r", &t, NULL), -ENOENT);
    obx_store_close(st);
}

static void test_recover_and_prune(void **state)
{
    struct obx_store *st = open_store();
    insert(st, "done", "a", "", 0);
    insert(st, "live", "a", "", 0);
    insert(st, "queued", "a", "", 0);
    obx_store_task_advance(st, "live", "running", NULL, 1100, NULL);
    obx_store_task_finish(st, "done", "succeeded", "{}", NULL, NULL, 1200, 100, NULL);
    assert_int_equal(obx_store_task_recover(st, 5000, 1000, NULL), 2);
    expect_status(st, "live", "failed", "console_restarted");
    expect_status(st, "queued", "failed", "console_restarted");
    expect_status(st, "done", "succeeded", "");
    assert_int_equal(obx_store_task_prune(st, 1299, NULL), 0);
    assert_int_equal(obx_store_task_prune(st, 1300, NULL), 1); /* done expired at 1300 */
    assert_int_equal(obx_store_task_prune(st, 6000, NULL), 2);
    struct obx_task t;
    assert_int_equal(obx_store_task_get(st, "live", &t, NULL), -ENOENT);
    obx_store_close(st);
}

static void test_scope(void **state)
{
    json_t *in = json_pack("{s:s, s:s, s:i, s:s}", "command", "ls", "session_id", "s1",
                           "lease_ttl_sec", 90, "extra", "dropped");
    json_t *out = obx_task_scope_input("terminalexec", in, "acc_1");
    assert_string_equal(json_string_value(json_object_get(out, "session_id")), "obx:acc_1:s1");
    assert_null(json_object_get(out, "extra"));
    assert_null(json_object_get(out, "create_if_missing"));
    assert_int_equal(json_integer_value(json_object_get(out, "lease_ttl_sec")), 90);
    json_decref(out);
    json_decref(in);

    in = json_pack("{s:s}", "command", "ls");
    out = obx_task_scope_input("terminalexec", in, "acc_1");
    const char *sid = json_string_value(json_object_get(out, "session_id"));
    assert_int_equal(strncmp(sid, "obx:acc_1:", 10), 0);
    assert_int_equal(strlen(sid), 10 + 36);
    assert_true(json_is_true(json_object_get(out, "create_if_missing")));
    json_decref(out);
    json_decref(in);

    /* "network" travels when it asks for something; false is the default. */
    in = json_pack("{s:s, s:s}", "command", "ls", "network", "allowlist");
    out = obx_task_scope_input("terminalexec", in, "acc_1");
    assert_string_equal(json_string_value(json_object_get(out, "network")), "allowlist");
    json_decref(out);
    json_decref(in);
    in = json_pack("{s:s, s:b}", "command", "ls", "network", 0);
    out = obx_task_scope_input("terminalexec", in, "acc_1");
    assert_null(json_object_get(out, "network"));
    json_decref(out);
    json_decref(in);

    in = json_pack("{s:i}", "session_id", 5); /* wrong type: passed through unscoped */
    out = obx_task_scope_input("terminalexec", in, "acc_1");
    assert_ptr_equal(out, in);
    json_decref(out);
    json_decref(in);
    in = json_pack("{s:s}", "code", "print(1)");
    out = obx_task_scope_input("pythonexec", in, "acc_1");
    assert_ptr_equal(out, in);
    json_decref(out);
    json_decref(in);

    json_t *res = json_pack("{s:s}", "session_id", "obx:acc_1:s1");
    assert_int_equal(obx_task_unscope_result("terminalexec", res, "acc_1"), 0);
    assert_string_equal(json_string_value(json_object_get(res, "session_id")), "s1");
    json_object_set_new(res, "session_id", json_string("obx:acc_2:s1"));
    assert_int_equal(obx_task_unscope_result("terminalexec", res, "acc_1"), -EPERM);
    json_decref(res);
}

static int fake_exec(struct obx_executor *self, const char *capability, json_t *payload,
                     struct obx_call *call, json_t **ret_result, struct obx_error *err)
{
    *ret_result = json_incref(payload);
    return 0;
}

static struct obx_dispatch *dispatch_new(struct obx_store *st, struct obx_executor *ex)
{
    struct obx_dispatch_config cfg = {
        .store = st,
        .hash_key = "k",
        .offline_ttl_sec = 15,
        .heartbeat_interval_sec = 5,
        .embedded = ex,
        .embedded_max_inflight = 2,
        .embedded_kind = "test",
        .grpc_port = -1,
    };
    struct obx_dispatch *d = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_dispatch_new(&cfg, &d, &err), 0);
    return d;
}

static void test_dispatch(void **state)
{
    struct obx_store *st = open_store();
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_dispatch_slot *s[4];
    struct obx_dispatch *none = dispatch_new(st, NULL);
    assert_int_equal(obx_dispatch_acquire(none, "echo", NULL, &s[0], &err), -ENODEV);
    assert_string_equal(err.code, "no_worker");
    obx_dispatch_free(none);

    struct obx_executor ex = {.exec = fake_exec};
    struct obx_dispatch *d = dispatch_new(st, &ex);
    assert_int_equal(obx_dispatch_acquire(d, "computeruse", NULL, &s[0], &err), -ENODEV);
    assert_int_equal(obx_dispatch_acquire(d, "echo", NULL, &s[0], &err), 0);
    assert_int_equal(obx_dispatch_acquire(d, "echo", NULL, &s[1], &err), 0);
    assert_int_equal(obx_dispatch_acquire(d, "echo", NULL, &s[2], &err), -EBUSY);
    assert_string_equal(err.code, "no_capacity");
    /* counted per capability */
    assert_int_equal(obx_dispatch_acquire(d, "pythonexec", NULL, &s[2], &err), 0);
    obx_dispatch_release(s[0]);
    obx_dispatch_release(s[2]);
    json_t *p = json_pack("{ss}", "message", "hi"), *res = NULL;
    struct obx_call call;
    obx_call_init(&call);
    assert_int_equal(obx_dispatch_exec(d, "echo", p, &call, &res, &err), 0); /* releases */
    obx_call_done(&call);
    assert_true(json_equal(res, p));
    assert_ptr_not_equal(res, p); /* the job ran on a copy of its own, not the caller's value */
    json_decref(res);
    json_decref(p);
    assert_int_equal(obx_dispatch_acquire(d, "echo", NULL, &s[0], &err), 0);
    obx_dispatch_release(s[0]);
    obx_dispatch_release(s[1]);

    /* The embedded worker is a registered node, online. */
    struct obx_store_worker_scope scope = {.status = OBX_WORKER_STATUS_ONLINE,
                                           .online_since_ms = 0};
    struct obx_store_worker_node *nodes = NULL;
    size_t n = 0;
    int64_t total = 0;
    assert_int_equal(obx_store_worker_list(st, &scope, 10, 0, &nodes, &n, &total, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(nodes[0].id, OBX_DISPATCH_EMBEDDED_ID);
    assert_int_equal(nodes[0].n_caps, 7);
    obx_store_worker_nodes_free(nodes, n);
    obx_dispatch_free(d);
    obx_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_writer_wins),
        cmocka_unit_test(test_request_id_unique_per_owner),
        cmocka_unit_test(test_recover_and_prune),
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
