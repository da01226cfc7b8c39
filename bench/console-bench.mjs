// The console under load, as a script calling the REST API sees it: `onlyboxes console
// --with-worker` on a loopback port with a fresh database, a Bearer token, and wrk.
//
//   node bench/console-bench.mjs [--bin build/onlyboxes] [--runtime bubblewrap] [--duration 10]
//                                [--connections 32] [--sessions 100] [--md]
//
// Rows: POST /api/v1/commands/echo and a pythonExec task (POST /api/v1/tasks, sync) at
// --connections connections (wrk: answered (2xx) requests/s, p50/p90/p99; the embedded worker
// gets WORKER_MAX_INFLIGHT for every connection, so nothing is turned away for capacity); the console's idle RSS without and
// with the embedded worker; --sessions terminal sessions opened at once, then all asked `echo hi`
// at once (how many answered, how long it took) and the host memory each idle session costs
// (the growth of the PSS of the console and every process it started, per session).
// Needs wrk (apt-get install wrk).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { opt, flag, nowMs } from './lib.mjs';

const BIN = opt('bin', new URL('../build/onlyboxes', import.meta.url).pathname);
const RUNTIME = opt('runtime', 'bubblewrap');
const DURATION = Number(opt('duration', '10'));
const CONNECTIONS = Number(opt('connections', '32'));
const SESSIONS = Number(opt('sessions', '100'));
const MD = flag('md');

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
  return { proc, base, token, stop };
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

const rows = [];
const notes = [];

// Idle RSS, without and with the embedded worker.
{
  const c = await startConsole(false);
  await sleep(2000);
  notes.push(`console idle RSS (no worker): ${rssOf(c.proc.pid).toFixed(1)} MiB (goal <= 20 MB)`);
  await c.stop();
}

// Capacity for every connection and session at once: the rows measure speed, not admission.
const con = await startConsole(true, {
  ONLYBOXES_MAX_SESSIONS: String(Math.max(64, SESSIONS + 8)),
  WORKER_MAX_INFLIGHT: String(Math.min(256, Math.max(64, CONNECTIONS * 2, SESSIONS + 8))),
});
try {
  // The worker's first box, so the pool is up before anything is timed.
  const warm = await api(con, 'POST', '/api/v1/commands/terminal', { command: 'true' });
  if (warm.status !== 200) throw new Error(`terminal warm-up failed: ${JSON.stringify(warm)}`);
  await sleep(RUNTIME === 'docker' ? 5000 : 1000);
  notes.push(`console idle RSS (embedded worker, ${RUNTIME}): ${rssOf(con.proc.pid).toFixed(1)} MiB`);

  const echo = wrk(con, '/api/v1/commands/echo', { message: 'hi' });
  rows.push({
    name: `REST POST /api/v1/commands/echo, ${CONNECTIONS} connections (wrk)`,
    ...echo,
    goal: '>= 5000 req/s, p99 <= 10 ms',
  });
  const py = wrk(con, '/api/v1/tasks', { capability: 'pythonExec', input: { code: 'print(1)' }, mode: 'sync' });
  rows.push({
    name: `REST pythonExec task (sync), ${CONNECTIONS} connections, embedded worker (${RUNTIME})`,
    ...py,
    goal: '-',
  });

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

const f = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
if (MD) {
  for (const r of rows)
    console.log(
      `| ${r.name}: ${f(r.rps)} req/s answered 2xx${r.non2xx ? `, ${r.non2xx} non-2xx` : ''}${r.sockErr ? `, socket errors ${r.sockErr}` : ''} | wrk | ${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} | ${r.goal} |`,
    );
  for (const n of notes) console.log(`| ${n} | | | | | |`);
} else {
  for (const r of rows)
    console.log(
      `${r.name}: ${f(r.rps)} req/s (2xx)  p50=${f(r.p50)}  p90=${f(r.p90)}  p99=${f(r.p99)} ms  non-2xx=${r.non2xx}` +
        (r.sockErr ? `  socket errors: ${r.sockErr}` : '') +
        `  goal ${r.goal}`,
    );
  for (const n of notes) console.log(n);
}
