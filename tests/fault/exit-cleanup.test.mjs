// SPDX-License-Identifier: Apache-2.0
// Fault: `onlyboxes mcp --stdio` ends the way MCP clients end it (stdin closed, SIGTERM, both,
// SIGINT), at many moments: while its warm pool starts, right after its first answer, and while
// the pool refills after a call. Once the process has exited nothing of its boxes may remain: no
// box directory, no cgroup, no container, and (after the agents saw their pipes close) no process.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, SYSTEM_DOCKER_SOCKET, commandExists, containersLabelled, dockerUnavailable, sleep, waitUntil } from './lib.mjs';

/** Host pids whose command line names dir. */
function namingDir(dir) {
  const found = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`).toString('utf8').includes(dir)) found.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Box cgroups (obx-*) below every onlyboxes cgroup parent of this host. */
function boxCgroups() {
  const found = new Set();
  const roots = ['/sys/fs/cgroup/onlyboxes'];
  try {
    for (const c of readdirSync('/sys/fs/cgroup')) roots.push(`/sys/fs/cgroup/${c}/onlyboxes`);
  } catch {}
  for (const r of roots) {
    try {
      for (const e of readdirSync(r)) if (e.startsWith('obx-')) found.add(`${r}/${e}`);
    } catch {}
  }
  return found;
}

const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'exit-cleanup', version: '1' } },
});
const CALL = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'pythonExec', arguments: { code: 'print(7)' } } });

/** Starts a server, drives it to `stage`, waits `delay` ms, ends it as `how`; resolves when it exited. */
async function endServer(env, stage, delay, how) {
  // Debug logs name every box the server starts ("starting box obx-..."): exactly what to look for.
  const srv = spawn(BIN, ['mcp', '--stdio'], { env: { ...env, ONLYBOXES_LOG_LEVEL: 'debug' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let log = '';
  srv.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => srv.on('exit', resolve));
  let out = '';
  const lines = (n) => waitUntil(() => out.split('\n').length > n, 20_000);
  srv.stdout.on('data', (d) => (out += d));
  if (stage !== 'start') {
    srv.stdin.write(INIT + '\n');
    await lines(1);
    if (stage === 'refill') {
      srv.stdin.write(CALL + '\n');
      await lines(2);
    }
  }
  await sleep(delay);
  if (how === 'eof' || how === 'eof+term') srv.stdin.end();
  if (how === 'eof+term') await sleep(1);
  if (how === 'term' || how === 'eof+term') srv.kill('SIGTERM');
  if (how === 'int') srv.kill('SIGINT');
  const timer = setTimeout(() => srv.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(timer);
  srv.stdin.destroy();
  const boxes = [...log.matchAll(/start(?:ing|ed) box (obx-[0-9a-f]+)/g)].map((m) => m[1]);
  return { code, pid: srv.pid, boxes };
}

const CASES = [];
for (const how of ['term', 'eof+term', 'int', 'eof']) {
  for (const delay of [0, 2, 5, 10, 25]) CASES.push(['answered', delay, how]);
}
for (const delay of [3, 6, 9, 12, 15, 20, 30, 45]) CASES.push(['start', delay, 'term']);
for (const delay of [0, 3, 10]) for (const how of ['term', 'eof+term']) CASES.push(['refill', delay, how]);

for (const runtime of ['bubblewrap', 'docker']) {
  const skip =
    runtime === 'bubblewrap' ? (commandExists('bwrap') ? false : 'no bubblewrap') : dockerUnavailable();
  test(`${runtime}: nothing of its boxes remains after any exit (${CASES.length} exits)`, { skip: skip || false, timeout: 600_000 }, async (t) => {
    const root = mkdtempSync(path.join(tmpdir(), 'obx-exit-'));
    const left = [];
    try {
      for (let i = 0; i < CASES.length; i++) {
        const [stage, delay, how] = CASES[i];
        const what = `${how} ${delay} ms after ${stage === 'start' ? 'launch' : stage === 'refill' ? 'a call' : 'the first answer'}`;
        const dir = path.join(root, String(i));
        mkdirSync(dir);
        const env = { ...process.env, XDG_RUNTIME_DIR: dir, ONLYBOXES_RUNTIME: runtime, ONLYBOXES_WARM_POOL: '3' };
        const { code: exitedWith, pid, boxes: started } = await endServer(env, stage, delay, how);
        const boxes = path.join(dir, 'onlyboxes', 'boxes');
        const dirs = existsSync(boxes) ? readdirSync(boxes) : [];
        if (dirs.length) left.push(`${what}: box directories ${dirs.join(' ')}`);
        const cgroups = [...boxCgroups()].filter((c) => started.some((id) => c.endsWith(`/${id}`)));
        if (cgroups.length) left.push(`${what}: cgroups ${cgroups.join(' ')}`);
        if (runtime === 'docker') {
          const stray = await containersLabelled(SYSTEM_DOCKER_SOCKET, [`onlyboxes.owner-pid=${pid}`]);
          if (stray.length) left.push(`${what}: containers ${stray.map((c) => c.Id.slice(0, 12)).join(' ')}`);
          const socks = path.join(dir, 'onlyboxes', 'docker');
          const files = existsSync(socks) ? readdirSync(socks) : [];
          if (files.length) left.push(`${what}: sockets ${files.join(' ')}`);
        }
        const gone = await waitUntil(() => namingDir(dir + '/').length === 0, 3000);
        if (!gone) left.push(`${what}: processes ${namingDir(dir + '/').join(' ')}`);
        for (const pid of namingDir(dir + '/')) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {}
        }
        for (const c of cgroups) {
          try {
            execFileSync('rmdir', [c]);
          } catch {}
        }
        assert.ok(exitedWith === 0 || exitedWith === 128 + 15 || exitedWith === 128 + 2 || exitedWith === null, `${what}: exit ${exitedWith}`);
      }
      t.diagnostic(`${CASES.length} exits, ${left.length} left something behind`);
      assert.deepEqual(left, [], 'something of the boxes outlived the server');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
}
