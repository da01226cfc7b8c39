/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one table from error codes to HTTP statuses and JSON-RPC errors: what a REST client and an
 * MCP client are told for the same failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/error.h"

static void test_http_status(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int status;
    } cases[] = {
        {OBX_ERR_INVALID_PAYLOAD, 400},
        {OBX_ERR_SESSION_NOT_FOUND, 404},
        {OBX_ERR_SESSION_BUSY, 409},
        {OBX_ERR_NO_CAPACITY, 429},
        {OBX_ERR_SESSION_CAPACITY, 429},
        {OBX_ERR_WORKER_LOST, 502},
        {OBX_ERR_NO_WORKER, 503},
        {OBX_ERR_DEADLINE_EXCEEDED, 504},
        {OBX_ERR_STORAGE_FULL, 507},
        {OBX_ERR_UNAUTHENTICATED, 401},
        /* a session's files (docs/console.md) */
        {OBX_ERR_FILE_NOT_FOUND, 404},
        {OBX_ERR_PATH_IS_DIRECTORY, 409},
        {OBX_ERR_FILE_TOO_LARGE, 413},
        {OBX_ERR_UNSUPPORTED, 501},
        {OBX_ERR_EXECUTION_FAILED, 502},
        {OBX_ERR_PERMISSION_DENIED, 403},
        {OBX_ERR_NO_SPACE, 507},
        /* the MCP HTTP transport's refusals */
        {OBX_ERR_NOT_ACCEPTABLE, 406},
        {OBX_ERR_UNSUPPORTED_MEDIA_TYPE, 415},
        {OBX_ERR_BAD_REQUEST, 400},
        {OBX_ERR_FORBIDDEN, 403},
        {OBX_ERR_METHOD_NOT_ALLOWED, 405},
        {OBX_ERR_UNAVAILABLE, 503},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++) {
        assert_int_equal(obx_error_http_status(cases[i].code, 599), cases[i].status);
        assert_int_equal(obx_error_http_status_at(cases[i].code, OBX_ERROR_AT_CALL, 599),
                         cases[i].status);
    }
    /* Codes the table does not know: def. */
    assert_int_equal(obx_error_http_status("no_such_code", 503), 503);
    assert_int_equal(obx_error_http_status(NULL, 500), 500);
}

/* The exceptions of the task API (the original's statuses, pinned by the REST tests). */
static void test_http_status_tasks(void **state)
{
    (void)state;
    /* A session's files' statuses are not the task API's: its default instead (503 for a
     * command or task no worker took, 502 for one that failed). */
    static const char *const call_only[] = {OBX_ERR_FILE_NOT_FOUND, OBX_ERR_PATH_IS_DIRECTORY,
                                            OBX_ERR_FILE_TOO_LARGE, OBX_ERR_UNSUPPORTED,
                                            OBX_ERR_EXECUTION_FAILED};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(call_only); i++) {
        assert_int_equal(obx_error_http_status_at(call_only[i], OBX_ERROR_AT_TASK, 503), 503);
        assert_int_equal(obx_error_http_status_at(call_only[i], OBX_ERROR_AT_TASK, 502), 502);
        assert_int_equal(obx_error_http_status_at(call_only[i], OBX_ERROR_AT_SNAPSHOT, 502), 502);
    }
    /* A terminal command answers a fault of the request as such ... */
    assert_int_equal(obx_error_http_status_at(OBX_ERR_SESSION_NOT_FOUND, OBX_ERROR_AT_TASK, 502),
                     404);
    assert_int_equal(obx_error_http_status_at(OBX_ERR_SESSION_BUSY, OBX_ERROR_AT_TASK, 502), 409);
    assert_int_equal(obx_error_http_status_at(OBX_ERR_INVALID_PAYLOAD, OBX_ERROR_AT_TASK, 502),
                     400);
    assert_int_equal(obx_error_http_status_at(OBX_ERR_NO_CAPACITY, OBX_ERROR_AT_TASK, 503), 429);
    assert_int_equal(obx_error_http_status_at(OBX_ERR_NO_WORKER, OBX_ERROR_AT_TASK, 502), 503);
    /* ... a failed task's snapshot only availability and access. */
    static const struct {
        const char *code;
        int status;
    } snapshot[] = {
        {OBX_ERR_INVALID_PAYLOAD, 502},   {OBX_ERR_SESSION_NOT_FOUND, 502},
        {OBX_ERR_SESSION_BUSY, 502},      {OBX_ERR_CANCELED, 502},
        {OBX_ERR_DEADLINE_EXCEEDED, 502}, {OBX_ERR_TIMEOUT, 502},
        {OBX_ERR_NOT_A_DIRECTORY, 502},   {OBX_ERR_NO_CAPACITY, 429},
        {OBX_ERR_NO_WORKER, 503},         {OBX_ERR_SESSION_UNAVAILABLE, 503},
        {OBX_ERR_WORKER_LOST, 502},       {OBX_ERR_PERMISSION_DENIED, 403},
        {OBX_ERR_NO_SPACE, 507},          {"no_such_code", 502},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(snapshot); i++)
        assert_int_equal(obx_error_http_status_at(snapshot[i].code, OBX_ERROR_AT_SNAPSHOT, 502),
                         snapshot[i].status);
}

static void test_jsonrpc(void **state)
{
    (void)state;
    assert_int_equal(obx_error_jsonrpc_code(OBX_ERR_INVALID_PAYLOAD), -32602);
    assert_int_equal(obx_error_jsonrpc_code(OBX_ERR_INTERNAL), -32603);
    assert_int_equal(obx_error_jsonrpc_code("no_such_code"), -32603);
    /* The MCP HTTP transport's refusals: -32001 for a session it does not have, else -32000. */
    assert_int_equal(obx_error_jsonrpc_transport_code(OBX_ERR_SESSION_NOT_FOUND), -32001);
    assert_int_equal(obx_error_jsonrpc_transport_code(OBX_ERR_BAD_REQUEST), -32000);
    assert_int_equal(obx_error_jsonrpc_transport_code(OBX_ERR_NOT_ACCEPTABLE), -32000);
    assert_int_equal(obx_error_jsonrpc_transport_code(OBX_ERR_UNAVAILABLE), -32000);
    assert_int_equal(obx_error_jsonrpc_transport_code("no_such_code"), -32000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_status),
        cmocka_unit_test(test_http_status_tasks),
        cmocka_unit_test(test_jsonrpc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
