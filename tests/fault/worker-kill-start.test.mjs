// SPDX-License-Identifier: Apache-2.0
// Fault: a remote `onlyboxes worker` (bubblewrap, a warm pool of 4) is killed with SIGKILL while
// its boxes start (the OOM killer, `kill -9`, a host that kills a unit), at 80 moments from 0 to
// 20 ms after it made its first box's directory (bwrap starts right after), each life on the
// same state directory, as a service manager restarts it.
// Then it runs once more, cleans up after its previous lives and stops. Nothing any life started
// may still run: a process the worker starts inherits its stderr, so a process that still holds
// one of the killed lives' stderr is one of theirs.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, watch } from 'node:fs';
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
    // The worker makes a box's directory, then starts its bwrap: the moments are counted from the
    // first new directory (inotify), so that they fall while boxes start however busy the host.
    const boxes = path.join(env.XDG_RUNTIME_DIR, 'onlyboxes', 'boxes');
    mkdirSync(boxes, { recursive: true, mode: 0o700 });
    for (let i = 0; i < TRIES; i++) {
      const at = (i * 20) / TRIES;
      const before = new Set(readdirSync(boxes));
      const watcher = watch(boxes);
      const started = new Promise((resolve) =>
        watcher.on('change', (_, name) => {
          if (name && !before.has(name) && existsSync(path.join(boxes, name))) resolve(true);
        }),
      );
      const w = new WorkerProcess(env).start();
      links.set(readlinkSync(`/proc/${w.proc.pid}/fd/2`), `${at} ms after a box's directory`);
      let timer;
      const seen = await Promise.race([started, w.exited.then(() => false), new Promise((resolve) => (timer = setTimeout(resolve, 10_000, false)))]);
      clearTimeout(timer);
      watcher.close();
      assert.ok(seen, `no box started within 10 s\n${w.stderr}`);
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
    t.diagnostic(`${TRIES} kills while boxes start, ${left.length} process(es) left: ${left.join(', ')}`);
    assert.deepEqual(left, [], 'processes the killed workers started still run after the worker ran again');
  } finally {
    if (last && !last.exit) await last.stop();
    await con.stop();
  }
});
