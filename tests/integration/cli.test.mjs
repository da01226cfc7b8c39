// SPDX-License-Identifier: Apache-2.0
// The script-facing subcommands: exec, python, call. They behave like the commands they wrap:
// output on the right stream, the program's exit status as their own.

import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, describeRun, runCli } from './lib.mjs';

describe('onlyboxes exec', () => {
  test('passes stdout, stderr and the exit status through', () => {
    const r = runCli(['exec', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(r.status, 7, describeRun(r));
    assert.equal(r.stdout, 'out\n', describeRun(r));
    assert.match(r.stderr, /err/, describeRun(r));
  });

  test('runs in a box, not on the host', () => {
    const r = runCli(['exec', '--', 'sh', '-c', 'pwd; cat /proc/net/dev | tail -n +3 | cut -d: -f1']);
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stdout.split('\n')[0], '/workspace', describeRun(r));
    assert.deepEqual(r.stdout.split('\n').slice(1).map((s) => s.trim()).filter(Boolean), ['lo']);
  });

  test('--help prints usage and exits 0', () => {
    const r = runCli(['exec', '--help']);
    assert.equal(r.status, 0, describeRun(r));
    assert.match(r.stdout + r.stderr, /usage/i, describeRun(r));
  });
});

describe('onlyboxes python', () => {
  test('-c CODE', () => {
    const r = runCli(['python', '-c', 'print(6*7)']);
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stdout, '42\n', describeRun(r));
  });

  test('a timeout kills the program and exits 124', () => {
    const r = runCli(['python', '--timeout', '300', '-c', 'import time; time.sleep(30)']);
    assert.equal(r.status, 124, describeRun(r));
    assert.match(r.stderr, /timed out after 300 ms/, describeRun(r));
  });

  test('an option after the code is refused rather than ignored', () => {
    const r = runCli(['python', '-c', 'print(1)', '--timeout', '5']);
    assert.equal(r.status, 2, describeRun(r));
    assert.match(r.stderr, /unexpected argument '--timeout'/, describeRun(r));
  });

  test('- reads the code from stdin', () => {
    const r = runCli(['python', '-'], { input: 'print(1)\n' });
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stdout, '1\n', describeRun(r));
  });

  test("the program's exit status and stderr come through", () => {
    const r = runCli(['python', '-c', 'import sys; print("bad", file=sys.stderr); sys.exit(4)']);
    assert.equal(r.status, 4, describeRun(r));
    assert.match(r.stderr, /bad/, describeRun(r));
  });
});

describe('onlyboxes call', () => {
  test('prints the tool result as JSON', () => {
    const r = runCli(['call', 'echo', '{"message":"hi"}']);
    assert.equal(r.status, 0, describeRun(r));
    let out;
    assert.doesNotThrow(() => {
      out = JSON.parse(r.stdout);
    }, `stdout is not JSON: ${describeRun(r)}`);
    assert.equal(out.structuredContent?.message, 'hi', describeRun(r));
  });

  test('arguments that are not JSON are a clear error', () => {
    const r = runCli(['call', 'echo', 'not json']);
    assert.notEqual(r.status, 0, describeRun(r));
    assert.ok(r.stderr.trim().length > 0, `no error message on stderr: ${describeRun(r)}`);
    assert.match(r.stderr, /json/i, describeRun(r));
  });

  test('a tool error is a non-zero exit', () => {
    const r = runCli(['call', 'echo', '{"message":"  "}']);
    assert.notEqual(r.status, 0, describeRun(r));
    assert.match(r.stdout + r.stderr, /message/, describeRun(r));
  });
});

// A setting that does not parse stops `onlyboxes mcp` before it answers anything, as it stops
// `onlyboxes console` and `worker`: the MCP client shows the server's exit and stderr to its user.
describe('onlyboxes mcp with a malformed setting', () => {
  const initialize = `${JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
  })}\n`;
  for (const [name, value, why] of [
    ['ONLYBOXES_MAX_SESSIONS', 'abc', /expected a whole number/],
    ['ONLYBOXES_BWRAP_HOST_UIDS', 'abc', /expected FIRST-LAST/],
    ['ONLYBOXES_BWRAP_HOST_UIDS', '2000-1000', /expected FIRST-LAST/],
  ]) {
    test(`${name}=${value} exits 2 naming it, without serving`, () => {
      const r = runCli(['mcp', '--stdio'], { input: initialize, env: { [name]: value } });
      assert.equal(r.status, 2, describeRun(r));
      assert.equal(r.stdout, '', describeRun(r));
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, describeRun(r));
      assert.match(lines[0], new RegExp(`^onlyboxes mcp: ${name}=${value} is invalid: `), describeRun(r));
      assert.match(lines[0], why, describeRun(r));
    });
  }

  test('onlyboxes worker stops the same way (exit 2, the setting named), before it connects', () => {
    const r = runCli(['worker'], { env: { WORKER_ID: 'w', WORKER_SECRET: 's', ONLYBOXES_MAX_SESSIONS: 'abc' } });
    assert.equal(r.status, 2, describeRun(r));
    assert.match(r.stderr, /^onlyboxes worker: ONLYBOXES_MAX_SESSIONS=abc is invalid: expected a whole number/m, describeRun(r));
  });

  test('--help and doctor list ONLYBOXES_BWRAP_HOST_UIDS', () => {
    const help = runCli(['mcp', '--help']);
    assert.equal(help.status, 0, describeRun(help));
    assert.match(help.stdout, /^ {2}ONLYBOXES_BWRAP_HOST_UIDS .*\n?.*FIRST-LAST/m, describeRun(help));
    const doc = runCli(['doctor'], { env: { ONLYBOXES_BWRAP_HOST_UIDS: '1879048192-1879050000' } });
    assert.match(doc.stdout, /^ {2}ONLYBOXES_BWRAP_HOST_UIDS=1879048192-1879050000$/m, describeRun(doc));
    // and the sandbox of a root worker takes that range
    if (process.getuid?.() === 0 && /^bubblewrap: ok/m.test(doc.stdout))
      assert.match(doc.stdout, /^bubblewrap: ok: .*host uids 1879048192-1879050000, one per box/m, describeRun(doc));
  });
});

// What a developer's MCP client does: run onlyboxes as an ordinary user, with bubblewrap (an
// ordinary user cannot reach the Docker socket). Checked as the user `nobody`, after a root run
// has made the cgroup directories a root worker uses (an ordinary user must not trip on them).
describe('an ordinary user', () => {
  const RUNTIME = process.env.ONLYBOXES_RUNTIME || 'bubblewrap';
  const why =
    process.getuid?.() !== 0
      ? 'needs root to switch to another user'
      : RUNTIME !== 'bubblewrap'
        ? 'an ordinary user runs the bubblewrap runtime'
        : spawnSync('setpriv', ['--version']).status !== 0
          ? 'setpriv is not installed'
          : false;

  test('runs commands and Python in boxes, next to a root worker', { skip: why }, () => {
    assert.equal(runCli(['exec', '--', 'true']).status, 0, 'the root run failed');
    const dir = mkdtempSync(path.join(tmpdir(), 'obx-user-'));
    try {
      chmodSync(dir, 0o755);
      const bin = path.join(dir, 'onlyboxes');
      copyFileSync(BIN, bin);
      copyFileSync(path.join(path.dirname(BIN), 'onlyboxes-agent'), path.join(dir, 'onlyboxes-agent'));
      chmodSync(bin, 0o755);
      chmodSync(path.join(dir, 'onlyboxes-agent'), 0o755);
      const home = path.join(dir, 'home');
      mkdirSync(home);
      chownSync(home, 65534, 65534);
      const env = { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: home, ONLYBOXES_RUNTIME: 'bubblewrap' };
      const run = (...args) => {
        const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', bin, ...args], {
          cwd: home,
          env,
          encoding: 'utf8',
          timeout: 60_000,
        });
        return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
      };
      const sh = run('exec', '--', 'sh', '-c', 'id -u; pwd; echo hi > f; cat f');
      assert.equal(sh.status, 0, describeRun(sh));
      assert.equal(sh.stdout, '65532\n/workspace\nhi\n', describeRun(sh));
      const py = run('python', '-c', 'import os; print(os.getuid(), 6 * 7)');
      assert.equal(py.status, 0, describeRun(py));
      assert.equal(py.stdout, '65532 42\n', describeRun(py));
      // doctor says how the boxes are limited for this user.
      const doc = run('doctor');
      assert.equal(doc.status, 0, describeRun(doc));
      assert.match(doc.stdout, /^bubblewrap: ok: .*; limits per box: [^;]+; state dir /m, describeRun(doc));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
