// SPDX-License-Identifier: Apache-2.0
// pythonExec through the console (`onlyboxes console --with-worker`), as its users reach it: the
// REST task API with a session_id (variables kept across tasks, not across accounts; a timeout
// that says whether they survived), images in a REST result as {mime_type, data}, the /mcp
// endpoint through the SDK's Streamable HTTP client (a session per account, images as image
// content), and `onlyboxes python --session NAME` against the console.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Console, bearer, call, login, withMcpClient } from './console-lib.mjs';
import { describeRun, marker, runCli } from './lib.mjs';

const ADMIN = 'py-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2);
const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-python-'));
const env = {
  CONSOLE_DB_PATH: path.join(dir, 'console.db'),
  CONSOLE_HASH_KEY: 'python-hash-key-' + process.pid,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_ENABLE_REGISTRATION: 'true',
  ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
};

let con, A, B;

async function tokenFor(username, password) {
  const cookie = await login(con.base, username, password);
  const t = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'py-' + Math.random() } });
  assert.equal(t.status, 201, t.text);
  return { cookie, token: t.body.token };
}

/** A sync pythonExec task; returns the task snapshot. */
async function task(token, input) {
  const r = await bearer(con.base, 'POST', '/api/v1/tasks', token, { capability: 'pythonExec', mode: 'sync', input });
  assert.ok(r.body && r.body.status, r.text);
  return r;
}

function isPng(b64) {
  const buf = Buffer.from(b64, 'base64');
  return buf.subarray(1, 4).toString('latin1') === 'PNG' && buf.subarray(-8, -4).toString('latin1') === 'IEND';
}

after(() => rmSync(dir, { recursive: true, force: true }));

describe('pythonExec on the console', () => {
  before(async () => {
    con = await new Console(env, ['--with-worker']).start();
    A = await tokenFor(ADMIN, ADMIN_PW);
    const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: A.cookie, body: { username: 'pyuser', password: 'pyuser-pw' } });
    assert.equal(reg.status, 201, reg.text);
    B = await tokenFor('pyuser', 'pyuser-pw');
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('REST tasks: a session keeps its variables, for its account only', async () => {
    const s = marker('rest');
    const a = await task(A.token, { code: 'x = 41', session_id: s, create_if_missing: true });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.body.result.session_id, s, 'the session id comes back as the caller named it');
    assert.equal(a.body.result.interpreter, 'new');
    const b = await task(A.token, { code: 'x + 1', session_id: s });
    assert.equal(b.body.result.result, '42', b.text);
    assert.equal(b.body.result.interpreter, 'kept');
    // Another account naming the same id reaches nothing of A's.
    const other = await task(B.token, { code: 'x', session_id: s });
    assert.equal(other.body.status, 'failed', other.text);
    assert.equal(other.body.error.code, 'session_not_found');
    const own = await task(B.token, { code: '"x" in globals()', session_id: s, create_if_missing: true });
    assert.equal(own.body.result.result, 'False', own.text);
    assert.equal((await task(A.token, { code: 'x', session_id: s })).body.result.result, '41');
  });

  test('REST tasks: a timeout in a session says the variables were kept', async () => {
    const s = marker('rest');
    await task(A.token, { code: 'x = 5', session_id: s, create_if_missing: true });
    const r = await task(A.token, { code: 'import time\ntime.sleep(100)', session_id: s, timeout_ms: 1000 });
    assert.equal(r.body.status, 'timeout', r.text);
    assert.match(r.body.error.message, /^task timed out: the code ran past 1000 ms; it was interrupted \(KeyboardInterrupt\) and stopped.*variables, imports and definitions are kept$/);
    assert.equal((await task(A.token, { code: 'x', session_id: s })).body.result.result, '5');
  });

  test('REST tasks: images as {mime_type, data}, the value as result', async () => {
    const r = await task(A.token, { code: 'import matplotlib.pyplot as plt\nplt.plot([3, 1, 2])\n"done"' });
    assert.equal(r.status, 200, r.text);
    const { images, result } = r.body.result;
    assert.equal(result, "'done'");
    assert.equal(images.length, 1);
    assert.equal(images[0].mime_type, 'image/png');
    assert.ok(isPng(images[0].data), 'the data is a whole PNG');
    assert.ok(images[0].width > 0 && images[0].height > 0);
  });

  test('/mcp: a Python session per account, images as image content', async () => {
    const s = marker('mcp');
    await withMcpClient(con.base, A.token, async (client) => {
      const a = await client.callTool({ name: 'pythonExec', arguments: { code: 'y = [1, 2]', session_id: s, create_if_missing: true } });
      assert.notEqual(a.isError, true, JSON.stringify(a));
      const b = await client.callTool({ name: 'pythonExec', arguments: { code: 'import matplotlib.pyplot as plt\nplt.plot(y)\nsum(y)', session_id: s } });
      assert.notEqual(b.isError, true, JSON.stringify(b));
      assert.equal(b.structuredContent.result, '3');
      assert.equal(b.structuredContent.session_id, s);
      const img = b.content.filter((c) => c.type === 'image');
      assert.equal(img.length, 1);
      assert.equal(img[0].mimeType, 'image/png');
      assert.ok(isPng(img[0].data));
    });
    // The same id from another account is another account's (here: none).
    await withMcpClient(con.base, B.token, async (client) => {
      const r = await client.callTool({ name: 'pythonExec', arguments: { code: 'y', session_id: s } });
      assert.equal(r.isError, true, JSON.stringify(r));
      assert.match(r.content[0].text, /session_not_found/);
    });
  });

  test('onlyboxes python --session NAME keeps the interpreter between invocations', async () => {
    const s = marker('cli');
    const target = ['--console', con.base];
    const cliEnv = { ONLYBOXES_TOKEN: A.token };
    const a = runCli(['python', ...target, '--session', s, '-c', 'import math\nr = 3'], { env: cliEnv });
    assert.equal(a.status, 0, describeRun(a));
    const b = runCli(['python', ...target, '--session', s, '-c', 'print("area:")\nround(math.pi * r * r, 2)'], { env: cliEnv });
    assert.equal(b.status, 0, describeRun(b));
    assert.equal(b.stdout, 'area:\n28.27\n');
    const reset = runCli(['python', ...target, '--session', s, '--reset', '-c', 'r'], { env: cliEnv });
    assert.equal(reset.status, 1, describeRun(reset));
    assert.match(reset.stderr, /NameError: name 'r' is not defined/);
    const plot = runCli(['python', ...target, '-c', 'import matplotlib.pyplot as plt\nplt.plot([1])'], { env: cliEnv });
    assert.equal(plot.status, 0, describeRun(plot));
    assert.match(plot.stderr, /^onlyboxes: image 1 of 1: image\/png, \d+ x \d+ px/m);
  });
});
