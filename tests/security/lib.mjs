// SPDX-License-Identifier: Apache-2.0
// Helpers of the security suite: which runtime is under test, the host's view of a box (its pid
// namespace, found from the host's /proc), a latency probe that times `echo hi` on a second
// session while an attack runs, and the check that a closed server left no process or container.
// The MCP side (server, SDK client, calls) and the Docker Engine API come from the integration
// suite's lib.mjs.

import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import { containersOf, sleep, startServer } from '../integration/lib.mjs';

export * from '../integration/lib.mjs';

/** The runtime under test: ONLYBOXES_RUNTIME, bubblewrap when unset. */
export const RUNTIME = (process.env.ONLYBOXES_RUNTIME || 'bubblewrap').toLowerCase();
assert.ok(
  ['bubblewrap', 'docker'].includes(RUNTIME),
  `the security suite runs on bubblewrap or docker, not ONLYBOXES_RUNTIME=${RUNTIME}`,
);
export const ON_DOCKER = RUNTIME === 'docker';

/** The limits the suite runs with, passed to every server so that the figures below hold. */
export const LIMITS = {
  pids: 128,
  memoryMiB: 512, // per-process address space (both runtimes)
  dockerMemoryMiB: 256, // the container's cgroup, tmpfs included
  outputBytes: 1 << 20,
  tmpMiB: 256,
  shmMiB: 64,
  workspaceMiB: 512, // the tmpfs /workspace (both runtimes)
  fileMiB: 1024, // RLIMIT_FSIZE, per file
  nofile: 1024,
};

/**
 * An `echo hi` on another session must answer before, during and after an attack. This is a
 * deadline for a session that stopped answering (starved or stuck), not a speed goal: how fast it
 * answers is reported, and measured on a quiet machine by bench/.
 */
export const ANSWER_DEADLINE_MS = 60_000;

export function serverEnv(extra = {}) {
  return {
    ONLYBOXES_RUNTIME: RUNTIME,
    ONLYBOXES_BOX_PIDS: String(LIMITS.pids),
    ONLYBOXES_BOX_MEMORY_MB: String(LIMITS.memoryMiB),
    WORKER_TERMINAL_OUTPUT_LIMIT_BYTES: String(LIMITS.outputBytes),
    ...extra,
  };
}

export function startSecServer(extra) {
  return startServer({ env: serverEnv(extra) });
}

/* ------------------------------------------------------------------------------------------ */
/* The host's view of a box                                                                     */

/** The pid namespace of a terminal session's box, as `pid:[inode]` (the same string on the host). */
export async function sessionNs(srv, session_id) {
  const r = await srv.sh('readlink /proc/self/ns/pid', { session_id });
  const ns = r.stdout.trim();
  assert.match(ns, /^pid:\[\d+\]$/, `unexpected pid namespace ${JSON.stringify(r)}`);
  return ns;
}

/** Host processes in pid namespace ns: [{pid, state, comm, cmdline}]. */
export function nsProcesses(ns) {
  const out = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let link;
    try {
      link = readlinkSync(`/proc/${e}/ns/pid`);
    } catch {
      continue; // gone, or a kernel thread
    }
    if (link !== ns) continue;
    let stat = '';
    let cmdline = '';
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      continue;
    }
    const close = stat.lastIndexOf(')');
    out.push({
      pid: Number(e),
      comm: stat.slice(stat.indexOf('(') + 1, close),
      state: stat.slice(close + 2, close + 3),
      cmdline,
    });
  }
  return out;
}

/** Samples ns every 50 ms until stop(); stop() resolves to {max, maxZombies, samples}. */
export function watchNs(ns) {
  let done = false;
  const stats = { max: 0, maxZombies: 0, samples: 0 };
  const loop = (async () => {
    while (!done) {
      const p = nsProcesses(ns);
      stats.samples++;
      stats.max = Math.max(stats.max, p.length);
      stats.maxZombies = Math.max(stats.maxZombies, p.filter((x) => x.state === 'Z').length);
      await sleep(50);
    }
  })();
  return {
    async stop() {
      done = true;
      await loop;
      return stats;
    },
  };
}

/**
 * Waits until the box's namespace holds no more processes than `count` and no zombie; returns
 * what is there then (or after timeoutMs, for the assertion message).
 */
export async function waitNsSettled(ns, count, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = nsProcesses(ns);
    const settled = p.length <= count && !p.some((x) => x.state === 'Z');
    if (settled || Date.now() >= deadline) return { settled, procs: p };
    await sleep(100);
  }
}

/** Asserts that ns is back to at most `count` processes with no zombie. */
export async function assertNsSettled(ns, count, why) {
  const { settled, procs } = await waitNsSettled(ns, count);
  assert.ok(
    settled,
    `${why}: ${procs.length} processes left in the box (expected at most ${count}, no zombie): ` +
      procs
        .slice(0, 20)
        .map((p) => `${p.pid} ${p.state} ${p.cmdline || p.comm}`)
        .join('; '),
  );
}

/** Asserts that no host process is left in any of the namespaces (their boxes are gone). */
export async function assertNsEmpty(namespaces, why, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let left = [];
  do {
    left = namespaces.flatMap((ns) => nsProcesses(ns).map((p) => ({ ns, ...p })));
    if (left.length === 0) return;
    await sleep(100);
  } while (Date.now() < deadline);
  assert.fail(
    `${why}: ${left.length} processes of closed boxes still run on the host: ` +
      left
        .slice(0, 20)
        .map((p) => `${p.ns} ${p.pid} ${p.state} ${p.cmdline || p.comm}`)
        .join('; '),
  );
}

/* ------------------------------------------------------------------------------------------ */
/* Latency of another session while an attack runs                                              */

async function echoLatency(srv, session_id, phase) {
  const t0 = performance.now();
  let timer;
  const stuck = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`echo hi on another session did not answer within ${ANSWER_DEADLINE_MS} ms ${phase} the attack`)),
      ANSWER_DEADLINE_MS,
    );
  });
  const r = await Promise.race([srv.sh('echo hi', { session_id }), stuck]).finally(() => clearTimeout(timer));
  const ms = performance.now() - t0;
  assert.equal(r.stdout, 'hi\n', 'the other session answered something else');
  return ms;
}

/**
 * Runs attack() while a second session answers `echo hi` over and over. Resolves to
 * {result, before, during, after} (the worst latency of each phase in ms, and how many samples
 * `during` took, for the report) once every sample answered; one that does not answer within
 * ANSWER_DEADLINE_MS fails the attempt.
 */
export async function underLoad(srv, attack) {
  const { session_id } = await srv.sh('echo warm');
  const max = (xs) => Math.max(...xs);
  const before = [];
  for (let i = 0; i < 3; i++) before.push(await echoLatency(srv, session_id, 'before'));
  const during = [];
  let done = false;
  const running = (async () => {
    try {
      return await attack();
    } finally {
      done = true;
    }
  })();
  // At least one sample is taken while the attack runs, however quickly it ends.
  do {
    during.push(await echoLatency(srv, session_id, 'during'));
    if (!done) await sleep(150);
  } while (!done);
  const result = await running;
  const after = [];
  for (let i = 0; i < 3; i++) after.push(await echoLatency(srv, session_id, 'after'));
  const figures = {
    before: Math.round(max(before)),
    during: Math.round(max(during)),
    duringSamples: during.length,
    after: Math.round(max(after)),
  };
  return { result, ...figures };
}

/* ------------------------------------------------------------------------------------------ */
/* A closed server leaves nothing behind                                                       */

const SHUTDOWN_MS = 30_000;

/** True while pid exists and is not a zombie. */
function pidRunning(pid) {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Closes srv and checks from the host that nothing of its boxes is left: no process in any of
 * the given pid namespaces, and with docker no container of the server.
 */
export async function closeAndCheck(srv, namespaces) {
  const pid = srv.pid;
  // SIGTERM, then as long as the shutdown takes: the SDK client's own close() sends SIGKILL after
  // 4 s, and a killed server leaves its containers to the next start's cleanup, which on a loaded
  // machine would make this check about the load rather than about the boxes.
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + SHUTDOWN_MS;
  while (pidRunning(pid) && Date.now() < deadline) await sleep(50);
  assert.ok(!pidRunning(pid), `the server did not exit within ${SHUTDOWN_MS} ms of SIGTERM`);
  await srv.close();
  await assertNsEmpty(namespaces, 'after the server exited');
  if (ON_DOCKER) {
    const deadline = Date.now() + 10_000;
    let left = [];
    do {
      left = await containersOf(pid);
      if (left.length === 0) break;
      await sleep(100);
    } while (Date.now() < deadline);
    assert.deepEqual(
      left.map((c) => `${c.Names?.[0]} (${c.State})`),
      [],
      'containers left after the server exited',
    );
  }
}
