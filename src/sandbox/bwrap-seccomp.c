/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seccomp filter of every bubblewrap box, built once with libseccomp when the runtime starts
 * and handed to bwrap as a BPF program (--seccomp FD) for each box, which loads it just before it
 * executes the agent: every process of the box runs under it. It is a deny list on top of the
 * box's other walls (no capabilities, own namespaces): system calls that expose kernel surface a
 * sandboxed program has no use for fail with EPERM, so a program sees a clear error instead of
 * being killed. It refuses at least what Docker's default profile refuses to a container without
 * capabilities, plus io_uring, modify_ldt and the sockets of AF_VSOCK. The exceptions to EPERM:
 * clone3 answers ENOSYS (its flags sit in memory a filter cannot read; glibc then falls back to
 * clone, whose namespace flags are checked), and system calls of another ABI than the worker's
 * (i386 through int 0x80, x32) kill the process, since a program of that ABI cannot run anyway.
 * libseccomp stays in this file; the agent does not link it. Read-only after start-up.
 */
#include "bwrap-internal.h"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "common/log.h"

/* A BPF program has at most 4096 instructions of 8 bytes. */
#define BPF_MAX_BYTES (4096 * 8)

#ifndef AF_VSOCK
#    define AF_VSOCK 40
#endif
#ifndef CLONE_NEWCGROUP
#    define CLONE_NEWCGROUP 0x02000000
#endif
/* personality(): the Linux personalities (PER_LINUX, PER_LINUX32) with or without UNAME26 are
 * below or at this value; every flag that weakens a process (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC,
 * MMAP_PAGE_ZERO, ADDR_LIMIT_*, ...) and the query 0xffffffff are above it. */
#define PERSONALITY_MAX_ALLOWED 0x20008

/* Refused outright, with EPERM. Names that do not exist on the worker's architecture are skipped.
 * Keep docs (README "Sandboxes") and tests/security/escape.test.mjs in step with this table. */
static const char *const denied[] = {
    /* kernel keyrings: per-user state shared with the host */
    "add_key",
    "keyctl",
    "request_key",
    /* kernel programs, tracing and memory tricks used by exploits */
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "lookup_dcookie",
    "fanotify_init",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "modify_ldt",
    "iopl",
    "ioperm",
    /* file systems and the mount tree */
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_by_handle_at",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "swapon",
    "swapoff",
    "sysfs",
    "_sysctl",
    "uselib",
    "ustat",
    /* namespaces (clone with namespace flags: below) */
    "unshare",
    "setns",
    /* kernel modules, kexec, reboot */
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    /* host-wide settings */
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "sethostname",
    "setdomainname",
    "syslog",
    "acct",
    "vhangup",
    "vm86",
    "vm86old",
    /* reaching into other processes beyond ptrace's rules, NUMA memory placement */
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "get_mempolicy",
    "set_mempolicy",
    "mbind",
    "migrate_pages",
    "move_pages",
    "set_mempolicy_home_node",
};

/* clone() flags that make a new namespace (CLONE_NEWTIME shares its bit with the exit signal in
 * clone() and works only through unshare/clone3, both refused). */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
};

/* ioctl requests refused: pushing input into a terminal, and the console's selection and
 * keyboard tricks. The request is an unsigned int to the kernel: only the low 32 bits count. */
static const unsigned long denied_ioctls[] = {TIOCSTI, TIOCLINUX};

static int rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                const struct scmp_arg_cmp *cmp, struct obx_error *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* unknown to this libseccomp: not a system call here */
    int r = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (r < 0)
        return obx_error_set(err, -r, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot add the seccomp rule for %s: %s", name, strerror(-r));
    return nr >= 0; /* counted where it exists: a negative number stands for another arch's */
}

/* A comparison with every field set (libseccomp's SCMP_A* macros leave datum_b out, which some
 * compilers warn about). */
static struct scmp_arg_cmp arg_cmp(unsigned arg, enum scmp_compare op, scmp_datum_t a,
                                   scmp_datum_t b)
{
    return (struct scmp_arg_cmp){.arg = arg, .op = op, .datum_a = a, .datum_b = b};
}

static int add_rules(scmp_filter_ctx ctx, unsigned *count, struct obx_error *err)
{
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    int r;
    *count = 0;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(denied); i++) {
        if ((r = rule(ctx, eperm, denied[i], 0, NULL, err)) < 0)
            return r;
        *count += (unsigned)r;
    }
    for (size_t i = 0; i < OBX_ARRAY_SIZE(clone_ns_flags); i++) {
        struct scmp_arg_cmp c =
            arg_cmp(0, SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]);
        if ((r = rule(ctx, eperm, "clone", 1, &c, err)) < 0)
            return r;
    }
    if ((r = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err)) < 0)
        return r;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(denied_ioctls); i++) {
        struct scmp_arg_cmp c = arg_cmp(1, SCMP_CMP_MASKED_EQ, 0xffffffffu, denied_ioctls[i]);
        if ((r = rule(ctx, eperm, "ioctl", 1, &c, err)) < 0)
            return r;
    }
    struct scmp_arg_cmp pers = arg_cmp(0, SCMP_CMP_GT, PERSONALITY_MAX_ALLOWED, 0);
    if ((r = rule(ctx, eperm, "personality", 1, &pers, err)) < 0)
        return r;
    struct scmp_arg_cmp vsock = arg_cmp(0, SCMP_CMP_EQ, AF_VSOCK, 0);
    if ((r = rule(ctx, eperm, "socket", 1, &vsock, err)) < 0)
        return r;
    *count += 5; /* clone's namespaces, clone3, the ioctls, personality, socket */
    return 0;
}

static void ctx_freep(scmp_filter_ctx *ctx)
{
    if (*ctx)
        seccomp_release(*ctx);
}

int obx_bwrap_seccomp_init(struct obx_bwrap_runtime *b, struct obx_error *err)
{
    _cleanup_(ctx_freep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return obx_error_set(err, ENOMEM, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot create a seccomp filter (libseccomp)");
    /* Only the native ABI: i386 and x32 system calls end the process (kernels before 4.14 know
     * no process-wide kill; there the thread is killed). */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0)
        (void)seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL);
    /* A binary tree instead of a list: every allowed call walks the filter. Best effort. */
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    int r = add_rules(ctx, &b->seccomp_rules, err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = memfd_create("onlyboxes-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "memfd_create: %s",
                             strerror(errno));
    r = seccomp_export_bpf(ctx, fd);
    off_t len = lseek(fd, 0, SEEK_CUR);
    if (r < 0 || len <= 0 || len > BPF_MAX_BYTES || len % 8 != 0)
        return obx_error_set(err, r < 0 ? -r : EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot export the seccomp filter (%s, %lld bytes)",
                             r < 0 ? strerror(-r) : "bad size", (long long)len);
    b->seccomp_bpf = obx_xmalloc((size_t)len);
    if (pread(fd, b->seccomp_bpf, (size_t)len, 0) != len) {
        free(b->seccomp_bpf);
        b->seccomp_bpf = NULL;
        return obx_error_set(err, EIO, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot read back the seccomp filter");
    }
    b->seccomp_len = (size_t)len;
    obx_debug("sandbox: seccomp filter of %zu BPF instructions, %u rules", b->seccomp_len / 8,
              b->seccomp_rules);
    return 0;
}

int obx_bwrap_data_fd(const char *name, const void *data, size_t len, int *ret)
{
    /* A memory file rather than a pipe: a pipe of a user over its pipe quota holds one page,
     * and a write beyond it would wait for a reader that only comes after we return. */
    _cleanup_close_ int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = obx_write_all(fd, data, len);
    if (r < 0)
        return r;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    *ret = TAKE_FD(fd);
    return 0;
}
