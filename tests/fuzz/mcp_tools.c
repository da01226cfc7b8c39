/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: tool arguments and tool results, against the schemas tools/list publishes.
 *   byte 0 % 3 == 0  arguments: byte 1 picks the tool, the rest is the arguments JSON, validated
 *                    and turned into a payload by obx_mcp_tool_prepare() as tools/call does;
 *                 1  results: byte 1 picks the tool and the protocol version, the rest is what an
 *                    executor answered, shaped into a CallToolResult;
 *                 2  the validator alone: a schema and a value, separated by a NUL byte.
 * Checked: a refused argument always comes with a message naming the problem; an accepted one
 * gives an object payload with a timeout within the schema's bounds; a shaped result is an object
 * with a non-empty content array; the validator answers 0 or -EINVAL with a message.
 */
#include <string.h>

#include "fuzz.h"
#include "mcp/mcp-internal.h"

static struct obx_mcp_catalog catalog;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    obx_mcp_catalog_init(&catalog, false, NULL);
    return 0;
}

static void check_arguments(const struct obx_mcp_tool_entry *t, const char *text, size_t len)
{
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *args = obx_json_parse(text, len, &perr);
    if (!args)
        return; /* the JSON-RPC layer answers -32700 before a tool sees it */
    char *before = obx_json_dumps(args);
    json_t *payload = NULL;
    uint64_t timeout_ms = 0;
    char msg[600] = "";
    int r = obx_mcp_tool_prepare(t, args, &payload, &timeout_ms, msg, sizeof(msg));
    char *after = obx_json_dumps(args);
    FUZZ_CHECK(strcmp(before, after) == 0, "%s: prepare changed the caller's arguments",
               t->def->name);
    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL, "%s: prepare returned %d", t->def->name, r);
        FUZZ_CHECK(strncmp(msg, "invalid arguments: ", 19) == 0 && msg[19],
                   "%s: refused without a message: \"%s\"", t->def->name, msg);
    } else {
        FUZZ_CHECK(json_is_object(payload), "%s: accepted arguments gave no payload", t->def->name);
        FUZZ_CHECK(timeout_ms <= 600000, "%s: timeout %llu ms is out of bounds", t->def->name,
                   (unsigned long long)timeout_ms);
        char *p = obx_json_dumps(payload);
        free(p);
    }
    json_decref(payload);
    free(before);
    free(after);
    json_decref(args);
}

static void check_result(const struct obx_mcp_tool_entry *t, enum obx_mcp_version v,
                         const char *text, size_t len)
{
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *res = obx_json_parse(text, len, &perr);
    if (!res)
        return; /* the worker's results are JSON by construction */
    json_t *r = t->def->shape_result(t, res, v);
    FUZZ_CHECK(json_is_object(r), "%s: no CallToolResult", t->def->name);
    json_t *content = json_object_get(r, "content");
    FUZZ_CHECK(json_is_array(content) && json_array_size(content) > 0, "%s: no content",
               t->def->name);
    char *out = obx_json_dumps(r);
    free(out);
    json_decref(r);
    json_decref(res);
}

static void check_validator(unsigned flags, const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    if (!nul)
        return;
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *schema = obx_json_parse(text, (size_t)(nul - text), &perr);
    json_t *value = obx_json_parse(nul + 1, len - (size_t)(nul - text) - 1, &perr);
    if (schema && value) {
        char msg[256] = "x";
        int r = obx_mcp_schema_validate(schema, value, flags, msg, sizeof(msg));
        FUZZ_CHECK(r == 0 || (r == -EINVAL && msg[0]), "validate returned %d, message \"%s\"", r,
                   msg);
    }
    json_decref(schema);
    json_decref(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const struct obx_mcp_tool_entry *t = &catalog.tools[data[1] % catalog.n];
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    switch (data[0] % 3) {
    case 0:
        check_arguments(t, text, len);
        break;
    case 1:
        check_result(t, (enum obx_mcp_version)((data[1] >> 4) % 4), text, len);
        break;
    default:
        check_validator(data[1] & 3, text, len);
        break;
    }
    return 0;
}
