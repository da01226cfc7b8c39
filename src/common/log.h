/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging to stderr, never stdout (stdout belongs to the MCP stdio transport). The level is checked
 * before formatting. Lines are plain text or JSON (ONLYBOXES_LOG_FORMAT=json), with the source
 * file and line when asked (ONLYBOXES_LOG_ADD_SOURCE). Never log a secret.
 * Thread-safe: one write(2) per line.
 */
#ifndef OBX_COMMON_LOG_H
#define OBX_COMMON_LOG_H

#include "util.h"

enum obx_log_level {
    OBX_LOG_DEBUG = 0,
    OBX_LOG_INFO = 1,
    OBX_LOG_WARN = 2,
    OBX_LOG_ERROR = 3,
    OBX_LOG_OFF = 4,
};

extern enum obx_log_level obx_log_threshold;

/* Parses "debug|info|warn|warning|error|off"; returns -EINVAL on anything else. */
int obx_log_level_parse(const char *s, enum obx_log_level *ret);
void obx_log_set_json(bool json);
void obx_log_set_prefix(const char *prefix);
/* Adds where a line was logged (file:line) to every line, as the original's *_LOG_ADD_SOURCE. */
void obx_log_set_source(bool on);

void obx_log_write(enum obx_log_level level, const char *file, int line, const char *fmt, ...)
    OBX_PRINTF(4, 5);

#define obx_log(level, ...)                                          \
    do {                                                             \
        if ((level) >= obx_log_threshold)                            \
            obx_log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define obx_debug(...) obx_log(OBX_LOG_DEBUG, __VA_ARGS__)
#define obx_info(...) obx_log(OBX_LOG_INFO, __VA_ARGS__)
#define obx_warn(...) obx_log(OBX_LOG_WARN, __VA_ARGS__)
#define obx_err(...) obx_log(OBX_LOG_ERROR, __VA_ARGS__)

#endif
