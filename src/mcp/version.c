/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protocol versions: parsing, names, and the legacy negotiation of initialize. Pure functions;
 * any thread.
 */
#include "mcp-internal.h"

static const char *const version_names[] = {
    [OBX_MCP_V2024_11_05] = "2024-11-05", [OBX_MCP_V2025_03_26] = "2025-03-26",
    [OBX_MCP_V2025_06_18] = "2025-06-18", [OBX_MCP_V2025_11_25] = "2025-11-25",
    [OBX_MCP_V2026_07_28] = "2026-07-28",
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
    if (obx_mcp_version_parse(requested, &v) == 0 && !obx_mcp_version_modern(v))
        return v;
    return OBX_MCP_VERSION_LATEST;
}

json_t *obx_mcp_modern_versions(void)
{
    json_t *a = json_array();
    for (size_t i = OBX_ARRAY_SIZE(version_names); i-- > 0;)
        if (obx_mcp_version_modern((enum obx_mcp_version)i))
            json_array_append_new(a, json_string(version_names[i]));
    return a;
}

bool obx_mcp_version_supported(const char *version)
{
    enum obx_mcp_version v;
    return obx_mcp_version_parse(version, &v) == 0 && !obx_mcp_version_modern(v);
}

const char *obx_mcp_versions_text(void)
{
    return "2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05";
}
