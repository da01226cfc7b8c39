// SPDX-License-Identifier: Apache-2.0
// Fault: `onlyboxes mcp --stdio` is killed with SIGKILL while a terminal command (`sleep`) and a
// pythonExec busy loop run, on each runtime. Nothing of the first life may outlive the second
// start's cleanup: no process of its boxes in the host's /proc, and with docker no container
// labelled with the dead owner. The second life must serve calls; the time the cleanup took is
// reported.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RawServer,
  SYSTEM_DOCKER_SOCKET,
  containersLabelled,
  describeProcs,
  descendants,
  dockerUnavailable,
  findProcesses,
  marker,
  nsProcesses,
  pidNs,
  procStat,
  sleepMarker,
  startServer,
  survivors,
  waitForProcess,
  waitUntil,
} from './lib.mjs';

/** Bound on how long after the second start the first life may leave anything behind. */
const CLEANUP_BOUND_MS = { bubblewrap: 10_000, docker: 30_000 };

for (const runtime of ['bubblewrap', 'docker']) {
  const skip = runtime === 'docker' ? dockerUnavailable() : null;
  test(`kill -9 of the stdio server mid-command (${runtime}): the next start leaves nothing of the first`, { skip: skip || false }, async (t) => {
    const env = { ONLYBOXES_RUNTIME: runtime, ONLYBOXES_WARM_POOL: '1' };
    const first = new RawServer({ env });
    const firstPid = first.pid;
    let second;
    try {
      await first.initialize();
      const secs = sleepMarker();
      const busy = marker('busy');
      first.send({
        jsonrpc: '2.0',
        id: 'sleep',
        method: 'tools/call',
        params: { name: 'terminalExec', arguments: { command: `sleep ${secs}`, timeout_ms: 600_000 } },
      });
      first.send({
        jsonrpc: '2.0',
        id: 'busy',
        method: 'tools/call',
        // A pooled box's interpreter reads the code from a pipe, so the marker is put in argv:
        // the busy loop is a Python started with it.
        params: {
          name: 'pythonExec',
          arguments: { code: `import os\nos.execvp('python3', ['python3', '-c', 'while True: pass', '${busy}'])\n`, timeout_ms: 600_000 },
        },
      });
      const sleeping = await waitForProcess(secs, 30_000);
      const spinning = await waitForProcess(busy, 30_000);
      assert.ok(sleeping.length > 0, 'the sleep never started');
      assert.ok(spinning.length > 0, 'the python loop never started');

      // Everything of the first life's boxes: their pid namespaces' processes, and with
      // bubblewrap the server's whole process tree.
      const namespaces = [...new Set([...sleeping, ...spinning].map((p) => pidNs(p.pid)).filter(Boolean))];
      const boxProcs = namespaces.flatMap((ns) => nsProcesses(ns)).map((p) => procStat(p.pid)).filter(Boolean);
      if (runtime === 'bubblewrap') boxProcs.push(...descendants(firstPid));
      assert.ok(boxProcs.length >= 2, 'no box process found before the kill');
      const managed = ['onlyboxes.managed=true', `onlyboxes.owner-pid=${firstPid}`];
      if (runtime === 'docker') {
        const before = await containersLabelled(SYSTEM_DOCKER_SOCKET, managed);
        assert.ok(before.length >= 2, `expected the session's and pythonExec's containers, found ${before.length}`);
        t.diagnostic(`first life: ${before.length} containers, ${boxProcs.length} box processes`);
      } else {
        t.diagnostic(`first life: ${boxProcs.length} processes under the server`);
      }

      process.kill(firstPid, 'SIGKILL');
      const tKill = Date.now();
      await first.exitPromise;
      if (runtime === 'docker') {
        // A killed owner cannot remove its containers: the next start's cleanup must.
        const orphans = await containersLabelled(SYSTEM_DOCKER_SOCKET, managed);
        t.diagnostic(`after the kill, before the second start: ${orphans.length} containers of the first life`);
      }

      const t0 = Date.now();
      second = await startServer({ env });
      let left = [];
      let containers = [];
      const clean = await waitUntil(async () => {
        left = survivors(boxProcs);
        containers = runtime === 'docker' ? await containersLabelled(SYSTEM_DOCKER_SOCKET, managed) : [];
        return left.length === 0 && containers.length === 0;
      }, CLEANUP_BOUND_MS[runtime]);
      const took = Date.now() - t0;
      assert.ok(
        clean,
        `${CLEANUP_BOUND_MS[runtime]} ms after the second start, the first life left ` +
          `processes [${describeProcs(left)}] and containers [${containers.map((c) => `${c.Names?.[0]} ${c.State}`).join(', ')}]`,
      );
      assert.deepEqual(findProcesses(secs), [], 'the sleep of the first life still runs');
      assert.deepEqual(findProcesses(busy), [], 'the python loop of the first life still runs');
      t.diagnostic(`cleanup of the first life done ${took} ms after the second start (${Date.now() - tKill} ms after the kill)`);

      // The second life serves: a terminal session and a fresh Python box.
      const r = await second.sh('echo second life');
      assert.equal(r.stdout, 'second life\n');
      const py = await second.ok('pythonExec', { code: 'print(6 * 7)' });
      assert.equal(py.output, '42\n');
    } finally {
      await first.kill();
      await second?.close();
    }
  });
}
