// Latency of `onlyboxes mcp --stdio` as an MCP client sees it: raw JSON-RPC lines over the
// child's stdin/stdout (no SDK overhead), timed with process.hrtime.
//
//   node bench/stdio-bench.mjs [--bin build/onlyboxes] [--runtime bubblewrap] [--n 200]
//                              [--pause MS] [--idle K] [--md]
//
// Prints p50/p90/p99 for: start -> initialize answered, terminalExec `echo hi` on a live
// session, pythonExec `print(1)` (pool hit: the client pauses --pause ms between calls, as a model
// does, so the warm pool is refilled; back to back; pool miss), the floor (bubblewrap + python3 run
// directly), and the host memory an idle session costs (K sessions: the growth of onlyboxes' RSS
// per session and, on docker, each box's containerd-shim; the agent inside the box is charged to
// the box's own cgroup and shown apart).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { opt, flag, nowMs, pct } from './lib.mjs';

const BIN = opt('bin', new URL('../build/onlyboxes', import.meta.url).pathname);
const RUNTIME = opt('runtime', 'bubblewrap');
const N = Number(opt('n', '200'));
const MD = flag('md');
// A docker box takes far longer to start than bubblewrap's: the refill needs a longer pause.
const PAUSE = Number(opt('pause', RUNTIME === 'docker' ? '1500' : '100'));
const IDLE = Number(opt('idle', '10'));



function startServer() {
  const child = spawn(BIN, ['mcp', '--stdio', '--runtime', RUNTIME], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env },
  });
  const pending = new Map();
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.id !== undefined && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  });
  let next = 1;
  const request = (method, params) =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    });
  return { child, request };
}

const initParams = {
  protocolVersion: '2025-11-25',
  capabilities: {},
  clientInfo: { name: 'bench', version: '0' },
};

async function benchStart(n) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    const { child, request } = startServer();
    await request('initialize', initParams);
    samples.push(nowMs() - t0);
    child.stdin.end();
    await new Promise((r) => child.on('exit', r));
  }
  return samples;
}

async function benchCalls() {
  const { child, request } = startServer();
  await request('initialize', initParams);
  child.stdin.write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n');
  const call = (name, a) => request('tools/call', { name, arguments: a });
  const first = await call('terminalExec', { command: 'echo hi' });
  const sid = first.result.structuredContent.session_id;
  const term = [];
  for (let i = 0; i < N; i++) {
    const t0 = nowMs();
    const r = await call('terminalExec', { command: 'echo hi', session_id: sid });
    term.push(nowMs() - t0);
    if (r.result?.structuredContent?.stdout !== 'hi\n')
      throw new Error(`bad terminal answer: ${JSON.stringify(r).slice(0, 600)}`);
  }
  // A pool hit: the client pauses (as a model does between calls) so the pool is refilled.
  const py = await pythonSeries(call, Math.max(20, N / 4), PAUSE);
  // Back to back: the refill of the pool overlaps the next call.
  const pyBurst = await pythonSeries(call, Math.max(20, N / 4), 0);
  child.stdin.end();
  await new Promise((r) => child.on('exit', r));
  return { term, py, pyBurst };
}

async function pythonSeries(call, n, pauseMs) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
    const t0 = nowMs();
    const r = await call('pythonExec', { code: 'print(1)' });
    samples.push(nowMs() - t0);
    if (r.result?.structuredContent?.output !== '1\n')
      throw new Error(`bad python answer: ${JSON.stringify(r).slice(0, 600)}`);
  }
  return samples;
}

async function benchPoolMiss(n) {
  process.env.ONLYBOXES_WARM_POOL = '0';
  const { child, request } = startServer();
  delete process.env.ONLYBOXES_WARM_POOL;
  await request('initialize', initParams);
  const samples = await pythonSeries((name, a) => request('tools/call', { name, arguments: a }), n, 0);
  child.stdin.end();
  await new Promise((r) => child.on('exit', r));
  return samples;
}

function benchFloor(n) {
  const samples = [];
  const bwrap = ['--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr',
    '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64',
    '/lib64', '--proc', '/proc', '--dev', '/dev', '--', '/usr/bin/python3', '-c', 'print(1)'];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    spawnSync('bwrap', bwrap);
    samples.push(nowMs() - t0);
  }
  return samples;
}

/* ---- idle session memory ---- */

function memOf(pid) {
  const kb = (text, key) => Number((new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text) || [])[1] || 0);
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return { rss: kb(status, 'VmRSS') / 1024, pss: kb(roll, 'Pss') / 1024 };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

function engineGet(path) {
  const h = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: h.replace('unix://', ''), path }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(JSON.parse(body)));
    });
    req.on('error', reject);
    req.end();
  });
}

/** host pids of containerd-shim processes by container id, from the host's process table */
function shims() {
  const out = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).stdout;
  const m = new Map();
  for (const line of out.split('\n')) {
    const r = /^\s*(\d+) .*containerd-shim.* -id ([0-9a-f]{64})/.exec(line);
    if (r) m.set(r[2], Number(r[1]));
  }
  return m;
}

async function benchIdle(k) {
  const { child, request } = startServer();
  await request('initialize', initParams);
  const call = (name, a) => request('tools/call', { name, arguments: a });
  await call('terminalExec', { command: 'true' }); // the first session and the pool are up
  await new Promise((r) => setTimeout(r, RUNTIME === 'docker' ? 5000 : 1000));
  const before = memOf(child.pid);
  for (let i = 0; i < k; i++) {
    const r = await call('terminalExec', { command: 'echo hi' });
    if (r.result?.structuredContent?.stdout !== 'hi\n') throw new Error(JSON.stringify(r));
  }
  await new Promise((r) => setTimeout(r, RUNTIME === 'docker' ? 8000 : 2000)); // refills settle
  const after = memOf(child.pid);
  const res = {
    base_rss: before.rss,
    worker_rss: (after.rss - before.rss) / k,
    worker_pss: (after.pss - before.pss) / k,
  };
  if (RUNTIME === 'docker') {
    const f = encodeURIComponent(JSON.stringify({ label: [`onlyboxes.owner-pid=${child.pid}`] }));
    const list = await engineGet(`/containers/json?filters=${f}`);
    const sh = shims();
    const shimMem = [];
    const agentMem = [];
    for (const c of list) {
      if (sh.has(c.Id)) shimMem.push(memOf(sh.get(c.Id)));
      const info = await engineGet(`/containers/${c.Id}/json`);
      if (info.State?.Pid) agentMem.push(memOf(info.State.Pid));
    }
    const avg = (a, key) => a.reduce((s, x) => s + x[key], 0) / Math.max(1, a.length);
    Object.assign(res, {
      boxes: list.length,
      shim_rss: avg(shimMem, 'rss'),
      shim_pss: avg(shimMem, 'pss'),
      agent_rss: avg(agentMem, 'rss'),
      agent_pss: avg(agentMem, 'pss'),
    });
  }
  child.stdin.end();
  await new Promise((r) => child.on('exit', r));
  return res;
}

const rows = [];
const row = (name, s, goal) =>
  rows.push({ name, n: s.length, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), goal });

row('mcp --stdio start -> initialize answered', await benchStart(Math.max(10, N / 10)), '<= 50 ms');
const { term, py, pyBurst } = await benchCalls();
const dockerGoals = RUNTIME === 'docker';
row(`terminalExec "echo hi", live session (${RUNTIME})`, term, dockerGoals ? '<= 5 ms' : '<= 3 ms');
row(`pythonExec "print(1)" (${RUNTIME}, pool hit, ${PAUSE} ms pause)`, py, dockerGoals ? '<= 60 ms' : '<= 30 ms');
row(`pythonExec "print(1)" (${RUNTIME}, back to back)`, pyBurst, '-');
row(`pythonExec "print(1)" (${RUNTIME}, pool miss)`, await benchPoolMiss(Math.max(20, N / 4)), '-');
row('floor: bwrap + python3 -c print(1), no onlyboxes', benchFloor(Math.max(20, N / 4)), '-');
const idle = IDLE > 0 ? await benchIdle(IDLE) : null;

if (MD) {
  console.log('| measurement | n | p50 ms | p90 ms | p99 ms | goal |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.name} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.goal} |`);
} else {
  for (const r of rows)
    console.log(`${r.name.padEnd(55)} n=${String(r.n).padStart(4)}  p50=${r.p50.toFixed(2)}  p90=${r.p90.toFixed(2)}  p99=${r.p99.toFixed(2)}  goal ${r.goal}`);
}
if (idle) {
  const f = (x) => (x === undefined ? '-' : x.toFixed(2));
  console.log(`onlyboxes mcp --stdio (${RUNTIME}) RSS at rest, one session open and the pool filled: ${f(idle.base_rss)} MiB`);
  console.log(
    `idle session (${RUNTIME}, ${IDLE} sessions), MiB per session: onlyboxes RSS +${f(idle.worker_rss)} ` +
      `(PSS +${f(idle.worker_pss)})` +
      (RUNTIME === 'docker'
        ? `; containerd-shim RSS ${f(idle.shim_rss)} (PSS ${f(idle.shim_pss)}); ` +
          `host overhead (onlyboxes + shim, PSS) ${f(idle.worker_pss + idle.shim_pss)}; ` +
          `agent in the box RSS ${f(idle.agent_rss)} (PSS ${f(idle.agent_pss)}, charged to the box's cgroup)`
        : ''),
  );
}
