// The console under load, as a script calling the REST API sees it: `onlyboxes console
// --with-worker` on a loopback port with a fresh database, a Bearer token, and wrk; then the same
// through remote workers: `onlyboxes console` and `onlyboxes worker` processes provisioned on it
// and connected over gRPC on loopback.
//
//   node bench/console-bench.mjs [--bin build/onlyboxes] [--runtime bubblewrap] [--duration 10]
//                                [--connections 32] [--sessions 100] [--n 300] [--concurrent 1000]
//                                [--sleep 5] [--md]
//
// Rows, for the embedded worker and for a remote one: POST /api/v1/commands/echo and a pythonExec
// task (POST /api/v1/tasks, sync) at --connections connections (wrk: answered (2xx) requests/s,
// p50/p90/p99; the worker gets WORKER_MAX_INFLIGHT for every connection, so nothing is turned
// away for capacity); terminalExec `echo hi` on a live session (POST /api/v1/commands/terminal,
// --n calls one after another) and a pythonExec task, sync, one after another (--n / 3): the
// latency one caller sees. Embedded only: the console's idle RSS without and with the embedded
// worker; --sessions terminal sessions opened at once, then all asked `echo hi` at once (how many
// answered, how long it took) and the host memory each idle session costs (the growth of the PSS
// of the console and every process it started, per session). Remote only: an idle worker's RSS;
// --concurrent calls `sleep --sleep` waiting on remote workers at once (over enough workers: one
// runs at most 256 calls of a capability), with the console's thread count and RSS at their peak:
// a call waiting on a remote worker holds no console thread. The calls are async tasks, one on
// each of --concurrent terminal sessions opened beforehand, so that they all wait at once.
// Needs wrk (apt-get install wrk) and tests/integration/node_modules (npm ci there).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { opt, flag, nowMs, pct } from './lib.mjs';
import { startRemoteWorker } from '../tests/integration/interop/binary.mjs';

const BIN = opt('bin', new URL('../build/onlyboxes', import.meta.url).pathname);
const RUNTIME = opt('runtime', 'bubblewrap');
const DURATION = Number(opt('duration', '10'));
const CONNECTIONS = Number(opt('connections', '32'));
const SESSIONS = Number(opt('sessions', '100'));
const N = Number(opt('n', '300'));
const CONCURRENT = Number(opt('concurrent', '1000'));
const SLEEP_S = Number(opt('sleep', '5'));
const MD = flag('md');
const REMOTE_MAX_INFLIGHT = 256; // WORKER_MAX_INFLIGHT's upper bound

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function pssOf(pid) {
  try {
    const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return Number(/^Pss:\s+(\d+) kB/m.exec(roll)[1]) / 1024;
  } catch {
    return 0;
  }
}

function rssOf(pid) {
  try {
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return 0;
  }
}

function threadsOf(pid) {
  try {
    return Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  } catch {
    return 0;
  }
}

/** pid and every descendant, from /proc */
function tree(root) {
  const children = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch {}
  }
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const c of children.get(p) || []) walk(c);
  };
  walk(root);
  return out;
}

const treePss = (pid) => tree(pid).reduce((s, p) => s + pssOf(p), 0);

async function startConsole(withWorker, extraEnv = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-bench-'));
  const password = 'Bench-' + Math.random().toString(16).slice(2);
  const env = {
    ...process.env,
    CONSOLE_HTTP_ADDR: '127.0.0.1:0',
    CONSOLE_GRPC_ADDR: '127.0.0.1:0',
    CONSOLE_DB_PATH: path.join(dir, 'console.db'),
    CONSOLE_HASH_KEY: 'bench-' + Math.random().toString(16).slice(2),
    CONSOLE_DASHBOARD_USERNAME: 'bench',
    CONSOLE_DASHBOARD_PASSWORD: password,
    CONSOLE_LOG_LEVEL: 'warn',
    ONLYBOXES_RUNTIME: RUNTIME,
    ...extraEnv,
  };
  const proc = spawn(BIN, ['console', ...(withWorker ? ['--with-worker'] : [])], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`console did not start:\n${stderr}`)), 30000);
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on https?:\/\/[^\s]*:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${m[1]}`);
      }
    });
    proc.on('exit', () => reject(new Error(`console exited:\n${stderr}`)));
  });
  const login = await fetch(base + '/api/v1/console/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'bench', password }),
  });
  const cookie = /onlyboxes_console_session=[^;]+/.exec(login.headers.get('set-cookie') || '')?.[0];
  if (!cookie) throw new Error(`login failed: ${login.status} ${await login.text()}`);
  const tok = await fetch(base + '/api/v1/console/tokens', {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie },
    body: JSON.stringify({ name: 'bench' }),
  });
  const token = (await tok.json()).token;
  if (!token) throw new Error(`token creation failed: ${tok.status}`);
  const stop = async () => {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.on('exit', r));
    rmSync(dir, { recursive: true, force: true });
  };
  return { proc, base, token, cookie: cookie.slice(cookie.indexOf('=') + 1), stop };
}

function api(con, method, p, body) {
  return fetch(con.base + p, {
    method,
    headers: { authorization: `Bearer ${con.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, body: await r.json().catch(() => null) }));
}

// wrk with a Lua script for the method, body and headers; parses its --latency report.
function wrk(con, p, body) {
  const dir = mkdtempSync(path.join(tmpdir(), 'obx-wrk-'));
  const script = path.join(dir, 'post.lua');
  writeFileSync(
    script,
    [
      'wrk.method = "POST"',
      `wrk.body = ${JSON.stringify(JSON.stringify(body))}`,
      'wrk.headers["Content-Type"] = "application/json"',
      `wrk.headers["Authorization"] = "Bearer ${con.token}"`,
      'local bad = 0',
      'response = function(status, headers, body) if status ~= 200 then bad = bad + 1 end end',
      'done = function(summary, latency, requests)',
      '  io.write(string.format("OBX p50=%f p90=%f p99=%f non2xx=%d requests=%d\\n",',
      '    latency:percentile(50) / 1000, latency:percentile(90) / 1000,',
      '    latency:percentile(99) / 1000, summary.errors.status, summary.requests))',
      'end',
    ].join('\n'),
  );
  const threads = Math.min(2, CONNECTIONS);
  const r = spawnSync(
    'wrk',
    ['-t', String(threads), '-c', String(CONNECTIONS), '-d', `${DURATION}s`, '--timeout', '30s', '-s', script, con.base + p],
    { encoding: 'utf8' },
  );
  rmSync(dir, { recursive: true, force: true });
  if (r.error) throw new Error(`wrk: ${r.error.message} (apt-get install wrk)`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const m = /OBX p50=([\d.]+) p90=([\d.]+) p99=([\d.]+) non2xx=(\d+) requests=(\d+)/.exec(r.stdout);
  const sockErr = /Socket errors: (.*)/.exec(r.stdout)?.[1];
  if (!m) throw new Error(`wrk output not understood:\n${r.stdout}\n${r.stderr}`);
  const [non2xx, requests] = [Number(m[4]), Number(m[5])];
  // Only answered calls count: a 429 (no capacity) is quick and would flatter the rate.
  const okRps = requests ? (rps * (requests - non2xx)) / requests : 0;
  return { rps: okRps, p50: Number(m[1]), p90: Number(m[2]), p99: Number(m[3]), non2xx, sockErr };
}

/** n calls of call() one after another; each must answer as ok() says. Latency samples in ms. */
async function sequential(n, call, ok) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    const r = await call(i);
    samples.push(nowMs() - t0);
    if (!ok(r)) throw new Error(`unexpected answer: ${JSON.stringify(r)}`);
  }
  return { n, p50: pct(samples, 50), p90: pct(samples, 90), p99: pct(samples, 99) };
}

/** The latency rows every worker gets: terminalExec on a live session, a pythonExec task. */
async function latencyRows(con, where, rows) {
  const session = `bench-${Math.random().toString(16).slice(2)}`;
  const made = await api(con, 'POST', '/api/v1/commands/terminal', { command: 'true', session_id: session, create_if_missing: true, lease_ttl_sec: 600 });
  if (made.status !== 200) throw new Error(`terminal session: ${JSON.stringify(made)}`);
  rows.push({
    name: `terminalExec "echo hi", live session, REST POST /api/v1/commands/terminal, one caller, ${where}`,
    ...(await sequential(
      N,
      () => api(con, 'POST', '/api/v1/commands/terminal', { command: 'echo hi', session_id: session }),
      (r) => r.status === 200 && r.body?.stdout === 'hi\n',
    )),
    goal: '<= 2 ms',
  });
  rows.push({
    name: `pythonExec "print(1)" task (sync), REST POST /api/v1/tasks, one caller, ${where}`,
    ...(await sequential(
      Math.max(5, Math.round(N / 3)),
      () => api(con, 'POST', '/api/v1/tasks', { capability: 'pythonExec', input: { code: 'print(1)' }, mode: 'sync' }),
      (r) => r.status === 200 && r.body?.result?.output === '1\n',
    )),
    goal: '-',
  });
}

const embedded = { rows: [], notes: [] };
const remote = { rows: [], notes: [] };

// Idle RSS, without and with the embedded worker.
{
  const c = await startConsole(false);
  await sleep(2000);
  embedded.notes.push(`console idle RSS (no worker): ${rssOf(c.proc.pid).toFixed(1)} MiB (goal <= 20 MB)`);
  await c.stop();
}

// Capacity for every connection and session at once: the rows measure speed, not admission.
const MAX_INFLIGHT = Math.min(REMOTE_MAX_INFLIGHT, Math.max(64, CONNECTIONS * 2, SESSIONS + 8));
const capacity = { ONLYBOXES_MAX_SESSIONS: String(Math.max(64, SESSIONS + 8)), WORKER_MAX_INFLIGHT: String(MAX_INFLIGHT) };

{
  const { rows, notes } = embedded;
  const con = await startConsole(true, capacity);
  try {
    // The worker's first box, so the pool is up before anything is timed.
    const warm = await api(con, 'POST', '/api/v1/commands/terminal', { command: 'true' });
    if (warm.status !== 200) throw new Error(`terminal warm-up failed: ${JSON.stringify(warm)}`);
    await sleep(RUNTIME === 'docker' ? 5000 : 1000);
    notes.push(`console idle RSS (embedded worker, ${RUNTIME}): ${rssOf(con.proc.pid).toFixed(1)} MiB`);

    const echo = wrk(con, '/api/v1/commands/echo', { message: 'hi' });
    rows.push({ name: `REST POST /api/v1/commands/echo, ${CONNECTIONS} connections (wrk), embedded worker`, ...echo, goal: '>= 5000 req/s, p99 <= 10 ms' });
    const py = wrk(con, '/api/v1/tasks', { capability: 'pythonExec', input: { code: 'print(1)' }, mode: 'sync' });
    rows.push({ name: `REST pythonExec task (sync), ${CONNECTIONS} connections (wrk), embedded worker (${RUNTIME})`, ...py, goal: '-' });
    await latencyRows(con, `embedded worker (${RUNTIME})`, rows);

    // Many sessions at once.
    await sleep(2000);
    const before = treePss(con.proc.pid);
    const t0 = nowMs();
    const opened = await Promise.all(
      Array.from({ length: SESSIONS }, () =>
        api(con, 'POST', '/api/v1/commands/terminal', { command: 'echo hi', lease_ttl_sec: 600, timeout_ms: 120000 }),
      ),
    );
    const openMs = nowMs() - t0;
    const ids = opened.filter((r) => r.status === 200 && r.body?.stdout === 'hi\n').map((r) => r.body.session_id);
    await sleep(RUNTIME === 'docker' ? 8000 : 2000);
    const after = treePss(con.proc.pid);
    const t1 = nowMs();
    const again = await Promise.all(
      ids.map((id) => api(con, 'POST', '/api/v1/commands/terminal', { command: 'echo hi', session_id: id })),
    );
    const againMs = nowMs() - t1;
    const answered = again.filter((r) => r.status === 200 && r.body?.stdout === 'hi\n').length;
    notes.push(
      `${SESSIONS} sessions opened at once: ${ids.length} answered in ${openMs.toFixed(0)} ms; ` +
        `then all asked at once: ${answered}/${ids.length} answered in ${againMs.toFixed(0)} ms`,
    );
    notes.push(
      `idle session host memory (${RUNTIME}; PSS of the console and every process it started, ` +
        `growth per session): ${((after - before) / Math.max(1, ids.length)).toFixed(2)} MiB` +
        (RUNTIME === 'docker' ? ' (containerd-shims are not the console\'s children: see stdio-bench)' : ''),
    );
  } finally {
    await con.stop();
  }
}

// Through remote workers: the console without a worker of its own, workers over gRPC on loopback.
{
  const { rows, notes } = remote;
  const con = await startConsole(false);
  const workers = [];
  const workerEnv = { ONLYBOXES_RUNTIME: RUNTIME, ONLYBOXES_LOG_LEVEL: 'warn' };
  try {
    // Sessions as for the embedded worker, and room for the calls without one below.
    workers.push(await startRemoteWorker(con.base, con.cookie, { ...workerEnv, ...capacity, ONLYBOXES_MAX_SESSIONS: '4096' }));
    const warm = await api(con, 'POST', '/api/v1/commands/terminal', { command: 'true' });
    if (warm.status !== 200) throw new Error(`terminal warm-up on the remote worker failed: ${JSON.stringify(warm)}`);
    await sleep(RUNTIME === 'docker' ? 5000 : 1000);
    const wpid = workers[0].worker.proc.pid;
    notes.push(`onlyboxes worker idle RSS (${RUNTIME}, connected, after one call): ${rssOf(wpid).toFixed(1)} MiB`);
    notes.push(`console idle RSS (no worker of its own, one remote worker connected): ${rssOf(con.proc.pid).toFixed(1)} MiB`);

    const echo = wrk(con, '/api/v1/commands/echo', { message: 'hi' });
    rows.push({ name: `REST POST /api/v1/commands/echo, ${CONNECTIONS} connections (wrk), remote worker`, ...echo, goal: '>= 5000 req/s, p99 <= 10 ms' });
    const py = wrk(con, '/api/v1/tasks', { capability: 'pythonExec', input: { code: 'print(1)' }, mode: 'sync' });
    rows.push({ name: `REST pythonExec task (sync), ${CONNECTIONS} connections (wrk), remote worker (${RUNTIME})`, ...py, goal: '-' });
    await latencyRows(con, `remote worker (${RUNTIME}, gRPC on loopback)`, rows);

    // Many calls waiting on remote workers at once: an async task `sleep` on each of CONCURRENT
    // terminal sessions opened beforehand (a box each), so that the calls reach their workers
    // quickly and all wait at the same time. Workers of their own, each taking 256 calls of a
    // capability, a quarter more of them than the calls need (sessions spread over workers by
    // load, not exactly evenly).
    await workers.shift().worker.stop();
    const nWorkers = Math.max(1, Math.ceil((CONCURRENT * 1.25) / REMOTE_MAX_INFLIGHT));
    while (workers.length < nWorkers)
      workers.push(await startRemoteWorker(con.base, con.cookie, { ...workerEnv, WORKER_MAX_INFLIGHT: String(REMOTE_MAX_INFLIGHT), ONLYBOXES_MAX_SESSIONS: '4096' }));
    const batches = async (n, size, fn) => {
      const out = [];
      for (let i = 0; i < n; i += size) out.push(...(await Promise.all(Array.from({ length: Math.min(size, n - i) }, (_, k) => fn(i + k)))));
      return out;
    };
    const tally = (answers, ok) => {
      const bad = {};
      for (const r of answers) if (!ok(r)) bad[`${r.status} ${r.body?.error?.code ?? r.body?.error ?? ''}`.trim()] = (bad[`${r.status} ${r.body?.error?.code ?? r.body?.error ?? ''}`.trim()] || 0) + 1;
      return Object.keys(bad).length ? ` (not: ${JSON.stringify(bad)})` : '';
    };
    const sid = (i) => `wait-${i}`;
    const openT = nowMs();
    const opened = await batches(CONCURRENT, 50, (i) =>
      api(con, 'POST', '/api/v1/commands/terminal', { command: 'true', session_id: sid(i), create_if_missing: true, lease_ttl_sec: 600, timeout_ms: 120000 }),
    );
    const openMs = nowMs() - openT;
    const openedOk = opened.filter((r) => r.status === 200).length;
    await sleep(2000);
    const idleThreads = threadsOf(con.proc.pid);
    const idleRss = rssOf(con.proc.pid);
    const peak = { inflight: 0, threads: 0, rss: 0 };
    const inflight = async () => {
      const r = await fetch(`${con.base}/api/v1/workers/inflight`, { headers: { cookie: `onlyboxes_console_session=${con.cookie}` } });
      const body = await r.json();
      let n = 0;
      for (const w of body.workers ?? []) for (const c of w.capabilities) n += c.inflight;
      return n;
    };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const n = await inflight();
        const threads = threadsOf(con.proc.pid);
        const rss = rssOf(con.proc.pid);
        if (n >= peak.inflight) Object.assign(peak, { inflight: n, threadsThen: threads, rssThen: rss });
        peak.threads = Math.max(peak.threads, threads);
        peak.rss = Math.max(peak.rss, rss);
        await sleep(50);
      }
    })();
    const t0 = nowMs();
    const accepted = await batches(CONCURRENT, 200, (i) =>
      api(con, 'POST', '/api/v1/tasks', { capability: 'terminalExec', input: { command: `sleep ${SLEEP_S}`, session_id: sid(i) }, mode: 'async', timeout_ms: 300000 }),
    );
    const submitMs = nowMs() - t0;
    const ids = accepted.filter((r) => r.status === 202).map((r) => r.body.task_id);
    while ((await inflight()) > 0 && nowMs() - t0 < 300000) await sleep(200);
    const allMs = nowMs() - t0;
    sampling = false;
    await sampler;
    const ended = await batches(ids.length, 50, (i) => api(con, 'GET', `/api/v1/tasks/${ids[i]}`));
    const succeeded = ended.filter((r) => r.body?.status === 'succeeded').length;
    const failedCodes = {};
    for (const r of ended) if (r.body?.status !== 'succeeded') failedCodes[`${r.body?.status} ${r.body?.error?.code ?? ''}`] = (failedCodes[`${r.body?.status} ${r.body?.error?.code ?? ''}`] || 0) + 1;
    notes.push(
      `${CONCURRENT} terminal sessions on ${workers.length} remote workers opened in ${openMs.toFixed(0)} ms, ${openedOk} answered${tally(opened, (r) => r.status === 200)}; ` +
        `then an async task "sleep ${SLEEP_S}" on each, submitted in ${submitMs.toFixed(0)} ms, ${ids.length} accepted${tally(accepted, (r) => r.status === 202)}: ` +
        `peak ${peak.inflight} in flight at once, ${succeeded}/${ids.length} succeeded${Object.keys(failedCodes).length ? ` (others: ${JSON.stringify(failedCodes)})` : ''}, ` +
        `all ended ${allMs.toFixed(0)} ms after the first; console threads ${idleThreads} before, ${peak.threadsThen} at the peak (max ${peak.threads}); ` +
        `console RSS ${idleRss.toFixed(1)} MiB before, ${peak.rssThen?.toFixed(1)} MiB at the peak (max ${peak.rss.toFixed(1)})`,
    );
  } finally {
    for (const w of workers) await w.worker.stop();
    await con.stop();
  }
}

const f = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const SECTIONS = [
  ['embedded worker: `onlyboxes console --with-worker`', embedded],
  ['remote worker: `onlyboxes console` and `onlyboxes worker` over gRPC on loopback', remote],
];
for (const [title, { rows, notes }] of SECTIONS) {
  if (MD) {
    console.log(`### ${title}\n`);
    console.log('| measurement | n | p50 ms | p90 ms | p99 ms | goal |');
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) {
      const name = r.rps === undefined ? r.name : `${r.name}: ${f(r.rps)} req/s answered 2xx${r.non2xx ? `, ${r.non2xx} non-2xx` : ''}${r.sockErr ? `, socket errors ${r.sockErr}` : ''}`;
      console.log(`| ${name} | ${r.rps === undefined ? r.n : 'wrk'} | ${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} | ${r.goal} |`);
    }
    for (const n of notes) console.log(`| ${n} | | | | | |`);
    console.log();
  } else {
    console.log(`${title}:`);
    for (const r of rows)
      console.log(
        `  ${r.name}: ${r.rps === undefined ? `n=${r.n}` : `${f(r.rps)} req/s (2xx)`}  p50=${f(r.p50)}  p90=${f(r.p90)}  p99=${f(r.p99)} ms` +
          `${r.non2xx ? `  non-2xx=${r.non2xx}` : ''}${r.sockErr ? `  socket errors: ${r.sockErr}` : ''}  goal ${r.goal}`,
      );
    for (const n of notes) console.log(`  ${n}`);
  }
}
