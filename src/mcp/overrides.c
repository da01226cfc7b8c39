/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an operator may change in what models read: tools hidden from tools/list (still callable
 * by name), and each tool's name, title, description and parameter descriptions, from variables
 * <prefix><TOOL>_NAME, _TITLE, _DESCRIPTION and _PARAM_<PARAM>_DESCRIPTION, where TOOL and PARAM
 * are the built-in names in upper snake case (pythonExec: PYTHON_EXEC, session_id: SESSION_ID).
 * An empty parameter description hides the parameter from tools/list; tools/call still takes it.
 * Anything that names no tool or parameter, or a name clients would refuse, is an error naming the
 * variable. Pure functions; any thread.
 */
#include "mcp-internal.h"

#include <strings.h>

#include "common/utf8.h"

/* "pythonExec" -> "PYTHON_EXEC", "session_id" -> "SESSION_ID". */
static char *upper_snake(const char *s)
{
    size_t n = strlen(s);
    char *out = obx_xmalloc(2 * n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool upper = ch >= 'A' && ch <= 'Z';
        if (upper && i > 0 &&
            ((s[i - 1] >= 'a' && s[i - 1] <= 'z') || (s[i - 1] >= '0' && s[i - 1] <= '9')))
            *o++ = '_';
        *o++ = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
    }
    *o = '\0';
    return out;
}

static bool valid_tool_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static struct obx_mcp_tool_override *override_for(struct obx_mcp_tool_settings *s,
                                                  const struct obx_mcp_tool *def)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->tools[i].def == def)
            return &s->tools[i];
    s->tools = obx_xrealloc(s->tools, (s->n + 1) * sizeof(*s->tools));
    struct obx_mcp_tool_override *o = &s->tools[s->n++];
    memset(o, 0, sizeof(*o));
    o->def = def;
    return o;
}

void obx_mcp_tool_settings_done(struct obx_mcp_tool_settings *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct obx_mcp_tool_override *o = &s->tools[i];
        free(o->name);
        free(o->title);
        free(o->description);
        for (size_t j = 0; j < o->n_params; j++) {
            free(o->params[j].param);
            free(o->params[j].description);
        }
        free(o->params);
    }
    free(s->tools);
    memset(s, 0, sizeof(*s));
}

/* The names of defs in upper snake case, comma-separated (for error messages). */
static char *names_list(const struct obx_mcp_tool *const *defs, size_t n)
{
    char *out = obx_xstrdup("");
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *u = upper_snake(defs[i]->name);
        char *next = obx_xasprintf("%s%s%s", out, i ? ", " : "", u);
        free(out);
        out = next;
    }
    return out;
}

static int read_hidden(const char *hidden, const struct obx_mcp_tool *const *defs, size_t n,
                       const char *hidden_var, struct obx_mcp_tool_settings *s,
                       struct obx_error *err)
{
    _cleanup_free_ char *copy = obx_xstrdup(hidden ? hidden : "");
    char *save = NULL;
    for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        const struct obx_mcp_tool *def = NULL;
        for (size_t i = 0; i < n && !def; i++)
            if (strcasecmp(defs[i]->name, t) == 0)
                def = defs[i];
        if (!def) {
            _cleanup_free_ char *all = obx_xstrdup("");
            for (size_t i = 0; i < n; i++) {
                char *next = obx_xasprintf("%s%s%s", all, i ? ", " : "", defs[i]->name);
                free(all);
                all = next;
            }
            return obx_error_set(err, EINVAL, OBX_ERR_BAD_REQUEST,
                                 "%s: no tool named \"%.64s\" (tools: %s)", hidden_var, t, all);
        }
        override_for(s, def)->hidden = true;
    }
    return 0;
}

/* One <prefix><TOOL>_<SETTING>=value variable. */
static int read_one(const char *var, const char *value, const char *prefix,
                    const struct obx_mcp_tool *const *defs, size_t n,
                    struct obx_mcp_tool_settings *s, struct obx_error *err)
{
    const char *rest = var + strlen(prefix);
    const struct obx_mcp_tool *def = NULL;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *u = upper_snake(defs[i]->name);
        size_t len = strlen(u);
        if (len > best && strncmp(rest, u, len) == 0 && rest[len] == '_') {
            def = defs[i];
            best = len;
        }
    }
    if (!def) {
        _cleanup_free_ char *all = names_list(defs, n);
        return obx_error_set(err, EINVAL, OBX_ERR_BAD_REQUEST,
                             "%s names no tool (after %s comes one of %s, then _NAME, _TITLE, "
                             "_DESCRIPTION or _PARAM_<PARAM>_DESCRIPTION)",
                             var, prefix, all);
    }
    const char *what = rest + best + 1;
    if (!obx_utf8_valid(value, strlen(value)))
        return obx_error_set(err, EINVAL, OBX_ERR_BAD_REQUEST, "%s: not valid UTF-8", var);
    struct obx_mcp_tool_override *o = override_for(s, def);
    bool empty = obx_str_blank(value);
    if (strcmp(what, "NAME") == 0) {
        if (!empty && !valid_tool_name(value))
            return obx_error_set(err, EINVAL, OBX_ERR_BAD_REQUEST,
                                 "%s=%.80s: a tool name is 1-64 letters, digits, _ or - (clients "
                                 "refuse others)",
                                 var, value);
        free(o->name);
        o->name = empty ? NULL : obx_xstrdup(value);
        return 0;
    }
    if (strcmp(what, "TITLE") == 0 || strcmp(what, "DESCRIPTION") == 0) {
        char **field = what[0] == 'T' ? &o->title : &o->description;
        free(*field);
        *field = empty ? NULL : obx_xstrdup(value);
        return 0;
    }
    static const char pp[] = "PARAM_", ps[] = "_DESCRIPTION";
    size_t wl = strlen(what);
    if (wl > strlen(pp) + strlen(ps) && strncmp(what, pp, strlen(pp)) == 0 &&
        strcmp(what + wl - strlen(ps), ps) == 0) {
        _cleanup_free_ char *param = obx_xstrndup(what + strlen(pp), wl - strlen(pp) - strlen(ps));
        _cleanup_json_ json_t *schema = NULL;
        {
            _cleanup_free_ char *text = obx_xstrdup(def->input_schema);
            for (char *p = text; *p; p++)
                if (*p == '\'')
                    *p = '"';
            schema = json_loads(text, 0, NULL);
        }
        const char *key;
        json_t *v;
        const char *found = NULL;
        _cleanup_free_ char *all = obx_xstrdup("");
        json_object_foreach(json_object_get(schema, "properties"), key, v)
        {
            _cleanup_free_ char *u = upper_snake(key);
            if (strcmp(u, param) == 0)
                found = key;
            char *next = obx_xasprintf("%s%s%s", all, all[0] ? ", " : "", u);
            free(all);
            all = next;
        }
        if (!found)
            return obx_error_set(err, EINVAL, OBX_ERR_BAD_REQUEST,
                                 "%s: %s has no parameter %s (its parameters: %s)", var, def->name,
                                 param, all[0] ? all : "none");
        o->params = obx_xrealloc(o->params, (o->n_params + 1) * sizeof(*o->params));
        o->params[o->n_params].param = obx_xstrdup(found);
        o->params[o->n_params].description = empty ? NULL : obx_xstrdup(value);
        o->n_params++;
        return 0;
    }
    return obx_error_set(err, EINVAL, OBX_ERR_BAD_REQUEST,
                         "%s: unknown setting %s (one of _NAME, _TITLE, _DESCRIPTION, "
                         "_PARAM_<PARAM>_DESCRIPTION)",
                         var, what);
}

int obx_mcp_tool_settings_read(const char *hidden, const char *hidden_var, const char *prefix,
                               char *const *env, bool fixtures, struct obx_mcp_tool_settings *ret,
                               struct obx_error *err)
{
    memset(ret, 0, sizeof(*ret));
    const struct obx_mcp_tool *defs[64];
    size_t n = 0;
    for (size_t i = 0; i < obx_mcp_builtin_tools_count; i++)
        defs[n++] = &obx_mcp_builtin_tools[i];
    for (size_t i = 0; fixtures && i < obx_mcp_fixture_tools_count && n < OBX_ARRAY_SIZE(defs); i++)
        defs[n++] = &obx_mcp_fixture_tools[i];

    int r = read_hidden(hidden, defs, n, hidden_var ? hidden_var : "hidden tools", ret, err);
    for (char *const *e = env; r == 0 && prefix && e && *e; e++) {
        if (strncmp(*e, prefix, strlen(prefix)) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        _cleanup_free_ char *var = obx_xstrndup(*e, (size_t)(eq - *e));
        r = read_one(var, eq + 1, prefix, defs, n, ret, err);
    }
    /* Names stay unique, or tools/call could not tell the tools apart. */
    for (size_t i = 0; r == 0 && i < n; i++)
        for (size_t j = i + 1; r == 0 && j < n; j++) {
            const char *a = defs[i]->name, *b = defs[j]->name;
            for (size_t k = 0; k < ret->n; k++) {
                if (ret->tools[k].def == defs[i] && ret->tools[k].name)
                    a = ret->tools[k].name;
                if (ret->tools[k].def == defs[j] && ret->tools[k].name)
                    b = ret->tools[k].name;
            }
            if (strcmp(a, b) == 0) {
                _cleanup_free_ char *ui = upper_snake(defs[i]->name);
                _cleanup_free_ char *uj = upper_snake(defs[j]->name);
                r = obx_error_set(err, EINVAL, OBX_ERR_BAD_REQUEST,
                                  "%s%s_NAME and %s%s_NAME: both tools would be named \"%s\"",
                                  prefix ? prefix : "", ui, prefix ? prefix : "", uj, a);
            }
        }
    if (r < 0)
        obx_mcp_tool_settings_done(ret);
    return r;
}
