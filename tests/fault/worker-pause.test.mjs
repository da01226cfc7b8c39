// SPDX-License-Identifier: Apache-2.0
// Fault: a remote `onlyboxes worker` is cut off from its console without its connection closing
// (paused with SIGSTOP, past the heartbeat window; CONSOLE_HEARTBEAT_INTERVAL_SEC=1) while it runs
// a call and holds a terminal session, and a second worker is online. The console must fail the
// call with worker_lost and list the worker offline; a call on its session must answer 503
// (REST; MCP's tool error says session_unavailable), not open a new empty session on the other
// worker. Resumed (SIGCONT), the
// worker notices, connects again by itself, and the session answers with its state.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js';
import { StreamableHTTPClientTransport } from '../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  bearer,
  commandExists,
  consoleEnv,
  sleepMarker,
  remoteWorkerEnv,
  startRemoteWorker,
  tokenFor,
  waitForNoProcess,
  waitForProcess,
  waitTaskEnded,
  waitWorkerStatus,
} from './lib.mjs';

const TIMEOUT_MS = 120_000;
const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-worker-pause-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a worker paused past its heartbeats: worker_lost, offline, its session 503 until it is back with its state', { skip: commandExists('bwrap') ? false : 'no bubblewrap' }, async (t) => {
  const con = await new Console(consoleEnv(path.join(dir, 'console.db'), { CONSOLE_HEARTBEAT_INTERVAL_SEC: '1' })).start();
  let a, b;
  const describe = () =>
    `--- console stderr ---\n${con.stderr.slice(-3000)}\n--- worker A stderr ---\n${a?.worker.stderr.slice(-3000)}\n--- worker B stderr ---\n${b?.worker.stderr.slice(-2000)}`;
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    // Worker A alone first, so that the session and the call are its.
    a = await startRemoteWorker(con.base, A.cookie, remoteWorkerEnv(dir));
    const made = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, {
      command: 'cd /tmp && export KEPT=yes',
      session_id: 'cut',
      create_if_missing: true,
      lease_ttl_sec: 600,
    });
    assert.equal(made.status, 200, made.text);
    const secs = sleepMarker();
    const task = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, {
      capability: 'terminalExec',
      input: { command: `sleep ${secs}` },
      mode: 'async',
      timeout_ms: TIMEOUT_MS,
    });
    assert.equal(task.status, 202, task.text);
    assert.ok((await waitForProcess(secs, 30_000)).length > 0, `the call never started\n${describe()}`);
    b = await startRemoteWorker(con.base, A.cookie, remoteWorkerEnv(dir));

    a.worker.proc.kill('SIGSTOP');
    try {
      // The call fails with worker_lost, naming the worker, long before its timeout.
      const snap = await waitTaskEnded(con.base, A.token, task.body.task_id, TIMEOUT_MS);
      assert.equal(snap.status, 'failed', JSON.stringify(snap));
      assert.equal(snap.error.code, 'worker_lost', JSON.stringify(snap));
      assert.ok(snap.error.message.includes(a.nodeId), snap.error.message);
      assert.ok(Date.parse(snap.completed_at) < Date.parse(snap.deadline_at), JSON.stringify(snap));
      t.diagnostic(`worker_lost: ${snap.error.message}`);

      // It is offline; the other one is not.
      await waitWorkerStatus(con.base, A.cookie, a.nodeId, 'offline', { describe });
      await waitWorkerStatus(con.base, A.cookie, b.nodeId, 'online', { describe });

      // Its session is unavailable: 503, whether or not the call may create one, and no new
      // session elsewhere. The tasks API says the same.
      for (const create of [false, true]) {
        const r = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'pwd', session_id: 'cut', create_if_missing: create });
        assert.equal(r.status, 503, `create_if_missing ${create}: ${r.text}`);
        assert.match(r.body.error, new RegExp(`terminal session cut is on worker ${a.nodeId}, which is not connected`), r.text);
      }
      const viaTask = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input: { command: 'pwd', session_id: 'cut' }, mode: 'sync' });
      assert.equal(viaTask.status, 503, viaTask.text);
      assert.match(viaTask.text, /not connected/, viaTask.text);
      // MCP over HTTP names the error code.
      const mcp = new Client({ name: 'obx-fault', version: '0.0.0' }, { capabilities: {} });
      const transport = new StreamableHTTPClientTransport(new URL('/mcp', con.base), { requestInit: { headers: { Authorization: `Bearer ${A.token}` } } });
      await mcp.connect(transport);
      try {
        const r = await mcp.callTool({ name: 'terminalExec', arguments: { command: 'pwd', session_id: 'cut', create_if_missing: true } });
        assert.equal(r.isError, true, JSON.stringify(r));
        assert.match(r.content[0].text, /^session_unavailable\b/, JSON.stringify(r));
        t.diagnostic(`MCP: ${r.content[0].text}`);
      } finally {
        await transport.terminateSession();
        await mcp.close();
      }
      // Work without a session goes to the worker that is online.
      const other = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'echo elsewhere' });
      assert.equal(other.status, 200, other.text);
      assert.equal(other.body.stdout, 'elsewhere\n');
    } finally {
      a.worker.proc.kill('SIGCONT');
    }

    // Resumed, it notices its stream ended, connects again, and its session is routed to it.
    await waitWorkerStatus(con.base, A.cookie, a.nodeId, 'online', { describe });
    assert.equal(a.worker.exit, undefined, 'the worker kept running');
    const back = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'pwd; echo $KEPT', session_id: 'cut' });
    assert.equal(back.status, 200, `${back.text}\n${describe()}`);
    assert.deepEqual([back.body.created, back.body.stdout], [false, '/tmp\nyes\n'], back.text);
    // The call the console gave up on was stopped when the worker noticed.
    assert.deepEqual(await waitForNoProcess(secs, 10_000), []);
  } finally {
    if (a) await a.worker.stop();
    if (b) await b.worker.stop();
    await con.stop();
  }
});
