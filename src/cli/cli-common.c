/* SPDX-License-Identifier: Apache-2.0 */
/* What the subcommands share: logging setup, the local worker, signal handling. */
#include "cli-internal.h"

#include <pthread.h>
#include <signal.h>

#include "common/log.h"

void obx_cli_setup_logging(void)
{
    const char *lvl = getenv("ONLYBOXES_LOG_LEVEL");
    enum obx_log_level l;
    if (lvl && obx_log_level_parse(lvl, &l) == 0)
        obx_log_threshold = l;
    const char *fmt = getenv("ONLYBOXES_LOG_FORMAT");
    if (fmt && strcasecmp(fmt, "json") == 0)
        obx_log_set_json(true);
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
    return obx_worker_new(&cfg, err);
}

static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    sigwait(set, &sig);
    obx_info("received %s; stopping every box", strsignal(sig));
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

bool obx_cli_is_help(const char *arg)
{
    return obx_streq(arg, "--help") || obx_streq(arg, "-h");
}
