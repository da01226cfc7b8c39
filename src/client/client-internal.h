/* SPDX-License-Identifier: Apache-2.0 */
/* What client.c (the HTTP transport) and client-task.c (the task executor) share. */
#ifndef OBX_CLIENT_INTERNAL_H
#define OBX_CLIENT_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>

#include "client.h"

struct obx_client_link; /* one exec() in flight (client-task.c) */

struct obx_client {
    struct obx_executor executor; /* first: the executor pointer is the client */
    char *url;                    /* base URL without trailing slashes */
    char *auth_header;            /* "Authorization: Bearer ..."; never logged; NULL locally */
    char *ca_file;
    char *unix_socket; /* a local onlyboxes mcp's control socket, or NULL */
    char *who;         /* "the console at URL", or the local process's name, for messages */

    pthread_mutex_t lock; /* guards the two fields below */
    struct obx_client_link *calls;
    bool cancel_all;
};

/*
 * One connection used by one thread at a time: a multi handle driving one easy handle, so that
 * another thread can interrupt a transfer or a pause with obx_client_conn_wake() (the one curl
 * call that is safe from another thread). Connections are reused between its requests.
 */
struct obx_client_conn {
    struct obx_client *client;
    CURLM *multi;
    CURL *easy;
    bool cancelled; /* __atomic: set by obx_client_cancel_all() from another thread */
};

int obx_client_conn_init(struct obx_client *c, struct obx_client_conn *x, struct obx_error *err);
void obx_client_conn_done(struct obx_client_conn *x);

/* One request, like obx_client_request(). timeout_ms bounds the whole exchange. When abortable,
 * it returns -ECANCELED as soon as the connection is cancelled (err untouched). */
/* The headers every request sends (the token, when there is one) and the options that say where
 * it goes; the caller frees the list with obx_client_headers_free(). */
struct curl_slist *obx_client_setup(struct obx_client_conn *x, const char *path);
void obx_client_headers_free(struct curl_slist *headers);

int obx_client_conn_request(struct obx_client_conn *x, const char *method, const char *path,
                            const json_t *body, uint64_t timeout_ms, bool abortable,
                            long *ret_status, json_t **ret_body, struct obx_error *err);

/* Drives the easy handle to completion through the multi handle; -ECANCELED when abortable and
 * the connection was cancelled, -EIO when curl failed, else 0 with curl's result in *ret_rc. */
int obx_client_conn_perform(struct obx_client_conn *x, bool abortable, CURLcode *ret_rc);

/* Waits ms milliseconds; returns false at once when the connection is cancelled. */
bool obx_client_conn_sleep(struct obx_client_conn *x, uint64_t ms);

/* Fills err for an HTTP answer that is not what the caller wanted: 401 is "refused the token",
 * anything else "answered STATUS: <error>". Returns a negative errno. */
int obx_client_http_error(struct obx_client *c, long status, const json_t *body,
                          struct obx_error *err);

/* The executor's exec() (client-task.c). */
int obx_client_task_exec(struct obx_executor *ex, const char *capability, json_t *payload,
                         struct obx_call *call, json_t **ret_result, struct obx_error *err);

#endif
