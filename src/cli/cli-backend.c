/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one place that decides where exec, python and call run: a worker in this process, or a
 * console reached over HTTP (--console URL or ONLYBOXES_CONSOLE; the flag wins). Either way the
 * subcommand gets an executor and stays the same.
 *
 * Signals differ. Locally SIGINT/SIGTERM/SIGHUP kill every box and exit at once. Remotely the
 * signal thread cancels the calls in flight; each then posts the cancel to the console (which kills
 * the task's processes) and returns, and the subcommand exits 128+signal. A second signal exits at
 * once without waiting for the console.
 */
#include "cli-internal.h"

#include <pthread.h>
#include <signal.h>

#include "client/client.h"

struct obx_cli_backend {
    struct obx_worker *worker;
    struct obx_client *client;
};

static int interrupted; /* __atomic: the signal thread sets it */
/* The client the signal thread cancels; cleared (under the lock) before it is freed. */
static pthread_mutex_t signal_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obx_client *signal_client;
static struct obx_client_conn *signal_conn; /* a command's own connection (cp, sessions) */

int obx_cli_target_option(int opt, const char *value, struct obx_cli_target *t)
{
    switch (opt) {
    case OBX_OPT_RUNTIME:
        return obx_cli_runtime_option(value, &t->local) < 0 ? -1 : 1;
    case OBX_OPT_CONSOLE:
        t->console = value;
        return 1;
    case OBX_OPT_TOKEN:
        t->token = value;
        return 1;
    case OBX_OPT_CA_FILE:
        t->ca_file = value;
        return 1;
    default:
        return 0;
    }
}

/* Where the options are not given, the environment says; the options win. */
struct target_env {
    const char *console, *token, *ca_file;
};

#define T(m) OBX_CONFIG_FIELD(struct target_env, m)

static const struct obx_config_var target_vars[] = {
    {"ONLYBOXES_CONSOLE", NULL, OBX_CONFIG_STR, T(console), NULL, 0, 0, 0, NULL, 0,
     "run on the console at this URL (http:// or https://), as --console"},
    {"ONLYBOXES_TOKEN", NULL, OBX_CONFIG_STR, T(token), NULL, 0, 0, 0, NULL, OBX_CONFIG_SECRET,
     "the console API token, as --token"},
    {"ONLYBOXES_CA_FILE", NULL, OBX_CONFIG_STR, T(ca_file), NULL, 0, 0, 0, NULL, 0,
     "PEM CA bundle for an https console, as --ca-file"},
};

void obx_cli_target_env_help(FILE *f)
{
    obx_config_help(f, target_vars, OBX_ARRAY_SIZE(target_vars));
    obx_worker_config_help(f);
}

int obx_cli_interrupted(void)
{
    return __atomic_load_n(&interrupted, __ATOMIC_ACQUIRE);
}

static void *remote_signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    sigwait(set, &sig);
    __atomic_store_n(&interrupted, sig, __ATOMIC_RELEASE);
    pthread_mutex_lock(&signal_lock);
    if (signal_client)
        obx_client_cancel_all(signal_client);
    if (signal_conn)
        obx_client_conn_wake(signal_conn);
    pthread_mutex_unlock(&signal_lock);
    sigwait(set, &sig);
    _exit(128 + sig);
    return NULL;
}

void obx_cli_handle_interrupts(void)
{
    obx_cli_handle_signals_with(remote_signal_main);
}

static struct obx_client *open_remote(struct obx_cli_target *t)
{
    if (t->local.runtime_set) {
        fprintf(stderr, "onlyboxes: --runtime picks a local sandbox; it cannot be used with a "
                        "console (--console or ONLYBOXES_CONSOLE)\n");
        return NULL;
    }
    struct obx_client_config cfg = {
        .url = t->console,
        .token = t->token,
        .ca_file = t->ca_file,
    };
    if (obx_str_empty(cfg.token)) {
        fprintf(stderr,
                "onlyboxes: no token for the console at %s: set ONLYBOXES_TOKEN or pass "
                "--token\n",
                cfg.url);
        return NULL;
    }
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_client *c = obx_client_new(&cfg, &err);
    if (c && obx_client_check(c, &err) < 0) {
        obx_client_free(c);
        c = NULL;
    }
    if (!c) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        return NULL;
    }
    pthread_mutex_lock(&signal_lock);
    signal_client = c;
    pthread_mutex_unlock(&signal_lock);
    obx_cli_handle_interrupts();
    return c;
}

/* The options, else the environment. -1 after printing an error. */
static int target_resolve(struct obx_cli_target *t)
{
    struct target_env env = {0};
    struct obx_error err = OBX_ERROR_INIT;
    if (obx_config_read(target_vars, OBX_ARRAY_SIZE(target_vars), &env, &err) < 0) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        return -1;
    }
    t->console = t->console ? t->console : env.console;
    t->token = t->token ? t->token : env.token;
    t->ca_file = t->ca_file ? t->ca_file : env.ca_file;
    return 0;
}

struct obx_client *obx_cli_console_open(struct obx_cli_target *t, bool *ret_local)
{
    *ret_local = false;
    if (target_resolve(t) < 0)
        return NULL;
    if (obx_str_empty(t->console)) {
        *ret_local = true;
        return NULL;
    }
    struct obx_client *c = open_remote(t);
    if (c) { /* this command makes its own requests: no signal thread cancels tasks for it */
        pthread_mutex_lock(&signal_lock);
        signal_client = NULL;
        pthread_mutex_unlock(&signal_lock);
    }
    return c;
}

struct obx_cli_backend *obx_cli_backend_open(struct obx_cli_target *t)
{
    if (target_resolve(t) < 0)
        return NULL;
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_cli_backend *b = obx_xcalloc(1, sizeof(*b));
    if (!obx_str_empty(t->console)) {
        b->client = open_remote(t);
    } else {
        obx_cli_handle_signals();
        b->worker = obx_cli_local_worker(&t->local, &err);
        if (!b->worker)
            fprintf(stderr, "onlyboxes: %s\n", err.message);
    }
    if (!b->client && !b->worker) {
        free(b);
        return NULL;
    }
    return b;
}

struct obx_executor *obx_cli_backend_executor(struct obx_cli_backend *b)
{
    return b->client ? obx_client_executor(b->client) : obx_worker_executor(b->worker);
}

void obx_cli_backend_close(struct obx_cli_backend *b)
{
    if (!b)
        return;
    if (b->client) {
        pthread_mutex_lock(&signal_lock);
        signal_client = NULL;
        pthread_mutex_unlock(&signal_lock);
        obx_client_free(b->client);
    }
    obx_worker_free(b->worker);
    free(b);
}

void obx_cli_watch_conn(struct obx_client_conn *x)
{
    pthread_mutex_lock(&signal_lock);
    signal_conn = x;
    pthread_mutex_unlock(&signal_lock);
}
