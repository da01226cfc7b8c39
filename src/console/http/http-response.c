/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Building responses and reading requests without libwebsockets: JSON bodies, {"error": "..."}
 * errors, extra headers, query lookup and request reference counting. Any thread may use these on
 * a request it holds the completion reference of.
 */
#include "http.h"

#include <strings.h>

#include "common/json.h"

static void response_set_body(struct obx_http_response *resp, int status, const char *ctype,
                              char *body, size_t len)
{
    free(resp->body);
    resp->status = status;
    resp->content_type = ctype;
    resp->body = body;
    resp->body_len = len;
}

void obx_http_respond_json(struct obx_http_request *req, int status, json_t *body)
{
    char *text = obx_json_dumps(body);
    json_decref(body);
    response_set_body(&req->resp, status, "application/json; charset=utf-8", text, strlen(text));
}

void obx_http_respond_error(struct obx_http_request *req, int status, const char *message)
{
    /* Messages may quote what the client sent; invalid UTF-8 would make json_pack() fail. */
    obx_http_respond_json(
        req, status, json_pack("{s:o}", "error", obx_json_string_bytes(message, strlen(message))));
}

void obx_http_respond_empty(struct obx_http_request *req, int status)
{
    response_set_body(&req->resp, status, NULL, NULL, 0);
}

void obx_http_respond_raw(struct obx_http_request *req, int status, const char *content_type,
                          char *body, size_t len)
{
    response_set_body(&req->resp, status, content_type, body, len);
}

void obx_http_response_add_header(struct obx_http_request *req, const char *name, const char *value)
{
    struct obx_http_response *r = &req->resp;
    if (r->n_headers >= OBX_HTTP_MAX_RESP_HEADERS)
        return;
    r->headers[r->n_headers][0] = obx_xstrdup(name);
    r->headers[r->n_headers][1] = obx_xstrdup(value);
    r->n_headers++;
}

void obx_http_response_done(struct obx_http_response *resp)
{
    free(resp->body);
    for (size_t i = 0; i < resp->n_headers; i++) {
        free(resp->headers[i][0]);
        free(resp->headers[i][1]);
    }
    memset(resp, 0, sizeof(*resp));
}

const char *obx_http_request_header(const struct obx_http_request *req, const char *name)
{
    const char *const *names = obx_http_server_capture_headers(req->srv);
    for (size_t i = 0; names && names[i] && i < OBX_HTTP_MAX_CAPTURED; i++)
        if (strcasecmp(names[i], name) == 0)
            return req->captured[i];
    return NULL;
}

const char *obx_http_request_query(const struct obx_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_query; i++)
        if (strcmp(req->query[i][0], name) == 0)
            return req->query[i][1];
    return NULL;
}

struct obx_http_request *obx_http_request_ref(struct obx_http_request *req)
{
    __atomic_add_fetch(&req->refs, 1, __ATOMIC_RELAXED);
    return req;
}

void obx_http_request_unref(struct obx_http_request *req)
{
    if (!req || __atomic_sub_fetch(&req->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(req->path);
    for (size_t i = 0; i < req->n_query; i++) {
        free(req->query[i][0]);
        free(req->query[i][1]);
    }
    free(req->body);
    free(req->cookie);
    free(req->authorization);
    free(req->forwarded_proto);
    free(req->forwarded_for);
    free(req->host);
    free(req->origin);
    free(req->accept);
    free(req->content_type);
    free(req->mcp_session_id);
    free(req->mcp_protocol);
    free(req->mcp_method);
    free(req->mcp_name);
    for (size_t i = 0; i < OBX_HTTP_MAX_CAPTURED; i++)
        free(req->captured[i]);
    free(req->accept_encoding);
    free(req->if_none_match);
    obx_buf_free(&req->stream);
    obx_buf_free(&req->in);
    pthread_cond_destroy(&req->cond);
    obx_http_response_done(&req->resp);
    free(req);
}
