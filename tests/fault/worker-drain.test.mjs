// SPDX-License-Identifier: Apache-2.0
// Fault: a remote `onlyboxes worker` gets SIGTERM (a deploy, a host shutdown) while a command
// runs that takes longer than the console's heartbeat window (CONSOLE_HEARTBEAT_INTERVAL_SEC=1:
// a worker silent for 3 s is dropped). The worker drains: the running command finishes and its
// result reaches the caller, calls dispatched meanwhile are refused, then it exits 0 and no
// process of its boxes is left. With a second worker online (a rolling restart), calls made
// during the drain must not fail at all: they belong on the worker that is not stopping.

import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  bearer,
  boxSnapshot,
  boxesLeft,
  commandExists,
  consoleEnv,
  findProcesses,
  remoteWorkerEnv,
  startRemoteWorker,
  tokenFor,
  waitForProcess,
  waitUntil,
  waitWorkerStatus,
} from './lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-worker-drain-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('SIGTERM to a worker mid-command: the command finishes and answers, new calls are refused, exit 0, nothing left', { skip: commandExists('bwrap') ? false : 'no bubblewrap' }, async (t) => {
  const con = await new Console(consoleEnv(path.join(dir, 'console.db'), { CONSOLE_HEARTBEAT_INTERVAL_SEC: '1' })).start();
  let w;
  const describe = () => `--- console stderr ---\n${con.stderr.slice(-3000)}\n--- worker stderr ---\n${w?.worker.stderr.slice(-3000)}`;
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    w = await startRemoteWorker(con.base, A.cookie, remoteWorkerEnv(dir));
    // Longer than two heartbeat intervals and a second, far shorter than the drain time (30 s).
    const secs = `6.${String(randomInt(1e9)).padStart(9, '0')}`;
    const started = Date.now();
    const running = bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, {
      command: `sleep ${secs}; echo finished`,
      session_id: 'draining',
      create_if_missing: true,
      timeout_ms: 60_000,
    }).catch((e) => ({ status: 0, text: String(e) }));
    assert.ok((await waitForProcess(secs, 30_000)).length > 0, `the command never started\n${describe()}`);
    const boxes = boxSnapshot(w.worker.proc.pid);
    assert.ok(boxes.namespaces.length > 0, 'the worker runs a box');

    const logged = w.worker.stderr.length;
    w.worker.proc.kill('SIGTERM');
    assert.ok(await waitUntil(() => /draining/.test(w.worker.stderr.slice(logged)), 10_000), `no drain\n${describe()}`);

    // Calls dispatched during the drain are refused, and run nowhere.
    const refused = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'echo late' });
    assert.equal(refused.status, 429, refused.text);
    const echo = await bearer(con.base, 'POST', '/api/v1/commands/echo', A.token, { message: 'late' });
    assert.equal(echo.status, 502, echo.text);
    assert.match(echo.body.error, /the worker is stopping/, echo.text);
    t.diagnostic(`during the drain: terminal ${refused.status} ${refused.text}; echo ${echo.status} ${echo.text}`);

    // The running command finishes and its result reaches the caller.
    const r = await running;
    t.diagnostic(`the running command answered ${r.status} after ${Date.now() - started} ms`);
    assert.equal(r.status, 200, `${r.text}\n${describe()}`);
    assert.equal(r.body.stdout, 'finished\n', r.text);

    // Then the worker exits 0, its boxes gone, and the console lists it offline.
    const exit = await w.worker.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, describe());
    assert.equal(await boxesLeft(boxes), '', 'processes of the drained worker\'s boxes still run');
    assert.deepEqual(findProcesses(secs), []);
    await waitWorkerStatus(con.base, A.cookie, w.nodeId, 'offline', { describe });
  } finally {
    if (w) await w.worker.stop(); // a second SIGTERM: at once
    await con.stop();
  }
});

test('one of two workers drains: calls made meanwhile go to the other one, none fails', { skip: commandExists('bwrap') ? false : 'no bubblewrap' }, async (t) => {
  const con = await new Console(consoleEnv(path.join(dir, 'console2.db'))).start();
  const workers = [];
  const describe = () => [con, ...workers.map((w) => w.worker)].map((p) => p.stderr.slice(-2000)).join('\n---\n');
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    for (let i = 0; i < 2; i++) workers.push(await startRemoteWorker(con.base, A.cookie, remoteWorkerEnv(dir)));
    // Shorter than the heartbeat window (5 s intervals): only the refusals are looked at here.
    const secs = `3.${String(randomInt(1e9)).padStart(9, '0')}`;
    const running = bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: `sleep ${secs}; echo finished`, timeout_ms: 60_000 }).catch(
      (e) => ({ status: 0, text: String(e) }),
    );
    const procs = await waitForProcess(secs, 30_000);
    assert.ok(procs.length > 0, `the command never started\n${describe()}`);
    const draining = workers.find((w) => boxSnapshot(w.worker.proc.pid).procs.some((p) => procs.some((q) => q.pid === p.pid)));
    assert.ok(draining, 'one of the workers runs the command');
    const logged = draining.worker.stderr.length;
    draining.worker.proc.kill('SIGTERM');
    assert.ok(await waitUntil(() => /draining/.test(draining.worker.stderr.slice(logged)), 10_000), `no drain\n${describe()}`);

    // Echo: neither worker runs one, so the console has no load to tell them apart by.
    const failed = [];
    for (let i = 0; i < 10; i++) {
      const echo = await bearer(con.base, 'POST', '/api/v1/commands/echo', A.token, { message: `during ${i}` });
      if (echo.status !== 200) failed.push(`echo: ${echo.status} ${echo.text}`);
    }
    for (let i = 0; i < 10; i++) {
      const term = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: `echo ${i}` });
      if (term.status !== 200) failed.push(`terminal: ${term.status} ${term.text}`);
    }
    t.diagnostic(`${failed.length} of 20 calls made during the drain failed${failed.length ? `, e.g. ${failed[0]}` : ''}`);
    assert.deepEqual(failed, [], 'calls made while one worker drains fail although the other is online');

    const r = await running;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.stdout, 'finished\n');
    assert.deepEqual(await draining.worker.exited, { code: 0, signal: null });
  } finally {
    for (const w of workers) await w.worker.stop();
    await con.stop();
  }
});
