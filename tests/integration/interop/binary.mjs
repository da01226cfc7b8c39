// SPDX-License-Identifier: Apache-2.0
// The onlyboxes binary's side of the interoperability tests: whether it has a worker and a console
// gRPC port yet (until it does, the tests that need them skip themselves and say why), starting the
// console with its gRPC address, and running `onlyboxes worker`.

import { spawn, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { BIN, assertNoSanitizerReport } from '../lib.mjs';
import { Console } from '../console-lib.mjs';

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
