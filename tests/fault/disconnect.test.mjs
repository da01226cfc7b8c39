// SPDX-License-Identifier: Apache-2.0
// Fault: a client disconnects in the middle of a call.
// (a) stdio: stdin closes while a long terminalExec runs: the server exits 0 and no process of
//     its boxes is left.
// (b) MCP over HTTP: the HTTP request of a long tools/call is aborted. MCP says a disconnect is
//     not a cancel (the client sends notifications/cancelled for that), so the call runs on, but
//     only within its timeout_ms: its processes must be gone by then, and the console, and the
//     same MCP session, keep serving meanwhile.
// (c) REST: a sync task's request is aborted: the task still reaches a terminal state and no
//     process outlives its timeout_ms.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  RawServer,
  TERMINAL_STATUSES,
  assertNsEmpty,
  bearer,
  consoleEnv,
  descendants,
  describeProcs,
  findProcesses,
  pidNs,
  sleep,
  sleepMarker,
  survivors,
  tokenFor,
  waitForNoProcess,
  waitForProcess,
  waitTaskEnded,
} from './lib.mjs';

/** How long past timeout_ms a process may take to be killed and reaped. */
const KILL_SLACK_MS = 3000;

test('stdio: stdin closes during a long terminalExec: exit 0, no process left', async (t) => {
  const raw = new RawServer({ env: { ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap' } });
  try {
    await raw.initialize();
    const secs = sleepMarker();
    raw.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'terminalExec', arguments: { command: `sleep ${secs}`, timeout_ms: 600_000 } } });
    const procs = await waitForProcess(secs, 30_000);
    assert.ok(procs.length > 0, 'the command never started');
    const ns = pidNs(procs[0].pid);
    const tree = descendants(raw.pid);
    const t0 = Date.now();
    const exit = await raw.closeStdin(15_000);
    assert.deepEqual(exit, { code: 0, signal: null }, `exit after stdin closed; stderr: ${raw.stderr.slice(-2000)}`);
    await assertNsEmpty([ns], 'after the server exited on EOF');
    assert.deepEqual(survivors(tree), [], describeProcs(survivors(tree)));
    assert.deepEqual(findProcesses(secs), []);
    t.diagnostic(`exited and cleaned up ${Date.now() - t0} ms after stdin closed`);
    await raw.checkStderr();
  } finally {
    await raw.kill();
  }
});

describe('console clients that go away', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-disconnect-'));
  let con, A;
  before(async () => {
    con = await new Console(consoleEnv(path.join(dir, 'console.db')), ['--with-worker']).start();
    A = await tokenFor(con.base, ADMIN, ADMIN_PW);
  });
  after(async () => {
    await con?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A raw MCP POST to /mcp. */
  async function mcpPost(body, { sid, signal } = {}) {
    const headers = { authorization: `Bearer ${A.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    if (sid) headers['mcp-session-id'] = sid;
    const res = await fetch(new URL('/mcp', con.base), { method: 'POST', headers, body: JSON.stringify(body), signal });
    return res;
  }

  /** The JSON-RPC response in a JSON or SSE answer. */
  async function rpcResult(res) {
    const text = await res.text();
    if ((res.headers.get('content-type') || '').startsWith('text/event-stream')) {
      const datas = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
      return datas.find((m) => 'id' in m);
    }
    return JSON.parse(text);
  }

  test('MCP over HTTP: the request of a long tools/call is aborted', async (t) => {
    const init = await mcpPost({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'fault', version: '0' } } });
    const initText = await init.text();
    assert.equal(init.status, 200, initText);
    const sid = init.headers.get('mcp-session-id');
    const inited = await mcpPost({ jsonrpc: '2.0', method: 'notifications/initialized' }, { sid });
    assert.equal(inited.status, 202);

    const timeoutMs = 8000;
    const secs = sleepMarker();
    const ac = new AbortController();
    const t0 = Date.now();
    const pending = mcpPost(
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'terminalExec', arguments: { command: `sleep ${secs}`, timeout_ms: timeoutMs } } },
      { sid, signal: ac.signal },
    ).then((res) => res.text());
    const procs = await waitForProcess(secs, 30_000);
    assert.ok(procs.length > 0, 'the command never started');
    ac.abort();
    await assert.rejects(pending, /abort/i);
    const abortedAt = Date.now() - t0;

    // The console and the same session keep serving while the call runs on.
    const echo = await mcpPost({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { message: 'still here' } } }, { sid });
    assert.equal(echo.status, 200);
    const er = await rpcResult(echo);
    assert.equal(er.result?.structuredContent?.message, 'still here', JSON.stringify(er));
    const other = await bearer(con.base, 'POST', '/api/v1/commands/echo', A.token, { message: 'rest' });
    assert.equal(other.status, 200, other.text);

    // The call's processes are gone by its timeout_ms.
    const left = await waitForNoProcess(secs, Math.max(0, timeoutMs - (Date.now() - t0)) + KILL_SLACK_MS);
    assert.deepEqual(left.map((p) => p.cmdline), [], `the aborted call's process outlived its timeout_ms (${timeoutMs} ms)`);
    const goneAt = Date.now() - t0;
    t.diagnostic(`aborted at ${abortedAt} ms; the process was gone at ${goneAt} ms (timeout_ms ${timeoutMs}): ${goneAt < timeoutMs ? 'cancelled by the disconnect' : 'ran to its timeout'}`);

    // The session is still usable afterwards, and ends cleanly.
    const r = await mcpPost({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'terminalExec', arguments: { command: 'echo after' } } }, { sid });
    const rr = await rpcResult(r);
    assert.equal(rr.result?.structuredContent?.stdout, 'after\n', JSON.stringify(rr));
    const del = await fetch(new URL('/mcp', con.base), { method: 'DELETE', headers: { authorization: `Bearer ${A.token}`, 'mcp-session-id': sid } });
    assert.equal(del.status, 200);
  });

  test('REST: a sync task whose request is aborted still ends, and no process outlives timeout_ms', async (t) => {
    const timeoutMs = 6000;
    const secs = sleepMarker();
    const requestId = 'abort-' + secs;
    const input = { command: `sleep ${secs}` };
    const ac = new AbortController();
    const t0 = Date.now();
    const pending = bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input, mode: 'sync', timeout_ms: timeoutMs, request_id: requestId }, { signal: ac.signal });
    const procs = await waitForProcess(secs, 30_000);
    assert.ok(procs.length > 0, 'the command never started');
    ac.abort();
    await assert.rejects(pending, /abort/i);

    // The same request_id finds the task (an idempotent replay, answered at once in async mode).
    const found = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input, mode: 'async', timeout_ms: timeoutMs, request_id: requestId });
    assert.equal(found.status, 202, found.text);
    assert.equal(found.body.status, 'running');
    const echo = await bearer(con.base, 'POST', '/api/v1/commands/echo', A.token, { message: 'meanwhile' });
    assert.equal(echo.status, 200, echo.text);

    const end = await waitTaskEnded(con.base, A.token, found.body.task_id, timeoutMs + 10_000);
    assert.ok(TERMINAL_STATUSES.includes(end.status), `the task is still ${end.status}`);
    assert.equal(end.status, 'timeout', JSON.stringify(end));
    const left = await waitForNoProcess(secs, Math.max(0, timeoutMs - (Date.now() - t0)) + KILL_SLACK_MS);
    assert.deepEqual(left.map((p) => p.cmdline), [], 'the aborted task\'s process outlived its timeout_ms');
    t.diagnostic(`the aborted task ended ${end.status} at ${Date.now() - t0} ms (timeout_ms ${timeoutMs})`);
  });
});
