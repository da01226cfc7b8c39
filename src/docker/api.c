/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Docker Engine API client. Ordinary calls go through a fresh libcurl easy handle each (over
 * CURLOPT_UNIX_SOCKET_PATH, or TCP for a tcp:// DOCKER_HOST), so any thread may call at any time
 * and no handle is shared. The attach stream is the exception: it is a connection we open and
 * speak HTTP/1.1 on by hand, because after the daemon's "101 UPGRADED" it becomes a raw byte
 * stream that we need as a plain fd we can poll, half-close (shutdown(SHUT_WR) is how the agent's
 * stdin reaches EOF) and hand to a pump thread; libcurl has no half-close. Every libcurl and HTTP
 * failure is translated here, once, into an obx_error that says what to do about it.
 */
#include "docker-internal.h"

#include <curl/curl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"

#define ATTACH_TIMEOUT_MS 10000
#define ATTACH_HEADER_MAX 8192
#define PULL_TIMEOUT_MS (30 * 60 * 1000) /* a big image on a slow link; progress is logged */
#define PULL_LINE_MAX (64u * 1024)
#define PULL_LOG_EVERY_MS 2000

#define START_HINT                                                                              \
    "start it with: sudo systemctl start docker (or sudo dockerd &, or scripts/docker-up.sh), " \
    "or point DOCKER_HOST at a running daemon"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The message for a daemon we could not reach, from the errno of the failed connect. */
static int unreachable(struct obx_docker_client *c, int errnum, const char *detail,
                       struct obx_error *err)
{
    switch (errnum) {
    case ENOENT:
        return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "no Docker daemon socket at %s: Docker is not installed or not "
                             "running; " START_HINT,
                             c->endpoint);
    case ECONNREFUSED:
        return obx_error_set(
            err, ECONNREFUSED, OBX_ERR_RUNTIME_UNAVAILABLE,
            "the Docker daemon at %s is not running (connection refused); " START_HINT,
            c->endpoint);
    case EACCES:
    case EPERM:
        return obx_error_set(err, EACCES, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "permission denied on the Docker socket %s: add your user to the "
                             "docker group (sudo usermod -aG docker $USER, then log in again) or "
                             "run the worker as root",
                             c->endpoint);
    case ETIMEDOUT:
        return obx_error_set(err, ETIMEDOUT, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "the Docker daemon at %s did not answer in time (%s)", c->endpoint,
                             detail ? detail : "timeout");
    default:
        return obx_error_set(err, errnum ? errnum : EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot talk to the Docker daemon at %s: %s", c->endpoint,
                             detail ? detail : strerror(errnum));
    }
}

static size_t write_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct obx_buf *b = userdata;
    size_t n = size * nmemb;
    return obx_buf_append(b, ptr, n) < 0 ? 0 : n; /* 0 aborts the transfer */
}

static CURL *easy_new(struct obx_docker_client *c, const char *path, int timeout_ms)
{
    pthread_once(&curl_once, curl_init_once);
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    _cleanup_free_ char *url = NULL;
    if (path[0] == '/' && strncmp(path, "/_ping", 6) != 0 && strncmp(path, "/version", 8) != 0)
        url = obx_xasprintf("%s/v%s%s", c->base_url, c->api_version, path);
    else
        url = obx_xasprintf("%s%s", c->base_url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (c->unix_path)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)OBX_MIN(timeout_ms, 10000));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "onlyboxes/" OBX_VERSION);
    return h;
}

/* Translates a failed transfer. */
static int transfer_error(struct obx_docker_client *c, CURL *h, CURLcode rc, const char *errbuf,
                          struct obx_error *err)
{
    long os_errno = 0;
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return unreachable(c, ETIMEDOUT, detail, err);
    if (rc == CURLE_WRITE_ERROR)
        return obx_error_set(err, E2BIG, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "the Docker daemon at %s sent a reply larger than %u bytes",
                             c->endpoint, OBX_DOCKER_BODY_MAX);
    if (rc == CURLE_COULDNT_CONNECT && os_errno)
        return unreachable(c, (int)os_errno, detail, err);
    return unreachable(c, os_errno ? (int)os_errno : EIO, detail, err);
}

int obx_docker_call(struct obx_docker_client *c, const char *method, const char *path,
                    const json_t *body, int timeout_ms, long *ret_status, json_t **ret_json,
                    struct obx_error *err)
{
    CURL *h = easy_new(c, path, timeout_ms);
    if (!h)
        return obx_error_set(err, ENOMEM, OBX_ERR_INTERNAL, "cannot create a libcurl handle");
    struct obx_buf resp = OBX_BUF_INIT(OBX_DOCKER_BODY_MAX);
    _cleanup_free_ char *text = body ? obx_json_dumps(body) : NULL;
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (text) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    int r = 0;
    if (rc != CURLE_OK) {
        r = transfer_error(c, h, rc, errbuf, err);
    } else {
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        *ret_status = status;
        if (ret_json) {
            *ret_json = NULL;
            if (resp.len > 0) {
                struct obx_error perr = OBX_ERROR_INIT;
                *ret_json = obx_json_parse(resp.data, resp.len, &perr);
                /* Some errors come as plain text: keep it as {"message": text}. */
                if (!*ret_json && status >= 400)
                    *ret_json =
                        json_pack("{s:o}", "message", obx_json_string_bytes(resp.data, resp.len));
            }
        }
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    obx_buf_free(&resp);
    return r;
}

const char *obx_docker_message(const json_t *body)
{
    const char *m = obx_json_get_str(body, "message", "");
    return m;
}

char *obx_docker_escape(const char *s)
{
    pthread_once(&curl_once, curl_init_once);
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e)
        abort(); /* out of memory */
    char *copy = obx_xstrdup(e);
    curl_free(e);
    return copy;
}

/* "1.41" -> 1, 41 */
static bool parse_api_version(const char *s, unsigned *major, unsigned *minor)
{
    return s && sscanf(s, "%u.%u", major, minor) == 2;
}

static int parse_host(struct obx_docker_client *c, const char *host, struct obx_error *err)
{
    if (obx_str_empty(host))
        host = OBX_DOCKER_DEFAULT_HOST;
    if (strncmp(host, "unix://", 7) == 0) {
        const char *path = host + 7;
        if (path[0] != '/' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return obx_error_set(err, EINVAL, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "DOCKER_HOST=%s: expected unix:///absolute/path/to/docker.sock",
                                 host);
        c->unix_path = obx_xstrdup(path);
        snprintf(c->base_url, sizeof(c->base_url), "http://localhost");
        snprintf(c->endpoint, sizeof(c->endpoint), "%s", path);
        return 0;
    }
    if (strncmp(host, "tcp://", 6) == 0) {
        const char *hp = host + 6;
        const char *colon = strrchr(hp, ':');
        int64_t port = 2375;
        size_t hlen = colon ? (size_t)(colon - hp) : strcspn(hp, "/");
        if (colon) {
            char num[8];
            snprintf(num, sizeof(num), "%.*s", (int)strcspn(colon + 1, "/"), colon + 1);
            if (obx_parse_int64(num, 1, 65535, &port) < 0)
                hlen = 0;
        }
        if (hlen == 0 || hlen > 253)
            return obx_error_set(err, EINVAL, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "DOCKER_HOST=%s: expected tcp://host:port", host);
        if (getenv("DOCKER_TLS_VERIFY") && *getenv("DOCKER_TLS_VERIFY"))
            return obx_error_set(err, ENOTSUP, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "DOCKER_TLS_VERIFY is set, but this build speaks plain HTTP to "
                                 "the daemon only; use a unix socket (ssh -L can forward one)");
        c->tcp_host = obx_xstrndup(hp, hlen);
        c->tcp_port = (unsigned)port;
        snprintf(c->base_url, sizeof(c->base_url), "http://%s:%u", c->tcp_host, c->tcp_port);
        snprintf(c->endpoint, sizeof(c->endpoint), "tcp://%s:%u", c->tcp_host, c->tcp_port);
        return 0;
    }
    return obx_error_set(err, EINVAL, OBX_ERR_RUNTIME_UNAVAILABLE,
                         "DOCKER_HOST=%s is not supported: use unix:///path or tcp://host:port",
                         host);
}

int obx_docker_client_init(struct obx_docker_client *c, const char *host, struct obx_error *err)
{
    return obx_docker_client_init_timeout(c, host, 10000, err);
}

int obx_docker_client_init_timeout(struct obx_docker_client *c, const char *host, int timeout_ms,
                                   struct obx_error *err)
{
    memset(c, 0, sizeof(*c));
    int r = parse_host(c, host, err);
    if (r < 0)
        return r;
    long status = 0;
    _cleanup_json_ json_t *v = NULL;
    r = obx_docker_call(c, "GET", "/version", NULL, timeout_ms > 0 ? timeout_ms : 10000, &status,
                        &v, err);
    if (r < 0)
        return r;
    if (status != 200 || !json_is_object(v))
        return obx_error_set(err, EPROTO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "%s does not answer like a Docker daemon (GET /version: HTTP %ld %s)",
                             c->endpoint, status, obx_docker_message(v));
    snprintf(c->server_version, sizeof(c->server_version), "%s",
             obx_json_get_str(v, "Version", "?"));
    unsigned major = 0, minor = 0;
    if (!parse_api_version(obx_json_get_str(v, "ApiVersion", NULL), &major, &minor))
        return obx_error_set(err, EPROTO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "the Docker daemon at %s did not say its API version", c->endpoint);
    if (major != OBX_DOCKER_API_MIN_MAJOR || minor < OBX_DOCKER_API_MIN_MINOR)
        return obx_error_set(err, ENOTSUP, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "Docker %s at %s speaks API %u.%u; onlyboxes needs %u.%u or newer "
                             "(Docker 1.13+); upgrade Docker",
                             c->server_version, c->endpoint, major, minor, OBX_DOCKER_API_MIN_MAJOR,
                             OBX_DOCKER_API_MIN_MINOR);
    snprintf(c->api_version, sizeof(c->api_version), "%u.%u", major,
             OBX_MIN(minor, (unsigned)OBX_DOCKER_API_MAX_MINOR));
    return 0;
}

void obx_docker_client_done(struct obx_docker_client *c)
{
    free(c->unix_path);
    free(c->tcp_host);
    c->unix_path = c->tcp_host = NULL;
}

int obx_docker_image_exists(struct obx_docker_client *c, const char *image, int timeout_ms,
                            json_t **ret_info, struct obx_error *err)
{
    _cleanup_free_ char *path = obx_xasprintf("/images/%s/json", image);
    long status = 0;
    _cleanup_json_ json_t *j = NULL;
    int r = obx_docker_call(c, "GET", path, NULL,
                            timeout_ms > 0 ? timeout_ms : OBX_DOCKER_TIMEOUT_MS, &status, &j, err);
    if (r < 0)
        return r;
    if (status == 200) {
        if (ret_info)
            *ret_info = TAKE_PTR(j);
        return 1;
    }
    if (status == 404)
        return 0;
    return obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                         "cannot inspect image %s on the Docker daemon at %s: HTTP %ld %s", image,
                         c->endpoint, status, obx_docker_message(j));
}

int obx_docker_image_pullable(struct obx_docker_client *c, const char *image, int timeout_ms,
                              struct obx_error *err)
{
    /* GET /distribution/<name>/json makes the daemon fetch the manifest from the registry with
     * its own credentials: the cheapest question that proves a pull would start. */
    _cleanup_free_ char *path = obx_xasprintf("/distribution/%s/json", image);
    long status = 0;
    _cleanup_json_ json_t *j = NULL;
    int r = obx_docker_call(c, "GET", path, NULL,
                            timeout_ms > 0 ? timeout_ms : OBX_DOCKER_TIMEOUT_MS, &status, &j, err);
    if (r < 0)
        return r;
    if (status == 200)
        return 0;
    return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                         "image %s is not on the Docker daemon at %s and cannot be pulled (HTTP "
                         "%ld %s)",
                         image, c->endpoint, status, obx_docker_message(j));
}

/* ---- pull ---- */

struct pull_state {
    const char *image;
    void (*on_line)(void *userdata, const char *line);
    void *userdata;
    struct obx_buf line;
    char error[512];
    uint64_t last_log_ms;
    char last_status[128];
};

static void pull_line(struct pull_state *p, const char *text, size_t len)
{
    struct obx_error perr = OBX_ERROR_INIT;
    _cleanup_json_ json_t *j = obx_json_parse(text, len, &perr);
    if (!json_is_object(j))
        return;
    const char *e = obx_json_get_str(j, "error", NULL);
    if (!e && !json_object_get(j, "status"))
        e = obx_json_get_str(j, "message", NULL); /* an error status: the body is {"message"} */
    if (e) {
        snprintf(p->error, sizeof(p->error), "%s", e);
        return;
    }
    const char *status = obx_json_get_str(j, "status", "");
    const char *progress = obx_json_get_str(j, "progress", "");
    const char *id = obx_json_get_str(j, "id", "");
    uint64_t now = obx_now_ms();
    /* Each layer reports many times a second: log status changes, and progress every few s. */
    bool changed = strcmp(status, p->last_status) != 0;
    if (!changed && now - p->last_log_ms < PULL_LOG_EVERY_MS)
        return;
    snprintf(p->last_status, sizeof(p->last_status), "%s", status);
    p->last_log_ms = now;
    char line[512];
    snprintf(line, sizeof(line), "docker pull %s: %s%s%s%s%s", p->image, id, *id ? ": " : "",
             status, *progress ? " " : "", progress);
    obx_info("%s", line);
    if (p->on_line)
        p->on_line(p->userdata, line);
}

static size_t pull_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct pull_state *p = userdata;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (ptr[i] == '\n') {
            pull_line(p, p->line.data ? p->line.data : "", p->line.len);
            obx_buf_reset(&p->line);
        } else if (obx_buf_append(&p->line, &ptr[i], 1) < 0) {
            return 0;
        }
    }
    return n;
}

int obx_docker_pull(struct obx_docker_client *c, const char *image,
                    void (*on_line)(void *userdata, const char *line), void *userdata,
                    struct obx_error *err)
{
    /* A reference without a tag or digest would pull every tag of the repository. */
    const char *slash = strrchr(image, '/');
    const char *name = slash ? slash + 1 : image;
    bool tagged = strchr(name, ':') || strchr(image, '@');
    _cleanup_free_ char *esc = obx_docker_escape(image);
    _cleanup_free_ char *path =
        obx_xasprintf("/images/create?fromImage=%s%s", esc, tagged ? "" : "&tag=latest");
    CURL *h = easy_new(c, path, PULL_TIMEOUT_MS);
    if (!h)
        return obx_error_set(err, ENOMEM, OBX_ERR_INTERNAL, "cannot create a libcurl handle");
    struct pull_state p = {.image = image,
                           .on_line = on_line,
                           .userdata = userdata,
                           .line = OBX_BUF_INIT(PULL_LINE_MAX)};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, pull_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &p);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    obx_info("docker: image %s is not on the daemon; pulling it", image);
    if (on_line) {
        char text[512];
        snprintf(text, sizeof(text), "docker: image %s is not on the daemon; pulling it", image);
        on_line(userdata, text);
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    int r = 0;
    if (rc != CURLE_OK) {
        r = transfer_error(c, h, rc, errbuf, err);
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (p.line.len > 0)
            pull_line(&p, p.line.data, p.line.len);
        if (status != 200 && !p.error[0])
            snprintf(p.error, sizeof(p.error), "HTTP %ld", status);
    }
    curl_easy_cleanup(h);
    obx_buf_free(&p.line);
    if (r < 0)
        return r;
    if (p.error[0])
        return obx_error_set(err, ENOENT, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "image %s is not on the Docker daemon at %s and pulling it failed "
                             "(%s); " OBX_DOCKER_BUILD_HINT,
                             image, c->endpoint, p.error);
    obx_info("docker pull %s: done", image);
    if (on_line) {
        char text[512];
        snprintf(text, sizeof(text), "docker pull %s: done", image);
        on_line(userdata, text);
    }
    return 0;
}

/* ---- attach ---- */

static int connect_daemon(struct obx_docker_client *c, int *ret, struct obx_error *err)
{
    if (c->unix_path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->unix_path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return obx_error_set(err, errno, OBX_ERR_NO_CAPACITY, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            int e = errno;
            close(fd);
            return unreachable(c, e, NULL, err);
        }
        *ret = fd;
        return 0;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", c->tcp_port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(c->tcp_host, port, &hints, &res);
    if (g != 0)
        return unreachable(c, EHOSTUNREACH, gai_strerror(g), err);
    int e = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(res);
            *ret = fd;
            return 0;
        }
        e = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return unreachable(c, e, NULL, err);
}

int obx_docker_attach(struct obx_docker_client *c, const char *id, int *ret_fd, char *pending,
                      size_t size, size_t *ret_pending_len, struct obx_error *err)
{
    _cleanup_close_ int fd = -1;
    int r = connect_daemon(c, &fd, err);
    if (r < 0)
        return r;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "POST /v%s/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 "
                     "HTTP/1.1\r\nHost: %s\r\nUser-Agent: onlyboxes/" OBX_VERSION
                     "\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: "
                     "Upgrade\r\nUpgrade: tcp\r\n\r\n",
                     c->api_version, id, c->unix_path ? "docker" : c->tcp_host);
    if (n < 0 || (size_t)n >= sizeof(req))
        return obx_error_set(err, E2BIG, OBX_ERR_INTERNAL, "container id too long");
    r = obx_send_all(fd, req, (size_t)n);
    if (r < 0)
        return unreachable(c, -r, NULL, err);

    char head[ATTACH_HEADER_MAX + 1];
    size_t len = 0;
    char *end = NULL;
    uint64_t deadline = obx_now_ms() + ATTACH_TIMEOUT_MS;
    while (!end) {
        uint64_t now = obx_now_ms();
        if (now >= deadline)
            return unreachable(c, ETIMEDOUT, "no answer to attach", err);
        if (len >= ATTACH_HEADER_MAX)
            return obx_error_set(err, EPROTO, OBX_ERR_RUNTIME_UNAVAILABLE,
                                 "the Docker daemon's attach answer has over %d bytes of headers",
                                 ATTACH_HEADER_MAX);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr < 0 && errno != EINTR)
            return unreachable(c, errno, NULL, err);
        if (pr <= 0)
            continue;
        ssize_t got = recv(fd, head + len, ATTACH_HEADER_MAX - len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return unreachable(c, got < 0 ? errno : EPIPE, "connection closed during attach", err);
        len += (size_t)got;
        head[len] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1 || (status != 101 && status != 200)) {
        /* The body (a JSON error) may follow the headers; show what arrived. */
        const char *body = end + 4;
        return obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot attach to container %.12s: HTTP %d %.300s", id, status,
                             *body ? body : "");
    }
    size_t hdr_len = (size_t)(end + 4 - head);
    size_t extra = len - hdr_len;
    if (extra > size)
        return obx_error_set(err, E2BIG, OBX_ERR_INTERNAL, "attach: too many early bytes");
    memcpy(pending, head + hdr_len, extra);
    *ret_pending_len = extra;
    *ret_fd = TAKE_FD(fd);
    return 0;
}
