// SPDX-License-Identifier: Apache-2.0
// `onlyboxes cp` and `onlyboxes sessions` without a console, as a user of a local agent types
// them beside the MCP client that runs `onlyboxes mcp --stdio`: the sessions that process holds
// are listed with its pid, files and trees go into and out of them byte for byte, a lease is
// renewed and a session removed; two processes with the same session name are told apart with
// --pid; the control socket is private and goes with its process, even one killed with -9.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { describeRun, runCli, sleep, startServer } from './lib.mjs';

const RUNTIME = process.env.ONLYBOXES_RUNTIME || 'bubblewrap';
const dir = mkdtempSync(path.join(tmpdir(), 'obx-cli-local-'));
// A runtime directory of this file's own: the onlyboxes mcp processes of other test files (and
// of the user) have their control sockets elsewhere.
const runDir = mkdtempSync(path.join(tmpdir(), 'obx-cli-local-run-'));
const controlDir = path.join(runDir, 'onlyboxes');
const env = { ONLYBOXES_CONSOLE: '', XDG_RUNTIME_DIR: runDir, ONLYBOXES_RUNTIME: RUNTIME };
const cli = (args) => runCli(args, { env });
const mcp = () => startServer({ env });
const sockets = () => (existsSync(controlDir) ? readdirSync(controlDir).filter((f) => f.endsWith('.sock')) : []);

after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(runDir, { recursive: true, force: true });
});

describe(`onlyboxes cp and sessions beside onlyboxes mcp --stdio (${RUNTIME})`, () => {
  let srv;
  before(async () => {
    srv = await mcp();
    await srv.sh('mkdir -p work', { session_id: 'dev', create_if_missing: true });
  });
  after(async () => {
    await srv?.close();
  });

  test('the process has a private control socket', () => {
    assert.deepEqual(sockets(), [`mcp-${srv.pid}.sock`]);
    assert.equal(statSync(controlDir).mode & 0o777, 0o700);
    assert.equal(statSync(controlDir).uid, process.getuid());
  });

  test('sessions lists the session with the pid that holds it', () => {
    let r = cli(['sessions']);
    assert.equal(r.status, 0, describeRun(r));
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^SESSION +PID +STATUS +CREATED +LAST USED +LEASE EXPIRES +BUSY$/);
    assert.ok(lines.some((l) => new RegExp(`^dev +${srv.pid} +active +\\d{4}-`).test(l)), r.stdout);
    r = cli(['sessions', 'ls', '--json']);
    assert.equal(r.status, 0, describeRun(r));
    const dev = JSON.parse(r.stdout).items.find((s) => s.session_id === 'dev');
    assert.equal(dev.pid, srv.pid);
    assert.equal(dev.status, 'active');
    assert.ok(dev.lease_expires_unix_ms > Date.now());
  });

  test('a file and a tree go in and come back the same', async () => {
    const src = path.join(dir, 'src');
    mkdirSync(path.join(src, 'sub', 'deeper'), { recursive: true });
    writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
    writeFileSync(path.join(src, 'sub', 'b.bin'), randomBytes(900_000));
    writeFileSync(path.join(src, 'sub', 'deeper', 'c'), '');
    let r = cli(['cp', path.join(src, 'a.txt'), 'dev:work/']);
    assert.equal(r.status, 0, describeRun(r));
    r = cli(['cp', '-r', src, 'dev:work/tree']);
    assert.equal(r.status, 0, describeRun(r));
    // The agent sees what was copied, in the session it works in (whose directory is work/ from
    // now on: a terminal session keeps its state).
    const seen = await srv.sh('cd work && cat a.txt && find tree | sort && sha256sum tree/sub/b.bin', { session_id: 'dev' });
    const sum = (await import('node:crypto')).createHash('sha256').update(readFileSync(path.join(src, 'sub', 'b.bin'))).digest('hex');
    assert.equal(
      seen.stdout,
      `alpha\ntree\ntree/a.txt\ntree/sub\ntree/sub/b.bin\ntree/sub/deeper\ntree/sub/deeper/c\n${sum}  tree/sub/b.bin\n`,
    );
    // What the agent writes comes out.
    await srv.sh('mkdir -p out && printf "result 42\\n" > out/r.txt', { session_id: 'dev' });
    const back = path.join(dir, 'back');
    r = cli(['cp', '-r', 'dev:out', back]);
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(readFileSync(path.join(back, 'r.txt'), 'utf8'), 'result 42\n');
    r = cli(['cp', '-r', 'dev:/workspace/work/tree', path.join(dir, 'tree-back')]);
    assert.equal(r.status, 0, describeRun(r));
    assert.ok(readFileSync(path.join(dir, 'tree-back', 'sub', 'b.bin')).equals(readFileSync(path.join(src, 'sub', 'b.bin'))));
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.onlyboxes-cp-')), []);
  });

  test('mistakes are named', () => {
    let r = cli(['cp', 'dev:nope.txt', path.join(dir, 'nope.txt')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /dev:nope.txt: file not found: nope.txt/);
    assert.ok(!existsSync(path.join(dir, 'nope.txt')));
    r = cli(['cp', 'dev:/workspace/work', path.join(dir, 'w')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /dev:\/workspace\/work is a directory \(use -r to copy it\)/);
    r = cli(['cp', path.join(dir, 'src', 'a.txt'), 'ghost:a.txt']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /session not found/);
    r = cli(['cp', path.join(dir, 'src', 'a.txt'), 'dev:a.txt', '--pid', '1']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, new RegExp(`no onlyboxes mcp with pid 1 runs on this computer \\(running: ${srv.pid}\\)`));
  });

  test('renew keeps the session longer; rm ends it', async () => {
    let r = cli(['sessions', 'renew', 'dev', '--lease', '900']);
    assert.equal(r.status, 0, describeRun(r));
    assert.match(r.stdout, /^session dev: its lease runs until \d{4}-/);
    const listed = JSON.parse(cli(['sessions', 'ls', '--json']).stdout).items.find((s) => s.session_id === 'dev');
    assert.ok(listed.lease_expires_unix_ms > Date.now() + 800_000, JSON.stringify(listed));
    await srv.sh('true', { session_id: 'gone', create_if_missing: true });
    r = cli(['sessions', 'rm', 'gone', 'never']);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^removed session gone$/m);
    assert.match(r.stderr, /session never: session not found/);
    const text = await srv.fails('terminalExec', { command: 'true', session_id: 'gone' });
    assert.match(text, /session_not_found/);
  });
});

describe(`two onlyboxes mcp processes (${RUNTIME})`, () => {
  test('the same session name in both: --pid chooses, the listing has both', async () => {
    const a = await mcp();
    const b = await mcp();
    try {
      await a.sh('echo from-a > who', { session_id: 'twin', create_if_missing: true });
      await b.sh('echo from-b > who', { session_id: 'twin', create_if_missing: true });
      await b.sh('true', { session_id: 'only-b', create_if_missing: true });
      const items = JSON.parse(cli(['sessions', 'ls', '--json']).stdout).items;
      assert.deepEqual(
        items.filter((s) => s.session_id === 'twin').map((s) => s.pid).sort(),
        [a.pid, b.pid].sort(),
      );
      const out = path.join(dir, 'who');
      let r = cli(['cp', 'twin:who', out]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /session twin exists in 2 onlyboxes mcp processes \(pids .*\): choose one with --pid PID/);
      assert.ok(!existsSync(out));
      r = cli(['cp', '--pid', String(b.pid), 'twin:who', out]);
      assert.equal(r.status, 0, describeRun(r));
      assert.equal(readFileSync(out, 'utf8'), 'from-b\n');
      // A name only one of them has needs no --pid.
      r = cli(['cp', out, 'only-b:copied']);
      assert.equal(r.status, 0, describeRun(r));
      assert.equal((await b.sh('cat copied', { session_id: 'only-b' })).stdout, 'from-b\n');
      r = cli(['sessions', 'rm', '--pid', String(a.pid), 'twin']);
      assert.equal(r.status, 0, describeRun(r));
      assert.match(await a.fails('terminalExec', { command: 'true', session_id: 'twin' }), /session_not_found/);
      assert.equal((await b.sh('cat who', { session_id: 'twin' })).stdout, 'from-b\n');
    } finally {
      await a.close();
      await b.close();
    }
    assert.deepEqual(sockets(), []);
  });

  test('a process killed with -9 leaves a socket that the next command clears', async () => {
    const a = await mcp();
    await a.sh('true', { session_id: 'k', create_if_missing: true });
    const pid = a.pid;
    process.kill(pid, 'SIGKILL');
    await a.close().catch(() => {});
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z'); i++) await sleep(20);
    assert.deepEqual(sockets(), [`mcp-${pid}.sock`]);
    const r = cli(['sessions']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /onlyboxes sessions: no onlyboxes mcp is running on this computer/);
    assert.deepEqual(sockets(), []);
  });
});
