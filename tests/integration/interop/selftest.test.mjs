// SPDX-License-Identifier: Apache-2.0
// The two original peers against each other (no onlyboxes binary): before they judge the real
// console and worker, they must themselves speak the original protocol as the reference describes
// it. Real gRPC over loopback: handshake refusals with their exact status and message, the hello
// and ack fields, heartbeats and the two-missed-acks rule, echo/pythonExec/terminalExec round
// trips with the original's result shapes and error codes, and a frame either side does not know
// ending the stream.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { encodeFull, fieldNumbers, fullDefinition, grpc, originalDefinition, FIRST_EXTENSION_FIELD } from './proto.mjs';
import { OriginalConsole } from './original-console.mjs';
import { OriginalWorker, openStream, parseLabels } from './original-worker.mjs';
import { handshakeCases, runHandshakeCase } from './handshake-cases.mjs';
import { waitUntil } from './wait.mjs';

const S = grpc.status;
const here = path.dirname(fileURLToPath(import.meta.url));
const NODE = randomUUID();
const SECRET = 'a3f1'.repeat(16);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('the original peers', () => {
  let con, worker, workDir;

  before(async () => {
    con = new OriginalConsole({ workers: { [NODE]: SECRET }, hashKey: 'selftest-hash-key', heartbeatIntervalSec: 1 });
    await con.listen();
    workDir = mkdtempSync(path.join(tmpdir(), 'obx-selftest-worker-'));
    worker = new OriginalWorker({
      target: con.target,
      nodeId: NODE,
      secret: ` ${SECRET} `, // trimmed by the console, as the original does
      labels: { zone: 'lab', tier: 'test' },
      version: '1.2.3-selftest',
      workDir,
    });
  });
  after(async () => {
    await worker?.stop();
    await con?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  test('the original schema has no extension field; the whole file has them', () => {
    for (const m of ['ConnectHello', 'ConnectAck', 'ConnectRequest', 'ConnectResponse', 'HeartbeatFrame', 'CommandDispatch', 'CommandResult']) {
      assert.ok(fieldNumbers(originalDefinition, m).every((n) => n < FIRST_EXTENSION_FIELD), m);
    }
    assert.deepEqual(fieldNumbers(originalDefinition, 'ConnectHello'), [1, 2, 3, 5, 6, 10, 11, 12]);
    assert.deepEqual(fieldNumbers(originalDefinition, 'ConnectRequest'), [1, 2, 3]);
    assert.deepEqual(fieldNumbers(originalDefinition, 'ConnectResponse'), [1, 2, 4]);
    assert.deepEqual(fieldNumbers(fullDefinition, 'ConnectRequest'), [1, 2, 3, 100, 101, 102, 110]);
    assert.deepEqual(fieldNumbers(fullDefinition, 'ConnectResponse'), [1, 2, 4, 100, 101, 102, 110]);
    assert.deepEqual(fieldNumbers(fullDefinition, 'ConnectHello').slice(-2), [100, 101]);
  });

  test('WORKER_LABELS is parsed as the original parses it', () => {
    assert.deepEqual(parseLabels(' zone = lab ,tier=test,novalue,=x, a=b=c ,'), { zone: 'lab', tier: 'test', a: 'b=c' });
  });

  test('every bad hello is refused with the original status and message', async () => {
    for (const c of handshakeCases({ nodeId: NODE, secret: SECRET })) {
      const r = await runHandshakeCase(con.target, c);
      assert.deepEqual([r.code, r.details], [c.code, c.details], c.name);
      assert.deepEqual(r.frames, [], `${c.name}: nothing is sent before the refusal`);
    }
    assert.equal(con.sessions.size, 0);
    // The worker sees the refusal as the end of its start.
    const bad = new OriginalWorker({ target: con.target, nodeId: NODE, secret: 'wrong' });
    await assert.rejects(bad.start(), (e) => e.code === S.UNAUTHENTICATED && e.details === 'invalid worker credential');
    assert.deepEqual(bad.closed, { code: S.UNAUTHENTICATED, details: 'invalid worker credential', by: 'console' });
    await bad.stop();
  });

  test('hello and ack: the fields as declared, no extensions either way', async () => {
    const ack = await worker.start();
    assert.match(ack.session_id, UUID);
    assert.equal(ack.heartbeat_interval_sec, 1);
    assert.deepEqual(worker.ackFull.extensions, [], 'the original console names no extensions');
    const rec = await con.waitForSession(NODE);
    assert.equal(rec.sessionId, ack.session_id);
    const h = rec.helloFull;
    assert.equal(h.node_id, NODE);
    assert.equal(h.node_name, `worker-docker-${NODE.slice(0, 8)}`);
    assert.equal(h.executor_kind, 'docker');
    assert.equal(h.version, '1.2.3-selftest');
    assert.deepEqual(h.labels, { zone: 'lab', tier: 'test' });
    assert.deepEqual(
      h.capabilities.map((c) => [c.name, c.max_inflight]),
      [
        ['echo', 4],
        ['pythonExec', 4],
        ['terminalExec', 4],
      ],
    );
    assert.deepEqual(h.terminal_session_capacity, { max_active_sessions: 16, active_session_count: 0 });
    assert.deepEqual([h.extensions, h.live_sessions], [[], []], 'the original worker names no extensions');
  });

  test('heartbeats carry node and session and are acked', async () => {
    const rec = con.sessions.get(NODE);
    await waitUntil(worker, () => worker.counters.heartbeatAcks >= 2, { what: 'two heartbeat acks', describe: () => worker.describe() });
    const hbs = rec.frames.filter((f) => f.payload === 'heartbeat').map((f) => f.frame.heartbeat);
    assert.ok(hbs.length >= 2);
    for (const hb of hbs) assert.deepEqual([hb.node_id, hb.session_id], [NODE, rec.sessionId]);
    assert.equal(worker.counters.missedAcks, 0);
  });

  test('echo returns the payload bytes unchanged', async () => {
    const raw = Buffer.from('{ "message" :  "  hello, wörld  " , "extra": [1,2] }');
    const r = await con.dispatch(NODE, 'echo', raw);
    assert.ok(r.raw, JSON.stringify(r));
    assert.ok(r.raw.equals(raw), r.raw.toString());
    assert.ok(r.completedUnixMs > 0);
    const blank = await con.dispatch(NODE, 'Echo', { message: '   ' });
    assert.deepEqual(blank.error, { code: 'invalid_payload', message: 'echo payload is required' });
    const bad = await con.dispatch(NODE, 'echo', 'not json');
    assert.deepEqual(bad.error, { code: 'invalid_payload', message: 'payload_json is not valid echo payload' });
  });

  test('pythonExec runs python3 and returns output, stderr and exit_code', async () => {
    assert.deepEqual((await con.dispatch(NODE, 'pythonExec', { code: 'print(6*7)' })).payload, { output: '42\n', stderr: '', exit_code: 0 });
    const failing = await con.dispatch(NODE, 'pythonExec', { code: 'import sys\nprint("out")\nsys.stderr.write("err")\nsys.exit(3)' });
    assert.deepEqual(failing.payload, { output: 'out\n', stderr: 'err', exit_code: 3 });
    assert.deepEqual((await con.dispatch(NODE, 'pythonexec', { code: ' ' })).error, {
      code: 'invalid_payload',
      message: 'pythonExec code is required',
    });
    const slow = await con.dispatch(NODE, 'pythonExec', { code: 'import time\ntime.sleep(120)' }, 1000);
    assert.deepEqual(slow.error, { code: 'deadline_exceeded', message: 'command deadline exceeded' });
    const expired = await con.dispatch(NODE, 'pythonExec', { code: 'print(1)' }, 1000, { deadlineUnixMs: Date.now() - 1000 });
    assert.deepEqual(expired.error, { code: 'deadline_exceeded', message: 'command deadline exceeded' });
  });

  test('terminalExec keeps a session: its directory, create_if_missing, session_not_found', async () => {
    const sid = 'obx:acc1:s1';
    const missing = await con.dispatch(NODE, 'terminalExec', { command: 'pwd', session_id: sid });
    assert.deepEqual(missing.error, { code: 'session_not_found', message: 'session not found' });

    const t0 = Date.now();
    const first = await con.dispatch(NODE, 'terminalExec', { command: 'pwd', session_id: sid, create_if_missing: true });
    const { lease_expires_unix_ms: lease, stdout, ...rest } = first.payload;
    assert.deepEqual(rest, { session_id: sid, created: true, stderr: '', exit_code: 0, stdout_truncated: false, stderr_truncated: false });
    assert.ok(stdout.startsWith(workDir + '/'), `${stdout} is in the worker's directory ${workDir}`);
    assert.ok(lease >= t0 + 60000, 'the default lease is 60 s');

    await con.dispatch(NODE, 'terminalExec', { command: 'cd /tmp', session_id: sid });
    const pwd = await con.dispatch(NODE, 'terminalExec', { command: 'pwd; echo oops >&2; exit 7', session_id: sid, create_if_missing: true });
    assert.deepEqual([pwd.payload.created, pwd.payload.stdout, pwd.payload.stderr, pwd.payload.exit_code], [false, '/tmp\n', 'oops\n', 7]);
    assert.ok(pwd.payload.lease_expires_unix_ms >= lease, 'a lease is never shortened');

    const other = await con.dispatch(NODE, 'terminalExec', { command: 'pwd', session_id: 'obx:acc1:s2', create_if_missing: true });
    assert.notEqual(other.payload.stdout, '/tmp\n', 'sessions do not share a directory');
    assert.deepEqual((await con.dispatch(NODE, 'terminalExec', { command: '  ', session_id: sid })).error, {
      code: 'invalid_payload',
      message: 'command is required',
    });
    assert.deepEqual((await con.dispatch(NODE, 'terminalExec', { command: 'true', session_id: sid, lease_ttl_sec: 5 })).error, {
      code: 'invalid_payload',
      message: 'lease_ttl_sec must be between 60 and 1800',
    });
  });

  test('an unknown capability is unsupported_capability', async () => {
    const r = await con.dispatch(NODE, 'computerUse', { command: 'true' });
    assert.deepEqual(r.error, { code: 'unsupported_capability', message: 'capability "computeruse" is not supported' });
    assert.equal(worker.closed, null, 'the session goes on');
  });

  test('a stream that sends a frame the console does not know ends InvalidArgument "unsupported frame type"', async () => {
    const before = con.streams.length;
    const w = new OriginalWorker({ target: con.target, nodeId: NODE, secret: SECRET });
    await w.start(); // replaces the main worker's session
    const replaced = await worker.done;
    assert.deepEqual(replaced, { code: S.FAILED_PRECONDITION, details: 'session replaced by a newer connection', by: 'console' });
    w.sendRaw(encodeFull('request', { command_output: { command_id: 'c1', stream: 1, data: Buffer.from('x') } }));
    assert.deepEqual(await w.done, { code: S.INVALID_ARGUMENT, details: 'unsupported frame type', by: 'console' });
    const rec = con.streams[before];
    assert.deepEqual(
      rec.unknownFrames.map((f) => f.full.payload),
      ['command_output'],
    );
    await w.stop();

    // A second hello is not a frame of the steady state either.
    const w2 = new OriginalWorker({ target: con.target, nodeId: NODE, secret: SECRET });
    await w2.start();
    w2.send({ hello: w2.hello() });
    assert.deepEqual(await w2.done, { code: S.INVALID_ARGUMENT, details: 'unsupported frame type', by: 'console' });
    await w2.stop();
  });

  test('heartbeat checks: blank session, another node, an outdated session', async () => {
    for (const [hb, code, details] of [
      [{ node_id: NODE, session_id: ' ' }, S.INVALID_ARGUMENT, 'session_id is required'],
      [{ node_id: 'someone-else', session: true }, S.INVALID_ARGUMENT, 'node_id mismatch'],
      [{ node_id: NODE, session_id: randomUUID() }, S.FAILED_PRECONDITION, 'session is outdated'],
    ]) {
      const w = new OriginalWorker({ target: con.target, nodeId: NODE, secret: SECRET, heartbeatIntervalSec: 60 });
      const ack = await w.start();
      const { session, ...frame } = hb;
      w.send({ heartbeat: { ...frame, ...(session ? { session_id: ack.session_id } : {}) } });
      assert.deepEqual(await w.done, { code, details, by: 'console' }, details);
      await w.stop();
    }
  });

  test('a blank command_id: the worker answers invalid_command_id with no id, which ends the stream', async () => {
    const w = new OriginalWorker({ target: con.target, nodeId: NODE, secret: SECRET });
    await w.start();
    const rec = con.sessions.get(NODE);
    const r = await con.dispatch(NODE, 'echo', { message: 'hi' }, 5000, { commandId: '' });
    assert.deepEqual(r.error, { code: 'dispatch_failed', message: 'command_id is required' });
    assert.deepEqual(
      rec.results.map((x) => [x.command_id, x.error]),
      [['', { code: 'invalid_command_id', message: 'command_id is required' }]],
    );
    assert.deepEqual(rec.closed, { code: S.INVALID_ARGUMENT, details: 'command_id is required', by: 'console' });
    await w.stop();
  });

  test('a frame the worker does not know ends the stream and is recorded as a violation', async () => {
    const w = new OriginalWorker({ target: con.target, nodeId: NODE, secret: SECRET });
    await w.start();
    const rec = con.sessions.get(NODE);
    con.sendRaw(NODE, encodeFull('response', { command_cancel: { command_id: 'c1', reason: 'stop' } }));
    const closed = await w.done;
    assert.equal(closed.by, 'worker');
    assert.deepEqual(
      w.violations.map((v) => [v.full.payload, v.full.command_cancel.command_id]),
      [['command_cancel', 'c1']],
    );
    await waitUntil(con, () => rec.closed, { what: 'the console to see the stream end' });
    assert.equal(rec.closed.by, 'worker');
    await w.stop();
  });

  test('two missed heartbeat acks end the session', async () => {
    const silent = new OriginalConsole({ workers: { [NODE]: SECRET }, heartbeatIntervalSec: 1, ackHeartbeats: false });
    await silent.listen();
    try {
      const w = new OriginalWorker({ target: silent.target, nodeId: NODE, secret: SECRET, callTimeoutSec: 1 });
      await w.start();
      assert.deepEqual(await w.done, { code: S.DEADLINE_EXCEEDED, details: 'two heartbeat acks missed', by: 'worker' });
      assert.deepEqual([w.counters.heartbeatsSent, w.counters.missedAcks, w.counters.heartbeatAcks], [2, 2, 0]);
      const rec = await silent.waitForClose();
      assert.deepEqual([rec.heartbeats, rec.closed.by], [2, 'worker']);
      await w.stop();
    } finally {
      await silent.close();
    }
  });

  test('as a program it takes WORKER_* and retries a refused secret with backoff', async () => {
    const refusing = new OriginalConsole({ workers: { [NODE]: 'another-secret' } });
    await refusing.listen();
    const proc = spawn(process.execPath, [path.join(here, 'original-worker.mjs')], {
      env: {
        ...process.env,
        WORKER_CONSOLE_GRPC_TARGET: refusing.target,
        WORKER_CONSOLE_INSECURE: 'true',
        WORKER_ID: NODE,
        WORKER_SECRET: SECRET,
        WORKER_LABELS: 'zone=cli',
        WORKER_VERSION: '7.7.7',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
    try {
      await waitUntil(refusing, () => refusing.streams.filter((r) => r.closed).length >= 2, { what: 'two attempts' });
      assert.deepEqual(refusing.streams[0].helloFull.labels, { zone: 'cli' });
      assert.equal(refusing.streams[0].helloFull.version, '7.7.7');
      assert.match(stderr, /connect failed: UNAUTHENTICATED: invalid worker credential\n.*reconnecting in 1 s/s);
    } finally {
      proc.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      await refusing.close();
    }
  });

  test('a bare stream sees the ack and nothing else before its first heartbeat', async () => {
    const s = openStream(con.target);
    s.write({ hello: { node_id: NODE, worker_secret: SECRET } });
    await waitUntil(s, () => s.frames.length > 0, { what: 'the ack' });
    s.close();
    assert.deepEqual(await s.status, { code: S.CANCELLED, details: 'Cancelled on client' });
    assert.deepEqual(s.frames.map((f) => f.payload), ['connect_ack']);
  });
});
