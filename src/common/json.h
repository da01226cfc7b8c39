/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jansson helpers: scope cleanup for json_t, bounded parsing (size and nesting depth) and compact
 * one-line serialisation. Every module that speaks JSON goes through these.
 */
#ifndef OBX_COMMON_JSON_H
#define OBX_COMMON_JSON_H

#include <jansson.h>

#include "error.h"

static inline void obx_json_decrefp(json_t **j)
{
    if (*j)
        json_decref(*j);
}
#define _cleanup_json_ _cleanup_(obx_json_decrefp)

/* Deepest nesting we accept from a peer; deeper input is refused before jansson recurses. */
#define OBX_JSON_MAX_DEPTH 64

/* Parses text[0..len) as one JSON value. Fails with a clear message on invalid JSON, input deeper
 * than OBX_JSON_MAX_DEPTH, or invalid UTF-8. Returns a new reference or NULL. */
json_t *obx_json_parse(const char *text, size_t len, struct obx_error *err);

/* Compact one-line serialisation (no newlines, "\/" not escaped). Caller frees. Never NULL. */
char *obx_json_dumps(const json_t *j);

/* A JSON string from arbitrary bytes: invalid UTF-8 is replaced by U+FFFD. New reference. */
json_t *obx_json_string_bytes(const char *s, size_t len);

/* Getters that return a default when the member is missing or of another type. */
const char *obx_json_get_str(const json_t *obj, const char *key, const char *def);
int64_t obx_json_get_int(const json_t *obj, const char *key, int64_t def);
bool obx_json_get_bool(const json_t *obj, const char *key, bool def);

#endif
