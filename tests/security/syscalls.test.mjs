// SPDX-License-Identifier: Apache-2.0
// The layer under the box's walls, for when a kernel bug or a mistake lets a process out: who a
// box's processes are on the host, and which system calls they may make. Checked from the host
// (every process of the box in its /proc: its real uid, Seccomp: 2) and from inside, with a C
// program that makes each refused call directly (tests/security/syscall-probe.c, built here
// without a libc so it runs in any image) and with Python. Calls that an unprivileged user may make
// on a host without a filter are made on the host first, as a control: in the box they fail only
// because of the filter. Runs on the runtime named by ONLYBOXES_RUNTIME (bubblewrap when unset).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ON_DOCKER, RUNTIME, closeAndCheck, nsProcesses, serverTest, sessionNs, startSecServer } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Host uids of a root worker's bubblewrap boxes (ONLYBOXES_BWRAP_HOST_UIDS' default). */
const HOST_UIDS = [1879048192, 1879113727];
/** The docker runtime's default box user (ONLYBOXES_DOCKER_USER). */
const DOCKER_UID = 65532;

/** What the probe's calls must give in a box: the filter's EPERM, clone3's ENOSYS (glibc then
 * falls back to clone) and two calls that stay allowed. */
const EXPECTED = {
  ...Object.fromEntries(
    [
      'keyctl', 'add_key', 'userfaultfd', 'io_uring_setup', 'perf_event_open', 'personality', 'kcmp',
      'get_mempolicy', 'modify_ldt', 'open_tree', 'request_key', 'bpf', 'setns', 'unshare_user',
      'unshare_mount', 'clone_newuser', 'mount', 'umount2', 'pivot_root', 'chroot', 'fsopen', 'fspick',
      'move_mount', 'mount_setattr', 'init_module', 'finit_module', 'delete_module', 'kexec_load',
      'kexec_file_load', 'reboot', 'swapon', 'swapoff', 'settimeofday', 'clock_settime', 'sethostname',
      'syslog', 'acct', 'vhangup', 'open_by_handle_at', 'iopl', 'ioperm', 'pidfd_getfd',
      'process_madvise', 'set_mempolicy', 'mbind', 'move_pages', 'migrate_pages', 'quotactl',
      'fanotify_init', 'lookup_dcookie', 'sysfs', 'ustat', 'io_uring_enter', 'io_uring_register',
      'tiocsti', 'tiocsti_high', 'tioclinux',
    ].map((n) => [n, 'EPERM']),
  ),
  clone3: 'ENOSYS',
  personality_linux: 'ok',
  getpid: 'ok',
};
/** Docker boxes run under the daemon's default profile, which (before Docker 25) allows io_uring,
 * modify_ldt and every ioctl; the agent's own filter refuses those there, so the same is expected
 * on both runtimes. */
const expected = EXPECTED;

let srv = null;
let session = null;

/**
 * pythonExec of code in a pooled box whose interpreter was prepared before the call (it had the
 * preload imported: the pool fills in the background, and a call that finds it empty runs cold,
 * so this calls again until one ran prepared). Returns its structuredContent.
 */
async function preparedCall(code) {
  const deadline = Date.now() + 100_000;
  while (Date.now() < deadline) {
    const r = await srv.ok('pythonExec', { code: `import sys as _s\n_warm = "pandas" in _s.modules\n${code}\nprint("warm", _warm)` });
    if (r.output.endsWith('warm True\n')) {
      r.output = r.output.slice(0, -'warm True\n'.length);
      return r;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.fail('no pythonExec call ran in a prepared interpreter');
}
const namespaces = new Set();
const server = () => srv;
let probe = null; // {b64, why}: the probe binary in base64, or why it could not be built

function buildProbe() {
  if (process.arch !== 'x64') return { why: `the probe is written for x86_64, not ${process.arch}` };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'obx-probe-'));
  try {
    const bin = path.join(dir, 'probe');
    const cc = spawnSync(
      'cc',
      ['-Os', '-static', '-nostdlib', '-ffreestanding', '-fno-stack-protector', '-fno-pie', '-no-pie',
        '-fno-asynchronous-unwind-tables', '-Wl,--build-id=none', '-s', '-o', bin, path.join(here, 'syscall-probe.c')],
      { encoding: 'utf8' },
    );
    if (cc.error?.code === 'ENOENT') return { why: 'no C compiler (cc) on this host' };
    assert.equal(cc.status, 0, `cc failed: ${cc.stderr}`);
    return { bin, dir, b64: readFileSync(bin).toString('base64') };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

before(async () => {
  probe = buildProbe();
  srv = await startSecServer();
  session = (await srv.sh('true')).session_id;
  namespaces.add(await sessionNs(srv, session));
  if (probe.b64) {
    const put = await sh(`echo '${probe.b64}' | base64 -d > /tmp/probe && chmod +x /tmp/probe`);
    assert.equal(put.exit_code, 0, `cannot put the probe into the box: ${describeRun(put)}`);
  }
});
after(async () => {
  if (probe?.dir) rmSync(probe.dir, { recursive: true, force: true });
  if (srv) await closeAndCheck(srv, [...namespaces]);
});

function sh(command, extra = {}) {
  return srv.sh(command, { session_id: session, ...extra });
}

function describeRun(r) {
  return JSON.stringify(r).slice(0, 2000);
}

/** "name=value" lines as an object. */
function results(stdout) {
  return Object.fromEntries([...stdout.matchAll(/^(\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
}

/** A field of /proc/<pid>/status, or null when the process is gone. */
function status(pid, field) {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s*(.*)$`, 'm'))?.[1] ?? null;
  } catch {
    return null;
  }
}

describe(`system calls and host ids (${RUNTIME})`, () => {
  serverTest("from the host, no process of a box is root, and each runs under a seccomp filter", { server }, async () => {
    const ns = await sessionNs(srv, session);
    await sh('sleep 30 >/dev/null 2>&1 &');
    const procs = nsProcesses(ns);
    assert.ok(procs.length >= 2, `control: the host sees the box's processes: ${JSON.stringify(procs)}`);
    const uids = new Set();
    for (const p of procs) {
      const uid = status(p.pid, 'Uid');
      const seccomp = status(p.pid, 'Seccomp');
      if (uid === null) continue; // exited meanwhile
      const ids = uid.split(/\s+/).map(Number);
      assert.equal(new Set(ids).size, 1, `${p.comm} (${p.pid}): real, effective, saved and fs uid differ: ${uid}`);
      assert.notEqual(ids[0], 0, `${p.comm} (${p.pid}) runs as the host's root`);
      assert.equal(seccomp, '2', `${p.comm} (${p.pid}): Seccomp ${seccomp}`);
      uids.add(ids[0]);
    }
    assert.equal(uids.size, 1, `the box's processes run as several host uids: ${[...uids]}`);
    const [uid] = uids;
    if (ON_DOCKER) assert.equal(uid, DOCKER_UID);
    else if (process.getuid() === 0) assert.ok(uid >= HOST_UIDS[0] && uid <= HOST_UIDS[1], `host uid ${uid} is outside the range`);
    else assert.equal(uid, process.getuid());
    const inside = await sh("grep -E '^(Uid|Seccomp):' /proc/self/status | tr -s ' \\t' ' '");
    assert.equal(inside.stdout, 'Uid: 65532 65532 65532 65532\nSeccomp: 2\n', describeRun(inside));
    await sh('pkill sleep');
  });

  // Docker boxes all run as the configured user (ONLYBOXES_DOCKER_USER): bubblewrap only.
  if (!ON_DOCKER) {
    serverTest('two boxes run as different host uids (under a root worker)', {
      server,
      skip: process.getuid() !== 0 && "an ordinary user's boxes all run as that user",
    }, async () => {
      const other = await srv.sh('true');
      const ns = await sessionNs(srv, other.session_id);
      namespaces.add(ns);
      const uidOf = (n) => Number(status(nsProcesses(n)[0].pid, 'Uid').split(/\s+/)[0]);
      assert.notEqual(uidOf(ns), uidOf(await sessionNs(srv, session)));
    });
  }

  serverTest('refused system calls fail with EPERM, made directly from C', {
    server,
    skip: probe?.why ?? false,
  }, async () => {
    // The control: on the host, without a filter, these calls go through.
    const control = results(spawnSync(probe.bin, ['control'], { encoding: 'utf8' }).stdout);
    for (const name of ['keyctl', 'add_key', 'personality', 'kcmp', 'get_mempolicy', 'open_tree']) {
      assert.equal(control[name], 'ok', `control: ${name} works on the host: ${JSON.stringify(control)}`);
    }
    const r = await sh('/tmp/probe </dev/null');
    assert.equal(r.exit_code, 0, describeRun(r));
    const got = results(r.stdout);
    const wrong = Object.entries(expected).filter(([n, v]) => got[n] !== v);
    assert.deepEqual(wrong.map(([n, v]) => `${n}: ${got[n]} (want ${v})`), [], r.stdout);
  });

  // vsock is not namespaced: on a virtual machine it reaches the hypervisor's and the host's
  // services from any network namespace. The agent's own filter refuses it on every runtime
  // (Docker's default profile allows it before Docker 23).
  serverTest('AF_VSOCK sockets (host and hypervisor services) are refused', {
    server,
    skip: probe?.why ?? false,
  }, async () => {
    const r = await sh(`/tmp/probe | grep ^vsock=; python3 -c 'import socket; socket.socket(40, socket.SOCK_STREAM)' 2>&1 | tail -n 1`);
    assert.equal(r.stdout, 'vsock=EPERM\nPermissionError: [Errno 1] Operation not permitted\n', describeRun(r));
  });

  serverTest('the i386 system call ABI (int 0x80) is closed', {
    server,
    skip: probe?.why ?? false,
  }, async () => {
    const host = spawnSync(probe.bin, ['int80'], { encoding: 'utf8' });
    assert.equal(host.stdout, 'int80_getpid=ok\n', `control: the host runs i386 system calls: ${host.stdout}`);
    const r = await sh('/tmp/probe int80; echo "exit=$?"');
    // Killed by SIGSYS (31): the shell reports 128 + 31, and the call never returned.
    assert.equal(r.stdout, 'exit=159\n', describeRun(r));
  });

  serverTest('refused system calls fail with EPERM from Python', {
    server,
    skip: process.arch !== 'x64' && `the system call numbers below are x86_64's, not ${process.arch}'s`,
  }, async () => {
    const code = [
      'import ctypes, errno, fcntl, os, termios',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'def c(name, rv):',
      '    e = ctypes.get_errno()',
      '    print(name + "=" + (errno.errorcode.get(e, str(e)) if rv < 0 else "ok"))',
      'def py(name, f):',
      '    try:',
      '        f()',
      '        print(name + "=ok")',
      '    except OSError as e:',
      '        print(name + "=" + errno.errorcode.get(e.errno, str(e.errno)))',
      'c("keyctl", libc.syscall(250, 0, -3, 0))',
      'c("add_key", libc.syscall(248, b"user", b"obx", b"x", 1, -2))',
      'c("request_key", libc.syscall(249, b"user", b"obx-none", None, -2))',
      'c("bpf", libc.syscall(321, 0, None, 0))',
      'c("perf_event_open", libc.syscall(298, None, 0, -1, -1, 0))',
      'c("userfaultfd", libc.syscall(323, 1))',
      'c("io_uring_setup", libc.syscall(425, 1, None))',
      'c("kexec_load", libc.syscall(246, 0, 0, None, 0))',
      'c("init_module", libc.syscall(175, None, 0, b""))',
      'c("delete_module", libc.syscall(176, b"obx_none", 0))',
      'c("setns", libc.setns(-1, 0))',
      'c("unshare", libc.unshare(0x10000000))',
      'c("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))',
      'c("umount2", libc.umount2(b"/tmp", 0))',
      'c("swapon", libc.swapon(b"/nonexistent", 0))',
      'c("sethostname", libc.sethostname(b"x", 1))',
      'c("personality", libc.personality(0x0040000))',
      'py("chroot", lambda: os.chroot("/"))',
      'py("tiocsti", lambda: fcntl.ioctl(0, termios.TIOCSTI, b"x"))',
    ].join('\n');
    const judge = (stdout, where) => {
      const got = results(stdout);
      const names = [...stdout.matchAll(/^(\w+)=/gm)].map((m) => m[1]);
      assert.equal(names.length, 19, `every call reported (${where}): ${stdout}`);
      const wrong = names.filter((n) => got[n] !== 'EPERM');
      assert.deepEqual(wrong.map((n) => `${n}: ${got[n]}`), [], `${where}: ${stdout}`);
    };
    const r = await sh(`python3 - <<'OBX_PY_END'\n${code}\nOBX_PY_END`);
    assert.equal(r.exit_code, 0, describeRun(r));
    judge(r.stdout, 'python3 in a terminal');
    // The same from pythonExec's interpreters: a pooled box's, started (with its preload) before
    // the call, and a session's, which lives on between calls.
    const warm = await preparedCall(code);
    judge(warm.output, "a pooled box's prepared interpreter");
    const s = await srv.ok('pythonExec', { code, session_id: session });
    assert.equal(s.exit_code, 0, describeRun(s));
    judge(s.output, "the session's interpreter");
  });
});
