// SPDX-License-Identifier: Apache-2.0
// Resource abuse from inside a box, each attempt on a fresh server: it must be stopped by its limit
// with a clear result, while another session of the same server keeps answering `echo hi` before,
// during and after (how fast is reported; a session that stops answering fails the attempt). Afterwards the host's /proc must show the box back to
// its idle processes (nothing left running, no zombie), and once the server exits, no process of
// any of its boxes (and, with docker, no container). Runs on the runtime named by ONLYBOXES_RUNTIME
// (bubblewrap when unset).

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  LIMITS,
  ON_DOCKER,
  RUNTIME,
  assertNoProcess,
  assertNsSettled,
  closeAndCheck,
  findProcesses,
  marker,
  nsProcesses,
  resultText,
  serverEnv,
  serverTest,
  sessionNs,
  sleep,
  underLoad,
  watchNs,
} from './lib.mjs';

/** Exit codes a command printed as `@name=$?` lines. */
function codes(stdout) {
  return Object.fromEntries([...stdout.matchAll(/^@(\w+)=(\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

function describeRun(r) {
  return JSON.stringify(r).slice(0, 2000);
}

/**
 * Declares one attempt: a fresh server, a session for the attacker, a second session timed by
 * underLoad(), then the host-side checks. fn(ctx) runs the attack and returns what to report.
 */
function attempt(name, fn, opts = {}) {
  serverTest(name, { serverOptions: { env: serverEnv(opts.env) }, skip: opts.skip }, async (srv, t) => {
    const { session_id } = await srv.sh('true');
    const ns = await sessionNs(srv, session_id);
    await sleep(300); // the session's next shell is started ahead of time; count it in
    const idle = nsProcesses(ns).length;
    const watch = watchNs(ns);
    let figures;
    let peak;
    try {
      figures = await underLoad(srv, () => fn({ srv, session_id, ns }));
    } finally {
      peak = await watch.stop();
    }
    t.diagnostic(
      `${RUNTIME}: ${figures.result ?? ''} | box peak ${peak.max} processes, ${peak.maxZombies} zombies | ` +
        `echo hi on another session: before ${figures.before} ms, during ${figures.during} ms ` +
        `(${figures.duringSamples} samples), after ${figures.after} ms`,
    );
    if (opts.peak) opts.peak(peak);
    await assertNsSettled(ns, idle, 'after the attack');
    const again = await srv.sh('echo again', { session_id });
    assert.equal(again.stdout, 'again\n', 'the attacked session answers again');
    const other = await srv.sh('readlink /proc/self/ns/pid');
    await closeAndCheck(srv, [ns, other.stdout.trim()]);
  });
}

/** A call that must end with deadline_exceeded; returns its text. */
async function deadline(srv, name, args) {
  const r = await srv.call(name, args);
  assert.equal(r.isError, true, `expected a timeout: ${describeRun(r)}`);
  const text = resultText(r);
  assert.match(text, /deadline_exceeded/, text);
  return text;
}

describe(`resource abuse (${RUNTIME})`, () => {
  attempt(
    'fork bomb: stopped at the process limit, killed at the timeout',
    async ({ srv, session_id }) => {
      await deadline(srv, 'terminalExec', {
        // bash retries a fork that hits the limit, the one for sleep included (dash gives up at
        // once: a dash bomb dies out within a few hundred ms of reaching it, between two samples
        // of the watcher, and the command could end before its timeout).
        command: "bash -c 'b(){ b|b& }; b; sleep 1000'",
        session_id,
        timeout_ms: 6000,
      });
      return `fork bomb killed at timeout_ms 6000`;
    },
    {
      peak: (p) => {
        assert.ok(p.max <= LIMITS.pids, `${p.max} processes in the box, limit ${LIMITS.pids}`);
        assert.ok(p.max >= LIMITS.pids / 2, `the bomb never multiplied (peak ${p.max}): the test proved nothing`);
      },
    },
  );

  attempt('memory bomb: a Python process allocating GBs is stopped', async ({ srv, session_id }) => {
    const big = await srv.sh("python3 -c 'b = bytearray(8 << 30)'", { session_id, timeout_ms: 60_000 });
    assert.notEqual(big.exit_code, 0, describeRun(big));
    assert.ok(/MemoryError/.test(big.stderr) || big.exit_code === 137, describeRun(big));
    // Touched memory, 32 MiB at a time, until the address-space limit (MemoryError) or the
    // container's memory cgroup (SIGKILL, 137) stops it.
    const grow = await srv.sh(
      `python3 -c '
import sys
chunks = []
try:
    while True:
        chunks.append(bytearray(b"x") * (32 << 20))
        print(len(chunks) * 32, flush=True)
except MemoryError:
    print("MemoryError", flush=True)
'; echo @py=$?`,
      { session_id, timeout_ms: 60_000 },
    );
    const mib = Math.max(0, ...grow.stdout.split('\n').filter((l) => /^\d+$/.test(l)).map(Number));
    const limit = ON_DOCKER ? Math.min(LIMITS.memoryMiB, LIMITS.dockerMemoryMiB) : LIMITS.memoryMiB;
    const stopped = /MemoryError/.test(grow.stdout) ? 'MemoryError' : `exit ${codes(grow.stdout).py}`;
    assert.ok(stopped === 'MemoryError' || codes(grow.stdout).py === 137, describeRun(grow));
    assert.ok(mib > 0 && mib <= limit, `reached ${mib} MiB, limit ${limit} MiB`);
    return `8 GiB at once: refused; growing: stopped at ${mib} MiB by ${stopped} (limit ${limit} MiB)`;
  });

  attempt(
    "memory across processes: together they are held to the box's limit",
    async ({ srv, session_id }) => {
      const limit = ON_DOCKER ? LIMITS.dockerMemoryMiB : LIMITS.memoryMiB;
      const each = Math.floor(limit * 0.4); // 4 of them: 1.6 times the limit, each well below it
      const r = await srv.sh(
        `python3 -c '
import subprocess
code = "import time\\nb = bytearray(${each} << 20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\ntime.sleep(3)"
ps = [subprocess.Popen(["python3", "-c", code]) for _ in range(4)]
print("codes", *[p.wait() for p in ps])
'`,
        { session_id, timeout_ms: 60_000 },
      );
      const m = /codes (.*)/.exec(r.stdout);
      assert.ok(m, describeRun(r));
      const codes = m[1].trim().split(/\s+/).map(Number);
      const survivors = codes.filter((c) => c === 0).length;
      assert.ok(codes.some((c) => c === -9), `no process was killed: ${codes.join(' ')}`);
      assert.ok(survivors * each <= limit, `${survivors} x ${each} MiB survived, limit ${limit} MiB`);
      return `4 processes of ${each} MiB: exit codes ${codes.join(' ')} (box limit ${limit} MiB)`;
    },
    {
      skip:
        !ON_DOCKER && process.getuid?.() !== 0
          ? 'the bubblewrap runtime limits a box\'s total memory only when the worker may create cgroups (root)'
          : false,
    },
  );

  attempt('disk fill of /workspace with one file: stopped at its limit', async ({ srv, session_id }) => {
    const limit = Math.min(LIMITS.workspaceMiB, LIMITS.fileMiB, ON_DOCKER ? LIMITS.dockerMemoryMiB : Infinity);
    const r = await srv.sh(
      `dd if=/dev/zero of=/workspace/fill bs=1M count=${limit + 512} 2>&1; echo @dd=$?; ` +
        'du -m --apparent-size /workspace/fill; rm -f /workspace/fill',
      { session_id, timeout_ms: 120_000 },
    );
    assert.notEqual(codes(r.stdout).dd, 0, describeRun(r));
    const mib = Number(/^(\d+)\s+\/workspace\/fill/m.exec(r.stdout)?.[1] ?? NaN);
    assert.ok(mib > 0 && mib <= limit, `the file reached ${mib} MiB, limit ${limit} MiB: ${describeRun(r)}`);
    return `stopped at ${mib} MiB (exit ${codes(r.stdout).dd}, limit ${limit} MiB)`;
  });

  attempt(
    "disk fill of /workspace with many files: the workspace's total is capped",
    async ({ srv, session_id }) => {
      const limit = Math.min(LIMITS.workspaceMiB, ON_DOCKER ? LIMITS.dockerMemoryMiB : Infinity);
      const r = await srv.sh(
        'for i in $(seq 1 12); do dd if=/dev/zero of=/workspace/fill$i bs=1M count=64 2>/dev/null || break; done; ' +
          'echo @i=$i; du -sm /workspace; rm -f /workspace/fill*',
        { session_id, timeout_ms: 120_000 },
      );
      const mib = Number(/^(\d+)\s+\/workspace$/m.exec(r.stdout)?.[1] ?? NaN);
      assert.ok(mib > 0 && mib <= limit, `the workspace reached ${mib} MiB, limit ${limit} MiB: ${describeRun(r)}`);
      return `stopped at ${mib} MiB in all (limit ${limit} MiB)`;
    },
  );

  for (const [dir, limit] of [
    ['/tmp', LIMITS.tmpMiB],
    ['/dev/shm', LIMITS.shmMiB],
  ]) {
    attempt(`disk fill of ${dir}: stopped at its size`, async ({ srv, session_id }) => {
      const cap = ON_DOCKER ? Math.min(limit, LIMITS.dockerMemoryMiB) : limit;
      const r = await srv.sh(
        `dd if=/dev/zero of=${dir}/fill bs=1M count=${limit * 2} 2>&1; echo @dd=$?; ` +
          `du -m ${dir}/fill; rm -f ${dir}/fill`,
        { session_id, timeout_ms: 120_000 },
      );
      assert.notEqual(codes(r.stdout).dd, 0, describeRun(r));
      assert.ok(/No space left on device/.test(r.stdout) || codes(r.stdout).dd === 137, describeRun(r));
      const mib = Number(new RegExp(`^(\\d+)\\s+${dir}/fill`, 'm').exec(r.stdout)?.[1] ?? NaN);
      assert.ok(mib >= 0 && mib <= cap, `${dir}/fill reached ${mib} MiB, limit ${cap} MiB: ${describeRun(r)}`);
      return `stopped at ${mib} MiB (exit ${codes(r.stdout).dd}, limit ${cap} MiB)`;
    });
  }

  attempt('output flood: stdout and stderr cut at the limit and flagged', async ({ srv, session_id }) => {
    const out = await srv.sh("head -c 50000000 /dev/zero | tr '\\0' x", { session_id, timeout_ms: 60_000 });
    assert.equal(out.stdout_truncated, true, 'stdout_truncated not set');
    assert.equal(Buffer.byteLength(out.stdout), LIMITS.outputBytes, 'stdout not cut at the limit');
    const err = await srv.sh("head -c 50000000 /dev/zero | tr '\\0' y >&2", { session_id, timeout_ms: 60_000 });
    assert.equal(err.stderr_truncated, true, 'stderr_truncated not set');
    assert.equal(Buffer.byteLength(err.stderr), LIMITS.outputBytes);
    // Two-byte characters: the cut lands on a character boundary, never inside one.
    const utf = await srv.sh('yes é | head -c 5000001', { session_id, timeout_ms: 60_000 });
    assert.equal(utf.stdout_truncated, true);
    assert.ok(Buffer.byteLength(utf.stdout) <= LIMITS.outputBytes);
    assert.ok(!utf.stdout.includes('\uFFFD'), 'the cut split a character');
    const py = await srv.ok('pythonExec', {
      code: 'import sys\nfor _ in range(500):\n    sys.stdout.write("z" * 100000)',
      timeout_ms: 60_000,
    });
    assert.equal(py.output_truncated, true, 'pythonExec output_truncated not set');
    assert.equal(Buffer.byteLength(py.output), LIMITS.outputBytes);
    return `50 MB on stdout and stderr, 50 MB from pythonExec: each kept ${LIMITS.outputBytes} bytes, flagged`;
  });

  attempt('infinite loops: killed at timeout_ms, no process left', async ({ srv, session_id }) => {
    const m = marker('loop');
    const t0 = Date.now();
    await deadline(srv, 'terminalExec', {
      command: `python3 -c 'while True: pass' ${m}`,
      session_id,
      timeout_ms: 1500,
    });
    const took = Date.now() - t0;
    await assertNoProcess(m, 3000, 'terminalExec loop after its timeout');
    const p = marker('pyloop');
    await deadline(srv, 'pythonExec', {
      code: `import os\nos.execv("/usr/bin/python3", ["python3", "-c", "while True: pass", "${p}"])`,
      timeout_ms: 1500,
    });
    await assertNoProcess(p, 3000, 'pythonExec loop after its timeout');
    return `terminalExec and pythonExec loops stopped at timeout_ms 1500 (answer after ${took} ms)`;
  });

  attempt('processes that ignore SIGTERM (and leave the session) are still killed', async ({ srv, session_id }) => {
    const a = marker('noterm');
    const b = marker('setsid');
    assert.equal(findProcesses(a).length + findProcesses(b).length, 0);
    await deadline(srv, 'terminalExec', {
      command:
        `python3 -c '
import signal, time
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
while True:
    time.sleep(0.1)
' ${a} & ` +
        `setsid sh -c 'trap "" TERM INT HUP; while :; do sleep 1; done' ${b} & ` +
        'wait',
      session_id,
      timeout_ms: 2000,
    });
    await assertNoProcess(a, 3000, 'the SIGTERM-ignoring Python');
    await assertNoProcess(b, 3000, 'the setsid shell ignoring SIGTERM');
    return 'SIGTERM-ignoring processes, one in its own session, killed at timeout_ms 2000';
  });

  attempt(
    'zombie factory: bounded by the process limit, all reaped',
    async ({ srv, session_id }) => {
      const r = await srv.sh(
        `python3 -c '
import os, time
n = 0
try:
    while n < 5000:
        if os.fork() == 0:
            os._exit(0)
        n += 1
except OSError as e:
    print("fork failed:", e.strerror)
print("zombies", n, flush=True)
time.sleep(2)
'`,
        { session_id, timeout_ms: 60_000 },
      );
      const n = Number(/zombies (\d+)/.exec(r.stdout)?.[1] ?? NaN);
      assert.match(r.stdout, /fork failed/, `the factory was not stopped: ${describeRun(r)}`);
      assert.ok(n < LIMITS.pids, `${n} zombies, limit ${LIMITS.pids} processes`);
      return `${n} unreaped children, then fork failed at the process limit`;
    },
    {
      peak: (p) => {
        assert.ok(p.max <= LIMITS.pids, `${p.max} processes in the box, limit ${LIMITS.pids}`);
        assert.ok(p.maxZombies >= LIMITS.pids / 2, `only ${p.maxZombies} zombies seen: the test proved nothing`);
      },
    },
  );

  attempt(
    'thread bomb: bounded by the process limit',
    async ({ srv, session_id }) => {
      const r = await srv.sh(
        `python3 -c '
import threading, time
threading.stack_size(256 << 10)
ev = threading.Event()
n = 0
try:
    while n < 5000:
        threading.Thread(target=ev.wait, daemon=True).start()
        n += 1
except RuntimeError as e:
    print("thread failed:", e)
print("threads", n, flush=True)
time.sleep(1)
ev.set()
'`,
        { session_id, timeout_ms: 60_000 },
      );
      const n = Number(/threads (\d+)/.exec(r.stdout)?.[1] ?? NaN);
      assert.match(r.stdout, /thread failed/, `the thread bomb was not stopped: ${describeRun(r)}`);
      assert.ok(n < LIMITS.pids, `${n} threads, limit ${LIMITS.pids}`);
      return `${n} threads, then the process limit refused more`;
    },
  );

  attempt('file descriptor exhaustion: stopped at the open-files limit', async ({ srv, session_id }) => {
    const r = await srv.sh(
      `python3 -c '
fs = []
try:
    while len(fs) < 100000:
        fs.append(open("/dev/null"))
except OSError as e:
    print("open failed:", e.strerror)
print("files", len(fs))
'`,
      { session_id, timeout_ms: 60_000 },
    );
    const n = Number(/files (\d+)/.exec(r.stdout)?.[1] ?? NaN);
    assert.match(r.stdout, /open failed: Too many open files/, describeRun(r));
    assert.ok(n < LIMITS.nofile, `${n} files open, limit ${LIMITS.nofile}`);
    return `${n} files, then EMFILE`;
  });
});
