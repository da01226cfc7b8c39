/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console client's HTTP side: configuration, one libcurl request at a time per connection,
 * and the translation of curl and HTTP failures into obx_error values that name the console URL.
 * libcurl stays inside this module. Runs on the caller's thread; a request can be interrupted from
 * another thread through obx_client_conn_wake().
 */
#include "client-internal.h"

#include <ctype.h>
#include <strings.h>

#include "common/buf.h"
#include "common/clock.h"

#define MAX_RESPONSE_BYTES (64u << 20) /* results are bounded by the worker's output limits */
#define CONNECT_TIMEOUT_MS 10000
#define POLL_SLICE_MS 500 /* longest a wait goes without looking at the cancel flag */
#define CHECK_TIMEOUT_MS 15000

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool has_control_chars(const char *s)
{
    for (; *s; s++)
        if (iscntrl((unsigned char)*s) || *s == ' ')
            return true;
    return false;
}

struct obx_client *obx_client_new(const struct obx_client_config *cfg, struct obx_error *err)
{
    bool local = !obx_str_empty(cfg->unix_socket);
    const char *url = local ? "http://localhost" : cfg->url ? cfg->url : "";
    size_t scheme = strncasecmp(url, "http://", 7) == 0    ? 7
                    : strncasecmp(url, "https://", 8) == 0 ? 8
                                                           : 0;
    if (!scheme || !url[scheme] || url[scheme] == '/' || has_control_chars(url)) {
        obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                      "the console URL '%s' is invalid: expected http://HOST[:PORT] or "
                      "https://HOST[:PORT]",
                      url);
        return NULL;
    }
    if (!local && obx_str_empty(cfg->token)) {
        obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD, "no token for the console at %s", url);
        return NULL;
    }
    if (!local && has_control_chars(cfg->token)) {
        obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                      "the token for the console at %s contains spaces or control characters", url);
        return NULL;
    }
    /* Before any thread exists: curl_global_init() is not thread-safe everywhere. */
    pthread_once(&curl_once, curl_init_once);

    struct obx_client *c = obx_xcalloc(1, sizeof(*c));
    c->executor.exec = obx_client_task_exec;
    size_t n = strlen(url);
    while (n > scheme && url[n - 1] == '/')
        n--;
    c->url = obx_xstrndup(url, n);
    c->auth_header = local ? NULL : obx_xasprintf("Authorization: Bearer %s", cfg->token);
    c->ca_file = obx_str_empty(cfg->ca_file) ? NULL : obx_xstrdup(cfg->ca_file);
    c->unix_socket = local ? obx_xstrdup(cfg->unix_socket) : NULL;
    c->who = local ? obx_xstrdup(cfg->name ? cfg->name : cfg->unix_socket)
                   : obx_xasprintf("the console at %s", c->url);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void obx_client_free(struct obx_client *c)
{
    if (!c)
        return;
    if (c->auth_header)
        explicit_bzero(c->auth_header, strlen(c->auth_header));
    free(c->auth_header);
    free(c->url);
    free(c->unix_socket);
    free(c->who);
    free(c->ca_file);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const char *obx_client_url(const struct obx_client *c)
{
    return c->url;
}

struct obx_executor *obx_client_executor(struct obx_client *c)
{
    return &c->executor;
}

int obx_client_conn_init(struct obx_client *c, struct obx_client_conn *x, struct obx_error *err)
{
    x->client = c;
    x->cancelled = false;
    x->multi = curl_multi_init();
    x->easy = curl_easy_init();
    if (!x->multi || !x->easy) {
        obx_client_conn_done(x);
        return obx_error_set(err, ENOMEM, OBX_ERR_INTERNAL, "cannot set up an HTTP connection");
    }
    return 0;
}

void obx_client_conn_done(struct obx_client_conn *x)
{
    if (x->easy)
        curl_easy_cleanup(x->easy);
    if (x->multi)
        curl_multi_cleanup(x->multi);
    x->easy = NULL;
    x->multi = NULL;
}

void obx_client_conn_wake(struct obx_client_conn *x)
{
    __atomic_store_n(&x->cancelled, true, __ATOMIC_RELEASE);
    curl_multi_wakeup(x->multi);
}

bool obx_client_conn_sleep(struct obx_client_conn *x, uint64_t ms)
{
    uint64_t end = obx_now_ms() + ms;
    while (!__atomic_load_n(&x->cancelled, __ATOMIC_ACQUIRE)) {
        uint64_t now = obx_now_ms();
        if (now >= end)
            return true;
        curl_multi_poll(x->multi, NULL, 0, (int)OBX_MIN(end - now, (uint64_t)POLL_SLICE_MS), NULL);
    }
    return false;
}

struct response {
    struct obx_buf body;
    bool too_big;
};

static size_t write_body(char *data, size_t size, size_t n, void *userdata)
{
    struct response *r = userdata;
    if (obx_buf_append(&r->body, data, size * n) < 0) {
        r->too_big = true;
        return 0;
    }
    return size * n;
}

int obx_client_conn_perform(struct obx_client_conn *x, bool abortable, CURLcode *ret_rc)
{
    if (abortable && __atomic_load_n(&x->cancelled, __ATOMIC_ACQUIRE))
        return -ECANCELED;
    if (curl_multi_add_handle(x->multi, x->easy) != CURLM_OK)
        return -EIO;
    int r = 0;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(x->multi, &running) != CURLM_OK) {
            r = -EIO;
            break;
        }
        if (!running)
            break;
        if (abortable && __atomic_load_n(&x->cancelled, __ATOMIC_ACQUIRE)) {
            r = -ECANCELED;
            break;
        }
        curl_multi_poll(x->multi, NULL, 0, POLL_SLICE_MS, NULL);
    }
    *ret_rc = CURLE_RECV_ERROR;
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(x->multi, &left)))
        if (m->msg == CURLMSG_DONE)
            *ret_rc = m->data.result;
    curl_multi_remove_handle(x->multi, x->easy);
    return r;
}

struct curl_slist *obx_client_setup(struct obx_client_conn *x, const char *path)
{
    struct obx_client *c = x->client;
    CURL *h = x->easy;
    _cleanup_free_ char *url = obx_xasprintf("%s%s", c->url, path);
    curl_easy_reset(h); /* keeps the open connection */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "onlyboxes/" OBX_VERSION);
    if (c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (c->unix_socket)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_socket);
    struct curl_slist *headers = c->auth_header ? curl_slist_append(NULL, c->auth_header) : NULL;
    return curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
}

void obx_client_headers_free(struct curl_slist *headers)
{
    /* The list holds the token: clear it before it goes back to the allocator. */
    for (struct curl_slist *s = headers; s; s = s->next)
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(headers);
}

int obx_client_conn_request(struct obx_client_conn *x, const char *method, const char *path,
                            const json_t *body, uint64_t timeout_ms, bool abortable,
                            long *ret_status, json_t **ret_body, struct obx_error *err)
{
    struct obx_client *c = x->client;
    CURL *h = x->easy;
    _cleanup_free_ char *text = body ? obx_json_dumps(body) : NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct response resp = {.body = OBX_BUF_INIT(MAX_RESPONSE_BYTES)};
    struct curl_slist *headers = obx_client_setup(x, path);
    headers = curl_slist_append(headers, "Accept: application/json");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") != 0) { /* a POST without a body still sends Content-Length: 0 */
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text ? text : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(text ? strlen(text) : 0));
    }
    if (text)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode rc;
    int r = obx_client_conn_perform(x, abortable, &rc);
    if (r == -EIO)
        r = obx_error_set(err, EIO, OBX_CLIENT_ERR_UNREACHABLE,
                          "cannot reach %s: internal curl error", c->who);
    else if (r == 0 && resp.too_big)
        r = obx_error_set(err, E2BIG, OBX_CLIENT_ERR_CONSOLE,
                          "%s sent an answer larger than %u bytes", c->who, MAX_RESPONSE_BYTES);
    else if (r == 0 && rc != CURLE_OK)
        r = obx_error_set(err, rc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNREFUSED,
                          OBX_CLIENT_ERR_UNREACHABLE, "cannot reach %s: %s", c->who,
                          errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (r == 0) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_status);
        *ret_body = resp.body.len ? obx_json_parse(resp.body.data, resp.body.len, NULL) : NULL;
    }
    obx_client_headers_free(headers);
    obx_buf_free(&resp.body);
    return r;
}

int obx_client_request(struct obx_client *c, const char *method, const char *path,
                       const json_t *body, long *ret_status, json_t **ret_body,
                       struct obx_error *err)
{
    struct obx_client_conn x;
    int r = obx_client_conn_init(c, &x, err);
    if (r < 0)
        return r;
    r = obx_client_conn_request(&x, method, path, body, CHECK_TIMEOUT_MS, false, ret_status,
                                ret_body, err);
    obx_client_conn_done(&x);
    return r;
}

int obx_client_http_error(struct obx_client *c, long status, const json_t *body,
                          struct obx_error *err)
{
    const char *msg = obx_json_get_str(body, "error", NULL);
    if (status == 401)
        return obx_error_set(err, EACCES, OBX_CLIENT_ERR_UNAUTHORIZED, "%s refused the token (%s)",
                             c->who, msg ? msg : "401 Unauthorized");
    static const struct {
        long status;
        int errnum;
        const char *code;
    } map[] = {
        {400, EINVAL, OBX_ERR_INVALID_PAYLOAD},
        {429, EBUSY, OBX_ERR_NO_CAPACITY},
        {503, ENODEV, OBX_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < OBX_ARRAY_SIZE(map); i++)
        if (map[i].status == status)
            return obx_error_set(err, map[i].errnum, map[i].code, "%s: %s", c->who,
                                 msg ? msg : "request refused");
    return obx_error_set(err, EPROTO, OBX_CLIENT_ERR_CONSOLE, "%s answered %ld%s%s", c->who, status,
                         msg ? ": " : "", msg ? msg : "");
}

int obx_client_check(struct obx_client *c, struct obx_error *err)
{
    /* The console has no "who am I" route for tokens; a task id that cannot exist answers 404
     * to a good token and 401 to a bad one, and touches nothing. */
    long status = 0;
    _cleanup_json_ json_t *body = NULL;
    int r = obx_client_request(c, "GET", "/api/v1/tasks/00000000-0000-0000-0000-000000000000", NULL,
                               &status, &body, err);
    if (r < 0)
        return r;
    if (status == 404 && obx_json_get_str(body, "error", NULL))
        return 0;
    if (status == 401 || obx_json_get_str(body, "error", NULL))
        return obx_client_http_error(c, status, body, err);
    return obx_error_set(err, EPROTO, OBX_CLIENT_ERR_CONSOLE,
                         "%s does not look like an onlyboxes console (HTTP %ld to the task API)",
                         c->url, status);
}

struct obx_client_conn *obx_client_conn_new(struct obx_client *c, struct obx_error *err)
{
    struct obx_client_conn *x = obx_xcalloc(1, sizeof(*x));
    if (obx_client_conn_init(c, x, err) < 0) {
        free(x);
        return NULL;
    }
    return x;
}

void obx_client_conn_free(struct obx_client_conn *x)
{
    if (!x)
        return;
    obx_client_conn_done(x);
    free(x);
}

int obx_client_conn_json(struct obx_client_conn *x, const char *method, const char *path,
                         const json_t *body, long *ret_status, json_t **ret_body,
                         struct obx_error *err)
{
    int r = obx_client_conn_request(x, method, path, body, CHECK_TIMEOUT_MS, true, ret_status,
                                    ret_body, err);
    if (r == -ECANCELED)
        return obx_error_set(err, ECANCELED, OBX_ERR_CANCELED, "interrupted");
    return r;
}
