/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Frames between their protobuf-c messages and the plain structs of rpc.h. Decoding copies what
 * the rest of the program keeps, so the protobuf-c message is freed at once; strings must be
 * valid UTF-8 (a peer's bytes are untrusted), as proto3 says.
 */
#include "rpc-internal.h"

#include "common/utf8.h"

const char *obx_rpc_status_name(int code)
{
    static const char *const names[] = {
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    };
    return code >= 0 && (size_t)code < OBX_ARRAY_SIZE(names) ? names[code] : "Unknown";
}

bool obx_rpc_has_extension(char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (obx_streq(list[i], name))
            return true;
    return false;
}

/* ---- decoding ---- */

struct decoder {
    bool bad; /* a string that is not UTF-8 */
};

static char *str(struct decoder *d, const char *s)
{
    if (!s)
        return obx_xstrdup("");
    size_t n = strlen(s);
    if (!obx_utf8_valid(s, n))
        d->bad = true;
    return obx_xstrndup(s, n);
}

static uint8_t *bytes(ProtobufCBinaryData b, size_t *ret_len)
{
    *ret_len = b.len;
    if (b.len == 0 || !b.data)
        return NULL;
    uint8_t *p = obx_xmalloc(b.len);
    memcpy(p, b.data, b.len);
    return p;
}

static char **strs(struct decoder *d, char **in, size_t n, size_t *ret_n)
{
    *ret_n = n;
    if (n == 0)
        return NULL;
    char **out = obx_xcalloc(n, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = str(d, in[i]);
    return out;
}

static void decode_hello(struct decoder *d, const Onlyboxes__Registry__V1__ConnectHello *m,
                         struct obx_rpc_hello *h)
{
    h->node_id = str(d, m->node_id);
    h->node_name = str(d, m->node_name);
    h->executor_kind = str(d, m->executor_kind);
    h->version = str(d, m->version);
    h->worker_secret = str(d, m->worker_secret);
    h->n_labels = m->n_labels;
    if (m->n_labels)
        h->labels = obx_xcalloc(m->n_labels, sizeof(*h->labels));
    for (size_t i = 0; i < m->n_labels; i++) {
        h->labels[i].key = str(d, m->labels[i]->key);
        h->labels[i].value = str(d, m->labels[i]->value);
    }
    h->n_capabilities = m->n_capabilities;
    if (m->n_capabilities)
        h->capabilities = obx_xcalloc(m->n_capabilities, sizeof(*h->capabilities));
    for (size_t i = 0; i < m->n_capabilities; i++) {
        h->capabilities[i].name = str(d, m->capabilities[i]->name);
        h->capabilities[i].max_inflight = m->capabilities[i]->max_inflight;
    }
    if (m->terminal_session_capacity) {
        h->has_terminal_capacity = true;
        h->max_active_sessions = m->terminal_session_capacity->max_active_sessions;
        h->active_session_count = m->terminal_session_capacity->active_session_count;
    }
    h->extensions = strs(d, m->extensions, m->n_extensions, &h->n_extensions);
    h->n_live_sessions = m->n_live_sessions;
    if (m->n_live_sessions)
        h->live_sessions = obx_xcalloc(m->n_live_sessions, sizeof(*h->live_sessions));
    for (size_t i = 0; i < m->n_live_sessions; i++) {
        h->live_sessions[i].session_id = str(d, m->live_sessions[i]->session_id);
        h->live_sessions[i].lease_expires_unix_ms = m->live_sessions[i]->lease_expires_unix_ms;
        h->live_sessions[i].busy = m->live_sessions[i]->busy;
    }
}

static void decode_chunk(struct decoder *d, const Onlyboxes__Registry__V1__FileChunk *m,
                         struct obx_rpc_file_chunk *c)
{
    c->command_id = str(d, m->command_id);
    c->data = bytes(m->data, &c->data_len);
    c->eof = m->eof;
}

static void decode_request(struct decoder *d, const Onlyboxes__Registry__V1__ConnectRequest *m,
                           struct obx_rpc_frame *f)
{
    switch (m->payload_case) {
    case ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_HELLO:
        f->kind = OBX_RPC_HELLO;
        decode_hello(d, m->hello, &f->u.hello);
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_HEARTBEAT:
        f->kind = OBX_RPC_HEARTBEAT;
        f->u.heartbeat.node_id = str(d, m->heartbeat->node_id);
        f->u.heartbeat.session_id = str(d, m->heartbeat->session_id);
        f->u.heartbeat.active_session_count = m->heartbeat->active_session_count;
        f->u.heartbeat.draining = m->heartbeat->draining;
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_COMMAND_RESULT: {
        const Onlyboxes__Registry__V1__CommandResult *r = m->command_result;
        f->kind = OBX_RPC_RESULT;
        f->u.result.command_id = str(d, r->command_id);
        f->u.result.has_error = r->error != NULL;
        f->u.result.error_code = str(d, r->error ? r->error->code : NULL);
        f->u.result.error_message = str(d, r->error ? r->error->message : NULL);
        f->u.result.payload = bytes(r->payload_json, &f->u.result.payload_len);
        f->u.result.completed_unix_ms = r->completed_unix_ms;
        break;
    }
    case ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_COMMAND_OUTPUT:
        f->kind = OBX_RPC_OUTPUT;
        f->u.output.command_id = str(d, m->command_output->command_id);
        f->u.output.stream = m->command_output->stream;
        f->u.output.data = bytes(m->command_output->data, &f->u.output.data_len);
        f->u.output.log_level = m->command_output->log_level;
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_FILE_CHUNK:
        f->kind = OBX_RPC_FILE_CHUNK;
        decode_chunk(d, m->file_chunk, &f->u.chunk);
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_FILE_ACK:
        f->kind = OBX_RPC_FILE_ACK;
        f->u.file_ack.command_id = str(d, m->file_ack->command_id);
        f->u.file_ack.received = m->file_ack->received;
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_PTY_OUTPUT:
        f->kind = OBX_RPC_PTY_OUTPUT;
        f->u.pty_output.command_id = str(d, m->pty_output->command_id);
        f->u.pty_output.data = bytes(m->pty_output->data, &f->u.pty_output.data_len);
        f->u.pty_output.event = bytes(m->pty_output->event_json, &f->u.pty_output.event_len);
        break;
    default:
        f->kind = OBX_RPC_NONE;
        break;
    }
}

static void decode_response(struct decoder *d, const Onlyboxes__Registry__V1__ConnectResponse *m,
                            struct obx_rpc_frame *f)
{
    switch (m->payload_case) {
    case ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_CONNECT_ACK:
        f->kind = OBX_RPC_ACK;
        f->u.ack.session_id = str(d, m->connect_ack->session_id);
        f->u.ack.heartbeat_interval_sec = m->connect_ack->heartbeat_interval_sec;
        f->u.ack.extensions = strs(d, m->connect_ack->extensions, m->connect_ack->n_extensions,
                                   &f->u.ack.n_extensions);
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_HEARTBEAT_ACK:
        f->kind = OBX_RPC_HEARTBEAT_ACK;
        f->u.heartbeat_ack.heartbeat_interval_sec = m->heartbeat_ack->heartbeat_interval_sec;
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_COMMAND_DISPATCH:
        f->kind = OBX_RPC_DISPATCH;
        f->u.dispatch.command_id = str(d, m->command_dispatch->command_id);
        f->u.dispatch.capability = str(d, m->command_dispatch->capability);
        f->u.dispatch.payload =
            bytes(m->command_dispatch->payload_json, &f->u.dispatch.payload_len);
        f->u.dispatch.deadline_unix_ms = m->command_dispatch->deadline_unix_ms;
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_COMMAND_CANCEL:
        f->kind = OBX_RPC_CANCEL;
        f->u.cancel.command_id = str(d, m->command_cancel->command_id);
        f->u.cancel.reason = str(d, m->command_cancel->reason);
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_FILE_CHUNK:
        f->kind = OBX_RPC_FILE_CHUNK_TO_WORKER;
        decode_chunk(d, m->file_chunk, &f->u.chunk);
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_FILE_ACK:
        f->kind = OBX_RPC_FILE_ACK_TO_WORKER;
        f->u.file_ack.command_id = str(d, m->file_ack->command_id);
        f->u.file_ack.received = m->file_ack->received;
        break;
    case ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_PTY_INPUT:
        f->kind = OBX_RPC_PTY_INPUT;
        f->u.pty_input.command_id = str(d, m->pty_input->command_id);
        f->u.pty_input.data = bytes(m->pty_input->data, &f->u.pty_input.data_len);
        f->u.pty_input.cols = m->pty_input->cols;
        f->u.pty_input.rows = m->pty_input->rows;
        f->u.pty_input.acked = m->pty_input->acked;
        break;
    default:
        f->kind = OBX_RPC_NONE;
        break;
    }
}

int obx_rpc_decode(bool to_console, const uint8_t *buf, size_t len, struct obx_rpc_frame *ret)
{
    memset(ret, 0, sizeof(*ret));
    struct decoder d = {false};
    if (to_console) {
        Onlyboxes__Registry__V1__ConnectRequest *m =
            onlyboxes__registry__v1__connect_request__unpack(NULL, len, buf);
        if (!m)
            return -EBADMSG;
        decode_request(&d, m, ret);
        onlyboxes__registry__v1__connect_request__free_unpacked(m, NULL);
    } else {
        Onlyboxes__Registry__V1__ConnectResponse *m =
            onlyboxes__registry__v1__connect_response__unpack(NULL, len, buf);
        if (!m)
            return -EBADMSG;
        decode_response(&d, m, ret);
        onlyboxes__registry__v1__connect_response__free_unpacked(m, NULL);
    }
    if (d.bad) {
        obx_rpc_frame_done(ret);
        return -EBADMSG;
    }
    return 0;
}

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void obx_rpc_frame_done(struct obx_rpc_frame *f)
{
    switch (f->kind) {
    case OBX_RPC_HELLO: {
        struct obx_rpc_hello *h = &f->u.hello;
        free(h->node_id);
        free(h->node_name);
        free(h->executor_kind);
        free(h->version);
        if (h->worker_secret) {
            explicit_bzero(h->worker_secret, strlen(h->worker_secret));
            free(h->worker_secret);
        }
        for (size_t i = 0; i < h->n_labels; i++) {
            free(h->labels[i].key);
            free(h->labels[i].value);
        }
        free(h->labels);
        for (size_t i = 0; i < h->n_capabilities; i++)
            free(h->capabilities[i].name);
        free(h->capabilities);
        free_strs(h->extensions, h->n_extensions);
        for (size_t i = 0; i < h->n_live_sessions; i++)
            free(h->live_sessions[i].session_id);
        free(h->live_sessions);
        break;
    }
    case OBX_RPC_HEARTBEAT:
        free(f->u.heartbeat.node_id);
        free(f->u.heartbeat.session_id);
        break;
    case OBX_RPC_RESULT:
        free(f->u.result.command_id);
        free(f->u.result.error_code);
        free(f->u.result.error_message);
        free(f->u.result.payload);
        break;
    case OBX_RPC_OUTPUT:
        free(f->u.output.command_id);
        free(f->u.output.data);
        break;
    case OBX_RPC_ACK:
        free(f->u.ack.session_id);
        free_strs(f->u.ack.extensions, f->u.ack.n_extensions);
        break;
    case OBX_RPC_DISPATCH:
        free(f->u.dispatch.command_id);
        free(f->u.dispatch.capability);
        free(f->u.dispatch.payload);
        break;
    case OBX_RPC_CANCEL:
        free(f->u.cancel.command_id);
        free(f->u.cancel.reason);
        break;
    case OBX_RPC_FILE_CHUNK:
    case OBX_RPC_FILE_CHUNK_TO_WORKER:
        free(f->u.chunk.command_id);
        free(f->u.chunk.data);
        break;
    case OBX_RPC_FILE_ACK:
    case OBX_RPC_FILE_ACK_TO_WORKER:
        free(f->u.file_ack.command_id);
        break;
    case OBX_RPC_PTY_OUTPUT:
        free(f->u.pty_output.command_id);
        free(f->u.pty_output.data);
        free(f->u.pty_output.event);
        break;
    case OBX_RPC_PTY_INPUT:
        free(f->u.pty_input.command_id);
        free(f->u.pty_input.data);
        break;
    case OBX_RPC_HEARTBEAT_ACK:
    case OBX_RPC_NONE:
        break;
    }
    memset(f, 0, sizeof(*f));
}

/* ---- encoding: protobuf-c messages on the stack pointing at the frame's own data ---- */

static char *s(char *v)
{
    return v ? v : (char *)protobuf_c_empty_string;
}

static ProtobufCBinaryData b(uint8_t *data, size_t len)
{
    return (ProtobufCBinaryData){.len = data ? len : 0, .data = data};
}

static void encode_chunk(const struct obx_rpc_file_chunk *c, Onlyboxes__Registry__V1__FileChunk *m)
{
    m->command_id = s(c->command_id);
    m->data = b(c->data, c->data_len);
    m->eof = c->eof;
}

static int pack(const ProtobufCMessage *m, uint8_t **ret, size_t *ret_len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > OBX_RPC_MAX_MESSAGE_BYTES)
        return -EMSGSIZE;
    uint8_t *buf = obx_xmalloc(n ? n : 1);
    protobuf_c_message_pack(m, buf);
    *ret = buf;
    *ret_len = n;
    return 0;
}

static int encode_hello(const struct obx_rpc_hello *h, uint8_t **ret, size_t *ret_len)
{
    Onlyboxes__Registry__V1__ConnectHello m = ONLYBOXES__REGISTRY__V1__CONNECT_HELLO__INIT;
    m.node_id = s(h->node_id);
    m.node_name = s(h->node_name);
    m.executor_kind = s(h->executor_kind);
    m.version = s(h->version);
    m.worker_secret = s(h->worker_secret);
    _cleanup_free_ Onlyboxes__Registry__V1__ConnectHello__LabelsEntry *labels =
        obx_xcalloc(h->n_labels + 1, sizeof(*labels));
    _cleanup_free_ Onlyboxes__Registry__V1__ConnectHello__LabelsEntry **label_ptrs =
        obx_xcalloc(h->n_labels + 1, sizeof(*label_ptrs));
    for (size_t i = 0; i < h->n_labels; i++) {
        onlyboxes__registry__v1__connect_hello__labels_entry__init(&labels[i]);
        labels[i].key = s(h->labels[i].key);
        labels[i].value = s(h->labels[i].value);
        label_ptrs[i] = &labels[i];
    }
    m.n_labels = h->n_labels;
    m.labels = label_ptrs;
    _cleanup_free_ Onlyboxes__Registry__V1__CapabilityDeclaration *caps =
        obx_xcalloc(h->n_capabilities + 1, sizeof(*caps));
    _cleanup_free_ Onlyboxes__Registry__V1__CapabilityDeclaration **cap_ptrs =
        obx_xcalloc(h->n_capabilities + 1, sizeof(*cap_ptrs));
    for (size_t i = 0; i < h->n_capabilities; i++) {
        onlyboxes__registry__v1__capability_declaration__init(&caps[i]);
        caps[i].name = s(h->capabilities[i].name);
        caps[i].max_inflight = h->capabilities[i].max_inflight;
        cap_ptrs[i] = &caps[i];
    }
    m.n_capabilities = h->n_capabilities;
    m.capabilities = cap_ptrs;
    Onlyboxes__Registry__V1__TerminalSessionCapacity cap =
        ONLYBOXES__REGISTRY__V1__TERMINAL_SESSION_CAPACITY__INIT;
    if (h->has_terminal_capacity) {
        cap.max_active_sessions = h->max_active_sessions;
        cap.active_session_count = h->active_session_count;
        m.terminal_session_capacity = &cap;
    }
    m.n_extensions = h->n_extensions;
    m.extensions = h->extensions;
    _cleanup_free_ Onlyboxes__Registry__V1__LiveSession *live =
        obx_xcalloc(h->n_live_sessions + 1, sizeof(*live));
    _cleanup_free_ Onlyboxes__Registry__V1__LiveSession **live_ptrs =
        obx_xcalloc(h->n_live_sessions + 1, sizeof(*live_ptrs));
    for (size_t i = 0; i < h->n_live_sessions; i++) {
        onlyboxes__registry__v1__live_session__init(&live[i]);
        live[i].session_id = s(h->live_sessions[i].session_id);
        live[i].lease_expires_unix_ms = h->live_sessions[i].lease_expires_unix_ms;
        live[i].busy = h->live_sessions[i].busy;
        live_ptrs[i] = &live[i];
    }
    m.n_live_sessions = h->n_live_sessions;
    m.live_sessions = live_ptrs;
    Onlyboxes__Registry__V1__ConnectRequest req = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__INIT;
    req.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_HELLO;
    req.hello = &m;
    return pack(&req.base, ret, ret_len);
}

static int encode_request(const struct obx_rpc_frame *f, uint8_t **ret, size_t *ret_len)
{
    Onlyboxes__Registry__V1__ConnectRequest req = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__INIT;
    Onlyboxes__Registry__V1__HeartbeatFrame hb = ONLYBOXES__REGISTRY__V1__HEARTBEAT_FRAME__INIT;
    Onlyboxes__Registry__V1__CommandResult res = ONLYBOXES__REGISTRY__V1__COMMAND_RESULT__INIT;
    Onlyboxes__Registry__V1__CommandError cerr = ONLYBOXES__REGISTRY__V1__COMMAND_ERROR__INIT;
    Onlyboxes__Registry__V1__CommandOutput out = ONLYBOXES__REGISTRY__V1__COMMAND_OUTPUT__INIT;
    Onlyboxes__Registry__V1__FileChunk chunk = ONLYBOXES__REGISTRY__V1__FILE_CHUNK__INIT;
    Onlyboxes__Registry__V1__FileAck fack = ONLYBOXES__REGISTRY__V1__FILE_ACK__INIT;
    Onlyboxes__Registry__V1__PtyOutput pty = ONLYBOXES__REGISTRY__V1__PTY_OUTPUT__INIT;
    switch (f->kind) {
    case OBX_RPC_HELLO:
        return encode_hello(&f->u.hello, ret, ret_len);
    case OBX_RPC_HEARTBEAT:
        hb.node_id = s(f->u.heartbeat.node_id);
        hb.session_id = s(f->u.heartbeat.session_id);
        hb.active_session_count = f->u.heartbeat.active_session_count;
        hb.draining = f->u.heartbeat.draining;
        req.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_HEARTBEAT;
        req.heartbeat = &hb;
        break;
    case OBX_RPC_RESULT:
        res.command_id = s(f->u.result.command_id);
        if (f->u.result.has_error) {
            cerr.code = s(f->u.result.error_code);
            cerr.message = s(f->u.result.error_message);
            res.error = &cerr;
        }
        res.payload_json = b(f->u.result.payload, f->u.result.payload_len);
        res.completed_unix_ms = f->u.result.completed_unix_ms;
        req.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_COMMAND_RESULT;
        req.command_result = &res;
        break;
    case OBX_RPC_OUTPUT:
        out.command_id = s(f->u.output.command_id);
        out.stream = f->u.output.stream;
        out.data = b(f->u.output.data, f->u.output.data_len);
        out.log_level = f->u.output.log_level;
        req.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_COMMAND_OUTPUT;
        req.command_output = &out;
        break;
    case OBX_RPC_FILE_CHUNK:
        encode_chunk(&f->u.chunk, &chunk);
        req.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_FILE_CHUNK;
        req.file_chunk = &chunk;
        break;
    case OBX_RPC_FILE_ACK:
        fack.command_id = s(f->u.file_ack.command_id);
        fack.received = f->u.file_ack.received;
        req.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_FILE_ACK;
        req.file_ack = &fack;
        break;
    case OBX_RPC_PTY_OUTPUT:
        pty.command_id = s(f->u.pty_output.command_id);
        pty.data = b(f->u.pty_output.data, f->u.pty_output.data_len);
        pty.event_json = b(f->u.pty_output.event, f->u.pty_output.event_len);
        req.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_REQUEST__PAYLOAD_PTY_OUTPUT;
        req.pty_output = &pty;
        break;
    default:
        return -EINVAL;
    }
    return pack(&req.base, ret, ret_len);
}

static int encode_response(const struct obx_rpc_frame *f, uint8_t **ret, size_t *ret_len)
{
    Onlyboxes__Registry__V1__ConnectResponse resp = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__INIT;
    Onlyboxes__Registry__V1__ConnectAck ack = ONLYBOXES__REGISTRY__V1__CONNECT_ACK__INIT;
    Onlyboxes__Registry__V1__HeartbeatAck hba = ONLYBOXES__REGISTRY__V1__HEARTBEAT_ACK__INIT;
    Onlyboxes__Registry__V1__CommandDispatch dis = ONLYBOXES__REGISTRY__V1__COMMAND_DISPATCH__INIT;
    Onlyboxes__Registry__V1__CommandCancel can = ONLYBOXES__REGISTRY__V1__COMMAND_CANCEL__INIT;
    Onlyboxes__Registry__V1__FileChunk chunk = ONLYBOXES__REGISTRY__V1__FILE_CHUNK__INIT;
    Onlyboxes__Registry__V1__FileAck fack = ONLYBOXES__REGISTRY__V1__FILE_ACK__INIT;
    Onlyboxes__Registry__V1__PtyInput pty = ONLYBOXES__REGISTRY__V1__PTY_INPUT__INIT;
    switch (f->kind) {
    case OBX_RPC_ACK:
        ack.session_id = s(f->u.ack.session_id);
        ack.heartbeat_interval_sec = f->u.ack.heartbeat_interval_sec;
        ack.n_extensions = f->u.ack.n_extensions;
        ack.extensions = f->u.ack.extensions;
        resp.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_CONNECT_ACK;
        resp.connect_ack = &ack;
        break;
    case OBX_RPC_HEARTBEAT_ACK:
        hba.heartbeat_interval_sec = f->u.heartbeat_ack.heartbeat_interval_sec;
        resp.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_HEARTBEAT_ACK;
        resp.heartbeat_ack = &hba;
        break;
    case OBX_RPC_DISPATCH:
        dis.command_id = s(f->u.dispatch.command_id);
        dis.capability = s(f->u.dispatch.capability);
        dis.payload_json = b(f->u.dispatch.payload, f->u.dispatch.payload_len);
        dis.deadline_unix_ms = f->u.dispatch.deadline_unix_ms;
        resp.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_COMMAND_DISPATCH;
        resp.command_dispatch = &dis;
        break;
    case OBX_RPC_CANCEL:
        can.command_id = s(f->u.cancel.command_id);
        can.reason = s(f->u.cancel.reason);
        resp.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_COMMAND_CANCEL;
        resp.command_cancel = &can;
        break;
    case OBX_RPC_FILE_CHUNK_TO_WORKER:
        encode_chunk(&f->u.chunk, &chunk);
        resp.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_FILE_CHUNK;
        resp.file_chunk = &chunk;
        break;
    case OBX_RPC_FILE_ACK_TO_WORKER:
        fack.command_id = s(f->u.file_ack.command_id);
        fack.received = f->u.file_ack.received;
        resp.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_FILE_ACK;
        resp.file_ack = &fack;
        break;
    case OBX_RPC_PTY_INPUT:
        pty.command_id = s(f->u.pty_input.command_id);
        pty.data = b(f->u.pty_input.data, f->u.pty_input.data_len);
        pty.cols = f->u.pty_input.cols;
        pty.rows = f->u.pty_input.rows;
        pty.acked = f->u.pty_input.acked;
        resp.payload_case = ONLYBOXES__REGISTRY__V1__CONNECT_RESPONSE__PAYLOAD_PTY_INPUT;
        resp.pty_input = &pty;
        break;
    default:
        return -EINVAL;
    }
    return pack(&resp.base, ret, ret_len);
}

int obx_rpc_encode(const struct obx_rpc_frame *f, uint8_t **ret, size_t *ret_len)
{
    switch (f->kind) {
    case OBX_RPC_HELLO:
    case OBX_RPC_HEARTBEAT:
    case OBX_RPC_RESULT:
    case OBX_RPC_OUTPUT:
    case OBX_RPC_FILE_CHUNK:
    case OBX_RPC_FILE_ACK:
    case OBX_RPC_PTY_OUTPUT:
        return encode_request(f, ret, ret_len);
    case OBX_RPC_ACK:
    case OBX_RPC_HEARTBEAT_ACK:
    case OBX_RPC_DISPATCH:
    case OBX_RPC_CANCEL:
    case OBX_RPC_FILE_CHUNK_TO_WORKER:
    case OBX_RPC_FILE_ACK_TO_WORKER:
    case OBX_RPC_PTY_INPUT:
        return encode_response(f, ret, ret_len);
    case OBX_RPC_NONE:
        break;
    }
    return -EINVAL;
}
