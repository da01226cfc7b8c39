// SPDX-License-Identifier: Apache-2.0
// Fault: `onlyboxes console --with-worker` is killed with SIGKILL while an async task runs a long
// command. Restarted on the same database, the console must say what happened to the task
// (failed, console_restarted), keep every account, token and finished task, and leave no process
// of the first life's boxes on the host.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  assertNsEmpty,
  bearer,
  call,
  consoleEnv,
  describeProcs,
  descendants,
  findProcesses,
  killConsole,
  pidNs,
  sleepMarker,
  survivors,
  tokenFor,
  waitForProcess,
  waitUntil,
} from './lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-console-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('kill -9 of the console while a task runs: the task ends console_restarted, nothing stored is lost', async (t) => {
  const env = consoleEnv(path.join(dir, 'console.db'));
  let con = await new Console(env, ['--with-worker']).start();
  let con2;
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: A.cookie, body: { username: 'carol', password: 'carol-pw' } });
    assert.equal(reg.status, 201, reg.text);
    const C = await tokenFor(con.base, 'carol', 'carol-pw');

    // Finished tasks of both accounts, read back after the restart.
    const done = [];
    for (const [who, command] of [[A, 'echo kept-a'], [C, 'echo kept-c']]) {
      const r = await bearer(con.base, 'POST', '/api/v1/tasks', who.token, { capability: 'terminalExec', input: { command }, mode: 'sync' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.status, 'succeeded');
      done.push({ who, snap: r.body });
    }

    const secs = sleepMarker();
    const long = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, {
      capability: 'terminalExec',
      input: { command: `sleep ${secs}` },
      mode: 'async',
      timeout_ms: 300_000,
    });
    assert.equal(long.status, 202, long.text);
    const taskId = long.body.task_id;
    const procs = await waitForProcess(secs, 30_000);
    assert.ok(procs.length > 0, 'the long command never started');
    const ns = pidNs(procs[0].pid);
    const tree = descendants(con.proc.pid);
    const running = await bearer(con.base, 'GET', `/api/v1/tasks/${taskId}`, A.token);
    assert.equal(running.body.status, 'running', running.text);

    await killConsole(con);
    con = null;

    con2 = await new Console(env, ['--with-worker']).start();
    const t0 = Date.now();

    // The interrupted task says so.
    const snap = await bearer(con2.base, 'GET', `/api/v1/tasks/${taskId}`, A.token);
    assert.equal(snap.status, 200, snap.text);
    assert.equal(snap.body.status, 'failed', snap.text);
    assert.deepEqual(snap.body.error, { code: 'console_restarted', message: 'task interrupted by console restart' });
    assert.ok(snap.body.completed_at, 'an ended task has completed_at');

    // Accounts, tokens (old values still valid, listed by name) and finished tasks are intact.
    for (const { who, snap: before } of done) {
      const r = await bearer(con2.base, 'GET', `/api/v1/tasks/${before.task_id}`, who.token);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body, before);
    }
    const accounts = await call(con2.base, 'GET', '/api/v1/console/accounts', { cookie: A.cookie });
    assert.equal(accounts.status, 200, accounts.text);
    assert.deepEqual(accounts.body.items.map((a) => a.username).sort(), [ADMIN, 'carol'].sort());
    for (const who of [A, C]) {
      const list = await call(con2.base, 'GET', '/api/v1/console/tokens', { cookie: who.cookie });
      assert.equal(list.status, 200, list.text);
      assert.ok(list.body.items.some((x) => x.name === who.tokenName), `token ${who.tokenName} is gone: ${list.text}`);
    }

    // No process of the first life's boxes is left.
    await assertNsEmpty([ns], 'after the console was killed and restarted');
    const left = await waitUntil(() => survivors(tree).length === 0, 10_000);
    assert.ok(left, `processes of the first life still run: ${describeProcs(survivors(tree))}`);
    assert.deepEqual(findProcesses(secs), []);
    t.diagnostic(`restart answered and the first life's boxes were gone ${Date.now() - t0} ms after the restart`);

    // The restarted console serves new work.
    const fresh = await bearer(con2.base, 'POST', '/api/v1/tasks', C.token, { capability: 'terminalExec', input: { command: 'echo again' }, mode: 'sync' });
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(fresh.body.result.stdout, 'again\n');
  } finally {
    if (con) await killConsole(con);
    if (con2) await con2.stop();
  }
});
