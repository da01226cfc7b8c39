// SPDX-License-Identifier: Apache-2.0
// Fault: corrupt frames on the console's gRPC port, sent on raw Connect streams (@grpc/grpc-js
// writing the bytes as they are): bytes that are not protobuf, a JSON text, a message over the
// 4 MiB limit, and a well-formed frame whose payload is a oneof member the protocol does not have,
// each both as the first frame and after an acknowledged hello. Each must end only its own stream,
// with a gRPC status that says what was wrong, while the console keeps serving REST and a real
// `onlyboxes worker` connected beside them keeps its stream and its calls.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFull, grpc } from '../integration/interop/proto.mjs';
import { openStream } from '../integration/interop/original-worker.mjs';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  bearer,
  commandExists,
  consoleEnv,
  provisionWorker,
  remoteWorkerEnv,
  startRemoteWorker,
  tokenFor,
  waitUntil,
  workerItem,
} from './lib.mjs';

const S = grpc.status;
const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-grpc-frames-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A protobuf field: its tag and length-delimited bytes (wire type 2). */
function lengthDelimited(field, bytes) {
  const varint = (n) => {
    const out = [];
    while (n > 0x7f) {
      out.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    out.push(n);
    return Buffer.from(out);
  };
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

const MALFORMED = { code: S.INVALID_ARGUMENT, details: 'malformed frame: not a valid protobuf message of this protocol' };

/** The bad frames, with the status each must end its stream with before and after a hello. */
const CASES = [
  {
    name: 'bytes that are not protobuf (an invalid wire type)',
    bytes: Buffer.from([0x0f, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01]),
    first: MALFORMED,
    ready: MALFORMED,
  },
  {
    name: 'a field cut short (length past the end)',
    bytes: Buffer.from([0x0a, 0x40, 0x01, 0x02]),
    first: MALFORMED,
    ready: MALFORMED,
  },
  {
    name: 'a JSON text instead of protobuf',
    bytes: Buffer.from('{"hello":{"node_id":"x","worker_secret":"y"}}'),
    first: MALFORMED,
    ready: MALFORMED,
  },
  {
    name: 'a oneof member the protocol does not have (field 99)',
    bytes: lengthDelimited(99, Buffer.from('surprise')),
    first: { code: S.INVALID_ARGUMENT, details: 'first frame must be hello' },
    ready: { code: S.INVALID_ARGUMENT, details: 'unsupported frame type' },
  },
  {
    name: 'a message over 4 MiB',
    bytes: encodeFull('request', { hello: { node_id: 'big', node_name: 'n'.repeat(5 << 20) } }),
    first: { code: S.RESOURCE_EXHAUSTED },
    ready: { code: S.RESOURCE_EXHAUSTED },
  },
];

test('corrupt frames on the gRPC port end only their own stream; the console and its worker keep serving', { skip: commandExists('bwrap') ? false : 'no bubblewrap' }, async (t) => {
  const con = await new Console(consoleEnv(path.join(dir, 'console.db'))).start();
  let good;
  const describe = () => `--- console stderr ---\n${con.stderr.slice(-4000)}\n--- worker stderr ---\n${good?.worker.stderr.slice(-2000)}`;
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    good = await startRemoteWorker(con.base, A.cookie, remoteWorkerEnv(dir));
    const raw = await provisionWorker(con.base, A.cookie); // the credential the raw streams say hello with
    const session = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'cd /tmp', session_id: 'beside', create_if_missing: true });
    assert.equal(session.status, 200, session.text);

    /** A raw stream, past an acknowledged hello when ready. */
    async function rawStream(ready) {
      const s = openStream(con.grpcTarget);
      if (ready) {
        s.write({
          hello: {
            node_id: raw.nodeId,
            node_name: 'raw',
            executor_kind: 'docker',
            version: 'raw',
            capabilities: [{ name: 'noSuchCapability', max_inflight: 1 }],
            worker_secret: raw.env.WORKER_SECRET,
          },
        });
        const acked = await waitUntil(() => s.frames.some((f) => f.payload === 'connect_ack'), 20_000);
        assert.ok(acked, `no ack to a good hello\n${describe()}`);
      }
      return s;
    }

    for (const c of CASES) {
      for (const ready of [false, true]) {
        const what = `${c.name}, ${ready ? 'after the hello' : 'as the first frame'}`;
        const want = ready ? c.ready : c.first;
        const s = await rawStream(ready);
        s.write(c.bytes);
        let timer;
        const status = await Promise.race([s.status, new Promise((resolve) => (timer = setTimeout(resolve, 20_000, null)))]);
        clearTimeout(timer);
        if (!status) s.close();
        assert.ok(status, `${what}: the stream did not end\n${describe()}`);
        assert.equal(status.code, want.code, `${what}: ${JSON.stringify(status)}`);
        if (want.details) assert.equal(status.details, want.details, what);
        else assert.match(status.details, /\S/, `${what}: the status says why`);
        t.diagnostic(`${what}: ${Object.keys(S).find((k) => S[k] === status.code)} "${status.details.slice(0, 100)}"`);

        // The console keeps serving REST, and the worker beside it its session.
        const echo = await bearer(con.base, 'POST', '/api/v1/commands/echo', A.token, { message: what });
        assert.deepEqual([echo.status, echo.body], [200, { message: what }], `${what}: ${echo.text}`);
        const pwd = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'pwd', session_id: 'beside' });
        assert.equal(pwd.status, 200, `${what}: ${pwd.text}`);
        assert.equal(pwd.body.stdout, '/tmp\n');
      }
    }

    // The well-behaved worker never lost its stream; the raw one is offline.
    assert.equal(good.worker.stderr.match(/connected to the console/g)?.length, 1, good.worker.stderr);
    assert.doesNotMatch(good.worker.stderr, /reconnecting|ended/, good.worker.stderr);
    assert.equal((await workerItem(con.base, A.cookie, good.nodeId))?.status, 'online');
    assert.equal((await workerItem(con.base, A.cookie, raw.nodeId))?.status, 'offline');
    assert.equal(con.proc.exitCode, null, 'the console is running');
  } finally {
    if (good) await good.worker.stop();
    await con.stop();
  }
});
