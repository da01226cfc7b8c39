// SPDX-License-Identifier: Apache-2.0
// Fault: a remote `onlyboxes worker` (bubblewrap) is killed with SIGKILL while it runs a long
// terminal command for a console, both as a task and as a REST terminal command. The console must
// fail both calls with worker_lost, naming the worker, long before the timeout they asked for; no
// process of the worker's boxes may be left on the host (none of the worker's descendants, nothing
// in its boxes' pid namespaces); the worker started again with the same
// credentials connects, serves, and has removed its first life's box directories.

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  WorkerProcess,
  bearer,
  boxSnapshot,
  boxesLeft,
  commandExists,
  consoleEnv,
  findProcesses,
  sleepMarker,
  remoteWorkerEnv,
  startRemoteWorker,
  tokenFor,
  waitForProcess,
  waitTaskEnded,
  waitWorkerStatus,
} from './lib.mjs';

const TIMEOUT_MS = 120_000; // what the calls ask for; they must end well before it
const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-worker-kill-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const boxDirs = (stateDir) => {
  try {
    return readdirSync(path.join(stateDir, 'onlyboxes', 'boxes'));
  } catch {
    return [];
  }
};

test('kill -9 of a remote worker mid-call: worker_lost at once, no box process left, the worker comes back', { skip: commandExists('bwrap') ? false : 'no bubblewrap' }, async (t) => {
  const con = await new Console(consoleEnv(path.join(dir, 'console.db'))).start();
  const wenv = remoteWorkerEnv(dir);
  const stateDir = wenv.XDG_RUNTIME_DIR;
  let worker, again;
  const describe = () => `--- console stderr ---\n${con.stderr.slice(-3000)}\n--- worker stderr ---\n${worker?.worker.stderr.slice(-3000)}`;
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    worker = await startRemoteWorker(con.base, A.cookie, wenv);
    const { nodeId } = worker;

    // A session that lives on the worker, to ask about after it is back.
    const made = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'cd /tmp', session_id: 'kept', create_if_missing: true });
    assert.equal(made.status, 200, made.text);

    // Two long commands: an async task and a sync REST terminal command.
    const taskSecs = sleepMarker();
    const task = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, {
      capability: 'terminalExec',
      input: { command: `sleep ${taskSecs}` },
      mode: 'async',
      timeout_ms: TIMEOUT_MS,
    });
    assert.equal(task.status, 202, task.text);
    const cmdSecs = sleepMarker();
    const cmdStarted = Date.now();
    const cmd = bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: `sleep ${cmdSecs}`, timeout_ms: TIMEOUT_MS }).catch(
      (e) => ({ status: 0, text: String(e) }),
    );
    assert.ok((await waitForProcess(taskSecs, 30_000)).length > 0, `the task's command never started\n${describe()}`);
    assert.ok((await waitForProcess(cmdSecs, 30_000)).length > 0, `the terminal command never started\n${describe()}`);
    const boxes = boxSnapshot(worker.worker.proc.pid);
    for (const secs of [taskSecs, cmdSecs])
      assert.ok(boxes.procs.some((p) => findProcesses(secs).some((f) => f.pid === p.pid)), `sleep ${secs} runs under the worker`);
    assert.ok(boxes.namespaces.length > 0, 'the worker\'s boxes have pid namespaces of their own');
    const firstBoxes = boxDirs(stateDir);
    assert.ok(firstBoxes.length > 0, 'the worker has box directories');

    worker.worker.proc.kill('SIGKILL');
    await worker.worker.exited;

    // Both calls fail with worker_lost, naming the worker, before the timeout they asked for.
    const r = await cmd;
    assert.equal(r.status, 502, r.text);
    assert.match(r.body.error, new RegExp(`^worker ${nodeId} went away while it ran the call`), r.text);
    assert.ok(Date.now() - cmdStarted < TIMEOUT_MS, 'the terminal command ended before its timeout_ms');
    const snap = await waitTaskEnded(con.base, A.token, task.body.task_id, TIMEOUT_MS);
    assert.equal(snap.status, 'failed', JSON.stringify(snap));
    assert.equal(snap.error.code, 'worker_lost', JSON.stringify(snap));
    assert.ok(snap.error.message.includes(nodeId), `the message names the worker: ${snap.error.message}`);
    assert.ok(Date.parse(snap.completed_at) < Date.parse(snap.deadline_at), `ended before its deadline: ${JSON.stringify(snap)}`);
    t.diagnostic(`task ended ${Date.parse(snap.completed_at) - Date.parse(snap.created_at)} ms after it was made (timeout ${TIMEOUT_MS} ms)`);

    // No process of the worker's boxes is left: they go as their pipes to the worker close.
    assert.equal(await boxesLeft(boxes), '', 'processes of the killed worker\'s boxes still run');
    assert.deepEqual([...findProcesses(taskSecs), ...findProcesses(cmdSecs)], []);

    // The console shows it offline; the same credentials connect again and serve.
    await waitWorkerStatus(con.base, A.cookie, nodeId, 'offline', { describe });
    again = new WorkerProcess(worker.env).start();
    await waitWorkerStatus(con.base, A.cookie, nodeId, 'online', { describe: () => `${describe()}\n--- second worker stderr ---\n${again.stderr}` });
    const echo = await bearer(con.base, 'POST', '/api/v1/commands/echo', A.token, { message: 'back' });
    assert.deepEqual([echo.status, echo.body], [200, { message: 'back' }], echo.text);
    const fresh = await bearer(con.base, 'POST', '/api/v1/tasks', A.token, { capability: 'terminalExec', input: { command: 'echo again' }, mode: 'sync' });
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(fresh.body.result.stdout, 'again\n');
    // The session died with the first life: a clear session_not_found, not a hang or a new one.
    const old = await bearer(con.base, 'POST', '/api/v1/commands/terminal', A.token, { command: 'pwd', session_id: 'kept' });
    assert.equal(old.status, 404, old.text);
    assert.match(old.body.error, /session_not_found|not found/, old.text);
    t.diagnostic(`the first life's session: ${old.status} ${old.text}`);
    // What the first life left in the state directory is removed by the second.
    const stale = boxDirs(stateDir).filter((b) => firstBoxes.includes(b));
    assert.deepEqual(stale, [], 'box directories of the killed worker are left');
  } finally {
    if (worker) await worker.worker.stop();
    if (again) await again.stop();
    await con.stop();
  }
});
