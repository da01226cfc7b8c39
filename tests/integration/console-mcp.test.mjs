// SPDX-License-Identifier: Apache-2.0
// MCP over Streamable HTTP at the console's /mcp, driven by the official SDK client
// (StreamableHTTPClientTransport) and by raw fetch for the HTTP rules: `onlyboxes console
// --with-worker` on a free loopback port with a fresh database, tokens made through the cookie API.
// Every tool runs in the embedded worker; progress arrives over SSE while a call runs; a cancel
// kills the process; sessions, terminal sessions and their files belong to the token's account.

import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { assertNoProcess, findProcesses, resultText, sleep, sleepMarker, waitForProcess } from './lib.mjs';
import { Console, call, login } from './console-lib.mjs';

/** The `sleep MARKER` processes themselves (not the shells whose command line names them). */
function sleepers(marker) {
  return findProcesses(`sleep ${marker}`).filter((p) => p.cmdline === `sleep ${marker}`);
}

async function waitForSleeper(marker, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let found = sleepers(marker);
  while (found.length === 0 && Date.now() < deadline) {
    await sleep(25);
    found = sleepers(marker);
  }
  return found;
}

const ADMIN = 'mcp-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2);
const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-mcp-'));
const PER_ACCOUNT = 3;
const env = {
  CONSOLE_DB_PATH: path.join(dir, 'console.db'),
  CONSOLE_HASH_KEY: 'mcp-hash-key-' + process.pid,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_ENABLE_REGISTRATION: 'true',
  CONSOLE_MCP_MAX_SESSIONS_PER_ACCOUNT: String(PER_ACCOUNT),
  CONSOLE_MCP_ALLOWED_ORIGINS: 'https://app.example.com',
  ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
};
// A 1x1 PNG.
const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP438DwHwAGgAJ/zxIJ8QAAAABJRU5ErkJggg==';
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
};

async function tokenFor(base, username, password) {
  const cookie = await login(base, username, password);
  const t = await call(base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'mcp-' + Math.random() } });
  assert.equal(t.status, 201, t.text);
  return { cookie, token: t.body.token };
}

/** An SDK client connected to /mcp with the token. */
async function connect(token) {
  const transport = new StreamableHTTPClientTransport(new URL(con.url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'obx-console-mcp-test', version: '0.0.0' }, { capabilities: {} });
  await client.connect(transport);
  return { client, transport };
}

/** Runs fn(client, transport) on a new session, which ends (DELETE) afterwards. */
async function withClient(token, fn) {
  const { client, transport } = await connect(token);
  try {
    return await fn(client, transport);
  } finally {
    await transport.terminateSession();
    await client.close();
  }
}

/** A raw POST to /mcp; headers replace the defaults (null removes one). */
async function post(body, { token, headers = {}, signal } = {}) {
  const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (token) h.authorization = `Bearer ${token}`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === null) delete h[k];
    else h[k] = v;
  }
  const res = await fetch(con.url, { method: 'POST', headers: h, body: typeof body === 'string' ? body : JSON.stringify(body), signal });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {}
  return { status: res.status, headers: res.headers, text, body: json };
}

/** A new session by raw initialize; returns its id. */
async function rawSession(token) {
  const r = await post(INIT, { token });
  assert.equal(r.status, 200, r.text);
  const sid = r.headers.get('mcp-session-id');
  assert.match(sid, /^[\x21-\x7e]{16,}$/);
  return sid;
}

/** A request with a Host header fetch cannot set. */
function postWithHost(host, origin, token) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(INIT);
    const req = http.request(
      {
        host: '127.0.0.1',
        port: con.port,
        path: '/mcp',
        method: 'POST',
        headers: {
          host,
          origin,
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

let con, A, B, C;
after(() => rmSync(dir, { recursive: true, force: true }));

describe('MCP over Streamable HTTP (console, embedded worker)', () => {
  before(async () => {
    con = await new Console(env, ['--with-worker']).start();
    con.url = `${con.base}/mcp`;
    con.port = Number(new URL(con.base).port);
    A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    for (const name of ['bob', 'carol']) {
      const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: A.cookie, body: { username: name, password: `${name}-pw` } });
      assert.equal(reg.status, 201, reg.text);
    }
    B = await tokenFor(con.base, 'bob', 'bob-pw');
    C = await tokenFor(con.base, 'carol', 'carol-pw');
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('initialize, tools/list, ping, DELETE', async () => {
    const { client, transport } = await connect(A.token);
    assert.match(transport.sessionId, /^[\x21-\x7e]+$/);
    assert.equal(client.getServerVersion().name, 'onlyboxes-console');
    assert.ok(client.getServerCapabilities().tools);
    const { tools } = await client.listTools();
    assert.deepEqual(
      tools.map((t) => t.name),
      ['echo', 'exportFile', 'pythonExec', 'readImage', 'terminalExec'],
    );
    assert.deepEqual(await client.ping(), {});
    const sid = transport.sessionId;
    await transport.terminateSession();
    await client.close();
    const gone = await post({ jsonrpc: '2.0', id: 9, method: 'ping' }, { token: A.token, headers: { 'mcp-session-id': sid } });
    assert.equal(gone.status, 404, gone.text);
  });

  test('every tool runs in the embedded worker', async () => {
    await withClient(A.token, async (client, transport) => {
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'hello over http' } });
      assert.deepEqual(echo.structuredContent, { message: 'hello over http' });

      const py = await client.callTool({ name: 'pythonExec', arguments: { code: 'print(6 * 7)' } });
      assert.equal(py.isError ?? false, false, resultText(py));
      assert.equal(py.structuredContent.output, '42\n');
      assert.equal(py.structuredContent.exit_code, 0);

      const t1 = await client.callTool({ name: 'terminalExec', arguments: { command: `mkdir -p d && cd d && export X=kept && echo ${PNG_B64} | base64 -d > dot.png` } });
      assert.equal(t1.isError ?? false, false, resultText(t1));
      const sid = t1.structuredContent.session_id;
      assert.equal(t1.structuredContent.created, true);
      assert.ok(!sid.startsWith('obx:'), `the account scope must not leak: ${sid}`);
      const t2 = await client.callTool({ name: 'terminalExec', arguments: { command: 'pwd; echo $X', session_id: sid } });
      assert.equal(t2.structuredContent.created, false);
      assert.match(t2.structuredContent.stdout, /\/d\nkept\n$/);

      // A relative path is the session's working directory's (it cd'ed into d).
      const img = await client.callTool({ name: 'readImage', arguments: { session_id: sid, file_path: 'dot.png' } });
      assert.equal(img.isError ?? false, false, JSON.stringify(img));
      assert.deepEqual(img.content, [{ type: 'image', mimeType: 'image/png', data: PNG_B64 }]);

      const bad = await client.callTool({ name: 'pythonExec', arguments: {} });
      assert.equal(bad.isError, true);
      // JSON-RPC errors travel with HTTP 200, so the SDK sees them.
      await assert.rejects(client.callTool({ name: 'nope', arguments: {} }), /unknown tool/);
    });
  });

  test('progress and log notifications stream over SSE while the call runs', async () => {
    await withClient(A.token, async (client, transport) => {
      const progress = [];
      const logs = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params));
      // The command cannot end before the test has seen its first chunk: it waits in a sleep that
      // the test ends only then. Output delivered only at the end would leave the call hanging.
      const m = sleepMarker();
      let released;
      const r = await client.callTool(
        { name: 'terminalExec', arguments: { command: `echo line1; sleep ${m}; echo line2; echo line3` } },
        CallToolResultSchema,
        {
          onprogress: (p) => {
            progress.push(p);
            released ??= waitForSleeper(m, 30_000).then((procs) => {
              for (const proc of procs) process.kill(proc.pid, 'SIGTERM');
              return procs.length;
            });
          },
          timeout: 120_000,
        },
      );
      assert.ok((await released) > 0, 'the command was not running when its first chunk arrived');
      assert.equal(r.structuredContent.stdout, 'line1\nline2\nline3\n');
      assert.ok(progress.length >= 2, `progress: ${JSON.stringify(progress)}`);
      assert.match(progress[0].message, /line1/);
      for (let i = 1; i < progress.length; i++) assert.ok(progress[i].progress > progress[i - 1].progress);

      // Nothing asked for: a plain JSON answer.
      const plain = await post(
        { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x' } } },
        { token: A.token, headers: { 'mcp-session-id': transport.sessionId, 'mcp-protocol-version': '2025-11-25' } },
      );
      assert.equal(plain.status, 200);
      assert.match(plain.headers.get('content-type'), /^application\/json/);

      await client.setLoggingLevel('debug');
      await client.callTool({ name: 'echo', arguments: { message: 'logged' } });
      assert.ok(logs.some((l) => /echo: finished/.test(l.data)), JSON.stringify(logs));

      // Raw: the same call as an SSE stream, events only, no ids.
      const sse = await post(
        { jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'echo', arguments: { message: 'y' } } },
        { token: A.token, headers: { 'mcp-session-id': transport.sessionId } },
      );
      assert.equal(sse.status, 200);
      assert.match(sse.headers.get('content-type'), /^text\/event-stream/);
      assert.equal(sse.headers.get('cache-control'), 'no-cache');
      assert.doesNotMatch(sse.text, /^id:/m);
      const events = sse.text.split('\n\n').filter(Boolean);
      assert.ok(events.every((e) => e.startsWith('event: message\ndata: ')), sse.text);
      assert.equal(JSON.parse(events.at(-1).slice('event: message\ndata: '.length)).id, 6);
    });
  });

  test('several calls in flight on one session all complete', async () => {
    await withClient(A.token, async (client, transport) => {
      const calls = [0, 1, 2].map((i) => client.callTool({ name: 'pythonExec', arguments: { code: `import time; time.sleep(0.5); print(${i})` } }));
      const results = await Promise.all(calls);
      assert.deepEqual(
        results.map((r) => r.structuredContent.output),
        ['0\n', '1\n', '2\n'],
      );
    });
  });

  test('a cancel stops the process; a disconnect does not', async () => {
    await withClient(A.token, async (client, transport) => {
      const secs = sleepMarker();
      const ac = new AbortController();
      const call = client.callTool({ name: 'terminalExec', arguments: { command: `sleep ${secs}` } }, CallToolResultSchema, { signal: ac.signal });
      assert.ok((await waitForProcess(secs, 15000)).length > 0, 'the command never started');
      ac.abort();
      await assert.rejects(call);
      await assertNoProcess(secs, 5000, 'after notifications/cancelled');

      // A POST whose client goes away: the command still finishes.
      const t = await client.callTool({ name: 'terminalExec', arguments: { command: 'true' } });
      const sid = t.structuredContent.session_id;
      const gone = new AbortController();
      const short = sleepMarker().replace(/^1000/, '1'); // about a second, and unique
      const pending = post(
        { jsonrpc: '2.0', id: 77, method: 'tools/call', params: { name: 'terminalExec', arguments: { session_id: sid, command: `sleep ${short}; echo finished > flag` } } },
        { token: A.token, headers: { 'mcp-session-id': transport.sessionId }, signal: gone.signal },
      ).catch((e) => e);
      assert.ok((await waitForProcess(`sleep ${short}`, 30_000)).length > 0, 'the command never started');
      gone.abort();
      assert.ok((await pending) instanceof Error);
      let out;
      for (let i = 0; i < 300; i++) {
        const r = await client.callTool({ name: 'terminalExec', arguments: { session_id: sid, command: 'cat flag 2>/dev/null || true' } });
        out = r.structuredContent?.stdout;
        if (out === 'finished\n') break;
        await sleep(100);
      }
      assert.equal(out, 'finished\n');
      // The session still answers.
      assert.deepEqual((await client.callTool({ name: 'echo', arguments: { message: 'still here' } })).structuredContent, { message: 'still here' });
    });
  });

  test('HTTP rules: 401, 403, 400, 404, 405, 406, 415, 202', async () => {
    const sid = await rawSession(A.token);
    const withSid = { 'mcp-session-id': sid };
    const ping = { jsonrpc: '2.0', id: 2, method: 'ping' };

    for (const token of [undefined, 'not-a-token']) {
      const r = await post(ping, { token, headers: withSid });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate'), /^Bearer\b/);
    }
    const evil = await post(ping, { token: A.token, headers: { ...withSid, origin: 'http://evil.example.com' } });
    assert.equal(evil.status, 403);
    const same = await post(ping, { token: A.token, headers: { ...withSid, origin: con.base } });
    assert.equal(same.status, 200, same.text);
    const listed = await post(ping, { token: A.token, headers: { ...withSid, origin: 'https://app.example.com' } });
    assert.equal(listed.status, 200, listed.text);
    assert.equal(await postWithHost('evil.example.com', 'http://evil.example.com', A.token), 403);
    assert.equal(await postWithHost(`localhost:${con.port}`, `http://localhost:${con.port}`, A.token), 200);

    // Without Mcp-Session-Id a legacy request is served on its own (stateless), as the version
    // its MCP-Protocol-Version header names.
    const alone = await post(ping, { token: A.token, headers: { 'mcp-protocol-version': '2025-11-25' } });
    assert.equal(alone.status, 200, 'no session id');
    assert.deepEqual(alone.body.result, {});
    assert.equal((await post(ping, { token: A.token, headers: { 'mcp-session-id': 'nope' } })).status, 404);
    assert.equal((await post(ping, { token: A.token, headers: { ...withSid, 'mcp-protocol-version': '1999-01-01' } })).status, 400);
    assert.equal((await post(ping, { token: A.token, headers: { ...withSid, 'mcp-protocol-version': '2025-03-26' } })).status, 200);
    assert.equal((await post(ping, { token: A.token, headers: { ...withSid, accept: 'text/plain' } })).status, 406);
    const jsonOnly = await post(ping, { token: A.token, headers: { ...withSid, accept: 'application/json' } });
    assert.equal(jsonOnly.status, 200, 'a client that lists only application/json is served');
    assert.equal((await post(ping, { token: A.token, headers: { ...withSid, 'content-type': 'text/plain' } })).status, 415);
    assert.equal((await post('{not json', { token: A.token, headers: withSid })).status, 400);

    const note = await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, { token: A.token, headers: withSid });
    assert.deepEqual([note.status, note.text], [202, '']);
    const unknown = await post({ jsonrpc: '2.0', id: 3, method: 'nope/nope' }, { token: A.token, headers: withSid });
    assert.equal(unknown.status, 200, 'JSON-RPC errors use HTTP 200');
    assert.equal(unknown.body.error.code, -32601);

    const get = await fetch(con.url, { headers: { authorization: `Bearer ${A.token}`, accept: 'text/event-stream', ...withSid } });
    assert.equal(get.status, 405);
    const del = await fetch(con.url, { method: 'DELETE', headers: { authorization: `Bearer ${A.token}`, ...withSid } });
    assert.ok(del.status >= 200 && del.status < 300, String(del.status));
    assert.equal((await post(ping, { token: A.token, headers: withSid })).status, 404);
    const del2 = await fetch(con.url, { method: 'DELETE', headers: { authorization: `Bearer ${A.token}`, ...withSid } });
    assert.equal(del2.status, 404);
  });

  test('sessions and terminal sessions belong to the token account', async () => {
    const a = await connect(A.token);
    const b = await connect(B.token);
    try {
      // Another account's MCP session id is unknown.
      const stolen = await post({ jsonrpc: '2.0', id: 2, method: 'ping' }, { token: B.token, headers: { 'mcp-session-id': a.transport.sessionId } });
      assert.equal(stolen.status, 404);
      const del = await fetch(con.url, { method: 'DELETE', headers: { authorization: `Bearer ${B.token}`, 'mcp-session-id': a.transport.sessionId } });
      assert.equal(del.status, 404);
      assert.deepEqual(await a.client.ping(), {});

      const t = await a.client.callTool({ name: 'terminalExec', arguments: { command: `echo secret > s.txt; echo ${PNG_B64} | base64 -d > p.png` } });
      const sid = t.structuredContent.session_id;
      const theirs = await b.client.callTool({ name: 'terminalExec', arguments: { command: 'cat s.txt', session_id: sid } });
      assert.equal(theirs.isError, true);
      assert.match(resultText(theirs), /session_not_found/);
      const img = await b.client.callTool({ name: 'readImage', arguments: { session_id: sid, file_path: 'p.png' } });
      assert.equal(img.isError, true, JSON.stringify(img));
      // create_if_missing makes B a session of its own under the same name, not A's.
      const own = await b.client.callTool({ name: 'terminalExec', arguments: { command: 'cat s.txt 2>&1; true', session_id: sid, create_if_missing: true } });
      assert.equal(own.structuredContent.created, true);
      assert.doesNotMatch(own.structuredContent.stdout, /secret/);
      // The REST API of the same account reaches the session the MCP call made.
      const res = await fetch(`${con.base}/api/v1/commands/terminal`, {
        method: 'POST',
        headers: { authorization: `Bearer ${A.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ command: 'cat s.txt', session_id: sid }),
      });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).stdout, 'secret\n');
    } finally {
      for (const x of [a, b]) {
        await x.transport.terminateSession();
        await x.client.close();
      }
    }
  });

  test('sessions beyond the per-account limit replace the least recently used idle one', async () => {
    const ids = [];
    for (let i = 0; i < PER_ACCOUNT; i++) ids.push(await rawSession(C.token));
    const ping = (sid, token = C.token) => post({ jsonrpc: '2.0', id: 2, method: 'ping' }, { token, headers: { 'mcp-session-id': sid } });
    await sleep(5);
    assert.equal((await ping(ids[0])).status, 200); // ids[1] is now the least recently used
    const closings = () => (con.stderr.match(/too many sessions; closing the least recently used one of account/g) || []).length;
    const before = closings();
    const extra = await rawSession(C.token);
    assert.equal(closings(), before + 1, 'the least recently used idle session was closed');
    for (const sid of [ids[0], ids[2], extra]) assert.equal((await ping(sid)).status, 200);
    // The closed one's client is not stranded: its id comes back as a fresh session (which again
    // closes the least recently used idle one), it is not a 404.
    assert.equal((await ping(ids[1])).status, 200);
    assert.equal(closings(), before + 2);
    // Another account's sessions are not touched.
    const other = await rawSession(B.token);
    assert.equal((await ping(other, B.token)).status, 200);
  });
});

describe('a long silent call over /mcp', () => {
  let k, tok;
  before(async () => {
    k = await new Console({ ...env, CONSOLE_DB_PATH: path.join(dir, 'keepalive.db'), CONSOLE_MCP_KEEPALIVE_SEC: '1' }, ['--with-worker']).start();
    tok = await tokenFor(k.base, ADMIN, ADMIN_PW);
  });
  after(async () => {
    if (k) await k.stop();
  });

  async function rpc(body, sid, accept) {
    const headers = { 'content-type': 'application/json', accept, authorization: `Bearer ${tok.token}` };
    if (sid) Object.assign(headers, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });
    const res = await fetch(`${k.base}/mcp`, { method: 'POST', headers, body: JSON.stringify(body) });
    const text = await res.text();
    return { res, text };
  }

  test('turns into an event stream with keepalive comments, then the answer', async () => {
    const both = 'application/json, text/event-stream';
    const init = await rpc(INIT, null, both);
    assert.equal(init.res.status, 200, init.text);
    const sid = init.res.headers.get('mcp-session-id');
    await rpc({ jsonrpc: '2.0', method: 'notifications/initialized' }, sid, both);
    // The commands run until the test ends their sleeps: the head and the keepalive comments of
    // a stream must come while its command still runs, and a client that takes only JSON must get
    // no head while another call's stream shows two keepalive periods going by. Events, not
    // timings: it holds however slow the machine is.
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${tok.token}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    const sleepCall = (id, marker) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'terminalExec', arguments: { command: `sleep ${marker}; echo done` } } });
    const mJson = sleepMarker();
    let jsonHead = false;
    const jsonRes = fetch(`${k.base}/mcp`, { method: 'POST', headers: { ...headers, accept: 'application/json' }, body: JSON.stringify(sleepCall(8, mJson)) });
    jsonRes.then(() => (jsonHead = true)).catch(() => {});
    assert.ok((await waitForSleeper(mJson, 30_000)).length > 0, 'the JSON-only call never started');

    const m = sleepMarker();
    const res = await fetch(`${k.base}/mcp`, { method: 'POST', headers: { ...headers, accept: both }, body: JSON.stringify(sleepCall(7, m)) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const keepalives = () => text.split('\n').filter((l) => l === ': keepalive').length;
    while (keepalives() < 2) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const sleeping = sleepers(m);
    assert.ok(sleeping.length > 0, `the command had ended before two keepalives: ${text}`);
    assert.equal(jsonHead, false, 'the JSON-only client got an answer before its call ended');
    for (const proc of [...sleeping, ...sleepers(mJson)]) process.kill(proc.pid, 'SIGTERM');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    assert.ok(keepalives() >= 2, text);
    const data = text.split('\n').filter((l) => l.startsWith('data: '));
    assert.equal(data.length, 1, text);
    const msg = JSON.parse(data[0].slice(6));
    assert.equal(msg.id, 7);
    assert.equal(msg.result.structuredContent.stdout, 'done\n');

    // The client that takes only JSON gets a plain answer once its call ended.
    const j = await jsonRes;
    assert.equal(j.status, 200);
    assert.match(j.headers.get('content-type'), /^application\/json/);
    const jText = await j.text();
    assert.equal(JSON.parse(jText).id, 8);
    assert.equal(JSON.parse(jText).result.structuredContent.stdout, 'done\n');

    // A quick call is still a plain JSON answer.
    const q = await rpc({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x' } } }, sid, both);
    assert.match(q.res.headers.get('content-type'), /^application\/json/);
  });
});
