// SPDX-License-Identifier: Apache-2.0
// When a call ends early (timeout, cancel, client gone) every process it started must be gone,
// checked from outside the box: the host's /proc is scanned for a marker in the command line.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RawServer,
  assertNoProcess,
  findProcesses,
  serverTest,
  sharedServer,
  sleep,
  sleepMarker,
  waitForProcess,
} from './lib.mjs';

const server = sharedServer();

/** Runs call() while watching for needle on the host; returns [result, seen]. */
async function callWatching(needle, call) {
  let seen = false;
  let done = false;
  const watcher = (async () => {
    while (!done && !seen) {
      if (findProcesses(needle).length > 0) seen = true;
      else await sleep(10);
    }
  })();
  let result;
  try {
    result = await call();
  } finally {
    done = true;
    await watcher;
  }
  return [result, seen];
}

describe('timeouts', () => {
  serverTest('terminalExec past timeout_ms is deadline_exceeded and kills everything', { server }, async (srv) => {
    const { session_id } = await srv.sh('echo warm');
    const secs = sleepMarker();
    const [r, seen] = await callWatching(secs, () =>
      srv.call('terminalExec', { command: `sh -c 'sleep ${secs}'; echo never`, session_id, timeout_ms: 500 }),
    );
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.match(r.content[0].text, /deadline_exceeded/);
    assert.ok(seen, 'the command never showed up in the host process table');
    await assertNoProcess(secs, 2000, 'after deadline_exceeded');
    // The session survives its timed-out command.
    const after = await srv.sh('echo alive; pwd', { session_id });
    assert.equal(after.stdout, 'alive\n/workspace\n');
  });

  serverTest('a background child of a timed-out command is killed too', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    const secs = sleepMarker();
    const r = await srv.call('terminalExec', {
      command: `(sleep ${secs} >/dev/null 2>&1 &); sleep ${secs}`,
      session_id,
      timeout_ms: 1000,
    });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.match(r.content[0].text, /deadline_exceeded/);
    await assertNoProcess(secs, 2000, 'the command and its escaped child');
  });

  serverTest('pythonExec past timeout_ms is deadline_exceeded and kills its children', { server }, async (srv) => {
    const secs = sleepMarker();
    const code = [
      'import subprocess, time',
      `subprocess.Popen(["sleep", "${secs}"])`,
      'time.sleep(1000)',
    ].join('\n');
    const [r, seen] = await callWatching(secs, () => srv.call('pythonExec', { code, timeout_ms: 2000 }));
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.match(r.content[0].text, /deadline_exceeded/);
    assert.ok(seen, 'the child process never showed up in the host process table');
    await assertNoProcess(secs, 2000, 'after deadline_exceeded');
    assert.equal((await srv.ok('pythonExec', { code: 'print("next")' })).output, 'next\n');
  });
});

describe('cancellation', () => {
  serverTest('notifications/cancelled kills the command', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    const secs = sleepMarker();
    const ac = new AbortController();
    const call = srv.call('terminalExec', { command: `sleep ${secs}`, session_id }, { signal: ac.signal });
    const running = await waitForProcess(secs, 20_000);
    assert.ok(running.length > 0, 'the command never started');
    await sleep(500);
    ac.abort('test cancels');
    await assert.rejects(call); // the SDK rejects locally and sends notifications/cancelled
    await assertNoProcess(secs, 2000, 'after notifications/cancelled');
    // The server still answers, and the session is free again.
    assert.equal((await srv.ok('echo', { message: 'after cancel' })).message, 'after cancel');
    assert.equal((await srv.sh('echo free', { session_id })).stdout, 'free\n');
  });

  serverTest('cancelling pythonExec kills its processes', { server }, async (srv) => {
    const secs = sleepMarker();
    const ac = new AbortController();
    const code = `import subprocess\nsubprocess.run(["sleep", "${secs}"])`;
    const call = srv.call('pythonExec', { code }, { signal: ac.signal });
    const running = await waitForProcess(secs, 20_000);
    assert.ok(running.length > 0, 'the code never started');
    ac.abort('test cancels');
    await assert.rejects(call);
    await assertNoProcess(secs, 2000, 'after notifications/cancelled');
    assert.equal((await srv.ok('echo', { message: 'x' })).message, 'x');
  });
});

describe('client going away', () => {
  test('stdin EOF: the server exits 0 and leaves no process behind', async () => {
    const raw = new RawServer();
    const secs = sleepMarker();
    try {
      await raw.initialize();
      const r = await raw.request(1, 'tools/call', {
        name: 'terminalExec',
        arguments: { command: `sleep ${secs} >/dev/null 2>&1 &` },
      });
      assert.equal(r.result?.isError ?? false, false, JSON.stringify(r));
      const bg = await waitForProcess(secs, 10_000);
      assert.ok(bg.length > 0, 'the background process never started');
      // A call still in flight must not hold the exit up either.
      raw.send({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'pythonExec', arguments: { code: `import subprocess\nsubprocess.run(["sleep", "${secs}"])` } },
      });
      await sleep(300);
      const t0 = Date.now();
      const exit = await raw.closeStdin(3000);
      assert.ok(exit, `the server was still running 3 s after stdin closed\n${raw.stderr}`);
      assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)} after ${Date.now() - t0} ms\n${raw.stderr}`);
      await assertNoProcess(secs, 2000, 'after the server exited');
      assert.deepEqual(raw.badLines, []);
      await raw.checkStderr();
    } finally {
      await raw.kill();
    }
  });

  test('SIGTERM: every box is stopped, the exit status is 143, no process is left', async () => {
    // The signal thread ends the process with _exit() once the boxes are gone, on purpose without
    // joining the other threads; under ThreadSanitizer that is no leak worth a report. Races
    // between the signal thread and the call threads are still reported. No warm pool: a box that
    // is still starting when the signal comes is not covered here (its bwrap can outlive us).
    const tsan = process.env.TSAN_OPTIONS;
    const env = { ONLYBOXES_WARM_POOL: '0' };
    if (tsan) env.TSAN_OPTIONS = `${tsan}:report_thread_leaks=0`;
    const raw = new RawServer({ env });
    const secs = sleepMarker();
    try {
      await raw.initialize();
      const r = await raw.request(1, 'tools/call', {
        name: 'terminalExec',
        arguments: { command: `sleep ${secs} >/dev/null 2>&1 &` },
      });
      assert.equal(r.result?.isError ?? false, false, JSON.stringify(r));
      assert.ok((await waitForProcess(secs, 10_000)).length > 0, 'the background process never started');
      // And a call in flight on another box when the signal comes.
      raw.send({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'pythonExec', arguments: { code: `import subprocess\nsubprocess.run(["sleep", "${secs}"])` } },
      });
      for (let i = 0; i < 400 && findProcesses(secs).length < 2; i++) await sleep(25);
      assert.ok(findProcesses(secs).length >= 2, 'the pythonExec call never started its sleep');
      raw.child.kill('SIGTERM');
      const exit = await Promise.race([raw.exitPromise, sleep(10_000).then(() => null)]);
      assert.ok(exit, `the server was still running 10 s after SIGTERM\n${raw.stderr}`);
      assert.deepEqual(exit, { code: 143, signal: null }, raw.stderr);
      await assertNoProcess(secs, 2000, 'after SIGTERM');
      await raw.checkStderr();
    } finally {
      await raw.kill();
    }
  });
});
