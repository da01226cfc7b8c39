/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The console client against a scripted HTTP peer on loopback: configuration checks, the token
 * check, a task that outlives the submit's wait (202, then polls until it ends), and a cancel that
 * cuts the submit short (the task is found again through its request_id and canceled). The real
 * console is exercised by tests/integration/cli-remote.test.mjs; this covers the paths that take
 * too long or are too racy to reach there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "client/client.h"
#include "common/buf.h"
#include "common/json.h"

#define MAX_SEEN 32
#define MAX_CONNS 16

/* One request the peer received. */
struct seen {
    char method[8];
    char path[128];
    char auth[160];
    json_t *body;
};

struct peer;
/* Returns the status and sets *body (a JSON text) to answer, or returns 0 to hold the request
 * until the client gives up on the connection. */
typedef int (*peer_fn)(struct peer *p, const struct seen *req, const char **body);

struct peer {
    int listen_fd;
    char url[64];
    peer_fn fn;
    int state;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct seen seen[MAX_SEEN];
    int n_seen;
    pthread_t thread;
    struct conn {
        struct peer *p;
        int fd;
        pthread_t thread;
    } conns[MAX_CONNS];
    int n_conns;
};

/* Reads one request head and body; false at EOF or on error. */
static bool read_request(int fd, struct obx_buf *in, struct seen *s)
{
    for (;;) {
        char *end = in->data ? strstr(in->data, "\r\n\r\n") : NULL;
        if (end) {
            size_t head = (size_t)(end - in->data) + 4;
            const char *cl = strcasestr(in->data, "content-length:");
            size_t body = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
            if (in->len >= head + body) {
                sscanf(in->data, "%7s %127s", s->method, s->path);
                const char *a = strcasestr(in->data, "authorization: ");
                if (a && a < end)
                    sscanf(a + 15, "%159[^\r]", s->auth);
                s->body = body ? json_loadb(in->data + head, body, 0, NULL) : NULL;
                obx_buf_consume(in, head + body);
                return true;
            }
        }
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n <= 0)
            return false;
        obx_buf_append(in, chunk, (size_t)n);
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct peer *p = c->p;
    struct obx_buf in = OBX_BUF_INIT(0);
    struct seen s;
    memset(&s, 0, sizeof(s));
    while (read_request(c->fd, &in, &s)) {
        pthread_mutex_lock(&p->lock);
        if (p->n_seen < MAX_SEEN)
            p->seen[p->n_seen++] = s;
        else
            json_decref(s.body);
        const char *body = "";
        int status = p->fn(p, &s, &body);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        memset(&s, 0, sizeof(s));
        if (status == 0) { /* hold: wait until the client closes */
            char ignored[256];
            while (read(c->fd, ignored, sizeof(ignored)) > 0)
                ;
            break;
        }
        char *resp = obx_xasprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                                   "Content-Length: %zu\r\n\r\n%s",
                                   status, strlen(body), body);
        bool ok = write(c->fd, resp, strlen(resp)) == (ssize_t)strlen(resp);
        free(resp);
        if (!ok)
            break;
    }
    obx_buf_free(&in);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct peer *p = arg;
    while (p->n_conns < MAX_CONNS) {
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        struct conn *c = &p->conns[p->n_conns];
        *c = (struct conn){.p = p, .fd = fd};
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            close(fd);
            break;
        }
        p->n_conns++;
    }
    return NULL;
}

static struct peer *peer_start(peer_fn fn)
{
    struct peer *p = obx_xcalloc(1, sizeof(*p));
    p->fn = fn;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(p->listen_fd, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(p->listen_fd, (struct sockaddr *)&a, &len);
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d/", ntohs(a.sin_port));
    assert_int_equal(pthread_create(&p->thread, NULL, accept_main, p), 0);
    return p;
}

static void peer_stop(struct peer *p)
{
    shutdown(p->listen_fd, SHUT_RDWR);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    for (int i = 0; i < p->n_conns; i++) {
        shutdown(p->conns[i].fd, SHUT_RDWR);
        pthread_join(p->conns[i].thread, NULL);
        close(p->conns[i].fd);
    }
    for (int i = 0; i < p->n_seen; i++)
        json_decref(p->seen[i].body);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static struct obx_client *client_for(struct peer *p, const char *token)
{
    struct obx_client_config cfg = {.url = p->url, .token = token};
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_client *c = obx_client_new(&cfg, &err);
    assert_non_null(c);
    return c;
}

static void test_config(void **state)
{
    static const char *const bad[] = {"",          "ftp://x",        "http://",
                                      "http:///x", "example.com:80", "http://a b"};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(bad); i++) {
        struct obx_client_config cfg = {.url = bad[i], .token = "t"};
        struct obx_error err = OBX_ERROR_INIT;
        assert_null(obx_client_new(&cfg, &err));
        assert_non_null(strstr(err.message, "expected http://HOST"));
    }
    struct obx_client_config cfg = {.url = "HTTPS://console.example:8443//",
                                    .token = "obx_x\r\nX: y"};
    struct obx_error err = OBX_ERROR_INIT;
    assert_null(obx_client_new(&cfg, &err));
    assert_null(strstr(err.message, "obx_x"));
    cfg.token = "obx_secret";
    struct obx_client *c = obx_client_new(&cfg, &err);
    assert_non_null(c);
    assert_string_equal(obx_client_url(c), "HTTPS://console.example:8443");
    obx_client_free(c);
}

static int auth_peer(struct peer *p, const struct seen *req, const char **body)
{
    if (strcmp(req->auth, "Bearer good") != 0) {
        *body = "{\"error\":\"invalid or missing token\"}";
        return 401;
    }
    *body = "{\"error\":\"task not found\"}";
    return 404;
}

static void test_check(void **state)
{
    struct peer *p = peer_start(auth_peer);
    struct obx_client *c = client_for(p, "good");
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(obx_client_check(c, &err), 0);
    obx_client_free(c);

    c = client_for(p, "obx_wrong_token");
    assert_true(obx_client_check(c, &err) < 0);
    assert_string_equal(err.code, OBX_CLIENT_ERR_UNAUTHORIZED);
    assert_non_null(strstr(err.message, "refused the token"));
    assert_non_null(strstr(err.message, "http://127.0.0.1:"));
    assert_null(strstr(err.message, "obx_wrong_token"));
    obx_client_free(c);
    peer_stop(p);
}

/* Submit answers 202; the first poll says running, the second succeeded. */
static int slow_peer(struct peer *p, const struct seen *req, const char **body)
{
    if (strcmp(req->method, "POST") == 0 && strcmp(req->path, "/api/v1/tasks") == 0) {
        *body = "{\"task_id\":\"t-1\",\"status\":\"running\",\"status_url\":\"/api/v1/tasks/t-1\"}";
        return 202;
    }
    if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/api/v1/tasks/t-1") == 0) {
        *body = p->state++ == 0 ? "{\"task_id\":\"t-1\",\"status\":\"running\"}"
                                : "{\"task_id\":\"t-1\",\"status\":\"succeeded\",\"result\":"
                                  "{\"stdout\":\"hi\\n\",\"stderr\":\"\",\"exit_code\":3}}";
        return 200;
    }
    return 500;
}

static void collect(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    if (stream == OBX_STREAM_STDOUT)
        obx_buf_append(userdata, data, len);
}

static void test_poll_until_done(void **state)
{
    struct peer *p = peer_start(slow_peer);
    struct obx_client *c = client_for(p, "good");
    struct obx_executor *ex = obx_client_executor(c);
    struct obx_buf out = OBX_BUF_INIT(0);
    struct obx_call call;
    obx_call_init(&call);
    call.on_output = collect;
    call.output_userdata = &out;
    json_t *payload = json_pack("{s:s,s:i}", "command", "echo hi", "timeout_ms", 1234);
    json_t *result = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    assert_int_equal(ex->exec(ex, "terminalexec", payload, &call, &result, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(result, "exit_code")), 3);
    assert_string_equal(out.data, "hi\n");
    assert_int_equal(p->n_seen, 3);
    json_t *sub = p->seen[0].body;
    assert_string_equal(json_string_value(json_object_get(sub, "capability")), "terminalexec");
    assert_string_equal(json_string_value(json_object_get(sub, "mode")), "auto");
    assert_int_equal(json_integer_value(json_object_get(sub, "timeout_ms")), 1234);
    assert_int_equal(json_integer_value(json_object_get(sub, "wait_ms")), 1234);
    assert_true(json_equal(json_object_get(sub, "input"), payload));
    assert_int_equal(strlen(json_string_value(json_object_get(sub, "request_id"))), 36);
    json_decref(result);
    json_decref(payload);
    obx_call_done(&call);
    obx_buf_free(&out);
    obx_client_free(c);
    peer_stop(p);
}

/* The first submit is held; the async resend names the task; the cancel succeeds. */
static int held_peer(struct peer *p, const struct seen *req, const char **body)
{
    if (strcmp(req->path, "/api/v1/tasks") == 0) {
        if (p->state++ == 0)
            return 0;
        *body = "{\"task_id\":\"t-2\",\"status\":\"running\"}";
        return 202;
    }
    if (strcmp(req->path, "/api/v1/tasks/t-2/cancel") == 0) {
        *body = "{\"task_id\":\"t-2\",\"status\":\"canceled\"}";
        return 200;
    }
    return 500;
}

struct exec_arg {
    struct obx_executor *ex;
    struct obx_call call;
    struct obx_error err;
    int r;
};

static void *exec_main(void *arg)
{
    struct exec_arg *a = arg;
    json_t *payload = json_pack("{s:s}", "code", "import time; time.sleep(99)");
    json_t *result = NULL;
    a->r = a->ex->exec(a->ex, "pythonexec", payload, &a->call, &result, &a->err);
    json_decref(result);
    json_decref(payload);
    return NULL;
}

static void test_cancel_during_submit(void **state)
{
    struct peer *p = peer_start(held_peer);
    struct obx_client *c = client_for(p, "good");
    struct exec_arg a = {.ex = obx_client_executor(c), .err = OBX_ERROR_INIT};
    obx_call_init(&a.call);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, exec_main, &a), 0);
    pthread_mutex_lock(&p->lock);
    while (p->n_seen < 1)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    obx_client_cancel_all(c);
    pthread_join(t, NULL);
    assert_int_equal(a.r, -ECANCELED);
    assert_string_equal(a.err.code, OBX_ERR_CANCELED);
    assert_non_null(strstr(a.err.message, "task t-2 was canceled"));
    assert_int_equal(p->n_seen, 3);
    json_t *first = p->seen[0].body, *again = p->seen[1].body;
    assert_string_equal(json_string_value(json_object_get(again, "mode")), "async");
    assert_true(
        json_equal(json_object_get(first, "request_id"), json_object_get(again, "request_id")));
    assert_true(json_equal(json_object_get(first, "input"), json_object_get(again, "input")));
    assert_string_equal(p->seen[2].path, "/api/v1/tasks/t-2/cancel");

    /* Once everything is canceled, a new call never reaches the console. */
    struct exec_arg b = {.ex = obx_client_executor(c), .err = OBX_ERROR_INIT};
    obx_call_init(&b.call);
    exec_main(&b);
    assert_int_equal(b.r, -ECANCELED);
    assert_int_equal(p->n_seen, 3);
    obx_call_done(&a.call);
    obx_call_done(&b.call);
    obx_client_free(c);
    peer_stop(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_poll_until_done),
        cmocka_unit_test(test_cancel_during_submit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
