// SPDX-License-Identifier: Apache-2.0
// terminalExec sessions: state that survives between commands, leases, one command at a time,
// isolation between sessions, and output limits.

import { readFileSync } from 'node:fs';
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { findProcesses, marker, resultText, serverTest, sharedServer, sleep, sleepMarker, waitForProcess } from './lib.mjs';

const server = sharedServer();
const MIB = 1024 * 1024;

describe('terminalExec sessions', () => {
  serverTest('a call without session_id creates a session in an empty /workspace', { server }, async (srv) => {
    const r = await srv.sh('pwd; ls -A; echo end');
    assert.equal(r.created, true);
    assert.equal(typeof r.session_id, 'string');
    assert.ok(r.session_id.length > 0);
    assert.equal(r.stdout, '/workspace\nend\n');
    assert.equal(r.exit_code, 0);
    assert.equal(r.stdout_truncated, false);
    assert.equal(r.stderr_truncated, false);
  });

  serverTest('the working directory, exported variables and files survive', { server }, async (srv) => {
    const { session_id } = await srv.sh('cd /tmp');
    const again = await srv.sh('pwd', { session_id });
    assert.equal(again.created, false);
    assert.equal(again.session_id, session_id);
    assert.equal(again.stdout, '/tmp\n');

    await srv.sh('export A=1', { session_id });
    assert.equal((await srv.sh('echo $A', { session_id })).stdout, '1\n');

    const name = `f-${marker()}`;
    await srv.sh(`cd /workspace && echo content > ${name}`, { session_id });
    assert.equal((await srv.sh(`cat /workspace/${name}`, { session_id })).stdout, 'content\n');
  });

  serverTest('stdout, stderr and a non-zero exit code are the command result', { server }, async (srv) => {
    const r = await srv.sh('echo out; echo err >&2; false');
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.exit_code, 1);
  });

  serverTest('an unknown session_id is session_not_found', { server }, async (srv) => {
    const text = await srv.fails('terminalExec', { command: 'true', session_id: `nosuch-${marker()}` });
    assert.match(text, /session_not_found/);
  });

  serverTest('a session whose box was killed from outside says so when named again', { server }, async (srv) => {
    const { session_id } = await srv.sh('echo kept > f');
    const m = sleepMarker();
    const running = srv.call('terminalExec', { command: `sleep ${m}`, session_id, timeout_ms: 60_000 });
    const [sleeper] = await waitForProcess(`sleep ${m}`);
    assert.ok(sleeper, 'the command never started');
    // Up the host's process tree to the box's agent, its PID 1 (the topmost process running the
    // agent: the agent forks a helper per command), and kill -9 it.
    const agents = new Set(findProcesses('/.onlyboxes/agent').filter((p) => p.cmdline.startsWith('/.onlyboxes/agent ')).map((p) => p.pid));
    let agent = 0;
    for (let pid = sleeper.pid; pid > 1; ) {
      if (agents.has(pid)) agent = pid;
      pid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
    }
    assert.ok(agent > 0, 'no agent above the command');
    process.kill(agent, 'SIGKILL');
    const r = await running;
    assert.equal(r.isError, true, `the command's call should fail with its box: ${resultText(r)}`);
    const text = await srv.fails('terminalExec', { command: 'cat f', session_id });
    assert.match(text, /session_not_found: session not found: it ended \d+ s ago \(its box ended: [^)]+\); its files are gone/);
    // Named with create_if_missing, the id starts a new, empty session.
    const again = await srv.sh('ls -A', { session_id, create_if_missing: true });
    assert.deepEqual([again.created, again.stdout], [true, '']);
  });

  serverTest('create_if_missing creates the named session', { server }, async (srv) => {
    const id = `mine-${marker()}`;
    const r = await srv.sh('echo made', { session_id: id, create_if_missing: true });
    assert.equal(r.created, true);
    assert.equal(r.session_id, id);
    const r2 = await srv.sh('echo again', { session_id: id, create_if_missing: true });
    assert.equal(r2.created, false);
    assert.equal(r2.session_id, id);
  });

  serverTest('argument errors name the field', { server }, async (srv) => {
    assert.match(await srv.fails('terminalExec', {}), /command/);
    assert.match(await srv.fails('terminalExec', { command: '  ' }), /command/);
    assert.match(await srv.fails('terminalExec', { command: 'true', session_id: '' }), /session_id/);
    assert.match(await srv.fails('terminalExec', { command: 'true', session_id: 'has space' }), /session_id/);
    assert.match(await srv.fails('terminalExec', { command: 'true', session_id: 'x'.repeat(129) }), /session_id/);
    assert.match(await srv.fails('terminalExec', { command: 'true', create_if_missing: 'yes' }), /create_if_missing/);
    assert.match(await srv.fails('terminalExec', { command: 'true', timeout_ms: 600001 }), /timeout_ms/);
    assert.match(await srv.fails('terminalExec', { command: 'true', lease_ttl_sec: 0 }), /lease_ttl_sec/);
  });
});

describe('terminalExec leases', () => {
  serverTest('a lease below the worker minimum is refused', { server }, async (srv) => {
    const text = await srv.fails('terminalExec', { command: 'true', lease_ttl_sec: 5 });
    assert.match(text, /lease_ttl_sec/);
  });

  serverTest('the default lease ends about 60 s after the command', { server }, async (srv) => {
    const before = Date.now();
    const r = await srv.sh('true');
    const after = Date.now();
    assert.equal(typeof r.lease_expires_unix_ms, 'number');
    assert.ok(
      r.lease_expires_unix_ms >= before + 55_000 && r.lease_expires_unix_ms <= after + 65_000,
      `lease_expires_unix_ms ${r.lease_expires_unix_ms} is not about now+60s (now=${after})`,
    );
  });

  serverTest('lease_ttl_sec extends the lease', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    const r = await srv.sh('true', { session_id, lease_ttl_sec: 300 });
    const now = Date.now();
    assert.ok(
      Math.abs(r.lease_expires_unix_ms - (now + 300_000)) < 10_000,
      `lease_expires_unix_ms ${r.lease_expires_unix_ms} is not about now+300s (now=${now})`,
    );
    // A later command with a shorter ttl never shortens it.
    const r2 = await srv.sh('true', { session_id, lease_ttl_sec: 60 });
    assert.ok(r2.lease_expires_unix_ms >= r.lease_expires_unix_ms - 1000);
  });
});

describe('terminalExec lease expiry', () => {
  // Short leases so expiry can be watched: the worker's bounds come from the environment.
  const env = { WORKER_TERMINAL_LEASE_MIN_SEC: '1', WORKER_TERMINAL_LEASE_DEFAULT_SEC: '1' };

  serverTest('an idle session is removed once its lease has passed', { serverOptions: { env } }, async (srv) => {
    const { session_id } = await srv.sh('echo kept > f');
    assert.equal((await srv.sh('cat f', { session_id })).stdout, 'kept\n');
    // The reaper says when it removes the session; waiting for that line, not for a while, keeps
    // the test right on a slow machine (the deadline is only for a reaper that never comes).
    const gone = `session ${session_id}: lease expired`;
    const deadline = Date.now() + 60_000;
    while (!srv.stderr.includes(gone) && Date.now() < deadline) await sleep(50);
    assert.ok(srv.stderr.includes(gone), 'the reaper never removed the session');
    const text = await srv.fails('terminalExec', { command: 'cat f', session_id });
    assert.match(text, /session_not_found: session not found: it ended \d+ s ago \(its lease ran out\)/);
  });

  serverTest('a busy session is never reaped and its lease counts from the end', { serverOptions: { env } }, async (srv) => {
    const { session_id } = await srv.sh('echo kept > f');
    // Runs three times longer than the lease; the session must survive it and the next command.
    const r = await srv.sh('sleep 3; cat f', { session_id, lease_ttl_sec: 1 });
    assert.equal(r.stdout, 'kept\n');
    assert.ok(r.lease_expires_unix_ms > Date.now(), 'the lease must extend past the end of the command');
    assert.equal((await srv.sh('cat f', { session_id })).stdout, 'kept\n');
  });
});

describe('terminalExec concurrency and isolation', () => {
  serverTest('a second command in a busy session is session_busy', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    const secs = sleepMarker().replace(/^1000/, '3');
    const first = srv.call('terminalExec', { command: `sleep ${secs}; echo slept`, session_id });
    try {
      const running = await waitForProcess(secs, 20_000);
      assert.ok(running.length > 0, 'the first command never started');
      const text = await srv.fails('terminalExec', { command: 'echo second', session_id });
      assert.match(text, /session_busy/);
    } finally {
      const r = await first;
      assert.notEqual(r.isError, true, JSON.stringify(r));
      assert.equal(r.structuredContent.stdout, 'slept\n');
    }
    // Free again once the first command is done.
    assert.equal((await srv.sh('echo free', { session_id })).stdout, 'free\n');
  });

  serverTest('two sessions do not see each other\'s files', { server }, async (srv) => {
    const name = `only-in-a-${marker()}`;
    const a = await srv.sh(`touch ${name} && ls -A /workspace`);
    assert.equal(a.stdout, `${name}\n`);
    const b = await srv.sh('ls -A /workspace');
    assert.notEqual(b.session_id, a.session_id);
    assert.equal(b.stdout, '');
    const bTmp = await srv.sh(`touch /tmp/${name}; ls /tmp`, { session_id: b.session_id });
    assert.match(bTmp.stdout, new RegExp(name));
    const aTmp = await srv.sh('ls -A /tmp', { session_id: a.session_id });
    assert.doesNotMatch(aTmp.stdout, new RegExp(name), '/tmp must be private to a session');
  });
});

describe('output limits', () => {
  serverTest('a flood of output is cut at 1 MiB and flagged', { server }, async (srv) => {
    const r = await srv.sh('yes | head -c 5000000');
    assert.equal(r.stdout_truncated, true);
    const bytes = Buffer.byteLength(r.stdout, 'utf8');
    assert.ok(bytes <= MIB, `stdout is ${bytes} bytes`);
    assert.ok(bytes >= MIB / 2, `stdout kept only ${bytes} bytes`);
    assert.match(r.stdout.slice(0, 8), /^(y\n){4}$/);
    assert.equal(r.stderr_truncated, false);
  });

  serverTest('a cut never splits a UTF-8 character', { server }, async (srv) => {
    const r = await srv.sh(`python3 -c "print('é'*800000)"`);
    assert.equal(r.stdout_truncated, true);
    const bytes = Buffer.byteLength(r.stdout, 'utf8');
    assert.ok(bytes <= MIB, `stdout is ${bytes} bytes`);
    assert.ok(!r.stdout.includes('\uFFFD'), 'stdout contains U+FFFD: a character was split');
    assert.match(r.stdout, /^é+$/);
  });

  serverTest('stderr has its own limit', { server }, async (srv) => {
    const r = await srv.sh('yes err | head -c 3000000 >&2; echo fine');
    assert.equal(r.stderr_truncated, true);
    assert.ok(Buffer.byteLength(r.stderr, 'utf8') <= MIB);
    assert.equal(r.stdout, 'fine\n');
    assert.equal(r.stdout_truncated, false);
  });
});
