/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between the files of the bubblewrap runtime: bwrap.c (finding and probing bwrap,
 * building its arguments, start/stop), bwrap-spawn.c (running processes), bwrap-state.c (the
 * state directory, box directories, owner records, safe removal and stale-box cleanup),
 * bwrap-cgroup.c, bwrap-uid.c (host uids of a root worker's boxes) and bwrap-seccomp.c (the
 * boxes' system call filter). Not for use outside src/sandbox/.
 */
#ifndef OBX_SANDBOX_BWRAP_INTERNAL_H
#define OBX_SANDBOX_BWRAP_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <sys/types.h>

#include "sandbox.h"

#define OBX_BWRAP_BOX_PREFIX "obx-"
#define OBX_BWRAP_ID_HEX_BYTES 8 /* 16 hex characters after the prefix */
#define OBX_BWRAP_ID_LEN (sizeof(OBX_BWRAP_BOX_PREFIX) - 1 + 2 * OBX_BWRAP_ID_HEX_BYTES)
/* A box's bwrap runs with "--unsetenv OBX_BWRAP_MARKER<id>": a no-op inside the box, but it names
 * the box in the command line of bwrap's processes, so that a later life of the worker finds them
 * when the box's pids were never recorded (killed while the box started). */
#define OBX_BWRAP_MARKER "ONLYBOXES_BOX_"
/* Longest state directory we accept, so every path below it fits in PATH_MAX. */
#define OBX_BWRAP_STATE_DIR_MAX 3072
#define OBX_BWRAP_MAX_MOUNTS 64 /* system directories and /etc entries */
#define OBX_BWRAP_MAX_ARGS 256
#define OBX_BWRAP_LABEL_MAX 256    /* worker id and session label in the owner file */
#define OBX_BWRAP_RECORD_MAX 4096  /* owner and pids files */
#define OBX_BWRAP_RM_MAX_DEPTH 32  /* deeper trees are moved up instead of held open */
#define OBX_BWRAP_YOUNG_BOX_SEC 60 /* a box dir without an owner file may still be in creation */
#define OBX_BWRAP_BOX_MAGIC 0x62777270u

/* The fds a box's bwrap gets: its info pipe, then files it reads (--seccomp, --ro-bind-data). */
enum {
    OBX_BWRAP_FD_INFO = 3,
    OBX_BWRAP_FD_SECCOMP,
    OBX_BWRAP_FD_PASSWD,
    OBX_BWRAP_FD_GROUP,
    OBX_BWRAP_FD_AGENT,
    OBX_BWRAP_SPAWN_FDS /* how many fds a spawn sets up, 0.. */
};

enum obx_bwrap_mount_kind {
    OBX_BWRAP_RO_BIND, /* --ro-bind src dst */
    OBX_BWRAP_SYMLINK, /* --symlink src(target) dst */
};

struct obx_bwrap_mount {
    enum obx_bwrap_mount_kind kind;
    char *src;
    char *dst;
};

struct obx_bwrap_runtime {
    struct obx_runtime rt; /* first member: rt pointers are cast back to this */
    char *bwrap_path;
    char *agent_path; /* the agent, whose --exec-as step drops a root worker's boxes' ids */
    char version[32];
    int version_num; /* major * 10000 + minor * 100 + patch */
    char *state_dir;
    char *boxes_dir; /* <state_dir>/boxes */
    int boxes_fd;    /* O_DIRECTORY of boxes_dir */
    struct obx_bwrap_mount mounts[OBX_BWRAP_MAX_MOUNTS];
    size_t n_mounts;
    char *cgroup_dir;        /* <pids cgroup>/onlyboxes, where each box gets one; NULL: none */
    char *memory_cgroup_dir; /* <memory cgroup>/onlyboxes (v2: = cgroup_dir); NULL: none */
    /* Every box this process has (being started or running), so that remove_own() can tear
     * them all down when the process goes away on a signal. Under own_lock. */
    pthread_mutex_t own_lock;
    pthread_cond_t own_cond;
    struct obx_bwrap_own *own;
    unsigned starting;       /* starts in progress; remove_own() waits for them */
    unsigned removing;       /* bwrap_stop()s in progress; remove_own() waits for them too */
    bool stopping;           /* remove_own() ran: no new box starts */
    uint32_t host_uid_first; /* root worker: each box's bwrap runs as a host uid of */
    uint32_t host_uid_count; /* [first, first + count); 0: as the worker's own uid */
    uint8_t *seccomp_bpf;    /* the boxes' seccomp filter, a BPF program for bwrap --seccomp */
    size_t seccomp_len;
    unsigned seccomp_rules; /* system calls (or call patterns) it refuses */
};

/* A box of this process as remove_own() needs it: copies, as the handle may be freed any time. */
struct obx_bwrap_own {
    char id[OBX_BWRAP_ID_LEN + 1];
    pid_t bwrap_pid; /* 0 until spawned */
    pid_t child_pid; /* 0 until known */
    unsigned long long child_start;
    struct obx_bwrap_own *next;
};

/* Per-box state behind obx_box_handle.priv. */
struct obx_bwrap_box {
    unsigned magic;
    char dir[PATH_MAX];       /* <boxes_dir>/<id> */
    char workspace[PATH_MAX]; /* <dir>/workspace */
    pid_t bwrap_pid;
    pid_t child_pid; /* host pid of the box's PID 1, 0 if unknown */
    unsigned long long child_start;
    uid_t host_uid; /* the host uid the box runs as, 0: the worker's own */
    int uid_lock;   /* holds host_uid for this box (bwrap-uid.c); -1 without one */
};

/* The box's /etc/passwd and /etc/group (bwrap-state.c). */
extern const char obx_bwrap_box_passwd[];
extern const char obx_bwrap_box_group[];

/* What posix_spawn wires up (bwrap-spawn.c): fd[i] becomes fd i of the child; -1 gives /dev/null
 * for 0 and 1, the caller's stderr for 2, and nothing above. The child starts in a process group
 * of its own with default signal dispositions and an empty environment. */
struct obx_bwrap_spawn {
    int fd[OBX_BWRAP_SPAWN_FDS];
};

static inline void obx_bwrap_spawn_init(struct obx_bwrap_spawn *sp)
{
    for (size_t i = 0; i < OBX_BWRAP_SPAWN_FDS; i++)
        sp->fd[i] = -1;
}

int obx_bwrap_spawn(const char *path, const char *const argv[], const struct obx_bwrap_spawn *sp,
                    pid_t *ret);

/* Runs argv with stdout and stderr captured into out (truncated to size) and sp's fds above 2, up
 * to timeout_ms. Returns 0 with the wait status in *status, or a negative errno. */
int obx_bwrap_run_capture(const char *path, const char *const argv[],
                          const struct obx_bwrap_spawn *sp, char *out, size_t size, int timeout_ms,
                          int *status);

/* SIGKILLs the process group pid leads and pid, and reaps pid. */
void obx_bwrap_kill_and_reap(pid_t pid);

/* Parses and checks ONLYBOXES_BWRAP_HOST_UIDS (configured; NULL or "" for the default range) and,
 * for a root worker, prepares the lock; an ordinary user's worker keeps host_uid_count 0. */
int obx_bwrap_uids_init(struct obx_bwrap_runtime *b, const char *configured, struct obx_error *err);

/* Takes a free host uid for a box: *ret and the fd holding it (close it once the box is gone).
 * Without host uids *ret is 0 and *ret_lock -1. */
int obx_bwrap_uid_acquire(struct obx_bwrap_runtime *b, uid_t *ret, int *ret_lock,
                          struct obx_error *err);

/* Whether every user can reach and execute the file at path (each directory on the way o+x). */
bool obx_bwrap_path_public(const char *path);

/* "host uids A-B, one per box" or "the worker's uid U". */
void obx_bwrap_describe_uids(const struct obx_bwrap_runtime *b, char *buf, size_t size);

/* Builds the boxes' seccomp filter into b->seccomp_bpf. */
int obx_bwrap_seccomp_init(struct obx_bwrap_runtime *b, struct obx_error *err);

/* A new memory file holding data, positioned at its start, for bwrap to read: *ret (O_CLOEXEC). */
int obx_bwrap_data_fd(const char *name, const void *data, size_t len, int *ret);

/* Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat). Returns 0,
 * -ESRCH when the process is gone, or another negative errno. */
int obx_bwrap_proc_start_time(pid_t pid, unsigned long long *ret);

/* Resolves, creates and checks the state directory and its boxes/ subdirectory. */
int obx_bwrap_state_open(struct obx_bwrap_runtime *b, const char *configured,
                         struct obx_error *err);

/* Creates <boxes>/<id>/ with its owner file and workspace/; fills box paths. */
int obx_bwrap_box_create(struct obx_bwrap_runtime *b, const struct obx_box_spec *spec,
                         const char *id, struct obx_bwrap_box *box, struct obx_error *err);

/* Records the bwrap pid and the box's PID 1 (with start times) for a later cleanup_stale(). */
int obx_bwrap_box_record_pids(struct obx_bwrap_runtime *b, const char *id, pid_t bwrap_pid,
                              pid_t child_pid);

/* Removes <boxes>/<id> and everything in it without following symlinks. */
int obx_bwrap_box_remove(struct obx_bwrap_runtime *b, const char *id);

/* Removes the entry name below dirfd recursively; never follows symlinks, makes unreadable
 * directories readable first. Returns 0 (also when it did not exist) or a negative errno. */
int obx_bwrap_rm_tree(int dirfd, const char *name);

/* SIGKILLs pid if it is still the process recorded (same start time, argv[0] ending in
 * want_argv0_suffix). Returns true when a signal was sent. */
bool obx_bwrap_kill_if_same(pid_t pid, unsigned long long start, const char *want_argv0_suffix);

/* Finds or creates the pids cgroup boxes go below (bwrap-cgroup.c); leaves cgroup_dir NULL, with a
 * warning when running as root, where none can be had. */
void obx_bwrap_cgroup_init(struct obx_bwrap_runtime *b);

/* Puts pid (the box's PID 1, before it starts anything) into new cgroups for box id with
 * pids.max = max_pids and a memory limit of max_memory bytes (each where the runtime has that
 * controller). 0 without cgroups; a negative errno if a move failed. */
int obx_bwrap_cgroup_attach(struct obx_bwrap_runtime *b, const char *id, pid_t pid,
                            uint32_t max_pids, uint64_t max_memory);

/* Removes box id's cgroup, once its processes are gone. */
void obx_bwrap_cgroup_remove(struct obx_bwrap_runtime *b, const char *id);

/* runtime->cleanup_stale */
int obx_bwrap_cleanup_stale(struct obx_runtime *rt, struct obx_error *err);

#endif
