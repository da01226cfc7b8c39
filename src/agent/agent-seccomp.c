/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's own seccomp filter, loaded before anything of the box runs and inherited by every
 * process of it, on top of the runtime's: system calls of another ABI than the agent's (i386
 * through int 0x80, x32) kill the process; sockets of AF_VSOCK (the host's and hypervisor's
 * services, which no namespace separates), io_uring, modify_ldt and the terminal ioctls that
 * inject input (TIOCSTI) or reach the console (TIOCLINUX) fail with EPERM. The bubblewrap
 * runtime's filter refuses all of these already; Docker's default profile refuses none of them
 * before Docker 23 to 25, so on such daemons this is what closes them. A few BPF instructions
 * written by hand: the agent links libc only.
 */
#include "agent-internal.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#ifndef AF_VSOCK
#    define AF_VSOCK 40
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#    define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif

#if defined(__x86_64__)
#    define AGENT_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#    define AGENT_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* The low 32 bits of argument i (an int argument's whole value). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#    define ARG_LOW(i) offsetof(struct seccomp_data, args[i])
#else
#    define ARG_LOW(i) (offsetof(struct seccomp_data, args[i]) + 4)
#endif

#define LOAD(off) ((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off)))
#define RET(v) ((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (v)))
#define JEQ(k, jt, jf) ((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (jt), (jf)))
#define JGE(k, jt, jf) ((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (k), (jt), (jf)))

/* System calls refused whatever their arguments. */
static const long denied[] = {
#ifdef SYS_io_uring_setup
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register,
#endif
#ifdef SYS_modify_ldt
    SYS_modify_ldt,
#endif
};

int agent_seccomp_install(void)
{
#ifdef AGENT_AUDIT_ARCH
    struct sock_filter prog[32];
    size_t n = 0;
    prog[n++] = LOAD(offsetof(struct seccomp_data, arch));
    prog[n++] = JEQ(AGENT_AUDIT_ARCH, 1, 0);
    prog[n++] = RET(SECCOMP_RET_KILL_PROCESS);
    prog[n++] = LOAD(offsetof(struct seccomp_data, nr));
#    ifdef __x86_64__
    /* x32 system calls are x86_64's numbers with this bit set, under the same arch. */
    prog[n++] = JGE(0x40000000U, 0, 1);
    prog[n++] = RET(SECCOMP_RET_KILL_PROCESS);
#    endif
    for (size_t i = 0; i < OBX_ARRAY_SIZE(denied); i++) {
        prog[n++] = JEQ(denied[i], 0, 1);
        prog[n++] = RET(SECCOMP_RET_ERRNO | EPERM);
    }
    /* socket(AF_VSOCK, ...); the accumulator holds the number until a branch is taken. */
    prog[n++] = JEQ(SYS_socket, 0, 4);
    prog[n++] = LOAD(ARG_LOW(0));
    prog[n++] = JEQ(AF_VSOCK, 0, 1);
    prog[n++] = RET(SECCOMP_RET_ERRNO | EPERM);
    prog[n++] = RET(SECCOMP_RET_ALLOW);
    /* ioctl(fd, TIOCSTI or TIOCLINUX): the kernel reads the request's low 32 bits. */
    prog[n++] = JEQ(SYS_ioctl, 0, 5);
    prog[n++] = LOAD(ARG_LOW(1));
    prog[n++] = JEQ(TIOCSTI, 1, 0);
    prog[n++] = JEQ(TIOCLINUX, 0, 1);
    prog[n++] = RET(SECCOMP_RET_ERRNO | EPERM);
    prog[n++] = RET(SECCOMP_RET_ALLOW);
    prog[n++] = RET(SECCOMP_RET_ALLOW);
    struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) < 0)
        return -errno;
    return 0;
#else
    return -ENOSYS;
#endif
}
