// SPDX-License-Identifier: Apache-2.0
// Files in and out of terminal sessions on a console, as a user moves them with curl or a script:
// PUT a file (streamed, parents created, relative to the session's working directory), GET it back
// byte for byte or a directory's listing, DELETE; the sessions API (list, get, renew, delete);
// GET /api/v1/tasks; exportFile through the MCP SDK client over HTTP with its signed link; and
// the bad inputs: paths a box does not let write, a NUL, sizes over the limit, an upload cut
// half-way (no partial file), another account's session, tampered and expired links. First with
// the console's embedded worker, then the same transfers through a remote `onlyboxes worker` over
// gRPC ("files" extension).

import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Console, bearer, call, login } from './console-lib.mjs';
import { findProcesses, sleep, sleepMarker, waitForProcess, assertNoProcess } from './lib.mjs';
import { consoleEnv, online, provision, startDeployment, startWorker, waitWorkers } from './remote-lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-files-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// A 1x1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP438DwHwAGgAJ/zxIJ8QAAAABJRU5ErkJggg==', 'base64');
const sha = (b) => createHash('sha256').update(b).digest('hex');

/** One request with a raw body; resolves {status, headers, body (Buffer), json}. */
async function raw(base, method, p, token, body, headers = {}) {
  const res = await fetch(new URL(p, base), {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body,
  });
  const buf = Buffer.from(await res.arrayBuffer());
  let json = null;
  try {
    json = JSON.parse(buf.toString('utf8'));
  } catch {}
  return { status: res.status, headers: res.headers, body: buf, json };
}

const filesUrl = (sid, p, extra = '') => `/api/v1/sessions/${encodeURIComponent(sid)}/files?path=${encodeURIComponent(p)}${extra}`;

async function sh(base, token, session_id, command) {
  const r = await bearer(base, 'POST', '/api/v1/commands/terminal', token, { command, session_id, create_if_missing: true });
  assert.equal(r.status, 200, r.text);
  return r.body;
}

/** A token of a second account, to check what one account cannot see of another's. */
async function otherToken(con, adminCookie) {
  const name = 'other-' + randomBytes(3).toString('hex');
  const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: adminCookie, body: { username: name, password: 'other-password-1' } });
  assert.equal(reg.status, 201, reg.text);
  const cookie = await login(con.base, name, 'other-password-1');
  const t = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'x' } });
  return t.body.token;
}

/** The transfers every deployment must get right. */
function transferTests(get) {
  test('a file goes in and comes back byte for byte; relative paths are the session\'s cwd', async () => {
    const { base, token } = get();
    await sh(base, token, 'up', 'mkdir -p work && cd work');
    const data = randomBytes(5 * 1024 * 1024 + 7);
    const put = await raw(base, 'PUT', filesUrl('up', 'data/in.bin'), token, data);
    assert.equal(put.status, 201, put.body.toString());
    assert.deepEqual(put.json, { path: '/workspace/work/data/in.bin', size_bytes: data.length, created: true, session_id: 'up' });
    const seen = await sh(base, token, 'up', 'pwd; sha256sum data/in.bin');
    assert.equal(seen.stdout, `/workspace/work\n${sha(data)}  data/in.bin\n`);
    const again = await raw(base, 'PUT', filesUrl('up', 'data/in.bin'), token, Buffer.from('short'));
    assert.equal(again.status, 200);
    assert.equal(again.json.created, false);
    await sh(base, token, 'up', 'head -c 3000000 /dev/urandom > out.bin');
    const want = await sh(base, token, 'up', 'sha256sum < out.bin');
    const got = await raw(base, 'GET', filesUrl('up', 'out.bin'), token);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-length'), '3000000');
    assert.equal(got.headers.get('content-type'), 'application/octet-stream');
    assert.equal(got.headers.get('content-disposition'), 'attachment; filename="out.bin"; filename*=UTF-8\'\'out.bin');
    assert.equal(sha(got.body) + '  -\n', want.stdout);
    // The type comes from the content, not the name.
    await raw(base, 'PUT', filesUrl('up', '/workspace/plot.dat'), token, PNG);
    const png = await raw(base, 'GET', filesUrl('up', '/workspace/plot.dat'), token);
    assert.equal(png.headers.get('content-type'), 'image/png');
    assert.ok(png.body.equals(PNG));
    const text = await raw(base, 'GET', filesUrl('up', 'data/in.bin'), token);
    assert.equal(text.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(text.body.toString(), 'short');
    const empty = await raw(base, 'PUT', filesUrl('up', 'empty'), token, Buffer.alloc(0));
    assert.equal(empty.status, 201);
    const e = await raw(base, 'GET', filesUrl('up', 'empty'), token);
    assert.deepEqual([e.status, e.body.length, e.headers.get('content-length')], [200, 0, '0']);
  });

  test('directories: a listing, mkdir, and removal (recursive only when asked)', async () => {
    const { base, token } = get();
    await sh(base, token, 'dirs', 'mkdir -p a/b && echo 12345 > a/f.txt && ln -s b a/link');
    const mk = await raw(base, 'PUT', filesUrl('dirs', 'a/new/deeper', '&type=directory'), token);
    assert.equal(mk.status, 201, mk.body.toString());
    const list = await raw(base, 'GET', filesUrl('dirs', 'a'), token);
    assert.equal(list.status, 200);
    assert.equal(list.headers.get('x-onlyboxes-file-type'), 'directory');
    assert.equal(list.json.type, 'directory');
    assert.equal(list.json.path, '/workspace/a');
    assert.deepEqual(list.json.entries.map((x) => [x.name, x.type]), [['b', 'directory'], ['f.txt', 'file'], ['link', 'symlink'], ['new', 'directory']]);
    assert.equal(list.json.entries[1].size_bytes, 6);
    assert.equal(list.json.entries[2].target, 'b');
    assert.ok(list.json.entries[1].mtime_unix_ms > Date.now() - 600_000);
    const notEmpty = await raw(base, 'DELETE', filesUrl('dirs', 'a'), token);
    assert.equal(notEmpty.status, 409);
    assert.equal(notEmpty.json.code, 'directory_not_empty');
    const del = await raw(base, 'DELETE', filesUrl('dirs', 'a/f.txt'), token);
    assert.equal(del.status, 204);
    const rec = await raw(base, 'DELETE', filesUrl('dirs', 'a', '&recursive=true'), token);
    assert.equal(rec.status, 204);
    const gone = await raw(base, 'GET', filesUrl('dirs', 'a'), token);
    assert.deepEqual([gone.status, gone.json.code], [404, 'file_not_found']);
  });

  test('bad input answers with what is wrong, and writes nothing', async () => {
    const { base, token, other } = get();
    await sh(base, token, 'bad', 'true');
    const cases = [
      [raw(base, 'GET', '/api/v1/sessions/bad/files', token), 400, 'bad_request', /path is required/],
      [raw(base, 'PUT', filesUrl('bad', '/usr/x'), token, Buffer.from('x')), 403, 'permission_denied', /read-only file system: \/usr\/x/],
      [raw(base, 'PUT', filesUrl('bad', '/workspace'), token, Buffer.from('x')), 409, 'path_is_directory', /is a directory/],
      [raw(base, 'GET', filesUrl('bad', 'nope.txt'), token), 404, 'file_not_found', /file not found: nope.txt/],
      [raw(base, 'GET', filesUrl('nosuch', 'x'), token), 404, 'session_not_found', /session not found/],
      [raw(base, 'GET', filesUrl('bad', 'x'), other), 404, 'session_not_found', /session not found/],
      [raw(base, 'PUT', filesUrl('bad', 'x'), other, Buffer.from('x')), 404, 'session_not_found', /session not found/],
      [raw(base, 'PUT', filesUrl('bad', 'x', '&mode=999'), token, Buffer.from('x')), 400, 'bad_request', /mode must be an octal/],
      [raw(base, 'PUT', filesUrl('bad', 'x', '&type=fifo'), token, Buffer.from('x')), 400, 'bad_request', /type must be file/],
      [raw(base, 'DELETE', filesUrl('bad', 'x', '&recursive=maybe'), token), 400, 'bad_request', /recursive must be true or false/],
      [raw(base, 'GET', '/api/v1/sessions/a%20b/files?path=x', token), 400, 'bad_request', /visible ASCII/],
      [raw(base, 'DELETE', filesUrl('bad', '/'), token), 403, 'permission_denied', /mount point/],
      [raw(base, 'GET', filesUrl('bad', 'x'), 'not-a-token'), 401, undefined, /invalid or missing token/],
    ];
    for (const [p, status, code, msg] of cases) {
      const r = await p;
      assert.equal(r.status, status, r.body.toString());
      if (code) assert.equal(r.json.code, code, r.body.toString());
      assert.match(r.json.error, msg);
    }
    // A NUL in the path never reaches a box: the server refuses the URL.
    await assert.rejects(raw(base, 'PUT', '/api/v1/sessions/bad/files?path=a%00b', token, Buffer.from('x')));
    // Too large: refused before a byte is read (CONSOLE_MAX_UPLOAD_MB is 8 here).
    const big = await raw(base, 'PUT', filesUrl('bad', 'big.bin'), token, Buffer.alloc(9 * 1024 * 1024));
    assert.equal(big.status, 413);
    assert.equal(big.json.code, 'file_too_large');
    assert.match(big.json.error, /the file is 9437184 bytes; the console takes at most 8 MiB per upload \(CONSOLE_MAX_UPLOAD_MB\)/);
    const left = await sh(base, token, 'bad', 'ls -A /workspace');
    assert.equal(left.stdout, '', 'nothing was written');
  });

  test('an upload cut half-way leaves no partial file (nor the directories it made)', async () => {
    const { base, token } = get();
    await sh(base, token, 'cut', 'echo old > keep.txt');
    const url = new URL(filesUrl('cut', 'deep/dir/cut.bin'), base);
    const sock = net.connect(Number(url.port), url.hostname);
    await new Promise((r) => sock.on('connect', r));
    sock.write(`PUT ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nContent-Length: 4000000\r\n\r\n`);
    sock.write(randomBytes(1_500_000));
    await sleep(300);
    sock.destroy();
    // And one over an existing file: it keeps its content.
    const sock2 = net.connect(Number(url.port), url.hostname);
    await new Promise((r) => sock2.on('connect', r));
    const url2 = new URL(filesUrl('cut', 'keep.txt'), base);
    sock2.write(`PUT ${url2.pathname}${url2.search} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\n0123456789`);
    await sleep(300);
    sock2.destroy();
    let seen;
    for (let i = 0; i < 50; i++) {
      seen = await sh(base, token, 'cut', 'ls -A; cat keep.txt');
      if (seen.stdout === 'keep.txt\nold\n') break;
      await sleep(100);
    }
    assert.equal(seen.stdout, 'keep.txt\nold\n');
  });

  test('the sessions API: list, get, renew within bounds, delete kills what runs there', async () => {
    const { base, token, other } = get();
    const marker = sleepMarker();
    await sh(base, token, 'api-1', `(sleep ${marker} &) ; true`);
    await waitForProcess(marker);
    const list = await bearer(base, 'GET', '/api/v1/sessions?page_size=100', token);
    assert.equal(list.status, 200, list.text);
    const mine = list.body.items.find((s) => s.session_id === 'api-1');
    assert.ok(mine, list.text);
    assert.equal(mine.status, 'active');
    assert.equal(mine.busy, false);
    assert.ok(mine.worker);
    for (const k of ['created_at', 'last_used_at', 'lease_expires_at']) assert.match(mine[k], /^\d{4}-\d\d-\d\dT/);
    assert.ok(list.body.items.every((s) => !s.session_id.startsWith('obx:')), 'the scope is not shown');
    const theirs = await bearer(base, 'GET', '/api/v1/sessions', other);
    assert.equal(theirs.body.items.some((s) => s.session_id === 'api-1'), false);
    assert.equal((await bearer(base, 'GET', '/api/v1/sessions/api-1', other)).status, 404);
    assert.equal((await bearer(base, 'DELETE', '/api/v1/sessions/api-1', other)).status, 404);
    const one = await bearer(base, 'GET', '/api/v1/sessions/api-1', token);
    assert.equal(one.body.session_id, 'api-1');
    const renewed = await bearer(base, 'POST', '/api/v1/sessions/api-1/renew', token, { lease_ttl_sec: 1200 });
    assert.equal(renewed.status, 200, renewed.text);
    assert.ok(renewed.body.lease_expires_unix_ms >= Date.now() + 1190_000);
    const tooLong = await bearer(base, 'POST', '/api/v1/sessions/api-1/renew', token, { lease_ttl_sec: 86400 });
    assert.deepEqual([tooLong.status, tooLong.body.error], [400, 'lease_ttl_sec must be between 60 and 1800']);
    const notInt = await bearer(base, 'POST', '/api/v1/sessions/api-1/renew', token, { lease_ttl_sec: 'long' });
    assert.equal(notInt.status, 400);
    const del = await bearer(base, 'DELETE', '/api/v1/sessions/api-1', token);
    assert.equal(del.status, 204, del.text);
    await assertNoProcess(marker, 10_000, 'the box of a deleted session');
    assert.equal((await bearer(base, 'GET', '/api/v1/sessions/api-1', token)).status, 404);
    const after = await bearer(base, 'GET', '/api/v1/sessions?page_size=100', token);
    assert.equal(after.body.items.some((s) => s.session_id === 'api-1'), false);
  });
}

describe('a console with its embedded worker', () => {
  const ctx = {};
  before(async () => {
    const env = consoleEnv(path.join(dir, 'embedded'), {
      CONSOLE_MAX_UPLOAD_MB: '8',
      CONSOLE_EXPORT_MAX_MB: '1',
      CONSOLE_ENABLE_REGISTRATION: 'true',
      ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
    });
    ctx.env = env;
    ctx.d = await startDeployment(env, ['--with-worker']);
    ctx.base = ctx.d.con.base;
    ctx.token = ctx.d.token;
    ctx.other = await otherToken(ctx.d.con, ctx.d.cookie);
  });
  after(async () => {
    await ctx.d?.con.stop();
  });

  transferTests(() => ctx);

  test('GET /api/v1/tasks: the account\'s tasks, newest first, by status, in pages', async () => {
    const { base, token, other } = ctx;
    const ids = [];
    for (const code of ['print(1)', 'import sys; sys.exit(3)', 'print(3)']) {
      const r = await bearer(base, 'POST', '/api/v1/tasks', token, { capability: 'pythonExec', input: { code }, mode: 'sync' });
      ids.push(r.body.task_id);
    }
    const list = await bearer(base, 'GET', '/api/v1/tasks?page_size=3', token);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.items.map((t) => t.task_id), ids.slice().reverse());
    assert.ok(list.body.total >= 3);
    assert.deepEqual([list.body.page, list.body.page_size], [1, 3]);
    assert.equal(list.body.items[0].result.output, '3\n');
    const page2 = await bearer(base, 'GET', '/api/v1/tasks?page_size=1&page=2', token);
    assert.deepEqual(page2.body.items.map((t) => t.task_id), [ids[1]]);
    const ok = await bearer(base, 'GET', '/api/v1/tasks?status=succeeded&page_size=100', token);
    assert.ok(ok.body.items.every((t) => t.status === 'succeeded'));
    assert.equal(ok.body.total, ok.body.items.length);
    const none = await bearer(base, 'GET', '/api/v1/tasks?status=canceled', token);
    assert.deepEqual(none.body.items, []);
    const bad = await bearer(base, 'GET', '/api/v1/tasks?status=done', token);
    assert.deepEqual([bad.status, bad.body.error], [400, 'status must be one of all|queued|dispatched|running|succeeded|failed|timeout|canceled']);
    assert.equal((await bearer(base, 'GET', '/api/v1/tasks?page=0', token)).status, 400);
    const theirs = await bearer(base, 'GET', '/api/v1/tasks', other);
    assert.ok(!theirs.body.items.some((t) => ids.includes(t.task_id)));
    // The dashboard lists them with its cookie.
    const dash = await call(base, 'GET', '/api/v1/tasks?page_size=3', { cookie: ctx.d.cookie });
    assert.deepEqual(dash.body.items.map((t) => t.task_id), ids.slice().reverse());
    assert.equal((await call(base, 'GET', '/api/v1/tasks')).status, 401);
  });

  test('exportFile: a signed link that works without a token and outlives the session', async () => {
    const { base, token } = ctx;
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', base), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
    const client = new Client({ name: 'files-test', version: '0' }, { capabilities: {} });
    await client.connect(transport);
    try {
      const tools = await client.listTools();
      const ex = tools.tools.find((t) => t.name === 'exportFile');
      assert.ok(ex);
      assert.deepEqual(ex.inputSchema.required, ['session_id', 'file_path']);
      await client.callTool({ name: 'terminalExec', arguments: { command: 'mkdir -p out && cd out && head -c 300000 /dev/urandom > report.bin && sha256sum report.bin', session_id: 'exp', create_if_missing: true } });
      const want = (await sh(base, token, 'exp', 'sha256sum < report.bin')).stdout.split(' ')[0];
      const t0 = Date.now();
      const r = await client.callTool({ name: 'exportFile', arguments: { session_id: 'exp', file_path: 'report.bin' } });
      const took = Date.now() - t0;
      assert.notEqual(r.isError, true, JSON.stringify(r));
      const s = r.structuredContent;
      assert.equal(s.filename, 'report.bin');
      assert.equal(s.size_bytes, 300000);
      assert.match(s.download_url, new RegExp(`^${base}/api/v1/exports/[0-9a-f]{32}/report\\.bin\\?expires=\\d+&signature=[0-9a-f]{64}$`));
      assert.ok(Date.parse(s.expires_at) > Date.now() + 3500_000);
      // The session goes; the export stays.
      assert.equal((await bearer(base, 'DELETE', '/api/v1/sessions/exp', token)).status, 204);
      const dl = await raw(base, 'GET', s.download_url.slice(base.length), null);
      assert.equal(dl.status, 200);
      assert.equal(sha(dl.body), want);
      assert.match(dl.headers.get('content-disposition'), /filename="report.bin"/);
      // Tampered: another signature, another file, a later expiry.
      const u = new URL(s.download_url);
      const sig = u.searchParams.get('signature');
      const forged = [
        s.download_url.replace(sig, (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1)),
        s.download_url.replace(/exports\/[0-9a-f]{32}/, 'exports/' + 'f'.repeat(32)),
        s.download_url.replace(/expires=\d+/, `expires=${Number(u.searchParams.get('expires')) + 3600}`),
        s.download_url.replace(/&signature=.*/, ''),
      ];
      for (const f of forged) {
        const x = await raw(base, 'GET', f.slice(base.length), null);
        assert.equal(x.status, 403, f);
        assert.match(x.json.error, /invalid download link/);
      }
      // Expired: a link signed (with the console's key) for a time past.
      const id = u.pathname.split('/')[4];
      const past = Math.floor(Date.now() / 1000) - 10;
      const psig = createHmac('sha256', ctx.env.CONSOLE_HASH_KEY).update(`export:${id}:${past}`).digest('hex');
      const old = await raw(base, 'GET', `/api/v1/exports/${id}/report.bin?expires=${past}&signature=${psig}`, null);
      assert.equal(old.status, 410);
      assert.match(old.json.error, /this download link expired at .*; call exportFile again/);
      console.log(`# exportFile of 300 kB: ${took} ms`);
      // Over the export space (CONSOLE_EXPORT_MAX_MB=1), a directory, a missing file.
      await client.callTool({ name: 'terminalExec', arguments: { command: 'head -c 900000 /dev/zero > big && mkdir d', session_id: 'exp2', create_if_missing: true } });
      const full = await client.callTool({ name: 'exportFile', arguments: { session_id: 'exp2', file_path: 'big' } });
      assert.equal(full.isError, true);
      assert.match(full.content[0].text, /^file_too_large: the file is 900000 bytes; the console keeps at most 1 MiB of exported files \(CONSOLE_EXPORT_MAX_MB\)/);
      const d = await client.callTool({ name: 'exportFile', arguments: { session_id: 'exp2', file_path: 'd' } });
      assert.match(d.content[0].text, /^path_is_directory: d is a directory, not a file/);
      const m = await client.callTool({ name: 'exportFile', arguments: { session_id: 'exp2', file_path: 'missing' } });
      assert.match(m.content[0].text, /^file_not_found/);
      const o = await client.callTool({ name: 'exportFile', arguments: { session_id: 'nope', file_path: 'big' } });
      assert.match(o.content[0].text, /^session_not_found/);
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close();
    }
  });

  test('readImage reads a relative path from where the session cd\'ed to', async () => {
    const { base, token } = ctx;
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', base), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
    const client = new Client({ name: 'files-test', version: '0' }, { capabilities: {} });
    await client.connect(transport);
    try {
      await client.callTool({ name: 'terminalExec', arguments: { command: `cd /tmp && echo ${PNG.toString('base64')} | base64 -d > plot.png`, session_id: 'img', create_if_missing: true } });
      const img = await client.callTool({ name: 'readImage', arguments: { session_id: 'img', file_path: 'plot.png' } });
      assert.equal(img.content[0].type, 'image', JSON.stringify(img));
      assert.equal(img.content[0].data, PNG.toString('base64'));
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close();
    }
  });
});

describe('a console with a remote worker (files over gRPC)', () => {
  const ctx = {};
  before(async () => {
    const env = consoleEnv(path.join(dir, 'remote'), { CONSOLE_MAX_UPLOAD_MB: '8', CONSOLE_ENABLE_REGISTRATION: 'true' });
    ctx.d = await startDeployment(env);
    const vars = await provision(ctx.d.con, ctx.d.cookie);
    ctx.w = startWorker(vars);
    await waitWorkers(ctx.d.con, ctx.d.cookie, online([vars.WORKER_ID]));
    ctx.base = ctx.d.con.base;
    ctx.token = ctx.d.token;
    ctx.other = await otherToken(ctx.d.con, ctx.d.cookie);
  });
  after(async () => {
    await ctx.w?.stop();
    await ctx.d?.con.stop();
  });

  transferTests(() => ctx);

  test('a file larger than gRPC\'s 4 MiB travels in chunks, both ways', async () => {
    const { base, token } = ctx;
    const data = randomBytes(7 * 1024 * 1024 + 1);
    await sh(base, token, 'grpc', 'true');
    const put = await raw(base, 'PUT', filesUrl('grpc', 'x.bin'), token, data);
    assert.equal(put.status, 201, put.body.toString());
    const got = await raw(base, 'GET', filesUrl('grpc', 'x.bin'), token);
    assert.equal(got.body.length, data.length);
    assert.ok(got.body.equals(data));
  });
});
