/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: what the in-box agent reads from the worker. The input is the byte stream on the
 * agent's stdin. It is decoded twice, in one piece and in 7-byte pieces (as reads may split it),
 * and both decodings must give the same frames. Each frame then goes to the agent's own handlers
 * (EXEC, CANCEL, FREAD, FWRITE, PING, the PTY_* frames of live terminals, unknown types) with the
 * agent's own send path (agent.c, linked with its main() renamed), and the frames the agent queues
 * for the worker are decoded and checked: every request frame but CANCEL and a terminal's input,
 * resize and ack gets exactly one terminal answer (OK, FILE or ERROR), with the request's id and a
 * well-formed payload.
 *
 * Nothing may run or be signalled on the host: the process layer (agent-proc.c: fork, exec, kill)
 * is replaced by functions that refuse, so a valid EXEC ends in "cannot start the command". File
 * requests act inside a private temporary workspace that is emptied after every input; FREAD and
 * FWRITE frames whose path is absolute or climbs with ".." are not handed to the agent (in a box
 * those paths are the box's own; here they would be the host's). Each input starts with one file
 * in it, a PNG whose name is not UTF-8 (any bytes are a valid file name), and "link.png" pointing
 * to it. An ERROR with code internal_error counts as a finding: no input should cause one.
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

/* Takes the agent's queued frames off its outbound queue, checks them and counts the terminal
 * ones for id. */
static size_t drain_answers(struct agent *a, uint32_t id)
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
        FUZZ_CHECK(f.id == id, "answer for id %u while handling id %u", f.id, id);
        switch (f.type) {
        case OBX_AF_OK:
            if (f.len)
                check_json_object(&f, "OK");
            terminal++;
            break;
        case OBX_AF_ERROR:
            check_json_object(&f, "ERROR");
            terminal++;
            break;
        case OBX_AF_FILE: {
            FUZZ_CHECK(f.len >= 4 && obx_be32_get(f.payload) <= f.len - 4, "malformed FILE");
            struct obx_agent_frame meta = f;
            meta.payload += 4;
            meta.len = obx_be32_get(f.payload);
            check_json_object(&meta, "FILE");
            terminal++;
            break;
        }
        default:
            FUZZ_CHECK(false, "unexpected frame type 0x%02x from the agent", f.type);
        }
        obx_agent_decoder_done(&dec);
        struct agent_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->outq.head = a->outq.tail = NULL;
    a->outq.bytes = a->outq.off = 0;
    return terminal;
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
    for (size_t i = 0; i < whole.n; i++) {
        const struct obx_agent_frame *f = &whole.f[i];
        if ((f->type == OBX_AF_FREAD || f->type == OBX_AF_FWRITE) && !path_allowed(f))
            continue;
        agent_dispatch(&a, f);
        size_t answers = drain_answers(&a, f->id);
        bool no_answer = f->type == OBX_AF_CANCEL || f->type == OBX_AF_PTY_INPUT ||
                         f->type == OBX_AF_PTY_RESIZE || f->type == OBX_AF_PTY_ACK;
        size_t want = no_answer ? 0 : 1;
        FUZZ_CHECK(answers == want, "frame type 0x%02x id %u got %zu answers, expected %zu",
                   f->type, f->id, answers, want);
    }
    agent_warm_shutdown(&a);
    agent_pty_shutdown(&a);
    decoded_free(&whole);
    decoded_free(&pieces);
    workspace_empty();
    return 0;
}
