// SPDX-License-Identifier: Apache-2.0
// Fault: `onlyboxes mcp --stdio` gets SIGTERM while its warm pool's boxes are starting, at 40
// moments 1 ms apart from 5 ms after launch, with bubblewrap. Nothing may keep running: no
// process that holds the server's stderr (bwrap and the box's PID 1 inherit it) is left.
// The hazard: bwrap reports its child's pid on a pipe before it lets the child go on; a server
// gone by then makes that write kill bwrap, and the child would wait forever.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, commandExists, fdHolders, sleep, waitUntil } from './lib.mjs';

const TRIES = 40;

test('SIGTERM while boxes start leaves no process behind (bubblewrap)', { skip: commandExists('bwrap') ? false : 'no bubblewrap', timeout: 240_000 }, async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'obx-sigterm-'));
  const left = [];
  try {
    for (let i = 0; i < TRIES; i++) {
      const dir = path.join(root, String(i));
      const env = { ...process.env, XDG_RUNTIME_DIR: dir, ONLYBOXES_RUNTIME: 'bubblewrap', ONLYBOXES_WARM_POOL: '4' };
      mkdirSync(dir);
      const srv = spawn(BIN, ['mcp', '--stdio'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
      srv.stderr.resume();
      const stderr = new Set([readlinkSync(`/proc/${srv.pid}/fd/2`)]);
      const exited = new Promise((resolve) => srv.on('exit', resolve));
      await sleep(5 + i);
      srv.kill('SIGTERM');
      await exited;
      srv.stdin.destroy();
      // The agents of boxes that did start exit on their closed pipes within moments.
      const gone = await waitUntil(() => fdHolders(stderr).length === 0, 3000);
      const rest = gone ? [] : fdHolders(stderr);
      srv.stderr.destroy();
      if (rest.length) left.push(`${5 + i} ms: ${rest.length} process(es) ${rest.join(' ')}`);
      for (const pid of rest) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    t.diagnostic(`${TRIES} SIGTERMs during start-up, ${left.length} with processes left`);
    assert.deepEqual(left, [], 'processes outlived the server');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
