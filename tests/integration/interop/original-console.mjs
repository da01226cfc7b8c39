// SPDX-License-Identifier: Apache-2.0
// An ORIGINAL Onlyboxes console's gRPC side, for checking that a worker interoperates with it: the
// WorkerRegistryService/Connect stream on a plaintext loopback port (@grpc/grpc-js), with the
// handshake checks, status codes and messages of the original (reference §3.2), its heartbeat and
// result handling (§3.3) and dispatches as its registry sends them (§3.5, §3.6). It knows only the
// original's fields: it never names extensions in its ack, and it ends a stream with
// InvalidArgument "unsupported frame type" on any frame it does not know (a CommandOutput from a
// worker that wrongly used an extension decodes here as a frame without payload).
//
//   const con = new OriginalConsole({ workers: { [id]: secret }, hashKey, heartbeatIntervalSec });
//   const port = await con.listen();
//   const rec = await con.waitForSession(id);           // after its ack
//   await con.dispatch(id, 'echo', { message: 'hi' });  // {payload, raw} or {error: {code, message}}
//
// Every stream is recorded in con.streams (see StreamRecord); `change` is emitted whenever one of
// them changes, for waitUntil().

import { EventEmitter } from 'node:events';
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { grpc, originalService } from './proto.mjs';
import { waitUntil } from './wait.mjs';

const S = grpc.status;
const MAX_NODE_ID_BYTES = 128;

/** What one Connect stream did, as the console saw it. */
export class StreamRecord {
  constructor(seq, peer) {
    this.seq = seq;
    this.peer = peer;
    this.nodeId = null; // trimmed hello.node_id once the hello was read
    this.hello = null; // the hello by the original schema
    this.helloFull = null; // the same bytes by the whole proto (e.g. the extensions named)
    this.sessionId = null; // set with the ack
    this.ack = null;
    this.frames = []; // every frame received: {payload, frame, full}
    this.unknownFrames = []; // frames without a payload the original knows: {full, bytes}
    this.heartbeats = 0;
    this.heartbeatAcks = 0;
    this.results = []; // CommandResult frames
    // {code, details, by: 'console' | 'worker'}; for a stream the worker ended, code is OK (it
    // half-closed) or CANCELLED (it cancelled the call).
    this.closed = null;
    this.pending = new Map(); // command_id -> resolve
  }
}

export class OriginalConsole extends EventEmitter {
  /**
   * workers: {node_id: secret}, the provisioned credentials; hashKey: CONSOLE_HASH_KEY;
   * heartbeatIntervalSec: what acks tell workers; ackHeartbeats: false makes it a console that
   * stops answering heartbeats (to see a worker give up on it).
   */
  constructor({ workers = {}, hashKey = 'original-console-hash-key', heartbeatIntervalSec = 5, ackHeartbeats = true } = {}) {
    super();
    this.setMaxListeners(0);
    this.hashKey = hashKey;
    this.heartbeatIntervalSec = heartbeatIntervalSec;
    this.ackHeartbeats = ackHeartbeats;
    this.credentials = new Map(); // node_id -> hex HMAC of the secret, as the original stores it
    for (const [id, secret] of Object.entries(workers)) this.addWorker(id, secret);
    this.streams = [];
    this.sessions = new Map(); // node_id -> the StreamRecord of its current session
    this.server = null;
  }

  addWorker(nodeId, secret) {
    this.credentials.set(nodeId, this.#hash(secret));
  }

  #hash(secret) {
    return createHmac('sha256', this.hashKey).update(secret).digest('hex');
  }

  /** Binds 127.0.0.1 on a free port; resolves the port. */
  async listen(host = '127.0.0.1') {
    this.server = new grpc.Server();
    this.server.addService(originalService, { Connect: (call) => this.#connect(call) });
    this.port = await new Promise((resolve, reject) =>
      this.server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    this.target = `${host}:${this.port}`;
    return this.port;
  }

  /** Ends every stream (as a console going away does) and stops the server. */
  async close() {
    for (const rec of this.streams) this.#end(rec, S.UNAVAILABLE, 'console shutting down');
    if (this.server) {
      await new Promise((resolve) => this.server.tryShutdown(() => resolve()));
      this.server.forceShutdown();
      this.server = null;
    }
  }

  #changed() {
    this.emit('change');
  }

  #connect(call) {
    const rec = new StreamRecord(this.streams.length + 1, call.getPeer());
    rec.call = call;
    this.streams.push(rec);
    this.#changed();
    call.on('data', ({ frame, full, bytes }) => {
      if (rec.closed) return;
      rec.frames.push({ payload: frame.payload, frame, full });
      if (!frame.payload) rec.unknownFrames.push({ full, bytes });
      this.emit('frame', rec, frame, full);
      if (!rec.sessionId) this.#handshake(rec, frame, full);
      else this.#steady(rec, frame);
      this.#changed();
    });
    call.on('end', () => {
      // No more frames: the worker half-closed, or cancelled the call (grpc-js may end the read
      // side before it reports the cancel, which then corrects the code below). Before a hello
      // that is the handshake's error; after it the original's receive loop ends, and the stream
      // with OK.
      if (call.cancelled) this.#finish(rec, S.CANCELLED, 'cancelled by the worker', 'worker');
      else if (!rec.sessionId) this.#end(rec, S.INVALID_ARGUMENT, 'first frame must be hello');
      else this.#end(rec, S.OK, 'the worker ended the stream', 'worker');
    });
    call.on('cancelled', () => {
      if (rec.closed?.code === S.OK && rec.closed.by === 'worker') rec.closed.code = S.CANCELLED;
      this.#finish(rec, S.CANCELLED, 'cancelled by the worker', 'worker');
    });
    call.on('error', () => {}); // grpc-js turns an emitted error into the status; nothing more
  }

  #handshake(rec, frame, full) {
    if (frame.payload !== 'hello') return this.#end(rec, S.INVALID_ARGUMENT, 'first frame must be hello');
    const hello = frame.hello;
    rec.hello = hello;
    rec.helloFull = full.hello;
    const nodeId = hello.node_id.trim();
    rec.nodeId = nodeId;
    this.emit('hello', rec);
    if (!nodeId) return this.#end(rec, S.INVALID_ARGUMENT, 'node_id is required');
    if (Buffer.byteLength(hello.node_id) > MAX_NODE_ID_BYTES) return this.#end(rec, S.INVALID_ARGUMENT, 'node_id is too long');
    const stored = this.credentials.get(nodeId);
    if (!stored) return this.#end(rec, S.UNAUTHENTICATED, 'unknown worker_id');
    const secret = hello.worker_secret.trim();
    if (!secret) return this.#end(rec, S.UNAUTHENTICATED, 'worker_secret is required');
    const a = Buffer.from(this.#hash(secret), 'hex');
    const b = Buffer.from(stored, 'hex');
    if (a.length !== b.length || !timingSafeEqual(a, b)) return this.#end(rec, S.UNAUTHENTICATED, 'invalid worker credential');

    const old = this.sessions.get(nodeId);
    rec.sessionId = randomUUID();
    this.sessions.set(nodeId, rec);
    if (old) this.#end(old, S.FAILED_PRECONDITION, 'session replaced by a newer connection');
    rec.ack = { session_id: rec.sessionId, heartbeat_interval_sec: this.heartbeatIntervalSec };
    rec.call.write({ connect_ack: rec.ack });
    this.emit('session', rec);
  }

  #steady(rec, frame) {
    switch (frame.payload) {
      case 'heartbeat': {
        const hb = frame.heartbeat;
        rec.heartbeats++;
        if (!hb.session_id.trim()) return this.#end(rec, S.INVALID_ARGUMENT, 'session_id is required');
        if (hb.node_id !== rec.nodeId) return this.#end(rec, S.INVALID_ARGUMENT, 'node_id mismatch');
        const current = this.sessions.get(rec.nodeId);
        if (!current || current.sessionId !== hb.session_id) return this.#end(rec, S.FAILED_PRECONDITION, 'session is outdated');
        if (!this.ackHeartbeats) return;
        rec.heartbeatAcks++;
        rec.call.write({ heartbeat_ack: { heartbeat_interval_sec: this.heartbeatIntervalSec } });
        return;
      }
      case 'command_result': {
        const r = frame.command_result;
        rec.results.push(r);
        if (!r.command_id.trim()) return this.#end(rec, S.INVALID_ARGUMENT, 'command_id is required');
        const resolve = rec.pending.get(r.command_id);
        if (!resolve) return; // late: the caller stopped waiting
        rec.pending.delete(r.command_id);
        if (r.error) resolve({ error: { code: r.error.code, message: r.error.message }, completedUnixMs: r.completed_unix_ms });
        else if (r.payload_json.length > 0) {
          let payload;
          try {
            payload = JSON.parse(r.payload_json.toString('utf8'));
          } catch {
            payload = undefined;
          }
          resolve({ payload, raw: r.payload_json, completedUnixMs: r.completed_unix_ms });
        } else resolve({ error: { code: 'empty_result', message: 'worker returned empty command result' } });
        return;
      }
      default:
        return this.#end(rec, S.INVALID_ARGUMENT, 'unsupported frame type');
    }
  }

  /** Ends the stream from the console with a status, as the original's handler returning it. */
  #end(rec, code, details, by = 'console') {
    if (rec.closed) return;
    if (code === S.OK) rec.call.end();
    else rec.call.emit('error', { code, details });
    this.#finish(rec, code, details, by);
  }

  #finish(rec, code, details, by) {
    if (rec.closed) return;
    rec.closed = { code, details, by };
    if (rec.nodeId && this.sessions.get(rec.nodeId) === rec) this.sessions.delete(rec.nodeId);
    for (const resolve of rec.pending.values()) resolve({ error: { code: 'dispatch_failed', message: details } });
    rec.pending.clear();
    this.emit('closed', rec);
    this.#changed();
  }

  /** The current session of a node, once it has been acked. */
  waitForSession(nodeId, timeoutMs = 20000) {
    return waitUntil(this, () => this.sessions.get(nodeId), {
      timeoutMs,
      what: `a session of ${nodeId}`,
      describe: () => this.describe(),
    });
  }

  /** The first stream (after `after` of them) that has ended. */
  waitForClose(after = 0, timeoutMs = 20000) {
    return waitUntil(this, () => this.streams.slice(after).find((r) => r.closed), {
      timeoutMs,
      what: 'a stream to end',
      describe: () => this.describe(),
    });
  }

  /**
   * Sends a CommandDispatch to the node's current session: the capability lower-cased, the
   * payload (an object is JSON-encoded; a Buffer or string goes as it is; empty becomes {}), a
   * deadline deadlineMs from now. Resolves {payload (parsed), raw (Buffer)} for a result with a
   * payload, {error: {code, message}} for a worker error, a timeout, a closed session or no session.
   * Options: commandId instead of a new UUID (a blank one makes an invalid dispatch),
   * deadlineUnixMs instead of now + deadlineMs (one in the past makes an expired dispatch), waitMs:
   * how long to wait for the result (default: 5 s beyond the deadline, so that the worker's own
   * deadline error arrives).
   */
  dispatch(nodeId, capability, payload, deadlineMs = 30000, { commandId, deadlineUnixMs, waitMs } = {}) {
    const rec = this.sessions.get(nodeId);
    if (!rec) return Promise.resolve({ error: { code: 'no_worker', message: `no session for ${nodeId}` } });
    let bytes;
    if (Buffer.isBuffer(payload)) bytes = payload;
    else if (typeof payload === 'string') bytes = Buffer.from(payload);
    else bytes = Buffer.from(JSON.stringify(payload ?? {}));
    if (bytes.length === 0) bytes = Buffer.from('{}');
    const id = commandId ?? randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        rec.pending.delete(id);
        resolve({ error: { code: 'timeout', message: 'command timed out' } });
      }, waitMs ?? deadlineMs + 5000);
      rec.pending.set(id, (v) => {
        clearTimeout(timer);
        resolve(v);
      });
      rec.call.write({
        command_dispatch: {
          command_id: id,
          capability: capability.trim().toLowerCase(),
          payload_json: bytes,
          deadline_unix_ms: deadlineUnixMs ?? Date.now() + deadlineMs,
        },
      });
    });
  }

  /** Writes an already encoded ConnectResponse (proto.mjs encodeFull) to the node's session. */
  sendRaw(nodeId, bytes) {
    this.sessions.get(nodeId).call.write(bytes);
  }

  /** A summary of every stream, for failure messages. */
  describe() {
    return this.streams
      .map(
        (r) =>
          `stream ${r.seq} from ${r.peer}: node ${JSON.stringify(r.nodeId)}, session ${r.sessionId}, ` +
          `frames [${r.frames.map((f) => f.payload ?? 'UNKNOWN').join(',')}], ` +
          `closed ${r.closed ? `${r.closed.code} ${JSON.stringify(r.closed.details)} by ${r.closed.by}` : 'no'}`,
      )
      .join('\n');
  }
}
