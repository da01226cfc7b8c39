/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tool catalogue: one row per tool with its name, title, description, schemas, annotations,
 * executor capability, payload builder and result shaper. tools/list is generated from this table
 * and tools/call validates against the very schemas it lists. The catalogue is built once per
 * server and read-only afterwards, so any thread may use it.
 */
#include "mcp-internal.h"

#include <stdarg.h>
#include <strings.h>

#include "common/base64.h"
#include "common/log.h"
#include "common/random.h"

/* ---- schemas ----
 * JSON texts with ' for " (converted when the catalogue is built), so they stay readable. No
 * apostrophes in descriptions, then. */

static const char echo_input[] =
    "{'type':'object','properties':{"
    "'message':{'type':'string','minLength':1,"
    "'description':'The text to send back unchanged. Must not be blank.'},"
    "'timeout_ms':{'type':'integer','minimum':1,'maximum':60000,'default':5000,"
    "'description':'End-to-end time limit in milliseconds (1-60000, default 5000).'}"
    "},'required':['message'],'additionalProperties':false}";

static const char echo_output[] = "{'type':'object','properties':{'message':{'type':'string'}},"
                                  "'required':['message']}";

static const char python_input[] =
    "{'type':'object','properties':{"
    "'code':{'type':'string','minLength':1,"
    "'description':'Python 3 source code, run as a script. Print what you want to see: stdout "
    "comes back as output. Must not be blank.'},"
    "'timeout_ms':{'type':'integer','minimum':1,'maximum':600000,'default':60000,"
    "'description':'Time limit in milliseconds (1-600000, default 60000). When it passes the "
    "program is killed and the call fails with deadline_exceeded.'},"
    "'network':{'type':['boolean','string'],'enum':[false,true,'allowlist'],'default':false,"
    "'description':'false: no network. allowlist: reach only the hosts the server operator "
    "listed, through a proxy the box uses on its own (pip, curl, npm, git, urllib work as "
    "usual), e.g. to pip install from PyPI. true: full network access. allowlist and true are "
    "refused unless the operator set them up.'}"
    "},'required':['code'],'additionalProperties':false}";

static const char python_output[] =
    "{'type':'object','properties':{"
    "'output':{'type':'string','description':'What the program wrote to stdout.'},"
    "'stderr':{'type':'string','description':'What the program wrote to stderr.'},"
    "'exit_code':{'type':'integer','description':'The exit status; non-zero is a normal "
    "result, e.g. an uncaught exception.'},"
    "'output_truncated':{'type':'boolean','description':'True when stdout was cut at the "
    "output limit.'},"
    "'stderr_truncated':{'type':'boolean','description':'True when stderr was cut at the "
    "output limit.'}"
    "},'required':['output','stderr','exit_code']}";

static const char terminal_input[] =
    "{'type':'object','properties':{"
    "'command':{'type':'string','minLength':1,"
    "'description':'The shell command to run with /bin/sh, e.g. ls -la or cd src && make. "
    "Must not be blank.'},"
    "'session_id':{'type':'string','minLength':1,'maxLength':128,'x-mcp-header':'Session-Id',"
    "'description':'The session to run in, as returned by an earlier call (1-128 visible "
    "ASCII characters). Omit it to start a new session.'},"
    "'create_if_missing':{'type':'boolean','default':false,"
    "'description':'Create the session when session_id names no existing session, instead of "
    "failing with session_not_found.'},"
    "'lease_ttl_sec':{'type':'integer','minimum':1,'maximum':86400,"
    "'description':'Keep the session for at least this many seconds after this command ends "
    "(within the bounds the server allows, by default 60-1800).'},"
    "'timeout_ms':{'type':'integer','minimum':1,'maximum':600000,'default':60000,"
    "'description':'Time limit in milliseconds (1-600000, default 60000). When it passes the "
    "command and everything it started are killed and the call fails with deadline_exceeded; "
    "the session survives.'},"
    "'network':{'type':['boolean','string'],'enum':[false,true,'allowlist'],'default':false,"
    "'description':'The network of a new session, chosen when it starts. false: none. "
    "allowlist: only the hosts the server operator listed, through a proxy the box uses on its "
    "own (pip, curl, npm, git work as usual), e.g. to install packages. true: full network "
    "access. allowlist and true are refused unless the operator set them up.'}"
    "},'required':['command'],'additionalProperties':false}";

static const char terminal_output[] =
    "{'type':'object','properties':{"
    "'session_id':{'type':'string','description':'Pass it back to run the next command in the "
    "same session.'},"
    "'created':{'type':'boolean','description':'True when this call started the session.'},"
    "'stdout':{'type':'string'},"
    "'stderr':{'type':'string'},"
    "'exit_code':{'type':'integer'},"
    "'stdout_truncated':{'type':'boolean'},"
    "'stderr_truncated':{'type':'boolean'},"
    "'lease_expires_unix_ms':{'type':'integer','description':'When the session will be removed "
    "if it stays idle, in Unix milliseconds.'}"
    "},'required':['session_id','created','stdout','stderr','exit_code','stdout_truncated',"
    "'stderr_truncated','lease_expires_unix_ms']}";

static const char image_input[] =
    "{'type':'object','properties':{"
    "'session_id':{'type':'string','minLength':1,'maxLength':128,'x-mcp-header':'Session-Id',"
    "'description':'The terminalExec session whose files to read.'},"
    "'file_path':{'type':'string','minLength':1,"
    "'description':'Path of the image inside the session sandbox: absolute, or relative to the "
    "session working directory (where its last cd left it; /workspace in a new session).'},"
    "'timeout_ms':{'type':'integer','minimum':1,'maximum':600000,'default':60000,"
    "'description':'Time limit in milliseconds (1-600000, default 60000).'}"
    "},'required':['session_id','file_path'],'additionalProperties':false}";

static const char export_input[] =
    "{'type':'object','properties':{"
    "'session_id':{'type':'string','minLength':1,'maxLength':128,'x-mcp-header':'Session-Id',"
    "'description':'The terminalExec session that has the file.'},"
    "'file_path':{'type':'string','minLength':1,"
    "'description':'Path of the file inside the session sandbox: absolute, or relative to the "
    "session working directory.'},"
    "'timeout_ms':{'type':'integer','minimum':1,'maximum':600000,'default':60000,"
    "'description':'Time limit in milliseconds (1-600000, default 60000).'}"
    "},'required':['session_id','file_path'],'additionalProperties':false}";

static const char export_output[] =
    "{'type':'object','properties':{"
    "'download_url':{'type':'string','description':'Where the file can be downloaded without "
    "a token until expires_at (on a console).'},"
    "'path':{'type':'string','description':'Where the file now is on this host (local "
    "server).'},"
    "'filename':{'type':'string'},"
    "'size_bytes':{'type':'integer'},"
    "'mime_type':{'type':'string','description':'The type detected from the content.'},"
    "'expires_at':{'type':'string','description':'When the download URL stops working.'}"
    "},'required':['filename','size_bytes']}";

/* ---- payloads ---- */

static bool visible_ascii(const char *s)
{
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e)
            return false;
    return true;
}

static json_t *echo_payload(const json_t *args, char *msg, size_t size)
{
    return json_pack("{sO}", "message", json_object_get(args, "message"));
}

/* "network" as validated by the schema: true or "allowlist" travel, false is the default. */
static void copy_network(json_t *payload, const json_t *args)
{
    json_t *n = json_object_get(args, "network");
    if (json_is_true(n) || json_is_string(n))
        json_object_set(payload, "network", n);
}

static json_t *python_payload(const json_t *args, char *msg, size_t size)
{
    json_t *p = json_pack("{sOsO}", "code", json_object_get(args, "code"), "timeout_ms",
                          json_object_get(args, "timeout_ms"));
    copy_network(p, args);
    return p;
}

static json_t *terminal_payload(const json_t *args, char *msg, size_t size)
{
    json_t *p = json_pack("{sO}", "command", json_object_get(args, "command"));
    const char *sid = obx_json_get_str(args, "session_id", NULL);
    if (sid) {
        if (!visible_ascii(sid)) {
            snprintf(msg, size, "\"session_id\" must be 1-128 visible ASCII characters");
            json_decref(p);
            return NULL;
        }
        json_object_set_new(p, "session_id", json_string(sid));
        if (obx_json_get_bool(args, "create_if_missing", false))
            json_object_set_new(p, "create_if_missing", json_true());
    } else {
        /* A new session: the id is ours to choose, so the caller learns it from the result. */
        char uuid[37];
        obx_random_uuid(uuid);
        json_object_set_new(p, "session_id", json_string(uuid));
        json_object_set_new(p, "create_if_missing", json_true());
    }
    json_t *lease = json_object_get(args, "lease_ttl_sec");
    if (lease)
        json_object_set(p, "lease_ttl_sec", lease);
    json_object_set(p, "timeout_ms", json_object_get(args, "timeout_ms"));
    copy_network(p, args);
    return p;
}

static json_t *image_payload(const json_t *args, char *msg, size_t size)
{
    const char *sid = obx_json_get_str(args, "session_id", "");
    if (!visible_ascii(sid)) {
        snprintf(msg, size, "\"session_id\" must be 1-128 visible ASCII characters");
        return NULL;
    }
    return json_pack("{sssOsssO}", "session_id", sid, "file_path",
                     json_object_get(args, "file_path"), "action", "read", "timeout_ms",
                     json_object_get(args, "timeout_ms"));
}

static json_t *export_payload(const json_t *args, char *msg, size_t size)
{
    const char *sid = obx_json_get_str(args, "session_id", "");
    if (!visible_ascii(sid)) {
        snprintf(msg, size, "\"session_id\" must be 1-128 visible ASCII characters");
        return NULL;
    }
    return json_pack("{sssOsO}", "session_id", sid, "file_path", json_object_get(args, "file_path"),
                     "timeout_ms", json_object_get(args, "timeout_ms"));
}

/* ---- results ---- */

json_t *obx_mcp_result_text(const char *text)
{
    return json_pack("{s[{ssso}]}", "content", "type", "text", "text",
                     obx_json_string_bytes(text, strlen(text)));
}

json_t *obx_mcp_result_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = obx_xvasprintf(fmt, ap);
    va_end(ap);
    json_t *r = obx_mcp_result_text(text);
    json_object_set_new(r, "isError", json_true());
    free(text);
    return r;
}

/* echo, pythonExec, terminalExec: the result object as text and, where the version has it, as
 * structuredContent. A result that does not match the advertised output schema is refused here,
 * since clients reject the whole response when structuredContent fails the schema. */
static json_t *shape_structured(const struct obx_mcp_tool_entry *t, json_t *result,
                                enum obx_mcp_version v)
{
    char msg[256];
    _cleanup_json_ json_t *copy = json_deep_copy(result);
    if (obx_mcp_schema_validate(t->output_schema, copy, 0, msg, sizeof(msg)) < 0)
        return obx_mcp_result_error("%s: invalid %s result payload: %s", OBX_ERR_INTERNAL,
                                    t->def->capability, msg);
    _cleanup_free_ char *text = obx_json_dumps(copy);
    json_t *r = obx_mcp_result_text(text);
    if (v >= OBX_MCP_V2025_06_18)
        json_object_set(r, "structuredContent", copy);
    return r;
}

static json_t *shape_image(const struct obx_mcp_tool_entry *t, json_t *result,
                           enum obx_mcp_version v)
{
    const char *mime = obx_json_get_str(result, "mime_type", "");
    while (*mime == ' ' || *mime == '\t')
        mime++;
    size_t n = strlen(mime);
    while (n > 0 && (mime[n - 1] == ' ' || mime[n - 1] == '\t'))
        n--;
    _cleanup_free_ char *clean =
        n ? obx_xstrndup(mime, n) : obx_xstrdup("application/octet-stream");
    if (strncasecmp(clean, "image/", 6) != 0) {
        _cleanup_free_ char *text =
            obx_xasprintf("unsupported mime type: %s; expected image/*", clean);
        return obx_mcp_result_text(text);
    }
    const char *blob = obx_json_get_str(result, "blob", NULL);
    if (obx_str_empty(blob))
        return obx_mcp_result_error("%s: invalid %s result payload: no image data",
                                    OBX_ERR_INTERNAL, t->def->capability);
    return json_pack("{s[{sssssO}]}", "content", "type", "image", "mimeType", clean, "data",
                     json_object_get(result, "blob"));
}

/* ---- the table ---- */

const struct obx_mcp_tool obx_mcp_builtin_tools[] = {
    {
        .name = "echo",
        .title = "Echo Message",
        .description = "Returns the given message unchanged. Use it to check that the sandbox "
                       "service is reachable and to measure round-trip latency; it runs no code.",
        .input_schema = echo_input,
        .output_schema = echo_output,
        .annotations = "{'title':'Echo Message','readOnlyHint':true,'destructiveHint':false,"
                       "'idempotentHint':true,'openWorldHint':false}",
        .capability = "echo",
        .build_payload = echo_payload,
        .shape_result = shape_structured,
    },
    {
        .name = "exportFile",
        .title = "Export File",
        .description =
            "Copies a file out of a terminalExec session so that it can be kept or handed on: a "
            "result, a report, a built artifact. On a shared server the answer has a "
            "download_url that works without credentials until expires_at, and the file "
            "outlives the session; on a local server the file is copied to a directory of this "
            "computer and the answer has its path. Exports one regular file; archive a "
            "directory first (tar, zip).",
        .input_schema = export_input,
        .output_schema = export_output,
        .annotations = "{'title':'Export File','readOnlyHint':true,'destructiveHint':false,"
                       "'openWorldHint':true}",
        .capability = "exportfile",
        .build_payload = export_payload,
        .shape_result = shape_structured,
        /* The file is copied while the call runs; its answer is short once it is there. */
        .task_support = OBX_MCP_TASK_FORBIDDEN,
    },
    {
        .name = "pythonExec",
        .title = "Python Execute",
        .description =
            "Runs a Python 3 program in a fresh, isolated sandbox and returns its stdout (output), "
            "stderr and exit_code. Every call starts with a new interpreter in an empty "
            "workspace and nothing is kept afterwards; use terminalExec when files or state must "
            "survive between calls. A non-zero exit_code (for example an uncaught exception) is a "
            "normal result, not a tool failure. Each output stream keeps about 1 MiB at most; "
            "output_truncated and stderr_truncated say when output was cut.",
        .input_schema = python_input,
        .output_schema = python_output,
        .annotations = "{'title':'Python Execute','destructiveHint':true,'openWorldHint':true}",
        .capability = "pythonexec",
        .build_payload = python_payload,
        .shape_result = shape_structured,
    },
    {
        .name = "readImage",
        .title = "Read Image",
        .description =
            "Reads an image file (PNG, JPEG, GIF, WebP, BMP, TIFF, ICO or SVG) from a "
            "terminalExec session's sandbox and returns it as image content, so you can look at "
            "plots, charts or screenshots you produced there. The type is detected from the "
            "file's content; a file that is not an image gives a short text note instead. Files "
            "over 5 MiB fail with file_too_large.",
        .input_schema = image_input,
        .annotations = "{'title':'Read Image','destructiveHint':false,'openWorldHint':true}",
        .capability = "terminalresource",
        .build_payload = image_payload,
        .shape_result = shape_image,
    },
    {
        .name = "terminalExec",
        .title = "Terminal Execute",
        .description =
            "Runs a shell command with /bin/sh in a persistent, sandboxed terminal session and "
            "returns stdout, stderr and exit_code. The session behaves like a terminal: files, "
            "the working directory and exported environment variables are kept from one command "
            "to the next. Omit session_id to start a new session (it starts empty in /workspace) "
            "and pass the returned session_id to later calls to continue in it. A session runs "
            "one command at a time and is removed after staying idle past its lease.",
        .input_schema = terminal_input,
        .output_schema = terminal_output,
        .annotations = "{'title':'Terminal Execute','destructiveHint':true,'openWorldHint':true}",
        .capability = "terminalexec",
        .build_payload = terminal_payload,
        .shape_result = shape_structured,
    },
};

const size_t obx_mcp_builtin_tools_count = OBX_ARRAY_SIZE(obx_mcp_builtin_tools);

static json_t *load(const char *name, const char *text)
{
    if (!text)
        return NULL;
    _cleanup_free_ char *json = obx_xstrdup(text);
    for (char *p = json; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_error_t je;
    json_t *j = json_loads(json, 0, &je);
    if (!j) {
        fprintf(stderr, "onlyboxes: bad built-in JSON for tool %s: %s\n", name, je.text);
        abort();
    }
    return j;
}

static bool required(const json_t *schema, const char *param)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(schema, "required"), i, v)
    {
        if (obx_streq(json_string_value(v), param))
            return true;
    }
    return false;
}

/* The operator's changes to what clients read: names, title, descriptions, hidden parameters
 * (out of properties and required, additionalProperties then allowed: tools/call still takes them,
 * validated against the full schema). */
static void apply_override(struct obx_mcp_tool_entry *e, const struct obx_mcp_tool_override *o)
{
    if (o->name) {
        free(e->name);
        e->name = obx_xstrdup(o->name);
    }
    if (o->title) {
        free(e->title);
        e->title = obx_xstrdup(o->title);
        if (e->annotations)
            json_object_set_new(e->annotations, "title", json_string(o->title));
    }
    if (o->description) {
        free(e->description);
        e->description = obx_xstrdup(o->description);
    }
    e->hidden = o->hidden;
    json_t *props = json_object_get(e->list_schema, "properties");
    for (size_t i = 0; i < o->n_params; i++) {
        const struct obx_mcp_param_override *p = &o->params[i];
        json_t *prop = json_object_get(props, p->param);
        if (p->description) {
            json_object_set_new(prop, "description", json_string(p->description));
            continue;
        }
        json_object_del(props, p->param);
        json_t *req = json_object_get(e->list_schema, "required");
        for (size_t j = json_array_size(req); j-- > 0;)
            if (obx_streq(json_string_value(json_array_get(req, j)), p->param))
                json_array_remove(req, j);
        json_object_set_new(e->list_schema, "additionalProperties", json_true());
        obx_warn("mcp: tool %s: parameter %s hidden from tools/list (tools/call still takes it)%s",
                 e->name, p->param,
                 required(e->input_schema, p->param)
                     ? "; it is required, so models cannot make a valid call"
                     : "");
    }
}

/* The x-mcp-header declarations of the top-level properties clients see (Streamable HTTP
 * mirrors those arguments into Mcp-Param-* headers, so a proxy can route a session's calls to one
 * place), and the listed schema without them for legacy clients, which never saw the keyword. */
static void header_params(struct obx_mcp_tool_entry *e)
{
    e->list_schema_legacy = json_deep_copy(e->list_schema);
    json_t *props = json_object_get(e->list_schema, "properties");
    json_t *legacy = json_object_get(e->list_schema_legacy, "properties");
    const char *key;
    json_t *p;
    json_object_foreach(props, key, p)
    {
        const char *h = json_string_value(json_object_get(p, "x-mcp-header"));
        if (!h)
            continue;
        e->header_params =
            obx_xrealloc(e->header_params, (e->n_header_params + 1) * sizeof(*e->header_params));
        e->header_params[e->n_header_params].property = obx_xstrdup(key);
        e->header_params[e->n_header_params].header = obx_xstrdup(h);
        e->n_header_params++;
        json_object_del(json_object_get(legacy, key), "x-mcp-header");
    }
}

static int entry_cmp(const void *a, const void *b)
{
    const struct obx_mcp_tool_entry *x = a, *y = b;
    return strcmp(x->name, y->name);
}

void obx_mcp_catalog_init(struct obx_mcp_catalog *c, bool fixtures,
                          const struct obx_mcp_tool_settings *settings)
{
    size_t nb = obx_mcp_builtin_tools_count;
    size_t n = nb + (fixtures ? obx_mcp_fixture_tools_count : 0);
    c->tools = obx_xcalloc(n, sizeof(*c->tools));
    c->n = 0;
    for (size_t i = 0; i < n; i++) {
        const struct obx_mcp_tool *def =
            i < nb ? &obx_mcp_builtin_tools[i] : &obx_mcp_fixture_tools[i - nb];
        struct obx_mcp_tool_entry *e = &c->tools[c->n++];
        e->def = def;
        e->name = obx_xstrdup(def->name);
        e->title = def->title ? obx_xstrdup(def->title) : NULL;
        e->description = obx_xstrdup(def->description);
        e->input_schema = load(def->name, def->input_schema);
        e->list_schema = json_deep_copy(e->input_schema);
        e->output_schema = load(def->name, def->output_schema);
        e->annotations = load(def->name, def->annotations);
        e->requires = load(def->name, def->requires);
        for (size_t k = 0; settings && k < settings->n; k++)
            if (settings->tools[k].def == def)
                apply_override(e, &settings->tools[k]);
        header_params(e);
    }
    qsort(c->tools, c->n, sizeof(*c->tools), entry_cmp);
}

void obx_mcp_catalog_done(struct obx_mcp_catalog *c)
{
    for (size_t i = 0; i < c->n; i++) {
        struct obx_mcp_tool_entry *e = &c->tools[i];
        free(e->name);
        free(e->title);
        free(e->description);
        json_decref(e->input_schema);
        json_decref(e->list_schema);
        json_decref(e->list_schema_legacy);
        json_decref(e->output_schema);
        json_decref(e->annotations);
        json_decref(e->requires);
        for (size_t j = 0; j < e->n_header_params; j++) {
            free(e->header_params[j].property);
            free(e->header_params[j].header);
        }
        free(e->header_params);
    }
    free(c->tools);
    c->tools = NULL;
    c->n = 0;
}

const struct obx_mcp_tool_entry *obx_mcp_catalog_find(const struct obx_mcp_catalog *c,
                                                      const char *name)
{
    for (size_t i = 0; name && i < c->n; i++)
        if (strcmp(c->tools[i].name, name) == 0)
            return &c->tools[i];
    return NULL;
}

const struct obx_mcp_tool_entry *obx_mcp_catalog_by_capability(const struct obx_mcp_catalog *c,
                                                               const char *capability)
{
    for (size_t i = 0; capability && i < c->n; i++)
        if (obx_streq(c->tools[i].def->capability, capability))
            return &c->tools[i];
    return NULL;
}

/* Cursors are "t<offset>" in base64: opaque to clients, trivial for us to check. */
static char *cursor_make(size_t offset)
{
    char raw[32];
    int n = snprintf(raw, sizeof(raw), "t%zu", offset);
    return obx_base64_encode(raw, (size_t)n);
}

static bool cursor_parse(const char *cursor, size_t n_tools, size_t *ret)
{
    size_t len = 0;
    _cleanup_free_ unsigned char *raw = obx_base64_decode(cursor, &len);
    if (!raw || len < 2 || len > 20 || raw[0] != 't')
        return false;
    char digits[24];
    memcpy(digits, raw + 1, len - 1);
    digits[len - 1] = '\0';
    int64_t off;
    if (obx_parse_int64(digits, 1, (int64_t)n_tools - 1, &off) < 0)
        return false;
    *ret = (size_t)off;
    return true;
}

static json_t *tool_json(const struct obx_mcp_tool_entry *e, enum obx_mcp_version v)
{
    json_t *t = json_object();
    json_object_set_new(t, "name", json_string(e->name));
    if (e->title && v >= OBX_MCP_V2025_06_18)
        json_object_set_new(t, "title", json_string(e->title));
    json_object_set_new(t, "description", json_string(e->description));
    json_object_set(t, "inputSchema",
                    obx_mcp_version_modern(v) ? e->list_schema : e->list_schema_legacy);
    if (e->output_schema && v >= OBX_MCP_V2025_06_18)
        json_object_set(t, "outputSchema", e->output_schema);
    if (e->annotations && v >= OBX_MCP_V2025_03_26)
        json_object_set(t, "annotations", e->annotations);
    return t;
}

json_t *obx_mcp_catalog_list(const struct obx_mcp_catalog *c, enum obx_mcp_version v,
                             const char *cursor, size_t page_size)
{
    /* Offsets count the listed tools only. */
    _cleanup_free_ const struct obx_mcp_tool_entry **shown = obx_xcalloc(c->n + 1, sizeof(*shown));
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (!c->tools[i].hidden)
            shown[n++] = &c->tools[i];
    size_t start = 0;
    if (cursor && !cursor_parse(cursor, n, &start))
        return NULL;
    size_t end = n;
    if (page_size > 0 && start + page_size < n)
        end = start + page_size;
    json_t *tools = json_array();
    for (size_t i = start; i < end; i++)
        json_array_append_new(tools, tool_json(shown[i], v));
    json_t *r = json_pack("{so}", "tools", tools);
    if (end < n) {
        _cleanup_free_ char *next = cursor_make(end);
        json_object_set_new(r, "nextCursor", json_string(next));
    }
    return r;
}

int obx_mcp_tool_prepare(const struct obx_mcp_tool_entry *t, const json_t *args,
                         json_t **ret_payload, uint64_t *ret_timeout_ms, char *msg, size_t size)
{
    char why[512];
    _cleanup_json_ json_t *copy = json_deep_copy(args);
    if (obx_mcp_schema_validate(t->input_schema, copy, OBX_SCHEMA_DEFAULTS | OBX_SCHEMA_NOT_BLANK,
                                why, sizeof(why)) < 0) {
        snprintf(msg, size, "invalid arguments: %s", why);
        return -EINVAL;
    }
    *ret_payload = NULL;
    *ret_timeout_ms = (uint64_t)OBX_MAX(obx_json_get_int(copy, "timeout_ms", 0), 0);
    if (t->def->run) {
        *ret_payload = TAKE_PTR(copy); /* fixtures read their validated arguments */
    } else if (t->def->build_payload) {
        why[0] = '\0';
        json_t *p = t->def->build_payload(copy, why, sizeof(why));
        if (!p) {
            snprintf(msg, size, "invalid arguments: %s", why);
            return -EINVAL;
        }
        *ret_payload = p;
    }
    return 0;
}
