/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: what the in-box agent reads from the worker. The input is the byte stream on the
 * agent's stdin. It is decoded twice, in one piece and in 7-byte pieces (as reads may split it),
 * and both decodings must give the same frames. Each frame then goes to the agent's own handlers
 * (EXEC, CANCEL, the file requests, PING, PREPARE, the PTY_* frames of live terminals, unknown
 * types) with the agent's own send path
 * (agent.c, linked with its main() renamed), and the frames the agent queues for the worker are
 * decoded and checked: every request frame gets exactly one terminal answer (OK, FILE or ERROR)
 * with its id and a well-formed payload, except the frames of transfers: an FGET or FPUT that
 * starts stays open (an FGET's FMETA and FCHUNKs go out as the agent pumps it, the harness
 * acknowledging nothing), FDATA and FACK answer only when they end their transfer, FEND and a
 * CANCEL of an open transfer end it with one answer, and frames for no open transfer (or a CANCEL
 * of nothing running) get none, nor do a terminal's input, resize and ack.
 *
 * Nothing may run or be signalled on the host: the process layer (agent-proc.c: fork, exec, kill)
 * is replaced by functions that refuse, so a valid EXEC ends in "cannot start the command". File
 * requests act inside a private temporary workspace that is emptied after every input; file request
 * frames whose path is absolute or climbs with ".." are not handed to the agent (in a box
 * those paths are the box's own; here they would be the host's). Each input starts with one file
 * in it, a PNG whose name is not UTF-8 (any bytes are a valid file name), and "link.png" pointing
 * to it. The same path rule holds for every request that names a path. An ERROR with code
 * internal_error counts as a finding: no input should cause one.
 */
#include <ftw.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/agent-internal.h"
#include "fuzz.h"

/* ---- the process layer, refused ---- */

void agent_proc_init(void)
{
}

int agent_proc_start(const struct agent_spawn *sp, enum agent_feed feed, struct agent_proc *ret)
{
    return -EPERM;
}

void agent_proc_close(struct agent_proc *p)
{
    int *fds[] = {&p->ctl_fd, &p->status_fd, &p->feed_fd, &p->out_fd, &p->err_fd};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(fds); i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

void agent_proc_kill_children(void)
{
}

int agent_proc_kill_since(pid_t root, pid_t keep, uint64_t since)
{
    return 0;
}

uint64_t agent_proc_ticks_now(void)
{
    return 0;
}

void agent_proc_close_from(int from)
{
}

/* ---- the workspace ---- */

static char workspace[64];
static char state_dir[96];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (ftw->level > 0)
        remove(path);
    return 0;
}

static void workspace_empty(void)
{
    nftw(workspace, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The fixture every input starts with. */
static void workspace_fill(void)
{
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    char path[128];
    snprintf(path, sizeof(path), "%s/\xff\xfe.png", workspace);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f && fwrite(png, 1, sizeof(png), f) == sizeof(png) && fclose(f) == 0,
               "cannot write the fixture");
    snprintf(path, sizeof(path), "%s/link.png", workspace);
    FUZZ_CHECK(symlink("\xff\xfe.png", path) == 0, "cannot create the fixture's link");
}

static void workspace_remove(void)
{
    workspace_empty();
    rmdir(workspace);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(workspace, sizeof(workspace), "/tmp/obx-fuzz-agent-XXXXXX");
    FUZZ_CHECK(mkdtemp(workspace), "cannot create a temporary workspace");
    snprintf(state_dir, sizeof(state_dir), "%s/.state", workspace);
    atexit(workspace_remove);
    return 0;
}

/* ---- decoding ---- */

#define MAX_FRAMES 256

struct decoded {
    struct obx_agent_frame f[MAX_FRAMES];
    uint8_t *copy[MAX_FRAMES]; /* payloads outlive the decoder's buffer */
    size_t n;
    int end; /* 0: ran out of bytes, -EBADMSG: a bad length */
};

static void decode(const uint8_t *data, size_t size, size_t piece, struct decoded *out)
{
    struct obx_agent_decoder dec;
    obx_agent_decoder_init(&dec);
    out->n = 0;
    out->end = 0;
    for (size_t off = 0; off < size && out->end == 0 && out->n < MAX_FRAMES;) {
        size_t n = OBX_MIN(piece, size - off);
        FUZZ_CHECK(obx_agent_decoder_feed(&dec, data + off, n) == 0, "feed failed");
        off += n;
        struct obx_agent_frame f;
        int r;
        while (out->n < MAX_FRAMES && (r = obx_agent_decoder_next(&dec, &f)) != 0) {
            if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG, "decoder returned %d", r);
                out->end = r;
                break;
            }
            FUZZ_CHECK(f.len <= OBX_AGENT_MAX_FRAME - 5, "frame of %zu bytes", f.len);
            out->copy[out->n] = obx_xmalloc(f.len + 1);
            memcpy(out->copy[out->n], f.payload, f.len);
            f.payload = out->copy[out->n];
            out->f[out->n++] = f;
        }
    }
    obx_agent_decoder_done(&dec);
}

static void decoded_free(struct decoded *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->copy[i]);
}

/* ---- the agent's answers ---- */

static bool path_allowed(const struct obx_agent_frame *f)
{
    json_t *j = json_loadb((const char *)f->payload, f->len, 0, NULL);
    const char *path = json_string_value(json_object_get(j, "path"));
    bool ok = !path || (path[0] != '/' && strcmp(path, "..") != 0 && strncmp(path, "../", 3) != 0 &&
                        !strstr(path, "/../") &&
                        !(strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0));
    json_decref(j);
    return ok;
}

static void check_json_object(const struct obx_agent_frame *f, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)f->payload, f->len, JSON_ALLOW_NUL, &je);
    FUZZ_CHECK(json_is_object(j), "%s payload is not a JSON object (%s): %.*s", what, je.text,
               (int)OBX_MIN(f->len, 300), (const char *)f->payload);
    if (f->type == OBX_AF_ERROR) {
        FUZZ_CHECK(json_is_string(json_object_get(j, "code")) &&
                       json_is_string(json_object_get(j, "message")),
                   "ERROR without code and message");
        FUZZ_CHECK(!obx_streq(json_string_value(json_object_get(j, "code")), OBX_ERR_INTERNAL),
                   "the agent reported an internal error: %s",
                   json_string_value(json_object_get(j, "message")));
    }
    json_decref(j);
}

/* The transfers that started and have not ended (ids). */
struct open_xfers {
    uint32_t id[64];
    bool put[64];
    size_t n;
};

static ssize_t xfer_index(const struct open_xfers *o, uint32_t id)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->id[i] == id)
            return (ssize_t)i;
    return -1;
}

static void xfer_close(struct open_xfers *o, uint32_t id)
{
    ssize_t i = xfer_index(o, id);
    if (i < 0)
        return;
    o->id[i] = o->id[o->n - 1];
    o->put[i] = o->put[o->n - 1];
    o->n--;
}

/* Takes the agent's queued frames off its outbound queue, checks them and counts the terminal
 * ones for id. A frame for another id must belong to an open FGET (its chunks, its end); a
 * terminal one ends that transfer. */
static size_t drain_answers(struct agent *a, uint32_t id, struct open_xfers *open)
{
    size_t terminal = 0;
    struct agent_chunk *c = a->outq.head;
    while (c) {
        struct obx_agent_decoder dec;
        obx_agent_decoder_init(&dec);
        FUZZ_CHECK(obx_agent_decoder_feed(&dec, c->data, c->len) == 0, "feed failed");
        struct obx_agent_frame f;
        FUZZ_CHECK(obx_agent_decoder_next(&dec, &f) == 1 && dec.off == c->len,
                   "the agent queued a frame that does not decode");
        ssize_t other = f.id == id ? -1 : xfer_index(open, f.id);
        FUZZ_CHECK(f.id == id || (other >= 0 && !open->put[other]),
                   "answer for id %u while handling id %u", f.id, id);
        bool ends = false;
        switch (f.type) {
        case OBX_AF_OK:
            if (f.len)
                check_json_object(&f, "OK");
            ends = true;
            break;
        case OBX_AF_ERROR:
            check_json_object(&f, "ERROR");
            ends = true;
            break;
        case OBX_AF_FILE: {
            FUZZ_CHECK(f.len >= 4 && obx_be32_get(f.payload) <= f.len - 4, "malformed FILE");
            struct obx_agent_frame meta = f;
            meta.payload += 4;
            meta.len = obx_be32_get(f.payload);
            check_json_object(&meta, "FILE");
            ends = true;
            break;
        }
        case OBX_AF_FMETA:
            check_json_object(&f, "FMETA");
            break;
        case OBX_AF_FCHUNK:
            FUZZ_CHECK(f.len > 0 && f.len <= OBX_AGENT_FILE_CHUNK, "FCHUNK of %zu bytes", f.len);
            break;
        default:
            FUZZ_CHECK(false, "unexpected frame type 0x%02x from the agent", f.type);
        }
        if (ends && f.id == id)
            terminal++;
        else if (ends)
            xfer_close(open, f.id);
        obx_agent_decoder_done(&dec);
        struct agent_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->outq.head = a->outq.tail = NULL;
    a->outq.bytes = a->outq.off = 0;
    return terminal;
}

static bool names_path(uint8_t type)
{
    switch (type) {
    case OBX_AF_FREAD:
    case OBX_AF_FWRITE:
    case OBX_AF_FGET:
    case OBX_AF_FPUT:
    case OBX_AF_FLIST:
    case OBX_AF_FDELETE:
    case OBX_AF_FMKDIR:
        return true;
    default:
        return false;
    }
}

/* Hands f to the agent and checks its answers against the transfers open before it. */
static void dispatch_checked(struct agent *a, const struct obx_agent_frame *f,
                             struct open_xfers *open)
{
    ssize_t was = xfer_index(open, f->id);
    agent_dispatch(a, f);
    size_t answers = drain_answers(a, f->id, open);
    while (agent_xfer_pump(a))
        answers += drain_answers(a, f->id, open);
    answers += drain_answers(a, f->id, open);
    size_t lo = 1, hi = 1;
    switch (f->type) {
    case OBX_AF_CANCEL:
    case OBX_AF_FEND:
        lo = hi = was >= 0 && (f->type == OBX_AF_CANCEL || open->put[was]);
        break;
    case OBX_AF_FDATA:
    case OBX_AF_FACK:
        lo = 0;
        hi = was >= 0;
        break;
    case OBX_AF_PTY_INPUT:
    case OBX_AF_PTY_RESIZE:
    case OBX_AF_PTY_ACK:
        lo = hi = 0;
        break;
    case OBX_AF_FGET:
    case OBX_AF_FPUT:
        /* A request whose id is in use is refused without touching the open transfer. */
        lo = was < 0 ? 0 : 1;
        break;
    }
    FUZZ_CHECK(answers >= lo && answers <= hi,
               "frame type 0x%02x id %u got %zu answers, expected %zu to %zu", f->type, f->id,
               answers, lo, hi);
    bool transfer_frame = f->type == OBX_AF_CANCEL || f->type == OBX_AF_FEND ||
                          f->type == OBX_AF_FDATA || f->type == OBX_AF_FACK;
    if (answers && was >= 0 && transfer_frame)
        xfer_close(open, f->id);
    else if (!answers && was < 0 && (f->type == OBX_AF_FGET || f->type == OBX_AF_FPUT)) {
        FUZZ_CHECK(open->n < OBX_ARRAY_SIZE(open->id), "more transfers than the agent allows");
        open->put[open->n] = f->type == OBX_AF_FPUT;
        open->id[open->n++] = f->id;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct decoded whole, pieces;
    decode(data, size, size ? size : 1, &whole);
    decode(data, size, 7, &pieces);
    FUZZ_CHECK(whole.n == pieces.n && whole.end == pieces.end,
               "decoding in pieces differs: %zu frames (end %d) vs %zu (end %d)", whole.n,
               whole.end, pieces.n, pieces.end);
    for (size_t i = 0; i < whole.n; i++) {
        const struct obx_agent_frame *x = &whole.f[i], *y = &pieces.f[i];
        FUZZ_CHECK(x->type == y->type && x->id == y->id && x->len == y->len &&
                       memcmp(x->payload, y->payload, x->len) == 0,
                   "frame %zu decodes differently in pieces", i);
    }

    static struct agent a;
    memset(&a, 0, sizeof(a));
    a.cfg.workspace = workspace;
    a.cfg.state_dir = state_dir;
    agent_warm_init(&a);
    agent_pty_init(&a);
    workspace_fill();
    struct open_xfers open = {.n = 0};
    for (size_t i = 0; i < whole.n; i++) {
        const struct obx_agent_frame *f = &whole.f[i];
        if (names_path(f->type) && !path_allowed(f))
            continue;
        dispatch_checked(&a, f, &open);
    }
    agent_xfer_shutdown(&a); /* what the agent's main() does at its end */
    agent_warm_shutdown(&a);
    agent_pty_shutdown(&a);
    decoded_free(&whole);
    decoded_free(&pieces);
    workspace_empty();
    return 0;
}
