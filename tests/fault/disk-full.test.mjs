// SPDX-License-Identifier: Apache-2.0
// Fault: the console's disk fills up. The database lives on a 4 MiB tmpfs mounted for the test;
// a file takes the rest of it. Writes (tokens, tasks, accounts, sign-in) must get a clear JSON
// error that says the storage is full, reads must keep working, a task that ends meanwhile must
// not stay `running` once space is back, and once space is freed writes work again and everything
// stored before is still there after a restart.

import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  TERMINAL_STATUSES,
  bearer,
  call,
  consoleEnv,
  sleep,
  tokenFor,
  waitTaskEnded,
} from './lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-disk-'));
const mnt = path.join(dir, 'mnt');
const mounted = (() => {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  spawnSync('mkdir', ['-p', mnt]);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mnt], { encoding: 'utf8' });
  return r.status === 0 ? null : `cannot mount a tmpfs: ${r.stderr.trim()}`;
})();

after(() => {
  if (!mounted) spawnSync('umount', [mnt]);
  rmSync(dir, { recursive: true, force: true });
});

/** Writes zeros to file until the file system is full; returns the bytes written. */
function fill(file) {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  let total = 0;
  try {
    for (;;) {
      try {
        total += writeSync(fd, chunk);
      } catch (e) {
        if (e.code !== 'ENOSPC') throw e;
        // Fill the last partial chunk too.
        for (let n = chunk.length / 2; n >= 512; n /= 2) {
          try {
            total += writeSync(fd, chunk, 0, n);
          } catch {}
        }
        return total;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** A write refused for lack of space: a 5xx JSON error naming the storage, answered promptly. */
function assertStorageError(r, what) {
  assert.ok(r.status >= 500 && r.status < 600, `${what} on a full disk: HTTP ${r.status} ${r.text}`);
  assert.ok(r.body && typeof r.body.error === 'string', `${what}: the error is not JSON: ${r.text}`);
  assert.match(r.body.error, /disk|storage|space/i, `${what}: the error does not say the disk is full: ${r.text}`);
}

test('the console disk fills up: clear errors, reads still work, nothing is lost', { skip: mounted || false }, async (t) => {
  const env = consoleEnv(path.join(mnt, 'console.db'));
  let con = await new Console(env, ['--with-worker']).start();
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    const before = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input: { command: 'echo stored' }, mode: 'sync' });
    assert.equal(before.status, 200, before.text);
    // A task that is still running when the disk fills, and ends while it is full.
    const running = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input: { command: 'sleep 3; echo late' }, mode: 'async' });
    assert.equal(running.status, 202, running.text);

    const filler = path.join(mnt, 'filler');
    const filled = fill(filler);
    t.diagnostic(`filled the tmpfs with ${filled} bytes`);

    // Writes: a clear error, within the request's normal time.
    const t0 = Date.now();
    const tok = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie: A.cookie, body: { name: 'on-a-full-disk' } });
    assertStorageError(tok, 'creating a token');
    const task = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input: { command: 'echo never' }, mode: 'sync' });
    assertStorageError(task, 'submitting a task');
    const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: A.cookie, body: { username: 'dave', password: 'dave-pw' } });
    assertStorageError(reg, 'registering an account');
    const signIn = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: ADMIN, password: ADMIN_PW } });
    assertStorageError(signIn, 'signing in (a new dashboard session)');
    const worker = await call(con.base, 'POST', '/api/v1/workers', { cookie: A.cookie, body: { type: 'normal' } });
    assertStorageError(worker, 'provisioning a worker');
    t.diagnostic(`five refused writes answered in ${Date.now() - t0} ms; e.g. ${tok.status} ${tok.text}`);

    // Reads keep working.
    const got = await bearer(con.base, 'GET', `/api/v1/tasks/${before.body.task_id}`, A.token);
    assert.equal(got.status, 200, got.text);
    assert.equal(got.body.result.stdout, 'stored\n');
    const list = await call(con.base, 'GET', '/api/v1/console/tokens', { cookie: A.cookie });
    assert.equal(list.status, 200, list.text);
    assert.ok(list.body.items.some((x) => x.name === A.tokenName));
    const echo = await bearer(con.base, 'POST', '/api/v1/commands/echo', A.token, { message: 'up' });
    assert.deepEqual([echo.status, echo.body], [200, { message: 'up' }]);

    // The task that ended while the disk was full must not stay running once space is back.
    await sleep(4000);
    const whileFull = await bearer(con.base, 'GET', `/api/v1/tasks/${running.body.task_id}`, A.token);
    assert.equal(whileFull.status, 200, whileFull.text);
    t.diagnostic(`the task that ended while the disk was full reads ${whileFull.body.status} until space is freed`);
    rmSync(filler);
    const late = await waitTaskEnded(con.base, A.token, running.body.task_id, 20_000);
    assert.ok(TERMINAL_STATUSES.includes(late.status), `the task that ended on a full disk is still ${late.status}`);
    t.diagnostic(`the task that ended on a full disk reads ${late.status} ${JSON.stringify(late.error ?? late.result)}`);

    // Writes work again.
    const tok2 = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie: A.cookie, body: { name: 'after-the-disk-was-freed' } });
    assert.equal(tok2.status, 201, tok2.text);
    const task2 = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input: { command: 'echo again' }, mode: 'sync' });
    assert.equal(task2.status, 200, task2.text);

    // Everything is still there after a restart.
    await con.stop();
    con = await new Console(env, ['--with-worker']).start();
    for (const [id, stdout] of [[before.body.task_id, 'stored\n'], [task2.body.task_id, 'again\n']]) {
      const r = await bearer(con.base, 'GET', `/api/v1/tasks/${id}`, A.token);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.result.stdout, stdout);
    }
    const names = (await call(con.base, 'GET', '/api/v1/console/tokens', { cookie: A.cookie })).body.items.map((x) => x.name);
    assert.ok(names.includes(A.tokenName) && names.includes('after-the-disk-was-freed'), `tokens after the restart: ${names}`);
    const r = await bearer(con.base, 'POST', '/api/v1/commands/terminal', tok2.body.token, { command: 'echo new-token-works' });
    assert.equal(r.status, 200, r.text);
  } finally {
    await con.stop();
  }
});
