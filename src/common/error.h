/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error values passed across module boundaries. A function that can fail returns a negative errno
 * and, at a module boundary, also fills a struct obx_error owned by the caller (usually on its
 * stack): a wire code that clients see ("session_not_found", "invalid_payload", ...) and a message
 * for humans. obx_error_wrap() prefixes context on the way up.
 */
#ifndef OBX_COMMON_ERROR_H
#define OBX_COMMON_ERROR_H

#include "util.h"

/* Wire codes shared with the original Onlyboxes workers (reference §3.5) plus our own. */
#define OBX_ERR_INVALID_PAYLOAD "invalid_payload"
#define OBX_ERR_SESSION_NOT_FOUND "session_not_found"
#define OBX_ERR_SESSION_BUSY "session_busy"
#define OBX_ERR_FILE_NOT_FOUND "file_not_found"
#define OBX_ERR_PATH_IS_DIRECTORY "path_is_directory"
#define OBX_ERR_FILE_TOO_LARGE "file_too_large"
#define OBX_ERR_DEADLINE_EXCEEDED "deadline_exceeded"
#define OBX_ERR_CANCELED "canceled"
#define OBX_ERR_EXECUTION_FAILED "execution_failed"
#define OBX_ERR_UNSUPPORTED "unsupported_capability"
#define OBX_ERR_NO_CAPACITY "no_capacity"
#define OBX_ERR_RUNTIME_UNAVAILABLE "runtime_unavailable"
#define OBX_ERR_INTERNAL "internal_error"

struct obx_error {
    int errnum;         /* positive errno-style number, 0 when unset */
    char code[40];      /* wire code, "" when unset */
    char message[1024]; /* human-readable, never holds secrets */
};

#define OBX_ERROR_INIT \
    {                  \
        0, "", ""      \
    }

/* Sets the error (err may be NULL) and returns -errnum, so callers can `return obx_error_set(...)`.
 */
int obx_error_set(struct obx_error *err, int errnum, const char *code, const char *fmt, ...)
    OBX_PRINTF(4, 5);

/* Prefixes "context: " to the message; returns -errnum. */
int obx_error_wrap(struct obx_error *err, const char *fmt, ...) OBX_PRINTF(2, 3);

/* "code: message", or either alone when the other is empty. Returns a pointer into buf. */
const char *obx_error_text(const struct obx_error *err, char *buf, size_t size);

#endif
