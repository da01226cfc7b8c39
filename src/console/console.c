/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console's top level: configuration from the CONSOLE_* environment (one table row per
 * variable), the first-admin bootstrap, and the run sequence: store, pool, HTTP server, serve,
 * then a graceful stop (the pool finishes queued work before the server and the store go away).
 */
#include "console-internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"
#include "console/web/web.h"
#include "worker/worker.h"

enum opt_type {
    OPT_STR,
    OPT_INT,
    OPT_BOOL
};

struct opt {
    const char *env;
    enum opt_type type;
    const char *def;
    int64_t min, max;
    size_t offset;
};

#define OFF(f) offsetof(struct obx_console_config, f)

/* CONSOLE_HTTP_ADDR, CONSOLE_GRPC_ADDR and CONSOLE_HASH_KEY need parsing beyond a type and are
 * handled below, as is the check of the TLS files. */
static const struct opt opts[] = {
    {"CONSOLE_DB_PATH", OPT_STR, "./db/onlyboxes-console.db", 0, 0, OFF(db_path)},
    {"CONSOLE_DB_BUSY_TIMEOUT_MS", OPT_INT, "5000", 1, 600000, OFF(db_busy_timeout_ms)},
    {"CONSOLE_ENABLE_REGISTRATION", OPT_BOOL, "false", 0, 0, OFF(enable_registration)},
    {"CONSOLE_DASHBOARD_USERNAME", OPT_STR, "", 0, 0, OFF(dashboard_username)},
    {"CONSOLE_DASHBOARD_PASSWORD", OPT_STR, "", 0, 0, OFF(dashboard_password)},
    {"CONSOLE_TRUST_PROXY_HEADERS", OPT_BOOL, "false", 0, 0, OFF(trust_proxy_headers)},
    {"CONSOLE_HTTP_HEADER_TIMEOUT_SEC", OPT_INT, "10", 1, 3600, OFF(header_timeout_sec)},
    {"CONSOLE_HTTP_IDLE_TIMEOUT_SEC", OPT_INT, "60", 1, 3600, OFF(idle_timeout_sec)},
    {"CONSOLE_WORKER_THREADS", OPT_INT, "8", 1, 256, OFF(worker_threads)},
    {"CONSOLE_LOGIN_MAX_FAILURES", OPT_INT, "10", 1, 64, OFF(login_max_failures)},
    {"CONSOLE_LOGIN_WINDOW_SEC", OPT_INT, "300", 1, 86400, OFF(login_window_sec)},
    {"CONSOLE_TASK_RETENTION_DAYS", OPT_INT, "30", 1, 36500, OFF(task_retention_days)},
    {"CONSOLE_EMBEDDED_WORKER", OPT_BOOL, "false", 0, 0, OFF(embedded_worker)},
    {"CONSOLE_OFFLINE_TTL_SEC", OPT_INT, "15", 1, 86400, OFF(offline_ttl_sec)},
    {"CONSOLE_HEARTBEAT_INTERVAL_SEC", OPT_INT, "5", 1, 3600, OFF(heartbeat_interval_sec)},
    {"CONSOLE_GRPC_TLS_CERT_FILE", OPT_STR, "", 0, 0, OFF(grpc_tls_cert_file)},
    {"CONSOLE_GRPC_TLS_KEY_FILE", OPT_STR, "", 0, 0, OFF(grpc_tls_key_file)},
    {"CONSOLE_GRPC_CLIENT_CA_FILE", OPT_STR, "", 0, 0, OFF(grpc_client_ca_file)},
    {"CONSOLE_GRPC_MAX_WORKERS", OPT_INT, "1024", 1, 65536, OFF(grpc_max_workers)},
    {"CONSOLE_GRPC_PUBLIC_ADDR", OPT_STR, "", 0, 0, OFF(grpc_public_addr)},
    {"CONSOLE_TLS_CERT_FILE", OPT_STR, "", 0, 0, OFF(tls_cert_file)},
    {"CONSOLE_TLS_KEY_FILE", OPT_STR, "", 0, 0, OFF(tls_key_file)},
    {"CONSOLE_MCP_MAX_SESSIONS", OPT_INT, "1024", 1, 65536, OFF(mcp_max_sessions)},
    {"CONSOLE_MCP_MAX_SESSIONS_PER_ACCOUNT", OPT_INT, "64", 1, 65536,
     OFF(mcp_max_sessions_per_account)},
    {"CONSOLE_MCP_SESSION_IDLE_SEC", OPT_INT, "1800", 10, 604800, OFF(mcp_session_idle_sec)},
    {"CONSOLE_MCP_KEEPALIVE_SEC", OPT_INT, "15", 0, 300, OFF(mcp_keepalive_sec)},
    {"CONSOLE_MCP_ALLOWED_ORIGINS", OPT_STR, "", 0, 0, OFF(mcp_allowed_origins)},
    /* Test harnesses only (the MCP conformance suite sends no token); loopback only. */
    {"CONSOLE_MCP_TEST_FIXTURES", OPT_BOOL, "false", 0, 0, OFF(mcp_test_fixtures)},
};

static int parse_bool(const char *s, bool def)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return true;
        if (strcasecmp(s, no[i]) == 0)
            return false;
    }
    return def;
}

static void apply_opt(const struct opt *o, const char *v, struct obx_console_config *cfg)
{
    char *base = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_STR:
        *(char **)base = obx_xstrdup(v);
        break;
    case OPT_INT: {
        int64_t n, def = 0;
        obx_parse_int64(o->def, INT64_MIN, INT64_MAX, &def);
        /* As in the reference: unparsable or out of range falls back to the default. */
        if (obx_parse_int64(v, o->min, o->max, &n) < 0) {
            if (v != o->def)
                obx_warn("%s=%s is not an integer in %lld..%lld; using %lld", o->env, v,
                         (long long)o->min, (long long)o->max, (long long)def);
            n = def;
        }
        *(int *)base = (int)n;
        break;
    }
    case OPT_BOOL:
        *(bool *)base = parse_bool(v, parse_bool(o->def, false));
        break;
    }
}

/* HOST:PORT, :PORT or [IPv6]:PORT from the variable env (def when unset or empty); with
 * may_be_off, "off" gives port -1 (no listener). */
static int parse_addr(const char *env, const char *def, bool may_be_off, char **ret_host,
                      int *ret_port, struct obx_error *err)
{
    const char *addr = getenv(env);
    if (may_be_off && addr && strcmp(addr, "off") == 0) {
        *ret_host = obx_xstrdup("");
        *ret_port = -1;
        return 0;
    }
    return obx_net_parse_hostport(env, addr && *addr ? addr : def, ret_host, ret_port, err);
}

/* A PEM file the console can read and that holds `what` ("CERTIFICATE", "PRIVATE KEY"), so a
 * wrong path or a swapped file is named at startup; the TLS library checks the rest. */
static int check_pem_file(const char *env, const char *path, const char *what,
                          struct obx_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return obx_error_set(err, errno, "", "%s=%s: cannot read: %s", env, path, strerror(errno));
    char buf[65536];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof(buf) - 1 && (k = read(fd, buf + n, sizeof(buf) - 1 - n)) != 0) {
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return obx_error_set(err, errno, "", "%s=%s: cannot read: %s", env, path,
                                 strerror(errno));
        n += (size_t)k;
    }
    buf[n] = '\0';
    _cleanup_free_ char *marker = obx_xasprintf("-----BEGIN %s-----", what);
    _cleanup_free_ char *any = obx_xasprintf(" %s-----", what); /* "BEGIN EC PRIVATE KEY" too */
    bool ok = strstr(buf, marker) || (strstr(buf, "-----BEGIN ") && strstr(buf, any));
    explicit_bzero(buf, sizeof(buf));
    if (!ok)
        return obx_error_set(err, EINVAL, "", "%s=%s: not a PEM file with a %s", env, path, what);
    return 0;
}

static int check_tls(struct obx_console_config *cfg, struct obx_error *err)
{
    bool cert = !obx_str_empty(cfg->tls_cert_file), key = !obx_str_empty(cfg->tls_key_file);
    if (cert != key)
        return obx_error_set(err, EINVAL, "",
                             "%s is set but %s is not: HTTPS needs both the certificate and the "
                             "key (or neither for plain HTTP)",
                             cert ? "CONSOLE_TLS_CERT_FILE" : "CONSOLE_TLS_KEY_FILE",
                             cert ? "CONSOLE_TLS_KEY_FILE" : "CONSOLE_TLS_CERT_FILE");
    if (!cert)
        return 0;
    int r = check_pem_file("CONSOLE_TLS_CERT_FILE", cfg->tls_cert_file, "CERTIFICATE", err);
    if (r < 0)
        return r;
    return check_pem_file("CONSOLE_TLS_KEY_FILE", cfg->tls_key_file, "PRIVATE KEY", err);
}

/* The workers' port: its own certificate, else the console's (CONSOLE_TLS_*), else plaintext;
 * a client CA (mutual TLS) needs TLS. */
static int check_grpc_tls(struct obx_console_config *cfg, struct obx_error *err)
{
    bool cert = !obx_str_empty(cfg->grpc_tls_cert_file),
         key = !obx_str_empty(cfg->grpc_tls_key_file);
    if (cert != key)
        return obx_error_set(err, EINVAL, "", "%s is set but %s is not",
                             cert ? "CONSOLE_GRPC_TLS_CERT_FILE" : "CONSOLE_GRPC_TLS_KEY_FILE",
                             cert ? "CONSOLE_GRPC_TLS_KEY_FILE" : "CONSOLE_GRPC_TLS_CERT_FILE");
    int r = 0;
    if (cert) {
        r = check_pem_file("CONSOLE_GRPC_TLS_CERT_FILE", cfg->grpc_tls_cert_file, "CERTIFICATE",
                           err);
        if (r >= 0)
            r = check_pem_file("CONSOLE_GRPC_TLS_KEY_FILE", cfg->grpc_tls_key_file, "PRIVATE KEY",
                               err);
    } else if (!obx_str_empty(cfg->tls_cert_file)) {
        free(cfg->grpc_tls_cert_file);
        free(cfg->grpc_tls_key_file);
        cfg->grpc_tls_cert_file = obx_xstrdup(cfg->tls_cert_file);
        cfg->grpc_tls_key_file = obx_xstrdup(cfg->tls_key_file);
    }
    if (r >= 0 && !obx_str_empty(cfg->grpc_client_ca_file)) {
        if (obx_str_empty(cfg->grpc_tls_cert_file))
            return obx_error_set(err, EINVAL, "",
                                 "CONSOLE_GRPC_CLIENT_CA_FILE needs TLS on the workers' port: set "
                                 "CONSOLE_GRPC_TLS_CERT_FILE and _KEY_FILE (or CONSOLE_TLS_*)");
        r = check_pem_file("CONSOLE_GRPC_CLIENT_CA_FILE", cfg->grpc_client_ca_file, "CERTIFICATE",
                           err);
    }
    return r;
}

int obx_console_config_from_env(struct obx_console_config *cfg, struct obx_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < OBX_ARRAY_SIZE(opts); i++) {
        const char *v = getenv(opts[i].env);
        apply_opt(&opts[i], v && *v ? v : opts[i].def, cfg);
    }
    cfg->max_body_bytes = 1024 * 1024;
    int r = parse_addr("CONSOLE_HTTP_ADDR", ":8089", false, &cfg->http_host, &cfg->http_port, err);
    if (r >= 0)
        r = parse_addr("CONSOLE_GRPC_ADDR", ":50051", true, &cfg->grpc_host, &cfg->grpc_port, err);
    if (r >= 0)
        r = check_tls(cfg, err);
    if (r >= 0)
        r = check_grpc_tls(cfg, err);
    if (r >= 0 && !obx_str_empty(cfg->grpc_public_addr)) {
        char *h = NULL;
        int p = 0;
        r = obx_net_parse_hostport("CONSOLE_GRPC_PUBLIC_ADDR", cfg->grpc_public_addr, &h, &p, err);
        if (r >= 0 && (!h[0] || p == 0))
            r = obx_error_set(err, EINVAL, "",
                              "CONSOLE_GRPC_PUBLIC_ADDR=%s: workers need a host and a port",
                              cfg->grpc_public_addr);
        free(h);
    }
    if (r >= 0 && cfg->mcp_test_fixtures && !obx_net_host_is_loopback(cfg->http_host))
        r = obx_error_set(err, EINVAL, "",
                          "CONSOLE_MCP_TEST_FIXTURES opens /mcp without a token: it needs a "
                          "loopback CONSOLE_HTTP_ADDR");
    if (r < 0)
        return r;
    const char *key = getenv("CONSOLE_HASH_KEY");
    cfg->hash_key = obx_console_trim(key ? key : "");
    if (!cfg->hash_key[0])
        return obx_error_set(err, EINVAL, "", "CONSOLE_HASH_KEY is required");
    return 0;
}

void obx_console_config_done(struct obx_console_config *cfg)
{
    obx_auth_wipe(cfg->dashboard_password);
    obx_auth_wipe(cfg->hash_key);
    free(cfg->http_host);
    free(cfg->grpc_host);
    free(cfg->tls_cert_file);
    free(cfg->tls_key_file);
    free(cfg->grpc_tls_cert_file);
    free(cfg->grpc_tls_key_file);
    free(cfg->grpc_client_ca_file);
    free(cfg->grpc_public_addr);
    free(cfg->mcp_allowed_origins);
    free(cfg->db_path);
    free(cfg->dashboard_username);
    free(cfg->dashboard_password);
    free(cfg->hash_key);
    memset(cfg, 0, sizeof(*cfg));
}

/* Where a generated first-admin password is written: next to the database. */
static char *password_file_path(const char *db_path)
{
    const char *name = "onlyboxes-console-admin-password.txt";
    if (obx_streq(db_path, ":memory:") || strncmp(db_path, "file:", 5) == 0)
        return obx_xstrdup(name);
    const char *slash = strrchr(db_path, '/');
    if (!slash)
        return obx_xstrdup(name);
    return obx_xasprintf("%.*s/%s", (int)(slash - db_path), db_path, name);
}

static int write_secret_file(const char *path, const char *secret, struct obx_error *err)
{
    _cleanup_close_ int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return obx_error_set(err, errno, "", "cannot write %s: %s", path, strerror(errno));
    if (fchmod(fd, 0600) < 0 || obx_write_all(fd, secret, strlen(secret)) < 0 ||
        obx_write_all(fd, "\n", 1) < 0)
        return obx_error_set(err, errno, "", "cannot write %s: %s", path, strerror(errno));
    return 0;
}

static int bootstrap_admin(struct obx_console *c, struct obx_error *err)
{
    const struct obx_console_config *cfg = c->cfg;
    int64_t admins = 0;
    int r = obx_store_admin_count(c->store, &admins, err);
    if (r < 0)
        return r;
    bool env_set =
        !obx_str_empty(cfg->dashboard_username) || !obx_str_empty(cfg->dashboard_password);
    if (admins > 0) {
        if (env_set)
            obx_info("an admin account exists; CONSOLE_DASHBOARD_USERNAME/PASSWORD are ignored");
        return 0;
    }
    _cleanup_free_ char *username = obx_console_trim(cfg->dashboard_username ?: "");
    if (!username[0]) {
        char hex[9];
        obx_auth_random_hex(hex, 4);
        free(username);
        username = obx_xasprintf("admin-%s", hex);
    }
    if (obx_console_rune_count(username) > OBX_CONSOLE_NAME_MAX_RUNES)
        return obx_error_set(err, EINVAL, "", "CONSOLE_DASHBOARD_USERNAME is longer than 64");
    char generated[49] = "";
    const char *password = cfg->dashboard_password;
    _cleanup_free_ char *file = NULL;
    if (obx_str_empty(password)) {
        obx_auth_random_hex(generated, 24);
        password = generated;
        file = password_file_path(cfg->db_path);
        r = write_secret_file(file, generated, err);
        if (r < 0) {
            obx_auth_wipe(generated);
            return r;
        }
    }
    struct obx_account a;
    r = obx_console_account_create(c, username, password, true, &a, err);
    obx_auth_wipe(generated);
    if (r < 0)
        return obx_error_wrap(err, "creating the first admin");
    if (file)
        obx_info("created the first admin account '%s'; its generated password is in %s (mode "
                 "0600): sign in, change it, then delete the file",
                 a.username, file);
    else
        obx_info("created the first admin account '%s' with the password from "
                 "CONSOLE_DASHBOARD_PASSWORD",
                 a.username);
    return 0;
}

static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obx_http_server *running;
static bool stop_requested;

void obx_console_request_stop(void)
{
    pthread_mutex_lock(&running_lock);
    stop_requested = true;
    if (running)
        obx_http_server_stop(running);
    pthread_mutex_unlock(&running_lock);
}

int obx_console_run(const struct obx_console_config *cfg, struct obx_error *err)
{
    if (obx_auth_init() < 0)
        return obx_error_set(err, EIO, OBX_ERR_INTERNAL, "libsodium failed to initialise");
    struct obx_console c = {.cfg = cfg, .started_ms = obx_unix_ms()};
    int r = obx_store_open(cfg->db_path, cfg->db_busy_timeout_ms, &c.store, err);
    if (r < 0)
        return r;
    r = bootstrap_admin(&c, err);
    if (r < 0)
        goto out;
    obx_store_session_prune(c.store, obx_unix_ms(), NULL);
    int64_t retention_ms = (int64_t)cfg->task_retention_days * 24 * 3600 * 1000;
    r = obx_store_task_recover(c.store, obx_unix_ms(), retention_ms, err);
    if (r < 0)
        goto out;
    if (r > 0)
        obx_warn("%d tasks were interrupted by the last shutdown; they are marked failed", r);
    r = obx_store_worker_clear_sessions(c.store, err);
    if (r < 0)
        goto out;
    unsigned max_inflight = 0, embedded_sessions = 0;
    if (cfg->embedded_worker) {
        struct obx_worker_config wc;
        if (obx_worker_config_from_env(&wc, err) < 0) {
            r = -EINVAL;
            goto out;
        }
        wc.console_host = cfg->http_host; /* never a destination of the boxes' egress */
        c.worker = obx_worker_new(&wc, err);
        if (!c.worker) {
            r = obx_error_wrap(err, "starting the embedded worker");
            goto out;
        }
        obx_info("embedded worker started (runtime %s)", obx_worker_runtime(c.worker)->name);
        max_inflight = wc.max_inflight;
        embedded_sessions = wc.max_sessions;
    }
    struct obx_http_server_config hc = {
        .host = cfg->http_host,
        .port = cfg->http_port,
        .max_body_bytes = cfg->max_body_bytes,
        .max_header_bytes = 16384,
        .header_timeout_sec = cfg->header_timeout_sec,
        .idle_timeout_sec = cfg->idle_timeout_sec,
        .tls_cert_file = obx_str_empty(cfg->tls_cert_file) ? NULL : cfg->tls_cert_file,
        .tls_key_file = obx_str_empty(cfg->tls_key_file) ? NULL : cfg->tls_key_file,
        .dispatch = obx_router_dispatch,
        .userdata = &c,
        .fixed_headers = obx_web_response_headers,
    };
    r = obx_http_server_new(&hc, &c.http, err);
    if (r == -EINVAL && hc.tls_cert_file)
        obx_error_wrap(err, "CONSOLE_TLS_CERT_FILE=%s, CONSOLE_TLS_KEY_FILE=%s", hc.tls_cert_file,
                       hc.tls_key_file);
    if (r < 0)
        goto out;
    if (!c.worker) /* an embedded worker of an earlier run is not there any more */
        (void)obx_store_worker_delete(c.store, OBX_DISPATCH_EMBEDDED_ID, NULL, NULL);
    bool grpc_tls = !obx_str_empty(cfg->grpc_tls_cert_file);
    struct obx_dispatch_config dc = {
        .store = c.store,
        .hash_key = cfg->hash_key,
        .offline_ttl_sec = cfg->offline_ttl_sec,
        .heartbeat_interval_sec = cfg->heartbeat_interval_sec,
        .embedded = c.worker ? obx_worker_executor(c.worker) : NULL,
        .embedded_max_inflight = max_inflight,
        .embedded_kind = c.worker ? obx_worker_runtime(c.worker)->name : NULL,
        .embedded_max_sessions = embedded_sessions,
        .grpc_host = cfg->grpc_host,
        .grpc_port = cfg->grpc_port,
        .tls_cert_file = grpc_tls ? cfg->grpc_tls_cert_file : NULL,
        .tls_key_file = grpc_tls ? cfg->grpc_tls_key_file : NULL,
        .client_ca_file = obx_str_empty(cfg->grpc_client_ca_file) ? NULL : cfg->grpc_client_ca_file,
        .max_workers = (unsigned)cfg->grpc_max_workers,
        .max_handshakes = 64,
    };
    r = obx_dispatch_new(&dc, &c.dispatch, err);
    if (r < 0)
        goto out;
    c.tasks = obx_tasks_new(c.store, c.dispatch, retention_ms);
    c.pool = obx_console_pool_new(cfg->worker_threads, 1024);
    c.mcp = obx_console_mcp_new(&c);
    c.login_limit =
        obx_ratelimit_new(cfg->login_max_failures, (uint64_t)cfg->login_window_sec * 1000, 4096);
    char bound[OBX_NET_MAX_ADDRS * 64];
    obx_http_server_addrs(c.http, bound, sizeof(bound),
                          obx_str_empty(cfg->tls_cert_file) ? "http" : "https");
    fprintf(stderr, "onlyboxes console: listening on %s\n", bound);
    char grpc[512];
    obx_dispatch_grpc_addrs(c.dispatch, grpc, sizeof(grpc));
    if (grpc[0])
        fprintf(stderr, "onlyboxes console: workers connect to %s (gRPC, %s)\n", grpc,
                obx_str_empty(cfg->grpc_tls_cert_file)    ? "plaintext"
                : obx_str_empty(cfg->grpc_client_ca_file) ? "TLS"
                                                          : "TLS with client certificates");
    pthread_mutex_lock(&running_lock);
    running = c.http;
    bool stop_now = stop_requested;
    pthread_mutex_unlock(&running_lock);
    if (!stop_now)
        r = obx_http_server_run(c.http);
    obx_info("console stopping");
    pthread_mutex_lock(&running_lock);
    running = NULL;
    pthread_mutex_unlock(&running_lock);
    if (r < 0)
        obx_error_set(err, -r, OBX_ERR_INTERNAL, "HTTP service loop failed");
out:
    obx_console_pool_free(c.pool); /* queued handlers finish; their completions are dropped below */
    obx_console_mcp_free(c.mcp);   /* MCP calls in flight are cancelled and answered */
    obx_tasks_free(c.tasks);       /* live tasks are stopped, then every waiter is answered */
    obx_http_server_free(c.http);
    obx_dispatch_free(c.dispatch);
    obx_worker_free(c.worker);
    obx_ratelimit_free(c.login_limit);
    obx_store_close(c.store);
    return r;
}
