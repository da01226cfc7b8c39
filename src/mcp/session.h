/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The server's own types, shared by server.c (sessions, methods, sending) and call.c (tools/call
 * threads, progress, logging from a call). The locking rules are in server.c's header comment.
 */
#ifndef OBX_MCP_SESSION_H
#define OBX_MCP_SESSION_H

#include <stdarg.h>

#include "mcp-internal.h"

struct obx_mcp_tasks;

struct obx_mcp_server {
    char *name;
    char *version;
    char *account;
    struct obx_executor *executor;
    size_t page_size;
    unsigned max_inflight;
    struct obx_mcp_catalog catalog;
    int64_t task_after_ms;                           /* OBX_MCP_TASKS_OFF, or milliseconds */
    const struct obx_mcp_task_backend *task_backend; /* NULL: tasks in memory */
    struct obx_mcp_tasks *tasks;                     /* the in-memory table and subscriptions */
    const char *cache_scope;
};

/* Where the messages one incoming message causes go. The session's default sink wraps its send()
 * and is never closed; a transport's sink is closed when its last holder lets go: the handling of
 * the message, and each call it started. */
struct sink {
    struct obx_mcp_sink out;
    bool is_default;
    unsigned pending; /* under send_lock */
};

/* A JSON-RPC batch being answered: responses collect here until the last pending entry is done. */
struct batch {
    json_t *responses;
    struct sink *sink;
    unsigned pending; /* under send_lock */
};

struct obx_mcp_call {
    struct obx_mcp_server *srv;
    struct obx_mcp_session *s; /* NULL for a task's execution, which answers nobody */
    struct obx_mcp_call *next; /* in s->inflight or s->finished, under s->lock */
    pthread_t thread;
    json_t *id;
    const struct obx_mcp_tool_entry *tool;
    json_t *payload;              /* the executor payload; the validated arguments for fixtures */
    json_t *progress_token;       /* NULL: the client asked for no progress */
    uint64_t timeout_ms;          /* the tool's time limit, 0 for none */
    enum obx_mcp_version version; /* the request's */
    bool modern;
    int log_level; /* modern: the request's level, -1 none; legacy: the session's counts */
    bool as_task;  /* the client declared the tasks extension and the tool allows it */
    int rpc_code;  /* set by obx_mcp_call_fail(): answer with this JSON-RPC error */
    char rpc_message[256];
    /* A task's execution: where its progress and log lines go while the call that started it
     * still waits (NULL: nowhere). */
    const struct obx_mcp_task_watch *watch;
    struct batch *batch; /* NULL unless the request came in a batch */
    struct sink *sink;   /* held from the start until the response; then NULL */
    struct obx_call call;

    /* under s->send_lock */
    bool responded; /* the response went out (or into the batch): no more progress */
    bool dropped;   /* cancelled by the client: no response at all */
    uint64_t progress_bytes;
    char carry[2][4]; /* an incomplete UTF-8 sequence at the end of the last chunk, per stream */
    size_t carry_len[2];
};

struct obx_mcp_session {
    struct obx_mcp_server *srv;
    void (*send)(void *userdata, const char *json); /* may be NULL */
    void *userdata;
    char *account;
    struct sink default_sink;

    pthread_mutex_t lock;
    pthread_cond_t idle;
    bool initialized;
    struct obx_mcp_call *inflight;
    struct obx_mcp_call *finished;
    unsigned n_inflight;

    int version;   /* enum obx_mcp_version; atomic */
    int log_level; /* enum obx_mcp_log_level, -1 until logging/setLevel; atomic */

    pthread_mutex_t send_lock;
    bool muted;
};

static inline enum obx_mcp_version obx_mcp_session_version(struct obx_mcp_session *s)
{
    return (enum obx_mcp_version)__atomic_load_n(&s->version, __ATOMIC_ACQUIRE);
}

/* ---- server.c ---- */

/* Sends msg (borrowed) to k; s->send_lock held. response: msg answers a request (or is a batch of
 * answers), as opposed to a notification. */
void obx_mcp_send_locked(struct obx_mcp_session *s, struct sink *k, const json_t *msg,
                         bool response);
/* Sends msg (stolen) to k. */
void obx_mcp_session_send(struct obx_mcp_session *s, struct sink *k, json_t *msg, bool response);
/* Drops one hold on k and closes it with the last; s->send_lock held. */
void obx_mcp_sink_release_locked(struct sink *k);
/* Drops one pending entry of b and sends the batch with the last; s->send_lock held. */
void obx_mcp_batch_release_locked(struct obx_mcp_session *s, struct batch *b);
/* The notifications/message for the text, or NULL when level is below min (-1: none). */
json_t *obx_mcp_log_message(int min, enum obx_mcp_log_level level, const char *fmt, va_list ap)
    OBX_PRINTF(3, 0);

/* ---- call.c ---- */

/* A tools/call about to start: payload stolen, id and progress_token (may be NULL) borrowed;
 * batch and sink are where its response goes. s NULL: a task's execution (account owns it). */
struct obx_mcp_call *obx_mcp_call_new(struct obx_mcp_server *srv, struct obx_mcp_session *s,
                                      const char *account, json_t *id,
                                      const struct obx_mcp_tool_entry *tool, json_t *payload,
                                      uint64_t timeout_ms, json_t *progress_token,
                                      struct batch *batch, struct sink *sink);
/* The thread of one tools/call: runs it, answers, and moves it to s->finished. */
void *obx_mcp_call_main(void *userdata);
/* Runs the tool (a fixture, or the executor and the tool's result shaping): the CallToolResult,
 * or NULL after obx_mcp_call_fail(). */
json_t *obx_mcp_call_run(struct obx_mcp_call *c);
void obx_mcp_call_free(struct obx_mcp_call *c);
/* Joins the threads of finished calls and frees them. */
void obx_mcp_reap(struct obx_mcp_session *s);

/* ---- tasks.c ---- */

struct obx_mcp_tasks *obx_mcp_tasks_new(struct obx_mcp_server *srv);
/* Cancels every task in memory and waits for their threads. */
void obx_mcp_tasks_free(struct obx_mcp_tasks *t);
/* Starts a task for the tool (payload borrowed): in memory for fixtures or without a backend,
 * else in the backend. */
int obx_mcp_task_start(struct obx_mcp_server *srv, const char *account,
                       const struct obx_mcp_tool_entry *tool, json_t *payload, uint64_t timeout_ms,
                       const struct obx_mcp_task_watch *watch, char id[64], struct obx_error *err);
bool obx_mcp_task_wait(struct obx_mcp_server *srv, const char *id, uint64_t ms);
/* account NULL: any owner (the server's own lookups). -ENOENT when unknown. */
int obx_mcp_task_get(struct obx_mcp_server *srv, const char *account, const char *id,
                     struct obx_mcp_task_info *ret);
int obx_mcp_task_cancel(struct obx_mcp_server *srv, const char *account, const char *id);
/* The Task object of the extension; detailed adds result or error (DetailedTask). */
json_t *obx_mcp_task_json(struct obx_mcp_server *srv, const char *id,
                          struct obx_mcp_task_info *info, bool detailed);
/* The CallToolResult of a completed task. */
json_t *obx_mcp_task_tool_result(struct obx_mcp_server *srv, struct obx_mcp_task_info *info);
/* A subscription: notifications/tasks for task_ids go to k (held) until it ends. */
void obx_mcp_listen_add(struct obx_mcp_server *srv, struct obx_mcp_session *s, struct sink *k,
                        json_t *id, json_t *task_ids);
/* Ends the session's subscriptions (id NULL: all); returns how many ended. */
unsigned obx_mcp_listen_end(struct obx_mcp_server *srv, struct obx_mcp_session *s,
                            const json_t *id);

#endif
