// SPDX-License-Identifier: Apache-2.0
// The docker runtime seen from inside a box and from the daemon: the hardening a user relies on
// (non-root, no capabilities, read-only root, loopback only), the limits (a fork bomb stops at the
// pids limit, a memory hog is OOM-killed, and the session and the worker keep working), and that
// no container outlives its worker: after kill -9 the next start removes them, and a normal
// shutdown (stdin EOF, SIGTERM) removes them itself. The daemon is asked directly (Engine API over
// its unix socket), never through onlyboxes. Runs only with ONLYBOXES_RUNTIME=docker.

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { RawServer, containersOf, marker, serverTest, sharedServer, sleep, sleepMarker } from './lib.mjs';

const ON_DOCKER = (process.env.ONLYBOXES_RUNTIME || '').toLowerCase() === 'docker';
const skip = ON_DOCKER ? false : 'docker runtime tests run only with ONLYBOXES_RUNTIME=docker';

/** Waits until no container of pid is left; fails listing what remains. */
async function assertNoContainers(pid, timeoutMs, why) {
  const deadline = Date.now() + timeoutMs;
  let left = [];
  do {
    left = await containersOf(pid);
    if (left.length === 0) return;
    await sleep(100);
  } while (Date.now() < deadline);
  assert.fail(
    `${left.length} container(s) of pid ${pid} left ${why}: ` +
      left.map((c) => `${c.Names?.[0]} (${c.State})`).join(', '),
  );
}

async function rawStart(env = {}) {
  const raw = new RawServer({ env });
  await raw.initialize();
  return raw;
}

/** A terminalExec over a RawServer that must succeed; returns structuredContent. */
async function rawSh(raw, command, extra = {}) {
  const id = marker('id');
  raw.send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'terminalExec', arguments: { command, ...extra } } });
  const r = await raw.response(id, 60_000);
  assert.ok(r.result && !r.result.isError, `terminalExec failed: ${JSON.stringify(r).slice(0, 1000)}`);
  return r.result.structuredContent;
}

/** Processes in the box whose command line holds needle, seen by ps from another exec. */
async function boxProcesses(srv, session_id, needle) {
  const { stdout } = await srv.sh('ps -eo args', { session_id });
  return stdout.split('\n').filter((l) => l.includes(needle));
}

describe('docker runtime', { skip }, () => {
  const server = ON_DOCKER ? sharedServer() : () => null;

  serverTest('a box runs as a non-root user with no capabilities, a read-only root and only lo', { server }, async (srv) => {
    const uid = await srv.sh('id -u');
    assert.notEqual(uid.stdout.trim(), '0');
    const caps = await srv.sh('grep CapEff /proc/self/status', { session_id: uid.session_id });
    assert.match(caps.stdout, /^CapEff:\s+0+\n$/);
    const root = await srv.call('terminalExec', { command: 'touch /obx-root-test', session_id: uid.session_id });
    assert.notEqual(root.structuredContent?.exit_code ?? 1, 0, 'writing to / must fail');
    assert.match(root.structuredContent?.stderr ?? '', /Read-only file system|Permission denied/);
    const net = await srv.sh('ls /sys/class/net', { session_id: uid.session_id });
    assert.deepEqual(net.stdout.trim().split(/\s+/), ['lo']);
  });

  serverTest('a fork bomb stops at the pids limit and the session still answers', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    // The command outlives the bomb's first generation, so the call runs into its timeout and the
    // agent kills the whole process group; background jobs of a command that ends normally stay,
    // as in a terminal. bash, not dash: bash retries a fork refused at the limit (also the one
    // for sleep), where dash gives up at once and the command would end early.
    const r = await srv.call('terminalExec', {
      command: "bash -c 'b(){ b|b& }; b; sleep 100'",
      session_id,
      timeout_ms: 5000,
    });
    assert.equal(r.isError, true, JSON.stringify(r).slice(0, 1500));
    assert.match(r.content[0].text, /deadline_exceeded.*killed/);
    // Until the last of them is reaped even ps may fail to fork: retry for a while.
    let left = null;
    for (let i = 0; i < 50; i++) {
      const ps = await srv.call('terminalExec', { command: 'ps -eo args', session_id });
      left = ps.isError ? null : ps.structuredContent.stdout.split('\n').filter((l) => l.includes('b|b'));
      if (left && left.length === 0) break;
      await sleep(200);
    }
    assert.deepEqual(left, [], 'fork bomb processes left in the box');
    const ok = await srv.sh('echo ok', { session_id });
    assert.equal(ok.stdout, 'ok\n');
  });

  serverTest(
    'a memory hog is OOM-killed while its session, another session and the worker keep working',
    { serverOptions: { env: { ONLYBOXES_BOX_MEMORY_MB: '8192' } } },
    async (srv) => {
      // The per-process address-space limit is raised above the box's cgroup limit (256 MiB), so
      // it is the kernel's OOM killer that stops the hog, not a MemoryError.
      const a = await srv.sh('echo a');
      const b = await srv.sh('echo b');
      const hog = await srv.sh("python3 -c 'b = bytearray(1 << 30); print(len(b))'; echo rc=$?", {
        session_id: a.session_id,
        timeout_ms: 60_000,
      });
      assert.match(hog.stdout, /rc=137\n$/, `expected an OOM kill: ${JSON.stringify(hog)}`);
      assert.equal((await srv.sh('echo still', { session_id: a.session_id })).stdout, 'still\n');
      assert.equal((await srv.sh('echo other', { session_id: b.session_id })).stdout, 'other\n');
      const py = await srv.ok('pythonExec', { code: 'print(6 * 7)' });
      assert.equal(py.output, '42\n');
    },
  );

  serverTest('timeout and cancel leave no process in the container', { server }, async (srv) => {
    const { session_id } = await srv.sh('true');
    const t = sleepMarker();
    const r = await srv.call('terminalExec', {
      command: `sh -c 'sleep ${t}' & sleep ${t}`,
      session_id,
      timeout_ms: 700,
    });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.match(r.content[0].text, /deadline_exceeded/);
    assert.deepEqual(await boxProcesses(srv, session_id, t), [], 'after a timeout');

    const c = sleepMarker();
    const ac = new AbortController();
    const pending = srv.call(
      'terminalExec',
      { command: `sh -c 'sleep ${c}' & sleep ${c}`, session_id },
      { signal: ac.signal },
    );
    await sleep(700);
    ac.abort();
    await assert.rejects(pending);
    // The session is busy until the agent has killed the command; then ps may run.
    let seen = null;
    for (let i = 0; i < 50; i++) {
      const ps = await srv.call('terminalExec', { command: 'ps -eo args', session_id });
      if (!ps.isError) {
        seen = ps.structuredContent.stdout.split('\n').filter((l) => l.includes(c));
        break;
      }
      assert.match(ps.content[0].text, /session_busy/);
      await sleep(100);
    }
    assert.deepEqual(seen, [], 'after a cancel');
  });

  serverTest('kill -9 of the worker: the next start removes every box of the first life', {}, async () => {
    const first = await rawStart();
    await rawSh(first, 'echo one');
    const pid = first.pid;
    assert.ok((await containersOf(pid)).length > 0, 'the first life started no container');
    first.child.kill('SIGKILL');
    await first.exitPromise;
    const second = await rawStart();
    try {
      await rawSh(second, 'echo two');
      await assertNoContainers(pid, 15_000, 'after kill -9 and a new start');
    } finally {
      second.child.stdin.end();
      await second.exitPromise;
    }
  });

  serverTest('a missing image: the first call hears that it is being pulled, then why it failed', {}, async () => {
    // No registry is reachable from the test machine, so the pull fails; what matters is that the
    // caller is told about the pull while it waits, and then gets the reason.
    const image = `onlyboxes/missing-${marker('img').toLowerCase()}:1`;
    const raw = await rawStart({ WORKER_PYTHON_EXEC_DOCKER_IMAGE: image, ONLYBOXES_WARM_POOL: '0' });
    try {
      raw.send({
        jsonrpc: '2.0',
        id: 'py',
        method: 'tools/call',
        params: { name: 'pythonExec', arguments: { code: 'print(1)' }, _meta: { progressToken: 'p1' } },
      });
      const r = await raw.response('py', 120_000);
      assert.equal(r.result?.isError, true, JSON.stringify(r));
      assert.ok(r.result.content[0].text.includes(image), r.result.content[0].text);
      const progress = raw.messages.filter((m) => m.method === 'notifications/progress');
      assert.ok(
        progress.some((m) => /pulling/.test(m.params?.message ?? '')),
        `no progress message about the pull: ${JSON.stringify(raw.messages).slice(0, 1500)}`,
      );
    } finally {
      raw.child.stdin.end();
      await raw.exitPromise;
    }
  });

  serverTest('shutdown on stdin EOF removes every box of the process', {}, async () => {
    const raw = await rawStart();
    await rawSh(raw, 'echo x');
    const pid = raw.pid;
    raw.child.stdin.end();
    await raw.exitPromise;
    await assertNoContainers(pid, 3000, 'after stdin EOF');
  });

  serverTest('shutdown on SIGTERM removes every box of the process', {}, async () => {
    const raw = await rawStart();
    await rawSh(raw, 'echo x');
    const pid = raw.pid;
    raw.child.kill('SIGTERM');
    await raw.exitPromise;
    await assertNoContainers(pid, 3000, 'after SIGTERM');
  });
});
