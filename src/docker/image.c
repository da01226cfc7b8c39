/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The docker runtime's images: the check at start-up (present, or pullable when pulling is
 * allowed) and the pull on first use. One pull at a time per runtime (pull_lock); every caller
 * waiting for a pull, its own or another thread's (the warm pool's filler often starts it),
 * registers its on_log hook as a listener and hears each progress line. A failed pull is
 * remembered for a few seconds so the warm pool's retries do not hammer the registry.
 */
#include "runtime-internal.h"

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"

#define PULL_FAILURE_MEMORY_MS 10000 /* a failed pull is not retried for this long */

/* Hands a pull's progress line to everyone waiting for a pull (the puller's thread). */
static void pull_broadcast(void *userdata, const char *line)
{
    struct docker_runtime *d = userdata;
    pthread_mutex_lock(&d->log_lock);
    for (struct pull_listener *l = d->listeners; l; l = l->next)
        l->fn(l->userdata, OBX_LOG_INFO, line);
    pthread_mutex_unlock(&d->log_lock);
}

static void listener_remove(struct docker_runtime *d, struct pull_listener *me)
{
    pthread_mutex_lock(&d->log_lock);
    for (struct pull_listener **pp = &d->listeners; *pp; pp = &(*pp)->next)
        if (*pp == me) {
            *pp = me->next;
            break;
        }
    pthread_mutex_unlock(&d->log_lock);
}

/* Makes sure image is there, pulling it when allowed. One pull at a time per runtime; the
 * caller's spec->on_log hears the progress of whichever thread pulls. A failed pull is remembered
 * for a few seconds so the warm pool's retries do not hammer the registry. */
int obx_docker_ensure_image(struct docker_runtime *d, const char *image,
                            const struct obx_box_spec *spec, struct obx_error *err)
{
    int r = obx_docker_image_exists(&d->c, image, 0, NULL, err);
    if (r != 0)
        return r < 0 ? r : 0;
    if (!d->cfg.pull)
        return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "image %s is not on the Docker daemon at %s (pulling is off: "
                             "ONLYBOXES_DOCKER_PULL=false); " OBX_DOCKER_BUILD_HINT,
                             image, d->c.endpoint);
    struct pull_listener me = {0};
    if (spec && spec->on_log) {
        me.fn = spec->on_log;
        me.userdata = spec->log_userdata;
        char text[512];
        snprintf(text, sizeof(text),
                 "image %s is not on the Docker daemon yet; pulling it (this can take minutes)",
                 image);
        me.fn(me.userdata, OBX_LOG_INFO, text);
        pthread_mutex_lock(&d->log_lock);
        me.next = d->listeners;
        d->listeners = &me;
        pthread_mutex_unlock(&d->log_lock);
    }
    pthread_mutex_lock(&d->pull_lock);
    r = obx_docker_image_exists(&d->c, image, 0, NULL, err); /* another thread may have pulled it */
    if (r == 0 && obx_streq(d->failed_image, image) && obx_now_ms() < d->failed_until)
        r = obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE, "%s", d->failed_message);
    else if (r == 0) {
        r = obx_docker_pull(&d->c, image, pull_broadcast, d, err);
        if (r < 0) {
            snprintf(d->failed_image, sizeof(d->failed_image), "%s", image);
            snprintf(d->failed_message, sizeof(d->failed_message), "%s", err->message);
            d->failed_until = obx_now_ms() + PULL_FAILURE_MEMORY_MS;
        }
    }
    pthread_mutex_unlock(&d->pull_lock);
    if (me.fn)
        listener_remove(d, &me);
    return r < 0 ? r : 0;
}

/* The default work image from before its box user became 65532 (no version label, or an older
 * one) still works, but its user has no name for that uid: say how to rebuild it. */
static void warn_if_outdated(const char *image, json_t *info)
{
    bool slim = obx_streq(image, OBX_DOCKER_SLIM_IMAGE);
    if (!slim && !obx_streq(image, OBX_DOCKER_DEFAULT_IMAGE))
        return;
    json_t *labels = json_object_get(json_object_get(info, "Config"), "Labels");
    const char *v = json_string_value(json_object_get(labels, OBX_DOCKER_IMAGE_VERSION_LABEL));
    if (v && obx_streq(v, OBX_DOCKER_IMAGE_VERSION))
        return;
    obx_warn("docker: image %s is an older build (label %s is %s, not %s): its box user is not "
             "%u; rebuild it with %sscripts/build-test-image.sh, or docker build -t %s -f "
             "docker/%s-work-image.dockerfile docker/",
             image, OBX_DOCKER_IMAGE_VERSION_LABEL, v ? v : "missing", OBX_DOCKER_IMAGE_VERSION,
             OBX_DOCKER_DEFAULT_UID, slim ? "OBX_WORK_VARIANT=slim " : "", image,
             slim ? "slim" : "default");
}

/* Checks image for runtime_new: there, or allowed (and, for auto, able) to be pulled. Appends
 * what it found to d->status. */
int obx_docker_check_image(struct docker_runtime *d, const char *image, struct obx_error *err)
{
    int tmo = d->cfg.probe_timeout_ms;
    _cleanup_json_ json_t *info = NULL;
    int r = obx_docker_image_exists(&d->c, image, tmo, &info, err);
    size_t n = strlen(d->status);
    if (r < 0)
        return r;
    if (r == 1) {
        snprintf(d->status + n, sizeof(d->status) - n, ", image %s present", image);
        warn_if_outdated(image, info);
        return 0;
    }
    if (!d->cfg.pull)
        return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "image %s is not on the Docker daemon at %s (pulling is off: "
                             "ONLYBOXES_DOCKER_PULL=false); " OBX_DOCKER_BUILD_HINT,
                             image, d->c.endpoint);
    if (d->cfg.verify_pullable) {
        r = obx_docker_image_pullable(&d->c, image, tmo ? tmo * 2 : 0, err);
        if (r < 0)
            return r;
        snprintf(d->status + n, sizeof(d->status) - n,
                 ", image %s not present but pullable (pulled on first use)", image);
        return 0;
    }
    snprintf(d->status + n, sizeof(d->status) - n, ", image %s not present (pulled on first use)",
             image);
    return 0;
}
