/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protocol versions (parsing, names, negotiation) and what a Streamable HTTP transport checks
 * before it hands a POST body to a session: the MCP-Protocol-Version header and whether the body
 * is an initialize request. Pure functions; any thread.
 */
#include "mcp-internal.h"

static const char *const version_names[] = {
    [OBX_MCP_V2024_11_05] = "2024-11-05",
    [OBX_MCP_V2025_03_26] = "2025-03-26",
    [OBX_MCP_V2025_06_18] = "2025-06-18",
    [OBX_MCP_V2025_11_25] = "2025-11-25",
};

int obx_mcp_version_parse(const char *s, enum obx_mcp_version *ret)
{
    for (size_t i = 0; s && i < OBX_ARRAY_SIZE(version_names); i++)
        if (strcmp(s, version_names[i]) == 0) {
            *ret = (enum obx_mcp_version)i;
            return 0;
        }
    return -EINVAL;
}

const char *obx_mcp_version_name(enum obx_mcp_version v)
{
    return (size_t)v < OBX_ARRAY_SIZE(version_names) ? version_names[v] : "unknown";
}

enum obx_mcp_version obx_mcp_version_negotiate(const char *requested)
{
    enum obx_mcp_version v;
    return obx_mcp_version_parse(requested, &v) == 0 ? v : OBX_MCP_VERSION_LATEST;
}

enum obx_mcp_message_kind obx_mcp_message_kind(const char *text, size_t len, char *why,
                                               size_t why_size)
{
    json_t *err = NULL;
    _cleanup_json_ json_t *msg = obx_rpc_parse(text, len, &err);
    if (!msg && why)
        snprintf(why, why_size, "%s",
                 obx_json_get_str(json_object_get(err, "error"), "message", "parse error"));
    json_decref(err);
    if (!msg)
        return OBX_MCP_MESSAGE_UNPARSABLE;
    struct obx_rpc_msg m;
    if (obx_rpc_classify(msg, &m, &err) == OBX_RPC_REQUEST && strcmp(m.method, "initialize") == 0)
        return OBX_MCP_MESSAGE_INITIALIZE;
    json_decref(err);
    return OBX_MCP_MESSAGE_OTHER;
}

bool obx_mcp_version_supported(const char *version)
{
    enum obx_mcp_version v;
    return obx_mcp_version_parse(version, &v) == 0;
}

const char *obx_mcp_versions_text(void)
{
    return "2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05";
}
