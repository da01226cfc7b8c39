/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker <-> agent wire protocol, shared by both sides. One byte stream (pipes for bubblewrap,
 * the attach stream for Docker) carries frames in both directions:
 *
 *   u32 length   big-endian: number of bytes that follow (1 + 4 + payload), at most
 *                OBX_AGENT_MAX_FRAME
 *   u8  type     enum obx_agent_frame_type
 *   u32 id       big-endian request id chosen by the worker (0 = the box itself, e.g. HELLO)
 *   payload      type-specific, see below
 *
 * Requests are multiplexed by id: several run at once in one box and each can be cancelled. A
 * request ends with exactly one terminal frame (EXIT, FILE, OK or ERROR) from the agent; the worker
 * may reuse its id after that. Frames for unknown ids are ignored by both sides.
 *
 * Worker -> agent
 *   EXEC    JSON object:
 *             "argv"        [string, ...]   program and arguments (PATH is searched), or
 *             "shell"       string          a shell command run by /bin/sh in terminal mode: the
 *                                           working directory and exported variables persist
 *                                           between EXECs that name the same "state" key
 *             "state"       string          terminal state key (default "default"; with "shell")
 *             "env"         {name: value}   added to the agent's base environment
 *             "cwd"         string          working directory (default: the workspace)
 *             "stdin"       string          bytes written to the child's stdin, then EOF
 *                                           (absent: stdin is /dev/null)
 *             "timeout_ms"  integer         wall-clock limit; 0 = none
 *             "stdout_limit", "stderr_limit" integer  bytes kept per stream (default 1 MiB); output
 *                                           beyond is read and dropped, the cut lands on a UTF-8
 *                                           boundary and the *_truncated flag is set
 *             "limits"      {"memory_bytes","nproc","fsize_bytes","cpu_sec","nofile"}  rlimits for
 *                                           the child; 0 or absent = the agent's default
 *             "python"      {"code": string, "mode": "oneshot" | "session", "reset": bool,
 *                            "limits": {"max_images", "max_side", "max_image_bytes",
 *                            "max_total_bytes", "max_value_chars"}}  instead of "argv" or
 *                                           "shell": pythonExec (agent-python.c). "oneshot" runs
 *                                           the code as `python3 -c` would, in the box's prepared
 *                                           interpreter when there is one; "session" runs it in
 *                                           the box's persistent interpreter (started when there
 *                                           is none, or anew with "reset"), where a timeout or
 *                                           CANCEL first interrupts the code (KeyboardInterrupt)
 *                                           and kills the interpreter only when it does not stop
 *                                           within a short grace
 *           The child runs in its own process group. On timeout or CANCEL the agent kills the whole
 *           group (SIGKILL), waits for the group leader, then sends EXIT.
 *   CANCEL  empty. Kill the request's process group; EXIT follows with "canceled": true.
 *   FREAD   JSON {"path": string, "max_bytes": integer, "data": bool, "state": string}. A
 *           relative path resolves against the working directory the terminal state "state"
 *           saved (the session's cwd, as `cd` left it), else the workspace. Answers FILE (or
 *           ERROR file_not_found / path_is_directory / file_too_large when data is requested and
 *           size > max_bytes).
 *   FWRITE  JSON {"path": string, "data_b64": string, "mode": integer}. Answers OK or ERROR.
 *   PING    empty. Answers OK.
 *   PREPARE JSON {"python": {"preload": [module, ...]}}: start the box's Python interpreter now
 *           and import the modules, for a pythonExec call to come. Answers OK once the imports
 *           are done, with {"ready": true, "pid": N, "python": version, "import_ms": N,
 *           "missing": [{"module", "error"}]} (the modules that could not be imported), or
 *           {"python": "running"} when the box already has an interpreter; ERROR when Python
 *           does not start.
 *
 *   File transfers of any size, in chunks (every path below resolves like FREAD's, "state"
 *   included; an ERROR code is one of the OBX_ERR_* file codes, see common/error.h):
 *   FGET    JSON {"path", "state", "window": integer}: sends a regular file. The agent answers
 *           FMETA, then FCHUNK frames of at most OBX_AGENT_FILE_CHUNK bytes, never more than
 *           "window" bytes beyond what the worker acknowledged with FACK, then OK
 *           {"size_bytes"}. A file that changes size while it is read ends with ERROR.
 *   FACK    8 bytes, big-endian: the bytes of this FGET the worker has taken so far.
 *   FPUT    JSON {"path", "state", "size_bytes", "mode" (default: the replaced file's, else
 *           0644), "parents": bool (create missing parent directories)}: receives a file. The
 *           worker then sends FDATA frames with the bytes and FEND. The bytes go to a temporary
 *           file beside the target, renamed over it only when exactly size_bytes arrived: a
 *           transfer that fails, is cancelled or is cut leaves neither a partial file nor the
 *           directories it created. Answers OK {"path", "size_bytes", "created"}; an ERROR may
 *           come before FEND (the worker then stops sending).
 *   FDATA   raw bytes of an FPUT.
 *   FEND    empty: the FPUT's bytes are complete.
 *   FLIST   JSON {"path", "state", "max_entries"}: a directory's entries, sorted by name.
 *           Answers OK {"path", "entries": [{"name", "type" (file, directory, symlink, other),
 *           "size_bytes", "mtime_unix_ms", "mode", "target" (symlinks)}], "truncated"}.
 *   FDELETE JSON {"path", "state", "recursive": bool}: removes a file, a symlink, an empty
 *           directory, or with recursive a directory and everything in it (never crossing into
 *           another file system). Answers OK {"path"}.
 *   FMKDIR  JSON {"path", "state"}: creates a directory and its missing parents. Answers OK
 *           {"path", "created"}.
 *   CANCEL of an FGET or FPUT stops it (an FPUT's temporary file goes) and answers ERROR
 *   canceled.
 *
 * Agent -> worker
 *   HELLO   id 0, JSON {"version": string, "pid": integer, "workspace": string}; sent once at
 *           start-up, when the agent is ready for requests.
 *   STDOUT, STDERR  raw bytes of output, in order, only up to the stream's limit.
 *   EXIT    JSON {"exit_code": integer (-1 when killed by a signal), "signal": integer (0 if none),
 *           "timed_out": bool, "canceled": bool, "stdout_truncated": bool,
 *           "stderr_truncated": bool, "duration_ms": integer}; a "python" request adds
 *           "python": {"value": string, "images": [{"mime_type", "width", "height", "data"
 *           (base64)}], "notes": [string]} (each when there is something) and, in a session,
 *           "interpreter": "new" | "kept", "state": "kept" | "lost", "interrupted": bool,
 *           "end": why it was lost, "previous_end": why the session's last interpreter ended
 *   FILE    u32 big-endian JSON length, then JSON {"path": string (absolute), "size_bytes":
 *           integer, "mime_type": string, "is_dir": bool, "type": string, "mtime_unix_ms":
 *           integer, "mode": integer}, then the file's bytes when data was requested.
 *   FMETA   what an FGET sends first: JSON as FILE's (without the u32 length).
 *   FCHUNK  raw bytes of an FGET, in order.
 *   OK      empty, or a JSON object.
 *   ERROR   JSON {"code": string (OBX_ERR_* wire codes), "message": string}
 */

/*
 * Live terminals (agent-pty.c): an interactive shell on a pseudo-terminal, for a person.
 *
 * Worker -> agent
 *   PTY_OPEN    JSON {"state": string (the terminal state key whose working directory and exported
 *               variables the shell starts with; default "default"), "cols", "rows" (1..1000),
 *               "idle_timeout_ms" (no input for this long closes it; 0 = never), "window" (output
 *               bytes the agent may send ahead of PTY_ACK; default OBX_AGENT_PTY_WINDOW, at most
 *               OBX_AGENT_PTY_MAX_WINDOW)}. Starts bash (sh when the box has no bash) on a new
 *               pseudo-terminal, under a monitor as EXEC does, with the agent's limits. Answers
 *               PTY_EVENT "open", then PTY_OUTPUT frames; ends with EXIT (ERROR when it cannot
 *               start). CANCEL closes it: everything started in it is killed.
 *   PTY_INPUT   raw bytes typed into the terminal (pending input is bounded: beyond
 *               OBX_AGENT_PTY_MAX_INPUT it is dropped).
 *   PTY_RESIZE  4 bytes, big-endian: u16 cols, u16 rows.
 *   PTY_ACK     8 bytes, big-endian: the PTY_OUTPUT bytes the worker has passed on so far.
 *
 * Agent -> worker
 *   PTY_OUTPUT  raw bytes the terminal printed, in order, never more than "window" bytes past the
 *               last PTY_ACK (the shell then blocks on its writes).
 *   PTY_EVENT   JSON, "type" first: "open" {"pid", "shell", "cols", "rows", "idle_timeout_ms"};
 *               and, for each EXEC with "shell" in the same state key (a terminalExec command of
 *               the session), "exec" {"exec": its id, "command"}, "exec_output" {"exec", "stream":
 *               "stdout" | "stderr", "data": text}, at most OBX_AGENT_PTY_MIRROR_LIMIT bytes of it,
 *               and "exec_end" {"exec", "exit_code", "signal", "timed_out", "canceled",
 *               "duration_ms", "dropped_bytes"}.
 *   EXIT        as EXEC's, with "reason": "exited" (the shell ended), "closed" (CANCEL) or
 *               "idle" (no input for idle_timeout_ms).
 */
#ifndef OBX_AGENT_PROTOCOL_H
#define OBX_AGENT_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "common/runtime.h"

#define OBX_AGENT_PROTOCOL_VERSION "1"
#define OBX_AGENT_HEADER_SIZE 9u                /* length + type + id */
#define OBX_AGENT_MAX_FRAME (24u * 1024 * 1024) /* bytes after the length field */
#define OBX_AGENT_OUTPUT_CHUNK (64u * 1024)     /* largest STDOUT/STDERR frame payload */
#define OBX_AGENT_FILE_CHUNK                                             \
    (256u * 1024) /* largest FCHUNK payload (and FDATA the worker sends) \
                   */
#define OBX_AGENT_WORKSPACE OBX_BOX_WORKSPACE
#define OBX_AGENT_PATH_IN_BOX OBX_BOX_AGENT_PATH
#define OBX_AGENT_PTY_WINDOW (256u * 1024) /* PTY_OUTPUT bytes ahead of PTY_ACK */
#define OBX_AGENT_PTY_MAX_WINDOW (4u * 1024 * 1024)
#define OBX_AGENT_PTY_MAX_INPUT (1024u * 1024)   /* PTY_INPUT bytes not yet read by the shell */
#define OBX_AGENT_PTY_MIRROR_LIMIT (256u * 1024) /* of one command's output, per terminal */

enum obx_agent_frame_type {
    OBX_AF_EXEC = 0x01,
    OBX_AF_CANCEL = 0x02,
    OBX_AF_FREAD = 0x03,
    OBX_AF_FWRITE = 0x04,
    OBX_AF_PING = 0x05,
    OBX_AF_FGET = 0x06,
    OBX_AF_FACK = 0x07,
    OBX_AF_FPUT = 0x08,
    OBX_AF_FDATA = 0x09,
    OBX_AF_FEND = 0x0a,
    OBX_AF_FLIST = 0x0b,
    OBX_AF_FDELETE = 0x0c,
    OBX_AF_FMKDIR = 0x0d,
    OBX_AF_PREPARE = 0x0e,
    OBX_AF_PTY_OPEN = 0x20,
    OBX_AF_PTY_INPUT = 0x21,
    OBX_AF_PTY_RESIZE = 0x22,
    OBX_AF_PTY_ACK = 0x23,

    OBX_AF_HELLO = 0x81,
    OBX_AF_STDOUT = 0x82,
    OBX_AF_STDERR = 0x83,
    OBX_AF_EXIT = 0x84,
    OBX_AF_FILE = 0x85,
    OBX_AF_OK = 0x86,
    OBX_AF_ERROR = 0x87,
    OBX_AF_FMETA = 0x88,
    OBX_AF_FCHUNK = 0x89,
    OBX_AF_PTY_OUTPUT = 0xa0,
    OBX_AF_PTY_EVENT = 0xa1,
};

struct obx_agent_frame {
    uint8_t type;
    uint32_t id;
    const uint8_t *payload; /* points into the decoder's buffer; valid until the next call */
    size_t len;
};

/* Writes the 9-byte header for a frame with a payload of len bytes into out. */
void obx_agent_header_encode(uint8_t out[OBX_AGENT_HEADER_SIZE], uint8_t type, uint32_t id,
                             size_t len);

/* Incremental decoder: feed bytes as they arrive, take frames out one by one. */
struct obx_agent_decoder {
    uint8_t *buf;
    size_t len, cap, off;
};

void obx_agent_decoder_init(struct obx_agent_decoder *d);
void obx_agent_decoder_done(struct obx_agent_decoder *d);
/* Appends received bytes; returns 0 or -ENOMEM. */
int obx_agent_decoder_feed(struct obx_agent_decoder *d, const void *data, size_t len);
/* Returns 1 and fills *f when a whole frame is buffered, 0 when more bytes are needed, and
 * -EBADMSG for a frame whose length is below the header or above OBX_AGENT_MAX_FRAME (the stream
 * is then unusable). f stays valid until the next feed/next call. */
int obx_agent_decoder_next(struct obx_agent_decoder *d, struct obx_agent_frame *f);

static inline uint32_t obx_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void obx_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#endif
