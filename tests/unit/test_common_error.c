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
        {OBX_ERR_INVALID_PAYLOAD, 400},  {OBX_ERR_SESSION_NOT_FOUND, 404},
        {OBX_ERR_SESSION_BUSY, 409},     {OBX_ERR_NO_CAPACITY, 429},
        {OBX_ERR_SESSION_CAPACITY, 429}, {OBX_ERR_WORKER_LOST, 502},
        {OBX_ERR_NO_WORKER, 503},        {OBX_ERR_DEADLINE_EXCEEDED, 504},
        {OBX_ERR_STORAGE_FULL, 507},     {OBX_ERR_UNAUTHENTICATED, 401},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(cases); i++)
        assert_int_equal(obx_error_http_status(cases[i].code, 599), cases[i].status);
    /* Where the status depends on the route, and for codes the table does not know: def. */
    assert_int_equal(obx_error_http_status(OBX_ERR_EXECUTION_FAILED, 502), 502);
    assert_int_equal(obx_error_http_status("no_such_code", 503), 503);
    assert_int_equal(obx_error_http_status(NULL, 500), 500);
}

static void test_jsonrpc(void **state)
{
    (void)state;
    assert_int_equal(obx_error_jsonrpc_code(OBX_ERR_INVALID_PAYLOAD), -32602);
    assert_int_equal(obx_error_jsonrpc_code(OBX_ERR_INTERNAL), -32603);
    assert_int_equal(obx_error_jsonrpc_code("no_such_code"), -32603);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_status),
        cmocka_unit_test(test_jsonrpc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
