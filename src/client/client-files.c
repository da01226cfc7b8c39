/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Files to and from a session's box (PUT and GET /api/v1/sessions/:id/files, on a console or a
 * local onlyboxes mcp's control socket): the body streams from or to a file descriptor, so a
 * file of any size costs a fixed amount of memory, with progress reported as it goes. On the
 * calling thread, interruptible like every request (obx_client_conn_wake()).
 */
#include "client-internal.h"

#include "common/buf.h"
#include "common/clock.h"

#define TRANSFER_CONNECT_MS 10000
#define TRANSFER_LOW_SPEED_SEC 120   /* a transfer that moves nothing for this long fails */
#define MAX_ANSWER_BYTES (32u << 20) /* a JSON answer (a directory listing) */

char *obx_client_files_path(struct obx_client_conn *x, const char *session, const char *path,
                            const char *extra)
{
    char *s = curl_easy_escape(x->easy, session, 0);
    char *p = curl_easy_escape(x->easy, path, 0);
    char *out = obx_xasprintf("/api/v1/sessions/%s/files?path=%s%s", s ? s : "", p ? p : "",
                              extra ? extra : "");
    curl_free(s);
    curl_free(p);
    return out;
}

struct xfer {
    int fd;
    bool file;   /* the answer is a file's bytes (not JSON) */
    int wfailed; /* errno of a failed write */
    struct obx_buf json;
    void (*progress)(void *userdata, uint64_t done, uint64_t total);
    void *userdata;
    uint64_t total;
};

static size_t on_header(char *line, size_t size, size_t n, void *userdata)
{
    struct xfer *t = userdata;
    size_t len = size * n;
    static const char name[] = "x-onlyboxes-file-type:";
    if (len > sizeof(name) && strncasecmp(line, name, sizeof(name) - 1) == 0) {
        const char *v = line + sizeof(name) - 1;
        while (*v == ' ')
            v++;
        t->file = strncmp(v, "file", 4) == 0;
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
    struct xfer *t = userdata;
    size_t len = size * n;
    if (!t->file)
        return obx_buf_append(&t->json, data, len) < 0 ? 0 : len;
    int r = obx_write_all(t->fd, data, len);
    if (r < 0) {
        t->wfailed = -r;
        return 0;
    }
    return len;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *t = userdata;
    if (t->progress) {
        uint64_t total = ultotal > 0 ? (uint64_t)ultotal : dltotal > 0 ? (uint64_t)dltotal : 0;
        t->progress(t->userdata, (uint64_t)(ulnow > 0 ? ulnow : dlnow), total ? total : t->total);
    }
    return 0;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userdata)
{
    struct xfer *t = userdata;
    ssize_t r;
    do
        r = read(t->fd, buf, size * n);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        t->wfailed = errno;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)r;
}

int obx_client_transfer(struct obx_client_conn *x, const char *method, const char *path, int fd,
                        uint64_t size, void (*progress)(void *, uint64_t, uint64_t), void *userdata,
                        long *ret_status, json_t **ret_body, bool *ret_file, struct obx_error *err)
{
    struct obx_client *c = x->client;
    CURL *h = x->easy;
    bool put = strcmp(method, "PUT") == 0;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct xfer t = {.fd = fd,
                     .json = OBX_BUF_INIT(MAX_ANSWER_BYTES),
                     .progress = progress,
                     .userdata = userdata,
                     .total = size};
    struct curl_slist *headers = obx_client_setup(x, path);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)TRANSFER_CONNECT_MS);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)TRANSFER_LOW_SPEED_SEC);
    if (put) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &t);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode rc;
    int r = obx_client_conn_perform(x, true, &rc);
    if (r == -ECANCELED)
        r = obx_error_set(err, ECANCELED, OBX_ERR_CANCELED, "interrupted");
    else if (r < 0)
        r = obx_error_set(err, EIO, OBX_CLIENT_ERR_UNREACHABLE,
                          "cannot reach %s: internal curl error", c->who);
    else if (t.wfailed)
        r = obx_error_set(err, t.wfailed, OBX_ERR_EXECUTION_FAILED, "%s: %s",
                          put ? "cannot read the local file" : "cannot write the local file",
                          strerror(t.wfailed));
    else if (rc != CURLE_OK)
        r = obx_error_set(err, rc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNREFUSED,
                          OBX_CLIENT_ERR_UNREACHABLE, "the transfer with %s failed: %s", c->who,
                          errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (r == 0) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_status);
        *ret_body = t.json.len ? obx_json_parse(t.json.data, t.json.len, NULL) : NULL;
        if (ret_file)
            *ret_file = t.file;
    }
    obx_client_headers_free(headers);
    obx_buf_free(&t.json);
    return r;
}
