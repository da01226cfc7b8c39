/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker management (reference §1.5), on pool threads: list, stats and in-flight counters scoped
 * by role, provisioning a worker credential (node id and secret; the secret is shown once and only
 * its HMAC is stored), delete, and the startup-command route that is always 410.
 *
 * Roles: an admin sees and deletes every worker and creates both types; any other account sees
 * and deletes only its own worker-sys and may create one. The embedded worker of
 * `console --with-worker` is a registered node like any other (node id "embedded", a normal
 * worker), online while the console runs; it cannot be deleted. Deleting a connected worker ends
 * its stream at once.
 */
#include "api.h"

#include <ctype.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/random.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"
#include "worker/worker.h"

#define STALE_AFTER_DEFAULT_SEC 30
#define STALE_AFTER_MAX_SEC (100LL * 365 * 24 * 3600)
#define HEARTBEAT_INTERVAL_SEC "5"
#define HEARTBEAT_JITTER_PCT "20"

/* Admins see everything; others only their own worker-sys. */
static struct obx_store_worker_scope scope_for(const struct obx_route_ctx *ctx,
                                               enum obx_store_worker_status_filter status,
                                               int64_t now_ms)
{
    return (struct obx_store_worker_scope){
        .owner_id = ctx->account.is_admin ? NULL : ctx->account.id,
        .status = status,
        .online_since_ms = now_ms - (int64_t)ctx->console->cfg->offline_ttl_sec * 1000,
    };
}

static json_t *node_json(const struct obx_store_worker_node *n)
{
    json_t *caps = json_array(), *labels = json_object();
    for (size_t i = 0; i < n->n_caps; i++)
        json_array_append_new(caps, json_pack("{s:s, s:i}", "name", n->caps[i].name, "max_inflight",
                                              n->caps[i].max_inflight));
    for (size_t i = 0; i < n->n_labels; i++)
        json_object_set_new(labels, n->labels[i].key, json_string(n->labels[i].value));
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:o, s:o}", "node_id", n->id, "node_name",
                     n->name, "executor_kind", n->executor_kind, "capabilities", caps, "labels",
                     labels, "version", n->version, "status", n->online ? "online" : "offline",
                     "registered_at", obx_route_time(n->registered_ms), "last_seen_at",
                     obx_route_time(n->last_seen_ms));
}

static enum obx_route_result list_workers(struct obx_route_ctx *ctx)
{
    int64_t page, page_size, offset;
    if (!obx_route_page(ctx, &page, &page_size, &offset))
        return OBX_ROUTE_DONE;
    const char *st = obx_http_request_query(ctx->req, "status");
    enum obx_store_worker_status_filter status;
    if (!st || obx_streq(st, "all")) {
        status = OBX_WORKER_STATUS_ALL;
    } else if (obx_streq(st, "online")) {
        status = OBX_WORKER_STATUS_ONLINE;
    } else if (obx_streq(st, "offline")) {
        status = OBX_WORKER_STATUS_OFFLINE;
    } else {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "status must be one of all|online|offline");
        return OBX_ROUTE_DONE;
    }
    int64_t now = obx_unix_ms();
    struct obx_store_worker_scope scope = scope_for(ctx, status, now);
    int64_t limit = page_size;
    struct obx_store_worker_node *items = NULL;
    size_t n = 0;
    int64_t total = 0;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_store_worker_list(ctx->console->store, &scope, limit, offset, &items, &n, &total,
                              &err) < 0) {
        obx_err("list workers: %s", err.message);
        obx_route_fail(ctx->req, OBX_ERR_INTERNAL, "failed to list workers");
        return OBX_ROUTE_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, node_json(&items[i]));
    obx_store_worker_nodes_free(items, n);
    obx_http_respond_json(ctx->req, 200,
                          json_pack("{s:o, s:I, s:I, s:I}", "items", arr, "total",
                                    (json_int_t)total, "page", (json_int_t)page, "page_size",
                                    (json_int_t)page_size));
    return OBX_ROUTE_DONE;
}

static enum obx_route_result worker_stats(struct obx_route_ctx *ctx)
{
    int64_t stale_sec;
    if (obx_console_parse_page_param(obx_http_request_query(ctx->req, "stale_after_sec"),
                                     STALE_AFTER_DEFAULT_SEC, STALE_AFTER_MAX_SEC,
                                     &stale_sec) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "stale_after_sec must be a positive integer");
        return OBX_ROUTE_DONE;
    }
    int64_t now = obx_unix_ms();
    struct obx_store_worker_scope scope = scope_for(ctx, OBX_WORKER_STATUS_ALL, now);
    struct obx_store_worker_stats s;
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_store_worker_stats(ctx->console->store, &scope, now - stale_sec * 1000, &s, &err) < 0) {
        obx_err("worker stats: %s", err.message);
        obx_route_fail(ctx->req, OBX_ERR_INTERNAL, "failed to read worker stats");
        return OBX_ROUTE_DONE;
    }
    obx_http_respond_json(ctx->req, 200,
                          json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "total", (json_int_t)s.total,
                                    "online", (json_int_t)s.online, "offline",
                                    (json_int_t)(s.total - s.online), "stale", (json_int_t)s.stale,
                                    "stale_after_sec", (json_int_t)stale_sec, "generated_at",
                                    obx_route_time(now)));
    return OBX_ROUTE_DONE;
}

/* Workers with a live session and their per-capability counters; others than admins see only
 * their own worker-sys. */
static enum obx_route_result worker_inflight(struct obx_route_ctx *ctx)
{
    json_t *all = obx_dispatch_inflight(ctx->console->dispatch);
    json_t *workers = all;
    if (!ctx->account.is_admin) {
        workers = json_array();
        struct obx_store_worker_scope scope = scope_for(ctx, OBX_WORKER_STATUS_ALL, obx_unix_ms());
        struct obx_store_worker_node *items = NULL;
        size_t n = 0;
        int64_t total = 0;
        struct obx_error err = OBX_ERROR_INIT;
        if (obx_store_worker_list(ctx->console->store, &scope, 100, 0, &items, &n, &total, &err) <
            0)
            obx_err("list workers: %s", err.message);
        size_t i;
        json_t *w;
        json_array_foreach(all, i, w)
        {
            for (size_t k = 0; k < n; k++)
                if (obx_streq(items[k].id, obx_json_get_str(w, "node_id", "")))
                    json_array_append(workers, w);
        }
        obx_store_worker_nodes_free(items, n);
        json_decref(all);
    }
    obx_http_respond_json(
        ctx->req, 200,
        json_pack("{s:o, s:o}", "workers", workers, "generated_at", obx_route_time(obx_unix_ms())));
    return OBX_ROUTE_DONE;
}

/* The hostname of a Host header (port and IPv6 brackets removed) into out, or false when it is
 * absent or holds anything but host characters (it ends up in a shell command). */
static bool request_hostname(const char *host, char *out, size_t size)
{
    if (obx_str_empty(host))
        return false;
    const char *h = host, *end;
    if (h[0] == '[') {
        h++;
        end = strchr(h, ']');
        if (!end)
            return false;
    } else {
        end = strchr(h, ':');
        if (end && strchr(end + 1, ':'))
            end = NULL; /* a bare IPv6 address */
        if (!end)
            end = h + strlen(h);
    }
    size_t n = (size_t)(end - h);
    if (n == 0 || n >= size)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && !strchr(".-:", h[i]))
            return false;
    memcpy(out, h, n);
    out[n] = '\0';
    return true;
}

/* WORKER_CONSOLE_GRPC_TARGET: CONSOLE_GRPC_PUBLIC_ADDR when set; else CONSOLE_GRPC_ADDR's host
 * (for a wildcard host the host this request reached, or 127.0.0.1) with the port bound, IPv6 in
 * brackets. */
static char *grpc_target(const struct obx_route_ctx *ctx)
{
    const struct obx_console_config *cfg = ctx->console->cfg;
    if (!obx_str_empty(cfg->grpc_public_addr))
        return obx_xstrdup(cfg->grpc_public_addr);
    char host[256];
    const char *h = cfg->grpc_host;
    if (obx_str_empty(h) || obx_streq(h, "0.0.0.0") || obx_streq(h, "::"))
        h = request_hostname(ctx->req->host, host, sizeof(host)) ? host : "127.0.0.1";
    int port = obx_dispatch_grpc_port(ctx->console->dispatch);
    if (port <= 0)
        port = cfg->grpc_port;
    return strchr(h, ':') ? obx_xasprintf("[%s]:%d", h, port) : obx_xasprintf("%s:%d", h, port);
}

/* {"node_id","type","command","env"}: the command line and the same variables one by one. */
static json_t *provision_body(const struct obx_route_ctx *ctx, const char *node_id,
                              const char *type, const char *secret)
{
    _cleanup_free_ char *target = grpc_target(ctx);
    const char *vars[][2] = {
        {"WORKER_CONSOLE_GRPC_TARGET", target},
        {"WORKER_ID", node_id},
        {"WORKER_SECRET", secret},
        {"WORKER_HEARTBEAT_INTERVAL_SEC", HEARTBEAT_INTERVAL_SEC},
        {"WORKER_HEARTBEAT_JITTER_PCT", HEARTBEAT_JITTER_PCT},
        /* A worker speaks TLS unless told otherwise: say so when this console's port does not. */
        {"WORKER_CONSOLE_INSECURE", "true"},
    };
    size_t n_vars =
        OBX_ARRAY_SIZE(vars) - (obx_str_empty(ctx->console->cfg->grpc_tls_cert_file) ? 0 : 1);
    struct obx_buf cmd = OBX_BUF_INIT(4096);
    json_t *env = json_object();
    for (size_t i = 0; i < n_vars; i++) {
        obx_buf_appendf(&cmd, "%s=%s ", vars[i][0], vars[i][1]);
        json_object_set_new(env, vars[i][0], json_string(vars[i][1]));
    }
    obx_buf_appendf(&cmd, "onlyboxes worker");
    json_t *body = json_pack("{s:s, s:s, s:s%, s:o}", "node_id", node_id, "type", type, "command",
                             cmd.data, cmd.len, "env", env);
    explicit_bzero(cmd.data, cmd.len);
    obx_buf_free(&cmd);
    return body;
}

static enum obx_route_result create_worker(struct obx_route_ctx *ctx)
{
    struct obx_console *c = ctx->console;
    _cleanup_json_ json_t *body = obx_route_body_object(ctx);
    if (!body)
        return OBX_ROUTE_DONE;
    const char *raw;
    if (obx_route_body_string(body, "type", "", &raw) < 0) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "invalid request body");
        return OBX_ROUTE_DONE;
    }
    _cleanup_free_ char *trimmed = obx_console_trim(raw);
    _cleanup_free_ char *type = obx_console_lower(trimmed);
    if (!obx_streq(type, OBX_WORKER_TYPE_NORMAL) && !obx_streq(type, OBX_WORKER_TYPE_SYS)) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "type must be one of normal|worker-sys");
        return OBX_ROUTE_DONE;
    }
    if (obx_streq(type, OBX_WORKER_TYPE_NORMAL) && !ctx->account.is_admin) {
        obx_route_fail(ctx->req, OBX_ERR_FORBIDDEN, "only admin can create normal worker");
        return OBX_ROUTE_DONE;
    }
    char node_id[37], node_name[16], secret[65], hash[65];
    struct obx_error err = OBX_ERROR_INIT;
    int r = -EIO;
    for (int attempt = 0; attempt < OBX_CONSOLE_INSERT_ATTEMPTS; attempt++) {
        obx_random_uuid(node_id);
        snprintf(node_name, sizeof(node_name), "worker-%.8s", node_id);
        obx_auth_random_hex(secret, 32);
        obx_auth_hmac_hex(c->cfg->hash_key, secret, strlen(secret), hash);
        int64_t now = obx_unix_ms();
        /* Offline from the start: last seen one second before the offline threshold. */
        struct obx_store_worker_provision p = {
            .node_id = node_id,
            .node_name = node_name,
            .type = type,
            .owner_id = ctx->account.id,
            .source = "console-ui",
            .secret_hash = hash,
            .registered_ms = now,
            .last_seen_ms = now - ((int64_t)c->cfg->offline_ttl_sec + 1) * 1000,
        };
        enum obx_store_conflict conflict;
        r = obx_store_worker_provision(c->store, &p, &conflict, &err);
        if (r == -EEXIST && conflict == OBX_STORE_CONFLICT_OWNER) {
            obx_auth_wipe(secret);
            obx_route_fail(ctx->req, OBX_ERR_CONFLICT,
                           "worker-sys already exists for current account");
            return OBX_ROUTE_DONE;
        }
        if (r != -EEXIST || conflict != OBX_STORE_CONFLICT_ID)
            break;
    }
    if (r < 0) {
        obx_auth_wipe(secret);
        obx_err("create worker: %s", err.message);
        obx_route_store_error(ctx, r, "failed to create worker");
        return OBX_ROUTE_DONE;
    }
    obx_info("worker %s (%s) provisioned by account %s", node_id, type, ctx->account.id);
    obx_http_respond_json(ctx->req, 201, provision_body(ctx, node_id, type, secret));
    obx_auth_wipe(secret);
    return OBX_ROUTE_DONE;
}

static enum obx_route_result delete_worker(struct obx_route_ctx *ctx)
{
    _cleanup_free_ char *id = obx_console_trim(ctx->params[0]);
    if (!id[0]) {
        obx_route_fail(ctx->req, OBX_ERR_BAD_REQUEST, "node_id is required");
        return OBX_ROUTE_DONE;
    }
    if (ctx->console->worker && ctx->account.is_admin && obx_streq(id, OBX_DISPATCH_EMBEDDED_ID)) {
        obx_route_fail(ctx->req, OBX_ERR_CONFLICT,
                       "the embedded worker cannot be deleted; restart the console "
                       "without --with-worker");
        return OBX_ROUTE_DONE;
    }
    struct obx_error err = OBX_ERROR_INIT;
    int r = obx_store_worker_delete(ctx->console->store, id,
                                    ctx->account.is_admin ? NULL : ctx->account.id, &err);
    if (r == -ENOENT) {
        obx_route_fail(ctx->req, OBX_ERR_NOT_FOUND, "worker not found");
    } else if (r < 0) {
        obx_err("delete worker: %s", err.message);
        obx_route_store_error(ctx, r, "failed to delete worker");
    } else {
        obx_info("worker %s deleted by account %s", id, ctx->account.id);
        obx_dispatch_revoke(ctx->console->dispatch, id);
        obx_http_respond_empty(ctx->req, 204);
    }
    return OBX_ROUTE_DONE;
}

static enum obx_route_result startup_command(struct obx_route_ctx *ctx)
{
    obx_route_fail(ctx->req, OBX_ERR_GONE,
                   "worker secret is returned only when creating the worker; delete and "
                   "recreate to get a new startup command");
    return OBX_ROUTE_DONE;
}

const struct obx_route obx_worker_routes[] = {
    {OBX_HTTP_GET, "/api/v1/workers", OBX_ROUTE_AUTH_COOKIE, list_workers},
    {OBX_HTTP_GET, "/api/v1/workers/stats", OBX_ROUTE_AUTH_COOKIE, worker_stats},
    {OBX_HTTP_GET, "/api/v1/workers/inflight", OBX_ROUTE_AUTH_COOKIE, worker_inflight},
    {OBX_HTTP_POST, "/api/v1/workers", OBX_ROUTE_AUTH_COOKIE, create_worker},
    {OBX_HTTP_DELETE, "/api/v1/workers/:node_id", OBX_ROUTE_AUTH_COOKIE, delete_worker},
    {OBX_HTTP_GET, "/api/v1/workers/:node_id/startup-command", OBX_ROUTE_AUTH_COOKIE,
     startup_command},
};
const size_t obx_worker_routes_n = OBX_ARRAY_SIZE(obx_worker_routes);
