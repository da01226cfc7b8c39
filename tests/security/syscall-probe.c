/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A probe for the security suite (syscalls.test.mjs): makes each system call a box's seccomp
 * filter should refuse and prints one line per call, "name=ok" or "name=<errno name or number>".
 * Built on the host by the test without any libc (-nostdlib -static, x86_64 only), so the same
 * few kilobytes run in any image, with every call made directly, nothing in between. The
 * arguments are harmless should a call go through: queries, objects that die with the process, a
 * bad fd. `syscall-probe control` makes only the calls an unprivileged user may make on a host
 * without a filter, for the test to run on the host first: in the box they then fail only because
 * of the filter. `syscall-probe int80` makes one call through the i386 ABI (int 0x80).
 */
#include <asm/unistd.h>

typedef unsigned long u64;

static long sys(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static long int80_getpid(void)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "rbx", "rcx", "rdx", "r8", "r9", "r10",
                     "r11", "memory");
    return ret;
}

static unsigned long len(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

static void out(const char *s)
{
    sys(__NR_write, 1, (long)s, (long)len(s), 0, 0, 0);
}

static const char *errname(long e)
{
    switch (e) {
    case 1: return "EPERM";
    case 2: return "ENOENT";
    case 9: return "EBADF";
    case 14: return "EFAULT";
    case 22: return "EINVAL";
    case 25: return "ENOTTY";
    case 28: return "ENOSPC";
    case 38: return "ENOSYS";
    case 97: return "EAFNOSUPPORT";
    default: return 0;
    }
}

static void report(const char *name, long r)
{
    char num[24];
    out(name);
    out("=");
    if (r >= 0) {
        out("ok\n");
        return;
    }
    const char *e = errname(-r);
    if (!e) {
        int i = sizeof(num) - 1;
        num[i] = '\0';
        for (unsigned long v = (unsigned long)-r; v || i == sizeof(num) - 1; v /= 10)
            num[--i] = (char)('0' + v % 10);
        e = num + i;
    }
    out(e);
    out("\n");
}

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

#define CLONE_NEWNS 0x00020000L
#define CLONE_NEWUSER 0x10000000L
#define SIGCHLD 17L
#define TIOCSTI 0x5412L
#define TIOCLINUX 0x541CL
#define ADDR_NO_RANDOMIZE 0x0040000L

static u64 zero[64]; /* attribute and parameter blocks, all zero */

/* Calls an unprivileged user may make on a host without a filter. */
static void unprivileged(void)
{
    /* keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING), add_key to the process keyring */
    report("keyctl", sys(__NR_keyctl, 0, -3, 0, 0, 0, 0));
    report("add_key", sys(__NR_add_key, (long)"user", (long)"obx-probe", (long)"x", 1, -2, 0));
    /* userfaultfd(UFFD_USER_MODE_ONLY), io_uring_setup(1 entry) */
    report("userfaultfd", sys(__NR_userfaultfd, 1, 0, 0, 0, 0, 0));
    report("io_uring_setup", sys(__NR_io_uring_setup, 1, (long)zero, 0, 0, 0, 0));
    /* perf_event_open: a software clock on this process, user space only */
    static u64 attr[16];
    attr[0] = (64UL << 32) | 1;        /* size 64, PERF_TYPE_SOFTWARE */
    attr[1] = 1;                       /* PERF_COUNT_SW_TASK_CLOCK */
    attr[5] = (1UL << 5) | (1UL << 6); /* exclude_kernel, exclude_hv */
    report("perf_event_open", sys(__NR_perf_event_open, (long)attr, 0, -1, -1, 0, 0));
    report("personality", sys(__NR_personality, ADDR_NO_RANDOMIZE, 0, 0, 0, 0, 0));
    sys(__NR_personality, 0, 0, 0, 0, 0, 0);
    /* kcmp(self, self, KCMP_VM), get_mempolicy, modify_ldt read, open_tree("/") */
    long self = sys(__NR_getpid, 0, 0, 0, 0, 0, 0);
    report("kcmp", sys(__NR_kcmp, self, self, 1, 0, 0, 0));
    report("get_mempolicy", sys(__NR_get_mempolicy, 0, 0, 0, 0, 0, 0));
    report("modify_ldt", sys(__NR_modify_ldt, 0, (long)zero, 0, 0, 0, 0));
    report("open_tree", sys(__NR_open_tree, -100 /* AT_FDCWD */, (long)"/", 0, 0, 0, 0));
}

static void privileged(void)
{
    long pid = sys(__NR_getpid, 0, 0, 0, 0, 0, 0);
    report("request_key",
           sys(__NR_request_key, (long)"user", (long)"obx-probe-none", 0, -2, 0, 0));
    report("bpf", sys(__NR_bpf, 0, (long)zero, 72, 0, 0, 0));
    report("setns", sys(__NR_setns, -1, 0, 0, 0, 0, 0));
    report("unshare_user", sys(__NR_unshare, CLONE_NEWUSER, 0, 0, 0, 0, 0));
    report("unshare_mount", sys(__NR_unshare, CLONE_NEWNS, 0, 0, 0, 0, 0));
    long c = sys(__NR_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0, 0);
    if (c == 0)
        sys(__NR_exit_group, 0, 0, 0, 0, 0, 0); /* the child, should the filter be missing */
    if (c > 0)
        sys(__NR_wait4, c, 0, 0, 0, 0, 0);
    report("clone_newuser", c);
    report("clone3", sys(__NR_clone3, 0, 0, 0, 0, 0, 0));
    report("mount", sys(__NR_mount, (long)"none", (long)"/tmp", (long)"tmpfs", 0, 0, 0));
    report("umount2", sys(__NR_umount2, (long)"/tmp", 0, 0, 0, 0, 0));
    report("pivot_root", sys(__NR_pivot_root, (long)"/tmp", (long)"/tmp", 0, 0, 0, 0));
    report("chroot", sys(__NR_chroot, (long)"/", 0, 0, 0, 0, 0));
    report("fsopen", sys(__NR_fsopen, (long)"tmpfs", 0, 0, 0, 0, 0));
    report("fspick", sys(__NR_fspick, -100, (long)"/", 0, 0, 0, 0));
    report("move_mount", sys(__NR_move_mount, -1, (long)"", -1, (long)"", 0, 0));
    report("mount_setattr", sys(__NR_mount_setattr, -1, (long)"", 0, 0, 0, 0));
    report("init_module", sys(__NR_init_module, 0, 0, (long)"", 0, 0, 0));
    report("finit_module", sys(__NR_finit_module, -1, (long)"", 0, 0, 0, 0));
    report("delete_module", sys(__NR_delete_module, (long)"obx_none", 0, 0, 0, 0, 0));
    report("kexec_load", sys(__NR_kexec_load, 0, 0, 0, 0, 0, 0));
    report("kexec_file_load", sys(__NR_kexec_file_load, -1, -1, 0, 0, 0, 0));
    report("reboot", sys(__NR_reboot, 0, 0, 0, 0, 0, 0));
    report("swapon", sys(__NR_swapon, (long)"/nonexistent", 0, 0, 0, 0, 0));
    report("swapoff", sys(__NR_swapoff, (long)"/nonexistent", 0, 0, 0, 0, 0));
    report("settimeofday", sys(__NR_settimeofday, 0, 0, 0, 0, 0, 0));
    report("clock_settime", sys(__NR_clock_settime, 0, 0, 0, 0, 0, 0));
    report("sethostname", sys(__NR_sethostname, (long)"x", 1, 0, 0, 0, 0));
    report("syslog", sys(__NR_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, 0, 0, 0, 0, 0));
    report("acct", sys(__NR_acct, 0, 0, 0, 0, 0, 0));
    report("vhangup", sys(__NR_vhangup, 0, 0, 0, 0, 0, 0));
    report("open_by_handle_at", sys(__NR_open_by_handle_at, -1, (long)zero, 0, 0, 0, 0));
    report("iopl", sys(__NR_iopl, 0, 0, 0, 0, 0, 0));
    report("ioperm", sys(__NR_ioperm, 0, 0, 0, 0, 0, 0));
    report("pidfd_getfd", sys(__NR_pidfd_getfd, -1, 0, 0, 0, 0, 0));
    report("process_madvise", sys(__NR_process_madvise, -1, 0, 0, 0, 0, 0));
    report("set_mempolicy", sys(__NR_set_mempolicy, 0, 0, 0, 0, 0, 0));
    report("mbind", sys(__NR_mbind, 0, 0, 0, 0, 0, 0));
    report("move_pages", sys(__NR_move_pages, pid, 0, 0, 0, 0, 0));
    report("migrate_pages", sys(__NR_migrate_pages, pid, 0, 0, 0, 0, 0));
    report("quotactl", sys(__NR_quotactl, 0, 0, 0, 0, 0, 0));
    report("fanotify_init", sys(__NR_fanotify_init, 0, 0, 0, 0, 0, 0));
    report("lookup_dcookie", sys(__NR_lookup_dcookie, 0, 0, 0, 0, 0, 0));
    report("sysfs", sys(__NR_sysfs, 3, 0, 0, 0, 0, 0));
    report("ustat", sys(__NR_ustat, 0, (long)zero, 0, 0, 0, 0));
    report("io_uring_enter", sys(__NR_io_uring_enter, -1, 0, 0, 0, 0, 0));
    report("io_uring_register", sys(__NR_io_uring_register, -1, 0, 0, 0, 0, 0));
    report("vsock", sys(__NR_socket, 40 /* AF_VSOCK */, 1, 0, 0, 0, 0));
    report("tiocsti", sys(__NR_ioctl, 0, TIOCSTI, (long)"x", 0, 0, 0));
    /* The request is 32 bits to the kernel: high bits must not slip past the filter. */
    report("tiocsti_high", sys(__NR_ioctl, 0, TIOCSTI | (1L << 32), (long)"x", 0, 0, 0));
    report("tioclinux", sys(__NR_ioctl, 0, TIOCLINUX, (long)zero, 0, 0, 0));
    /* Still allowed: the Linux personality, and ordinary calls. */
    report("personality_linux", sys(__NR_personality, 0, 0, 0, 0, 0, 0));
    report("getpid", pid);
}

void _start(void);
__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall probe_main\n\thlt\n");

__attribute__((used)) void probe_main(long *sp)
{
    long argc = sp[0];
    const char *mode = argc > 1 ? (const char *)sp[2] : "";
    if (streq(mode, "int80")) {
        report("int80_getpid", int80_getpid());
    } else {
        unprivileged();
        if (!streq(mode, "control"))
            privileged();
    }
    sys(__NR_exit_group, 0, 0, 0, 0, 0, 0);
}
