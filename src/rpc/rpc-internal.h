/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the files of src/rpc/: the generated protobuf-c messages, gRPC's core API, and the
 * stream object both sides use. Not for use outside src/rpc/.
 *
 * A stream is one gRPC call. Each operation in flight on it (a receive, a send, the wait for the
 * call's end, a status) holds a reference and carries a tag; the completion-queue thread runs the
 * tag's function when the operation completes. gRPC allows one send and one receive at a time,
 * so sends wait in two queues (control first). The grpc_call is released as soon as the stream
 * has closed and no operation is in flight, so a stream kept longer by its user holds no gRPC
 * resource past the server's or client's end.
 */
#ifndef OBX_RPC_INTERNAL_H
#define OBX_RPC_INTERNAL_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>

#include "onlyboxes/registry/v1/registry.pb-c.h"
#include "rpc.h"

/* gRPC orders the start of an operation before its tag comes out of the completion queue, with
 * synchronization inside libgrpc that ThreadSanitizer cannot see (the library is not built with
 * it). A TSan build says so at both ends, so what a tag's function reads of what was set before
 * the operation started is checked like any other hand-over between our threads. */
#if defined(__SANITIZE_THREAD__)
#    include <sanitizer/tsan_interface.h>
#    define OBX_RPC_TAG_GIVEN(t) __tsan_release(t)
#    define OBX_RPC_TAG_TAKEN(t) __tsan_acquire(t)
#else
#    define OBX_RPC_TAG_GIVEN(t) ((void)(t))
#    define OBX_RPC_TAG_TAKEN(t) ((void)(t))
#endif

/* Output frames beyond this many bytes waiting are dropped rather than queued. */
#define OBX_RPC_OUTPUT_BUDGET (8u << 20)

struct rpc_tag {
    void (*fn)(struct rpc_tag *t, bool ok);
    struct obx_rpc_stream *s; /* NULL for the server's own tags */
};

struct rpc_out {
    grpc_byte_buffer *buf;
    size_t len;
    bool output; /* an output frame: counted against the budget */
    struct rpc_out *next;
};

struct rpc_queue {
    struct rpc_out *head, *tail;
};

/* Who owns the stream: told when it closed, so it can count and find its streams. */
struct rpc_owner {
    void (*stream_closed)(struct rpc_owner *o, struct obx_rpc_stream *s);
};

struct obx_rpc_stream {
    int refs; /* atomic */
    bool server_side;
    struct rpc_owner *owner;
    struct obx_rpc_stream *owner_next; /* the owner's list, under the owner's lock */
    char peer[128];

    pthread_mutex_t lock;
    grpc_call *call; /* NULL once released */
    unsigned ops;    /* operations in flight */
    struct obx_rpc_stream_ops ops_cb;
    void *userdata;
    bool reading; /* set_ops() ran (server) or open() (client): receives are posted */

    struct rpc_queue control, data;
    size_t output_bytes; /* queued output frames' bytes */
    bool sending;
    grpc_byte_buffer *send_buf;

    grpc_byte_buffer *recv_buf;
    bool closing;   /* close() asked, or the peer ended: nothing more is sent */
    bool closed;    /* on_closed() delivered */
    int close_code; /* what close() asked for */
    char close_msg[256];

    /* server: the wait for the call's end */
    int cancelled;
    bool status_sent;
    /* client: the call's final status */
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice status_details;

    struct rpc_tag t_recv, t_send, t_end, t_meta, t_status, t_half;
};

/* stream.c */
struct obx_rpc_stream *obx_rpc_stream_new(grpc_call *call, bool server_side,
                                          struct rpc_owner *owner);
/* Starts a batch of n ops on s with tag t (a reference is taken for it). false when gRPC
 * refused it (the reference is given back). */
bool obx_rpc_stream_batch(struct obx_rpc_stream *s, const grpc_op *ops, size_t n,
                          struct rpc_tag *t);
/* References to every stream of an owner's list (head read under lock); the caller unrefs each
 * and frees the array. */
struct obx_rpc_stream **obx_rpc_streams_snapshot(pthread_mutex_t *lock, struct obx_rpc_stream *head,
                                                 size_t *ret_n);
/* An operation completed: its count and its reference go (the call too, once idle and closed). */
void obx_rpc_stream_op_done(struct obx_rpc_stream *s);
/* Posts the next receive, unless the stream is closing. */
void obx_rpc_stream_read(struct obx_rpc_stream *s);
/* The stream ended: delivers on_closed() once, tells the owner, drops what waits. CQ thread. */
void obx_rpc_stream_finish(struct obx_rpc_stream *s, int code, const char *message);

/* One process-wide gRPC init, with gRPC's log lines routed to ours. */
void obx_rpc_global_init(void);
void obx_rpc_global_done(void);

/* Reads a whole PEM file (for credentials); NULL with err naming the file. */
char *obx_rpc_read_pem(const char *what, const char *path, struct obx_error *err);

/* Runs the completion queue until it shuts down: each event's tag function. */
void obx_rpc_cq_run(grpc_completion_queue *cq);

#endif
