// SPDX-License-Identifier: Apache-2.0
// Helpers of the fault suite: the host's view of a process tree (pids with their start times, so
// a reused pid is not mistaken for a survivor), whether docker can run boxes here, the Engine API
// of any daemon socket, and a console on a fresh database with an admin, a token and JSON calls.
// Starting servers, calling tools and looking for processes come from the integration and
// security suites' helpers; remote workers (`onlyboxes worker` provisioned on a console) from the
// interoperability tests' helpers.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';
import { BIN, sleep } from '../integration/lib.mjs';
import { Console, bearer, call, login } from '../integration/console-lib.mjs';
import { assertNsEmpty, nsProcesses } from '../security/lib.mjs';

export { bearer };

export * from '../integration/lib.mjs';
export { nsProcesses, assertNsEmpty };
export { Console, call, login };
export { WorkerProcess, provisionWorker, startRemoteWorker, waitWorkerStatus, workerItem } from '../integration/interop/binary.mjs';

/* ------------------------------------------------------------------------------------------ */
/* Processes, seen from the host's /proc                                                        */

/** {pid, ppid, start, comm, state} of one process, or null when it is gone. */
export function procStat(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  return {
    pid: Number(pid),
    comm: stat.slice(stat.indexOf('(') + 1, close),
    state: rest[0],
    ppid: Number(rest[1]),
    start: rest[19], // field 22: start time in clock ticks since boot
  };
}

/** Every descendant of pid (not pid itself), as procStat records. */
export function descendants(pid) {
  const all = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const s = procStat(e);
    if (s) all.push(s);
  }
  const out = [];
  const parents = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const s of all) {
      if (!parents.has(s.pid) && parents.has(s.ppid)) {
        parents.add(s.pid);
        out.push(s);
        grew = true;
      }
    }
  }
  return out;
}

/** The records of procs that still run (same pid and start time, not a zombie). */
export function survivors(procs) {
  return procs.filter((p) => {
    const s = procStat(p.pid);
    return s && s.start === p.start && s.state !== 'Z';
  });
}

/**
 * Host pids (not this one) holding an open file whose /proc link is in links (a Set of
 * "pipe:[inode]" or "socket:[inode]"): the processes that inherited a server's stdio, for
 * instance, which are ones it started.
 */
export function fdHolders(links) {
  const found = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let fds;
    try {
      fds = readdirSync(`/proc/${e}/fd`);
    } catch {
      continue; // gone meanwhile
    }
    for (const fd of fds) {
      let link;
      try {
        link = readlinkSync(`/proc/${e}/fd/${fd}`);
      } catch {
        continue;
      }
      if (links.has(link)) {
        found.push(Number(e));
        break;
      }
    }
  }
  return found;
}

/** The pid namespace of pid as `pid:[inode]`, or null. */
export function pidNs(pid) {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return null;
  }
}

/** Polls cond() every 50 ms until it returns a truthy value or timeoutMs passed; returns it. */
export async function waitUntil(cond, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v || Date.now() >= deadline) return v;
    await sleep(50);
  }
}

export function describeProcs(procs) {
  return procs.map((p) => `${p.pid} ${p.comm}`).join(', ');
}

/**
 * What a server's boxes run, seen from the host now: every descendant of pid (with start times)
 * and the pid namespaces of its boxes. Taken while a call runs, it names every process that must
 * be gone once the server is (an orphan leaves pid's tree, but not its box's namespace).
 */
export function boxSnapshot(pid) {
  const procs = descendants(pid);
  const host = pidNs(process.pid);
  const namespaces = [...new Set(procs.map((p) => pidNs(p.pid)).filter((ns) => ns && ns !== host))];
  return { procs, namespaces };
}

/**
 * Whether pid, in a pid namespace of snap, belongs to another program: the kernel reuses a gone
 * namespace's inode number, and other servers' boxes may run on this host. A process left behind
 * by snap's server is an orphan or descends from its processes or boxes; another server's box
 * descends from a live process outside them (its bwrap, its server), not init.
 */
function othersProcess(pid, snap) {
  const ours = new Set(snap.procs.map((p) => `${p.pid}:${p.start}`));
  for (let p = procStat(pid)?.ppid, hops = 0; p > 1 && hops < 64; hops++) {
    const st = procStat(p);
    if (!st) return false;
    if (!ours.has(`${p}:${st.start}`) && !snap.namespaces.includes(pidNs(p))) return true;
    p = st.ppid;
  }
  return false;
}

/** What of snap still runs after up to timeoutMs, as text; '' when nothing does. */
export async function boxesLeft(snap, timeoutMs = 10_000) {
  const left = () => {
    const inNs = snap.namespaces.flatMap((ns) => nsProcesses(ns).filter((p) => p.state !== 'Z' && !othersProcess(p.pid, snap)));
    const seen = new Set(inNs.map((p) => p.pid));
    return [...inNs, ...survivors(snap.procs).filter((p) => !seen.has(p.pid))];
  };
  await waitUntil(() => left().length === 0, timeoutMs);
  return left()
    .slice(0, 20)
    .map((p) => `${p.pid} ${p.cmdline || p.comm}`)
    .join('; ');
}

/* ------------------------------------------------------------------------------------------ */
/* Docker                                                                                        */

/** Why docker boxes cannot run here (for a skip), or null when `onlyboxes doctor` says ok. */
export function dockerUnavailable(env = {}) {
  if (process.env.OBX_SKIP_DOCKER === '1') return 'OBX_SKIP_DOCKER=1';
  const r = spawnSync(BIN, ['doctor'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  const out = `${r.stdout}${r.stderr}`;
  if (/^docker: *ok/m.test(out)) return null;
  const line = out.split('\n').find((l) => l.startsWith('docker:'));
  return `no usable Docker daemon: ${line || 'onlyboxes doctor said nothing about docker'}`;
}

/** A request on the Engine API at a unix socket; resolves {status, body (JSON or text)}. */
export function engine(socketPath, method, path, { timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path, method, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body = text;
        try {
          body = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Containers of the daemon at socketPath (all states) carrying every label given (`k=v`). */
export async function containersLabelled(socketPath, labels) {
  const filters = encodeURIComponent(JSON.stringify({ label: labels }));
  const r = await engine(socketPath, 'GET', `/containers/json?all=1&filters=${filters}`);
  assert.equal(r.status, 200, `listing containers: ${JSON.stringify(r.body)}`);
  return r.body;
}

export const SYSTEM_DOCKER_SOCKET = (process.env.DOCKER_HOST || 'unix:///var/run/docker.sock').replace(/^unix:\/\//, '');

/** The slim work image (the default one carries the data libraries and is four times larger): a
 * test that loads an image into a daemon of its own points the runtime at this one. */
export const WORK_IMAGE = 'onlyboxes/work:bookworm';
/** The settings that make every tool's box use WORK_IMAGE. */
export const WORK_IMAGE_ENV = {
  WORKER_PYTHON_EXEC_DOCKER_IMAGE: WORK_IMAGE,
  WORKER_TERMINAL_EXEC_DOCKER_IMAGE: WORK_IMAGE,
};

export function commandExists(name) {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* The console                                                                                   */

export const ADMIN = 'fault-admin';
export const ADMIN_PW = 'Fault-' + Math.random().toString(16).slice(2);

/** Environment of a console on dbPath with a known admin and registration on. */
export function consoleEnv(dbPath, extra = {}) {
  return {
    CONSOLE_DB_PATH: dbPath,
    CONSOLE_HASH_KEY: 'fault-hash-key-' + process.pid,
    CONSOLE_DASHBOARD_USERNAME: ADMIN,
    CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
    CONSOLE_ENABLE_REGISTRATION: 'true',
    ONLYBOXES_RUNTIME: 'bubblewrap',
    ONLYBOXES_WARM_POOL: '0',
    ...extra,
  };
}

/**
 * Environment of a remote worker for a fault test: a state directory of its own under dir
 * (XDG_RUNTIME_DIR: its boxes' directories, cleaned up by its next life) and, as for the console,
 * no warm pool, so that the boxes running are the calls' own.
 */
export function remoteWorkerEnv(dir, extra = {}) {
  return { XDG_RUNTIME_DIR: mkdtempSync(path.join(dir, 'state-')), ONLYBOXES_WARM_POOL: '0', ...extra };
}

/** Signs in as username and makes a token: {cookie, token, tokenName}. */
export async function tokenFor(base, username, password) {
  const cookie = await login(base, username, password);
  const tokenName = 'fault-' + Math.random().toString(16).slice(2);
  const t = await call(base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: tokenName } });
  assert.equal(t.status, 201, t.text);
  return { cookie, token: t.body.token, tokenName };
}

export const TERMINAL_STATUSES = ['succeeded', 'failed', 'timeout', 'canceled'];

/** Polls a task until it ended (or timeoutMs); returns its last snapshot. */
export async function waitTaskEnded(base, token, id, timeoutMs = 60_000) {
  let last;
  await waitUntil(async () => {
    const r = await bearer(base, 'GET', `/api/v1/tasks/${id}`, token);
    assert.equal(r.status, 200, r.text);
    last = r.body;
    return TERMINAL_STATUSES.includes(last.status);
  }, timeoutMs);
  return last;
}

/** Kills a console with SIGKILL and waits for the exit. */
export async function killConsole(con) {
  con.proc.kill('SIGKILL');
  return con.exited;
}
