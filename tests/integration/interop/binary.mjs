// SPDX-License-Identifier: Apache-2.0
// The onlyboxes binary's side of the interoperability tests: whether it has a worker and a console
// gRPC port yet (until it does, the tests that need them skip themselves and say why), starting the
// console with its gRPC address, and running `onlyboxes worker`: as a bare process, or provisioned
// on an `onlyboxes console` over REST as an operator does and waited for until the console lists
// it online (the fault, load and bench suites use that too).

import { spawn, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { BIN, assertNoSanitizerReport } from '../lib.mjs';
import { Console, call } from '../console-lib.mjs';

export { BIN };

/**
 * The console's stderr line that names the address workers connect to. The one place that knows
 * its wording; it accepts "workers connect to 127.0.0.1:50051", "gRPC listening on
 * 127.0.0.1:50051" and "listening on grpc://127.0.0.1:50051" (any case, IPv6 in brackets).
 * Groups: 1 host, 2 port.
 */
export const GRPC_ADDR_LINE =
  /(?:workers connect to|\bgrpc\b[^\n]*?\blistening on|listening on (?=grpcs?:\/\/))\s*(?:grpcs?:\/\/)?(\[[^\]\s]+\]|[^\s:/[\]]+):(\d+)/i;

/** How long after its HTTP line the console may take to name its gRPC address. */
const GRPC_LINE_GRACE_MS = 5000;

/** null when `onlyboxes worker --help` exits 0, else why the worker tests cannot run. */
export function workerUnsupported() {
  const r = spawnSync(BIN, ['worker', '--help'], { encoding: 'utf8', timeout: 20000 });
  if (r.error) return `cannot run ${BIN}: ${r.error.message}`;
  if (r.status === 0) return null;
  const said = (r.stderr || r.stdout || '').trim().split('\n')[0];
  return `\`onlyboxes worker --help\` exits ${r.status ?? r.signal} (${said}): the binary has no worker yet`;
}

/** Where to connect for a bound address: a wildcard becomes loopback. */
function connectHost(host) {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '[::]') return '[::1]';
  return host;
}

/** The TCP ports process pid listens on (from /proc: its socket inodes in /proc/net/tcp{,6}). */
export function listeningPorts(pid) {
  const inodes = new Set();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {} // closed meanwhile
  }
  const ports = new Set();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; the inode is the tenth field.
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9])) ports.add(parseInt(f[1].split(':')[1], 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/**
 * Starts `onlyboxes console` with env (CONSOLE_GRPC_ADDR defaults to 127.0.0.1:0) and waits for
 * its gRPC address. Resolves {con, grpcTarget} with con a started Console (console-lib.mjs), or
 * {skip: reason} (the console already stopped) when it neither names a gRPC address nor listens
 * on a port besides HTTP; rejects when it listens on one but names it in words GRPC_ADDR_LINE
 * does not know.
 */
export async function startConsoleWithGrpc(env) {
  const con = new Console({ CONSOLE_GRPC_ADDR: '127.0.0.1:0', ...env });
  await con.start();
  const found = () => GRPC_ADDR_LINE.exec(con.stderr);
  let m = found();
  if (!m) {
    m = await new Promise((resolve) => {
      const timer = setTimeout(() => done(null), GRPC_LINE_GRACE_MS);
      const onData = () => {
        const hit = found();
        if (hit) done(hit);
      };
      const done = (v) => {
        clearTimeout(timer);
        con.proc.stderr.off('data', onData);
        resolve(v);
      };
      con.proc.stderr.on('data', onData);
    });
  }
  if (!m) {
    const httpPort = Number(new URL(con.base).port);
    const others = listeningPorts(con.proc.pid).filter((p) => p !== httpPort);
    await con.stop();
    if (others.length > 0) {
      // It has a second port but does not say so in a way GRPC_ADDR_LINE knows: a failure, so
      // that the tests cannot stay skipped once the registry exists.
      throw new Error(
        `\`onlyboxes console\` listens on port(s) ${others.join(', ')} besides HTTP ${httpPort} but names ` +
          `no gRPC address that GRPC_ADDR_LINE (interop/binary.mjs) matches:\n${con.stderr}`,
      );
    }
    return { skip: '`onlyboxes console` opens no gRPC port (and names none on stderr): the console has no worker registry yet' };
  }
  return { con, grpcTarget: `${connectHost(m[1])}:${m[2]}` };
}

/** A running `onlyboxes worker`: its stderr so far; `change` on every piece of it. */
export class WorkerProcess extends EventEmitter {
  constructor(env) {
    super();
    this.env = env;
    this.stderr = '';
  }

  start() {
    this.proc = spawn(BIN, ['worker'], { env: { ...process.env, ...this.env }, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (d) => {
      this.stderr += d;
      this.emit('change');
    });
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        this.emit('change');
        resolve(this.exit);
        // A process the worker started may still hold its stderr; the pipe must not keep the
        // test runner alive after the tests (those that look for such processes do so themselves).
        const timer = setTimeout(() => this.proc.stderr.destroy(), 2000);
        this.proc.stderr.once('close', () => clearTimeout(timer));
      }),
    );
    return this;
  }

  /** SIGTERM, then the exit; fails on a sanitizer report. */
  async stop() {
    if (!this.exit) this.proc.kill('SIGTERM');
    const r = await this.exited;
    assertNoSanitizerReport(this.stderr, 'onlyboxes worker');
    return r;
  }
}

/**
 * A new normal worker of the console at base, provisioned with an admin's dashboard cookie as an
 * operator does (POST /api/v1/workers): {nodeId, env} with env the answer's WORKER_* variables.
 */
export async function provisionWorker(base, cookie) {
  const r = await call(base, 'POST', '/api/v1/workers', { cookie, body: { type: 'normal' } });
  if (r.status !== 201) throw new Error(`POST /api/v1/workers answered ${r.status}: ${r.text}`);
  return { nodeId: r.body.node_id, env: r.body.env };
}

/** The console's item for worker nodeId in GET /api/v1/workers (admin cookie), or undefined. */
export async function workerItem(base, cookie, nodeId) {
  const r = await call(base, 'GET', '/api/v1/workers?page_size=100', { cookie });
  if (r.status !== 200) throw new Error(`GET /api/v1/workers answered ${r.status}: ${r.text}`);
  return r.body.items.find((i) => i.node_id === nodeId);
}

/**
 * Polls GET /api/v1/workers until it lists nodeId with status ('online' or 'offline'); rejects
 * after timeoutMs (a bound against a hang, not an assertion) with describe() in the message.
 */
export async function waitWorkerStatus(base, cookie, nodeId, status, { timeoutMs = 30000, describe } = {}) {
  const deadline = Date.now() + timeoutMs;
  let item;
  for (;;) {
    item = await workerItem(base, cookie, nodeId);
    if (item?.status === status) return item;
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `worker ${nodeId} is not ${status} after ${timeoutMs} ms (the console lists it as ${JSON.stringify(item)})` +
      (describe ? `\n${describe()}` : ''),
  );
}

/**
 * `onlyboxes worker` for the console at base: provisioned with an admin's cookie, started with the
 * answer's WORKER_* variables over env (ONLYBOXES_RUNTIME defaults to $ONLYBOXES_RUNTIME or
 * bubblewrap), resolved once the console lists it online: {worker (a WorkerProcess), nodeId, env}
 * where env starts the same worker again (new WorkerProcess(env)).
 */
export async function startRemoteWorker(base, cookie, env = {}) {
  const p = await provisionWorker(base, cookie);
  const full = { ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap', ...p.env, ...env };
  const worker = new WorkerProcess(full).start();
  try {
    const exited = worker.exited.then((x) => {
      throw new Error(`onlyboxes worker exited ${JSON.stringify(x)} before it was online:\n${worker.stderr}`);
    });
    await Promise.race([waitWorkerStatus(base, cookie, p.nodeId, 'online', { describe: () => `--- worker stderr ---\n${worker.stderr}` }), exited]);
    exited.catch(() => {}); // it may exit later, when it is stopped
  } catch (e) {
    if (!worker.exit) worker.proc.kill('SIGKILL');
    throw e;
  }
  return { worker, nodeId: p.nodeId, env: full };
}

