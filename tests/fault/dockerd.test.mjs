// SPDX-License-Identifier: Apache-2.0
// Fault: the Docker daemon stops under a live session. The system's daemon is shared, so the test
// starts a private dockerd of its own (own data root, exec root, pid file and socket, network
// namespace, no bridge, no iptables) with the work image loaded into it; the data root stays in a fixed directory under
// /var/tmp so later runs need not load the image again. With DOCKER_HOST pointing at it, a
// terminal session runs, the daemon is stopped, and the next calls must fail with an error that
// names the daemon while the MCP server keeps answering; once the daemon is back, new calls work
// and no container of the old daemon's life is left running.

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SYSTEM_DOCKER_SOCKET,
  WORK_IMAGE,
  WORK_IMAGE_ENV,
  commandExists,
  containersLabelled,
  dockerUnavailable,
  engine,
  findProcesses,
  resultText,
  sleep,
  startServer,
  waitUntil,
} from './lib.mjs';

const DATA_ROOT = '/var/tmp/onlyboxes-fault-dockerd';
const run = mkdtempSync('/tmp/obxfd-'); // short: unix socket paths are limited to 108 bytes
const SOCK = path.join(run, 'docker.sock');
const START_MS = 90_000;

/** Why a private daemon cannot run here, or null. */
function whyNot() {
  if (process.getuid?.() !== 0) return 'a private dockerd needs root';
  if (!commandExists('dockerd')) return 'dockerd is not installed';
  if (process.env.OBX_SKIP_DOCKER === '1') return 'OBX_SKIP_DOCKER=1';
  const sys = dockerUnavailable();
  if (sys) return `the work image is loaded from the system daemon, which is not usable: ${sys}`;
  return null;
}

class PrivateDockerd {
  async start() {
    mkdirSync(DATA_ROOT, { recursive: true });
    const log = openSync(path.join(run, 'dockerd.log'), 'a');
    // In a network namespace of its own: a dockerd without a bridge deletes the host's docker0
    // when it starts, which would cut the system daemon's containers off their network.
    this.proc = spawn(
      'unshare',
      [
        '--net',
        '--',
        'dockerd',
        `--data-root=${DATA_ROOT}`,
        `--exec-root=${path.join(run, 'exec')}`,
        `--pidfile=${path.join(run, 'docker.pid')}`,
        `-H`,
        `unix://${SOCK}`,
        '--bridge=none',
        '--iptables=false',
        '--ip6tables=false',
        '--ip-masq=false',
      ],
      { stdio: ['ignore', log, log], detached: true },
    );
    closeSync(log);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    const up = await waitUntil(async () => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) return 'exited';
      try {
        return (await engine(SOCK, 'GET', '/_ping', { timeoutMs: 2000 })).status === 200 ? 'up' : null;
      } catch {
        return null;
      }
    }, START_MS);
    if (up !== 'up') {
      await this.stop();
      throw new Error(`the private dockerd did not start (${up || 'timeout'}):\n${this.log()}`);
    }
  }

  log() {
    try {
      return readFileSync(path.join(run, 'dockerd.log'), 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  /** SIGTERM, as a service manager stops it; then the whole group (its containerd) if it did not
   * go within 30 s. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const r = await Promise.race([this.exited, sleep(30_000).then(() => null)]);
    if (!r) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {}
      await this.exited;
    }
    // Its containerd, started in the same process group, goes with it.
    await waitUntil(() => {
      try {
        process.kill(-this.proc.pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 15_000);
  }
}

/** Loads the work image from the system daemon unless the private one already has that image. */
async function ensureImage() {
  const want = await engine(SYSTEM_DOCKER_SOCKET, 'GET', `/images/${WORK_IMAGE}/json`);
  const have = await engine(SOCK, 'GET', `/images/${WORK_IMAGE}/json`);
  if (have.status === 200 && have.body.Id === want.body.Id) return false;
  const r = spawnSync('sh', ['-c', `docker save ${WORK_IMAGE} | docker -H unix://${SOCK} load`], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, `loading ${WORK_IMAGE} into the private daemon failed: ${r.stderr}`);
  return true;
}

const why = whyNot();
const daemon = new PrivateDockerd();
let startError = null;

before(async () => {
  if (why) return;
  try {
    await daemon.start();
    const loaded = await ensureImage();
    if (loaded) console.log(`# loaded ${WORK_IMAGE} into the private daemon at ${DATA_ROOT}`);
  } catch (e) {
    startError = e;
  }
});

after(async () => {
  await daemon.stop();
  // Whatever the daemon left under its exec root (a container shim, a network namespace mount)
  // belongs to this test: end it so the directory can go.
  for (const p of findProcesses(run)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {}
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((m) => m && m.startsWith(run + '/'))
    .sort()
    .reverse();
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  rmSync(run, { recursive: true, force: true });
});

test('the Docker daemon stops under a live session, then comes back', { skip: why || false, timeout: 240_000 }, async (t) => {
  if (startError) {
    // A second daemon cannot run on this machine: say why instead of failing the product.
    t.skip(`a private dockerd cannot run here: ${startError.message.split('\n')[0]}`);
    return;
  }
  const env = {
    ONLYBOXES_RUNTIME: 'docker',
    DOCKER_HOST: `unix://${SOCK}`,
    ONLYBOXES_DOCKER_PULL: 'false',
    ONLYBOXES_WARM_POOL: '0',
    ...WORK_IMAGE_ENV,
  };
  const srv = await startServer({ env });
  try {
    const first = await srv.sh('echo before');
    assert.equal(first.stdout, 'before\n');
    const { session_id } = first;
    const owner = ['onlyboxes.managed=true', `onlyboxes.owner-pid=${srv.pid}`];
    const oldIds = (await containersLabelled(SOCK, owner)).map((c) => c.Id);
    assert.ok(oldIds.length >= 1, 'the session has no container');

    await daemon.stop();

    // Calls that need the daemon fail and say it is the daemon; the server keeps answering.
    const stale = await srv.call('terminalExec', { command: 'echo on-the-old-session', session_id });
    const staleText = resultText(stale);
    // A stopped daemon takes the session's container along: the session is gone, which the
    // worker reports with the wire code for it (or names the daemon or the box).
    if (stale.isError) assert.match(staleText, /session_not_found|docker|daemon|box/i, `an unclear error for the old session: ${staleText}`);
    t.diagnostic(`old session while the daemon is down: ${stale.isError ? staleText : 'still answered'}`);
    for (const [name, args] of [
      ['terminalExec', { command: 'echo new-session' }],
      ['pythonExec', { code: 'print(1)' }],
    ]) {
      const t0 = Date.now();
      const text = await srv.fails(name, args);
      assert.match(text, /daemon/i, `${name} without a daemon: the error does not name the daemon: ${text}`);
      assert.match(text, new RegExp(SOCK.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), `${name}: the error does not say which daemon: ${text}`);
      t.diagnostic(`${name} without a daemon failed in ${Date.now() - t0} ms: ${text}`);
    }
    const echo = await srv.ok('echo', { message: 'still here' });
    assert.equal(echo.message, 'still here');

    await daemon.start();

    // New calls work again.
    const fresh = await srv.sh('echo after');
    assert.equal(fresh.stdout, 'after\n');
    const py = await srv.ok('pythonExec', { code: 'print(6 * 7)' });
    assert.equal(py.output, '42\n');
    // The old session either works again or reports a clear error; then it can be replaced.
    const again = await srv.call('terminalExec', { command: 'echo old-again', session_id });
    t.diagnostic(`old session after the daemon came back: ${again.isError ? resultText(again) : 'answered'}`);

    // No container of the daemon's first life keeps running.
    const running = await waitUntil(async () => {
      const all = await containersLabelled(SOCK, ['onlyboxes.managed=true']);
      const left = all.filter((c) => oldIds.includes(c.Id) && c.State === 'running');
      return left.length === 0 ? [] : null;
    }, 20_000);
    assert.ok(running, 'a container from before the daemon stopped is still running');
  } finally {
    await srv.close();
  }
  // Once the server is gone its containers are removed.
  const left = await waitUntil(async () => ((await containersLabelled(SOCK, [`onlyboxes.owner-pid=${srv.pid}`])).length === 0 ? true : null), 20_000);
  assert.ok(left, 'containers of the closed server are left on the private daemon');
});
