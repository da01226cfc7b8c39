/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `onlyboxes worker`: this host's worker serving a console over one gRPC stream.
 *
 * Threads. The caller's thread runs the connection loop: open a stream, send the hello, wait for
 * the ack, then heartbeat until the stream ends, then back off and reconnect (1 s doubling to
 * 15 s, back to 1 s after a session that was acknowledged). The rpc thread delivers the console's
 * frames: an ack or heartbeat ack wakes the loop; a dispatch starts a command on a thread of its
 * own (bounded by the capacity declared in the hello); a cancel cancels the command's call. Each
 * command thread runs the capability on the worker's executor and sends its result on the stream
 * it came on. A stream that ends cancels its commands: the console has already failed them.
 *
 * Extensions are used only when both sides named them: output frames only after the console's
 * ack lists "output"; cancel frames are acted on whenever they come (a console sends them only to
 * a worker that declared "cancel").
 *
 * Stopping (obx_worker_remote_stop(), on SIGTERM): new dispatches are refused, running commands
 * get drain_timeout_sec to finish and are cancelled after it, then the stream closes; the caller
 * frees the worker, which removes every box.
 */
#include "worker-internal.h"

#include <ctype.h>
#include <strings.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/json.h"
#include "common/log.h"
#include "common/random.h"
#include "common/thread.h"
#include "rpc/rpc.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 15000
#define MAX_LIVE_SESSIONS 4096
#define N_CAPS 7
#define STREAM_END_MS 5000 /* for the last results to reach the console when stopping */

static const char *const cap_names[N_CAPS] = {
    "echo",          "pythonExec",      "terminalExec", "terminalResource",
    "terminalFiles", "terminalSession", "terminalPty"};

struct command {
    char id[128];
    char capability[64];
    json_t *payload;
    char *echo_bytes; /* echo answers with the payload's very bytes, as the original does */
    struct obx_call call;
    struct obx_rpc_stream *stream; /* the one it came on; a reference */
    bool output;                   /* the console takes output frames */
    bool pty;                      /* ... and a live terminal's frames */
    struct remote *r;
    /* "files", under r->lock: an upload's chunks not taken yet and whether the last came; a
     * download's bytes sent and acknowledged by the console; the command was canceled or its
     * stream ended (cond wakes whoever waits for any of these). */
    struct obx_buf in;
    bool in_eof, aborted;
    uint64_t in_taken, out_sent, out_acked;
    pthread_cond_t cond;
    struct command *next;
};

struct remote {
    struct obx_worker *w;
    const struct obx_worker_remote_config *cfg;
    struct obx_rpc_client *client;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* the current stream, under lock */
    struct obx_rpc_stream *stream;
    bool acked, closed;
    char session_id[128];
    int interval_sec;
    bool console_output; /* the console's ack lists "output" */
    bool console_files;  /* ... and "files" */
    bool console_drain;  /* ... and "drain" */
    bool console_pty;    /* ... and "pty" */
    int close_status;
    char close_msg[256];
    uint64_t last_ack; /* monotonic ms of the last ack of any kind */
    struct command *commands;
    unsigned running, max_running;
    bool stopping;
};

static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static struct remote *running_remote;
static bool stop_asked;

void obx_worker_remote_stop(void)
{
    pthread_mutex_lock(&stop_lock);
    stop_asked = true;
    struct remote *r = running_remote;
    if (r) {
        pthread_mutex_lock(&r->lock);
        r->stopping = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_unlock(&stop_lock);
}

/* ---- configuration ---- */

#define F(m) OBX_CONFIG_FIELD(struct obx_worker_remote_config, m)

static const char *const false_true[] = {"false", "true", NULL};

static const struct obx_config_var vars[] = {
    {"WORKER_ID", NULL, OBX_CONFIG_STR, F(node_id), NULL, 0, 0, 0, NULL, OBX_CONFIG_COPY,
     "required; the worker's id at the console"},
    {"WORKER_SECRET", NULL, OBX_CONFIG_STR, F(secret), NULL, 0, 0, 0, NULL,
     OBX_CONFIG_COPY | OBX_CONFIG_SECRET, "required; its secret (shown once by the console)"},
    {"WORKER_CONSOLE_GRPC_TARGET", NULL, OBX_CONFIG_STR, F(target), "127.0.0.1:50051", 0, 0, 0,
     NULL, OBX_CONFIG_COPY, "the console's gRPC address, HOST:PORT"},
    /* As the original: only "true" turns TLS off; anything but true or false is refused. */
    {"WORKER_CONSOLE_INSECURE", NULL, OBX_CONFIG_CHOICE, F(insecure), "false", 0, 0, 0, false_true,
     0, "true: plaintext to the console; otherwise TLS"},
    {"WORKER_CONSOLE_CA_FILE", NULL, OBX_CONFIG_STR, F(ca_file), NULL, 0, 0, 0, NULL,
     OBX_CONFIG_COPY,
     "PEM CA bundle that signed the console's certificate (default: the system's)"},
    {"WORKER_CONSOLE_CERT_FILE", NULL, OBX_CONFIG_STR, F(cert_file), NULL, 0, 0, 0, NULL,
     OBX_CONFIG_COPY, "PEM client certificate, for a console that requires one"},
    {"WORKER_CONSOLE_KEY_FILE", NULL, OBX_CONFIG_STR, F(key_file), NULL, 0, 0, 0, NULL,
     OBX_CONFIG_COPY, "its private key"},
    {"WORKER_HEARTBEAT_INTERVAL_SEC", NULL, OBX_CONFIG_INT, F(heartbeat_interval_sec), "5", 1, 3600,
     0, NULL, 0, "seconds between heartbeats until the console says otherwise"},
    {"WORKER_HEARTBEAT_JITTER_PCT", NULL, OBX_CONFIG_INT, F(jitter_pct), "20", 0, 100, 0, NULL, 0,
     "random spread of the heartbeat interval, percent"},
    {"WORKER_CALL_TIMEOUT_SEC", NULL, OBX_CONFIG_INT, F(call_timeout_sec), NULL, 1, 3600, 0, NULL,
     0, "how long an answer of the console may take (default 2.5 x the heartbeat interval)"},
    {"WORKER_DRAIN_TIMEOUT_SEC", NULL, OBX_CONFIG_INT, F(drain_timeout_sec), "30", 0, 86400, 0,
     NULL, 0, "on SIGTERM, how long running commands may take"},
    {"WORKER_NODE_NAME", NULL, OBX_CONFIG_STR, F(node_name), NULL, 0, 0, 0, NULL, OBX_CONFIG_COPY,
     "name shown by the console (default worker-RUNTIME-ID)"},
    {"WORKER_LABELS", NULL, OBX_CONFIG_STR, F(labels), NULL, 0, 0, 0, NULL, OBX_CONFIG_COPY,
     "labels, k=v,k2=v2"},
    {"WORKER_VERSION", NULL, OBX_CONFIG_STR, F(version), NULL, 0, 0, 0, NULL, OBX_CONFIG_COPY,
     "version shown by the console (default this build's)"},
};

void obx_worker_remote_config_help(FILE *f)
{
    obx_config_help(f, vars, OBX_ARRAY_SIZE(vars));
}

int obx_worker_remote_config_from_env(struct obx_worker_remote_config *cfg, struct obx_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    int r = obx_config_read(vars, OBX_ARRAY_SIZE(vars), cfg, err);
    if (r >= 0 && (!cfg->node_id || !cfg->secret)) {
        const char *missing = !cfg->node_id && !cfg->secret ? "WORKER_ID and WORKER_SECRET are"
                              : !cfg->node_id               ? "WORKER_ID is"
                                                            : "WORKER_SECRET is";
        r = obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                          "%s required: the console's dashboard shows both when it creates a "
                          "worker (or POST /api/v1/workers)",
                          missing);
    }
    if (r >= 0 && strlen(cfg->node_id) > 128)
        r = obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                          "WORKER_ID is longer than 128 bytes");
    if (r >= 0 && !cfg->call_timeout_sec)
        cfg->call_timeout_sec = (cfg->heartbeat_interval_sec * 5 + 1) / 2;
    if (r >= 0 && !cfg->cert_file != !cfg->key_file)
        r = obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                          "%s is set but %s is not: a client certificate needs both",
                          cfg->cert_file ? "WORKER_CONSOLE_CERT_FILE" : "WORKER_CONSOLE_KEY_FILE",
                          cfg->cert_file ? "WORKER_CONSOLE_KEY_FILE" : "WORKER_CONSOLE_CERT_FILE");
    if (r < 0) {
        obx_worker_remote_config_done(cfg);
        return r;
    }
    return 0;
}

void obx_worker_remote_config_done(struct obx_worker_remote_config *cfg)
{
    obx_config_free(vars, OBX_ARRAY_SIZE(vars), cfg);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- commands ---- */

static void send_result(struct command *c, json_t *result, const struct obx_error *err)
{
    struct obx_rpc_frame f = {.kind = OBX_RPC_RESULT};
    f.u.result.command_id = c->id;
    f.u.result.completed_unix_ms = obx_unix_ms();
    _cleanup_free_ char *json = !result         ? NULL
                                : c->echo_bytes ? TAKE_PTR(c->echo_bytes)
                                                : json_dumps(result, JSON_COMPACT);
    if (result) {
        f.u.result.payload = (uint8_t *)json;
        f.u.result.payload_len = strlen(json);
    } else {
        f.u.result.has_error = true;
        f.u.result.error_code = (char *)(err->code[0] ? err->code : OBX_ERR_EXECUTION_FAILED);
        f.u.result.error_message = (char *)err->message;
    }
    int r = obx_rpc_stream_send(c->stream, &f, false);
    if (r == -EMSGSIZE) {
        /* Refused for this command only, not the stream. */
        f.u.result.has_error = true;
        f.u.result.payload = NULL;
        f.u.result.payload_len = 0;
        f.u.result.error_code = "result_too_large";
        f.u.result.error_message = "the result is larger than the 4 MiB a worker may send; ask "
                                   "for less output";
        r = obx_rpc_stream_send(c->stream, &f, false);
    }
    if (r < 0 && r != -EPIPE)
        obx_warn("cannot send the result of command %s: %s", c->id, strerror(-r));
}

static void on_output(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    struct command *c = userdata;
    struct obx_rpc_frame f = {.kind = OBX_RPC_OUTPUT};
    f.u.output.command_id = c->id;
    f.u.output.stream = stream == OBX_STREAM_STDERR ? OBX_RPC_OUTPUT_STDERR : OBX_RPC_OUTPUT_STDOUT;
    f.u.output.data = (uint8_t *)data;
    f.u.output.data_len = len;
    (void)obx_rpc_stream_send(c->stream, &f, false); /* a slow console loses chunks, not results */
}

/* "pty": a live terminal's output or events, ahead of the data frames (keystrokes echo through
 * here); never dropped: the terminal sends only a window ahead of the console's acks. */
static void on_pty_output(void *userdata, enum obx_stream stream, const char *data, size_t len)
{
    struct command *c = userdata;
    struct obx_rpc_frame f = {.kind = OBX_RPC_PTY_OUTPUT};
    f.u.pty_output.command_id = c->id;
    if (stream == OBX_STREAM_EVENT) {
        f.u.pty_output.event = (uint8_t *)data;
        f.u.pty_output.event_len = len;
    } else {
        f.u.pty_output.data = (uint8_t *)data;
        f.u.pty_output.data_len = len;
    }
    int r = obx_rpc_stream_send(c->stream, &f, true);
    if (r < 0 && r != -EPIPE)
        obx_warn("terminal %s: cannot send its output: %s", c->id, strerror(-r));
}

static void on_log(void *userdata, int level, const char *message)
{
    struct command *c = userdata;
    struct obx_rpc_frame f = {.kind = OBX_RPC_OUTPUT};
    f.u.output.command_id = c->id;
    f.u.output.stream = OBX_RPC_OUTPUT_LOG;
    f.u.output.data = (uint8_t *)message;
    f.u.output.data_len = strlen(message);
    f.u.output.log_level = level;
    (void)obx_rpc_stream_send(c->stream, &f, true);
}

/* "files", a download: the bytes go to the console in chunks, at most the window ahead of what
 * it acknowledged. On the command's thread. */
static int send_file_data(void *userdata, const void *data, size_t len)
{
    struct command *c = userdata;
    struct remote *r = c->r;
    const char *p = data;
    while (len > 0) {
        size_t n = OBX_MIN(len, (size_t)OBX_RPC_FILE_CHUNK_BYTES);
        struct timespec ts = obx_ms_to_timespec(obx_now_ms() + OBX_CALL_STALL_MS);
        pthread_mutex_lock(&r->lock);
        int w = 0;
        while (!c->aborted && c->out_sent - c->out_acked + n > OBX_RPC_FILE_WINDOW_BYTES &&
               w != ETIMEDOUT)
            w = pthread_cond_timedwait(&c->cond, &r->lock, &ts);
        bool go = !c->aborted && w != ETIMEDOUT;
        if (go)
            c->out_sent += n;
        pthread_mutex_unlock(&r->lock);
        if (!go)
            return w == ETIMEDOUT ? -ETIMEDOUT : -ECANCELED;
        struct obx_rpc_frame f = {.kind = OBX_RPC_FILE_CHUNK};
        f.u.chunk = (struct obx_rpc_file_chunk){c->id, (uint8_t *)p, n, false};
        if (obx_rpc_stream_send(c->stream, &f, false) < 0)
            return -EPIPE;
        p += n;
        len -= n;
    }
    return 0;
}

/* "files", an upload: the console's chunks as they come; each taken is acknowledged. */
static ssize_t read_file_data(void *userdata, void *buf, size_t cap)
{
    struct command *c = userdata;
    struct remote *r = c->r;
    struct timespec ts = obx_ms_to_timespec(obx_now_ms() + OBX_CALL_STALL_MS);
    pthread_mutex_lock(&r->lock);
    int w = 0;
    while (!c->aborted && c->in.len == 0 && !c->in_eof && w != ETIMEDOUT)
        w = pthread_cond_timedwait(&c->cond, &r->lock, &ts);
    ssize_t n;
    if (c->in.len > 0) {
        n = (ssize_t)OBX_MIN(cap, c->in.len);
        memcpy(buf, c->in.data, (size_t)n);
        obx_buf_consume(&c->in, (size_t)n);
        c->in_taken += (uint64_t)n;
    } else {
        n = c->in_eof ? 0 : c->aborted ? -ECANCELED : -ETIMEDOUT;
    }
    int64_t taken = (int64_t)c->in_taken;
    pthread_mutex_unlock(&r->lock);
    if (n > 0) {
        struct obx_rpc_frame f = {.kind = OBX_RPC_FILE_ACK};
        f.u.file_ack = (struct obx_rpc_file_ack){c->id, taken};
        (void)obx_rpc_stream_send(c->stream, &f, true);
    }
    return n;
}

static void command_free(struct command *c)
{
    obx_buf_free(&c->in);
    pthread_cond_destroy(&c->cond);
    json_decref(c->payload);
    free(c->echo_bytes);
    obx_call_done(&c->call);
    obx_rpc_stream_unref(c->stream);
    free(c);
}

static void *command_main(void *arg)
{
    struct command *c = arg;
    struct remote *r = c->r;
    struct obx_executor *ex = obx_worker_executor(r->w);
    json_t *result = NULL;
    struct obx_error err = OBX_ERROR_INIT;
    int rc;
    if (obx_call_is_cancelled(&c->call))
        rc = obx_error_set(&err, ECANCELED, OBX_ERR_CANCELED, "the command was canceled");
    else
        rc = ex->exec(ex, c->capability, c->payload, &c->call, &result, &err);
    if (rc < 0 && obx_call_is_cancelled(&c->call) && !err.code[0])
        snprintf(err.code, sizeof(err.code), "%s", OBX_ERR_CANCELED);
    send_result(c, rc < 0 ? NULL : result, &err);
    json_decref(result);

    pthread_mutex_lock(&r->lock);
    for (struct command **pp = &r->commands; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    r->running--;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    command_free(c);
    return NULL;
}

/* A dispatch the worker cannot take is answered at once, as the original does. */
static void refuse(struct obx_rpc_stream *s, const char *id, const char *code, const char *fmt, ...)
    OBX_PRINTF(4, 5);
static void refuse(struct obx_rpc_stream *s, const char *id, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = obx_xvasprintf(fmt, ap);
    va_end(ap);
    struct obx_rpc_frame f = {.kind = OBX_RPC_RESULT};
    f.u.result = (struct obx_rpc_result){.command_id = (char *)id,
                                         .has_error = true,
                                         .error_code = (char *)code,
                                         .error_message = msg,
                                         .completed_unix_ms = obx_unix_ms()};
    (void)obx_rpc_stream_send(s, &f, false);
}

static void on_dispatch(struct remote *r, struct obx_rpc_stream *s, struct obx_rpc_dispatch *d)
{
    if (!d->command_id[0]) {
        refuse(s, "", "invalid_command_id", "command_id is required");
        return;
    }
    char cap[64];
    size_t i = 0;
    const char *p = d->capability;
    while (*p == ' ')
        p++;
    for (; *p && *p != ' ' && i + 1 < sizeof(cap); p++)
        cap[i++] = (char)tolower((unsigned char)*p);
    cap[i] = '\0';
    bool known = false;
    for (size_t k = 0; k < N_CAPS; k++)
        known = known || strcasecmp(cap, cap_names[k]) == 0;
    if (!known) {
        refuse(s, d->command_id, OBX_ERR_UNSUPPORTED, "capability \"%s\" is not supported",
               d->capability);
        return;
    }
    int64_t now = obx_unix_ms();
    if (d->deadline_unix_ms > 0 && d->deadline_unix_ms <= now) {
        refuse(s, d->command_id, OBX_ERR_DEADLINE_EXCEEDED, "command deadline exceeded");
        return;
    }
    struct obx_error perr = OBX_ERROR_INIT;
    json_t *payload = d->payload_len
                          ? obx_json_parse((const char *)d->payload, d->payload_len, &perr)
                          : json_object();
    if (!payload) {
        refuse(s, d->command_id, OBX_ERR_INVALID_PAYLOAD, "payload_json: %s", perr.message);
        return;
    }
    struct command *c = obx_xcalloc(1, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", d->command_id);
    snprintf(c->capability, sizeof(c->capability), "%s", cap);
    c->payload = payload;
    if (strcmp(cap, "echo") == 0 && d->payload_len)
        c->echo_bytes = obx_xstrndup((const char *)d->payload, d->payload_len);
    c->r = r;
    c->stream = obx_rpc_stream_ref(s);
    c->in = (struct obx_buf)OBX_BUF_INIT(OBX_RPC_FILE_WINDOW_BYTES + OBX_RPC_FILE_CHUNK_BYTES);
    obx_cond_init_monotonic(&c->cond);
    obx_call_init(&c->call);
    c->call.account = "console";
    if (d->deadline_unix_ms > 0)
        c->call.deadline = obx_now_ms() + (uint64_t)(d->deadline_unix_ms - now);

    pthread_mutex_lock(&r->lock);
    const char *why = r->stopping                    ? "the worker is stopping"
                      : r->running >= r->max_running ? "the worker is at capacity"
                      : r->stream != s               ? "this stream was replaced"
                                                     : NULL;
    c->output = r->console_output;
    c->pty = r->console_pty;
    /* A live terminal streams both ways: only with "pty". */
    bool pty_refused = !why && strcmp(cap, "terminalpty") == 0 && !c->pty;
    /* A read or write of terminalFiles moves the file over the stream: only with "files". */
    if (!why && strcmp(cap, "terminalfiles") == 0 && r->console_files) {
        const char *action = obx_json_get_str(payload, "action", "");
        if (strcasecmp(action, "read") == 0) {
            c->call.on_data = send_file_data;
            c->call.data_userdata = c;
        } else if (strcasecmp(action, "write") == 0) {
            c->call.read_data = read_file_data;
            c->call.data_userdata = c;
        }
    }
    if (!why && !pty_refused) {
        c->next = r->commands;
        r->commands = c;
        r->running++;
    }
    pthread_mutex_unlock(&r->lock);
    if (why || pty_refused) {
        if (why)
            refuse(s, c->id, OBX_ERR_NO_CAPACITY, "%s", why);
        else
            refuse(s, c->id, OBX_ERR_UNSUPPORTED,
                   "terminalPty needs the \"pty\" extension of the worker protocol, which this "
                   "console did not name");
        command_free(c);
        return;
    }
    if (c->output) {
        c->call.on_output = on_output;
        c->call.output_userdata = c;
        c->call.on_log = on_log;
        c->call.log_userdata = c;
    }
    if (strcmp(cap, "terminalpty") == 0) {
        c->call.on_output = on_pty_output;
        c->call.output_userdata = c;
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int tr = pthread_create(&t, &attr, command_main, c);
    pthread_attr_destroy(&attr);
    if (tr != 0) {
        pthread_mutex_lock(&r->lock);
        r->commands = c->next;
        r->running--;
        pthread_mutex_unlock(&r->lock);
        refuse(s, c->id, OBX_ERR_NO_CAPACITY, "cannot start a thread for the command");
        command_free(c);
    }
}

/* "files": a chunk of an upload, or the console's acknowledgement of a download's bytes. A
 * chunk for a command that ended already is dropped; one beyond the window ends the stream. */
static void on_file_frame(struct remote *r, struct obx_rpc_stream *s, struct obx_rpc_frame *f)
{
    bool chunk = f->kind == OBX_RPC_FILE_CHUNK_TO_WORKER;
    const char *id = chunk ? f->u.chunk.command_id : f->u.file_ack.command_id;
    bool overrun = false;
    pthread_mutex_lock(&r->lock);
    for (struct command *c = r->commands; c; c = c->next) {
        if (strcmp(c->id, id) != 0 || c->stream != s)
            continue;
        if (chunk) {
            overrun = f->u.chunk.data_len > OBX_RPC_FILE_CHUNK_BYTES ||
                      obx_buf_append(&c->in, f->u.chunk.data, f->u.chunk.data_len) < 0;
            c->in_eof = c->in_eof || f->u.chunk.eof;
        } else if (f->u.file_ack.received > (int64_t)c->out_acked) {
            c->out_acked = (uint64_t)OBX_MIN(f->u.file_ack.received, (int64_t)c->out_sent);
        }
        pthread_cond_broadcast(&c->cond);
        break;
    }
    pthread_mutex_unlock(&r->lock);
    if (overrun)
        obx_rpc_stream_close(s, OBX_RPC_INVALID_ARGUMENT,
                             "a file chunk went beyond the window or the chunk size");
}

/* "pty": what a person typed into a live terminal, its new size, what the console passed on. */
static void on_pty_input(struct remote *r, struct obx_rpc_stream *s, struct obx_rpc_pty_input *in)
{
    pthread_mutex_lock(&r->lock);
    for (struct command *c = r->commands; c; c = c->next) {
        if (strcmp(c->id, in->command_id) != 0 || c->stream != s)
            continue;
        if (in->data_len > 0)
            (void)obx_call_input(&c->call, &(struct obx_call_input){.kind = OBX_CALL_INPUT_DATA,
                                                                    .data = in->data,
                                                                    .len = in->data_len});
        if (in->cols > 0 && in->rows > 0)
            (void)obx_call_input(&c->call, &(struct obx_call_input){.kind = OBX_CALL_INPUT_RESIZE,
                                                                    .cols = (unsigned)in->cols,
                                                                    .rows = (unsigned)in->rows});
        if (in->acked > 0)
            (void)obx_call_input(&c->call, &(struct obx_call_input){.kind = OBX_CALL_INPUT_ACK,
                                                                    .acked = (uint64_t)in->acked});
        break;
    }
    pthread_mutex_unlock(&r->lock);
}

static void on_cancel(struct remote *r, struct obx_rpc_cancel *cn)
{
    pthread_mutex_lock(&r->lock);
    for (struct command *c = r->commands; c; c = c->next)
        if (strcmp(c->id, cn->command_id) == 0) {
            obx_debug("command %s canceled by the console: %s", c->id, cn->reason);
            c->aborted = true;
            pthread_cond_broadcast(&c->cond);
            obx_call_cancel(&c->call);
            break;
        }
    pthread_mutex_unlock(&r->lock);
}

/* ---- the stream ---- */

static void on_frame(void *userdata, struct obx_rpc_stream *s, struct obx_rpc_frame *f)
{
    struct remote *r = userdata;
    switch (f->kind) {
    case OBX_RPC_ACK:
        pthread_mutex_lock(&r->lock);
        if (r->stream == s && !r->acked && f->u.ack.session_id[0]) {
            r->acked = true;
            snprintf(r->session_id, sizeof(r->session_id), "%s", f->u.ack.session_id);
            if (f->u.ack.heartbeat_interval_sec > 0)
                r->interval_sec = f->u.ack.heartbeat_interval_sec;
            r->console_output = obx_rpc_has_extension(f->u.ack.extensions, f->u.ack.n_extensions,
                                                      OBX_RPC_EXT_OUTPUT);
            r->console_files = obx_rpc_has_extension(f->u.ack.extensions, f->u.ack.n_extensions,
                                                     OBX_RPC_EXT_FILES);
            r->console_drain = obx_rpc_has_extension(f->u.ack.extensions, f->u.ack.n_extensions,
                                                     OBX_RPC_EXT_DRAIN);
            r->console_pty =
                obx_rpc_has_extension(f->u.ack.extensions, f->u.ack.n_extensions, OBX_RPC_EXT_PTY);
            r->last_ack = obx_now_ms();
            pthread_cond_broadcast(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);
        break;
    case OBX_RPC_HEARTBEAT_ACK:
        pthread_mutex_lock(&r->lock);
        if (r->stream == s) {
            if (f->u.heartbeat_ack.heartbeat_interval_sec > 0)
                r->interval_sec = f->u.heartbeat_ack.heartbeat_interval_sec;
            r->last_ack = obx_now_ms();
            pthread_cond_broadcast(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);
        break;
    case OBX_RPC_DISPATCH:
        on_dispatch(r, s, &f->u.dispatch);
        break;
    case OBX_RPC_CANCEL:
        on_cancel(r, &f->u.cancel);
        break;
    case OBX_RPC_PTY_INPUT:
        on_pty_input(r, s, &f->u.pty_input);
        break;
    case OBX_RPC_FILE_CHUNK_TO_WORKER:
    case OBX_RPC_FILE_ACK_TO_WORKER:
        on_file_frame(r, s, f);
        break;
    default:
        obx_debug("ignoring a frame of a kind this worker does not know");
        break;
    }
}

static void on_closed(void *userdata, struct obx_rpc_stream *s, int status, const char *message)
{
    struct remote *r = userdata;
    pthread_mutex_lock(&r->lock);
    if (r->stream == s) {
        r->closed = true;
        r->close_status = status;
        snprintf(r->close_msg, sizeof(r->close_msg), "%s", message);
        pthread_cond_broadcast(&r->cond);
    }
    /* The console failed these calls when the stream ended; their processes stop now. */
    for (struct command *c = r->commands; c; c = c->next)
        if (c->stream == s) {
            c->aborted = true;
            pthread_cond_broadcast(&c->cond);
            obx_call_cancel(&c->call);
        }
    pthread_mutex_unlock(&r->lock);
}

static const struct obx_rpc_stream_ops stream_ops = {on_frame, on_closed, NULL};

static void labels_parse(const char *spec, struct obx_rpc_label *out, size_t max, size_t *ret_n,
                         char **storage)
{
    *ret_n = 0;
    *storage = obx_xstrdup(spec ? spec : "");
    char *save = NULL;
    for (char *e = strtok_r(*storage, ",", &save); e && *ret_n < max;
         e = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(e, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *k = e, *v = eq + 1;
        while (*k == ' ')
            k++;
        for (char *t = k + strlen(k); t > k && t[-1] == ' ';)
            *--t = '\0';
        while (*v == ' ')
            v++;
        for (char *t = v + strlen(v); t > v && t[-1] == ' ';)
            *--t = '\0';
        if (!*k)
            continue;
        out[*ret_n].key = k;
        out[(*ret_n)++].value = v;
    }
}

static int send_hello(struct remote *r, struct obx_rpc_stream *s)
{
    const struct obx_worker_remote_config *cfg = r->cfg;
    struct obx_rpc_frame f = {.kind = OBX_RPC_HELLO};
    struct obx_rpc_hello *h = &f.u.hello;
    const char *kind = obx_worker_runtime(r->w)->name;
    char name[160];
    if (cfg->node_name)
        snprintf(name, sizeof(name), "%s", cfg->node_name);
    else
        snprintf(name, sizeof(name), "worker-%s-%.8s", kind, cfg->node_id);
    h->node_id = cfg->node_id;
    h->node_name = name;
    h->executor_kind = (char *)kind;
    h->version = cfg->version ? cfg->version : OBX_VERSION;
    h->worker_secret = cfg->secret;
    struct obx_rpc_label labels[64];
    _cleanup_free_ char *storage = NULL;
    labels_parse(cfg->labels, labels, OBX_ARRAY_SIZE(labels), &h->n_labels, &storage);
    h->labels = labels;
    struct obx_rpc_capability caps[N_CAPS];
    for (size_t i = 0; i < N_CAPS; i++)
        caps[i] =
            (struct obx_rpc_capability){(char *)cap_names[i], (int32_t)r->w->cfg.max_inflight};
    h->capabilities = caps;
    h->n_capabilities = N_CAPS;
    h->has_terminal_capacity = true;
    h->max_active_sessions = (int32_t)r->w->cfg.max_sessions;
    h->active_session_count = (int32_t)obx_worker_sessions_count(r->w->sessions);
    char *exts[] = {OBX_RPC_EXT_CANCEL, OBX_RPC_EXT_OUTPUT, OBX_RPC_EXT_RECOVERY,
                    OBX_RPC_EXT_FILES,  OBX_RPC_EXT_DRAIN,  OBX_RPC_EXT_PTY};
    h->extensions = exts;
    h->n_extensions = OBX_ARRAY_SIZE(exts);
    /* Recovery: the sessions this worker still has, so the console keeps routing them here. */
    _cleanup_free_ struct obx_worker_session_info *info =
        obx_xcalloc(MAX_LIVE_SESSIONS, sizeof(*info));
    size_t n = obx_worker_sessions_list(r->w->sessions, info, MAX_LIVE_SESSIONS);
    _cleanup_free_ struct obx_rpc_live_session *live = obx_xcalloc(n + 1, sizeof(*live));
    for (size_t i = 0; i < n; i++)
        live[i] =
            (struct obx_rpc_live_session){info[i].id, info[i].lease_until_unix_ms, info[i].busy};
    h->live_sessions = live;
    h->n_live_sessions = n;
    return obx_rpc_stream_send(s, &f, true);
}

static int send_heartbeat(struct remote *r, struct obx_rpc_stream *s)
{
    struct obx_rpc_frame f = {.kind = OBX_RPC_HEARTBEAT};
    f.u.heartbeat.node_id = r->cfg->node_id;
    f.u.heartbeat.session_id = r->session_id;
    f.u.heartbeat.active_session_count = (int32_t)obx_worker_sessions_count(r->w->sessions);
    f.u.heartbeat.draining = r->stopping && r->console_drain;
    return obx_rpc_stream_send(s, &f, true);
}

/* Waits on the remote's condition until pred() holds, stop is asked, or the monotonic deadline.
 * With the lock held. */
static void wait_until(struct remote *r, uint64_t deadline, bool (*pred)(struct remote *))
{
    while (!pred(r) && !r->stopping && obx_now_ms() < deadline) {
        struct timespec ts = obx_ms_to_timespec(deadline);
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
}

static bool acked_or_closed(struct remote *r)
{
    return r->acked || r->closed;
}

static bool closed(struct remote *r)
{
    return r->closed;
}

static uint64_t jittered_ms(int interval_sec, int pct)
{
    uint64_t base = (uint64_t)interval_sec * 1000;
    uint64_t spread = base * (uint64_t)pct / 100;
    uint64_t rnd = 0;
    obx_random_bytes(&rnd, sizeof(rnd));
    uint64_t v = base - spread + (spread ? rnd % (2 * spread + 1) : 0);
    return OBX_MAX(v, 1000u);
}

/* One session with the console: hello, ack, heartbeats until the stream ends or stop. Returns
 * true when the console acknowledged it (the backoff then starts over). */
static bool run_session(struct remote *r)
{
    const struct obx_worker_remote_config *cfg = r->cfg;
    struct obx_error err = OBX_ERROR_INIT;
    struct obx_rpc_stream *s = NULL;
    if (obx_rpc_client_open(r->client, &stream_ops, r, &s, &err) < 0) {
        obx_warn("%s", err.message);
        return false;
    }
    pthread_mutex_lock(&r->lock);
    r->stream = s;
    r->acked = r->closed = r->console_output = r->console_files = r->console_drain = false;
    r->console_pty = false;
    r->session_id[0] = '\0';
    r->interval_sec = cfg->heartbeat_interval_sec;
    pthread_mutex_unlock(&r->lock);

    bool acked = false;
    if (send_hello(r, s) < 0) {
        obx_warn("cannot send the hello to %s", cfg->target);
    } else {
        pthread_mutex_lock(&r->lock);
        wait_until(r, obx_now_ms() + (uint64_t)cfg->call_timeout_sec * 1000, acked_or_closed);
        acked = r->acked;
        bool was_closed = r->closed;
        char msg[320];
        snprintf(msg, sizeof(msg), "%s: %s", obx_rpc_status_name(r->close_status), r->close_msg);
        pthread_mutex_unlock(&r->lock);
        if (!acked && was_closed)
            obx_warn("the console at %s refused or did not answer: %s", cfg->target, msg);
        else if (!acked && !r->stopping)
            obx_warn("no answer to the hello from %s within %d s", cfg->target,
                     cfg->call_timeout_sec);
    }
    if (acked) {
        obx_info("worker %s: connected to the console at %s (session %s)", cfg->node_id,
                 cfg->target, r->session_id);
        unsigned misses = 0;
        pthread_mutex_lock(&r->lock);
        while (!r->closed && !r->stopping) {
            uint64_t next = obx_now_ms() + jittered_ms(r->interval_sec, cfg->jitter_pct);
            wait_until(r, next, closed);
            if (r->closed || r->stopping)
                break;
            uint64_t sent = obx_now_ms();
            pthread_mutex_unlock(&r->lock);
            (void)send_heartbeat(r, s);
            pthread_mutex_lock(&r->lock);
            uint64_t until = sent + (uint64_t)cfg->call_timeout_sec * 1000;
            while (r->last_ack < sent && !r->closed && !r->stopping && obx_now_ms() < until) {
                struct timespec ts = obx_ms_to_timespec(until);
                pthread_cond_timedwait(&r->cond, &r->lock, &ts);
            }
            if (r->closed || r->stopping)
                break;
            if (r->last_ack >= sent) {
                misses = 0;
            } else if (++misses >= 2) {
                obx_warn("two heartbeats in a row had no answer from %s; reconnecting",
                         cfg->target);
                break;
            }
        }
        bool was_closed = r->closed;
        char msg[320];
        snprintf(msg, sizeof(msg), "%s: %s", obx_rpc_status_name(r->close_status), r->close_msg);
        pthread_mutex_unlock(&r->lock);
        if (was_closed && !r->stopping)
            obx_warn("the stream to %s ended (%s); reconnecting", cfg->target, msg);
    }
    if (r->stopping)
        return acked;
    obx_rpc_stream_close(s, OBX_RPC_CANCELLED, "the worker reconnects");
    pthread_mutex_lock(&r->lock);
    wait_until(r, obx_now_ms() + 2000, closed);
    r->stream = NULL;
    pthread_mutex_unlock(&r->lock);
    obx_rpc_stream_unref(s);
    return acked;
}

static bool never(struct remote *r)
{
    (void)r;
    return false;
}

/* Stopping: refuse new work (stopping is set), let what runs finish within the drain time,
 * cancel the rest, wait for their results to go out, then end the stream. */
/* Waits until nothing runs or the deadline, heartbeating all along: the console would take a
 * silent worker for lost and fail what it still runs. With the lock held. */
static void wait_drained(struct remote *r, uint64_t deadline)
{
    uint64_t next_beat = obx_now_ms();
    while (r->running > 0 && obx_now_ms() < deadline) {
        if (obx_now_ms() >= next_beat && r->stream && !r->closed) {
            struct obx_rpc_stream *s = obx_rpc_stream_ref(r->stream);
            pthread_mutex_unlock(&r->lock);
            (void)send_heartbeat(r, s);
            obx_rpc_stream_unref(s);
            pthread_mutex_lock(&r->lock);
            next_beat = obx_now_ms() + jittered_ms(r->interval_sec, r->cfg->jitter_pct);
        }
        struct timespec ts = obx_ms_to_timespec(OBX_MIN(deadline, next_beat));
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
}

static void drain(struct remote *r)
{
    pthread_mutex_lock(&r->lock);
    /* A live terminal has no end of its own to wait for. */
    for (struct command *c = r->commands; c; c = c->next)
        if (strcmp(c->capability, "terminalpty") == 0)
            obx_call_cancel(&c->call);
    if (r->running > 0)
        obx_info("stopping; %u command(s) running get %d s to finish", r->running,
                 r->cfg->drain_timeout_sec);
    /* The first heartbeat goes out at once: with "drain" it tells the console to send new work
     * elsewhere. */
    wait_drained(r, obx_now_ms() + (uint64_t)r->cfg->drain_timeout_sec * 1000);
    if (r->running > 0) {
        obx_warn("canceling %u command(s) still running", r->running);
        for (struct command *c = r->commands; c; c = c->next)
            obx_call_cancel(&c->call);
    }
    wait_drained(r, obx_now_ms() + 10000);
    struct obx_rpc_stream *s = TAKE_PTR(r->stream);
    pthread_mutex_unlock(&r->lock);
    if (s) {
        /* Gracefully: a result queued a moment ago must reach the console, not be cut off. */
        obx_rpc_stream_end(s, STREAM_END_MS, OBX_RPC_CANCELLED, "the worker is stopping");
        obx_rpc_stream_unref(s);
    }
}

int obx_worker_remote_run(struct obx_worker *w, const struct obx_worker_remote_config *cfg,
                          struct obx_error *err)
{
    struct remote r = {.w = w, .cfg = cfg};
    pthread_mutex_init(&r.lock, NULL);
    obx_cond_init_monotonic(&r.cond);
    r.max_running = N_CAPS * OBX_MAX(w->cfg.max_inflight, 1u);
    struct obx_rpc_client_config cc = {.target = cfg->target,
                                       .insecure = cfg->insecure,
                                       .ca_file = cfg->ca_file,
                                       .cert_file = cfg->cert_file,
                                       .key_file = cfg->key_file};
    int rc = obx_rpc_client_new(&cc, &r.client, err);
    if (rc < 0) {
        pthread_mutex_destroy(&r.lock);
        pthread_cond_destroy(&r.cond);
        return rc;
    }
    pthread_mutex_lock(&stop_lock);
    running_remote = &r;
    r.stopping = stop_asked;
    pthread_mutex_unlock(&stop_lock);
    obx_info("worker %s: runtime %s; connecting to %s (%s)", cfg->node_id,
             obx_worker_runtime(w)->name, cfg->target,
             cfg->insecure    ? "plaintext"
             : cfg->cert_file ? "TLS, client certificate"
                              : "TLS");

    uint64_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        if (run_session(&r))
            backoff = BACKOFF_MIN_MS;
        pthread_mutex_lock(&r.lock);
        if (!r.stopping) {
            obx_debug("next attempt in %llu ms", (unsigned long long)backoff);
            wait_until(&r, obx_now_ms() + backoff, never);
        }
        bool stop = r.stopping;
        pthread_mutex_unlock(&r.lock);
        if (stop)
            break;
        backoff = OBX_MIN(backoff * 2, (uint64_t)BACKOFF_MAX_MS);
    }
    drain(&r);
    pthread_mutex_lock(&stop_lock);
    running_remote = NULL;
    pthread_mutex_unlock(&stop_lock);
    obx_rpc_client_free(r.client);
    pthread_mutex_destroy(&r.lock);
    pthread_cond_destroy(&r.cond);
    return 0;
}
