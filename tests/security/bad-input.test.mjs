// SPDX-License-Identifier: Apache-2.0
// Bad input against the real binary: malformed JSON-RPC, oversized and deeply nested messages,
// invalid UTF-8, paths that try to leave the box, other accounts' ids, wrong headers. Over stdio
// (`onlyboxes mcp --stdio`, raw bytes on stdin) and over the console's HTTP (`onlyboxes console
// --with-worker` on a loopback port with a fresh database: REST and /mcp).
//
// Every input is one test with two halves: the answer must be an error a user can act on (its
// code and the words that name what is wrong are asserted), and the server must then still answer
// a normal request. When OBX_BAD_INPUT_REPORT names a file, each input appends a JSON line
// {name, clear, alive, known?} to it; tests/security/bad-input.sh counts them.
//

import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RawServer } from '../integration/lib.mjs';
import { Console, call, login } from '../integration/console-lib.mjs';

const RUNTIME = process.env.ONLYBOXES_RUNTIME || 'bubblewrap';
const REPORT = process.env.OBX_BAD_INPUT_REPORT;
// A 1x1 PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP438DwHwAGgAJ/zxIJ8QAAAABJRU5ErkJggg==',
  'base64',
);
const MAX_LINE = 16 * 1024 * 1024; // OBX_MCP_MAX_MESSAGE
const MAX_BODY = 1024 * 1024; // the console's body cap

// A PNG on the host, outside every box: no path given to readImage may reach it.
const hostDir = mkdtempSync(path.join(tmpdir(), 'obx-bad-input-'));
const hostPng = path.join(hostDir, 'host-secret.png');
writeFileSync(hostPng, PNG);
after(() => rmSync(hostDir, { recursive: true, force: true }));

/**
 * One bad input. send() gets the answer and asserts it is the clear error expected; alive()
 * asserts the server still answers a normal request afterwards. Both always run.
 */
function input(name, send, alive, { known } = {}) {
  test(name, async () => {
    const errors = [];
    let clear = true;
    let up = true;
    try {
      await send();
    } catch (e) {
      clear = false;
      errors.push(e);
    }
    try {
      await alive();
    } catch (e) {
      up = false;
      errors.push(new Error(`the server did not answer a normal request afterwards: ${e.message}`));
    }
    const entry = known && clear ? { name, clear: false, alive: up, known } : { name, clear, alive: up };
    if (REPORT) appendFileSync(REPORT, JSON.stringify(entry) + '\n');
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, errors.map((e) => e.message).join('\n---\n'));
  });
}

const nested = (n, open = '[', close = ']') => open.repeat(n) + close.repeat(n);
const nestedObjects = (n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);

/* ------------------------------------------------------------------------------------------ */
/* stdio                                                                                         */

describe('stdio: onlyboxes mcp --stdio', () => {
  let raw = null; // initialized with the newest protocol version
  let raw0326 = null; // initialized with 2025-03-26, the one version with batches
  let session = null; // a terminal session of raw
  let seq = 0;

  async function start(version) {
    const r = new RawServer({ env: { ONLYBOXES_RUNTIME: RUNTIME, ONLYBOXES_WARM_POOL: '0' } });
    await r.initialize(version);
    return r;
  }

  before(async () => {
    raw = await start('2025-11-25');
    raw0326 = await start('2025-03-26');
    const r = await raw.request('mk', 'tools/call', {
      name: 'terminalExec',
      arguments: { command: `printf '%s' '${PNG.toString('base64')}' | base64 -d > /workspace/ok.png` },
    });
    assert.equal(r.result?.isError, undefined, JSON.stringify(r));
    session = r.result.structuredContent.session_id;
  });
  after(async () => {
    for (const r of [raw, raw0326]) {
      if (!r) continue;
      await r.kill();
      await r.checkStderr();
    }
  });

  /** ping and an echo call on r must be answered; nothing else may be waiting in its output. */
  async function alive(r = raw) {
    assert.equal(r.exit, null, `the server exited: ${JSON.stringify(r.exit)}`);
    const id = `alive-${++seq}`;
    const p = await r.request(id, 'ping', undefined, 10_000);
    assert.deepEqual(p.result, {});
    const e = await r.request(`${id}-echo`, 'tools/call', { name: 'echo', arguments: { message: id } }, 30_000);
    assert.deepEqual(JSON.parse(e.result?.content?.[0]?.text ?? 'null'), { message: id }, JSON.stringify(e));
    assert.deepEqual(r.badLines, [], 'stdout carried lines that are not JSON');
    assert.deepEqual(r.messages, [], 'unexpected messages left over');
  }

  /** Sends a raw line (string or Buffer) and waits for the error response with this id. */
  async function sendLine(r, line, id = null) {
    if (Buffer.isBuffer(line)) r.child.stdin.write(Buffer.concat([line, Buffer.from('\n')]));
    else r.send(line);
    return r.waitFor((m) => !Array.isArray(m) && m.error && m.id === id, 30_000, `an error with id ${JSON.stringify(id)}`);
  }

  /** input() on raw: line must give error `code` with a message matching `re`, for id. */
  function rpcError(name, line, { id = null, code, re, server = () => raw }) {
    input(
      `stdio: ${name}`,
      async () => {
        const m = await sendLine(server(), typeof line === 'function' ? line() : line, id);
        assert.equal(m.error.code, code, JSON.stringify(m));
        assert.match(m.error.message, re);
      },
      () => alive(server()),
    );
  }

  rpcError('not JSON', 'hello, server', { code: -32700, re: /^parse error: invalid JSON at line 1 column \d+/ });
  rpcError('truncated JSON', '{"jsonrpc":"2.0","id":1,"method":"ping"', { code: -32700, re: /^parse error: invalid JSON/ });
  rpcError('a bare number', '42', { code: -32600, re: /a message must be a JSON object/ });
  rpcError('null', 'null', { code: -32600, re: /a message must be a JSON object/ });
  rpcError('jsonrpc "1.0"', '{"jsonrpc":"1.0","id":"v1","method":"ping"}', { id: 'v1', code: -32600, re: /"jsonrpc" must be "2\.0"/ });
  rpcError('jsonrpc missing', '{"id":"v2","method":"ping"}', { id: 'v2', code: -32600, re: /"jsonrpc" must be "2\.0"/ });
  rpcError('jsonrpc a number', '{"jsonrpc":2.0,"id":"v3","method":"ping"}', { id: 'v3', code: -32600, re: /"jsonrpc" must be "2\.0"/ });
  rpcError('id an object', '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', { code: -32600, re: /"id" must be a string or an integer/ });
  rpcError('id an array', '{"jsonrpc":"2.0","id":[1],"method":"ping"}', { code: -32600, re: /"id" must be a string or an integer/ });
  rpcError('id a fraction', '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', { code: -32600, re: /"id" must be a string or an integer/ });
  rpcError('id a boolean', '{"jsonrpc":"2.0","id":true,"method":"ping"}', { code: -32600, re: /"id" must be a string or an integer/ });
  rpcError('id an integer too big for JSON parsing', '{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}', {
    code: -32700,
    re: /too big/,
  });
  rpcError('method a number', '{"jsonrpc":"2.0","id":"m1","method":42}', { id: 'm1', code: -32600, re: /"method" must be a string/ });
  rpcError('method missing', '{"jsonrpc":"2.0","id":"m2"}', { id: 'm2', code: -32600, re: /"method" is required/ });
  rpcError('method unknown', '{"jsonrpc":"2.0","id":"m3","method":"tools/destroy"}', { id: 'm3', code: -32601, re: /method not found: tools\/destroy/ });
  rpcError('params a string', '{"jsonrpc":"2.0","id":"p1","method":"tools/list","params":"all"}', {
    id: 'p1',
    code: -32602,
    re: /"params" must be an object/,
  });
  rpcError('params an array', '{"jsonrpc":"2.0","id":"p2","method":"tools/call","params":["echo",{"message":"x"}]}', {
    id: 'p2',
    code: -32602,
    re: /"params" must be an object/,
  });
  rpcError('tools/call name a number', '{"jsonrpc":"2.0","id":"p3","method":"tools/call","params":{"name":7}}', {
    id: 'p3',
    code: -32602,
    re: /"name" must be a string/,
  });
  rpcError('tools/call arguments a string', '{"jsonrpc":"2.0","id":"p4","method":"tools/call","params":{"name":"echo","arguments":"hi"}}', {
    id: 'p4',
    code: -32602,
    re: /"arguments" must be an object/,
  });
  rpcError('batch on 2025-11-25', '[{"jsonrpc":"2.0","id":"b0","method":"ping"}]', {
    code: -32600,
    re: /batches are not supported in protocol version 2025-11-25/,
  });
  rpcError('empty batch', '[]', { code: -32600, re: /empty batch/, server: () => raw0326 });

  input(
    'stdio: batch of garbage',
    async () => {
      raw0326.send('[1,"x",null,{"jsonrpc":"2.0"},{"jsonrpc":"2.0","id":"g5","method":7}]');
      const batch = await raw0326.waitFor((m) => Array.isArray(m), 30_000, 'the batch response');
      assert.equal(batch.length, 5, JSON.stringify(batch));
      for (const m of batch.slice(0, 3)) assert.match(m.error.message, /a message must be a JSON object/);
      assert.match(batch[3].error.message, /"method" is required/);
      assert.deepEqual([batch[4].id, batch[4].error.code], ['g5', -32600]);
      assert.match(batch[4].error.message, /"method" must be a string/);
    },
    () => alive(raw0326),
  );

  // 500k entries would each get an error response of ~110 bytes: 56 MB of answer, 650 MB of
  // memory, from 1 MB of input.
  rpcError('a batch of 500000 garbage entries', '[' + Array(500_000).fill('0').join(',') + ']', {
    code: -32600,
    re: /a batch of 500000 messages; at most 1000 are allowed/,
    server: () => raw0326,
  });

  rpcError('a line over 16 MiB', () => '{"jsonrpc":"2.0","id":"big","method":"ping","params":{"pad":"' + 'x'.repeat(MAX_LINE + 10) + '"}}', {
    code: -32600,
    re: /message larger than 16777216 bytes/,
  });
  rpcError('100000 nested arrays', nested(100_000), { code: -32700, re: /JSON nesting deeper than 64 levels/ });
  rpcError('100000 nested objects', nestedObjects(100_000), { code: -32700, re: /JSON nesting deeper than 64 levels/ });
  rpcError('100000 unclosed arrays', '['.repeat(100_000), { code: -32700, re: /JSON nesting deeper than 64 levels/ });
  rpcError(
    'deep nesting in tool arguments',
    `{"jsonrpc":"2.0","id":"d1","method":"tools/call","params":{"name":"echo","arguments":{"message":${nested(5000)}}}}`,
    { code: -32700, re: /JSON nesting deeper than 64 levels/ },
  );
  rpcError('invalid UTF-8 in a method name', Buffer.from('{"jsonrpc":"2.0","id":"u1","method":"pi\xffng"}', 'latin1'), {
    code: -32700,
    re: /invalid UTF-8/,
  });
  rpcError(
    'invalid UTF-8 in tool arguments',
    Buffer.from('{"jsonrpc":"2.0","id":"u2","method":"tools/call","params":{"name":"echo","arguments":{"message":"a\xc3\x28b"}}}', 'latin1'),
    { code: -32700, re: /invalid UTF-8/ },
  );
  rpcError(
    'overlong UTF-8 ("/" as C0 AF) in a command',
    Buffer.from(
      '{"jsonrpc":"2.0","id":"u3","method":"tools/call","params":{"name":"terminalExec","arguments":{"command":"cat ..\xc0\xafetc"}}}',
      'latin1',
    ),
    { code: -32700, re: /invalid UTF-8/ },
  );
  rpcError(
    'UTF-16 surrogate encoded as UTF-8 (ED A0 80)',
    Buffer.from('{"jsonrpc":"2.0","id":"u4","method":"tools/call","params":{"name":"echo","arguments":{"message":"\xed\xa0\x80"}}}', 'latin1'),
    { code: -32700, re: /invalid UTF-8/ },
  );
  rpcError(
    'a lone surrogate escape in tool arguments',
    '{"jsonrpc":"2.0","id":"u5","method":"tools/call","params":{"name":"echo","arguments":{"message":"\\udc00"}}}',
    { code: -32700, re: /invalid Unicode/ },
  );

  /** input() on raw: a tools/call that must come back isError with text matching re. */
  function toolError(name, tool, args, re, { isError = true } = {}) {
    input(
      `stdio: ${name}`,
      async () => {
        const id = `t-${++seq}`;
        const m = await raw.request(id, 'tools/call', { name: tool, arguments: typeof args === 'function' ? args() : args }, 60_000);
        assert.equal(m.result?.isError, isError || undefined, JSON.stringify(m).slice(0, 2000));
        const text = m.result.content.map((c) => c.text).join('\n');
        assert.match(text, re);
        assert.ok(!text.includes('IHDR') && !m.result.content.some((c) => c.type === 'image'), 'an image came back');
      },
      () => alive(),
    );
  }

  toolError('a NUL byte in a command', 'terminalExec', { command: 'echo ok\u0000; touch /workspace/nul' }, /invalid arguments: "command" must not contain NUL/);
  toolError('a NUL byte in Python code', 'pythonExec', { code: 'print(1)\u0000import os' }, /invalid arguments: "code" must not contain NUL/);
  toolError('a NUL byte in a session id', 'terminalExec', { command: 'true', session_id: 'a\u0000b' }, /invalid arguments: "session_id" must not contain NUL/);
  toolError('a session id with "../"', 'terminalExec', { command: 'true', session_id: '../../etc' }, /^session_not_found: session not found/);
  toolError('a session id with a space', 'terminalExec', { command: 'true', session_id: 'a b' }, /invalid arguments: "session_id" must be 1-128 visible ASCII characters/);
  toolError('a 10000-character session id', 'terminalExec', { command: 'true', session_id: 'a'.repeat(10_000) }, /invalid arguments: "session_id"/);
  toolError('echo message a number', 'echo', { message: 42 }, /invalid arguments: "message"/);
  toolError('timeout_ms a string', 'pythonExec', { code: 'print(1)', timeout_ms: '100' }, /invalid arguments: "timeout_ms"/);
  // The box's own /etc/passwd (made for the box): not an image, and said so.
  toolError('readImage "../../etc/passwd"', 'readImage', () => ({ session_id: session, file_path: '../../etc/passwd' }), /^unsupported mime type: text\/plain; expected image/, {
    isError: false,
  });
  toolError('readImage "../../etc/shadow"', 'readImage', () => ({ session_id: session, file_path: '../../etc/shadow' }), /^file_not_found: file not found: \.\.\/\.\.\/etc\/shadow$/);
  toolError(
    'readImage a host file by "../" from /workspace',
    'readImage',
    () => ({ session_id: session, file_path: `../..${hostPng}` }),
    /file_not_found: file not found/,
  );
  toolError('readImage a host file by its absolute path', 'readImage', () => ({ session_id: session, file_path: hostPng }), /file_not_found: file not found/);
  toolError(
    'readImage a host file through /proc/1/root',
    'readImage',
    () => ({ session_id: session, file_path: `/proc/1/root${hostPng}` }),
    /file_not_found: file not found|permission denied/,
  );
  toolError('readImage a 5005-character path', 'readImage', () => ({ session_id: session, file_path: 'a/'.repeat(2500) + 'x.png' }), /^file_not_found: path too long: (a\/){80}\.\.\. \(5005 bytes\)$/);
  toolError('readImage a path with a NUL byte', 'readImage', () => ({ session_id: session, file_path: 'ok.png\u0000/../../x' }), /invalid arguments: "file_path" must not contain NUL/);
  toolError('readImage a directory', 'readImage', () => ({ session_id: session, file_path: '/' }), /path_is_directory/);
  toolError('readImage an unknown session', 'readImage', { session_id: 'no-such-session', file_path: 'ok.png' }, /session_not_found/);

  input(
    'stdio: readImage a symlink made in the box pointing to a host file',
    async () => {
      const mk = await raw.request(`ln-${++seq}`, 'tools/call', {
        name: 'terminalExec',
        arguments: { session_id: session, command: `ln -sf ${hostPng} /workspace/out.png && ln -sf /proc/1/root${hostPng} /workspace/out2.png && echo made` },
      });
      assert.equal(mk.result?.structuredContent?.stdout, 'made\n', JSON.stringify(mk));
      for (const p of ['out.png', 'out2.png']) {
        const m = await raw.request(`img-${++seq}`, 'tools/call', { name: 'readImage', arguments: { session_id: session, file_path: p } });
        assert.equal(m.result?.isError, true, JSON.stringify(m).slice(0, 500));
        assert.match(m.result.content[0].text, /file_not_found: file not found|permission denied/);
      }
      // The control: a PNG that is in the box is read.
      const ok = await raw.request(`img-${++seq}`, 'tools/call', { name: 'readImage', arguments: { session_id: session, file_path: 'ok.png' } });
      assert.equal(ok.result?.content?.[0]?.type, 'image', JSON.stringify(ok).slice(0, 500));
    },
    () => alive(),
  );
});

/* ------------------------------------------------------------------------------------------ */
/* The console's HTTP                                                                            */

describe('http: onlyboxes console --with-worker', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'obx-bad-input-console-'));
  const ADMIN = 'bad-admin';
  const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2);
  let con = null;
  let port = 0;
  let tokA = ''; // the admin's token
  let tokB = ''; // another account's token
  let mcpA = ''; // an initialized /mcp session of A
  let mcpA0326 = ''; // one on 2025-03-26, for batches
  let mcpB = ''; // one of B
  let taskB = ''; // a finished task of B
  let sessB = ''; // a terminal session of B
  let seq = 0;

  const INIT = (v = '2025-11-25') => ({
    jsonrpc: '2.0',
    id: 'init',
    method: 'initialize',
    params: { protocolVersion: v, capabilities: {}, clientInfo: { name: 'bad-input', version: '0' } },
  });
  const rest = (method, p, opts = {}) => call(con.base, method, p, opts);
  const bearer = (t) => ({ authorization: `Bearer ${t}` });

  /** A raw POST /mcp; headers replace the defaults (null removes one). body: object, string or Buffer. */
  function mcp(body, { token = tokA, session, headers = {}, method = 'POST' } = {}) {
    const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...bearer(token) };
    if (session) h['mcp-session-id'] = session;
    for (const [k, v] of Object.entries(headers)) {
      if (v === null) delete h[k];
      else h[k] = v;
    }
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) || typeof body === 'string' ? body : JSON.stringify(body);
    return rest(method, '/mcp', { raw: payload, headers: h });
  }

  async function mcpSession(token, v) {
    const r = await mcp(INIT(v), { token });
    assert.equal(r.status, 200, r.text);
    const sid = r.headers.get('mcp-session-id');
    assert.ok(sid, 'no Mcp-Session-Id');
    const n = await mcp({ jsonrpc: '2.0', method: 'notifications/initialized' }, { token, session: sid });
    assert.equal(n.status, 202, n.text);
    return sid;
  }

  /** A tools/call on an /mcp session; resolves to the JSON-RPC response. */
  async function mcpCall(sid, name, args, token = tokA) {
    const r = await mcp({ jsonrpc: '2.0', id: `c${++seq}`, method: 'tools/call', params: { name, arguments: args } }, { token, session: sid });
    assert.equal(r.status, 200, r.text);
    if (r.body) return r.body;
    // An SSE answer: the response is the last event.
    const data = r.text.split('\n').filter((l) => l.startsWith('data: '));
    return JSON.parse(data.at(-1).slice(6));
  }

  before(async () => {
    con = await new Console({
      CONSOLE_DB_PATH: path.join(dir, 'console.db'),
      CONSOLE_HASH_KEY: 'bad-input-key-' + process.pid,
      CONSOLE_DASHBOARD_USERNAME: ADMIN,
      CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
      CONSOLE_ENABLE_REGISTRATION: 'true',
      ONLYBOXES_RUNTIME: RUNTIME,
      ONLYBOXES_WARM_POOL: '0',
    }, ['--with-worker']).start();
    port = Number(new URL(con.base).port);
    const cookieA = await login(con.base, ADMIN, ADMIN_PW);
    const reg = await rest('POST', '/api/v1/console/register', { cookie: cookieA, body: { username: 'bad-other', password: 'Other-pw-1' } });
    assert.equal(reg.status, 201, reg.text);
    const cookieB = await login(con.base, 'bad-other', 'Other-pw-1');
    const mk = async (cookie) => {
      const t = await rest('POST', '/api/v1/console/tokens', { cookie, body: { name: 'bad-input' } });
      assert.equal(t.status, 201, t.text);
      return t.body.token;
    };
    tokA = await mk(cookieA);
    tokB = await mk(cookieB);
    mcpA = await mcpSession(tokA);
    mcpA0326 = await mcpSession(tokA, '2025-03-26');
    mcpB = await mcpSession(tokB);
    const task = await rest('POST', '/api/v1/tasks', { headers: bearer(tokB), body: { capability: 'echo', input: { message: 'b' }, mode: 'sync' } });
    assert.equal(task.status, 200, task.text);
    taskB = task.body.task_id;
    const term = await rest('POST', '/api/v1/commands/terminal', {
      headers: bearer(tokB),
      body: { command: `printf '%s' '${PNG.toString('base64')}' | base64 -d > /workspace/b.png; echo b` },
    });
    assert.equal(term.status, 200, term.text);
    sessB = term.body.session_id;
  });

  after(async () => {
    if (con) {
      const r = await con.stop();
      assert.equal(r.code, 0, `console exit ${JSON.stringify(r)}\n${con.stderr.slice(-4000)}`);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** The console is running and answers a REST echo and an /mcp ping. */
  async function alive() {
    assert.equal(con.proc.exitCode, null, `the console exited:\n${con.stderr.slice(-4000)}`);
    const msg = `alive-${++seq}`;
    const e = await rest('POST', '/api/v1/commands/echo', { headers: bearer(tokA), body: { message: msg } });
    assert.deepEqual([e.status, e.body], [200, { message: msg }], e.text);
    const p = await mcp({ jsonrpc: '2.0', id: msg, method: 'ping' }, { session: mcpA });
    assert.deepEqual([p.status, p.body], [200, { jsonrpc: '2.0', id: msg, result: {} }], p.text);
  }

  /** input() for one HTTP exchange: send() resolves to the answer, check(answer) asserts it. */
  function http(name, send, check) {
    input(`http: ${name}`, async () => check(await send()), alive);
  }

  /** {status, error} of a REST answer must be exactly these. */
  const restError = (status, error) => (r) => assert.deepEqual([r.status, r.body], [status, { error }], r.text.slice(0, 500));

  /** A JSON-RPC error at HTTP `status` with `code` and a message matching re. */
  const rpcError = (status, code, re, id) => (r) => {
    assert.equal(r.status, status, r.text.slice(0, 500));
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.equal(r.body?.error?.code, code, r.text.slice(0, 500));
    assert.match(r.body.error.message, re);
    if (id !== undefined) assert.equal(r.body.id, id);
  };

  /**
   * Sends bytes on a fresh connection and resolves to the HTTP status line and body the server
   * wrote before closing (or '' when it closed without a word). For requests node's client will
   * not send as they are.
   */
  /** The complete HTTP/1.1 answers at the start of s (each with a content-length). */
  function splitAnswers(s) {
    const answers = [];
    for (;;) {
      const head = s.indexOf('\r\n\r\n');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(s);
      const m = /content-length: *(\d+)/i.exec(s.slice(0, Math.max(head, 0)));
      if (head < 0 || !status || !m || s.length < head + 4 + Number(m[1])) return answers;
      const end = head + 4 + Number(m[1]);
      answers.push({ status: Number(status[1]), head: s.slice(0, head), body: s.slice(head + 4, end) });
      s = s.slice(end);
    }
  }

  /** Raw bytes to the console; resolves on close with the first answer (status 0: none) and,
   * in answers, every complete answer read, up to `want` (the connection is ended then). */
  function rawHttp(bytes, timeoutMs = 15_000, want = 1) {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1');
      const chunks = [];
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`no answer within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 300))}`));
      }, timeoutMs);
      sock.on('data', (c) => {
        chunks.push(c);
        // One answer is enough; a keep-alive connection would otherwise stay open.
        if (splitAnswers(Buffer.concat(chunks).toString('latin1')).length >= want) sock.end();
      });
      sock.on('error', () => {}); // a reset after the answer is fine: the close decides
      sock.on('close', () => {
        clearTimeout(timer);
        const s = Buffer.concat(chunks).toString('latin1');
        const answers = splitAnswers(s);
        if (answers.length > 0) resolve({ ...answers[0], answers });
        else resolve({ status: 0, head: s, body: '', answers });
      });
      sock.write(bytes);
    });
  }

  /* ---- bodies ---- */

  http('REST: a body that is not JSON', () => rest('POST', '/api/v1/commands/echo', { headers: bearer(tokA), raw: 'message=hi', }), restError(400, 'invalid request body'));
  http('REST: a JSON array body', () => rest('POST', '/api/v1/tasks', { headers: bearer(tokA), raw: '[1,2]' }), restError(400, 'invalid request body'));
  http('REST: a form-encoded body', () =>
    rest('POST', '/api/v1/commands/echo', { headers: { ...bearer(tokA), 'content-type': 'application/x-www-form-urlencoded' }, raw: 'message=hi' }),
    restError(400, 'invalid request body'),
  );
  http('REST: invalid UTF-8 in a body', () =>
    rest('POST', '/api/v1/commands/echo', { headers: bearer(tokA), raw: Buffer.from('{"message":"a\xffb"}', 'latin1') }),
    restError(400, 'invalid request body'),
  );
  http('REST: 100000 nested arrays', () => rest('POST', '/api/v1/tasks', { headers: bearer(tokA), raw: nested(100_000) }), restError(400, 'invalid request body'));
  http('REST: deep nesting inside a task input', () =>
    rest('POST', '/api/v1/tasks', { headers: bearer(tokA), raw: `{"capability":"echo","input":{"message":${nested(10_000)}}}` }),
    restError(400, 'invalid request body'),
  );
  http('REST: capability of the wrong type', () =>
    rest('POST', '/api/v1/tasks', { headers: bearer(tokA), body: { capability: ['echo'], input: { message: 'x' } } }),
    restError(400, 'invalid request body'),
  );
  http('REST: an unknown capability', () =>
    rest('POST', '/api/v1/tasks', { headers: bearer(tokA), body: { capability: '../../echo', input: {} } }),
    restError(503, 'no online worker supports requested capability'),
  );
  http('REST: a body over 1 MiB', () =>
    rest('POST', '/api/v1/commands/echo', { headers: bearer(tokA), raw: JSON.stringify({ message: 'x'.repeat(MAX_BODY + 1) }) }),
    restError(413, 'request body too large'),
  );
  http('REST: Content-Length of 100 GB', () =>
    rawHttp(`POST /api/v1/commands/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tokA}\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{"message":`),
    (r) => {
      assert.equal(r.status, 413, r.head);
      assert.deepEqual(JSON.parse(r.body), { error: 'request body too large' });
    },
  );
  http('REST: a chunked body', () =>
    rawHttp(`POST /api/v1/commands/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tokA}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"mes\r\n0\r\n\r\n`),
    (r) => {
      assert.equal(r.status, 411, r.head);
      assert.deepEqual(JSON.parse(r.body), { error: 'content-length required' });
    },
  );
  http('REST: a Content-Length that is not a number', () =>
    rawHttp(`POST /api/v1/commands/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tokA}\r\nContent-Type: application/json\r\nContent-Length: 12abc\r\n\r\n{"message":1}`),
    (r) => {
      assert.equal(r.status, 400, r.head);
      assert.deepEqual(JSON.parse(r.body), { error: 'invalid content-length' });
    },
  );

  /* ---- headers and URLs ---- */

  /** A JSON error {error} with this status, and the connection closed after it. */
  const closingError = (status, words) => (r) => {
    assert.equal(r.status, status, r.head || 'no answer');
    assert.match(r.head, /\r\nconnection: close/i);
    assert.match(JSON.parse(r.body).error, words);
  };
  const headTooLarge = closingError(431, /request head too large: .* at most 16384 bytes/);
  http(
    'http: a 100 KB header',
    () => rawHttp(`GET /api/v1/tasks/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: ${'j'.repeat(100_000)}\r\nAuthorization: Bearer ${tokA}\r\n\r\n`),
    headTooLarge,
  );
  http(
    'http: 2000 headers',
    () => rawHttp(`GET /api/v1/tasks/x HTTP/1.1\r\nHost: 127.0.0.1\r\n` + Array.from({ length: 2000 }, (_, i) => `X-H${i}: v\r\n`).join('') + `Authorization: Bearer ${tokA}\r\n\r\n`),
    headTooLarge,
  );
  http(
    'http: a 100 KB URL',
    () => rawHttp(`GET /api/v1/tasks/${'t'.repeat(100_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tokA}\r\n\r\n`),
    headTooLarge,
  );
  http(
    'http: a 17 KB cookie after a good request on the same connection',
    async () => {
      const good = `GET /api/v1/tasks/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tokA}\r\n\r\n`;
      const big = `GET /api/v1/tasks/x HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: c=${'c'.repeat(17_000)}\r\n\r\n`;
      const r = await rawHttp(good + big, 15_000, 2);
      assert.equal(r.answers.length, 2, r.head);
      assert.equal(r.answers[0].status, 404);
      return r.answers[1];
    },
    headTooLarge,
  );
  http('http: a request line that is not HTTP', () => rawHttp('HELLO THERE\r\n\r\n'), closingError(400, /not an HTTP\/1\.1 request/));
  http('a 10 KB task id', () => rest('GET', `/api/v1/tasks/${'t'.repeat(10_000)}`, { headers: bearer(tokA) }), restError(404, 'task not found'));
  // libwebsockets decodes and resolves the "../" before routing: a path that is no route.
  http('an encoded "../" in a task id', () => rest('GET', '/api/v1/tasks/..%2F..%2Fconsole%2Faccounts', { headers: bearer(tokA) }), (r) =>
    assert.deepEqual([r.status, r.body], [404, { error: 'no such route: GET /api/console/accounts' }]),
  );
  http('REST: a NUL byte in a terminal command', () =>
    rest('POST', '/api/v1/commands/terminal', { headers: bearer(tokA), body: { command: 'echo ok\u0000; touch /workspace/nul' } }),
    restError(400, 'invalid request body'),
  );
  http('REST: a NUL byte in a task input', () =>
    rest('POST', '/api/v1/tasks', { headers: bearer(tokA), body: { capability: 'pythonExec', input: { code: 'print(1)\u0000x' }, mode: 'sync' } }),
    (r) => {
      assert.equal(r.status, 502, r.text);
      assert.deepEqual(r.body?.error, { code: 'invalid_payload', message: 'code must not contain NUL characters' });
    },
  );

  /* ---- authorization ---- */

  const authCases = [
    ['no Authorization header', null],
    ['"Bearer" with no token', 'Bearer'],
    ['a Basic credential', 'Basic YWRtaW46cGFzc3dvcmQ='],
    ['"Bearer" with two words', 'Bearer obx_a obx_b'],
    ['an unknown token', 'Bearer obx_' + '0'.repeat(64)],
    ['a 10 KB token', 'Bearer ' + 'a'.repeat(10_000)],
  ];
  for (const [name, value] of authCases) {
    http(`REST: ${name}`, () => rest('POST', '/api/v1/commands/echo', { headers: value === null ? {} : { authorization: value }, body: { message: 'x' } }), (r) => {
      restError(401, 'invalid or missing token')(r);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer realm="onlyboxes"/);
    });
    http(`/mcp: ${name}`, () => mcp({ jsonrpc: '2.0', id: 1, method: 'ping' }, { session: mcpA, headers: { authorization: value } }), (r) => {
      assert.equal(r.status, 401, r.text);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer realm="onlyboxes"/);
    });
  }
  http('REST: another account\'s token for a task', () => rest('GET', `/api/v1/tasks/${taskB}`, { headers: bearer(tokA) }), restError(404, 'task not found'));

  /* ---- other accounts' ids look exactly like ids that never existed ---- */

  input(
    'http: REST: another account\'s task id',
    async () => {
      const own = await rest('GET', `/api/v1/tasks/${taskB}`, { headers: bearer(tokB) });
      assert.equal(own.status, 200, own.text); // the control: B sees it
      const fake = taskB.replace(/[0-9a-f]/g, (c) => (c === '0' ? '1' : '0'));
      for (const [method, suffix] of [
        ['GET', ''],
        ['POST', '/cancel'],
      ]) {
        const theirs = await rest(method, `/api/v1/tasks/${taskB}${suffix}`, { headers: bearer(tokA) });
        const none = await rest(method, `/api/v1/tasks/${fake}${suffix}`, { headers: bearer(tokA) });
        assert.deepEqual([theirs.status, theirs.text], [none.status, none.text]);
        restError(404, 'task not found')(theirs);
      }
    },
    alive,
  );
  input(
    'http: REST: another account\'s terminal session',
    async () => {
      const run = (sid) => rest('POST', '/api/v1/commands/terminal', { headers: bearer(tokA), body: { command: 'cat /workspace/b.png | wc -c', session_id: sid } });
      const theirs = await run(sessB);
      const none = await run(sessB + 'x');
      assert.equal(theirs.status, 404, theirs.text);
      assert.equal(none.status, 404, none.text);
      assert.equal(theirs.text.replace(sessB, '<id>'), none.text.replace(sessB + 'x', '<id>'));
      assert.match(theirs.body.error, /session/);
      // The control: B's own call works, so the session exists.
      const own = await rest('POST', '/api/v1/commands/terminal', { headers: bearer(tokB), body: { command: 'echo mine', session_id: sessB } });
      assert.deepEqual([own.status, own.body?.stdout], [200, 'mine\n'], own.text);
    },
    alive,
  );
  input(
    'http: REST: another account\'s session through terminalResource',
    async () => {
      const res = (sid) =>
        rest('POST', '/api/v1/tasks', { headers: bearer(tokA), body: { capability: 'terminalResource', input: { session_id: sid, file_path: 'b.png' }, mode: 'sync' } });
      const theirs = await res(sessB);
      const none = await res(sessB + 'x');
      assert.equal(theirs.status, none.status, theirs.text);
      assert.deepEqual(theirs.body?.error, none.body?.error);
      assert.equal(theirs.body?.error?.code, 'session_not_found', theirs.text);
    },
    alive,
  );
  http('REST: terminalResource with "../" out of the box', () =>
    rest('POST', '/api/v1/tasks', { headers: bearer(tokB), body: { capability: 'terminalResource', input: { session_id: sessB, file_path: `../..${hostPng}` }, mode: 'sync' } }),
    (r) => {
      assert.equal(r.status, 502, r.text);
      assert.equal(r.body?.error?.code, 'file_not_found', r.text);
      assert.match(r.body.error.message, /file not found/);
      assert.ok(!r.text.includes(PNG.toString('base64').slice(0, 40)), 'the host file came back');
    },
  );
  input(
    'http: /mcp: another account\'s session id',
    async () => {
      const fake = mcpB.replace(/[0-9a-f]/g, (c) => (c === '0' ? '1' : '0'));
      for (const method of ['POST', 'DELETE']) {
        const body = method === 'POST' ? { jsonrpc: '2.0', id: 1, method: 'ping' } : undefined;
        const theirs = await mcp(body, { session: mcpB, method });
        const none = await mcp(body, { session: fake, method });
        assert.deepEqual([theirs.status, theirs.text], [none.status, none.text]);
        rpcError(404, -32001, /^Session not found: it was ended, or was never opened for this token/)(theirs);
      }
      const own = await mcp({ jsonrpc: '2.0', id: 2, method: 'ping' }, { token: tokB, session: mcpB });
      assert.equal(own.status, 200, own.text); // the control: still B's, not ended by A's DELETE
    },
    alive,
  );
  input(
    'http: /mcp: another account\'s terminal session and its files',
    async () => {
      for (const [tool, args] of [
        ['terminalExec', { command: 'cat b.png' }],
        ['readImage', { file_path: 'b.png' }],
      ]) {
        const theirs = await mcpCall(mcpA, tool, { ...args, session_id: sessB });
        const none = await mcpCall(mcpA, tool, { ...args, session_id: sessB + 'x' });
        assert.equal(theirs.result?.isError, true, JSON.stringify(theirs).slice(0, 500));
        assert.equal(JSON.stringify(theirs.result).replaceAll(sessB, '<id>'), JSON.stringify(none.result).replaceAll(sessB + 'x', '<id>'));
        assert.match(theirs.result.content[0].text, /^session_not_found/);
      }
      const own = await mcpCall(mcpB, 'readImage', { session_id: sessB, file_path: 'b.png' }, tokB);
      assert.equal(own.result?.content?.[0]?.type, 'image', JSON.stringify(own).slice(0, 500)); // the control
    },
    alive,
  );

  /* ---- /mcp ---- */

  http('/mcp: Content-Type text/plain', () => mcp({ jsonrpc: '2.0', id: 1, method: 'ping' }, { session: mcpA, headers: { 'content-type': 'text/plain' } }), rpcError(415, -32000, /Content-Type must be application\/json/));
  http('/mcp: no Content-Type', () => mcp({ jsonrpc: '2.0', id: 1, method: 'ping' }, { session: mcpA, headers: { 'content-type': null } }), rpcError(415, -32000, /Content-Type must be application\/json/));
  http('/mcp: Accept text/html', () => mcp({ jsonrpc: '2.0', id: 1, method: 'ping' }, { session: mcpA, headers: { accept: 'text/html' } }), rpcError(406, -32000, /must accept application\/json/));
  http('/mcp: GET', () => mcp(undefined, { session: mcpA, method: 'GET' }), rpcError(405, -32000, /Method Not Allowed/));
  http('/mcp: an unsupported MCP-Protocol-Version', () =>
    mcp({ jsonrpc: '2.0', id: 1, method: 'ping' }, { session: mcpA, headers: { 'mcp-protocol-version': '1999-01-01' } }),
    rpcError(400, -32000, /Unsupported protocol version: 1999-01-01/),
  );
  http('/mcp: a 10 KB Mcp-Session-Id', () => mcp({ jsonrpc: '2.0', id: 1, method: 'ping' }, { session: 's'.repeat(10_000) }), rpcError(404, -32001, /Session not found/));
  // Protocol 2026-07-28: every request carries its version and capabilities in _meta, and the
  // HTTP headers mirror the body.
  const META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
  const modern = (method, params, headers = {}) =>
    mcp({ jsonrpc: '2.0', id: 'n', method, params }, { headers: { 'mcp-protocol-version': '2026-07-28', 'mcp-method': method, ...headers } });
  http('/mcp: a 2026-07-28 request without its _meta', () => modern('tools/list', {}), rpcError(400, -32602, /params\._meta is required/, 'n'));
  http('/mcp: Mcp-Method that is not the body\'s method', () => modern('tools/list', { _meta: META }, { 'mcp-method': 'tools/call' }), rpcError(400, -32020, /Header mismatch: the body names method tools\/list/, 'n'));
  http('/mcp: a protocol version from the future in _meta', () =>
    modern('tools/list', { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } }, { 'mcp-protocol-version': '2099-01-01' }),
    rpcError(400, -32022, /Unsupported protocol version: 2099-01-01/, 'n'),
  );
  http('/mcp: ping, which 2026-07-28 removed', () => modern('ping', { _meta: META }), rpcError(404, -32601, /Method not found: ping/, 'n'));
  http('/mcp: Mcp-Param-Session-Id that is not the session_id', () =>
    modern('tools/call', { name: 'terminalExec', arguments: { command: 'id', session_id: 'mine' }, _meta: META }, { 'mcp-name': 'terminalExec', 'mcp-param-session-id': 'theirs' }),
    rpcError(400, -32020, /Mcp-Param-Session-Id header does not match/, 'n'),
  );
  http('/mcp: tasks/get without the tasks extension', () => modern('tasks/get', { taskId: 'x', _meta: META }, { 'mcp-name': 'x' }), rpcError(400, -32021, /Missing required client capability/, 'n'));
  http('/mcp: a body that is not JSON', () => mcp('ping please', { session: mcpA }), rpcError(400, -32700, /Parse error: invalid JSON/));
  http('/mcp: 100000 nested arrays', () => mcp(nested(100_000), { session: mcpA }), rpcError(400, -32700, /Parse error: JSON nesting deeper than 64 levels/));
  http('/mcp: invalid UTF-8', () =>
    mcp(Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"\xfe"}}}', 'latin1'), { session: mcpA }),
    rpcError(400, -32700, /Parse error: invalid UTF-8/),
  );
  http('/mcp: a body over 1 MiB', () => mcp({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(MAX_BODY) } }, { session: mcpA }), restError(413, 'request body too large'));
  http('/mcp: jsonrpc "1.0"', () => mcp('{"jsonrpc":"1.0","id":"j","method":"ping"}', { session: mcpA }), rpcError(400, -32600, /"jsonrpc" must be "2\.0"/, 'j'));
  http('/mcp: id an object', () => mcp('{"jsonrpc":"2.0","id":{},"method":"ping"}', { session: mcpA }), rpcError(400, -32600, /"id" must be a string or an integer/, null));
  http('/mcp: method a number', () => mcp('{"jsonrpc":"2.0","id":"m","method":1}', { session: mcpA }), rpcError(400, -32600, /"method" must be a string/, 'm'));
  http('/mcp: params a string', () => mcp('{"jsonrpc":"2.0","id":"p","method":"tools/list","params":"x"}', { session: mcpA }), rpcError(200, -32602, /"params" must be an object/, 'p'));
  http('/mcp: an unknown tool', () =>
    mcp({ jsonrpc: '2.0', id: 'u', method: 'tools/call', params: { name: 'rm -rf', arguments: {} } }, { session: mcpA }),
    rpcError(200, -32602, /unknown tool "rm -rf"/, 'u'),
  );
  http('/mcp: an empty batch', () => mcp('[]', { session: mcpA0326 }), rpcError(200, -32600, /empty batch/, null));
  http('/mcp: a batch of garbage', () => mcp('[1,{"jsonrpc":"2.0","id":"g","method":[]}]', { session: mcpA0326 }), (r) => {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body?.length, 2, r.text);
    assert.match(r.body[0].error.message, /a message must be a JSON object/);
    assert.match(r.body[1].error.message, /"method" must be a string/);
  });
  http('/mcp: a batch on 2025-11-25', () => mcp('[{"jsonrpc":"2.0","id":"b","method":"ping"}]', { session: mcpA }), rpcError(200, -32600, /batches are not supported in protocol version 2025-11-25/, null));
  http('/mcp: initialize twice on a session', () => mcp({ ...INIT(), id: 'again' }, { session: mcpA }), rpcError(200, -32600, /already initialized/, 'again'));
  http('/mcp: readImage out of the box by "../"', () => mcpCall(mcpB, 'readImage', { session_id: sessB, file_path: `../..${hostPng}` }, tokB), (m) => {
    assert.equal(m.result?.isError, true, JSON.stringify(m).slice(0, 500));
    assert.match(m.result.content[0].text, /^file_not_found: file not found/);
  });
});
