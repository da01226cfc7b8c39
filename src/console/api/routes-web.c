/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dashboard's files (reference §1.1: "/" serves the single page, its assets below /assets/),
 * from the table compiled into the binary (console/web/web.h), on pool threads. Every file has an
 * ETag; a content-hashed name is cached for a year, the page itself is revalidated on every load.
 * A client that takes gzip gets the compressed copy.
 */
#include "api.h"

#include "console/web/web.h"

static enum obx_route_result serve_asset(struct obx_route_ctx *ctx)
{
    struct obx_http_request *req = ctx->req;
    const struct obx_web_asset *a = obx_web_asset_find(req->path);
    if (!a) {
        obx_http_respond_empty(req, 404);
        return OBX_ROUTE_DONE;
    }
    char gz_etag[64];
    snprintf(gz_etag, sizeof(gz_etag), "%.*s-gzip\"", (int)strlen(a->etag) - 1, a->etag);
    bool gzip = a->gz && obx_web_accepts_gzip(req->accept_encoding);
    const char *etag = gzip ? gz_etag : a->etag;
    if (obx_web_etag_matches(req->if_none_match, a->etag, a->gz ? gz_etag : NULL)) {
        obx_http_respond_empty(req, 304);
    } else {
        size_t len = gzip ? a->gz_len : a->len;
        char *body = obx_xmalloc(len + 1);
        memcpy(body, gzip ? a->gz : a->data, len);
        obx_http_respond_raw(req, 200, a->content_type, body, len);
        if (gzip)
            obx_http_response_add_header(req, "content-encoding", "gzip");
    }
    obx_http_response_add_header(req, "etag", etag);
    obx_http_response_add_header(req, "cache-control",
                                 a->immutable ? "public, max-age=31536000, immutable" : "no-cache");
    if (a->gz)
        obx_http_response_add_header(req, "vary", "accept-encoding");
    return OBX_ROUTE_DONE;
}

const struct obx_route obx_web_routes[] = {
    {OBX_HTTP_GET, "/", OBX_ROUTE_AUTH_NONE, serve_asset},
    {OBX_HTTP_HEAD, "/", OBX_ROUTE_AUTH_NONE, serve_asset},
    {OBX_HTTP_GET, "/assets/:name", OBX_ROUTE_AUTH_NONE, serve_asset},
    {OBX_HTTP_HEAD, "/assets/:name", OBX_ROUTE_AUTH_NONE, serve_asset},
    {OBX_HTTP_GET, "/THIRD_PARTY_NOTICES.txt", OBX_ROUTE_AUTH_NONE, serve_asset},
    {OBX_HTTP_HEAD, "/THIRD_PARTY_NOTICES.txt", OBX_ROUTE_AUTH_NONE, serve_asset},
};
const size_t obx_web_routes_n = OBX_ARRAY_SIZE(obx_web_routes);
