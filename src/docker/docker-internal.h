/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between the files of the docker runtime: api.c (the Engine API client: requests over
 * libcurl, the hand-made attach connection, image pull, error translation), config.c (options
 * from the environment) and runtime.c (boxes). Not for use outside src/docker/ (and its tests).
 */
#ifndef OBX_DOCKER_DOCKER_INTERNAL_H
#define OBX_DOCKER_DOCKER_INTERNAL_H

#include <jansson.h>

#include "docker.h"

/* Oldest Engine API with everything we use (NanoCpus, PidsLimit, Tmpfs, Mounts, Init); newest we
 * were written against. The negotiated version is the daemon's, capped at MAX. */
#define OBX_DOCKER_API_MIN_MAJOR 1
#define OBX_DOCKER_API_MIN_MINOR 25
#define OBX_DOCKER_API_MAX_MINOR 45
#define OBX_DOCKER_BODY_MAX (8u * 1024 * 1024) /* largest response body we keep */
#define OBX_DOCKER_TIMEOUT_MS 30000            /* ordinary API calls */

struct obx_docker_client {
    char *unix_path; /* the daemon's unix socket, or NULL for tcp */
    char *tcp_host;  /* with tcp:// */
    unsigned tcp_port;
    char base_url[300];   /* "http://localhost" or "http://host:port" */
    char endpoint[320];   /* for messages: the socket path or tcp://host:port */
    char api_version[16]; /* negotiated, e.g. "1.41" */
    char server_version[64];
};

/* Parses host (NULL: OBX_DOCKER_DEFAULT_HOST), asks the daemon for /version and negotiates the API
 * version. Errors say whether the daemon is missing, not running or not ours to use, and how to
 * fix it. */
int obx_docker_client_init(struct obx_docker_client *c, const char *host, struct obx_error *err);
/* The same with a time limit (ms) on the daemon's answer, connect included. */
int obx_docker_client_init_timeout(struct obx_docker_client *c, const char *host, int timeout_ms,
                                   struct obx_error *err);
void obx_docker_client_done(struct obx_docker_client *c);

/* One API call: method on path (e.g. "/containers/create?name=x", without the version prefix) with
 * an optional JSON body. Returns 0 with the HTTP status in *ret_status and the parsed body (NULL
 * when empty or not JSON) in *ret_json, or a negative errno when the daemon could not be reached
 * (err: OBX_ERR_RUNTIME_UNAVAILABLE). An HTTP error status is not a failure here. */
int obx_docker_call(struct obx_docker_client *c, const char *method, const char *path,
                    const json_t *body, int timeout_ms, long *ret_status, json_t **ret_json,
                    struct obx_error *err);

/* Docker's error text from an error body ({"message": ...}), or "" when there is none. */
const char *obx_docker_message(const json_t *body);

/* URL-encodes s for a query string. Caller frees. */
char *obx_docker_escape(const char *s);

/* 1 when the daemon has the image (with its inspect JSON in *ret_info when that is not NULL; the
 * caller frees it), 0 when not, negative errno (err set) on failure. timeout_ms 0: the ordinary
 * limit. */
int obx_docker_image_exists(struct obx_docker_client *c, const char *image, int timeout_ms,
                            json_t **ret_info, struct obx_error *err);

/* 0 when the daemon can pull image (it asked the registry for the manifest), else a negative
 * errno with err saying why (no such image, registry unreachable, timeout). */
int obx_docker_image_pullable(struct obx_docker_client *c, const char *image, int timeout_ms,
                              struct obx_error *err);

/* Pulls image, logging progress to stderr and, when on_line is set, handing each progress line
 * to it as well (from this thread). Fails with a message naming the image and how to build it
 * when the pull fails. */
int obx_docker_pull(struct obx_docker_client *c, const char *image,
                    void (*on_line)(void *userdata, const char *line), void *userdata,
                    struct obx_error *err);

/* Opens a connection of our own to the daemon and hijacks it with POST
 * /containers/<id>/attach?stream=1&stdin=1&stdout=1&stderr=1. On success *ret_fd is the raw,
 * multiplexed stream (O_CLOEXEC, blocking); bytes the daemon sent right after its headers are
 * copied to pending (up to size, *ret_pending_len). */
int obx_docker_attach(struct obx_docker_client *c, const char *id, int *ret_fd, char *pending,
                      size_t size, size_t *ret_pending_len, struct obx_error *err);

#endif
