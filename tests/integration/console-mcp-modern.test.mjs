// SPDX-License-Identifier: Apache-2.0
// The console's /mcp in protocol 2026-07-28 and without sessions, by raw HTTP as hand-written
// callers and proxies use it: requests served on their own, the headers checked against the body,
// a closed stream cancelling its call, tasks that are the console's own tasks (seen and cancelled
// through /api/v1/tasks, still readable after a restart), task notifications over a
// subscriptions/listen stream, legacy sessions that survive a restart, the token in the URL (never
// in a log line), hidden tools and the operator's renames, and what OAuth-minded clients are told.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { findProcesses, sleep, sleepMarker } from './lib.mjs';
import { Console, bearer, call, login, startFailure } from './console-lib.mjs';

const ADMIN = 'modern-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2);
const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-mcp-modern-'));
const env = {
  CONSOLE_DB_PATH: path.join(dir, 'console.db'),
  CONSOLE_HASH_KEY: 'modern-hash-key-' + process.pid,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_ENABLE_REGISTRATION: 'true',
  CONSOLE_MCP_TASK_AFTER_MS: '1500',
  CONSOLE_HIDDEN_TOOLS: 'readImage,exportFile',
  CONSOLE_MCP_TOOL_ECHO_NAME: 'ping',
  CONSOLE_MCP_TOOL_PYTHON_EXEC_DESCRIPTION: 'Runs Python for the data team.',
  ONLYBOXES_LOG_LEVEL: 'debug',
  ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
};
const VERSION = '2026-07-28';
const TASKS = { extensions: { 'io.modelcontextprotocol/tasks': {} } };

function meta(caps = {}) {
  return {
    'io.modelcontextprotocol/protocolVersion': VERSION,
    'io.modelcontextprotocol/clientCapabilities': caps,
    'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '0' },
  };
}

let con, tok, other;
let seq = 0;

async function tokenFor(base, username, password) {
  const cookie = await login(base, username, password);
  const t = await call(base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'm-' + Math.random() } });
  assert.equal(t.status, 201, t.text);
  return t.body.token;
}

/** The Mcp-Name a request needs, as the binding says. */
function nameOf(method, params) {
  if (method === 'tools/call') return params.name;
  if (method.startsWith('tasks/')) return params.taskId;
  return undefined;
}

/** A modern request with the headers a conforming client sends; resolves {status, body, events}. */
async function modern(method, params, { token = tok, caps = {}, headers = {}, signal, url } = {}) {
  const body = { jsonrpc: '2.0', id: ++seq, method, params: { ...params, _meta: { ...meta(caps), ...(params._meta || {}) } } };
  const h = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': VERSION,
    'mcp-method': method,
  };
  const name = nameOf(method, params);
  if (name !== undefined) h['mcp-name'] = name;
  if (token) h.authorization = `Bearer ${token}`;
  Object.assign(h, headers);
  for (const [k, v] of Object.entries(h)) if (v === null) delete h[k];
  const res = await fetch(url || `${con.base}/mcp`, { method: 'POST', headers: h, body: JSON.stringify(body), signal });
  const text = await res.text();
  if ((res.headers.get('content-type') || '').includes('text/event-stream')) {
    const events = text
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)));
    return { status: res.status, body: events.find((e) => e.id === body.id), events, headers: res.headers };
  }
  return { status: res.status, body: text ? JSON.parse(text) : null, events: [], headers: res.headers, text };
}

async function taskGet(id, token = tok) {
  return modern('tasks/get', { taskId: id }, { token, caps: TASKS });
}

async function settled(id) {
  for (let i = 0; i < 300; i++) {
    const r = await taskGet(id);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    if (r.body.result.status !== 'working') return r.body.result;
    await sleep(100);
  }
  throw new Error(`task ${id} never settled`);
}

before(async () => {
  con = await new Console(env, ['--with-worker']).start();
  tok = await tokenFor(con.base, ADMIN, ADMIN_PW);
  const cookie = await login(con.base, ADMIN, ADMIN_PW);
  const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie, body: { username: 'other', password: 'other-pw-1234' } });
  assert.equal(reg.status, 201, reg.text);
  other = await tokenFor(con.base, 'other', 'other-pw-1234');
});
after(async () => {
  if (con) await con.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('/mcp in protocol 2026-07-28', () => {
  test('discover, a listed tool set the operator shaped, and a call, without a session', async () => {
    const d = await modern('server/discover', {});
    assert.equal(d.status, 200);
    assert.deepEqual(d.body.result.supportedVersions, [VERSION]);
    assert.ok(d.body.result.capabilities.extensions['io.modelcontextprotocol/tasks']);
    assert.equal(d.body.result._meta['io.modelcontextprotocol/serverInfo'].name, 'onlyboxes-console');
    assert.equal(d.headers.get('mcp-session-id'), null);

    const l = await modern('tools/list', {});
    const tools = l.body.result.tools;
    assert.deepEqual(tools.map((t) => t.name), ['ping', 'pythonExec', 'terminalExec']);
    assert.equal(tools.find((t) => t.name === 'pythonExec').description, 'Runs Python for the data team.');
    assert.equal(tools.find((t) => t.name === 'terminalExec').inputSchema.properties.session_id['x-mcp-header'], 'Session-Id');
    assert.ok(Number.isInteger(l.body.result.ttlMs) && l.body.result.ttlMs >= 0);
    assert.ok(['public', 'private'].includes(l.body.result.cacheScope));

    const c = await modern('tools/call', { name: 'ping', arguments: { message: 'over 2026' } });
    assert.equal(c.status, 200);
    assert.equal(c.body.result.resultType, 'complete');
    assert.equal(c.body.result.structuredContent.message, 'over 2026');
    // Hidden from the list, still callable by the tools that know it.
    const hidden = await modern('tools/call', { name: 'readImage', arguments: { session_id: 'nope', file_path: 'a.png' } }, { headers: { 'mcp-param-session-id': 'nope' } });
    assert.equal(hidden.status, 200);
    assert.match(hidden.body.result.content[0].text, /^session_not_found/);
  });

  test('a terminal session carried by session_id, its header mirrored', async () => {
    const first = await modern('tools/call', { name: 'terminalExec', arguments: { command: 'cd /tmp && echo kept > f && pwd' } });
    const sid = first.body.result.structuredContent.session_id;
    assert.equal(first.body.result.structuredContent.stdout, '/tmp\n');
    const second = await modern('tools/call', { name: 'terminalExec', arguments: { command: 'cat f; pwd', session_id: sid } }, { headers: { 'mcp-param-session-id': sid } });
    assert.equal(second.body.result.structuredContent.stdout, 'kept\n/tmp\n');
    const missing = await modern('tools/call', { name: 'terminalExec', arguments: { command: 'pwd', session_id: sid } });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, -32020);
    assert.equal(missing.body.id, seq);
  });

  test('errors carry the request id and the status of the binding', async () => {
    const wrongMethod = await modern('tools/list', {}, { headers: { 'mcp-method': 'tools/call' } });
    assert.deepEqual([wrongMethod.status, wrongMethod.body.error.code, wrongMethod.body.id], [400, -32020, seq]);
    const removed = await modern('ping', {});
    assert.deepEqual([removed.status, removed.body.error.code, removed.body.id], [404, -32601, seq]);
    const future = await modern('tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } }, { headers: { 'mcp-protocol-version': '2099-01-01' } });
    assert.deepEqual([future.status, future.body.error.code], [400, -32022]);
    assert.deepEqual(future.body.error.data.supported, [VERSION]);
    const tasksWithout = await modern('tasks/get', { taskId: 'x' });
    assert.deepEqual([tasksWithout.status, tasksWithout.body.error.code], [400, -32021]);
  });

  test('closing the stream of a call stops its process', async () => {
    const m = sleepMarker();
    const ctl = new AbortController();
    const pending = modern('tools/call', { name: 'terminalExec', arguments: { command: `sleep ${m}` } }, { signal: ctl.signal }).catch(() => null);
    for (let i = 0; i < 200 && findProcesses(`sleep ${m}`).length === 0; i++) await sleep(25);
    assert.ok(findProcesses(`sleep ${m}`).length > 0, 'the command never started');
    ctl.abort();
    await pending;
    for (let i = 0; i < 200 && findProcesses(`sleep ${m}`).length > 0; i++) await sleep(25);
    assert.deepEqual(findProcesses(`sleep ${m}`), [], 'the command outlived its closed stream');
  });
});

describe('tasks over /mcp are console tasks', () => {
  test('a long call becomes a task, seen in /api/v1/tasks, its result read with tasks/get', async () => {
    const r = await modern('tools/call', { name: 'pythonExec', arguments: { code: 'import time; time.sleep(3); print(6*7)' } }, { caps: TASKS });
    assert.equal(r.status, 200);
    const created = r.body.result;
    assert.equal(created.resultType, 'task');
    assert.equal(created.status, 'working');
    const rest = await bearer(con.base, 'GET', `/api/v1/tasks/${created.taskId}`, tok);
    assert.equal(rest.status, 200, rest.text);
    assert.equal(rest.body.capability, 'pythonexec');
    assert.ok(['queued', 'dispatched', 'running'].includes(rest.body.status), rest.text);
    // Another account never sees it.
    const theirs = await taskGet(created.taskId, other);
    assert.equal(theirs.body.error.code, -32602);
    const done = await settled(created.taskId);
    assert.equal(done.status, 'completed');
    assert.equal(done.result.structuredContent.output, '42\n');
    const after = await bearer(con.base, 'GET', `/api/v1/tasks/${created.taskId}`, tok);
    assert.equal(after.body.status, 'succeeded');
  });

  test('a task created over REST is read with tasks/get; tasks/cancel stops the process', async () => {
    const submitted = await bearer(con.base, 'POST', '/api/v1/tasks', tok, { capability: 'echo', input: { message: 'from REST' }, mode: 'sync' });
    assert.equal(submitted.status, 200, submitted.text);
    const viaMcp = await settled(submitted.body.task_id);
    assert.equal(viaMcp.result.structuredContent.message, 'from REST');

    const m = sleepMarker();
    const r = await modern('tools/call', { name: 'terminalExec', arguments: { command: `sleep ${m}` } }, { caps: TASKS });
    const id = r.body.result.taskId;
    assert.ok(id, JSON.stringify(r.body));
    assert.ok(findProcesses(`sleep ${m}`).length > 0);
    const ack = await modern('tasks/cancel', { taskId: id }, { caps: TASKS });
    assert.deepEqual(ack.body.result.resultType, 'complete');
    assert.equal(ack.body.result.taskId, undefined);
    for (let i = 0; i < 200 && findProcesses(`sleep ${m}`).length > 0; i++) await sleep(25);
    assert.deepEqual(findProcesses(`sleep ${m}`), []);
    assert.equal((await settled(id)).status, 'cancelled');
    const rest = await bearer(con.base, 'GET', `/api/v1/tasks/${id}`, tok);
    assert.equal(rest.body.status, 'canceled');
  });

  test('subscriptions/listen: the acknowledgement first, then the task as it ends', async () => {
    const r = await modern('tools/call', { name: 'pythonExec', arguments: { code: 'import time; time.sleep(2.5); print("late")' } }, { caps: TASKS });
    const id = r.body.result.taskId;
    const ctl = new AbortController();
    const res = await fetch(`${con.base}/mcp`, {
      method: 'POST',
      signal: ctl.signal,
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': VERSION, 'mcp-method': 'subscriptions/listen', authorization: `Bearer ${tok}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 'sub-1', method: 'subscriptions/listen', params: { notifications: { taskIds: [id] }, _meta: meta(TASKS) } }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/event-stream/);
    const events = [];
    const reader = res.body.getReader();
    let buf = '';
    while (!events.some((e) => e.method === 'notifications/tasks')) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += new TextDecoder().decode(value);
      const lines = buf.split('\n');
      buf = lines.pop();
      for (const l of lines) if (l.startsWith('data: ')) events.push(JSON.parse(l.slice(6)));
    }
    ctl.abort();
    assert.equal(events[0].method, 'notifications/subscriptions/acknowledged');
    assert.deepEqual(events[0].params.notifications.taskIds, [id]);
    const n = events.find((e) => e.method === 'notifications/tasks');
    assert.equal(n.params.taskId, id);
    assert.equal(n.params.status, 'completed');
    assert.equal(n.params.result.structuredContent.output, 'late\n');
    assert.equal(n.params._meta['io.modelcontextprotocol/subscriptionId'], 'sub-1');
  });
});

describe('without headers, and across a restart', () => {
  test('a legacy request without Mcp-Session-Id, and ?token= for clients that cannot set headers', async () => {
    const plain = await call(con.base, 'POST', `/mcp?token=${encodeURIComponent(tok)}`, {
      headers: { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
      body: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'ping', arguments: { message: 'plain' } } },
    });
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.body.result.structuredContent.message, 'plain');
    assert.equal(plain.body.result.resultType, undefined, 'a legacy answer has no modern fields');
    const wrong = await call(con.base, 'POST', '/mcp?token=not-a-token', { headers: { accept: 'application/json' }, body: { jsonrpc: '2.0', id: 8, method: 'tools/list' } });
    assert.equal(wrong.status, 401);
    assert.match(wrong.body.error, /^invalid token: this MCP endpoint takes an API token/);
    assert.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="onlyboxes", error="invalid_token"', 'one WWW-Authenticate header');
    assert.match(wrong.headers.get('www-authenticate'), /error="invalid_token"/);
    const none = await call(con.base, 'POST', '/mcp', { headers: { accept: 'application/json' }, body: { jsonrpc: '2.0', id: 9, method: 'tools/list' } });
    assert.match(none.body.error, /^token required/);
    assert.ok(!con.stderr.includes(tok), 'the token reached a log line');
  });

  test('OAuth discovery is answered with what /mcp takes instead', async () => {
    for (const p of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-authorization-server', '/mcp/.well-known/openid-configuration']) {
      const r = await call(con.base, 'GET', p);
      assert.equal(r.status, 404);
      assert.match(r.body.error_description, /no OAuth authorization server: this MCP endpoint takes a static API token/);
      // A client that sends its token along learns whether it is one.
      const wrong = await call(con.base, 'GET', p, { headers: { authorization: 'Bearer not-a-token' } });
      assert.match(wrong.body.error_description, /the token in the Authorization header your client sends is not valid/);
      const right = await call(con.base, 'GET', p, { headers: { authorization: `Bearer ${tok}` } });
      assert.match(right.body.error_description, /is a valid API token of this console/);
    }
  });

  test('a restart keeps legacy sessions and ended tasks; DELETE ends a session for good', async () => {
    const init = await call(con.base, 'POST', '/mcp', {
      headers: { accept: 'application/json, text/event-stream', authorization: `Bearer ${tok}` },
      body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } },
    });
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid);
    const r = await modern('tools/call', { name: 'pythonExec', arguments: { code: 'import time; time.sleep(2); print("kept")' } }, { caps: TASKS });
    const id = r.body.result.taskId;
    await settled(id);

    await con.stop();
    con = await new Console({ ...env, CONSOLE_HTTP_ADDR: new URL(con.base).host }, ['--with-worker']).start();
    const h = { accept: 'application/json, text/event-stream', authorization: `Bearer ${tok}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    const again = await call(con.base, 'POST', '/mcp', { headers: h, body: { jsonrpc: '2.0', id: 2, method: 'tools/list' } });
    assert.equal(again.status, 200, again.text);
    const task = await taskGet(id);
    assert.equal(task.body.result.status, 'completed');
    assert.equal(task.body.result.result.structuredContent.output, 'kept\n');
    const del = await call(con.base, 'DELETE', '/mcp', { headers: h });
    assert.equal(del.status, 200);
    const gone = await call(con.base, 'POST', '/mcp', { headers: h, body: { jsonrpc: '2.0', id: 3, method: 'ping' } });
    assert.equal(gone.status, 404);
    assert.equal(gone.body.id, 3);
  });

  test('a setting that names no tool stops the console, naming the variable', async () => {
    const bad = await startFailure({ ...env, CONSOLE_DB_PATH: path.join(dir, 'bad.db'), CONSOLE_MCP_TOOL_PYTON_EXEC_NAME: 'py' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /CONSOLE_MCP_TOOL_PYTON_EXEC_NAME names no tool/);
  });
});
