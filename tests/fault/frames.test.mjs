// SPDX-License-Identifier: Apache-2.0
// Fault: corrupt frames on the worker <-> agent stream. Code in a box cannot write to the agent's
// channel, so this cannot be caused end to end; it is tested at the nearest real boundaries.
// (a) The real onlyboxes-agent binary, started as a box would start it, gets frames that are
//     corrupt (a length below the header), oversized (above the 24 MiB limit) or cut off
//     (stdin closes inside a frame) while a command runs: it must exit non-zero with a message
//     that says what was wrong and leave no process behind. Frames that are well formed but
//     carry nonsense get an ERROR answer and the agent keeps serving.
// (b) The worker's reader (src/worker/box.c) against a fake agent: tests/unit/test_worker_frames,
//     a cmocka test, is run from here so that it counts in this suite.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, describeProcs, descendants, findProcesses, sleep, sleepMarker, survivors, waitForProcess } from './lib.mjs';

const AGENT = process.env.OBX_AGENT || path.join(path.dirname(BIN), 'onlyboxes-agent');
const UNIT = path.join(path.dirname(BIN), 'test_worker_frames');
const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-frames-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const T = { EXEC: 0x01, PING: 0x05, HELLO: 0x81, EXIT: 0x84, OK: 0x86, ERROR: 0x87 };
const MAX_FRAME = 24 * 1024 * 1024;

function frame(type, id, payload = '') {
  const body = Buffer.from(payload);
  const h = Buffer.alloc(9);
  h.writeUInt32BE(body.length + 5, 0);
  h.writeUInt8(type, 4);
  h.writeUInt32BE(id, 5);
  return Buffer.concat([h, body]);
}

/** The agent run directly (as bubblewrap would run it, minus the namespaces), with its frames. */
class Agent {
  constructor() {
    const ws = mkdtempSync(path.join(dir, 'ws-'));
    this.proc = spawn(AGENT, ['--workspace', ws, '--state-dir', path.join(ws, '.state')], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdin.on('error', () => {});
    this.stderr = '';
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (d) => (this.stderr += d));
    this.frames = [];
    let pending = Buffer.alloc(0);
    this.proc.stdout.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const len = pending.readUInt32BE(0);
        this.frames.push({ type: pending[4], id: pending.readUInt32BE(5), payload: pending.subarray(9, 4 + len).toString() });
        pending = pending.subarray(4 + len);
      }
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  async next(pred, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      assert.ok(Date.now() < deadline, `no such frame from the agent within ${timeoutMs} ms; stderr: ${this.stderr}`);
      await sleep(20);
    }
  }

  /** Starts `sleep <marker>` as request 1 and waits for it on the host. */
  async startSleep() {
    await this.next((f) => f.type === T.HELLO);
    const secs = sleepMarker();
    this.proc.stdin.write(frame(T.EXEC, 1, JSON.stringify({ argv: ['sleep', secs] })));
    assert.ok((await waitForProcess(secs, 10_000)).length > 0, 'the command never started');
    this.tree = descendants(this.proc.pid);
    return secs;
  }

  async exit(timeoutMs = 10_000) {
    const r = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
    if (!r) this.proc.kill('SIGKILL');
    return r;
  }
}

const cases = [
  {
    name: 'a frame length below the header',
    bytes: () => Buffer.from([0, 0, 0, 2, 0xff, 0xff]),
    message: /corrupt frame on stdin: length 2 is outside/,
  },
  {
    name: 'an oversized frame (4 GiB announced)',
    bytes: () => Buffer.from([0xff, 0xff, 0xff, 0xff, T.EXEC, 0, 0, 0, 9]),
    message: /corrupt frame on stdin: length 4294967295 is outside 5\.\.25165824/,
  },
  {
    name: 'a frame one byte over the limit',
    bytes: () => {
      const h = Buffer.alloc(9);
      h.writeUInt32BE(MAX_FRAME + 1, 0);
      h.writeUInt8(T.EXEC, 4);
      return h;
    },
    message: /length 25165825 is outside/,
  },
  {
    name: 'random bytes',
    bytes: () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    message: /corrupt frame on stdin: length \d+ is outside/,
  },
  {
    name: 'a truncated frame (stdin closes inside it)',
    bytes: () => frame(T.EXEC, 2, JSON.stringify({ argv: ['true'] })).subarray(0, 12),
    close: true,
    message: /stdin closed inside a frame \(12 bytes of it received\)/,
  },
];

for (const c of cases) {
  test(`agent: ${c.name} on its stdin mid-command: it exits with a message and leaves no process`, { skip: !existsSync(AGENT) && `no agent at ${AGENT}` }, async (t) => {
    const a = new Agent();
    try {
      const secs = await a.startSleep();
      a.proc.stdin.write(c.bytes());
      if (c.close) a.proc.stdin.end();
      const r = await a.exit();
      assert.ok(r, `the agent did not exit within 10 s; stderr: ${a.stderr}`);
      assert.deepEqual(r, { code: 1, signal: null }, `exit of the agent; stderr: ${a.stderr}`);
      assert.match(a.stderr, c.message);
      assert.deepEqual(survivors(a.tree), [], `processes of the agent left: ${describeProcs(survivors(a.tree))}`);
      assert.deepEqual(findProcesses(secs), []);
      // The command's request still got its end before the agent went away.
      const exit = a.frames.find((f) => f.type === T.EXIT && f.id === 1);
      t.diagnostic(`${a.stderr.trim()}${exit ? `; request 1 ended: ${exit.payload}` : ''}`);
    } finally {
      a.proc.kill('SIGKILL');
    }
  });
}

test('agent: well-formed frames with nonsense get an ERROR and the agent keeps serving', { skip: !existsSync(AGENT) && `no agent at ${AGENT}` }, async () => {
  const a = new Agent();
  try {
    const secs = await a.startSleep();
    const bad = [
      [frame(T.EXEC, 10, '{not json'), /invalid_payload/],
      [frame(T.EXEC, 11, '[1,2]'), /invalid_payload/],
      [frame(T.EXEC, 12, JSON.stringify({ argv: [] })), /invalid_payload/],
      [frame(0x7f, 13, 'x'), /unknown frame type 0x7f/],
      [frame(T.EXIT, 14, '{}'), /unknown frame type 0x84/],
    ];
    for (const [bytes, want] of bad) {
      const id = bytes.readUInt32BE(5);
      a.proc.stdin.write(bytes);
      const f = await a.next((x) => x.id === id);
      assert.equal(f.type, T.ERROR, `request ${id}: ${JSON.stringify(f)}`);
      assert.match(f.payload, want);
    }
    a.proc.stdin.write(frame(T.PING, 20));
    assert.equal((await a.next((x) => x.id === 20)).type, T.OK);
    assert.ok(findProcesses(secs).length > 0, 'the running command was disturbed');
    a.proc.stdin.end();
    const r = await a.exit();
    assert.deepEqual(r, { code: 0, signal: null }, a.stderr);
    assert.deepEqual(survivors(a.tree), []);
  } finally {
    a.proc.kill('SIGKILL');
  }
});

test('worker: corrupt frames from a fake agent break the box, calls fail clearly (test_worker_frames)', { skip: !existsSync(UNIT) && `not built: ${UNIT}` }, () => {
  const r = spawnSync(UNIT, [], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `test_worker_frames failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout + r.stderr, /PASSED/);
});
