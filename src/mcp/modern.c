/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rules of the modern era (protocol 2026-07-28) that do not depend on a session: reading and
 * checking a request's _meta envelope, the errors the era defines (-32020 header mismatch, -32021
 * missing client capability, -32022 unsupported version), the Streamable HTTP header checks
 * (MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-*) and what every modern result carries
 * (resultType and the server's identity). Pure functions of their arguments; any thread.
 */
#include "mcp-internal.h"

#include <stdarg.h>
#include <strings.h>

#include "common/base64.h"

static const char *const log_levels[] = {"debug", "info",     "notice", "warning",
                                         "error", "critical", "alert",  "emergency"};

int obx_mcp_log_level_parse(const char *name)
{
    for (size_t i = 0; name && i < OBX_ARRAY_SIZE(log_levels); i++)
        if (strcmp(name, log_levels[i]) == 0)
            return (int)i;
    return -1;
}

const char *obx_mcp_log_level_name(int level)
{
    return level >= 0 && (size_t)level < OBX_ARRAY_SIZE(log_levels) ? log_levels[level] : "info";
}

/* ---- errors ---- */

json_t *obx_mcp_error_data(json_t *id, int code, json_t *data, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = obx_xvasprintf(fmt, ap);
    va_end(ap);
    json_t *r = obx_rpc_error(id, code, "%s", text);
    free(text);
    if (data)
        json_object_set_new(json_object_get(r, "error"), "data", data);
    return r;
}

json_t *obx_mcp_missing_capability(json_t *id, json_t *required, const char *what)
{
    return obx_mcp_error_data(id, OBX_RPC_MISSING_CAPABILITY,
                              json_pack("{so}", "requiredCapabilities", required),
                              "Missing required client capability: %s", what);
}

json_t *obx_mcp_missing_tasks_capability(json_t *id, const char *what)
{
    return obx_mcp_missing_capability(id, json_pack("{s{s{}}}", "extensions", OBX_MCP_EXT_TASKS),
                                      what);
}

static json_t *envelope_error(json_t *id, const char *key, const char *problem)
{
    json_t *data = json_pack("{s{ssss}}", "envelope", "key", key, "problem", problem);
    if (strcmp(key, "_meta") == 0)
        return obx_mcp_error_data(id, OBX_RPC_INVALID_PARAMS, data,
                                  "Invalid params: params._meta %s", problem);
    return obx_mcp_error_data(id, OBX_RPC_INVALID_PARAMS, data,
                              "Invalid params: params._meta[\"%s\"] %s", key, problem);
}

/* ---- the envelope ---- */

static bool has_modern_key(const json_t *meta)
{
    static const char *const keys[] = {OBX_MCP_META_VERSION, OBX_MCP_META_CLIENT_CAPS,
                                       OBX_MCP_META_CLIENT_INFO, OBX_MCP_META_LOG_LEVEL};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(keys); i++)
        if (json_object_get(meta, keys[i]))
            return true;
    return false;
}

bool obx_mcp_envelope_claimed(const json_t *params)
{
    return has_modern_key(json_object_get(params, "_meta"));
}

static bool implementation_ok(const json_t *v)
{
    return json_is_object(v) && json_is_string(json_object_get(v, "name")) &&
           json_is_string(json_object_get(v, "version"));
}

int obx_mcp_envelope_read(const json_t *params, json_t *id, bool modern_hint,
                          struct obx_mcp_envelope *env, json_t **ret_error)
{
    memset(env, 0, sizeof(*env));
    env->log_level = -1;
    *ret_error = NULL;
    json_t *meta = json_object_get(params, "_meta");
    if (!modern_hint && !has_modern_key(meta))
        return 0;
    env->modern = true;
    if (!json_is_object(meta)) {
        *ret_error = envelope_error(id, "_meta",
                                    "is required: requests of protocol 2026-07-28 "
                                    "carry their protocol version and client "
                                    "capabilities in params._meta");
        return -EINVAL;
    }
    json_t *ver = json_object_get(meta, OBX_MCP_META_VERSION);
    if (!ver) {
        *ret_error = envelope_error(id, OBX_MCP_META_VERSION, "is required");
        return -EINVAL;
    }
    if (!json_is_string(ver)) {
        *ret_error = envelope_error(id, OBX_MCP_META_VERSION, "must be a string");
        return -EINVAL;
    }
    json_t *caps = json_object_get(meta, OBX_MCP_META_CLIENT_CAPS);
    if (!caps) {
        *ret_error = envelope_error(id, OBX_MCP_META_CLIENT_CAPS, "is required");
        return -EINVAL;
    }
    if (!json_is_object(caps)) {
        *ret_error = envelope_error(id, OBX_MCP_META_CLIENT_CAPS, "must be an object");
        return -EINVAL;
    }
    json_t *info = json_object_get(meta, OBX_MCP_META_CLIENT_INFO);
    if (info && !implementation_ok(info)) {
        *ret_error = envelope_error(id, OBX_MCP_META_CLIENT_INFO,
                                    "must be an object with string name and version");
        return -EINVAL;
    }
    json_t *level = json_object_get(meta, OBX_MCP_META_LOG_LEVEL);
    if (level) {
        env->log_level = obx_mcp_log_level_parse(json_string_value(level));
        if (env->log_level < 0) {
            *ret_error = envelope_error(id, OBX_MCP_META_LOG_LEVEL,
                                        "must be one of debug, info, notice, warning, error, "
                                        "critical, alert, emergency");
            return -EINVAL;
        }
    }
    env->requested = json_string_value(ver);
    env->supported = obx_mcp_version_parse(env->requested, &env->version) == 0 &&
                     obx_mcp_version_modern(env->version);
    if (!env->supported)
        env->version = OBX_MCP_VERSION_FIRST_MODERN;
    env->caps = caps;
    json_t *ext = json_object_get(caps, "extensions");
    env->tasks = json_is_object(json_object_get(ext, OBX_MCP_EXT_TASKS));
    return 1;
}

json_t *obx_mcp_unsupported_version(json_t *id, const char *requested)
{
    return obx_mcp_error_data(
        id, OBX_RPC_UNSUPPORTED_VERSION,
        json_pack("{soss}", "supported", obx_mcp_modern_versions(), "requested", requested),
        "Unsupported protocol version: %.64s (the per-request version this server speaks is "
        "2026-07-28; 2024-11-05 to 2025-11-25 open a session with initialize)",
        requested);
}

bool obx_mcp_caps_have(const json_t *caps, const json_t *required)
{
    const char *key;
    json_t *want;
    json_object_foreach((json_t *)required, key, want)
    {
        json_t *have = json_object_get(caps, key);
        if (!json_is_object(have))
            return false;
        if (json_is_object(want) && json_object_size(want) > 0 && !obx_mcp_caps_have(have, want))
            return false;
    }
    return true;
}

/* ---- results ---- */

void obx_mcp_modern_result(json_t *result, const char *server_name, const char *server_version)
{
    if (!json_is_object(result))
        return;
    if (!json_object_get(result, "resultType"))
        json_object_set_new(result, "resultType", json_string("complete"));
    json_t *meta = json_object_get(result, "_meta");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(result, "_meta", meta);
    }
    json_object_set_new(meta, OBX_MCP_META_SERVER_INFO,
                        json_pack("{ssssss}", "name", server_name, "title", "Onlyboxes", "version",
                                  server_version));
}

/* ---- Streamable HTTP headers ---- */

/* The header value without the optional whitespace around it (RFC 9110 5.5), copied. */
static char *trim_ows(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return obx_xstrndup(v, n);
}

static bool header_chars_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (!(*p == '\t' || (*p >= 0x20 && *p <= 0x7e)))
            return false;
    return true;
}

/* Strict Base64 (RFC 4648 section 4, padded): the alphabet, a length that is a multiple of 4,
 * padding only at the end. */
static bool base64_strict(const char *s, size_t n)
{
    if (n == 0 || n % 4 != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
        if (alpha)
            continue;
        if (ch == '=' && (i == n - 1 || (i == n - 2 && s[n - 1] == '=')))
            continue;
        return false;
    }
    return true;
}

int obx_mcp_header_decode(const char *raw, char **ret)
{
    *ret = NULL;
    if (!header_chars_ok(raw))
        return -EINVAL;
    _cleanup_free_ char *v = trim_ows(raw);
    static const char pre[] = "=?base64?", post[] = "?=";
    size_t n = strlen(v), np = sizeof(pre) - 1, ns = sizeof(post) - 1;
    if (n < np + ns || strncmp(v, pre, np) != 0 || strcmp(v + n - ns, post) != 0) {
        *ret = TAKE_PTR(v);
        return 0;
    }
    const char *b = v + np;
    size_t blen = n - np - ns;
    if (!base64_strict(b, blen))
        return -EINVAL;
    _cleanup_free_ char *enc = obx_xstrndup(b, blen);
    size_t len = 0;
    unsigned char *raw_bytes = obx_base64_decode(enc, &len);
    if (!raw_bytes)
        return -EINVAL;
    char *out = obx_xmalloc(len + 1);
    memcpy(out, raw_bytes, len);
    out[len] = '\0';
    free(raw_bytes);
    if (memchr(out, '\0', len)) {
        free(out);
        return -EINVAL;
    }
    *ret = out;
    return 0;
}

static json_t *mismatch(json_t *id, const char *header, const char *fmt, ...) OBX_PRINTF(3, 4);
static json_t *mismatch(json_t *id, const char *header, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = obx_xvasprintf(fmt, ap);
    va_end(ap);
    json_t *r = obx_mcp_error_data(id, OBX_RPC_HEADER_MISMATCH, json_pack("{ss}", "header", header),
                                   "Header mismatch: %s", text);
    free(text);
    return r;
}

/* The body field that Mcp-Name mirrors for a method, or NULL. */
static const char *name_source(const char *method)
{
    if (strcmp(method, "tools/call") == 0 || strcmp(method, "prompts/get") == 0)
        return "name";
    if (strcmp(method, "resources/read") == 0)
        return "uri";
    if (strcmp(method, "tasks/get") == 0 || strcmp(method, "tasks/update") == 0 ||
        strcmp(method, "tasks/cancel") == 0)
        return "taskId";
    return NULL;
}

/* The string form of an argument value as a header carries it; NULL when the type cannot be
 * mirrored. */
static char *header_form(const json_t *v)
{
    if (json_is_string(v))
        return obx_xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return obx_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_boolean(v))
        return obx_xstrdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

static json_t *check_params(const struct obx_mcp_tool_entry *t, const json_t *args, json_t *id,
                            const struct obx_mcp_http_meta *h)
{
    for (size_t i = 0; i < t->n_header_params; i++) {
        const char *prop = t->header_params[i].property;
        const char *hname = t->header_params[i].header;
        json_t *v = json_object_get(args, prop);
        if (json_is_null(v))
            v = NULL;
        const char *raw = h->param ? h->param(h->userdata, hname) : NULL;
        if (!raw && !v)
            continue;
        if (!raw)
            return mismatch(id, hname,
                            "the arguments carry \"%s\" but the Mcp-Param-%s header is absent",
                            prop, hname);
        _cleanup_free_ char *decoded = NULL;
        if (obx_mcp_header_decode(raw, &decoded) < 0)
            return mismatch(id, hname,
                            "the Mcp-Param-%s header has characters a header value cannot "
                            "carry, or a malformed =?base64?...?= value",
                            hname);
        if (!v)
            return mismatch(id, hname,
                            "the Mcp-Param-%s header is set but the arguments carry no \"%s\"",
                            hname, prop);
        _cleanup_free_ char *body = header_form(v);
        bool same = body && strcmp(body, decoded) == 0;
        if (!same && json_is_integer(v)) {
            int64_t n;
            same = obx_parse_int64(decoded, INT64_MIN, INT64_MAX, &n) == 0 &&
                   n == json_integer_value(v);
        }
        if (!same)
            return mismatch(id, hname, "the Mcp-Param-%s header does not match the \"%s\" argument",
                            hname, prop);
    }
    return NULL;
}

json_t *obx_mcp_http_version_check(const struct obx_rpc_msg *m, const struct obx_mcp_envelope *env,
                                   const struct obx_mcp_http_meta *h)
{
    json_t *id = m->id;
    const char *ver = env->requested;
    if (!h->protocol_version)
        return mismatch(id, "MCP-Protocol-Version",
                        "the body names protocol version %.64s but the MCP-Protocol-Version "
                        "header is absent",
                        ver);
    _cleanup_free_ char *pv = trim_ows(h->protocol_version);
    if (strcmp(pv, ver) != 0)
        return mismatch(id, "MCP-Protocol-Version",
                        "the body names protocol version %.64s but the MCP-Protocol-Version "
                        "header says %.64s",
                        ver, pv);
    return NULL;
}

json_t *obx_mcp_http_check(const struct obx_mcp_catalog *cat, const struct obx_rpc_msg *m,
                           const struct obx_mcp_envelope *env, const struct obx_mcp_http_meta *h)
{
    json_t *id = m->id;
    if (!h->method)
        return mismatch(id, "Mcp-Method",
                        "the body names method %.128s but the Mcp-Method header is absent",
                        m->method);
    _cleanup_free_ char *hm = trim_ows(h->method);
    if (strcmp(hm, m->method) != 0)
        return mismatch(id, "Mcp-Method",
                        "the body names method %.128s but the Mcp-Method header says %.128s",
                        m->method, hm);
    const char *field = name_source(m->method);
    json_t *jv = field ? json_object_get(m->params, field) : NULL;
    const char *body = json_string_value(jv);
    if (field && (body || h->name)) {
        if (!h->name)
            return mismatch(id, "Mcp-Name",
                            "the body carries params.%s but the Mcp-Name header is absent", field);
        _cleanup_free_ char *name = NULL;
        if (obx_mcp_header_decode(h->name, &name) < 0)
            return mismatch(id, "Mcp-Name",
                            "the Mcp-Name header has characters a header value cannot carry, or "
                            "a malformed =?base64?...?= value");
        if (!body || strcmp(name, body) != 0)
            return mismatch(id, "Mcp-Name",
                            "the Mcp-Name header does not match params.%s of the body", field);
    }
    if (strcmp(m->method, "tools/call") == 0 && body) {
        const struct obx_mcp_tool_entry *t = obx_mcp_catalog_find(cat, body);
        json_t *args = json_object_get(m->params, "arguments");
        if (t && (!args || json_is_object(args) || json_is_null(args)))
            return check_params(t, json_is_object(args) ? args : NULL, id, h);
    }
    return NULL;
}
