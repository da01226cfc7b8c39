/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Token management for the signed-in account (reference §1.4): list (masked), create (the value is
 * shown once, only its HMAC is stored), delete, and the value endpoint that is always 410.
 */
#include "api.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/utf8.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"

static json_t *token_json(const struct obx_token *t)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o}", "id", t->id, "name", t->name, "token_masked",
                     t->token_masked, "created_at", obx_route_time(t->created_ms), "updated_at",
                     obx_route_time(t->updated_ms));
}

static enum obx_route_result list_tokens(struct obx_route_ctx *ctx)
{
    _cleanup_free_ struct obx_token *items = NULL;
    size_t n = 0;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_store_token_list(ctx->console->store, ctx->account.id, &items, &n, &err) < 0) {
        obx_err("list tokens: %s", err.message);
        obx_route_fail(ctx->req, OBX_ERR_INTERNAL, "failed to list tokens");
        return OBX_ROUTE_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, token_json(&items[i]));
    obx_http_respond_json(ctx->req, 200,
                          json_pack("{s:o, s:I}", "items", arr, "total", (json_int_t)n));
    return OBX_ROUTE_DONE;
}

/* Validates the body; returns the error message or NULL. *ret_token is NULL to generate. */
static unsigned distinct_bytes(const char *s)
{
    bool seen[256] = {false};
    unsigned n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!seen[*p]) {
            seen[*p] = true;
            n++;
        }
    return n;
}

static const char *validate(json_t *body, char **ret_name, char **ret_token)
{
    const char *name, *token;
    if (obx_route_body_string(body, "name", "", &name) < 0 ||
        obx_route_body_string(body, "token", NULL, &token) < 0)
        return "invalid request body";
    *ret_name = obx_console_trim(name);
    if (!(*ret_name)[0])
        return "name is required";
    if (obx_utf8_count(*ret_name, strlen(*ret_name)) > OBX_CONSOLE_NAME_MAX_RUNES)
        return "name length must be <= 64";
    if (!token)
        return NULL;
    *ret_token = obx_console_trim(token);
    if (!(*ret_token)[0])
        return "token is required";
    if (strlen(*ret_token) > OBX_CONSOLE_TOKEN_MAX_BYTES)
        return "token length must be <= 256";
    if (obx_console_has_space(*ret_token))
        return "token must not contain whitespace";
    if (strlen(*ret_token) < OBX_CONSOLE_TOKEN_MIN_BYTES ||
        distinct_bytes(*ret_token) < OBX_CONSOLE_TOKEN_MIN_DISTINCT)
        return "token must be at least 32 characters long with at least 12 different ones "
               "(leave it out to get a generated one)";
    return NULL;
}

static enum obx_route_result create_token(struct obx_route_ctx *ctx)
{
    struct obx_console *c = ctx->console;
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    _cleanup_free_ char *name = NULL, *manual = NULL;
    const char *msg = validate(body, &name, &manual);
    if (msg) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, msg);
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *name_key = obx_console_lower(name);
    char value[OBX_CONSOLE_TOKEN_MAX_BYTES + 1];
    struct obx_token t;
    struct obx_error err = OBX_ERROR_INIT;
    int r = -EIO;
    for (int attempt = 0; attempt < OBX_CONSOLE_INSERT_ATTEMPTS; attempt++) {
        memset(&t, 0, sizeof(t));
        if (manual) {
            snprintf(value, sizeof(value), "%s", manual);
        } else {
            char hex[65];
            obx_auth_random_hex(hex, 32);
            snprintf(value, sizeof(value), "obx_%s", hex);
        }
        char idhex[33];
        obx_auth_random_hex(idhex, 16);
        snprintf(t.id, sizeof(t.id), "tok_%s", idhex);
        snprintf(t.account_id, sizeof(t.account_id), "%s", ctx->account.id);
        snprintf(t.name, sizeof(t.name), "%s", name);
        obx_auth_hmac_hex(c->cfg->hash_key, value, strlen(value), t.token_hash);
        obx_console_token_mask(value, t.token_masked, sizeof(t.token_masked));
        t.generated = manual == NULL;
        t.created_ms = t.updated_ms = obx_unix_ms();
        enum obx_store_conflict conflict;
        r = obx_store_token_insert(c->store, &t, name_key, &conflict, &err);
        if (r != -EEXIST)
            break;
        if (conflict == OBX_STORE_CONFLICT_NAME) {
            obx_route_fail(ctx->req, OBX_ERR_CONFLICT, "token name already exists");
            return OBX_ROUTE_DONE;
        }
        if (conflict == OBX_STORE_CONFLICT_HASH && manual) {
            /* Someone else's value, most likely guessed or shared: worth a line in the log. */
            obx_warn("console: account %s chose a token value another token has", ctx->account.id);
            obx_route_fail(ctx->req, OBX_ERR_CONFLICT, "token already exists");
            return OBX_ROUTE_DONE;
        }
        /* A generated value or an id collided: draw again. */
    }
    if (r < 0) {
        obx_err("create token: %s", err.message);
        obx_route_store_error(ctx, r, "failed to create token");
        return OBX_ROUTE_DONE;
    }
    json_t *res = token_json(&t);
    json_object_set_new(res, "token", json_string(value));
    json_object_set_new(res, "generated", json_boolean(t.generated));
    obx_http_respond_json(ctx->req, 201, res);
    obx_auth_wipe(value);
    if (manual)
        obx_auth_wipe(manual);
    return OBX_ROUTE_DONE;
}

static enum obx_route_result delete_token(struct obx_route_ctx *ctx)
{
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_token_delete(ctx->console->store, ctx->account.id, ctx->params[0], &err);
    if (r == -ENOENT) {
        obx_route_fail(ctx->req, OBX_ERR_NOT_FOUND, "token not found");
    } else if (r < 0) {
        obx_err("delete token: %s", err.message);
        obx_route_store_error(ctx, r, "failed to delete token");
    } else {
        obx_http_respond_empty(ctx->req, 204);
    }
    return OBX_ROUTE_DONE;
}

static enum obx_route_result token_value(struct obx_route_ctx *ctx)
{
    obx_route_fail(ctx->req, OBX_ERR_GONE,
                   "token value is only returned at creation time; delete and recreate "
                   "the token to obtain a new value");
    return OBX_ROUTE_DONE;
}

const struct obx_route obx_token_routes[] = {
    {OBX_HTTP_GET, "/api/v1/console/tokens", OBX_ROUTE_AUTH_COOKIE, list_tokens},
    {OBX_HTTP_POST, "/api/v1/console/tokens", OBX_ROUTE_AUTH_COOKIE, create_token},
    {OBX_HTTP_DELETE, "/api/v1/console/tokens/:token_id", OBX_ROUTE_AUTH_COOKIE, delete_token},
    {OBX_HTTP_GET, "/api/v1/console/tokens/:token_id/value", OBX_ROUTE_AUTH_COOKIE, token_value},
};
const size_t obx_token_routes_n = OBX_ARRAY_SIZE(obx_token_routes);
