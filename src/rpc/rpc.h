/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker protocol (proto/onlyboxes/registry/v1/registry.proto) for the rest of the program:
 * its frames as plain C structs, and one bidirectional Connect stream over gRPC, as the console
 * serves it (obx_rpc_server) or a worker opens it (obx_rpc_client). gRPC's C core and protobuf-c
 * stay inside src/rpc/; nothing else includes their headers.
 *
 * Threads: each server and each client runs one completion-queue thread of its own. Frames
 * arrive on it through on_frame(), which must not block; obx_rpc_stream_send() and
 * obx_rpc_stream_close() may be called from any thread.
 */
#ifndef OBX_RPC_RPC_H
#define OBX_RPC_RPC_H

#include "common/error.h"

#define OBX_RPC_MAX_MESSAGE_BYTES (4u << 20) /* gRPC's default, as the original uses it */
#define OBX_RPC_METHOD "/onlyboxes.registry.v1.WorkerRegistryService/Connect"

/* Extension names (proto comments say what each adds). */
#define OBX_RPC_EXT_CANCEL "cancel"
#define OBX_RPC_EXT_OUTPUT "output"
#define OBX_RPC_EXT_RECOVERY "session-recovery"
#define OBX_RPC_EXT_FILES "files"
#define OBX_RPC_EXT_DRAIN "drain"
#define OBX_RPC_EXT_PTY "pty"
/* "files": the largest chunk, and the bytes a sender may have unacknowledged. */
#define OBX_RPC_FILE_CHUNK_BYTES (256u << 10)
#define OBX_RPC_FILE_WINDOW_BYTES (4u << 20)

/* gRPC status codes used here (the numbers are gRPC's). */
enum obx_rpc_status {
    OBX_RPC_OK = 0,
    OBX_RPC_CANCELLED = 1,
    OBX_RPC_UNKNOWN = 2,
    OBX_RPC_INVALID_ARGUMENT = 3,
    OBX_RPC_DEADLINE_EXCEEDED = 4,
    OBX_RPC_NOT_FOUND = 5,
    OBX_RPC_PERMISSION_DENIED = 7,
    OBX_RPC_RESOURCE_EXHAUSTED = 8,
    OBX_RPC_FAILED_PRECONDITION = 9,
    OBX_RPC_UNIMPLEMENTED = 12,
    OBX_RPC_INTERNAL = 13,
    OBX_RPC_UNAVAILABLE = 14,
    OBX_RPC_UNAUTHENTICATED = 16,
};

const char *obx_rpc_status_name(int code);

/* ---- Frames. Strings are NUL-terminated copies owned by the frame; never NULL once decoded
 * ("" for an absent field). Byte fields are owned buffers with a length (NULL when empty). */

struct obx_rpc_label {
    char *key, *value;
};

struct obx_rpc_capability {
    char *name;
    int32_t max_inflight;
};

struct obx_rpc_live_session {
    char *session_id;
    int64_t lease_expires_unix_ms;
    bool busy;
};

struct obx_rpc_hello {
    char *node_id, *node_name, *executor_kind, *version, *worker_secret;
    struct obx_rpc_label *labels;
    size_t n_labels;
    struct obx_rpc_capability *capabilities;
    size_t n_capabilities;
    bool has_terminal_capacity;
    int32_t max_active_sessions, active_session_count;
    char **extensions;
    size_t n_extensions;
    struct obx_rpc_live_session *live_sessions;
    size_t n_live_sessions;
};

struct obx_rpc_heartbeat {
    char *node_id, *session_id;
    int32_t active_session_count;
    bool draining; /* extension "drain" */
};

struct obx_rpc_result {
    char *command_id;
    bool has_error;
    char *error_code, *error_message;
    uint8_t *payload;
    size_t payload_len;
    int64_t completed_unix_ms;
};

enum obx_rpc_output_stream {
    OBX_RPC_OUTPUT_STDOUT = 1,
    OBX_RPC_OUTPUT_STDERR = 2,
    OBX_RPC_OUTPUT_LOG = 3,
};

struct obx_rpc_output {
    char *command_id;
    int32_t stream;
    uint8_t *data;
    size_t data_len;
    int32_t log_level;
};

struct obx_rpc_ack {
    char *session_id;
    int32_t heartbeat_interval_sec;
    char **extensions;
    size_t n_extensions;
};

struct obx_rpc_heartbeat_ack {
    int32_t heartbeat_interval_sec;
};

struct obx_rpc_dispatch {
    char *command_id, *capability;
    uint8_t *payload;
    size_t payload_len;
    int64_t deadline_unix_ms;
};

struct obx_rpc_cancel {
    char *command_id, *reason;
};

struct obx_rpc_file_chunk {
    char *command_id;
    uint8_t *data;
    size_t data_len;
    bool eof;
};

struct obx_rpc_file_ack {
    char *command_id;
    int64_t received;
};

/* "pty": a live terminal's output, or one event about it (JSON; the other one NULL). */
struct obx_rpc_pty_output {
    char *command_id;
    uint8_t *data;
    size_t data_len;
    uint8_t *event;
    size_t event_len;
};

/* "pty": typed bytes, a new size (cols and rows > 0) and the output passed on so far (acked > 0),
 * any of them. */
struct obx_rpc_pty_input {
    char *command_id;
    uint8_t *data;
    size_t data_len;
    int32_t cols, rows;
    int64_t acked;
};

enum obx_rpc_kind {
    OBX_RPC_NONE = 0, /* a frame whose payload is not set, or one this side does not know */
    /* worker -> console (ConnectRequest) */
    OBX_RPC_HELLO,
    OBX_RPC_HEARTBEAT,
    OBX_RPC_RESULT,
    OBX_RPC_OUTPUT,
    OBX_RPC_FILE_CHUNK, /* a download's bytes */
    OBX_RPC_FILE_ACK,   /* what the worker took of an upload */
    OBX_RPC_PTY_OUTPUT, /* a live terminal's output or events */
    /* console -> worker (ConnectResponse) */
    OBX_RPC_ACK,
    OBX_RPC_HEARTBEAT_ACK,
    OBX_RPC_DISPATCH,
    OBX_RPC_CANCEL,
    OBX_RPC_FILE_CHUNK_TO_WORKER, /* an upload's bytes */
    OBX_RPC_FILE_ACK_TO_WORKER,   /* what the console took of a download */
    OBX_RPC_PTY_INPUT,            /* a live terminal's input, size and acknowledgements */
};

struct obx_rpc_frame {
    enum obx_rpc_kind kind;
    union {
        struct obx_rpc_hello hello;
        struct obx_rpc_heartbeat heartbeat;
        struct obx_rpc_result result;
        struct obx_rpc_output output;
        struct obx_rpc_ack ack;
        struct obx_rpc_heartbeat_ack heartbeat_ack;
        struct obx_rpc_dispatch dispatch;
        struct obx_rpc_cancel cancel;
        struct obx_rpc_file_chunk chunk;  /* both FILE_CHUNK kinds */
        struct obx_rpc_file_ack file_ack; /* both FILE_ACK kinds */
        struct obx_rpc_pty_output pty_output;
        struct obx_rpc_pty_input pty_input;
    } u;
};

/* Frees what a decoded frame owns and zeroes it. */
void obx_rpc_frame_done(struct obx_rpc_frame *f);

/* Decodes a ConnectRequest (worker -> console; to_console) or a ConnectResponse. A message that
 * is not valid protobuf is -EBADMSG; one whose payload is unset or unknown decodes as
 * OBX_RPC_NONE. Strings that are not valid UTF-8 are -EBADMSG too (proto3 requires UTF-8). */
int obx_rpc_decode(bool to_console, const uint8_t *buf, size_t len, struct obx_rpc_frame *ret);

/* Encodes f (ConnectRequest for worker -> console kinds, ConnectResponse otherwise) into a
 * malloc'd buffer. NULL strings encode as empty. */
int obx_rpc_encode(const struct obx_rpc_frame *f, uint8_t **ret, size_t *ret_len);

bool obx_rpc_has_extension(char *const *list, size_t n, const char *name);

/* ---- Streams ---- */

struct obx_rpc_stream;

struct obx_rpc_stream_ops {
    /* A decoded frame (borrowed for the call), on the rpc thread. Must not block. */
    void (*on_frame)(void *userdata, struct obx_rpc_stream *s, struct obx_rpc_frame *f);
    /* Once, when the stream ended: the gRPC status it ended with and why. After it, no more
     * frames come; sends fail with -EPIPE. On the rpc thread. */
    void (*on_closed)(void *userdata, struct obx_rpc_stream *s, int status, const char *message);
    /* Optional, server side: the client sent its last frame (half-close). Without it the
     * server ends the stream with OK. */
    void (*on_eof)(void *userdata, struct obx_rpc_stream *s);
};

struct obx_rpc_stream *obx_rpc_stream_ref(struct obx_rpc_stream *s);
void obx_rpc_stream_unref(struct obx_rpc_stream *s);

/* Server side: sets who receives the stream's frames. Call from on_stream(); frames are not
 * read before. */
void obx_rpc_stream_set_ops(struct obx_rpc_stream *s, const struct obx_rpc_stream_ops *ops,
                            void *userdata);

/* Queues a frame; any thread. Control frames (acks, cancels, heartbeats) go before data frames
 * (dispatches, results). Output frames are dropped, with -ENOBUFS, once more than the queue's
 * byte budget waits; other frames are always queued. A frame whose encoding exceeds
 * OBX_RPC_MAX_MESSAGE_BYTES is refused with -EMSGSIZE. -EPIPE once the stream closed. */
int obx_rpc_stream_send(struct obx_rpc_stream *s, const struct obx_rpc_frame *f, bool control);

/* Ends the stream: the server sends code and message as its status; the client cancels the
 * call. on_closed() follows. Any thread; later calls do nothing. */
void obx_rpc_stream_close(struct obx_rpc_stream *s, int code, const char *message);

/* Client: ends the stream gracefully, for a worker that stops. Waits until every queued frame
 * went out, says it sends no more (a half-close; the console then ends the stream with OK) and
 * waits for that end; whatever is not done within timeout_ms is cut as obx_rpc_stream_close()
 * with code and message does. Blocks; not from a completion-queue thread. */
void obx_rpc_stream_end(struct obx_rpc_stream *s, int timeout_ms, int code, const char *message);

/* The peer's address as gRPC reports it ("ipv4:127.0.0.1:40112"). */
const char *obx_rpc_stream_peer(const struct obx_rpc_stream *s);

/* ---- Server (the console) ---- */

struct obx_rpc_server_config {
    const char *host; /* as obx_net_parse_hostport(): "" = every interface */
    int port;
    /* TLS: both set, else plaintext. With client_ca_file, a client certificate signed by it is
     * required (mutual TLS). PEM files, read at creation. */
    const char *tls_cert_file, *tls_key_file, *client_ca_file;
    unsigned max_streams; /* streams at once; more are refused RESOURCE_EXHAUSTED */
    /* A new stream, on the rpc thread: set its ops (or close it). Holds no reference for the
     * callee; take one to keep the stream. */
    void (*on_stream)(void *userdata, struct obx_rpc_stream *s);
    void *userdata;
};

struct obx_rpc_server;

int obx_rpc_server_new(const struct obx_rpc_server_config *cfg, struct obx_rpc_server **ret,
                       struct obx_error *err);
/* "127.0.0.1:50051 [::1]:50051", the addresses bound. */
void obx_rpc_server_addrs(const struct obx_rpc_server *srv, char *buf, size_t size);
int obx_rpc_server_port(const struct obx_rpc_server *srv);
/* Ends every stream (UNAVAILABLE "console shutting down"), stops, joins the thread. */
void obx_rpc_server_free(struct obx_rpc_server *srv);

/* ---- Client (a worker) ---- */

struct obx_rpc_client_config {
    const char *target;               /* "host:port" */
    bool insecure;                    /* plaintext */
    const char *ca_file;              /* TLS roots; NULL: the system's */
    const char *cert_file, *key_file; /* client certificate for mutual TLS; both or neither */
};

struct obx_rpc_client;

int obx_rpc_client_new(const struct obx_rpc_client_config *cfg, struct obx_rpc_client **ret,
                       struct obx_error *err);
/* Opens a new Connect stream; frames and the close go to ops. The stream is returned with one
 * reference for the caller. */
int obx_rpc_client_open(struct obx_rpc_client *c, const struct obx_rpc_stream_ops *ops,
                        void *userdata, struct obx_rpc_stream **ret, struct obx_error *err);
/* Cancels open streams, stops, joins the thread. */
void obx_rpc_client_free(struct obx_rpc_client *c);

#endif
