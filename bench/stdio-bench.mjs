// Latency of `onlyboxes mcp --stdio` as an MCP client sees it: raw JSON-RPC lines over the
// child's stdin/stdout (no SDK overhead), timed with process.hrtime.
//
//   node bench/stdio-bench.mjs [--bin build/onlyboxes] [--runtime bubblewrap] [--n 200]
//                              [--idle K] [--md]
//
// Prints p50/p90/p99 for: start -> initialize answered, terminalExec `echo hi` on a live
// session, and the host memory an idle session costs (K sessions: the growth of onlyboxes' RSS
// per session and, on docker, each box's containerd-shim; the agent inside the box is charged to
// the box's own cgroup and shown apart). pythonExec's rows are bench/python-bench.mjs's.
import { spawnSync } from 'node:child_process';
import { engineGet, flag, memOf, nowMs, opt, pct, startMcp } from './lib.mjs';

const BIN = opt('bin', new URL('../build/onlyboxes', import.meta.url).pathname);
const RUNTIME = opt('runtime', 'bubblewrap');
const N = Number(opt('n', '200'));
const MD = flag('md');
const IDLE = Number(opt('idle', '10'));



function startServer() {
  return startMcp(BIN, RUNTIME);
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
  child.stdin.end();
  await new Promise((r) => child.on('exit', r));
  return { term };
}

/* ---- idle session memory ---- */

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
const { term } = await benchCalls();
const dockerGoals = RUNTIME === 'docker';
row(`terminalExec "echo hi", live session (${RUNTIME})`, term, dockerGoals ? '<= 5 ms' : '<= 3 ms');
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
