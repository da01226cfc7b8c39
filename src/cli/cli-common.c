/* SPDX-License-Identifier: Apache-2.0 */
/* What the subcommands share: logging setup, the local worker, signal handling. */
#include "cli-internal.h"

#include <pthread.h>
#include <signal.h>

#include "common/log.h"

struct log_settings {
    int level; /* index into levels */
    int format;
    bool add_source;
};

static const char *const levels[] = {"info", "debug", "warn", "error", "off", "warning", NULL};
static const enum obx_log_level level_values[] = {OBX_LOG_INFO,  OBX_LOG_DEBUG, OBX_LOG_WARN,
                                                  OBX_LOG_ERROR, OBX_LOG_OFF,   OBX_LOG_WARN};
static const char *const formats[] = {"text", "json", NULL};

#define LOG_F(m) OBX_CONFIG_FIELD(struct log_settings, m)
/* The three logging variables; the original's console and worker had their own names for them,
 * read when ours are unset. */
#define LOG_VARS(level_alias, format_alias, source_alias)          \
    {                                                              \
        {"ONLYBOXES_LOG_LEVEL",                                    \
         level_alias,                                              \
         OBX_CONFIG_CHOICE,                                        \
         LOG_F(level),                                             \
         "info",                                                   \
         0,                                                        \
         0,                                                        \
         0,                                                        \
         levels,                                                   \
         0,                                                        \
         "least important log lines written (logs go to stderr)"}, \
            {"ONLYBOXES_LOG_FORMAT",                               \
             format_alias,                                         \
             OBX_CONFIG_CHOICE,                                    \
             LOG_F(format),                                        \
             "text",                                               \
             0,                                                    \
             0,                                                    \
             0,                                                    \
             formats,                                              \
             0,                                                    \
             "json for JSON lines"},                               \
            {"ONLYBOXES_LOG_ADD_SOURCE",                           \
             source_alias,                                         \
             OBX_CONFIG_BOOL,                                      \
             LOG_F(add_source),                                    \
             "false",                                              \
             0,                                                    \
             0,                                                    \
             0,                                                    \
             NULL,                                                 \
             0,                                                    \
             "add the source file and line of each log line"},     \
    }

static const struct obx_config_var log_vars[] = LOG_VARS(NULL, NULL, NULL);
static const struct obx_config_var console_log_vars[] =
    LOG_VARS("CONSOLE_LOG_LEVEL", "CONSOLE_LOG_FORMAT", "CONSOLE_LOG_ADD_SOURCE");
static const struct obx_config_var worker_log_vars[] =
    LOG_VARS("WORKER_LOG_LEVEL", "WORKER_LOG_FORMAT", "WORKER_LOG_ADD_SOURCE");

static const struct obx_config_var *log_table(const char *alias_prefix)
{
    if (obx_streq(alias_prefix, "CONSOLE"))
        return console_log_vars;
    if (obx_streq(alias_prefix, "WORKER"))
        return worker_log_vars;
    return log_vars;
}

static const char *log_alias_prefix;

int obx_cli_setup_logging(const char *alias_prefix)
{
    struct log_settings ls = {0};
    struct obx_error err = OBX_ERROR_INIT;
    log_alias_prefix = alias_prefix;
    if (obx_config_read(log_table(alias_prefix), OBX_ARRAY_SIZE(log_vars), &ls, &err) < 0) {
        fprintf(stderr, "onlyboxes: %s\n", err.message);
        return -EINVAL;
    }
    obx_log_threshold = level_values[ls.level];
    obx_log_set_json(ls.format == 1);
    obx_log_set_source(ls.add_source);
    return 0;
}

void obx_cli_log_env_help(FILE *f, const char *alias_prefix)
{
    obx_config_help(f, log_table(alias_prefix), OBX_ARRAY_SIZE(log_vars));
}

void obx_cli_log_print(FILE *f)
{
    struct log_settings ls = {0};
    struct obx_error err = OBX_ERROR_INIT;
    const struct obx_config_var *vars = log_table(log_alias_prefix);
    if (obx_config_read(vars, OBX_ARRAY_SIZE(log_vars), &ls, &err) == 0)
        obx_config_print(f, vars, OBX_ARRAY_SIZE(log_vars), &ls);
}

int obx_cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
                   const char *usage)
{
    /* ':' first: a missing value is told apart from an unknown option; no message of getopt's. */
    char spec[64];
    bool stop_at_operand = shortopts[0] == '+';
    snprintf(spec, sizeof(spec), "%s:%s", stop_at_operand ? "+" : "",
             shortopts + (stop_at_operand ? 1 : 0));
    opterr = 0;
    int prev = optind ? optind : 1;
    int c = getopt_long(argc, argv, spec, longopts, NULL);
    if (c != '?' && c != ':')
        return c;
    const char *arg = optind > prev ? argv[optind - 1] : argv[prev];
    if (c == ':')
        fprintf(stderr, "onlyboxes %s: %s needs a value\n", argv[0], arg);
    else if (optopt > 0 && optopt < 0x100 && strncmp(arg, "--", 2) != 0)
        fprintf(stderr, "onlyboxes %s: unknown option '-%c'\n%s", argv[0], optopt, usage);
    else
        fprintf(stderr, "onlyboxes %s: unknown option '%s'\n%s", argv[0], arg, usage);
    return '?';
}

int obx_cli_no_operands(int argc, char **argv, const char *usage)
{
    if (optind >= argc)
        return 0;
    fprintf(stderr, "onlyboxes %s: unexpected argument '%s'\n%s", argv[0], argv[optind], usage);
    return -EINVAL;
}

int obx_cli_runtime_option(const char *value, struct obx_cli_local *local)
{
    if (obx_runtime_choice_parse(value, &local->runtime) < 0) {
        fprintf(stderr, "onlyboxes: --runtime %s is invalid: expected auto, bubblewrap or docker\n",
                value);
        return -EINVAL;
    }
    local->runtime_set = true;
    return 0;
}

struct obx_worker *obx_cli_local_worker(const struct obx_cli_local *local, struct obx_error *err)
{
    struct obx_worker_config cfg;
    if (obx_worker_config_from_env(&cfg, err) < 0)
        return NULL;
    if (local->runtime_set)
        cfg.runtime = local->runtime;
    if (!local->keep_pool)
        cfg.warm_pool = 0; /* a one-shot command would start a box nobody uses */
    cfg.mounts = local->mounts;
    cfg.n_mounts = local->n_mounts;
    return obx_worker_new(&cfg, err);
}

static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    sigwait(set, &sig);
    obx_info("received %s; stopping every box", strsignal(sig));
    obx_worker_control_unlink();
    obx_worker_kill_all_boxes();
    _exit(128 + sig);
    return NULL;
}

void obx_cli_handle_signals(void)
{
    obx_cli_handle_signals_with(signal_main);
}

void obx_cli_handle_signals_with(void *(*waiter)(void *sigset))
{
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* Block them in every thread created from now on; one thread waits for them. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t t;
    if (pthread_create(&t, NULL, waiter, &set) == 0)
        pthread_detach(t);
}
