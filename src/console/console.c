/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console's top level: configuration from the CONSOLE_* environment (one row per variable
 * in the shared configuration table, common/config.h), the first-admin bootstrap, and the run
 * sequence: store, pool, HTTP server, serve, then a graceful stop (the pool finishes queued work
 * before the server and the store go away).
 */
#include "console/api/api.h"

#include <fcntl.h>
#include <pthread.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/net.h"
#include "common/utf8.h"
#include "console/auth/auth.h"
#include "console/util/console-util.h"
#include "console/web/web.h"
#include "mcp/mcp.h"
#include "worker/worker.h"

#define F(m) OBX_CONFIG_FIELD(struct obx_console_config, m)
#define COPY OBX_CONFIG_COPY

/* CONSOLE_HTTP_ADDR, CONSOLE_GRPC_ADDR and CONSOLE_HASH_KEY need checks beyond a type and are
 * checked below, as are the TLS files. */
static const struct obx_config_var vars[] = {
    {"CONSOLE_HASH_KEY", NULL, OBX_CONFIG_STR, F(hash_key), NULL, 0, 0, 0, NULL,
     COPY | OBX_CONFIG_SECRET,
     "required; HMAC key for tokens and session ids (changing it invalidates every token)"},
    {"CONSOLE_HTTP_ADDR", NULL, OBX_CONFIG_STR, F(http_addr), ":8089", 0, 0, 0, NULL, COPY,
     "listen address HOST:PORT, [IPv6]:PORT or :PORT (127.0.0.1:0 = any free port)"},
    {"CONSOLE_DB_PATH", NULL, OBX_CONFIG_STR, F(db_path), "./db/onlyboxes-console.db", 0, 0, 0,
     NULL, COPY, "SQLite file"},
    {"CONSOLE_DB_BUSY_TIMEOUT_MS", NULL, OBX_CONFIG_INT, F(db_busy_timeout_ms), "5000", 1, 600000,
     0, NULL, 0, "SQLite busy timeout, ms"},
    {"CONSOLE_ENABLE_REGISTRATION", NULL, OBX_CONFIG_BOOL, F(enable_registration), "false", 0, 0, 0,
     NULL, 0, "let the admin create accounts"},
    {"CONSOLE_DASHBOARD_USERNAME", NULL, OBX_CONFIG_STR, F(dashboard_username), NULL, 0, 0, 0, NULL,
     COPY, "first admin's name (first start only; default admin-<8 hex>)"},
    {"CONSOLE_DASHBOARD_PASSWORD", NULL, OBX_CONFIG_STR, F(dashboard_password), NULL, 0, 0, 0, NULL,
     COPY | OBX_CONFIG_SECRET,
     "first admin's password (first start only; when empty one is generated and written next to "
     "the database, mode 0600)"},
    {"CONSOLE_TLS_CERT_FILE", NULL, OBX_CONFIG_STR, F(tls_cert_file), NULL, 0, 0, 0, NULL, COPY,
     "PEM certificate: serve HTTPS only (with CONSOLE_TLS_KEY_FILE)"},
    {"CONSOLE_TLS_KEY_FILE", NULL, OBX_CONFIG_STR, F(tls_key_file), NULL, 0, 0, 0, NULL, COPY,
     "PEM private key of CONSOLE_TLS_CERT_FILE"},
    {"CONSOLE_TRUST_PROXY_HEADERS", NULL, OBX_CONFIG_BOOL, F(trust_proxy_headers), "false", 0, 0, 0,
     NULL, 0, "trust X-Forwarded-Proto and X-Forwarded-For from a reverse proxy you control"},
    {"CONSOLE_HTTP_HEADER_TIMEOUT_SEC", NULL, OBX_CONFIG_INT, F(header_timeout_sec), "10", 1, 3600,
     0, NULL, 0, "time allowed for a request head and for each body chunk, seconds"},
    {"CONSOLE_HTTP_IDLE_TIMEOUT_SEC", NULL, OBX_CONFIG_INT, F(idle_timeout_sec), "60", 1, 3600, 0,
     NULL, 0, "keep-alive idle time, seconds"},
    {"CONSOLE_WORKER_THREADS", NULL, OBX_CONFIG_INT, F(worker_threads), "8", 1, 256, 0, NULL, 0,
     "threads for blocking work (database, password hashing)"},
    {"CONSOLE_LOGIN_MAX_FAILURES", NULL, OBX_CONFIG_INT, F(login_max_failures), "10", 1, 64, 0,
     NULL, 0, "failed logins allowed per username and client address..."},
    {"CONSOLE_LOGIN_WINDOW_SEC", NULL, OBX_CONFIG_INT, F(login_window_sec), "300", 1, 86400, 0,
     NULL, 0, "...within this many seconds; then 429"},
    {"CONSOLE_TASK_RETENTION_DAYS", NULL, OBX_CONFIG_INT, F(task_retention_days), "30", 1, 36500, 0,
     NULL, 0, "days an ended task stays readable"},
    {"CONSOLE_EMBEDDED_WORKER", NULL, OBX_CONFIG_BOOL, F(embedded_worker), "false", 0, 0, 0, NULL,
     0, "true: as --with-worker"},
    {"CONSOLE_GRPC_ADDR", NULL, OBX_CONFIG_STR, F(grpc_addr), ":50051", 0, 0, 0, NULL, COPY,
     "where workers connect (gRPC), bound as CONSOLE_HTTP_ADDR; off: no listener"},
    {"CONSOLE_GRPC_PUBLIC_ADDR", NULL, OBX_CONFIG_STR, F(grpc_public_addr), NULL, 0, 0, 0, NULL,
     COPY, "HOST:PORT new workers are told to connect to, when it differs (NAT, load balancer)"},
    {"CONSOLE_GRPC_TLS_CERT_FILE", NULL, OBX_CONFIG_STR, F(grpc_tls_cert_file), NULL, 0, 0, 0, NULL,
     COPY, "TLS certificate of the workers' port (default: CONSOLE_TLS_CERT_FILE's)"},
    {"CONSOLE_GRPC_TLS_KEY_FILE", NULL, OBX_CONFIG_STR, F(grpc_tls_key_file), NULL, 0, 0, 0, NULL,
     COPY, "its private key (default: CONSOLE_TLS_KEY_FILE's)"},
    {"CONSOLE_GRPC_CLIENT_CA_FILE", NULL, OBX_CONFIG_STR, F(grpc_client_ca_file), NULL, 0, 0, 0,
     NULL, COPY, "mutual TLS: workers must show a certificate signed by this CA (PEM)"},
    {"CONSOLE_GRPC_MAX_WORKERS", NULL, OBX_CONFIG_INT, F(grpc_max_workers), "1024", 1, 65536, 0,
     NULL, 0, "worker connections at once"},
    {"CONSOLE_OFFLINE_TTL_SEC", NULL, OBX_CONFIG_INT, F(offline_ttl_sec), "15", 1, 86400, 0, NULL,
     0, "a worker not seen for this long is offline, seconds"},
    {"CONSOLE_HEARTBEAT_INTERVAL_SEC", NULL, OBX_CONFIG_INT, F(heartbeat_interval_sec), "5", 1,
     3600, 0, NULL, 0, "the heartbeat interval workers are told, seconds"},
    {"CONSOLE_TERMINALS_MAX", NULL, OBX_CONFIG_INT, F(terminals_max), "256", 1, 4096, 0, NULL, 0,
     "live terminals (the dashboard's) open at once over every account"},
    {"CONSOLE_TERMINALS_PER_ACCOUNT", NULL, OBX_CONFIG_INT, F(terminals_per_account), "8", 1, 256,
     0, NULL, 0, "live terminals open at once per account"},
    {"CONSOLE_TERMINALS_PER_SESSION", NULL, OBX_CONFIG_INT, F(terminals_per_session), "4", 1, 8, 0,
     NULL, 0, "live terminals open at once into one terminal session"},
    {"CONSOLE_MCP_MAX_SESSIONS", NULL, OBX_CONFIG_INT, F(mcp_max_sessions), "1024", 1, 65536, 0,
     NULL, 0, "MCP sessions open at once over every account"},
    {"CONSOLE_MCP_MAX_SESSIONS_PER_ACCOUNT", NULL, OBX_CONFIG_INT, F(mcp_max_sessions_per_account),
     "64", 1, 65536, 0, NULL, 0, "MCP sessions open at once per account"},
    {"CONSOLE_MCP_SESSION_IDLE_SEC", NULL, OBX_CONFIG_INT, F(mcp_session_idle_sec), "1800", 10,
     604800, 0, NULL, 0, "an MCP session unused this long ends, seconds"},
    {"CONSOLE_MCP_KEEPALIVE_SEC", NULL, OBX_CONFIG_INT, F(mcp_keepalive_sec), "15", 0, 300, 0, NULL,
     0, "a silent /mcp answer becomes an event stream with a keepalive this often; 0 = off"},
    {"CONSOLE_MCP_TASK_AFTER_MS", NULL, OBX_CONFIG_INT, F(mcp_task_after_ms), "10000", 0, 3600000,
     0, NULL, 0,
     "a tools/call of a client with the MCP tasks extension still running after this long is "
     "answered with a task to poll, ms; 0 = never"},
    {"CONSOLE_MCP_ALLOWED_ORIGINS", NULL, OBX_CONFIG_STR, F(mcp_allowed_origins), NULL, 0, 0, 0,
     NULL, COPY, "comma-separated origins that may call /mcp from a browser"},
    {"CONSOLE_HIDDEN_TOOLS", NULL, OBX_CONFIG_STR, F(hidden_tools), NULL, 0, 0, 0, NULL, COPY,
     "comma-separated tools (echo, exportFile, pythonExec, readImage, terminalExec) left out of "
     "/mcp "
     "tools/list; still callable by name. CONSOLE_MCP_TOOL_<TOOL>_NAME, _TITLE, _DESCRIPTION and "
     "_PARAM_<PARAM>_DESCRIPTION (TOOL and PARAM in upper snake case, e.g. PYTHON_EXEC, "
     "SESSION_ID) change what models read; an empty parameter description hides the parameter"},
    {"CONSOLE_MAX_UPLOAD_MB", NULL, OBX_CONFIG_INT, F(max_upload_mb), "100", 1, 1048576, 0, NULL, 0,
     "largest file uploaded into a session (PUT /api/v1/sessions/ID/files), MiB"},
    {"CONSOLE_MAX_TRANSFERS", NULL, OBX_CONFIG_INT, F(max_transfers), "32", 1, 1024, 0, NULL, 0,
     "file uploads and downloads at once; more are answered 503"},
    {"CONSOLE_EXPORT_URL_TTL_SEC", NULL, OBX_CONFIG_INT, F(export_url_ttl_sec), "3600", 60, 604800,
     0, NULL, 0,
     "how long the download URL of an exportFile (and the file the console keeps) lasts, s"},
    {"CONSOLE_EXPORT_MAX_MB", NULL, OBX_CONFIG_INT, F(export_max_mb), "1024", 1, 1048576, 0, NULL,
     0, "exportFile's files the console keeps at once, in all, MiB (beside the database)"},
    {"CONSOLE_PUBLIC_URL", NULL, OBX_CONFIG_STR, F(public_url), NULL, 0, 0, 0, NULL, COPY,
     "the console's URL as clients reach it (https://obx.example.com), for exportFile's links; "
     "default: the scheme, host and port it listens on"},
    /* Test harnesses only (the MCP conformance suite sends no token); loopback only. */
    {"CONSOLE_MCP_TEST_FIXTURES", NULL, OBX_CONFIG_BOOL, F(mcp_test_fixtures), "false", 0, 0, 0,
     NULL, OBX_CONFIG_HIDDEN, "tests only: fixture tools, /mcp without a token"},
};

void obx_console_config_help(FILE *f)
{
    obx_config_help(f, vars, OBX_ARRAY_SIZE(vars));
}

void obx_console_config_print(FILE *f, const struct obx_console_config *cfg)
{
    obx_config_print(f, vars, OBX_ARRAY_SIZE(vars), cfg);
}

/* HOST:PORT, :PORT or [IPv6]:PORT from the variable env; with may_be_off, "off" gives port -1 (no
 * listener). */
static int parse_addr(const char *env, const char *addr, bool may_be_off, char **ret_host,
                      int *ret_port, struct obx_error *err)
{
    if (may_be_off && obx_streq(addr, "off")) {
        *ret_host = obx_xstrdup("");
        *ret_port = -1;
        return 0;
    }
    return obx_net_parse_hostport(env, addr, ret_host, ret_port, err);
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
    int r = obx_config_read(vars, OBX_ARRAY_SIZE(vars), cfg, err);
    if (r < 0)
        return r;
    cfg->max_body_bytes = 1024 * 1024;
    r = parse_addr("CONSOLE_HTTP_ADDR", cfg->http_addr, false, &cfg->http_host, &cfg->http_port,
                   err);
    if (r >= 0)
        r = parse_addr("CONSOLE_GRPC_ADDR", cfg->grpc_addr, true, &cfg->grpc_host, &cfg->grpc_port,
                       err);
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
    if (r >= 0) {
        struct obx_mcp_server_config mc = {
            .fixtures = cfg->mcp_test_fixtures,
            .hidden_tools = cfg->hidden_tools,
            .hidden_tools_var = "CONSOLE_HIDDEN_TOOLS",
            .tool_env_prefix = OBX_CONSOLE_MCP_TOOL_PREFIX,
            .env = environ,
        };
        r = obx_mcp_server_config_check(&mc, err);
    }
    if (r < 0)
        return r;
    /* Trimmed of Unicode white space too, as the original does. */
    char *key = obx_console_trim(cfg->hash_key ? cfg->hash_key : "");
    obx_auth_wipe(cfg->hash_key);
    free(cfg->hash_key);
    cfg->hash_key = key;
    if (!cfg->hash_key[0])
        return obx_error_set(err, EINVAL, "", "CONSOLE_HASH_KEY is required");
    return 0;
}

void obx_console_config_done(struct obx_console_config *cfg)
{
    obx_config_free(vars, OBX_ARRAY_SIZE(vars), cfg);
    free(cfg->http_host);
    free(cfg->grpc_host);
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
    if (obx_utf8_count(username, strlen(username)) > OBX_CONSOLE_NAME_MAX_RUNES)
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
        .capture_headers = obx_mcp_param_headers(),
        .dispatch = obx_router_dispatch,
        .stream_body = obx_router_stream_body,
        .userdata = &c,
        .fixed_headers = obx_web_response_headers,
    };
    c.terms = obx_console_terms_new();
    obx_console_terms_ws_config(&c, &hc.ws);
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
    c.xfers = obx_console_xfers_new((unsigned)cfg->max_transfers);
    r = obx_console_exports_new(&c, &c.exports, err);
    if (r < 0)
        goto out;
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
    obx_console_xfers_free(c.xfers); /* transfers are canceled and answered */
    obx_console_terms_stop(c.terms); /* live terminals close; their boxes' shells are killed */
    obx_console_exports_free(c.exports);
    obx_http_server_free(c.http);
    obx_dispatch_free(c.dispatch);
    obx_console_terms_free(c.terms);
    obx_worker_free(c.worker);
    obx_ratelimit_free(c.login_limit);
    obx_store_close(c.store);
    return r;
}
