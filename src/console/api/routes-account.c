/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dashboard login, session, logout, password change, registration and account administration
 * (reference §1.3), on pool threads. Differences from the reference, on purpose: passwords are
 * argon2id and never trimmed anywhere (a whitespace-only password is "required"); sessions live in
 * the database (hashed) and read the account fresh on every request; failed logins are limited
 * per username and client address.
 */
#include "api.h"

#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/utf8.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"

static json_t *session_body(struct obx_route_ctx *ctx, const struct obx_account *a)
{
    return json_pack("{s:b, s:o, s:b, s:s, s:s}", "authenticated", true, "account",
                     obx_route_account_json(a, false), "registration_enabled",
                     ctx->console->cfg->enable_registration, "console_version", OBX_VERSION,
                     "console_repo_url", OBX_CONSOLE_REPO_URL);
}

/* A password the original console hashed (bcrypt) is hashed again with argon2id now that it is
 * known; the sign-in goes on even if that fails (the old hash still works). */
static void upgrade_hash(struct obx_route_ctx *ctx, const struct obx_account *a,
                         const char *password, const char *algo)
{
    char phc[OBX_AUTH_PWHASH_MAX];
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_auth_password_hash(password, phc) < 0 ||
        obx_store_account_set_password(ctx->console->store, a->id, phc, OBX_AUTH_HASH_ALGO,
                                       obx_unix_ms(), &err) < 0) {
        obx_warn("account %s: its %s password hash could not be replaced: %s", a->username, algo,
                 err.message[0] ? err.message : "hashing failed");
        return;
    }
    obx_info("account %s: its %s password hash was replaced by argon2id", a->username, algo);
}

static enum obx_route_result login(struct obx_route_ctx *ctx)
{
    struct obx_console *c = ctx->console;
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    const char *username, *password;
    if (obx_route_body_string(body, "username", "", &username) < 0 ||
        obx_route_body_string(body, "password", "", &password) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *trimmed = obx_console_trim(username);
    _cleanup_free_ char *key = obx_console_lower(trimmed);
    _cleanup_free_ char *limit_key = obx_xasprintf("%s\n%s", key, obx_route_client_ip(ctx));
    uint64_t now = obx_now_ms();
    if (obx_ratelimit_blocked(c->login_limit, limit_key, now)) {
        char retry[16];
        snprintf(retry, sizeof(retry), "%d", c->cfg->login_window_sec);
        obx_route_fail(ctx->req, OBX_ERR_RATE_LIMITED, "too many login attempts; try again later");
        obx_http_response_add_header(ctx->req, "retry-after", retry);
        return OBX_ROUTE_DONE;
    }

    struct obx_account a;
    _cleanup_free_ char *hash = NULL, *algo = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    bool ok = false;
    if (!key[0] || obx_utf8_count(key, strlen(key)) > OBX_CONSOLE_NAME_MAX_RUNES ||
        obx_str_blank(password)) {
        ok = false;
    } else if (obx_store_account_by_key(c->store, key, &a, &hash, &algo, &err) < 0) {
        obx_auth_password_dummy_verify(password); /* same cost as a wrong password */
    } else {
        ok = obx_auth_password_check(algo, hash, password);
    }
    if (!ok) {
        obx_ratelimit_fail(c->login_limit, limit_key, now);
        obx_info("failed dashboard login from %s", obx_route_client_ip(ctx));
        obx_route_fail(ctx->req, OBX_ERR_UNAUTHENTICATED, "invalid username or password");
        return OBX_ROUTE_DONE;
    }
    obx_ratelimit_reset(c->login_limit, limit_key);
    if (obx_auth_password_outdated(algo))
        upgrade_hash(ctx, &a, password, algo);
    int r = obx_route_session_start(ctx, a.id);
    if (r < 0) {
        obx_route_store_error(ctx, r, "failed to create session");
        return OBX_ROUTE_DONE;
    }
    obx_http_respond_json(ctx->req, 200, session_body(ctx, &a));
    return OBX_ROUTE_DONE;
}

static enum obx_route_result logout(struct obx_route_ctx *ctx)
{
    char value[160];
    if (obx_console_cookie_value(ctx->req->cookie, OBX_CONSOLE_SESSION_COOKIE, value,
                                 sizeof(value)) == 0 &&
        value[0]) {
        char hash[65];
        obx_route_session_hash(ctx->console, value, hash);
        obx_store_session_delete(ctx->console->store, hash, NULL);
    }
    obx_route_clear_session_cookie(ctx);
    obx_http_respond_empty(ctx->req, 204);
    return OBX_ROUTE_DONE;
}

static enum obx_route_result session(struct obx_route_ctx *ctx)
{
    obx_http_respond_json(ctx->req, 200, session_body(ctx, &ctx->account));
    return OBX_ROUTE_DONE;
}

static enum obx_route_result change_password(struct obx_route_ctx *ctx)
{
    struct obx_console *c = ctx->console;
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    const char *current, *next;
    if (obx_route_body_string(body, "current_password", "", &current) < 0 ||
        obx_route_body_string(body, "new_password", "", &next) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return OBX_ROUTE_DONE;
    }
    if (obx_str_blank(current)) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "current_password is required");
        return OBX_ROUTE_DONE;
    }
    if (obx_str_blank(next)) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "new_password is required");
        return OBX_ROUTE_DONE;
    }
    if (strlen(next) > OBX_CONSOLE_PASSWORD_MAX_BYTES) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "new_password length must be <= 1024");
        return OBX_ROUTE_DONE;
    }
    struct obx_account a;
    _cleanup_free_ char *hash = NULL, *algo = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_account_by_id(c->store, ctx->account.id, &a, &hash, &algo, &err);
    if (r == -ENOENT) {
        obx_store_session_delete_account(c->store, ctx->account.id, NULL);
        obx_route_clear_session_cookie(ctx);
        obx_route_fail(ctx->req, OBX_ERR_UNAUTHENTICATED, "authentication required");
        return OBX_ROUTE_DONE;
    }
    if (r < 0) {
        obx_err("change password: %s", err.message);
        obx_route_store_error(ctx, r, "failed to update password");
        return OBX_ROUTE_DONE;
    }
    if (!obx_auth_password_check(algo, hash, current)) {
        obx_route_fail(ctx->req, OBX_ERR_UNAUTHENTICATED, "invalid current password");
        return OBX_ROUTE_DONE;
    }
    char phc[OBX_AUTH_PWHASH_MAX];
    r = obx_auth_password_hash(next, phc) < 0
            ? -EIO
            : obx_store_account_set_password(c->store, a.id, phc, OBX_AUTH_HASH_ALGO, obx_unix_ms(),
                                             &err);
    if (r < 0) {
        obx_err("change password: %s", err.message[0] ? err.message : "hashing failed");
        obx_route_store_error(ctx, r, "failed to update password");
        return OBX_ROUTE_DONE;
    }
    /* Every other browser of this account is logged out; this one gets a fresh session. */
    r = obx_store_session_delete_account(c->store, a.id, &err);
    if (r >= 0)
        r = obx_route_session_start(ctx, a.id);
    if (r < 0) {
        obx_route_store_error(ctx, r, "failed to refresh session");
        return OBX_ROUTE_DONE;
    }
    obx_http_respond_empty(ctx->req, 204);
    return OBX_ROUTE_DONE;
}

int obx_console_account_create(struct obx_console *c, const char *username, const char *password,
                               bool is_admin, struct obx_account *ret, struct obx_error *err)
{
    char phc[OBX_AUTH_PWHASH_MAX];
    if (obx_auth_password_hash(password, phc) < 0)
        return obx_error_set(err, ENOMEM, OBX_ERR_INTERNAL, "password hashing failed");
    _cleanup_free_ char *key = obx_console_lower(username);
    for (int attempt = 0; attempt < OBX_CONSOLE_INSERT_ATTEMPTS; attempt++) {
        struct obx_account a = {.is_admin = is_admin};
        char hex[33];
        obx_auth_random_hex(hex, 16);
        snprintf(a.id, sizeof(a.id), "acc_%s", hex);
        snprintf(a.username, sizeof(a.username), "%s", username);
        a.created_ms = a.updated_ms = obx_unix_ms();
        enum obx_store_conflict conflict;
        int r =
            obx_store_account_insert(c->store, &a, key, phc, OBX_AUTH_HASH_ALGO, &conflict, err);
        if (r == 0) {
            *ret = a;
            return 0;
        }
        if (r != -EEXIST || conflict != OBX_STORE_CONFLICT_ID)
            return r;
    }
    return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "cannot allocate an account id");
}

static enum obx_route_result reg(struct obx_route_ctx *ctx)
{
    struct obx_console *c = ctx->console;
    if (!c->cfg->enable_registration) {
        obx_route_fail(ctx->req, OBX_ERR_FORBIDDEN, "registration is disabled");
        return OBX_ROUTE_DONE;
    }
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    const char *username, *password;
    if (obx_route_body_string(body, "username", "", &username) < 0 ||
        obx_route_body_string(body, "password", "", &password) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *name = obx_console_trim(username);
    const char *msg = NULL;
    if (!name[0])
        msg = "username is required";
    else if (obx_utf8_count(name, strlen(name)) > OBX_CONSOLE_NAME_MAX_RUNES)
        msg = "username length must be <= 64";
    else if (obx_str_blank(password))
        msg = "password is required";
    else if (strlen(password) > OBX_CONSOLE_PASSWORD_MAX_BYTES)
        msg = "password length must be <= 1024";
    if (msg) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, msg);
        return OBX_ROUTE_DONE;
    }
    struct obx_account a;
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_console_account_create(c, name, password, false, &a, &err);
    if (r == -EEXIST) {
        obx_route_fail(ctx->req, OBX_ERR_CONFLICT, "username already exists");
        return OBX_ROUTE_DONE;
    }
    if (r < 0) {
        obx_err("register: %s", err.message);
        obx_route_store_error(ctx, r, "failed to create account");
        return OBX_ROUTE_DONE;
    }
    obx_info("account %s (%s) created by %s", a.id, a.username, ctx->account.id);
    obx_http_respond_json(ctx->req, 201,
                          json_pack("{s:o, s:o, s:o}", "account", obx_route_account_json(&a, false),
                                    "created_at", obx_route_time(a.created_ms), "updated_at",
                                    obx_route_time(a.updated_ms)));
    return OBX_ROUTE_DONE;
}

static enum obx_route_result list_accounts(struct obx_route_ctx *ctx)
{
    int64_t page, page_size, offset;
    if (!obx_route_page(ctx, &page, &page_size, &offset))
        return OBX_ROUTE_DONE;
    _cleanup_free_ struct obx_account *items = NULL;
    size_t n = 0;
    int64_t total = 0;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_store_account_list(ctx->console->store, page_size, offset, &items, &n, &total, &err) <
        0) {
        obx_err("list accounts: %s", err.message);
        obx_route_fail(ctx->req, OBX_ERR_INTERNAL, "failed to list accounts");
        return OBX_ROUTE_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, obx_route_account_json(&items[i], true));
    obx_http_respond_json(ctx->req, 200,
                          json_pack("{s:o, s:I, s:I, s:I}", "items", arr, "total",
                                    (json_int_t)total, "page", (json_int_t)page, "page_size",
                                    (json_int_t)page_size));
    return OBX_ROUTE_DONE;
}

static enum obx_route_result delete_account(struct obx_route_ctx *ctx)
{
    const char *id = ctx->params[0];
    if (obx_streq(id, ctx->account.id)) {
        obx_route_fail(ctx->req, OBX_ERR_FORBIDDEN, "cannot delete current account");
        return OBX_ROUTE_DONE;
    }
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_account_delete(ctx->console->store, id, &err);
    if (r == -ENOENT) {
        obx_route_fail(ctx->req, OBX_ERR_NOT_FOUND, "account not found");
    } else if (r == -EPERM) {
        obx_route_fail(ctx->req, OBX_ERR_FORBIDDEN, "cannot delete admin account");
    } else if (r < 0) {
        obx_err("delete account: %s", err.message);
        obx_route_store_error(ctx, r, "failed to delete account");
    } else {
        obx_info("account %s deleted by %s", id, ctx->account.id);
        obx_http_respond_empty(ctx->req, 204);
    }
    return OBX_ROUTE_DONE;
}

const struct obx_route obx_account_routes[] = {
    {OBX_HTTP_POST, "/api/v1/console/login", OBX_ROUTE_AUTH_NONE, login},
    {OBX_HTTP_POST, "/api/v1/console/logout", OBX_ROUTE_AUTH_NONE, logout},
    {OBX_HTTP_GET, "/api/v1/console/session", OBX_ROUTE_AUTH_COOKIE, session},
    {OBX_HTTP_POST, "/api/v1/console/password", OBX_ROUTE_AUTH_COOKIE, change_password},
    {OBX_HTTP_POST, "/api/v1/console/register", OBX_ROUTE_AUTH_ADMIN, reg},
    {OBX_HTTP_GET, "/api/v1/console/accounts", OBX_ROUTE_AUTH_ADMIN, list_accounts},
    {OBX_HTTP_DELETE, "/api/v1/console/accounts/:account_id", OBX_ROUTE_AUTH_ADMIN, delete_account},
};
const size_t obx_account_routes_n = OBX_ARRAY_SIZE(obx_account_routes);
