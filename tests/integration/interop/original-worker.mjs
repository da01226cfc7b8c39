#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// An ORIGINAL Onlyboxes worker, for checking that a console interoperates with it: it opens the
// WorkerRegistryService/Connect stream with @grpc/grpc-js and behaves as the original worker does
// (reference §3.4, §3.5): a hello without extensions, heartbeats at the acked interval (two missed
// acks end the session), and the echo, pythonExec and terminalExec capabilities run on this host
// (python3 -c; bash -c in a per-session directory). It knows only the original's fields: it never
// names extensions, never reports live sessions, never sends CommandOutput, and a frame it does not
// know (a CommandCancel, say) ends the stream and is recorded in `violations`.
//
// As a library:
//   const w = new OriginalWorker({ target, nodeId, secret });
//   const ack = await w.start();   // {session_id, heartbeat_interval_sec}, after the ConnectAck
//   ... w.frames, w.violations, w.counters, w.closed; `change` events for waitUntil()
//   await w.stop();
// start() rejects with an Error carrying .code and .details when the console refuses the hello.
//
// As a program (one session after another, with the original's backoff 1, 2, 4, 8, 15 s):
//   WORKER_CONSOLE_GRPC_TARGET=host:port WORKER_ID=.. WORKER_SECRET=.. [WORKER_CONSOLE_INSECURE=true]
//   [WORKER_HEARTBEAT_INTERVAL_SEC=5] [WORKER_LABELS=k=v,..] [WORKER_VERSION=..] [WORKER_NODE_NAME=..]
//   node original-worker.mjs          (or --target, --id, --secret, --insecure)

import { EventEmitter } from 'node:events';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { grpc, OriginalClient, STATUS_NAMES } from './proto.mjs';
import { sleep } from './wait.mjs';

export const DEFAULT_CAPABILITIES = [
  { name: 'echo', max_inflight: 4 },
  { name: 'pythonExec', max_inflight: 4 },
  { name: 'terminalExec', max_inflight: 4 },
];
const LEASE_MIN_SEC = 60;
const LEASE_MAX_SEC = 1800;
const LEASE_DEFAULT_SEC = 60;
const OUTPUT_LIMIT_BYTES = 1 << 20;
const NO_DEADLINE_MS = 60000;

/** A failed command: becomes CommandResult.error. */
class CommandError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** WORKER_LABELS as the original parses it: comma-separated k=v, trimmed, bad entries dropped. */
export function parseLabels(text = '') {
  const labels = {};
  for (const entry of text.split(',')) {
    const i = entry.indexOf('=');
    if (i < 0) continue;
    const k = entry.slice(0, i).trim();
    if (k) labels[k] = entry.slice(i + 1).trim();
  }
  return labels;
}

function parsePayload(bytes, what) {
  if (!bytes || bytes.length === 0) throw new CommandError('invalid_payload', `${what} payload is required`);
  try {
    const v = JSON.parse(bytes.toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v;
  } catch {}
  throw new CommandError('invalid_payload', `payload_json is not valid ${what} payload`);
}

/** Runs argv with a deadline; resolves {stdout, stderr, code, timedOut, cwd?} (cwd from fd 3). */
function run(argv, { cwd, timeoutMs, extraFd = false, children }) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe', ...(extraFd ? ['pipe'] : [])],
      detached: true, // its own process group, so a deadline kills everything it started
    });
    children.add(child);
    const out = [];
    const err = [];
    const fd3 = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout.on('data', (d) => {
      if (outLen <= OUTPUT_LIMIT_BYTES) out.push(d);
      outLen += d.length;
    });
    child.stderr.on('data', (d) => {
      if (errLen <= OUTPUT_LIMIT_BYTES) err.push(d);
      errLen += d.length;
    });
    if (extraFd) child.stdio[3].on('data', (d) => fd3.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, Math.max(1, timeoutMs));
    child.on('error', (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const stdout = Buffer.concat(out);
      const stderr = Buffer.concat(err);
      resolve({
        stdout: stdout.subarray(0, OUTPUT_LIMIT_BYTES),
        stderr: stderr.subarray(0, OUTPUT_LIMIT_BYTES),
        stdoutTruncated: outLen > OUTPUT_LIMIT_BYTES,
        stderrTruncated: errLen > OUTPUT_LIMIT_BYTES,
        code: code ?? 128 + (osConstants.signals[signal] ?? 0),
        timedOut,
        cwd: Buffer.concat(fd3).toString('utf8').replace(/\n$/, ''),
      });
    });
  });
}

// bash -c SCRIPT bash CWD COMMAND: runs COMMAND in CWD and tells fd 3 the directory it ended in,
// which becomes the session's directory for its next command.
const TERMINAL_SCRIPT = 'trap \'pwd >&3\' EXIT; cd -- "$1" || exit 1; eval "$2"';

function credentials({ insecure = true, caFile } = {}) {
  return insecure ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(caFile ? readFileSync(caFile) : null);
}

/**
 * A bare Connect stream for handshake checks: write() frames of the original schema (or encoded
 * Buffers), end() half-closes; `frames` collects what comes back (original schema) and `status`
 * resolves {code, details} when the stream ends (`change` is emitted on each frame, for
 * waitUntil()). close() cancels it and frees the channel.
 */
export function openStream(target, opts = {}) {
  const client = new OriginalClient(target, credentials(opts));
  const call = client.Connect();
  const s = Object.assign(new EventEmitter(), {
    frames: [],
    write: (m) => call.write(m),
    end: () => call.end(),
    close: () => {
      call.cancel();
      client.close();
    },
  });
  s.status = new Promise((resolve) =>
    call.on('status', (st) => {
      client.close();
      resolve({ code: st.code, details: st.details });
    }),
  );
  call.on('data', (d) => {
    s.frames.push(d.frame);
    s.emit('change');
  });
  call.on('error', () => {});
  return s;
}

export class OriginalWorker extends EventEmitter {
  /**
   * target "host:port"; nodeId, secret as provisioned; insecure (default true) for plaintext, else
   * TLS with caFile (or the system's roots); nodeName (default worker-docker-<8 of id>), labels,
   * version, capabilities, terminalCapacity as the hello says them; heartbeatIntervalSec until an
   * ack says otherwise; callTimeoutSec how long to wait for an ack (default ceil(2.5 x interval)).
   */
  constructor({
    target,
    nodeId,
    secret,
    insecure = true,
    caFile,
    nodeName,
    executorKind = 'docker',
    labels = {},
    version = 'original-worker',
    capabilities = DEFAULT_CAPABILITIES,
    terminalCapacity = { max_active_sessions: 16, active_session_count: 0 },
    heartbeatIntervalSec = 5,
    callTimeoutSec,
    workDir,
  }) {
    super();
    this.setMaxListeners(0);
    Object.assign(this, { target, nodeId, secret, insecure, caFile, executorKind, labels, version, capabilities, terminalCapacity });
    this.nodeName = nodeName ?? `worker-docker-${String(nodeId).slice(0, 8)}`;
    this.heartbeatIntervalSec = heartbeatIntervalSec;
    this.callTimeoutSec = callTimeoutSec ?? Math.ceil(2.5 * heartbeatIntervalSec);
    this.ownWorkDir = !workDir;
    this.workDir = workDir ?? mkdtempSync(path.join(tmpdir(), 'obx-original-worker-'));
    this.terminals = new Map(); // session_id -> {cwd, leaseExpiresMs, busy}
    this.children = new Set();
    this.frames = []; // every frame received: {payload, frame, full}
    this.violations = []; // frames this worker does not know: {full, bytes}
    this.counters = { heartbeatsSent: 0, heartbeatAcks: 0, missedAcks: 0, dispatches: 0, results: 0, errors: {} };
    this.closed = null; // {code, details, by: 'console' | 'worker'}
    this.sessionId = null;
  }

  #changed() {
    this.emit('change');
  }

  /** Opens the stream and sends the hello; resolves the ack's fields. */
  start() {
    this.client = new OriginalClient(this.target, credentials(this));
    this.abort = new AbortController();
    const call = this.client.Connect();
    this.call = call;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    const acked = new Promise((resolve, reject) => {
      this.ackWaiter = { resolve, reject };
    });
    this.ackTimer = setTimeout(
      () => this.#endSession(grpc.status.DEADLINE_EXCEEDED, 'no ConnectAck in time'),
      this.callTimeoutSec * 1000,
    );
    call.on('data', (d) => this.#onFrame(d));
    call.on('status', (st) => this.#finish(st.code, st.details, 'console'));
    call.on('error', () => {}); // the status event says it
    call.write({ hello: this.hello() });
    return acked;
  }

  /** The ConnectHello this worker sends: only the original's fields. */
  hello() {
    return {
      node_id: this.nodeId,
      node_name: this.nodeName,
      executor_kind: this.executorKind,
      labels: this.labels,
      version: this.version,
      capabilities: this.capabilities,
      worker_secret: this.secret,
      terminal_session_capacity: this.terminalCapacity,
    };
  }

  /** Ends the session (cancelling the stream, as the original worker does), kills what runs. */
  async stop() {
    this.#endSession(grpc.status.CANCELLED, 'worker stopped');
    if (this.done) await this.done;
    for (const c of this.children) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {}
    }
    this.client?.close();
    if (this.ownWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }

  /** Writes an already encoded ConnectRequest (proto.mjs encodeFull) to the stream. */
  sendRaw(bytes) {
    this.call.write(bytes);
  }

  /** Sends a frame of the original schema as it is (e.g. a CommandResult with a blank id). */
  send(request) {
    this.call.write(request);
  }

  #endSession(code, details) {
    if (this.closed || !this.call) return;
    this.call.cancel();
    this.#finish(code, details, 'worker');
  }

  #finish(code, details, by) {
    if (this.closed) return;
    this.closed = { code, details, by };
    clearTimeout(this.ackTimer);
    this.abort?.abort();
    for (const w of this.ackWaiters ?? []) w(false);
    if (this.ackWaiter) {
      const e = new Error(`${STATUS_NAMES[code] ?? code}: ${details}`);
      e.code = code;
      e.details = details;
      this.ackWaiter.reject(e);
      this.ackWaiter = null;
    }
    this.resolveDone(this.closed);
    this.emit('closed', this.closed);
    this.#changed();
  }

  #onFrame({ frame, full, bytes }) {
    if (this.closed) return;
    this.frames.push({ payload: frame.payload, frame, full });
    if (!frame.payload) {
      // A frame the original does not know: it ends the stream.
      this.violations.push({ full, bytes });
      this.#endSession(grpc.status.INTERNAL, `unsupported frame from the console (${full.payload ?? 'no payload'})`);
      return;
    }
    if (this.ackWaiter) {
      if (frame.payload !== 'connect_ack' || !frame.connect_ack.session_id.trim()) {
        this.#endSession(grpc.status.INTERNAL, `first response is ${frame.payload}, not a ConnectAck with a session id`);
        return;
      }
      clearTimeout(this.ackTimer);
      const ack = frame.connect_ack;
      this.sessionId = ack.session_id;
      this.ack = ack;
      this.ackFull = full.connect_ack;
      if (ack.heartbeat_interval_sec > 0) this.heartbeatIntervalSec = ack.heartbeat_interval_sec;
      this.ackWaiter.resolve({ session_id: ack.session_id, heartbeat_interval_sec: ack.heartbeat_interval_sec });
      this.ackWaiter = null;
      this.#heartbeatLoop();
    } else if (frame.payload === 'heartbeat_ack') {
      this.counters.heartbeatAcks++;
      if (frame.heartbeat_ack.heartbeat_interval_sec > 0) this.heartbeatIntervalSec = frame.heartbeat_ack.heartbeat_interval_sec;
      const waiters = this.ackWaiters ?? [];
      this.ackWaiters = [];
      for (const w of waiters) w(true);
    } else if (frame.payload === 'command_dispatch') {
      this.counters.dispatches++;
      this.#handle(frame.command_dispatch);
    }
    // A second connect_ack means nothing to the original worker; it is recorded in frames.
    this.#changed();
  }

  /** Sleep, heartbeat, wait for its ack; a single miss is tolerated, two in a row end it. */
  async #heartbeatLoop() {
    const signal = this.abort.signal;
    let misses = 0;
    while (!this.closed) {
      if (!(await sleep(this.heartbeatIntervalSec * 1000, signal))) return;
      const acked = new Promise((resolve) => {
        const settle = (v) => {
          clearTimeout(t);
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        };
        const onAbort = () => settle(false);
        const t = setTimeout(() => settle(false), this.callTimeoutSec * 1000);
        signal.addEventListener('abort', onAbort, { once: true });
        (this.ackWaiters ??= []).push(settle);
      });
      this.call.write({ heartbeat: { node_id: this.nodeId, session_id: this.sessionId } });
      this.counters.heartbeatsSent++;
      this.#changed();
      if (await acked) {
        misses = 0;
        continue;
      }
      if (this.closed) return;
      this.counters.missedAcks++;
      this.#changed();
      if (++misses >= 2) this.#endSession(grpc.status.DEADLINE_EXCEEDED, 'two heartbeat acks missed');
    }
  }

  async #handle(d) {
    const commandId = d.command_id.trim();
    let result;
    try {
      if (!commandId) throw new CommandError('invalid_command_id', 'command_id is required');
      const deadline = d.deadline_unix_ms > 0 ? d.deadline_unix_ms : Date.now() + NO_DEADLINE_MS;
      if (deadline <= Date.now()) throw new CommandError('deadline_exceeded', 'command deadline exceeded');
      const cap = d.capability.trim().toLowerCase();
      let payload;
      if (cap === 'echo') payload = this.#echo(d.payload_json);
      else if (cap === 'pythonexec') payload = await this.#python(d.payload_json, deadline);
      else if (cap === 'terminalexec') payload = await this.#terminal(d.payload_json, deadline);
      else throw new CommandError('unsupported_capability', `capability "${d.capability}" is not supported`);
      result = { command_id: commandId, payload_json: payload, completed_unix_ms: Date.now() };
    } catch (e) {
      const code = e instanceof CommandError ? e.code : 'execution_failed';
      this.counters.errors[code] = (this.counters.errors[code] ?? 0) + 1;
      result = { command_id: commandId, error: { code, message: e.message }, completed_unix_ms: Date.now() };
    }
    if (this.closed) return;
    this.counters.results++;
    this.call.write({ command_result: result });
    this.#changed();
  }

  #echo(bytes) {
    const p = parsePayload(bytes, 'echo');
    if (typeof p.message !== 'string' || !p.message.trim()) throw new CommandError('invalid_payload', 'echo payload is required');
    return bytes; // unchanged, as the original returns it
  }

  async #python(bytes, deadline) {
    const p = parsePayload(bytes, 'pythonExec');
    if (typeof p.code !== 'string' || !p.code.trim()) throw new CommandError('invalid_payload', 'pythonExec code is required');
    const dir = mkdtempSync(path.join(this.workDir, 'python-'));
    try {
      const r = await run(['python3', '-c', p.code], { cwd: dir, timeoutMs: deadline - Date.now(), children: this.children });
      if (r.timedOut) throw new CommandError('deadline_exceeded', 'command deadline exceeded');
      return Buffer.from(JSON.stringify({ output: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), exit_code: r.code }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async #terminal(bytes, deadline) {
    const p = parsePayload(bytes, 'terminalExec');
    const command = typeof p.command === 'string' ? p.command.trim() : '';
    if (!command) throw new CommandError('invalid_payload', 'command is required');
    let leaseSec = LEASE_DEFAULT_SEC;
    if (p.lease_ttl_sec !== undefined && p.lease_ttl_sec !== null) {
      leaseSec = p.lease_ttl_sec;
      if (!Number.isInteger(leaseSec) || leaseSec < LEASE_MIN_SEC || leaseSec > LEASE_MAX_SEC)
        throw new CommandError('invalid_payload', `lease_ttl_sec must be between ${LEASE_MIN_SEC} and ${LEASE_MAX_SEC}`);
    }
    const target = Date.now() + leaseSec * 1000;
    let sid = typeof p.session_id === 'string' ? p.session_id.trim() : '';
    let created = false;
    let s = sid ? this.terminals.get(sid) : undefined;
    if (!s) {
      if (sid && p.create_if_missing !== true) throw new CommandError('session_not_found', 'session not found');
      if (!sid) sid = randomUUID();
      const cwd = path.join(this.workDir, 'terminal', randomUUID());
      mkdirSync(cwd, { recursive: true });
      s = { cwd, leaseExpiresMs: target, busy: false };
      this.terminals.set(sid, s);
      created = true;
    }
    if (s.busy) throw new CommandError('session_busy', 'session is busy');
    s.busy = true;
    s.leaseExpiresMs = Math.max(s.leaseExpiresMs, target);
    let r;
    try {
      r = await run(['bash', '-c', TERMINAL_SCRIPT, 'bash', s.cwd, command], {
        cwd: s.cwd,
        timeoutMs: deadline - Date.now(),
        extraFd: true,
        children: this.children,
      });
    } catch (e) {
      s.busy = false;
      throw new CommandError('execution_failed', `exec failed: ${e.message}`);
    }
    if (r.timedOut) {
      this.terminals.delete(sid);
      throw new CommandError('deadline_exceeded', 'command deadline exceeded');
    }
    if (r.cwd) s.cwd = r.cwd;
    s.busy = false;
    return Buffer.from(
      JSON.stringify({
        session_id: sid,
        created,
        stdout: r.stdout.toString('utf8'),
        stderr: r.stderr.toString('utf8'),
        exit_code: r.code,
        stdout_truncated: r.stdoutTruncated,
        stderr_truncated: r.stderrTruncated,
        lease_expires_unix_ms: s.leaseExpiresMs,
      }),
    );
  }

  /** What happened so far, for failure messages. */
  describe() {
    return (
      `worker ${this.nodeId}: session ${this.sessionId}, frames [${this.frames.map((f) => f.payload ?? 'UNKNOWN').join(',')}], ` +
      `counters ${JSON.stringify(this.counters)}, closed ${JSON.stringify(this.closed)}`
    );
  }
}

// ---- the program ----

function argValue(argv, name) {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(argv) {
  const env = process.env;
  const target = argValue(argv, '--target') ?? env.WORKER_CONSOLE_GRPC_TARGET;
  const nodeId = (argValue(argv, '--id') ?? env.WORKER_ID ?? '').trim();
  const secret = (argValue(argv, '--secret') ?? env.WORKER_SECRET ?? '').trim();
  if (!target || !nodeId || !secret) {
    process.stderr.write('original-worker: WORKER_CONSOLE_GRPC_TARGET, WORKER_ID and WORKER_SECRET are required\n');
    return 2;
  }
  const opts = {
    target,
    nodeId,
    secret,
    insecure: argv.includes('--insecure') || env.WORKER_CONSOLE_INSECURE === 'true',
    labels: parseLabels(env.WORKER_LABELS ?? ''),
    version: env.WORKER_VERSION || 'original-worker',
    nodeName: env.WORKER_NODE_NAME || undefined,
    heartbeatIntervalSec: Number(env.WORKER_HEARTBEAT_INTERVAL_SEC) || 5,
  };
  const backoff = [1, 2, 4, 8, 15];
  let attempt = 0;
  let stopping = false;
  let current = null;
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => {
      stopping = true;
      stop.abort();
      current?.stop();
    });
  while (!stopping) {
    current = new OriginalWorker(opts);
    current.on('closed', (c) => process.stderr.write(`original-worker: session ended: ${STATUS_NAMES[c.code] ?? c.code} ${c.details} (${c.by})\n`));
    try {
      const ack = await current.start();
      process.stderr.write(`original-worker: connected, session ${ack.session_id}, heartbeat ${ack.heartbeat_interval_sec} s\n`);
    } catch (e) {
      process.stderr.write(`original-worker: connect failed: ${e.message}\n`);
    }
    const closed = await current.done;
    await current.stop();
    if (stopping) break;
    if (closed.code === grpc.status.FAILED_PRECONDITION) attempt = 0;
    const wait = backoff[Math.min(attempt++, backoff.length - 1)];
    process.stderr.write(`original-worker: reconnecting in ${wait} s\n`);
    await sleep(wait * 1000, stop.signal);
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
