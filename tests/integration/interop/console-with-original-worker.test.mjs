// SPDX-License-Identifier: Apache-2.0
// `onlyboxes console` with an ORIGINAL worker (original-worker.mjs: the original's fields only, no
// extensions) joined over real gRPC: provisioned through the REST API as an operator does, it
// connects with the startup command's id and secret; echo, pythonExec and terminalExec through
// REST, the tasks API and MCP over HTTP run on it (results carry its directories); it never
// receives a frame it does not know; refused hellos get the original's status codes and messages;
// the worker list shows it as it declared itself; a newer connection and a deleted worker end its
// stream as the original console does.
// Skipped, with the reason, while the console names no gRPC address.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { bearer, call, login } from '../console-lib.mjs';
import { grpc } from './proto.mjs';
import { OriginalWorker } from './original-worker.mjs';
import { handshakeCases, runHandshakeCase } from './handshake-cases.mjs';
import { startConsoleWithGrpc } from './binary.mjs';
import { waitUntil } from './wait.mjs';

const S = grpc.status;
const ADMIN = 'interop-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** What an original console sends a worker; anything else would end an original worker's stream. */
const ORIGINAL_RESPONSES = new Set(['connect_ack', 'heartbeat_ack', 'command_dispatch']);

const dir = mkdtempSync(path.join(tmpdir(), 'obx-interop-console-'));
const started = await startConsoleWithGrpc({
  CONSOLE_DB_PATH: path.join(dir, 'console.db'),
  CONSOLE_HASH_KEY: 'interop-hash-key-' + process.pid,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_HEARTBEAT_INTERVAL_SEC: '1',
  ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
});
after(async () => {
  await started.con?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The startup command's variables. */
function commandVars(command) {
  return Object.fromEntries(
    command
      .split(/\s+/)
      .filter((w) => /^[A-Z_]+=/.test(w))
      .map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]),
  );
}

describe('onlyboxes console with an original worker', { skip: started.skip }, () => {
  const { con, grpcTarget } = started;
  let cookie, token, adminId, vars, worker, workDir, ack;

  /** Provisions a normal worker through the REST API; resolves the startup command's variables. */
  async function provision() {
    const r = await call(con.base, 'POST', '/api/v1/workers', { cookie, body: { type: 'normal' } });
    assert.equal(r.status, 201, r.text);
    const v = commandVars(r.body.command);
    assert.equal(v.WORKER_ID, r.body.node_id);
    assert.match(v.WORKER_SECRET, /^[0-9a-f]{64}$/);
    return v;
  }

  function originalWorker(v, opts = {}) {
    return new OriginalWorker({ target: grpcTarget, nodeId: v.WORKER_ID, secret: v.WORKER_SECRET, heartbeatIntervalSec: 5, ...opts });
  }

  /** The dispatches the worker received since index `from`, with their payloads parsed. */
  function dispatches(from = 0) {
    return worker.frames
      .slice(from)
      .filter((f) => f.payload === 'command_dispatch')
      .map((f) => ({ ...f.frame.command_dispatch, payload: JSON.parse(f.frame.command_dispatch.payload_json.toString('utf8')) }));
  }

  async function mcp(fn) {
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', con.base), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
    const client = new Client({ name: 'obx-interop', version: '0.0.0' }, { capabilities: {} });
    await client.connect(transport);
    try {
      return await fn(client);
    } finally {
      await transport.terminateSession();
      await client.close();
    }
  }

  before(async () => {
    cookie = await login(con.base, ADMIN, ADMIN_PW);
    adminId = (await call(con.base, 'GET', '/api/v1/console/session', { cookie })).body.account.account_id;
    const t = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'interop' } });
    assert.equal(t.status, 201, t.text);
    token = t.body.token;
    vars = await provision();
    workDir = mkdtempSync(path.join(tmpdir(), 'obx-interop-original-worker-'));
    worker = originalWorker(vars, {
      labels: { zone: 'interop', source: 'original-worker' },
      version: '0.9.9-original',
      workDir,
    });
    ack = await worker.start();
  });
  after(async () => {
    await worker?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  test('the startup command names the gRPC address the console listens on', () => {
    const [host, port] = vars.WORKER_CONSOLE_GRPC_TARGET.split(/:(?=\d+$)/);
    assert.equal(host, '127.0.0.1');
    // With CONSOLE_GRPC_ADDR's port 0 the console may name the port it was given or the bound one.
    if (port !== '0') assert.equal(vars.WORKER_CONSOLE_GRPC_TARGET, grpcTarget);
  });

  test('the original hello is acked: a session id, the heartbeat interval, no extensions', () => {
    assert.match(ack.session_id, UUID);
    assert.equal(ack.heartbeat_interval_sec, 1);
    assert.deepEqual(worker.ackFull.extensions, [], 'an ack to an original worker names no extensions');
  });

  test('GET /api/v1/workers lists it online as it declared itself', async () => {
    const r = await call(con.base, 'GET', '/api/v1/workers', { cookie });
    assert.equal(r.status, 200, r.text);
    const item = r.body.items.find((i) => i.node_id === vars.WORKER_ID);
    assert.ok(item, r.text);
    assert.equal(item.status, 'online');
    assert.equal(item.node_name, `worker-docker-${vars.WORKER_ID.slice(0, 8)}`);
    assert.equal(item.executor_kind, 'docker');
    assert.equal(item.version, '0.9.9-original');
    assert.deepEqual(
      item.capabilities.map((c) => [c.name, c.max_inflight]).sort(),
      [
        ['echo', 4],
        ['pythonExec', 4],
        ['terminalExec', 4],
      ],
    );
    // The hello's labels merged over the provisioned ones; owner and type stay the console's.
    assert.deepEqual(item.labels, {
      source: 'original-worker',
      zone: 'interop',
      'obx.owner_id': adminId,
      'obx.worker_type': 'normal',
    });
  });

  test('heartbeats are acked', async () => {
    await waitUntil(worker, () => worker.counters.heartbeatAcks >= 2, { what: 'two heartbeat acks', describe: () => worker.describe() });
    assert.equal(worker.counters.missedAcks, 0);
  });

  test('REST echo runs on the original worker and comes back untrimmed', async () => {
    const from = worker.frames.length;
    const r = await bearer(con.base, 'POST', '/api/v1/commands/echo', token, { message: '  hello, original  ' });
    assert.deepEqual([r.status, r.body], [200, { message: '  hello, original  ' }], r.text);
    const [d] = dispatches(from);
    assert.equal(d.capability, 'echo');
    assert.deepEqual(d.payload, { message: '  hello, original  ' });
    assert.match(d.command_id, /\S/);
    assert.ok(d.deadline_unix_ms > Date.now() - 60000, 'the dispatch has a deadline');
  });

  test('a pythonExec task runs on the original worker', async () => {
    const from = worker.frames.length;
    const r = await bearer(con.base, 'POST', '/api/v1/tasks', token, {
      capability: 'pythonExec',
      mode: 'sync',
      input: { code: 'import os\nprint(6*7)\nprint(os.getcwd())' },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.status, 'succeeded');
    const [answer, cwd] = r.body.result.output.split('\n');
    assert.equal(answer, '42');
    assert.ok(cwd.startsWith(workDir + path.sep), `${cwd} is in the original worker's ${workDir}`);
    assert.deepEqual([r.body.result.stderr, r.body.result.exit_code], ['', 0]);
    const [d] = dispatches(from);
    assert.equal(d.capability, 'pythonexec');
  });

  test('REST terminal commands keep their session on the original worker', async () => {
    const from = worker.frames.length;
    const first = await bearer(con.base, 'POST', '/api/v1/commands/terminal', token, { command: 'pwd' });
    assert.equal(first.status, 200, first.text);
    const sid = first.body.session_id;
    assert.match(sid, UUID);
    assert.equal(first.body.created, true);
    assert.ok(first.body.stdout.startsWith(path.join(workDir, 'terminal') + path.sep), first.body.stdout);
    assert.deepEqual([first.body.stdout_truncated, first.body.stderr_truncated], [false, false]);
    assert.ok(first.body.lease_expires_unix_ms > Date.now());
    // The worker saw the account-scoped id, as the original console sends it.
    assert.equal(dispatches(from)[0].payload.session_id, `obx:${adminId}:${sid}`);

    assert.equal((await bearer(con.base, 'POST', '/api/v1/commands/terminal', token, { command: 'cd /tmp', session_id: sid })).status, 200);
    const pwd = await bearer(con.base, 'POST', '/api/v1/commands/terminal', token, { command: 'pwd', session_id: sid });
    assert.deepEqual([pwd.status, pwd.body.session_id, pwd.body.created, pwd.body.stdout], [200, sid, false, '/tmp\n'], pwd.text);

    const missing = await bearer(con.base, 'POST', '/api/v1/commands/terminal', token, { command: 'pwd', session_id: 'no-such-session' });
    assert.deepEqual([missing.status, missing.body], [404, { error: 'session not found' }], missing.text);
  });

  test('MCP over HTTP: echo, pythonExec and terminalExec run on the original worker', async () => {
    await mcp(async (client) => {
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'over mcp' } });
      assert.deepEqual(echo.structuredContent, { message: 'over mcp' });
      const py = await client.callTool({ name: 'pythonExec', arguments: { code: 'print(6*7)' } });
      assert.ok(!py.isError, JSON.stringify(py));
      assert.deepEqual([py.structuredContent.output, py.structuredContent.exit_code], ['42\n', 0]);
      const t1 = await client.callTool({ name: 'terminalExec', arguments: { command: 'pwd', session_id: 'mcp-s1', create_if_missing: true } });
      assert.ok(!t1.isError, JSON.stringify(t1));
      assert.equal(t1.structuredContent.session_id, 'mcp-s1');
      assert.equal(t1.structuredContent.created, true);
      assert.ok(t1.structuredContent.stdout.startsWith(path.join(workDir, 'terminal') + path.sep), t1.structuredContent.stdout);
      await client.callTool({ name: 'terminalExec', arguments: { command: 'cd /tmp', session_id: 'mcp-s1' } });
      const t2 = await client.callTool({ name: 'terminalExec', arguments: { command: 'pwd', session_id: 'mcp-s1' } });
      assert.deepEqual([t2.structuredContent.created, t2.structuredContent.stdout], [false, '/tmp\n']);
    });
  });

  test('the original worker never received a frame it does not know', () => {
    assert.deepEqual(worker.violations, []);
    assert.equal(worker.closed, null, worker.describe());
    const kinds = new Set(worker.frames.map((f) => f.full.payload));
    for (const k of kinds) assert.ok(ORIGINAL_RESPONSES.has(k), `the console sent ${k}`);
    assert.ok(kinds.has('command_dispatch'));
  });

  test('refused hellos get the original status codes and messages', async () => {
    for (const c of handshakeCases({ nodeId: vars.WORKER_ID, secret: vars.WORKER_SECRET })) {
      const r = await runHandshakeCase(grpcTarget, c);
      assert.deepEqual([r.code, r.details], [c.code, c.details], c.name);
      assert.deepEqual(r.frames, [], `${c.name}: nothing before the refusal`);
    }
    assert.equal(worker.closed, null, 'a refused hello does not touch the connected worker');
  });

  test('a newer connection replaces the session: FailedPrecondition, and work goes to the new one', async () => {
    const v = await provision();
    const old = originalWorker(v);
    await old.start();
    const newer = originalWorker(v);
    try {
      await newer.start();
      assert.deepEqual(await old.done, { code: S.FAILED_PRECONDITION, details: 'session replaced by a newer connection', by: 'console' });
      assert.equal(newer.closed, null);
    } finally {
      await old.stop();
      await newer.stop();
    }
  });

  test('deleting a worker ends its stream: PermissionDenied "worker credential revoked"', async () => {
    const v = await provision();
    const w = originalWorker(v);
    try {
      await w.start();
      const del = await call(con.base, 'DELETE', `/api/v1/workers/${v.WORKER_ID}`, { cookie });
      assert.equal(del.status, 204, del.text);
      assert.deepEqual(await w.done, { code: S.PERMISSION_DENIED, details: 'worker credential revoked', by: 'console' });
      const again = originalWorker(v);
      await assert.rejects(again.start(), (e) => e.code === S.UNAUTHENTICATED && e.details === 'unknown worker_id');
      await again.stop();
    } finally {
      await w.stop();
    }
  });
});
