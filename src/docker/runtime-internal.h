/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between the docker runtime's files: runtime.c (boxes: create, start, the attach and direct
 * data paths, stop), image.c (images: presence, pulls and who hears their progress) and owner.c
 * (owner labels: stale boxes of dead owners, and all of our own on the way out). Not for use
 * outside src/docker/.
 */
#ifndef OBX_DOCKER_RUNTIME_INTERNAL_H
#define OBX_DOCKER_RUNTIME_INTERNAL_H

#include <pthread.h>

#include "docker-internal.h"

struct pull_listener {
    void (*fn)(void *userdata, int level, const char *message);
    void *userdata;
    struct pull_listener *next;
};

struct docker_runtime {
    struct obx_runtime rt; /* first member: rt pointers are cast back to this */
    struct obx_docker_client c;
    struct obx_docker_config cfg; /* strings below are our copies */
    char *python_image, *terminal_image, *user, *network;
    char host[256];    /* this host's name, for the owner labels */
    char boot_id[64];  /* this boot, so pids of an earlier boot are never trusted */
    char self_pid[16]; /* our pid and start time, the owner of every box we start */
    char self_start[24];
    char *sock_dir; /* <state>/docker for the direct path, or NULL: attach only */
    char status[640];
    pthread_mutex_t pull_lock; /* one pull at a time; guards the failure memory below */
    char failed_image[256];
    char failed_message[1024];
    uint64_t failed_until;
    int starting;             /* atomic: start() calls in flight, for remove_own() */
    bool stopping;            /* atomic: remove_own() began; no box starts any more */
    pthread_mutex_t log_lock; /* guards listeners */
    struct pull_listener *listeners;
};

static inline struct docker_runtime *to_docker(struct obx_runtime *rt)
{
    return (struct docker_runtime *)rt;
}

/* Removes a container (force: killing it first). 404 and "already in progress" count as done. */
int obx_docker_remove_container(struct docker_runtime *d, const char *id, struct obx_error *err);

/* image.c: makes sure image is there, pulling it when allowed; spec->on_log (if any) hears the
 * progress of whichever thread pulls. */
int obx_docker_ensure_image(struct docker_runtime *d, const char *image,
                            const struct obx_box_spec *spec, struct obx_error *err);
/* image.c: runtime_new's check (there, or pullable); appends what it found to d->status. */
int obx_docker_check_image(struct docker_runtime *d, const char *image, struct obx_error *err);

/* owner.c */
int obx_docker_proc_start_time(pid_t pid, unsigned long long *ret);
int obx_docker_cleanup_stale(struct obx_runtime *rt, struct obx_error *err);
int obx_docker_remove_own(struct obx_runtime *rt, struct obx_error *err);

#endif
