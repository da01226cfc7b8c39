/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stdio transport: one JSON-RPC message per line on in_fd, answers on out_fd. The calling
 * thread reads and hands each line to the session, which answers quick methods at once and runs
 * tools/call on threads of its own, so reading never waits for a tool. Writes come from both and go
 * out whole under one mutex; nothing but protocol lines is ever written to out_fd.
 */
#include "mcp-internal.h"

#include <signal.h>

#include "common/buf.h"
#include "common/log.h"

struct stdio_out {
    int fd;
    pthread_mutex_t lock;
    bool broken; /* the reader went away: drop further output */
};

static void stdio_send(void *userdata, const char *json)
{
    struct stdio_out *out = userdata;
    size_t len = strlen(json);
    _cleanup_free_ char *line = obx_xmalloc(len + 1);
    memcpy(line, json, len);
    line[len] = '\n';
    pthread_mutex_lock(&out->lock);
    if (!out->broken) {
        int r = obx_write_all(out->fd, line, len + 1);
        if (r < 0) {
            out->broken = true;
            obx_warn("mcp stdio: cannot write to the client: %s", strerror(-r));
        }
    }
    pthread_mutex_unlock(&out->lock);
}

static void handle_line(struct obx_mcp_session *s, struct obx_buf *line)
{
    size_t len = line->len;
    if (len > 0 && line->data[len - 1] == '\r')
        len--;
    bool blank = true;
    for (size_t i = 0; i < len && blank; i++)
        blank = line->data[i] == ' ' || line->data[i] == '\t' || line->data[i] == '\r';
    if (!blank)
        obx_mcp_session_handle(s, line->data, len);
    obx_buf_reset(line);
    /* Do not keep a huge buffer around after one huge message. */
    if (line->cap > 1024 * 1024)
        obx_buf_free(line);
}

int obx_mcp_stdio_run(struct obx_mcp_server *srv, int in_fd, int out_fd)
{
    /* A client that closes its end of our stdout must not kill the server with SIGPIPE; the write
     * fails with EPIPE instead and we keep reading until stdin ends. */
    signal(SIGPIPE, SIG_IGN);

    struct stdio_out out = {.fd = out_fd, .broken = false};
    pthread_mutex_init(&out.lock, NULL);
    struct obx_mcp_session *s = obx_mcp_session_new(srv, stdio_send, &out);

    /* One byte over the message cap leaves room for a trailing '\r'. */
    struct obx_buf line = OBX_BUF_INIT(OBX_MCP_MAX_MESSAGE + 1);
    bool skipping = false; /* inside a line that was too long: drop it up to its newline */
    const size_t chunk_size = 64 * 1024;
    _cleanup_free_ char *chunk = obx_xmalloc(chunk_size);
    int ret = 0;
    for (;;) {
        ssize_t n = read(in_fd, chunk, chunk_size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            obx_err("mcp stdio: cannot read from the client: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        const char *p = chunk;
        size_t left = (size_t)n;
        while (left > 0) {
            const char *nl = memchr(p, '\n', left);
            size_t seg = nl ? (size_t)(nl - p) : left;
            if (!skipping && obx_buf_append(&line, p, seg) < 0) {
                skipping = true;
                obx_buf_free(&line);
                obx_mcp_session_send_json(
                    s, obx_rpc_error(NULL, OBX_RPC_INVALID_REQUEST,
                                     "invalid request: message larger than %u bytes",
                                     OBX_MCP_MAX_MESSAGE));
            }
            if (nl) {
                if (!skipping)
                    handle_line(s, &line);
                skipping = false;
                seg++;
            }
            p += seg;
            left -= seg;
        }
    }
    /* A last message without its newline still counts. */
    if (ret == 0 && !skipping && line.len > 0)
        handle_line(s, &line);
    obx_buf_free(&line);

    obx_mcp_session_free(s);
    pthread_mutex_destroy(&out.lock);
    return ret;
}
