// pythonExec as a data scientist's client sees it over `onlyboxes mcp --stdio` (raw JSON-RPC
// lines, timed with process.hrtime), next to what the same code costs without onlyboxes, in the
// same run:
//   - `print(1)` and a numpy + pandas sum on a pool hit: the box's interpreter was started, with
//     ONLYBOXES_PYTHON_PRELOAD imported, before the call (the client pauses --pause ms between
//     calls, as a model does, so the pool refills);
//   - the same code as a cold `python3 -c` on the host, under bwrap, and as `docker run --rm IMAGE
//     python3 -c` (docker only);
//   - a session's call (the interpreter kept between calls);
//   - bursts: --burst calls back to back, repeated --rounds times with --gap ms between rounds, next
//     to the same number of calls --paced ms apart (the first round apart: the pool grows with it);
//   - the memory a pooled box costs with its preloaded interpreter (PSS of the box's processes, as
//     the host counts them, and on docker the container's cgroup).
//
//   node bench/python-bench.mjs [--bin build/onlyboxes] [--runtime bubblewrap] [--n 50]
//                               [--pause MS] [--burst 12] [--rounds 5] [--gap MS] [--paced 300]
//                               [--settle MS] [--md]
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { engineGet, flag, memOf, nowMs, opt, pct, startMcp } from './lib.mjs';

const BIN = opt('bin', new URL('../build/onlyboxes', import.meta.url).pathname);
const RUNTIME = opt('runtime', 'bubblewrap');
const DOCKER = RUNTIME === 'docker';
const N = Number(opt('n', '50'));
const PAUSE = Number(opt('pause', DOCKER ? '2500' : '1500'));
const BURST = Number(opt('burst', '12'));
const ROUNDS = Number(opt('rounds', '5'));
const GAP = Number(opt('gap', DOCKER ? '8000' : '5000'));
const PACED = Number(opt('paced', '300'));
const SETTLE = Number(opt('settle', DOCKER ? '15000' : '8000')); // for the pool to refill and idle
const MD = flag('md');
const IMAGE = process.env.WORKER_PYTHON_EXEC_DOCKER_IMAGE || 'onlyboxes/work:bookworm-data';
const PANDAS = 'import numpy as np, pandas as pd\ndf = pd.DataFrame({"a": np.arange(1000)})\nprint(df["a"].sum())';
const PANDAS_OUT = '499500\n';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function startServer(env = {}) {
  const { child, request } = startMcp(BIN, RUNTIME, env);
  const call = async (args, want) => {
    const t0 = nowMs();
    const r = await request('tools/call', { name: 'pythonExec', arguments: args });
    const ms = nowMs() - t0;
    const out = r.result?.structuredContent?.output;
    if (want !== undefined && out !== want) throw new Error(`bad python answer: ${JSON.stringify(r).slice(0, 600)}`);
    return { ms, out };
  };
  const stop = async () => {
    child.stdin.end();
    await new Promise((r) => child.on('exit', r));
  };
  return { child, request, call, stop };
}

async function started(env) {
  const s = startServer(env);
  await s.request('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '0' } });
  s.child.stdin.write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n');
  return s;
}

/** Waits until a call runs in a prepared interpreter (the pool filled after the start). */
async function warm(s) {
  for (let i = 0; i < 120; i++) {
    await sleep(PAUSE);
    const { out } = await s.call({ code: 'import sys\nprint("pandas" in sys.modules)' });
    if (out === 'True\n') return;
  }
  throw new Error('the pool never handed out a prepared interpreter');
}

/** n calls of code, pause ms before each; also counts how many ran prepared (a probe call after). */
async function paced(s, code, want, n, pause) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    await sleep(pause);
    samples.push((await s.call({ code }, want)).ms);
  }
  return samples;
}

function cold(argv, n) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
    samples.push(nowMs() - t0);
    if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  }
  return samples;
}

const bwrap = (code) => [
  'bwrap', '--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr', '--ro-bind-try', '/etc/matplotlibrc',
  '/etc/matplotlibrc', '--ro-bind-try', '/etc/alternatives', '/etc/alternatives', '--ro-bind-try', '/etc/ld.so.cache',
  '/etc/ld.so.cache', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64',
  '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--', '/usr/bin/python3', '-c', code,
];

/* ---- memory of a pooled box ---- */

function children(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function tree(pid) {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...children(all[i]));
  return all;
}

/** The prepared interpreters on the host (their command line says --prepared) and their boxes. */
function preparedRunners() {
  const found = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.startsWith('python3\0-c\0') && cmd.includes('python-runner.py\0--prepared\0')) found.push(Number(e));
  }
  return found;
}

/** The box of each prepared interpreter: its agent's process tree (the agent is PID 1 in the box;
 * the host sees it as the interpreter's monitor's parent). */
async function poolMemory(s) {
  await sleep(SETTLE);
  let containers = [];
  if (DOCKER) {
    const f = encodeURIComponent(JSON.stringify({ label: [`onlyboxes.owner-pid=${s.child.pid}`] }));
    containers = (await engineGet(`/containers/json?filters=${f}`)).map((c) => c.Id);
  }
  const runners = preparedRunners().filter((pid) => {
    if (DOCKER) {
      // Docker boxes are the daemon's children: this server's are in its containers' cgroups.
      let cg = '';
      try {
        cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      } catch {
        return false;
      }
      return containers.some((id) => cg.includes(id));
    }
    for (let p = pid, i = 0; p > 1 && i < 12; i++) {
      if (p === s.child.pid) return true; // an ancestor is this server
      try {
        p = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1]);
      } catch {
        return false;
      }
    }
    return false;
  });
  const boxes = [];
  for (const r of runners) {
    const monitor = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${r}/status`, 'utf8'))[1]);
    const agent = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${monitor}/status`, 'utf8'))[1]);
    const procs = tree(agent).map(memOf);
    boxes.push({
      runner: memOf(r),
      box_pss: procs.reduce((a, m) => a + m.pss, 0),
      box_rss: procs.reduce((a, m) => a + m.rss, 0),
    });
  }
  const res = { boxes: boxes.length };
  const avg = (f) => boxes.reduce((a, b) => a + f(b), 0) / Math.max(1, boxes.length);
  res.runner_rss = avg((b) => b.runner.rss);
  res.runner_pss = avg((b) => b.runner.pss);
  res.box_pss = avg((b) => b.box_pss);
  if (DOCKER) {
    const usage = [];
    for (const id of containers) {
      const st = await engineGet(`/containers/${id}/stats?stream=false`);
      const m = st.memory_stats || {};
      const cache = m.stats?.cache ?? m.stats?.file ?? 0;
      usage.push(((m.usage || 0) - cache) / 1048576);
    }
    res.cgroup = usage.reduce((a, b) => a + b, 0) / Math.max(1, usage.length);
  }
  return res;
}

/* ---- the run ---- */

const rows = [];
const row = (name, s, goal) => rows.push({ name, n: s.length, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), goal });
const notes = [];

const s = await started();
await warm(s);
row(`pythonExec "print(1)", pool hit (${RUNTIME}, ${PAUSE} ms pause)`, await paced(s, 'print(1)', '1\n', N, PAUSE), '<= 3 ms');
row(`pythonExec numpy + pandas sum, pool hit (${RUNTIME}, ${PAUSE} ms pause)`, await paced(s, PANDAS, PANDAS_OUT, N, PAUSE), '<= 10 ms');
// A session: the interpreter and its imports are kept.
const sid = `bench-${process.pid}`;
await s.call({ code: 'import numpy as np, pandas as pd', session_id: sid, create_if_missing: true });
const inSession = [];
for (let i = 0; i < N; i++) inSession.push((await s.call({ code: 'df = pd.DataFrame({"a": np.arange(1000)})\nprint(df["a"].sum())', session_id: sid }, PANDAS_OUT)).ms);
row(`pythonExec numpy + pandas sum in a session (${RUNTIME})`, inSession, '-');
const mem = await poolMemory(s);

// Bursts, next to the same calls paced: the pool grows with the first burst and shrinks a minute
// after the last.
const burstAll = [];
const burstFirst = [];
const pacedAll = [];
for (let r = 0; r < ROUNDS; r++) {
  await sleep(GAP);
  const round = [];
  for (let i = 0; i < BURST; i++) round.push((await s.call({ code: 'print(1)' }, '1\n')).ms);
  (r === 0 ? burstFirst : burstAll).push(...round);
}
for (let r = 0; r < ROUNDS; r++) {
  await sleep(GAP);
  pacedAll.push(...(await paced(s, 'print(1)', '1\n', BURST, PACED)));
}
await s.stop();
row(`pythonExec "print(1)" x${BURST} back to back, first burst (${RUNTIME}, pool of 2)`, burstFirst, '-');
if (burstAll.length > 0)
  row(`pythonExec "print(1)" x${BURST} back to back, later bursts (${RUNTIME}, ${GAP} ms apart)`, burstAll, '<= 3x paced');
row(`pythonExec "print(1)" x${BURST}, ${PACED} ms apart (${RUNTIME})`, pacedAll, '-');
if (burstAll.length > 0)
  notes.push(`later bursts p50 / paced p50 = ${(pct(burstAll, 50) / pct(pacedAll, 50)).toFixed(2)} (goal <= 3)`);

// Without onlyboxes, the same code cold.
const m = Math.max(10, Math.floor(N / 2));
row('baseline: python3 -c numpy + pandas sum on the host, cold', cold(['/usr/bin/python3', '-c', PANDAS], m), '-');
row('baseline: python3 -c print(1) on the host, cold', cold(['/usr/bin/python3', '-c', 'print(1)'], m), '-');
if (!DOCKER) {
  row('baseline: bwrap + python3 -c numpy + pandas sum, cold', cold(bwrap(PANDAS), m), '-');
  row('baseline: bwrap + python3 -c print(1), cold (the floor of a box started per call)', cold(bwrap('print(1)'), m), '-');
}
if (DOCKER) {
  const run = (code) => ['docker', 'run', '--rm', '--network', 'none', IMAGE, 'python3', '-c', code];
  const k = Math.max(5, Math.floor(N / 5));
  row(`baseline: docker run --rm ${IMAGE} python3 -c numpy + pandas sum`, cold(run(PANDAS), k), '-');
  row(`baseline: docker run --rm ${IMAGE} python3 -c print(1)`, cold(run('print(1)'), k), '-');
}

// A pool miss for comparison: no pool, so the interpreter starts with the call, cold.
const miss = await started({ ONLYBOXES_WARM_POOL: '0' });
row(`pythonExec "print(1)", no pool (${RUNTIME})`, await paced(miss, 'print(1)', '1\n', Math.max(10, N / 2), 0), '-');
row(`pythonExec numpy + pandas sum, no pool (${RUNTIME})`, await paced(miss, PANDAS, PANDAS_OUT, Math.max(10, N / 2), 0), '-');
await miss.stop();

const f = (x) => (x === undefined ? '-' : x.toFixed(1));
const memLine =
  `a pooled box with its interpreter prepared (${RUNTIME}, ${mem.boxes} boxes): the interpreter RSS ${f(mem.runner_rss)} MiB, ` +
  `PSS ${f(mem.runner_pss)} MiB; the box's processes PSS ${f(mem.box_pss)} MiB` +
  (DOCKER ? `; the container's cgroup without page cache ${f(mem.cgroup)} MiB` : '');
if (MD) {
  console.log('| measurement | n | p50 ms | p90 ms | p99 ms | goal |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.name} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.goal} |`);
  console.log();
  for (const n of [...notes, memLine]) console.log(`- ${n}`);
} else {
  for (const r of rows)
    console.log(`${r.name.padEnd(80)} n=${String(r.n).padStart(4)}  p50=${r.p50.toFixed(2)}  p90=${r.p90.toFixed(2)}  p99=${r.p99.toFixed(2)}  goal ${r.goal}`);
  for (const n of [...notes, memLine]) console.log(n);
}
