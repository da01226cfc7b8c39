/* SPDX-License-Identifier: Apache-2.0 */
/* stderr logger; see log.h. */
#include "log.h"

#include <stdarg.h>
#include <time.h>

enum obx_log_level obx_log_threshold = OBX_LOG_INFO;
static bool log_json, log_source;
static char log_prefix[32] = "onlyboxes";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int obx_log_level_parse(const char *s, enum obx_log_level *ret)
{
    static const struct {
        const char *name;
        enum obx_log_level level;
    } table[] = {
        {"debug", OBX_LOG_DEBUG},  {"info", OBX_LOG_INFO},   {"warn", OBX_LOG_WARN},
        {"warning", OBX_LOG_WARN}, {"error", OBX_LOG_ERROR}, {"off", OBX_LOG_OFF},
    };
    for (size_t i = 0; s && i < OBX_ARRAY_SIZE(table); i++)
        if (strcasecmp(s, table[i].name) == 0) {
            *ret = table[i].level;
            return 0;
        }
    return -EINVAL;
}

void obx_log_set_json(bool json)
{
    log_json = json;
}

void obx_log_set_source(bool on)
{
    log_source = on;
}

void obx_log_set_prefix(const char *prefix)
{
    snprintf(log_prefix, sizeof(log_prefix), "%s", prefix);
}

/* Appends s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t size, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

/* A URL's token=VALUE (the console's /mcp takes the token in the query for clients that cannot
 * set headers; access_token= and the like too) never reaches a log line, whoever logs the URL. */
static void redact_tokens(char *msg)
{
    static const char key[] = "token=";
    for (char *p = strstr(msg, key); p; p = strstr(p, key)) {
        p += sizeof(key) - 1;
        char *end = p + strcspn(p, "& \t\"'<>");
        if (end == p)
            continue;
        static const char mask[] = "[redacted]";
        size_t vlen = (size_t)(end - p), mlen = sizeof(mask) - 1;
        if (vlen >= mlen) {
            memcpy(p, mask, mlen);
            memmove(p + mlen, end, strlen(end) + 1);
        } else {
            memset(p, '*', vlen);
        }
        p += vlen >= mlen ? mlen : vlen;
    }
}

void obx_log_write(enum obx_log_level level, const char *file, int line_no, const char *fmt, ...)
{
    if (level >= OBX_LOG_OFF)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    redact_tokens(msg);
    /* One line per record: embedded newlines would split it. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    /* The path from the source tree's src/ on: the same in every build directory. */
    char source[160] = "";
    if (log_source && file) {
        const char *rel = strstr(file, "/src/");
        snprintf(source, sizeof(source), "%s:%d", rel ? rel + 1 : file, line_no);
    }
    char line[4096 + 512];
    int n;
    if (log_json) {
        char esc[4096], src_field[200] = "";
        json_escape(esc, sizeof(esc), msg);
        if (source[0])
            snprintf(src_field, sizeof(src_field), ",\"source\":\"%s\"", source);
        n = snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"%s}\n",
                     when, level_names[level], esc, src_field);
    } else {
        n = snprintf(line, sizeof(line), "%s %s %s: %s%s%s%s\n", when, level_names[level],
                     log_prefix, msg, source[0] ? " (" : "", source, source[0] ? ")" : "");
    }
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    (void)obx_write_all(STDERR_FILENO, line, (size_t)n);
}
