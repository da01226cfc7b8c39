// SPDX-License-Identifier: Apache-2.0
// Fault: `onlyboxes console` is killed with SIGKILL while two remote `onlyboxes worker`s are
// connected, one of them running a task, and terminal sessions live on both. Restarted on the same
// database and gRPC address, the console must see both workers come back by themselves (their
// backoff), say what happened to the task (failed, console_restarted), and route every session
// made before the kill to the worker that has it, with its state: sticky routes and session
// recovery across a console restart. The interrupted command's process is gone.

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
  commandExists,
  consoleEnv,
  killConsole,
  sleepMarker,
  remoteWorkerEnv,
  startRemoteWorker,
  tokenFor,
  waitForNoProcess,
  waitForProcess,
  waitUntil,
  waitWorkerStatus,
} from './lib.mjs';

const SESSIONS = 4;
const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-console-kill-workers-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('kill -9 of the console with two workers attached: they reconnect, the task ends console_restarted, sessions answer on their worker', { skip: commandExists('bwrap') ? false : 'no bubblewrap' }, async (t) => {
  const env = consoleEnv(path.join(dir, 'console.db'));
  let con = await new Console(env).start();
  let con2;
  const workers = [];
  const describe = () =>
    [con2 ?? con, ...workers.map((w) => w.worker)].map((p, i) => `--- ${i ? `worker ${i}` : 'console'} stderr ---\n${p?.stderr.slice(-3000)}`).join('\n');
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    for (let i = 0; i < 2; i++) workers.push(await startRemoteWorker(con.base, A.cookie, remoteWorkerEnv(dir)));

    // Sessions with state of their own, spread over both workers.
    for (let i = 0; i < SESSIONS; i++) {
      const r = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, {
        command: `mkdir -p /tmp/s${i} && cd /tmp/s${i} && export MARK=m${i}`,
        session_id: `s${i}`,
        create_if_missing: true,
        lease_ttl_sec: 600,
      });
      assert.equal(r.status, 200, r.text);
    }
    const boxesPerWorker = workers.map((w) => boxSnapshot(w.worker.proc.pid).namespaces.length);
    assert.ok(boxesPerWorker.every((n) => n > 0), `sessions on both workers: boxes per worker ${boxesPerWorker}`);

    const secs = sleepMarker();
    const long = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, {
      capability: 'terminalExec',
      input: { command: `sleep ${secs}` },
      mode: 'async',
      timeout_ms: 300_000,
    });
    assert.equal(long.status, 202, long.text);
    assert.ok((await waitForProcess(secs, 30_000)).length > 0, `the long command never started\n${describe()}`);

    const grpcPort = con.grpcPort;
    const logged = workers.map((w) => w.worker.stderr.length);
    await killConsole(con);
    con = null;
    // The workers notice, and try again in vain while it is down: twice each before it is back.
    const attempts = (i) => (workers[i].worker.stderr.slice(logged[i]).match(/refused or did not answer|cannot send the hello/g) ?? []).length;
    assert.ok(await waitUntil(() => workers.every((w, i) => attempts(i) >= 2), 30_000), `no attempts to reconnect\n${describe()}`);
    con2 = await new Console({ ...env, CONSOLE_GRPC_ADDR: `127.0.0.1:${grpcPort}` }).start();
    const t0 = Date.now();

    // The interrupted task says so.
    const snap = await bearer(con2.base, 'GET', `/api/v1/tasks/${long.body.task_id}`, A.token);
    assert.equal(snap.status, 200, snap.text);
    assert.equal(snap.body.status, 'failed', snap.text);
    assert.deepEqual(snap.body.error, { code: 'console_restarted', message: 'task interrupted by console restart' });

    // Both workers come back by themselves; neither process restarted.
    for (const w of workers) await waitWorkerStatus(con2.base, A.cookie, w.nodeId, 'online', { describe });
    t.diagnostic(`both workers online again ${Date.now() - t0} ms after the restart`);
    for (const w of workers) {
      assert.equal(w.worker.exit, undefined, 'the worker process kept running');
      assert.equal(w.worker.stderr.match(/connected to the console/g)?.length, 2, `one reconnect:\n${w.worker.stderr}`);
    }

    // Every session answers on its worker, with its state.
    for (let i = 0; i < SESSIONS; i++) {
      const r = await bearer(con2.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'pwd; echo $MARK', session_id: `s${i}` });
      assert.equal(r.status, 200, `session s${i}: ${r.text}\n${describe()}`);
      assert.equal(r.body.created, false, r.text);
      assert.equal(r.body.stdout, `/tmp/s${i}\nm${i}\n`, r.text);
    }

    // The interrupted command was stopped when its worker's stream ended.
    assert.deepEqual(await waitForNoProcess(secs, 10_000), []);

    // New work runs on both workers.
    const fresh = await bearer(con2.base, 'POST', '/api/v1/tasks', A.token, { capability: 'pythonExec', input: { code: 'print(6*7)' }, mode: 'sync' });
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(fresh.body.result.output, '42\n');
  } finally {
    if (con) await killConsole(con);
    for (const w of workers) await w.worker.stop();
    if (con2) await con2.stop();
  }
});
