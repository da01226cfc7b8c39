// SPDX-License-Identifier: Apache-2.0
// Escape attempts from inside a box, each one a test that must fail to escape: the attempt's own
// result (exit code, error) is asserted, and the host is checked from outside for what the attempt
// was after (a planted secret not printed, a marker file not created, a listener that accepted
// nothing, a host process still alive). Where a probe could silently prove nothing, the same probe
// is first run on the host as a control and must succeed there. Runs on the runtime named by
// ONLYBOXES_RUNTIME (bubblewrap when unset).

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  BIN,
  ON_DOCKER,
  RUNTIME,
  closeAndCheck,
  marker,
  serverTest,
  sessionNs,
  sleep,
  sleepMarker,
  startSecServer,
} from './lib.mjs';

let srv = null;
let session = null; // a terminal session most attempts run in
let egressSession = null; // a session with network "allowlist", for the network attempts again
const namespaces = new Set();
const server = () => srv;
const PROXY = 'http://127.0.0.1:3128'; // the egress relay in an allowlist box

// What the network attempts aim at, started before the server so that the allow-list can name
// the port: a TCP listener on every address of the host, and an abstract unix socket.
let accepted = 0;
let abstractAccepted = 0;
const abstractName = `obx-sec-${marker()}`;
const listener = net.createServer((sock) => {
  accepted++;
  sock.on('error', () => {});
  sock.end('host\n');
});
await new Promise((resolve) => listener.listen({ port: 0, host: '::', ipv6Only: false }, resolve));
const port = listener.address().port;
const abstractServer = net.createServer((sock) => {
  abstractAccepted++;
  sock.on('error', () => {});
  sock.end('host\n');
});
await new Promise((resolve) => abstractServer.listen(`\0${abstractName}`, resolve));
after(async () => {
  await new Promise((resolve) => listener.close(resolve));
  await new Promise((resolve) => abstractServer.close(resolve));
});
/** This host's non-loopback IPv4 address, that a listed name is pinned to, or undefined. */
const hostV4 = Object.values(os.networkInterfaces())
  .flat()
  .find((a) => a.family === 'IPv4' && !a.internal)?.address;
// The egress proxy's list: names that lead to forbidden addresses, on the listener's port.
const egressEnv = {
  ONLYBOXES_EGRESS_ALLOW: [`meta.test:${port}`, ...(hostV4 ? [`self.test:${port}`] : [])].join(','),
  ONLYBOXES_EGRESS_TEST_RESOLVE: ['meta.test=169.254.169.254', ...(hostV4 ? [`self.test=${hostV4}`] : [])].join(
    ',',
  ),
};

before(async () => {
  srv = await startSecServer(egressEnv);
  session = (await srv.sh('true')).session_id;
  namespaces.add(await sessionNs(srv, session));
  egressSession = (await srv.sh('true', { network: 'allowlist' })).session_id;
  namespaces.add(await sessionNs(srv, egressSession));
  // The figures are only worth something if the boxes are the runtime named: docker's root is an
  // overlay, bubblewrap's a tmpfs.
  const root = (await srv.sh("awk '$5 == \"/\" {print $9}' /proc/self/mountinfo", { session_id: session })).stdout;
  assert.equal(root.trim().split('\n').pop(), ON_DOCKER ? 'overlay' : 'tmpfs', `not a ${RUNTIME} box`);
});
after(async () => {
  if (srv) await closeAndCheck(srv, [...namespaces]);
});

/** Runs a shell command in the shared session; resolves to {stdout, stderr, exit_code}. */
function sh(command, extra = {}) {
  return srv.sh(command, { session_id: session, ...extra });
}

/**
 * Runs Python code twice in a session's box: by python3 in its terminal (a here-document), and in
 * the session's pythonExec interpreter, the one that lives on between calls (created here on first
 * use). Both must print the same (digits aside: pids, ports); resolves to the terminal's result,
 * which the test then judges.
 */
async function pyTwice(session_id, code, extra = {}) {
  const r = await srv.sh(`python3 - <<'OBX_PY_END'\n${code}\nOBX_PY_END`, { session_id, ...extra });
  const { timeout_ms } = extra;
  const w = await srv.call('pythonExec', { code, session_id, ...(timeout_ms ? { timeout_ms } : {}) });
  assert.notEqual(w.isError, true, `pythonExec in the session failed: ${JSON.stringify(w).slice(0, 1500)}`);
  const mask = (t) => t.replace(/\d+/g, 'N');
  assert.equal(
    mask(w.structuredContent.output),
    mask(r.stdout),
    `the session's Python interpreter printed something else than python3 in its terminal: ${describeRun(w.structuredContent)}`,
  );
  return r;
}

/** Runs Python code in the shared session, by python3 and by its pythonExec interpreter. */
function py(code, extra) {
  return pyTwice(session, code, extra);
}

/** The same Python code on the host, as a control; resolves to its stdout. */
function hostPy(code) {
  const r = spawnSync('python3', ['-'], { input: code, encoding: 'utf8', timeout: 30_000 });
  return r.stdout ?? '';
}

function describeRun(r) {
  return JSON.stringify(r).slice(0, 1500);
}

/** Exit codes a command printed as `@name=$?` lines. */
function codes(stdout) {
  return Object.fromEntries([...stdout.matchAll(/^@(\w+)=(\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

/** A file on the host holding a secret; returns {file, secret, remove()}. */
function plant(dir) {
  const name = `obx-sec-${marker()}`;
  const file = path.join(dir, name);
  const secret = `secret-${marker()}`;
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  assert.equal(readFileSync(file, 'utf8'), `${secret}\n`, 'control: the host reads the planted file');
  return { name, file, secret, remove: () => rmSync(file, { force: true }) };
}

describe(`escapes (${RUNTIME})`, () => {
  describe('reading host files', () => {
    serverTest('/etc/shadow is not readable', { server }, async () => {
      const r = await sh('cat /etc/shadow');
      assert.notEqual(r.exit_code, 0, `cat /etc/shadow succeeded: ${describeRun(r)}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /No such file|Permission denied/);
    });

    // Each directory gets a planted secret; the box may have a directory of that name (docker's
    // image has /root and /home), but never the host's content.
    const dirs = [...new Set(['/root', os.homedir(), '/home'])].filter((d) => existsSync(d));
    for (const dir of dirs) {
      serverTest(`the host's ${dir} is not visible`, { server }, async () => {
        const p = plant(dir);
        try {
          const r = await sh(`cat ${p.file}; echo @cat=$?; ls -A ${dir}`);
          assert.notEqual(codes(r.stdout).cat, 0, describeRun(r));
          assert.ok(!r.stdout.includes(p.secret), `the box read the host's ${p.file}`);
          assert.ok(!r.stdout.includes(p.name), `the box lists the host's ${dir}: ${r.stdout}`);
        } finally {
          p.remove();
        }
      });
    }

    serverTest("no process's /proc/<pid>/root leads to the host's root", { server }, async () => {
      const p = plant('/tmp');
      try {
        const r = await sh(
          `cat /proc/1/root/tmp/${p.name}; for d in /proc/[0-9]*; do cat $d/root/tmp/${p.name} 2>/dev/null; done; ` +
            'cat /proc/1/root/etc/shadow',
        );
        assert.notEqual(r.exit_code, 0, describeRun(r));
        assert.ok(!r.stdout.includes(p.secret), `the box read ${p.file} through /proc: ${r.stdout}`);
        assert.match(r.stderr, new RegExp(`/proc/1/root/tmp/${p.name}: No such file`));
      } finally {
        p.remove();
      }
    });

    serverTest("onlyboxes' state directory and other boxes' workspaces are out of reach", { server }, async () => {
      const xdg = process.env.XDG_RUNTIME_DIR;
      const state =
        (ON_DOCKER && process.env.ONLYBOXES_DOCKER_STATE_DIR) ||
        (xdg ? `${xdg}/onlyboxes` : `/tmp/onlyboxes-${process.getuid()}`);
      assert.ok(existsSync(state), `control: the state directory ${state} exists on the host`);
      const p = plant(state);
      // Another session's file, which on bubblewrap lives below the state directory on the host.
      const other = await srv.sh(`echo ${p.secret} > /workspace/${p.name}`);
      try {
        const r = await sh(
          `cat ${p.file}; echo @cat=$?; ls -A ${state}; ` +
            `find / -path /proc -prune -o -name '${p.name}' -print 2>/dev/null`,
        );
        assert.notEqual(codes(r.stdout).cat, 0, describeRun(r));
        assert.ok(!r.stdout.includes(p.secret), `the box read ${p.file}`);
        assert.ok(!r.stdout.includes(p.name), `the box found ${p.name}: ${r.stdout}`);
        const control = await srv.sh(`cat /workspace/${p.name}`, { session_id: other.session_id });
        assert.equal(control.stdout, `${p.secret}\n`, 'control: the other session sees its own file');
      } finally {
        p.remove();
      }
    });
  });

  describe('writing outside /workspace', () => {
    serverTest("the box's /tmp and /dev/shm are not the host's", { server }, async () => {
      const name = `obx-sec-${marker()}`;
      const targets = [`/tmp/${name}`, `/dev/shm/${name}`, `/var/tmp/${name}`];
      try {
        const r = await sh(targets.map((t) => `echo x > ${t}`).join('; ') + `; ls /tmp/${name}`);
        assert.equal(r.stdout, `/tmp/${name}\n`, `the box's own /tmp is writable: ${describeRun(r)}`);
        for (const t of targets) assert.equal(existsSync(t), false, `${t} appeared on the host`);
      } finally {
        for (const t of targets) rmSync(t, { force: true });
      }
    });

    serverTest('/, /usr, /etc and /bin are read-only', { server }, async () => {
      const name = `obx-sec-${marker()}`;
      const targets = [`/${name}`, `/usr/${name}`, `/etc/${name}`, `/usr/bin/${name}`];
      try {
        for (const t of targets) {
          const r = await sh(`touch ${t}`);
          assert.notEqual(r.exit_code, 0, `touch ${t} succeeded`);
          assert.match(r.stderr, /Read-only file system|Permission denied/, r.stderr);
        }
        const mod = await sh('echo "#" >> /etc/hosts; echo @hosts=$?; echo "#" >> /usr/bin/env; echo @env=$?');
        assert.notEqual(codes(mod.stdout).hosts, 0, describeRun(mod));
        assert.notEqual(codes(mod.stdout).env, 0, describeRun(mod));
      } finally {
        for (const t of targets) {
          if (existsSync(t)) {
            rmSync(t, { force: true });
            assert.fail(`${t} appeared on the host`);
          }
        }
      }
    });

    serverTest("the host's onlyboxes-agent cannot be replaced from the box", { server }, async () => {
      const agent = path.join(path.dirname(BIN), 'onlyboxes-agent');
      const hash = () => createHash('sha256').update(readFileSync(agent)).digest('hex');
      const h0 = hash();
      const r = await sh('cp /bin/true /.onlyboxes/agent; chmod 777 /.onlyboxes/agent; : > /.onlyboxes/agent');
      assert.notEqual(r.exit_code, 0, describeRun(r));
      assert.match(r.stderr, /Read-only file system|Permission denied|Text file busy/);
      assert.equal(hash(), h0, 'the agent binary on the host changed');
    });

    // With bubblewrap under a root worker the box's user is the host's uid 0, which owns the
    // sysctl files: only the read-only mount stands between the box and the host's kernel
    // settings (kernel.core_pattern names a program the kernel runs as host root on a crash).
    for (const name of ['kernel/core_pattern', 'kernel/pid_max', 'vm/overcommit_memory']) {
      serverTest(`the host's kernel setting ${name.replace('/', '.')} cannot be written`, { server }, async () => {
        const file = `/proc/sys/${name}`;
        const before = readFileSync(file, 'utf8');
        // The value written is the current one: even a failed defence changes nothing.
        const r = await sh(`cat ${file} > /tmp/v && cat /tmp/v > ${file}; echo @w=$?`);
        assert.notEqual(codes(r.stdout).w, 0, `the box wrote ${file}: ${describeRun(r)}`);
        assert.match(r.stderr, /Read-only file system|Permission denied/, r.stderr);
        assert.equal(readFileSync(file, 'utf8'), before);
      });
    }

    serverTest('/proc/sysrq-trigger cannot be written', { server }, async () => {
      const r = await sh('echo h > /proc/sysrq-trigger; echo @w=$?');
      assert.notEqual(codes(r.stdout).w, 0, describeRun(r));
      assert.match(r.stderr, /Read-only file system|Permission denied|No such file|nonexistent/, r.stderr);
    });
  });

  // The same attempts from a box without network and from one with network "allowlist", whose
  // only way out is the egress proxy; from the latter they are also made through the proxy.
  for (const allowlist of [false, true]) {
    networkAttempts(allowlist);
  }

  describe('privileges', () => {
    serverTest('no capabilities and no_new_privs', { server }, async () => {
      const r = await sh('grep -E "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):" /proc/self/status');
      const fields = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(/:\s+/)));
      for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
        assert.match(fields[cap] ?? '', /^0+$/, `${cap} is ${fields[cap]}: ${r.stdout}`);
      }
      assert.equal(fields.NoNewPrivs, '1', r.stdout);
      const id = await sh('id -u');
      assert.notEqual(id.stdout.trim(), '0', 'commands run as root in the box');
    });

    serverTest('a setuid-root binary (su) does not give root', { server }, async () => {
      const ls = await sh('stat -L -c %A:%u "$(command -v su)"');
      assert.match(ls.stdout, /^-..s/, `control: su is setuid in the box: ${describeRun(ls)}`);
      const r = await sh("su root -c 'id -u' </dev/null");
      assert.notEqual(r.exit_code, 0, describeRun(r));
      assert.notEqual(r.stdout.trim(), '0');
      const set = await py(
        ['import os', 'try:', '    os.setuid(0)', '    print("ROOT")', 'except OSError as e:', '    print("DENIED", e)'].join(
          '\n',
        ),
      );
      assert.match(set.stdout, /^DENIED/, describeRun(set));
    });

    serverTest('unshare -r (a new user namespace) is refused', { server }, async () => {
      const r = await sh('unshare -r id -u');
      assert.notEqual(r.exit_code, 0, describeRun(r));
      assert.notEqual(r.stdout.trim(), '0');
      assert.match(r.stderr, /unshare failed|Operation not permitted|No space left/, r.stderr);
    });

    serverTest('unshare -m (a new mount namespace) is refused', { server }, async () => {
      const r = await sh('unshare -m true');
      assert.notEqual(r.exit_code, 0, describeRun(r));
      assert.match(r.stderr, /unshare failed|Operation not permitted/, r.stderr);
    });

    serverTest('mount -t tmpfs is refused', { server }, async () => {
      const r = await sh('mkdir -p /tmp/m && mount -t tmpfs tmpfs /tmp/m; grep -c " /tmp/m " /proc/self/mounts');
      assert.equal(r.stdout.trim(), '0', `a tmpfs was mounted: ${describeRun(r)}`);
      assert.match(r.stderr, /permission denied|must be superuser|Operation not permitted/i, r.stderr);
    });

    serverTest('a host process cannot be signalled, traced or inspected', { server }, async () => {
      const name = marker();
      const victim = spawn('sleep', ['600'], { stdio: 'ignore' });
      const pid = victim.pid;
      try {
        const r = await sh(
          `kill -9 ${pid}; echo kill=$?; cat /proc/${pid}/cmdline; echo cat=$?; ` +
            `python3 -c 'import ctypes,os; l=ctypes.CDLL(None, use_errno=True); ` +
            `r=l.ptrace(16, ${pid}, 0, 0); print("ptrace", r, os.strerror(ctypes.get_errno()))'`,
        );
        assert.match(r.stdout, /kill=1\n/, describeRun(r));
        assert.match(r.stdout, /cat=1\n/, describeRun(r));
        assert.match(r.stdout, /ptrace -1 (No such process|Operation not permitted)/, describeRun(r));
        await sleep(100);
        assert.equal(victim.exitCode, null, `the host process ${pid} (${name}) was killed`);
        assert.equal(victim.signalCode, null, `the host process ${pid} was signalled`);
        assert.doesNotMatch(readFileSync(`/proc/${pid}/status`, 'utf8'), /TracerPid:\s+[1-9]/);
      } finally {
        victim.kill('SIGKILL');
      }
    });
  });

  describe('other sessions and the machinery', () => {
    serverTest("another session's processes are not visible", { server }, async () => {
      const secs = sleepMarker();
      const a = await srv.sh(`sleep ${secs} >/dev/null 2>&1 &`);
      const seen = await srv.sh('ps -eo args', { session_id: a.session_id });
      assert.ok(seen.stdout.includes(secs), `control: session A sees its own sleep: ${seen.stdout}`);
      const ps = await sh('ps -eo args; cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "');
      assert.ok(!ps.stdout.includes(secs), `session B sees A's process: ${ps.stdout}`);
      const k = await sh(`pkill -f ${secs}; echo rc=$?`);
      assert.match(k.stdout, /rc=1/, 'pkill found a process of another session');
      const py1 = await srv.ok('pythonExec', {
        code: [
          'import os',
          'n = 0',
          'for p in os.listdir("/proc"):',
          '    try:',
          // Split, so that this program's own command line does not hold the marker.
        `        n += p.isdigit() and ("${secs.slice(0, 6)}" + "${secs.slice(6)}") in open(f"/proc/{p}/cmdline").read()`,
          '    except OSError:',
          '        pass',
          'print(n)',
        ].join('\n'),
      });
      assert.equal(py1.output, '0\n', 'a pythonExec box sees the process');
      const still = await srv.sh('ps -eo args', { session_id: a.session_id });
      assert.ok(still.stdout.includes(secs), "A's process was killed from another session");
      await srv.sh(`pkill -f ${secs}`, { session_id: a.session_id });
    });

    serverTest("another session's /workspace files are not visible", { server }, async () => {
      const name = `obx-sec-${marker()}`;
      const a = await srv.sh(`echo secret > /workspace/${name}; ls /workspace`);
      assert.ok(a.stdout.includes(name), 'control: session A sees its own file');
      const r = await sh(
        `cat /workspace/${name}; echo @cat=$?; ls -A /workspace; ` +
          `find / -path /proc -prune -o -name '${name}' -print 2>/dev/null`,
      );
      assert.notEqual(codes(r.stdout).cat, 0, describeRun(r));
      assert.ok(!r.stdout.includes(name) && !r.stdout.includes('secret'), `B sees A's file: ${r.stdout}`);
      const p = await srv.ok('pythonExec', { code: `import os\nprint(os.path.exists("/workspace/${name}"))` });
      assert.equal(p.output, 'False\n');
    });

    serverTest('no Docker socket in the box', { server }, async () => {
      const r = await sh('ls -l /var/run/docker.sock /run/docker.sock');
      assert.notEqual(r.exit_code, 0, describeRun(r));
      assert.match(r.stderr, /No such file/);
      const c = await py(
        'import socket\nfor p in ("/var/run/docker.sock", "/run/docker.sock"):\n' +
          '    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p); print("CONNECTED", p)\n' +
          '    except Exception as e:\n        print("BLOCKED", p, type(e).__name__)',
      );
      assert.doesNotMatch(c.stdout, /CONNECTED/, describeRun(c));
      assert.equal(c.stdout.split('\n').filter((l) => l.startsWith('BLOCKED')).length, 2);
    });

    serverTest("no unix socket in the box connects anywhere (the worker's, another box's agent)", { server }, async (_srv, t) => {
      // Every socket file in the box's file systems; docker's direct path leaves the worker's
      // socket inode bind-mounted, and its listener must be closed.
      const r = await py(
        [
          'import os, socket',
          'found = []',
          'for root, dirs, files in os.walk("/"):',
          '    if root == "/" and "proc" in dirs: dirs.remove("proc")',
          '    if root == "/" and "sys" in dirs: dirs.remove("sys")',
          '    for f in files:',
          '        p = os.path.join(root, f)',
          '        try:',
          '            import stat',
          '            if stat.S_ISSOCK(os.lstat(p).st_mode): found.append(p)',
          '        except OSError: pass',
          'for p in found:',
          '    s = socket.socket(socket.AF_UNIX)',
          '    s.settimeout(2)',
          '    try:',
          '        s.connect(p); print("CONNECTED", p)',
          '    except Exception as e:',
          '        print("BLOCKED", p, type(e).__name__)',
          'print("sockets", len(found))',
        ].join('\n'),
        { timeout_ms: 60_000 },
      );
      assert.match(r.stdout, /sockets \d+\n$/, describeRun(r));
      t.diagnostic(r.stdout.trim().replace(/\n/g, '; '));
      assert.doesNotMatch(r.stdout, /CONNECTED/, describeRun(r));
      if (ON_DOCKER && /worker\.sock/.test(r.stdout)) {
        assert.match(r.stdout, /BLOCKED \/\.onlyboxes\/run\/worker\.sock ConnectionRefusedError/);
      }
    });
  });
});

/** The network attempts, from a box without network or (allowlist) from one whose only way out is
 * the egress proxy, with its list of names that lead to forbidden addresses. */
function networkAttempts(allowlist) {
  const name = (n) => (allowlist ? `${n} (network "allowlist")` : n);
  const sh = (command, extra = {}) => srv.sh(command, { session_id: allowlist ? egressSession : session, ...extra });
  const py = (code, extra) => pyTwice(allowlist ? egressSession : session, code, extra);
  describe(allowlist ? 'network, from a box with network "allowlist"' : 'network', () => {
    // Prints CONNECTED or BLOCKED <why> for a TCP connection (or a unix socket path).
    const probe = (family, addr) =>
      [
        'import socket',
        'try:',
        `    s = socket.socket(socket.${family}, socket.SOCK_STREAM)`,
        '    s.settimeout(3)',
        `    s.connect(${addr})`,
        '    print("CONNECTED")',
        'except Exception as e:',
        '    print("BLOCKED", type(e).__name__, e)',
      ].join('\n');
    const tcp = (host, p) => probe(host.includes(':') ? 'AF_INET6' : 'AF_INET', `(${JSON.stringify(host)}, ${p})`);

    const hostAddrs = [
      '127.0.0.1',
      '::1',
      ...Object.values(os.networkInterfaces())
        .flat()
        .filter((a) => !a.internal && !a.address.startsWith('fe80'))
        .map((a) => a.address),
    ];
    for (const addr of hostAddrs) {
      serverTest(name(`a TCP listener on the host at ${addr} is unreachable`), { server }, async () => {
        const control = hostPy(tcp(addr, port));
        assert.match(control, /^CONNECTED/, `control: the host itself connects to ${addr}:${port}`);
        await sleep(200); // the control's connection is counted once the event loop runs
        const seen = accepted;
        const r = await py(tcp(addr, port));
        assert.match(r.stdout, /^BLOCKED/, describeRun(r));
        if (allowlist) {
          // Through the egress proxy, on purpose (--noproxy '': loopback too).
          const url = `http://${addr.includes(':') ? `[${addr}]` : addr}:${port}/`;
          const c = await sh(`curl -sS -m 10 --noproxy '' -x ${PROXY} ${url}`);
          assert.match(c.stdout, /^egress to \S+ is not allowed: an IP address/, describeRun(c));
        }
        await sleep(100);
        assert.equal(accepted, seen, 'the host listener accepted a connection from the box');
      });
    }

    serverTest(name("an abstract unix socket of the host is unreachable"), { server }, async () => {
      // libuv binds the name padded with NULs to the full sun_path (108 bytes): so must the peer.
      const code = probe('AF_UNIX', `b"\\0${abstractName}".ljust(108, b"\\0")`);
      assert.match(hostPy(code), /^CONNECTED/, 'control: the host connects to its abstract socket');
      await sleep(200);
      const seen = abstractAccepted;
      const r = await py(code);
      assert.match(r.stdout, /^BLOCKED/, describeRun(r));
      await sleep(100);
      assert.equal(abstractAccepted, seen, 'the abstract socket accepted a connection from the box');
    });

    serverTest(name("a running console's port is unreachable"), { server }, async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'obx-sec-console-'));
      const con = spawn(BIN, ['console'], {
        env: {
          ...process.env,
          CONSOLE_HTTP_ADDR: '127.0.0.1:0',
          CONSOLE_GRPC_ADDR: '127.0.0.1:0',
          CONSOLE_DB_PATH: path.join(dir, 'c.db'),
          CONSOLE_HASH_KEY: `sec-${marker()}`,
          CONSOLE_DASHBOARD_USERNAME: 'admin',
          CONSOLE_DASHBOARD_PASSWORD: `pw-${marker()}`,
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let log = '';
      try {
        const cport = await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`console did not start:\n${log}`)), 20_000);
          con.stderr.setEncoding('utf8');
          con.stderr.on('data', (d) => {
            log += d;
            const m = /listening on https?:\/\/[^\s]*:(\d+)/.exec(log);
            if (m) {
              clearTimeout(timer);
              resolve(Number(m[1]));
            }
          });
          con.on('exit', () => reject(new Error(`console exited:\n${log}`)));
        });
        assert.match(hostPy(tcp('127.0.0.1', cport)), /^CONNECTED/, 'control: the host reaches the console');
        const r = await py(tcp('127.0.0.1', cport));
        assert.match(r.stdout, /^BLOCKED/, describeRun(r));
        const url = `http://127.0.0.1:${cport}/`;
        const c = await sh(`curl -sS -m 3 ${url} 2>&1 || wget -q -T 3 -O- ${url} 2>&1 || echo unreachable`);
        assert.doesNotMatch(c.stdout, /<html|onlyboxes/i, describeRun(c));
        if (allowlist) {
          const p = await sh(`curl -sS -m 10 --noproxy '' -x ${PROXY} ${url}`);
          assert.match(p.stdout, /^egress to 127\.0\.0\.1 is not allowed/, describeRun(p));
        }
      } finally {
        con.kill('SIGTERM');
        await new Promise((resolve) => (con.exitCode !== null ? resolve() : con.on('exit', resolve)));
        rmSync(dir, { recursive: true, force: true });
      }
    });

    serverTest(name('an external address (1.1.1.1:53, TCP and a UDP DNS query) is unreachable'), { server }, async () => {
      const r = await py(tcp('1.1.1.1', 53));
      assert.match(r.stdout, /^BLOCKED/, describeRun(r));
      // A DNS query for "." over UDP: any answer at all would mean packets left the box.
      const udp = await py(
        [
          'import socket',
          's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
          's.settimeout(3)',
          'q = bytes.fromhex("abcd01000001000000000000000002000001")',
          'try:',
          '    s.sendto(q, ("1.1.1.1", 53))',
          '    s.recvfrom(512)',
          '    print("ANSWERED")',
          'except Exception as e:',
          '    print("BLOCKED", type(e).__name__, e)',
        ].join('\n'),
      );
      assert.match(udp.stdout, /^BLOCKED/, describeRun(udp));
      const dns = await sh('timeout 10 getent hosts one.one.one.one');
      assert.notEqual(dns.exit_code, 0, `name resolution worked in the box: ${describeRun(dns)}`);
    });

    if (allowlist) {
      serverTest(name("listed names that lead to the metadata address or to this host are refused"), { server }, async (_srv, t) => {
        const seen = accepted;
        const r = await sh(`curl -sS -m 10 http://meta.test:${port}/latest/; curl -sS -m 10 http://self.test:${port}/`);
        assert.match(
          r.stdout,
          /^egress to meta\.test is not allowed: it resolves to 169\.254\.169\.254, a cloud metadata address$/m,
          describeRun(r),
        );
        if (hostV4) {
          const want = `egress to self.test is not allowed: it resolves to ${hostV4}, an address of this host`;
          assert.ok(r.stdout.includes(want), describeRun(r));
        } else {
          t.diagnostic('no non-loopback IPv4 address on this host: self.test not tried');
        }
        await sleep(100);
        assert.equal(accepted, seen, 'the host listener accepted a connection from the box');
      });

      serverTest(name("the proxy's socket, spoken to directly, refuses the host's addresses too"), { server }, async () => {
        const seen = accepted;
        const r = await py(
          [
            'import socket',
            `for target in ("127.0.0.1:${port}", "[::1]:${port}", "localhost:${port}", "meta.test:${port}"):`,
            '    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
            '    s.settimeout(10)',
            '    s.connect("/.onlyboxes/egress.sock")',
            '    s.sendall(f"CONNECT {target} HTTP/1.1\\r\\n\\r\\n".encode())',
            '    print(s.recv(4096).split(b"\\r\\n")[0].decode())',
          ].join('\n'),
        );
        const lines = r.stdout.trim().split('\n');
        assert.equal(lines.length, 4, describeRun(r));
        for (const l of lines) assert.match(l, /^HTTP\/1\.1 403 egress to \S+ (port \d+ )?is not allowed/, describeRun(r));
        await sleep(100);
        assert.equal(accepted, seen, 'the host listener accepted a connection from the box');
      });
    }
  });
}
