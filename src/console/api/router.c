/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Routing and authentication. obx_router_dispatch() runs on the HTTP service thread and only
 * queues the request; route_job() runs on a pool thread: it matches the route table, checks the
 * cookie or bearer token against the store, calls the handler, and completes the request unless
 * the handler went asynchronous. An unmatched route is 404 with an empty body, as in the
 * reference; "/x/" redirects to "/x" when that route exists (301 for GET, 307 otherwise).
 */
#include "api.h"

#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"
#include "console/web/web.h"

static const struct {
    const struct obx_route *routes;
    const size_t *n;
} tables[] = {
    {obx_account_routes, &obx_account_routes_n},   {obx_token_routes, &obx_token_routes_n},
    {obx_task_routes, &obx_task_routes_n},         {obx_worker_routes, &obx_worker_routes_n},
    {obx_mcp_routes, &obx_mcp_routes_n},           {obx_web_routes, &obx_web_routes_n},
    {obx_session_routes, &obx_session_routes_n},   {obx_export_routes, &obx_export_routes_n},
    {obx_terminal_routes, &obx_terminal_routes_n},
};

/* Matches one pattern; fills params on success. */
static bool pattern_match(const char *pat, const char *path, size_t path_len, char **params,
                          size_t *n_params)
{
    size_t n = 0;
    const char *p = pat, *s = path, *end = path + path_len;
    while (*p && s < end) {
        if (*p != '/' || *s != '/')
            goto fail;
        p++;
        s++;
        const char *pe = strchrnul(p, '/');
        const char *se = memchr(s, '/', (size_t)(end - s));
        if (!se)
            se = end;
        if (*p == ':') {
            if (se == s || n >= OBX_ROUTE_MAX_PARAMS)
                goto fail;
            params[n++] = obx_xstrndup(s, (size_t)(se - s));
        } else if ((size_t)(pe - p) != (size_t)(se - s) || memcmp(p, s, (size_t)(se - s)) != 0) {
            goto fail;
        }
        p = pe;
        s = se;
    }
    if (*p || s != end)
        goto fail;
    *n_params = n;
    return true;
fail:
    for (size_t i = 0; i < n; i++)
        free(params[i]);
    return false;
}

const struct obx_route *obx_router_match(const struct obx_route *routes, size_t n,
                                         enum obx_http_method method, const char *path,
                                         char **params, size_t *n_params, bool *ret_redirect)
{
    size_t len = strlen(path);
    *ret_redirect = false;
    for (size_t i = 0; i < n; i++)
        if (routes[i].method == method &&
            pattern_match(routes[i].pattern, path, len, params, n_params))
            return &routes[i];
    if (len > 1 && path[len - 1] == '/') {
        for (size_t i = 0; i < n; i++) {
            if (routes[i].method == method &&
                pattern_match(routes[i].pattern, path, len - 1, params, n_params)) {
                for (size_t k = 0; k < *n_params; k++)
                    free(params[k]);
                *n_params = 0;
                *ret_redirect = true;
                return NULL;
            }
        }
    }
    return NULL;
}

static const char *method_name(enum obx_http_method m)
{
    static const char *const names[] = {
        [OBX_HTTP_GET] = "GET",         [OBX_HTTP_HEAD] = "HEAD",   [OBX_HTTP_POST] = "POST",
        [OBX_HTTP_PUT] = "PUT",         [OBX_HTTP_PATCH] = "PATCH", [OBX_HTTP_DELETE] = "DELETE",
        [OBX_HTTP_OPTIONS] = "OPTIONS", [OBX_HTTP_OTHER] = NULL,
    };
    return (size_t)m < OBX_ARRAY_SIZE(names) ? names[m] : NULL;
}

size_t obx_router_allowed(const struct obx_route *routes, size_t n, const char *path, char *out,
                          size_t size)
{
    size_t found = 0, len = strlen(out);
    char *params[OBX_ROUTE_MAX_PARAMS];
    size_t n_params = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pattern_match(routes[i].pattern, path, strlen(path), params, &n_params))
            continue;
        for (size_t k = 0; k < n_params; k++)
            free(params[k]);
        const char *name = method_name(routes[i].method);
        if (!name || strstr(out, name)) /* a method once (GET is never part of another name) */
            continue;
        int w = snprintf(out + len, size - len, "%s%s", len ? ", " : "", name);
        if (w > 0 && (size_t)w < size - len)
            len += (size_t)w;
        found++;
    }
    return found;
}

void obx_route_session_hash(const struct obx_console *c, const char *value, char out[static 65])
{
    _cleanup_free_ char *msg = obx_xasprintf("dashboard-session:%s", value);
    obx_auth_hmac_hex(c->cfg->hash_key, msg, strlen(msg), out);
}

static bool cookie_secure(const struct obx_route_ctx *ctx)
{
    const struct obx_http_request *r = ctx->req;
    if (r->tls)
        return true;
    if (!ctx->console->cfg->trust_proxy_headers || !r->forwarded_proto)
        return false;
    const char *v = r->forwarded_proto;
    while (*v == ' ')
        v++;
    size_t n = strcspn(v, ", ");
    return n == 5 && strncasecmp(v, "https", 5) == 0;
}

static void set_cookie(struct obx_route_ctx *ctx, const char *value, int64_t max_age_s,
                       int64_t expires_ms)
{
    char date[40];
    obx_console_format_http_date(expires_ms, date);
    _cleanup_free_ char *c =
        obx_xasprintf("%s=%s; Path=/; Expires=%s; Max-Age=%lld; HttpOnly;%s SameSite=Strict",
                      OBX_CONSOLE_SESSION_COOKIE, value, date, (long long)max_age_s,
                      cookie_secure(ctx) ? " Secure;" : "");
    obx_http_response_add_header(ctx->req, "set-cookie", c);
}

void obx_route_set_session_cookie(struct obx_route_ctx *ctx, const char *value)
{
    set_cookie(ctx, value, OBX_CONSOLE_SESSION_TTL_MS / 1000,
               obx_unix_ms() + OBX_CONSOLE_SESSION_TTL_MS);
}

void obx_route_clear_session_cookie(struct obx_route_ctx *ctx)
{
    set_cookie(ctx, "", 0, 0);
}

int obx_route_session_start(struct obx_route_ctx *ctx, const char *account_id)
{
    struct obx_console *c = ctx->console;
    char value[65], hash[65];
    obx_auth_random_hex(value, 32);
    obx_route_session_hash(c, value, hash);
    int64_t now = obx_unix_ms();
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_session_insert(c->store, hash, account_id, now,
                                     now + OBX_CONSOLE_SESSION_TTL_MS, &err);
    if (r < 0) {
        obx_err("cannot create a dashboard session: %s", err.message);
        return r;
    }
    obx_store_session_prune(c->store, now, NULL);
    obx_route_set_session_cookie(ctx, value);
    return 0;
}

void obx_route_fail(struct obx_http_request *req, const char *code, const char *message)
{
    obx_http_respond_error(req, obx_error_http_status(code, 500), message);
}

void obx_route_store_error(struct obx_route_ctx *ctx, int r, const char *message)
{
    if (r != -ENOSPC) {
        obx_route_fail(ctx->req, OBX_ERR_INTERNAL, message);
        return;
    }
    _cleanup_free_ char *m = obx_xasprintf(
        "%s: the console's database storage is full (no space left on its disk)", message);
    obx_route_fail(ctx->req, OBX_ERR_STORAGE_FULL, m);
}

const char *obx_route_client_ip(const struct obx_route_ctx *ctx)
{
    static __thread char ip[64];
    const struct obx_http_request *r = ctx->req;
    if (ctx->console->cfg->trust_proxy_headers && r->forwarded_for) {
        const char *v = r->forwarded_for;
        v += strspn(v, " ");
        size_t n = OBX_MIN(strcspn(v, ", "), sizeof(ip) - 1);
        memcpy(ip, v, n);
        ip[n] = '\0';
        return ip;
    }
    return r->remote_ip;
}

bool obx_route_page(struct obx_route_ctx *ctx, int64_t *ret_page, int64_t *ret_page_size,
                    int64_t *ret_offset)
{
    if (obx_console_parse_page_param(obx_http_request_query(ctx->req, "page"), 1, INT64_MAX,
                                     ret_page) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "page must be a positive integer");
        return false;
    }
    if (obx_console_parse_page_param(obx_http_request_query(ctx->req, "page_size"), 20, 100,
                                     ret_page_size) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "page_size must be a positive integer");
        return false;
    }
    if (__builtin_mul_overflow(*ret_page - 1, *ret_page_size, ret_offset))
        *ret_offset = INT64_MAX;
    return true;
}

json_t *obx_route_body_object(struct obx_route_ctx *ctx)
{
    struct obx_error err = OBX_ERROR_INIT;
    json_t *j = NULL;
    if (ctx->req->body_len > 0)
        j = obx_json_parse(ctx->req->body, ctx->req->body_len, &err);
    if (!json_is_object(j)) {
        json_decref(j);
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return NULL;
    }
    return j;
}

int obx_route_body_string(json_t *obj, const char *key, const char *def, const char **ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    /* The value is used as a C string: one with a NUL inside is refused, not cut short. */
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return -EINVAL;
    *ret = json_string_value(v);
    return 0;
}

json_t *obx_route_time(int64_t unix_ms)
{
    char buf[40];
    obx_time_rfc3339(unix_ms, buf);
    return json_string(buf);
}

json_t *obx_route_account_json(const struct obx_account *a, bool with_times)
{
    json_t *j = json_pack("{s:s, s:s, s:b}", "account_id", a->id, "username", a->username,
                          "is_admin", a->is_admin);
    if (with_times) {
        json_object_set_new(j, "created_at", obx_route_time(a->created_ms));
        json_object_set_new(j, "updated_at", obx_route_time(a->updated_ms));
    }
    return j;
}

/* Cookie auth. Returns false after answering. */
static bool auth_cookie(struct obx_route_ctx *ctx, bool admin)
{
    struct obx_console *c = ctx->console;
    char value[160];
    int r = obx_console_cookie_value(ctx->req->cookie, OBX_CONSOLE_SESSION_COOKIE, value,
                                     sizeof(value));
    if (r == -ENOENT || (r == 0 && obx_str_blank(value))) {
        obx_route_fail(ctx->req, OBX_ERR_UNAUTHENTICATED, "authentication required");
        return false;
    }
    if (r == 0) {
        obx_route_session_hash(c, value, ctx->session_hash);
        struct obx_error err = OBX_ERROR_INIT;
        r = obx_store_session_lookup(c->store, ctx->session_hash, obx_unix_ms(), &ctx->account,
                                     &err);
        if (r < 0 && r != -ENOENT) {
            obx_err("session lookup: %s", err.message);
            obx_route_fail(ctx->req, OBX_ERR_INTERNAL, "failed to read session");
            return false;
        }
    }
    if (r < 0) {
        obx_route_clear_session_cookie(ctx);
        obx_route_fail(ctx->req, OBX_ERR_UNAUTHENTICATED, "authentication required");
        return false;
    }
    if (admin && !ctx->account.is_admin) {
        obx_route_fail(ctx->req, OBX_ERR_FORBIDDEN, "admin access required");
        return false;
    }
    ctx->authed = true;
    return true;
}

/* The 401 of bearer auth, with the challenge RFC 6750 asks for. */
static void bearer_refused(struct obx_route_ctx *ctx, bool token_given)
{
    obx_route_fail(ctx->req, OBX_ERR_UNAUTHENTICATED, "invalid or missing token");
    obx_http_response_add_header(ctx->req, "www-authenticate",
                                 token_given ? "Bearer realm=\"onlyboxes\", error=\"invalid_token\""
                                             : "Bearer realm=\"onlyboxes\"");
}

/* The token's account into ctx: HMAC lookup, constant-time confirmation. */
static bool auth_token(struct obx_route_ctx *ctx, const char *token)
{
    struct obx_console *c = ctx->console;
    char hash[65];
    obx_auth_hmac_hex(c->cfg->hash_key, token, strlen(token), hash);
    struct obx_token t;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_token_by_hash(c->store, hash, &t, &err);
    if (r < 0 || !obx_auth_equal(t.token_hash, hash, 64) ||
        obx_store_account_by_id(c->store, t.account_id, &ctx->account, NULL, NULL, &err) < 0) {
        bearer_refused(ctx, true);
        return false;
    }
    ctx->authed = true;
    return true;
}

/* Bearer auth (reference §1.1): "Bearer <token>". */
static bool auth_bearer(struct obx_route_ctx *ctx)
{
    const char *h = ctx->req->authorization;
    _cleanup_free_ char *v = h ? obx_console_trim(h) : NULL;
    char *save = NULL, *scheme = v ? strtok_r(v, " \t", &save) : NULL;
    char *token = scheme ? strtok_r(NULL, " \t", &save) : NULL;
    char *extra = token ? strtok_r(NULL, " \t", &save) : NULL;
    if (!scheme || !token || extra || strcasecmp(scheme, "Bearer") != 0) {
        bearer_refused(ctx, false);
        return false;
    }
    return auth_token(ctx, token);
}

bool obx_route_auth_bearer(struct obx_route_ctx *ctx)
{
    return auth_bearer(ctx);
}

bool obx_route_auth_query_token(struct obx_route_ctx *ctx, const char *token)
{
    if (!*token) {
        bearer_refused(ctx, false);
        return false;
    }
    return auth_token(ctx, token);
}

/* CSRF: a state-changing request of the dashboard's API (the routes a session cookie signs, and
 * sign-in) sent by a page of another site is refused. Browsers send Origin with every request
 * that is not GET or HEAD, so one from a page shows where it comes from; a client without Origin
 * (curl, scripts) is no browser a page could steer. Bearer routes carry no ambient credential,
 * and /mcp checks Origin against its own allow-list. Returns false after answering 403. */
static bool cross_site_allowed(struct obx_route_ctx *ctx, const struct obx_route *route)
{
    const struct obx_http_request *r = ctx->req;
    if (r->method == OBX_HTTP_GET || r->method == OBX_HTTP_HEAD || r->method == OBX_HTTP_OPTIONS ||
        route->auth == OBX_ROUTE_AUTH_BEARER || strncmp(r->path, "/api/", 5) != 0 || !r->origin ||
        obx_web_same_origin(r->origin, r->host))
        return true;
    _cleanup_free_ char *msg =
        obx_xasprintf("cross-site request refused: Origin %.200s is not this console (%.200s)",
                      r->origin, r->host ? r->host : "no Host header");
    const char *m = method_name(r->method);
    obx_info("refused a cross-site %s %.200s from Origin %.200s", m ? m : "request", r->path,
             r->origin);
    obx_http_respond_error(ctx->req, 403, msg);
    return false;
}

struct route_job {
    struct obx_console *console;
    struct obx_http_request *req;
};

static enum obx_route_result run_route(struct obx_route_ctx *ctx)
{
    struct obx_http_request *req = ctx->req;
    const struct obx_route *route = NULL;
    bool redirect = false;
    for (size_t t = 0; t < OBX_ARRAY_SIZE(tables) && !route && !redirect; t++)
        route = obx_router_match(tables[t].routes, *tables[t].n, req->method, req->path,
                                 ctx->params, &ctx->n_params, &redirect);
    if (redirect) {
        _cleanup_free_ char *loc = obx_xstrndup(req->path, strlen(req->path) - 1);
        obx_http_respond_empty(req, req->method == OBX_HTTP_GET ? 301 : 307);
        obx_http_response_add_header(req, "location", loc);
        return OBX_ROUTE_DONE;
    }
    if (!route) {
        /* The reference answers every unmatched route with an empty 404. We name the mistake on
         * the API: the methods a known path takes (405), or that the path is not one. */
        char allow[64] = "";
        size_t n_allow = 0;
        for (size_t t = 0; t < OBX_ARRAY_SIZE(tables); t++)
            n_allow +=
                obx_router_allowed(tables[t].routes, *tables[t].n, req->path, allow, sizeof(allow));
        const char *m = method_name(req->method);
        if (n_allow > 0) {
            _cleanup_free_ char *msg =
                obx_xasprintf("method %s is not allowed on %.200s; it takes %s",
                              m ? m : "(unknown)", req->path, allow);
            obx_route_fail(req, OBX_ERR_METHOD_NOT_ALLOWED, msg);
            obx_http_response_add_header(req, "allow", allow);
        } else if (strncmp(req->path, "/api/", 5) == 0) {
            _cleanup_free_ char *msg =
                obx_xasprintf("no such route: %s %.200s", m ? m : "(unknown)", req->path);
            obx_route_fail(req, OBX_ERR_NOT_FOUND, msg);
        } else {
            obx_http_respond_empty(req, 404);
        }
        return OBX_ROUTE_DONE;
    }
    if (!cross_site_allowed(ctx, route))
        return OBX_ROUTE_DONE;
    switch (route->auth) {
    case OBX_ROUTE_AUTH_NONE:
        break;
    case OBX_ROUTE_AUTH_COOKIE:
    case OBX_ROUTE_AUTH_ADMIN:
        if (!auth_cookie(ctx, route->auth == OBX_ROUTE_AUTH_ADMIN))
            return OBX_ROUTE_DONE;
        break;
    case OBX_ROUTE_AUTH_BEARER:
        if (!auth_bearer(ctx))
            return OBX_ROUTE_DONE;
        break;
    case OBX_ROUTE_AUTH_ACCOUNT:
        if (req->authorization ? !auth_bearer(ctx) : !auth_cookie(ctx, false))
            return OBX_ROUTE_DONE;
        break;
    }
    return route->fn(ctx);
}

void obx_router_handle(struct obx_console *c, struct obx_http_request *req)
{
    struct obx_route_ctx ctx = {.console = c, .req = req};
    enum obx_route_result res = run_route(&ctx);
    for (size_t i = 0; i < ctx.n_params; i++)
        free(ctx.params[i]);
    if (res == OBX_ROUTE_DONE) {
        if (ctx.req->resp.status == 0)
            obx_route_fail(ctx.req, OBX_ERR_INTERNAL, "internal error");
        obx_http_request_complete(ctx.req);
    }
}

static void route_job(void *arg)
{
    struct route_job *job = arg;
    struct obx_console *c = job->console;
    struct obx_http_request *req = job->req;
    free(job);
    obx_router_handle(c, req);
}

void obx_router_dispatch(struct obx_http_request *req, void *userdata)
{
    struct route_job *job = obx_xmalloc(sizeof(*job));
    *job = (struct route_job){userdata, req};
    int r = obx_console_pool_submit(((struct obx_console *)userdata)->pool, route_job, job);
    if (r < 0) {
        free(job);
        obx_route_fail(req, OBX_ERR_UNAVAILABLE, "server busy; try again later");
        obx_http_request_complete(req);
    }
}
