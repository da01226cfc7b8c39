// SPDX-License-Identifier: Apache-2.0
// `onlyboxes worker` against an ORIGINAL console (original-console.mjs: the original's fields only,
// no extensions in its ack, "unsupported frame type" on anything else) over real gRPC, configured
// by the original's WORKER_* variables: its hello says what it was told (id, labels, version, the
// capabilities), heartbeats come and are acked, echo/pythonExec/terminalExec dispatches come back
// in the original's result shapes, it never sends a frame the original console does not know, and
// a console that refuses its credential makes it log why and try again rather than exit.
// Skipped, with the reason, while the binary has no worker.

import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { grpc } from './proto.mjs';
import { OriginalConsole } from './original-console.mjs';
import { WorkerProcess, workerUnsupported } from './binary.mjs';
import { waitUntil } from './wait.mjs';

const S = grpc.status;
const ID = randomUUID();
const SECRET = randomUUID().replace(/-/g, '') + randomUUID().replace(/-/g, '');
/** What an original worker sends; anything else ends the stream at an original console. */
const ORIGINAL_REQUESTS = new Set(['hello', 'heartbeat', 'command_result']);
const skip = workerUnsupported() ?? false;

function workerEnv(target, extra = {}) {
  return {
    WORKER_CONSOLE_GRPC_TARGET: target,
    WORKER_CONSOLE_INSECURE: 'true',
    WORKER_ID: ID,
    WORKER_SECRET: SECRET,
    WORKER_HEARTBEAT_INTERVAL_SEC: '1',
    ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
    ...extra,
  };
}

describe('onlyboxes worker with an original console', { skip }, () => {
  let con, worker, rec;

  const describeAll = () => `${con.describe()}\n--- worker stderr ---\n${worker?.stderr.slice(-4000)}`;

  before(async () => {
    con = new OriginalConsole({ workers: { [ID]: SECRET }, hashKey: 'interop-original-console', heartbeatIntervalSec: 1 });
    await con.listen();
    worker = new WorkerProcess(
      workerEnv(con.target, {
        WORKER_LABELS: 'zone=interop, tier = test ,broken',
        WORKER_VERSION: '9.9.9-interop',
      }),
    ).start();
    rec = await con.waitForSession(ID, 30000).catch((e) => {
      throw new Error(`${e.message}\n${describeAll()}`);
    });
  });
  after(async () => {
    await worker?.stop();
    await con?.close();
  });

  test('its hello says what WORKER_* told it', () => {
    const h = rec.hello;
    assert.equal(h.node_id, ID);
    assert.equal(h.worker_secret, SECRET);
    assert.match(h.node_name, /\S/);
    assert.match(h.executor_kind, /\S/);
    assert.equal(h.version, '9.9.9-interop');
    assert.deepEqual(h.labels, { zone: 'interop', tier: 'test' });
    const caps = Object.fromEntries(h.capabilities.map((c) => [c.name, c.max_inflight]));
    for (const name of ['echo', 'pythonExec', 'terminalExec']) {
      assert.ok(name in caps, `capability ${name} in ${JSON.stringify(h.capabilities)}`);
      assert.ok(caps[name] > 0, `${name} has a max_inflight`);
    }
  });

  test('heartbeats come with its node and session and are acked', async () => {
    await waitUntil(con, () => rec.heartbeatAcks >= 2, { what: 'two heartbeats', describe: describeAll });
    const hbs = rec.frames.filter((f) => f.payload === 'heartbeat').map((f) => f.frame.heartbeat);
    for (const hb of hbs) assert.deepEqual([hb.node_id, hb.session_id], [ID, rec.sessionId]);
    assert.equal(rec.closed, null);
  });

  test('echo returns the payload bytes unchanged', async () => {
    const raw = Buffer.from('{"message":"  interop echo  ","note":[1, 2]}');
    const r = await con.dispatch(ID, 'echo', raw, 20000);
    assert.ok(r.raw, JSON.stringify(r));
    assert.equal(r.raw.toString(), raw.toString());
    assert.ok(r.completedUnixMs > 0);
  });

  test('pythonexec: print(6*7) gives the original result shape', async () => {
    const r = await con.dispatch(ID, 'pythonExec', { code: 'print(6*7)' }, 60000);
    assert.ok(r.payload, JSON.stringify(r));
    assert.deepEqual([r.payload.output, r.payload.stderr, r.payload.exit_code], ['42\n', '', 0]);
  });

  test('terminalexec keeps a scoped session: create_if_missing, cd, pwd', async () => {
    const sid = 'obx:acc1:s1';
    const first = await con.dispatch(ID, 'terminalExec', { command: 'cd /tmp', session_id: sid, create_if_missing: true }, 60000);
    assert.ok(first.payload, JSON.stringify(first));
    assert.deepEqual([first.payload.session_id, first.payload.created, first.payload.exit_code], [sid, true, 0]);
    const pwd = await con.dispatch(ID, 'terminalExec', { command: 'pwd', session_id: sid }, 60000);
    assert.ok(pwd.payload, JSON.stringify(pwd));
    const { lease_expires_unix_ms: lease, ...rest } = pwd.payload;
    assert.deepEqual(rest, {
      session_id: sid,
      created: false,
      stdout: '/tmp\n',
      stderr: '',
      exit_code: 0,
      stdout_truncated: false,
      stderr_truncated: false,
    });
    assert.ok(lease > Date.now(), 'the lease is in the future');
    const missing = await con.dispatch(ID, 'terminalExec', { command: 'pwd', session_id: 'obx:acc1:nope' }, 60000);
    assert.equal(missing.error?.code, 'session_not_found', JSON.stringify(missing));
  });

  test('an unknown capability and an expired deadline are the original errors', async () => {
    const unknown = await con.dispatch(ID, 'noSuchCapability', { message: 'x' }, 20000);
    assert.equal(unknown.error?.code, 'unsupported_capability', JSON.stringify(unknown));
    const expired = await con.dispatch(ID, 'echo', { message: 'x' }, 20000, { deadlineUnixMs: Date.now() - 1000 });
    assert.equal(expired.error?.code, 'deadline_exceeded', JSON.stringify(expired));
  });

  test('it never sent a frame the original console does not know', () => {
    assert.deepEqual(rec.unknownFrames, []);
    assert.equal(rec.closed, null, describeAll());
    for (const f of rec.frames) assert.ok(ORIGINAL_REQUESTS.has(f.full.payload), `the worker sent ${f.full.payload}`);
  });

  test('a blank command_id: invalid_command_id with no id; the stream ends and the worker reconnects', async () => {
    const r = await con.dispatch(ID, 'echo', { message: 'x' }, 20000, { commandId: '' });
    assert.deepEqual(r.error, { code: 'dispatch_failed', message: 'command_id is required' });
    assert.deepEqual(
      rec.results.map((x) => [x.command_id, x.error?.code]).slice(-1),
      [['', 'invalid_command_id']],
    );
    assert.deepEqual(rec.closed, { code: S.INVALID_ARGUMENT, details: 'command_id is required', by: 'console' });
    const next = await con.waitForSession(ID, 30000);
    assert.notEqual(next.sessionId, rec.sessionId);
    assert.ok((await con.dispatch(ID, 'echo', { message: 'back' }, 20000)).raw, 'the new session works');
  });
});

describe('onlyboxes worker refused by an original console', { skip }, () => {
  test('a wrong secret: it logs the reason and tries again rather than exit', async () => {
    const con = new OriginalConsole({ workers: { [ID]: 'not-' + SECRET } });
    await con.listen();
    const worker = new WorkerProcess(workerEnv(con.target)).start();
    try {
      const refused = () => con.streams.filter((s) => s.closed?.code === S.UNAUTHENTICATED);
      await waitUntil(con, () => refused().length >= 2, {
        timeoutMs: 30000,
        what: 'two refused attempts',
        describe: () => `${con.describe()}\n--- worker stderr ---\n${worker.stderr}`,
      });
      for (const s of refused()) assert.equal(s.closed.details, 'invalid worker credential');
      assert.equal(worker.exit, undefined, `the worker is still running (stderr: ${worker.stderr})`);
      assert.match(worker.stderr, /invalid worker credential/);
      assert.doesNotMatch(worker.stderr, new RegExp(SECRET), 'the secret is not logged');
    } finally {
      await worker.stop();
      await con.close();
    }
  });
});
