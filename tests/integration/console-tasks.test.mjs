// SPDX-License-Identifier: Apache-2.0
// Black-box tests of the console's command and task API (reference §1.6, §1.7) with the embedded
// worker: `onlyboxes console --with-worker` on a free loopback port with a fresh database, driven
// with real HTTP requests and Bearer tokens made through the cookie API. Beyond the reference:
// cancel stops the process on the host, and a reused request_id with a different input is a 409.

import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fetchResult } from './console-lib.mjs';
import { BIN, assertNoSanitizerReport, findProcesses, sleep, sleepMarker, waitForProcess } from './lib.mjs';

const ADMIN = 'tasks-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2);
const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-tasks-'));
const env = {
  CONSOLE_HTTP_ADDR: '127.0.0.1:0',
  CONSOLE_GRPC_ADDR: '127.0.0.1:0',
  CONSOLE_DB_PATH: path.join(dir, 'console.db'),
  CONSOLE_HASH_KEY: 'tasks-hash-key-' + process.pid,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_ENABLE_REGISTRATION: 'true',
  ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
};

async function startConsole(args = ['--with-worker'], extraEnv = {}) {
  assert.ok(existsSync(BIN), `binary not found: ${BIN}`);
  const proc = spawn(BIN, ['console', ...args], { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
  const con = { proc, stderr: '' };
  proc.stderr.setEncoding('utf8');
  con.exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  con.base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`console did not start:\n${con.stderr}`)), 20000);
    proc.stderr.on('data', (d) => {
      con.stderr += d;
      const m = /listening on http:\/\/[^\s:]+:(\d+)/.exec(con.stderr);
      if (m) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${m[1]}`);
      }
    });
    proc.on('exit', () => reject(new Error(`console exited:\n${con.stderr}`)));
  });
  con.stop = async () => {
    proc.kill('SIGTERM');
    const r = await con.exited;
    assertNoSanitizerReport(con.stderr, 'onlyboxes console');
    return r;
  };
  return con;
}

async function call(base, method, p, { body, token, cookie, raw, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (cookie) h.cookie = `onlyboxes_console_session=${cookie}`;
  if (body !== undefined || raw !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(base + p, {
    method,
    headers: h,
    body: raw !== undefined ? raw : body !== undefined ? JSON.stringify(body) : undefined,
  });
  return fetchResult(res);
}

async function tokenFor(base, username, password) {
  const r = await call(base, 'POST', '/api/v1/console/login', { body: { username, password } });
  assert.equal(r.status, 200, r.text);
  // The cookie value is in set-cookie; fetch gives it through a second request.
  const res = await fetch(base + '/api/v1/console/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const sc = res.headers.getSetCookie().find((c) => c.startsWith('onlyboxes_console_session='));
  const cookie = sc.split(';')[0].split('=')[1];
  const t = await call(base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'tasks-' + Math.random() } });
  assert.equal(t.status, 201, t.text);
  return { cookie, token: t.body.token };
}

async function waitDone(base, token, id, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await call(base, 'GET', `/api/v1/tasks/${id}`, { token });
    assert.equal(r.status, 200, r.text);
    if (['succeeded', 'failed', 'timeout', 'canceled'].includes(r.body.status) || Date.now() > end) return r.body;
    await sleep(100);
  }
}

let con, A, B;
after(() => rmSync(dir, { recursive: true, force: true }));

describe('console tasks (embedded worker)', () => {
  before(async () => {
    con = await startConsole();
    A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: A.cookie, body: { username: 'bob', password: 'bob-pw' } });
    assert.equal(reg.status, 201, reg.text);
    B = await tokenFor(con.base, 'bob', 'bob-pw');
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('bearer auth failures', async () => {
    for (const authorization of [undefined, 'Bearer', 'Bearer nope', 'Basic abc', `Bearer ${A.token} x`]) {
      const headers = authorization ? { authorization } : {};
      const r = await call(con.base, 'POST', '/api/v1/tasks', { headers, body: { capability: 'echo' } });
      assert.deepEqual([r.status, r.body], [401, { error: 'invalid or missing token' }], String(authorization));
    }
    const lower = await call(con.base, 'POST', '/api/v1/commands/echo', { headers: { authorization: `bearer ${A.token}` }, body: { message: 'x' } });
    assert.equal(lower.status, 200, lower.text);
  });

  test('echo: 200 and validation', async () => {
    const ok = await call(con.base, 'POST', '/api/v1/commands/echo', { token: A.token, body: { message: '  hi  ' } });
    assert.deepEqual([ok.status, ok.body], [200, { message: '  hi  ' }]);
    const cases = [
      [{ raw: '{bad' }, 'invalid request body'],
      [{ body: { message: 5 } }, 'invalid request body'],
      [{ body: { message: '   ' } }, 'message is required'],
      [{ body: {} }, 'message is required'],
      [{ body: { message: 'x', timeout_ms: 0 } }, 'timeout_ms must be between 1 and 60000'],
      [{ body: { message: 'x', timeout_ms: 60001 } }, 'timeout_ms must be between 1 and 60000'],
    ];
    for (const [opts, error] of cases) {
      const r = await call(con.base, 'POST', '/api/v1/commands/echo', { token: A.token, ...opts });
      assert.deepEqual([r.status, r.body], [400, { error }], JSON.stringify(opts));
    }
  });

  test('terminal command: shape, state kept per session, owner scoping', async () => {
    const first = await call(con.base, 'POST', '/api/v1/commands/terminal', { token: A.token, body: { command: 'cd /tmp && export OBXV=42 && echo one' } });
    assert.equal(first.status, 200, first.text);
    const r = first.body;
    assert.deepEqual(Object.keys(r).sort(), ['created', 'exit_code', 'lease_expires_unix_ms', 'session_id', 'stderr', 'stderr_truncated', 'stdout', 'stdout_truncated']);
    assert.match(r.session_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(r.created, true);
    assert.equal(r.stdout, 'one\n');
    assert.equal(r.exit_code, 0);
    const second = await call(con.base, 'POST', '/api/v1/commands/terminal', { token: A.token, body: { command: 'echo $OBXV; pwd', session_id: r.session_id } });
    assert.equal(second.status, 200, second.text);
    assert.equal(second.body.session_id, r.session_id);
    assert.equal(second.body.created, false);
    assert.equal(second.body.stdout, '42\n/tmp\n');
    const other = await call(con.base, 'POST', '/api/v1/commands/terminal', { token: B.token, body: { command: 'echo $OBXV', session_id: r.session_id } });
    assert.equal(other.status, 404, other.text);
    const blank = await call(con.base, 'POST', '/api/v1/commands/terminal', { token: A.token, body: { command: '  ' } });
    assert.deepEqual([blank.status, blank.body], [400, { error: 'command is required' }]);
    const exit = await call(con.base, 'POST', '/api/v1/commands/terminal', { token: A.token, body: { command: 'exit 3', session_id: r.session_id } });
    assert.equal(exit.body.exit_code, 3);
  });

  test("the console's own session capabilities are no tasks: another account's session stays out of reach", async () => {
    const mine = await call(con.base, 'POST', '/api/v1/commands/terminal', { token: A.token, body: { command: 'echo secret > s.txt', session_id: 'private', create_if_missing: true } });
    assert.equal(mine.status, 200, mine.text);
    const session = await call(con.base, 'GET', '/api/v1/console/session', { cookie: A.cookie });
    const scoped = `obx:${session.body.account.account_id}:private`;
    const cases = [
      ['terminalSession', { action: 'close', session_id: scoped }, '/api/v1/sessions'],
      ['terminalFiles', { action: 'read', session_id: scoped, path: 's.txt' }, '/api/v1/sessions/{id}/files'],
      ['terminalPty', { session_id: scoped }, "the dashboard's live terminal"],
    ];
    for (const [capability, input, use] of cases) {
      const r = await call(con.base, 'POST', '/api/v1/tasks', { token: B.token, body: { capability, input, mode: 'sync' } });
      assert.deepEqual([r.status, r.body], [400, { error: `capability ${capability.toLowerCase()} is not run as a task: use ${use}` }], capability);
    }
    const still = await call(con.base, 'POST', '/api/v1/commands/terminal', { token: A.token, body: { command: 'cat s.txt', session_id: 'private' } });
    assert.equal(still.body.stdout, 'secret\n');
  });

  test('tasks: sync, async, auto', async () => {
    const sync = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: ' PythonExec ', mode: 'SYNC', input: { code: 'print(6*7)' } } });
    assert.equal(sync.status, 200, sync.text);
    assert.equal(sync.body.status, 'succeeded');
    assert.equal(sync.body.capability, 'pythonexec');
    assert.equal(sync.body.result.output, '42\n');
    assert.equal(sync.body.result.exit_code, 0);
    assert.ok(sync.body.task_id && sync.body.created_at && sync.body.completed_at && sync.body.deadline_at && sync.body.command_id);
    assert.equal(sync.body.input, undefined);
    assert.equal(sync.body.request_id, undefined);

    const asyncR = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'pythonExec', mode: 'async', input: { code: 'import time; time.sleep(0.3); print("late")' } } });
    assert.equal(asyncR.status, 202, asyncR.text);
    assert.equal(asyncR.body.status_url, `/api/v1/tasks/${asyncR.body.task_id}`);
    assert.ok(['queued', 'dispatched', 'running'].includes(asyncR.body.status));
    const done = await waitDone(con.base, A.token, asyncR.body.task_id);
    assert.equal(done.status, 'succeeded');
    assert.equal(done.result.output, 'late\n');

    const auto = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'terminalExec', wait_ms: 50, input: { command: 'sleep 1; echo ok' } } });
    assert.equal(auto.status, 202, auto.text);
    const autoDone = await waitDone(con.base, A.token, auto.body.task_id);
    assert.equal(autoDone.status, 'succeeded');
    assert.equal(autoDone.result.stdout, 'ok\n');
    assert.ok(!autoDone.result.session_id.startsWith('obx:'), 'the session id is unscoped');

    const bad = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'pythonexec', mode: 'sync', input: { nope: 1 } } });
    assert.equal(bad.status, 502, bad.text);
    assert.equal(bad.body.status, 'failed');
    assert.equal(bad.body.error.code, 'invalid_payload');
  });

  test('tasks: validation messages, in order', async () => {
    const cases = [
      [{ raw: '[]' }, 'invalid request body'],
      [{ body: { capability: 1 } }, 'invalid request body'],
      [{ body: { capability: 'echo', wait_ms: 0, timeout_ms: 0 } }, 'wait_ms must be between 1 and 60000'],
      [{ body: { capability: 'echo', wait_ms: 60001 } }, 'wait_ms must be between 1 and 60000'],
      [{ body: { capability: 'echo', timeout_ms: 600001, mode: 'x' } }, 'timeout_ms must be between 1 and 600000'],
      [{ body: { capability: 'echo', mode: 'later' } }, 'mode must be one of sync|async|auto'],
      [{ body: { capability: '  ' } }, 'capability is required'],
      [{ body: {} }, 'capability is required'],
    ];
    for (const [opts, error] of cases) {
      const r = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, ...opts });
      assert.deepEqual([r.status, r.body], [400, { error }], JSON.stringify(opts));
    }
    const unknown = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'computerUse' } });
    assert.deepEqual([unknown.status, unknown.body], [503, { error: 'no online worker supports requested capability' }]);
  });

  test('tasks: request_id idempotency per account', async () => {
    const body = { capability: 'echo', mode: 'sync', request_id: ' rid-1 ', input: { message: 'same' } };
    const first = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.request_id, 'rid-1');
    assert.deepEqual(first.body.result, { message: 'same' });
    const again = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { ...body, mode: 'async', request_id: 'rid-1' } });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.task_id, first.body.task_id);
    const diff = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { ...body, input: { message: 'other' } } });
    assert.equal(diff.status, 409, diff.text);
    assert.deepEqual(diff.body, { error: 'request_id already used with a different input' });
    const otherAccount = await call(con.base, 'POST', '/api/v1/tasks', { token: B.token, body });
    assert.equal(otherAccount.status, 200);
    assert.notEqual(otherAccount.body.task_id, first.body.task_id);
  });

  test('cancel stops the process; finished tasks and other owners', async () => {
    const secs = sleepMarker();
    const sub = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'terminalExec', mode: 'async', input: { command: `sleep ${secs}` } } });
    assert.equal(sub.status, 202, sub.text);
    const id = sub.body.task_id;
    assert.ok((await waitForProcess(secs, 15000)).length > 0, 'the command never started');
    const foreign = await call(con.base, 'GET', `/api/v1/tasks/${id}`, { token: B.token });
    assert.deepEqual([foreign.status, foreign.body], [404, { error: 'task not found' }]);
    const foreignCancel = await call(con.base, 'POST', `/api/v1/tasks/${id}/cancel`, { token: B.token });
    assert.equal(foreignCancel.status, 404);
    const c = await call(con.base, 'POST', `/api/v1/tasks/${id}/cancel`, { token: A.token });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.body.status, 'canceled');
    assert.deepEqual(c.body.error, { code: 'canceled', message: 'task canceled' });
    const end = Date.now() + 2000;
    while (findProcesses(secs).length > 0 && Date.now() < end) await sleep(25);
    assert.deepEqual(findProcesses(secs), [], 'the canceled command still runs');
    const twice = await call(con.base, 'POST', `/api/v1/tasks/${id}/cancel`, { token: A.token });
    assert.equal(twice.status, 409);
    assert.equal(twice.body.task_id, id);
    assert.equal(twice.body.status, 'canceled');
    const missing = await call(con.base, 'GET', '/api/v1/tasks/nope', { token: A.token });
    assert.deepEqual([missing.status, missing.body], [404, { error: 'task not found' }]);
  });

  test('capacity: 16 calls per capability, then 429; cancel frees the slots', async () => {
    const secs = sleepMarker();
    const ids = [];
    for (let i = 0; i < 16; i++) {
      const r = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'pythonexec', mode: 'async', input: { code: `import subprocess; subprocess.run(["sleep", "${secs}"])` } } });
      assert.equal(r.status, 202, r.text);
      ids.push(r.body.task_id);
    }
    const full = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'pythonexec', input: { code: 'print(1)' } } });
    assert.deepEqual([full.status, full.body], [429, { error: 'no online worker capacity for requested capability' }]);
    const echo = await call(con.base, 'POST', '/api/v1/commands/echo', { token: A.token, body: { message: 'other capability' } });
    assert.equal(echo.status, 200);
    for (const id of ids) {
      const c = await call(con.base, 'POST', `/api/v1/tasks/${id}/cancel`, { token: A.token });
      assert.equal(c.status, 200, c.text);
    }
    const end = Date.now() + 5000;
    while (findProcesses(secs).length > 0 && Date.now() < end) await sleep(25);
    assert.deepEqual(findProcesses(secs), []);
    // A slot is released when the worker confirms the call ended, which on a container runtime
    // can come a moment after the processes are gone.
    let again;
    const until = Date.now() + 10_000;
    do {
      again = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'pythonexec', mode: 'sync', input: { code: 'print(1)' } } });
      if (again.status !== 429) break;
      await sleep(100);
    } while (Date.now() < until);
    assert.equal(again.status, 200, again.text);
  });

  test('timeout ends the task with 504 and stops the process', async () => {
    const secs = sleepMarker();
    const r = await call(con.base, 'POST', '/api/v1/tasks', { token: A.token, body: { capability: 'terminalexec', mode: 'sync', timeout_ms: 1500, input: { command: `sleep ${secs}` } } });
    assert.equal(r.status, 504, r.text);
    assert.equal(r.body.status, 'timeout');
    assert.deepEqual(r.body.error, { code: 'timeout', message: 'task timed out' });
    const end = Date.now() + 2000;
    while (findProcesses(secs).length > 0 && Date.now() < end) await sleep(25);
    assert.deepEqual(findProcesses(secs), []);
  });
});

describe('console tasks across restarts', () => {
  test('without a worker: 503', async () => {
    const c = await startConsole([]);
    try {
      const { token } = await tokenFor(c.base, ADMIN, ADMIN_PW);
      const e = await call(c.base, 'POST', '/api/v1/commands/echo', { token, body: { message: 'x' } });
      assert.deepEqual([e.status, e.body], [503, { error: 'no online worker supports echo' }]);
      const t = await call(c.base, 'POST', '/api/v1/tasks', { token, body: { capability: 'echo' } });
      assert.deepEqual([t.status, t.body], [503, { error: 'no online worker supports requested capability' }]);
    } finally {
      await c.stop();
    }
  });

  test('a graceful stop ends a running task as console_restarted and stops its process', async () => {
    let c = await startConsole();
    const { token } = await tokenFor(c.base, ADMIN, ADMIN_PW);
    const secs = sleepMarker();
    const live = await call(c.base, 'POST', '/api/v1/tasks', { token, body: { capability: 'terminalexec', mode: 'async', input: { command: `sleep ${secs}` } } });
    assert.equal(live.status, 202, live.text);
    assert.ok((await waitForProcess(secs, 15000)).length > 0);
    const r = await c.stop();
    assert.equal(r.code, 0, c.stderr);
    assert.deepEqual(findProcesses(secs), [], 'the task outlived the console');
    c = await startConsole();
    try {
      const b = await call(c.base, 'GET', `/api/v1/tasks/${live.body.task_id}`, { token });
      assert.equal(b.body.status, 'failed');
      assert.equal(b.body.error.code, 'console_restarted');
    } finally {
      await c.stop();
    }
  });

  test('a task interrupted by kill -9 reads failed/console_restarted; finished ones survive', async () => {
    let c = await startConsole([], { CONSOLE_EMBEDDED_WORKER: 'true' });
    const { token } = await tokenFor(c.base, ADMIN, ADMIN_PW);
    const done = await call(c.base, 'POST', '/api/v1/tasks', { token, body: { capability: 'echo', mode: 'sync', input: { message: 'kept' } } });
    assert.equal(done.status, 200, done.text);
    const secs = sleepMarker();
    const live = await call(c.base, 'POST', '/api/v1/tasks', { token, body: { capability: 'terminalexec', mode: 'async', input: { command: `sleep ${secs}` } } });
    assert.equal(live.status, 202);
    await waitForProcess(secs, 15000);
    c.proc.kill('SIGKILL');
    await c.exited;
    c = await startConsole();
    try {
      const a = await call(c.base, 'GET', `/api/v1/tasks/${done.body.task_id}`, { token });
      assert.equal(a.status, 200);
      assert.deepEqual(a.body.result, { message: 'kept' });
      const b = await call(c.base, 'GET', `/api/v1/tasks/${live.body.task_id}`, { token });
      assert.equal(b.status, 200);
      assert.equal(b.body.status, 'failed');
      assert.deepEqual(b.body.error, { code: 'console_restarted', message: 'task interrupted by console restart' });
      assert.ok(b.body.completed_at);
    } finally {
      await c.stop();
      const end = Date.now() + 5000;
      while (findProcesses(secs).length > 0 && Date.now() < end) await sleep(50);
    }
  });
});

// Network "allowlist" through the console: the REST terminal command and a task ask for it, the
// embedded worker's egress proxy lets the box reach one name (pinned by the test-only override
// to a server on this test's loopback) and nothing else.
describe('console: network "allowlist"', () => {
  let c;
  let web;
  let token;
  before(async () => {
    web = http.createServer((req, res) => res.end(`hello ${req.url}\n`));
    await new Promise((resolve) => web.listen(0, '127.0.0.1', resolve));
    c = await startConsole(['--with-worker'], {
      CONSOLE_DB_PATH: path.join(dir, 'egress.db'),
      ONLYBOXES_EGRESS_ALLOW: 'web.test',
      ONLYBOXES_EGRESS_TEST_RESOLVE: `web.test=127.0.0.1:${web.address().port}`,
    });
    token = (await tokenFor(c.base, ADMIN, ADMIN_PW)).token;
  });
  after(async () => {
    if (c) await c.stop();
    web?.close();
  });

  test('REST terminal command and tasks ask for it; a bad value is a 400', async () => {
    const t = await call(c.base, 'POST', '/api/v1/commands/terminal', {
      token,
      body: { command: 'curl -sS http://web.test/rest; curl -sS http://evil.test/', network: 'allowlist' },
    });
    assert.equal(t.status, 200, t.text);
    assert.equal(t.body.stdout, 'hello /rest\negress to evil.test is not allowed (ONLYBOXES_EGRESS_ALLOW)\n', t.text);
    const code = 'import urllib.request\nprint(urllib.request.urlopen("http://web.test/task").read().decode(), end="")';
    const task = await call(c.base, 'POST', '/api/v1/tasks', {
      token,
      body: { capability: 'pythonExec', mode: 'sync', input: { code, network: 'allowlist' } },
    });
    assert.equal(task.status, 200, task.text);
    assert.equal(task.body.result.output, 'hello /task\n', task.text);
    const session = await call(c.base, 'POST', '/api/v1/tasks', {
      token,
      body: { capability: 'terminalExec', mode: 'sync', input: { command: 'curl -sS http://web.test/s', network: 'allowlist' } },
    });
    assert.equal(session.body.result?.stdout, 'hello /s\n', session.text);
    const bad = await call(c.base, 'POST', '/api/v1/commands/terminal', { token, body: { command: 'true', network: 'yes' } });
    assert.deepEqual([bad.status, bad.body], [400, { error: 'network must be true, false or "allowlist"' }]);
    const badTask = await call(c.base, 'POST', '/api/v1/tasks', {
      token,
      body: { capability: 'pythonExec', mode: 'sync', input: { code: 'print(1)', network: 'all' } },
    });
    assert.equal(badTask.body.status, 'failed', badTask.text);
    assert.equal(badTask.body.error.code, 'invalid_payload');
    assert.match(badTask.body.error.message, /network must be true, false or "allowlist"/);
  });
});
