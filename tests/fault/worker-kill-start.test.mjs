// SPDX-License-Identifier: Apache-2.0
// Fault: a remote `onlyboxes worker` (bubblewrap, a warm pool of 4) is killed with SIGKILL while
// its boxes start (the OOM killer, `kill -9`, a host that kills a unit), at 80 moments from 20 to
// 60 ms after launch, each life on the same state directory, as a service manager restarts it.
// Then it runs once more, cleans up after its previous lives and stops. Nothing any life started
// may still run: a process the worker starts inherits its stderr, so a process that still holds
// one of the killed lives' stderr is one of theirs.

import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN,
  ADMIN_PW,
  Console,
  WorkerProcess,
  commandExists,
  consoleEnv,
  fdHolders,
  provisionWorker,
  remoteWorkerEnv,
  sleep,
  tokenFor,
  waitUntil,
  waitWorkerStatus,
} from './lib.mjs';

const TRIES = 80;
const dir = mkdtempSync(path.join(tmpdir(), 'obx-fault-worker-kill-start-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('SIGKILL while a worker\'s boxes start leaves no process behind, once it ran again (bubblewrap)', { skip: commandExists('bwrap') ? false : 'no bubblewrap', timeout: 240_000 }, async (t) => {
  const con = await new Console(consoleEnv(path.join(dir, 'console.db'))).start();
  const links = new Map(); // "socket:[inode]" of each killed life's stderr -> the moment it was killed
  let last;
  try {
    const A = await tokenFor(con.base, ADMIN, ADMIN_PW);
    const { nodeId, env: creds } = await provisionWorker(con.base, A.cookie);
    const env = { ONLYBOXES_RUNTIME: 'bubblewrap', ...creds, ...remoteWorkerEnv(dir), ONLYBOXES_WARM_POOL: '4' };
    for (let i = 0; i < TRIES; i++) {
      const at = 20 + (i * 40) / TRIES;
      const w = new WorkerProcess(env).start();
      links.set(readlinkSync(`/proc/${w.proc.pid}/fd/2`), `${at} ms`);
      await sleep(at);
      w.proc.kill('SIGKILL');
      await w.exited;
    }
    // Its next life cleans up after the killed ones, serves, and stops.
    last = new WorkerProcess(env).start();
    await waitWorkerStatus(con.base, A.cookie, nodeId, 'online', { describe: () => last.stderr });
    assert.deepEqual(await last.stop(), { code: 0, signal: null }, last.stderr);

    const all = new Set(links.keys());
    await waitUntil(() => fdHolders(all).length === 0, 5000);
    const left = [];
    for (const pid of fdHolders(all)) {
      let link = '';
      let what = '';
      try {
        link = readdirSync(`/proc/${pid}/fd`).map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`)).find((l) => all.has(l));
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        what = `${/^Name:\s*(.*)$/m.exec(status)[1]}, pid ${/^NSpid:\s*(.*)$/m.exec(status)[1].split(/\s+/).join(' -> ')} in its namespace, waiting in ${readFileSync(`/proc/${pid}/wchan`, 'utf8')}`;
      } catch {}
      left.push(`${pid} ${what} (killed at ${links.get(link)})`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    t.diagnostic(`${TRIES} kills during start-up, ${left.length} process(es) left: ${left.join(', ')}`);
    assert.deepEqual(left, [], 'processes the killed workers started still run after the worker ran again');
  } finally {
    if (last && !last.exit) await last.stop();
    await con.stop();
  }
});
