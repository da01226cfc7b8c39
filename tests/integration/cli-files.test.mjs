// SPDX-License-Identifier: Apache-2.0
// `onlyboxes cp` and `onlyboxes sessions` against a console, as a user types them: files and
// directory trees into and out of a session (byte for byte, into a directory named with a
// trailing slash), a progress bar on a terminal, the sessions listed, renewed and removed, and
// the mistakes: a directory without -r, both or neither side in a session, no console and no
// local onlyboxes mcp.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BIN, describeRun, runCli } from './lib.mjs';
import { consoleEnv, startDeployment } from './remote-lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-cli-files-'));
const noMcp = mkdtempSync(path.join(tmpdir(), 'obx-cli-files-run-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(noMcp, { recursive: true, force: true });
});

describe('onlyboxes cp and sessions on a console', () => {
  let d, env;
  const cli = (args, extra = {}) => runCli(args, { env: { ...env, ...extra } });
  before(async () => {
    d = await startDeployment(consoleEnv(path.join(dir, 'con'), { ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap' }), ['--with-worker']);
    env = { ONLYBOXES_CONSOLE: d.con.base, ONLYBOXES_TOKEN: d.token };
  });
  after(async () => {
    await d?.con.stop();
  });

  test('a file and a tree go in, and come back the same', () => {
    const src = path.join(dir, 'src');
    mkdirSync(path.join(src, 'sub', 'deeper'), { recursive: true });
    writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
    writeFileSync(path.join(src, 'sub', 'b.bin'), randomBytes(700_000));
    writeFileSync(path.join(src, 'sub', 'deeper', 'c'), '');
    let r = cli(['exec', '--session', 'cp', '--', 'mkdir', '-p', 'work']);
    assert.equal(r.status, 0, describeRun(r));
    r = cli(['cp', path.join(src, 'a.txt'), 'cp:work/']);
    assert.equal(r.status, 0, describeRun(r));
    r = cli(['cp', '-r', src, 'cp:work/tree']);
    assert.equal(r.status, 0, describeRun(r));
    r = cli(['exec', '--session', 'cp', '--', 'sh', '-c', 'cd work && cat a.txt && find tree | sort']);
    assert.equal(r.stdout, 'alpha\ntree\ntree/a.txt\ntree/sub\ntree/sub/b.bin\ntree/sub/deeper\ntree/sub/deeper/c\n');
    const back = path.join(dir, 'back');
    r = cli(['cp', '-r', 'cp:work/tree', back]);
    assert.equal(r.status, 0, describeRun(r));
    assert.ok(readFileSync(path.join(back, 'sub', 'b.bin')).equals(readFileSync(path.join(src, 'sub', 'b.bin'))));
    assert.equal(readFileSync(path.join(back, 'sub', 'deeper', 'c'), 'utf8'), '');
    // Into an existing local directory: under its own name. No temporary file is left behind.
    r = cli(['cp', 'cp:/workspace/work/a.txt', dir]);
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'alpha\n');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.onlyboxes-cp-')), []);
  });

  test('mistakes are named, and nothing is half-copied', () => {
    let r = cli(['cp', 'cp:work/tree', path.join(dir, 'nowhere')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cp:work\/tree is a directory \(use -r to copy it\)/);
    r = cli(['cp', path.join(dir, 'src'), 'cp:x']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is a directory \(use -r to copy it\)/);
    r = cli(['cp', 'cp:nope.txt', path.join(dir, 'nope.txt')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cp:nope.txt: file not found: nope.txt/);
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('nope') || f.startsWith('.onlyboxes-cp-')), []);
    r = cli(['cp', path.join(dir, 'src', 'a.txt'), 'cp:/usr/a.txt']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /read-only file system: \/usr\/a.txt/);
    r = cli(['cp', path.join(dir, 'src', 'a.txt'), 'gone:a.txt']);
    assert.match(r.stderr, /session not found/);
    r = cli(['cp', 'cp:a', 'cp:b']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /one of SOURCE and DEST must be SESSION:PATH and the other a local path/);
    r = cli(['cp', './a', './b']);
    assert.equal(r.status, 2);
    r = cli(['cp', 'only-one']);
    assert.equal(r.status, 2);
    // Without a console: the local onlyboxes mcp processes, of which none runs with this runtime
    // directory (cli-local-files.test.mjs has them).
    r = cli(['cp', 'a', 'cp:b'], { ONLYBOXES_CONSOLE: '', XDG_RUNTIME_DIR: noMcp });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /onlyboxes cp: no onlyboxes mcp is running on this computer .* --console URL/);
    r = cli(['cp', 'a', 'cp:b'], { ONLYBOXES_TOKEN: 'wrong' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /refused the token/);
    assert.ok(!r.stderr.includes(d.token));
  });

  test('a progress bar on a terminal', () => {
    const big = path.join(dir, 'big.bin');
    writeFileSync(big, randomBytes(12 * 1024 * 1024));
    // script(1) gives the command a terminal.
    const r = spawnSync('script', ['-qec', `${BIN} cp ${big} cp:big.bin`, '/dev/null'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /big\.bin +\[#+ *\] 100% 12\.0 MiB \/ 12\.0 MiB +[\d.]+ [KMG]i?B\/s/);
    // Not on a pipe.
    const p = cli(['cp', big, 'cp:big2.bin']);
    assert.equal(p.stderr, '');
  });

  test('sessions: ls, renew, rm', () => {
    let r = cli(['sessions']);
    assert.equal(r.status, 0, describeRun(r));
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^SESSION +WORKER +STATUS +CREATED +LAST USED +LEASE EXPIRES +BUSY$/);
    assert.ok(lines.some((l) => /^cp +embedded +active +\d{4}-/.test(l)), r.stdout);
    r = cli(['sessions', 'ls', '--json']);
    assert.ok(JSON.parse(r.stdout).items.some((s) => s.session_id === 'cp'));
    r = cli(['sessions', 'renew', 'cp', '--lease', '900']);
    assert.equal(r.status, 0, describeRun(r));
    assert.match(r.stdout, /^session cp: its lease runs until \d{4}-/);
    r = cli(['sessions', 'renew', 'cp', '--lease', '5']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /lease_ttl_sec must be between 60 and 1800/);
    r = cli(['sessions', 'rm', 'cp', 'nope']);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^removed session cp$/m);
    assert.match(r.stderr, /session nope: session not found/);
    r = cli(['sessions', 'ls', '--json']);
    assert.ok(!JSON.parse(r.stdout).items.some((s) => s.session_id === 'cp'));
    r = cli(['sessions', 'frobnicate']);
    assert.equal(r.status, 2);
    r = cli(['sessions'], { ONLYBOXES_CONSOLE: '', XDG_RUNTIME_DIR: noMcp });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /onlyboxes sessions: no onlyboxes mcp is running on this computer/);
    r = cli(['sessions', 'ls', '--pid', '1']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--pid chooses a local onlyboxes mcp; it does not go with a console/);
  });
});
