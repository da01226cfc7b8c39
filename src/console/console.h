/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console (control plane) of a small-team deployment: an HTTP server for the REST API and the
 * dashboard, accounts, tokens and dashboard sessions kept in SQLite. This header is what the CLI
 * needs: the configuration read from the CONSOLE_* environment, and a blocking run that returns
 * after obx_console_request_stop() (safe from any thread or a signal-waiting thread).
 */
#ifndef OBX_CONSOLE_CONSOLE_H
#define OBX_CONSOLE_CONSOLE_H

#include "common/error.h"

struct obx_console_config {
    char *http_addr, *grpc_addr; /* as written: CONSOLE_HTTP_ADDR, CONSOLE_GRPC_ADDR */
    char *http_host;             /* NULL or "" = every interface */
    int http_port;               /* 0 = the kernel picks one (reported on stderr once bound) */
    char *db_path;
    int db_busy_timeout_ms;
    bool enable_registration;
    char *dashboard_username; /* first admin only; may be NULL */
    char *dashboard_password; /* first admin only; never logged; may be NULL */
    char *hash_key;           /* trimmed, non-empty */
    bool trust_proxy_headers; /* X-Forwarded-Proto / X-Forwarded-For from a trusted proxy */
    size_t max_body_bytes;
    int header_timeout_sec;
    int idle_timeout_sec;
    int worker_threads;
    int login_max_failures;
    int login_window_sec;
    int task_retention_days; /* ended tasks are deleted this long after they ended */
    bool embedded_worker;    /* run capabilities in an in-process worker on this host */
    char *grpc_host;         /* CONSOLE_GRPC_ADDR: "" = every interface */
    int grpc_port;
    int offline_ttl_sec;        /* a worker unseen this long is offline */
    int heartbeat_interval_sec; /* told to workers in the ack */
    char *grpc_tls_cert_file;   /* workers' port TLS (defaults to the console's); "" none */
    char *grpc_tls_key_file;
    char *grpc_client_ca_file; /* mutual TLS: workers need a certificate signed by it */
    int grpc_max_workers;      /* worker streams at once */
    char *grpc_public_addr;    /* host:port new workers are told to reach; "" derive it */
    char *tls_cert_file;       /* both set (checked readable PEM) or both NULL: HTTPS only */
    char *tls_key_file;
    int mcp_max_sessions;             /* MCP sessions at once, over every account */
    int mcp_max_sessions_per_account; /* MCP sessions at once per account */
    int mcp_session_idle_sec;         /* an MCP session unused this long is terminated */
    int mcp_keepalive_sec;            /* a silent /mcp answer turns into SSE with comments; 0 off */
    int mcp_task_after_ms; /* a call of a client with the tasks extension becomes a task; 0 off */
    char *mcp_allowed_origins; /* comma-separated origins /mcp also accepts; may be "" */
    char *hidden_tools;        /* CONSOLE_HIDDEN_TOOLS: tools left out of tools/list */
    bool mcp_test_fixtures;    /* tests only: conformance fixture tools, /mcp without a token */
    int max_upload_mb;         /* largest file PUT into a session */
    int max_transfers;         /* file uploads and downloads at once */
    int export_url_ttl_sec;    /* how long an exportFile URL (and its file) lasts */
    int export_max_mb;         /* exportFile's files kept at once, in all */
    char *public_url;          /* the console's URL as clients reach it ("" derive it) */
    int terminals_max;         /* live terminals at once, in all */
    int terminals_per_account; /* ... per account */
    int terminals_per_session; /* ... into one terminal session */
};

/* Fills cfg from the environment. Fails with a message naming the variable. The strings are owned
 * by cfg; release with obx_console_config_done(). */
int obx_console_config_from_env(struct obx_console_config *cfg, struct obx_error *err);
void obx_console_config_done(struct obx_console_config *cfg);
/* The Environment lines of `onlyboxes console --help`, and the effective values (secrets
 * hidden). */
void obx_console_config_help(FILE *f);
void obx_console_config_print(FILE *f, const struct obx_console_config *cfg);

/* Opens the store, creates the first admin if there is none, binds the HTTP listener, prints
 * "listening on http://HOST:PORT" (https:// with TLS) to stderr, then serves until
 * obx_console_request_stop(). */
int obx_console_run(const struct obx_console_config *cfg, struct obx_error *err);

/* Asks a running console to shut down gracefully. Async-signal-unsafe but thread-safe. */
void obx_console_request_stop(void);

#endif
