/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dashboard served by the console itself: the built files of web/ compiled into the binary
 * (tools/embed-assets.c generates the table at build time), and the HTTP rules around them and
 * the cookie routes: the response headers every answer carries (a strict Content-Security-Policy
 * among them), the same-origin check that stops cross-site requests, conditional requests and
 * gzip negotiation. Pure functions: no I/O, any thread.
 */
#ifndef OBX_CONSOLE_WEB_H
#define OBX_CONSOLE_WEB_H

#include "common/util.h"

struct obx_web_asset {
    const char *path;         /* "/" for index.html, "/assets/main-ABCD1234.js" */
    const char *content_type; /* with charset for text */
    const char *etag;         /* quoted, of the uncompressed bytes */
    bool immutable;           /* a content-hashed name: cacheable for good */
    const unsigned char *data;
    size_t len;
    const unsigned char *gz; /* gzip of data, or NULL when it would not be smaller */
    size_t gz_len;
};

/* Generated at build time from web/dist/ (web-assets.c in the build directory). */
extern const struct obx_web_asset obx_web_assets[];
extern const size_t obx_web_assets_n;

/* The asset served at path, or NULL. */
const struct obx_web_asset *obx_web_asset_find(const char *path);

/* Headers every response carries, {name, value} pairs ending with {NULL, NULL}. */
extern const char *const obx_web_response_headers[][2];

/* True when an Accept-Encoding header admits gzip (by name or "*", with a q above zero). */
bool obx_web_accepts_gzip(const char *accept_encoding);

/* True when an If-None-Match header names one of the given entity tags (quoted, as sent in ETag;
 * a weak "W/" prefix is ignored, "*" matches anything). etag2 may be NULL. */
bool obx_web_etag_matches(const char *if_none_match, const char *etag, const char *etag2);

/* True when origin ("https://host:port", as browsers send it) names the host and port of host
 * (the request's Host header); a port left out is the default of the origin's scheme. An absent
 * Host, "null" or a malformed origin is false. */
bool obx_web_same_origin(const char *origin, const char *host);

#endif
