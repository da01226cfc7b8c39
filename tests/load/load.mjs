// SPDX-License-Identifier: Apache-2.0
// Load test of the console: `onlyboxes console --with-worker` (bubblewrap unless ONLYBOXES_RUNTIME
// says otherwise) on a loopback port with a fresh database, or with OBX_LOAD_WORKERS=remote the
// console without a worker of its own and two `onlyboxes worker` processes provisioned on it and
// connected over gRPC, and OBX_LOAD_CLIENTS (50) clients at once for OBX_LOAD_SECONDS (120), each
// one looping over a mix of
//   - REST echo                     POST /api/v1/commands/echo
//   - REST pythonExec, sync         POST /api/v1/tasks {"mode":"sync"}
//   - REST pythonExec, async        POST /api/v1/tasks {"mode":"async"}, then GET until it ends
//   - REST terminalExec             POST /api/v1/commands/terminal on the client's own session
//   - MCP over HTTP                 tools/call (echo, pythonExec, terminalExec on that session)
//                                   and ping, through the SDK's StreamableHTTPClientTransport at /mcp
// and checking every answer's content.
//
// Fails (exit 1) on: any error other than the documented ones for a full worker (no_capacity: 429
// or the tool error `no_capacity`; session_busy: 409; server busy: 503), an accepted task that is
// not in a terminal state once the clients stopped, console (or remote worker) memory that keeps
// growing after the warm-up, a remote worker that does not exit 0 on SIGTERM, or a process the
// console or a worker started left after they exited.
//
// Memory: the VmRSS of the console (the embedded worker runs in the same process) and of each
// remote worker is sampled every second. The first third of the run is the warm-up; memory is
// flat when the largest sample of the last third is at most the largest of the middle third plus
// the larger of 15% and 8 MiB.
//
// Run through tests/load/run.sh (it checks the prerequisites); OBX_BIN names the binary.

import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js';
import { StreamableHTTPClientTransport } from '../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js';
import { Console, bearer, call, login } from '../integration/console-lib.mjs';
import { startRemoteWorker } from '../integration/interop/binary.mjs';

const SECONDS = Number(process.env.OBX_LOAD_SECONDS || 120);
const CLIENTS = Number(process.env.OBX_LOAD_CLIENTS || 50);
const RUNTIME = process.env.ONLYBOXES_RUNTIME || 'bubblewrap';
const WORKERS = process.env.OBX_LOAD_WORKERS || 'embedded';
const REMOTE_WORKERS = 2;
const REQUEST_TIMEOUT_MS = 120_000; // one request that takes longer than this is a hang
const FLAT_PCT = 0.15;
const FLAT_MIB = 8;

if (!(SECONDS >= 3) || !(CLIENTS >= 1) || !['embedded', 'remote'].includes(WORKERS)) {
  console.error(
    `load: OBX_LOAD_SECONDS must be >= 3, OBX_LOAD_CLIENTS >= 1 and OBX_LOAD_WORKERS embedded or remote (got ${SECONDS}, ${CLIENTS}, ${WORKERS})`,
  );
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TERMINAL = new Set(['succeeded', 'failed', 'timeout', 'canceled']);

/* ---- counters ---- */

const requests = {}; // kind -> count of requests made
const allowed = {}; // "<documented refusal> (<kind>)" -> count; refusals: no_capacity, session_busy, server_busy
const errors = {}; // anything else: "kind: what" -> count
const examples = {}; // first few texts of each error
const bump = (o, k) => (o[k] = (o[k] || 0) + 1);

function fail(kind, what, detail) {
  const k = `${kind}: ${what}`;
  bump(errors, k);
  examples[k] ??= [];
  if (examples[k].length < 3) examples[k].push(String(detail).slice(0, 300));
}

/** A documented refusal of a REST answer, or null. */
function refusal(status, body) {
  const msg = body?.error?.message ?? body?.error ?? '';
  if (status === 429 && /no online worker capacity/.test(msg)) return 'no_capacity';
  if (status === 429 && body?.error?.code === 'no_capacity') return 'no_capacity';
  if (status === 409 && /session.busy|session is busy/i.test(JSON.stringify(body))) return 'session_busy';
  if (status === 503 && /server busy/.test(msg)) return 'server_busy';
  return null;
}

/** A documented refusal in an MCP tool result, or null. */
function toolRefusal(result) {
  if (!result?.isError) return null;
  const text = (result.content ?? []).map((c) => c.text ?? '').join('\n');
  if (/^no_capacity\b/.test(text)) return 'no_capacity';
  if (/^session_busy\b/.test(text)) return 'session_busy';
  return null;
}

/* ---- /proc ---- */

function rssMiB(pid) {
  try {
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return null;
  }
}

/** {ppid, start} of a process from /proc/<pid>/stat, or null when it is gone. */
function statOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), start: f[19] };
  } catch {
    return null;
  }
}

/**
 * Every descendant of root now: [{pid, start, ns, cmd}]. A process that ended while we looked is
 * left out: its pid may already name another process (another program's box, even), so its
 * namespace and command line are kept only when its start time still matches afterwards.
 */
function descendants(root) {
  const children = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = statOf(d);
    if (!st) continue;
    if (!children.has(st.ppid)) children.set(st.ppid, []);
    children.get(st.ppid).push({ pid: Number(d), start: st.start });
  }
  const out = [];
  const walk = (p) => {
    for (const c of children.get(p) || []) {
      let ns = null;
      let cmd = '';
      try {
        ns = readlinkSync(`/proc/${c.pid}/ns/pid`);
        cmd = readFileSync(`/proc/${c.pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      } catch {}
      if (statOf(c.pid)?.start !== c.start) continue;
      out.push({ ...c, ns, cmd });
      walk(c.pid);
    }
  };
  walk(root);
  return out;
}

/**
 * Whether pid, found in a pid namespace one of our boxes had, is another program's: the kernel
 * reuses a namespace's inode number once it is gone, and other servers' boxes may run on this
 * host. A process we left behind is an orphan, or descends from processes we saw or that run in
 * our boxes' namespaces; another server's box descends from a live process outside them (its
 * bwrap, its server), not init.
 */
function othersProcess(pid, seen, boxNs) {
  for (let p = statOf(pid)?.ppid, hops = 0; p > 1 && hops < 64; hops++) {
    const st = statOf(p);
    if (!st) return false;
    let ns = null;
    try {
      ns = readlinkSync(`/proc/${p}/ns/pid`);
    } catch {}
    if (!seen.has(`${p}:${st.start}`) && !boxNs.has(ns)) return true;
    p = st.ppid;
  }
  return false;
}

/* ---- the console ---- */

const dir = mkdtempSync(path.join(tmpdir(), 'obx-load-'));
const ADMIN_PW = 'Load-' + Math.random().toString(16).slice(2);
const con = new Console(
  {
    CONSOLE_DB_PATH: path.join(dir, 'console.db'),
    CONSOLE_HASH_KEY: 'load-' + process.pid,
    CONSOLE_DASHBOARD_USERNAME: 'load-admin',
    CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
    CONSOLE_LOG_LEVEL: 'warn',
    ONLYBOXES_RUNTIME: RUNTIME,
  },
  WORKERS === 'embedded' ? ['--with-worker'] : [],
);
const workers = []; // remote: {worker (a WorkerProcess), nodeId, env}

/** A JSON request with the token; resolves to {status, body, text}, or {status: 0, text} on a transport error. */
async function rest(token, method, p, body) {
  try {
    return await bearer(con.base, method, p, token, body, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (e) {
    return { status: 0, body: null, text: `${e.name}: ${e.message}` };
  }
}

/* ---- one client ---- */

const accepted = new Map(); // task_id -> the kind that made it
let stopping = false;

class LoadClient {
  constructor(i, token) {
    this.i = i;
    this.token = token;
    this.n = 0;
    this.session = `load-${i}`; // the client's terminal session, shared by REST and MCP
    this.mcp = null;
  }

  async connect() {
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', con.base), {
      requestInit: { headers: { Authorization: `Bearer ${this.token}` } },
    });
    const client = new Client({ name: `obx-load-${this.i}`, version: '0.0.0' }, { capabilities: {} });
    await client.connect(transport);
    this.mcp = { client, transport };
  }

  async close() {
    if (!this.mcp) return;
    try {
      await this.mcp.transport.terminateSession();
      await this.mcp.client.close();
    } catch (e) {
      fail('mcp', 'close', e.message);
    }
  }

  async echo() {
    const message = `c${this.i}-${this.n} ü`;
    const r = await rest(this.token, 'POST', '/api/v1/commands/echo', { message });
    const why = refusal(r.status, r.body);
    if (why) return bump(allowed, `${why} (rest-echo)`);
    if (r.status !== 200 || r.body?.message !== message) fail('rest-echo', r.status || 'transport', r.text);
  }

  async pySync() {
    const a = this.i + 1, b = this.n + 1;
    const r = await rest(this.token, 'POST', '/api/v1/tasks', { capability: 'pythonExec', input: { code: `print(${a}*${b})` }, mode: 'sync', timeout_ms: 60000 });
    if (r.body?.task_id) accepted.set(r.body.task_id, 'rest-python-sync');
    const why = refusal(r.status, r.body);
    if (why) return bump(allowed, `${why} (rest-python-sync)`);
    if (r.status !== 200 || r.body?.status !== 'succeeded' || r.body?.result?.output !== `${a * b}\n`) fail('rest-python-sync', r.status || 'transport', r.text);
  }

  async pyAsync() {
    const a = this.i + 1, b = this.n + 2;
    const r = await rest(this.token, 'POST', '/api/v1/tasks', { capability: 'pythonExec', input: { code: `print(${a}+${b})` }, mode: 'async', timeout_ms: 60000 });
    if (r.body?.task_id) accepted.set(r.body.task_id, 'rest-python-async');
    const why = refusal(r.status, r.body);
    if (why) return bump(allowed, `${why} (rest-python-async)`);
    // Usually 202 and still running; a task that ended before the answer was made is a 200.
    if (r.status === 200 && r.body?.status === 'succeeded') {
      if (r.body.result?.output !== `${a + b}\n`) fail('rest-python-async', 'wrong output', r.text);
      return;
    }
    if (r.status !== 202 || !r.body?.status_url) return fail('rest-python-async', r.status || 'transport', r.text);
    // Poll until it ends, even past the stop: every accepted task must end.
    for (let k = 0; ; k++) {
      await sleep(100 + Math.random() * 100);
      bump(requests, 'rest-task-poll');
      const g = await rest(this.token, 'GET', r.body.status_url);
      if (g.status === 0 || !g.body?.status) return fail('rest-task-poll', g.status || 'transport', g.text);
      if (!TERMINAL.has(g.body.status)) {
        if (k > 1200) return fail('rest-python-async', 'never ended', g.text);
        continue;
      }
      const gw = refusal(g.status, g.body);
      if (gw) return bump(allowed, `${gw} (rest-python-async, after it was accepted)`);
      if (g.body.status !== 'succeeded' || g.body.result?.output !== `${a + b}\n`) fail('rest-python-async', g.body.status, g.text);
      return;
    }
  }

  async terminal() {
    const m = `t${this.i}x${this.n}`;
    const r = await rest(this.token, 'POST', '/api/v1/commands/terminal', {
      command: `echo ${m} >> log; echo ${m}; wc -l < log >&2`,
      session_id: this.session,
      create_if_missing: true,
      lease_ttl_sec: 600,
    });
    const why = refusal(r.status, r.body);
    if (why) return bump(allowed, `${why} (rest-terminal)`);
    if (r.status !== 200 || r.body?.stdout !== `${m}\n` || r.body?.session_id !== this.session) fail('rest-terminal', r.status || 'transport', r.text);
  }

  /** Three quick pings: they keep the session's "last used" time moving while others end. */
  async mcpPing() {
    for (let k = 0; k < 3; k++) {
      bump(requests, 'mcp-ping');
      try {
        await this.mcp.client.ping({ timeout: REQUEST_TIMEOUT_MS });
      } catch (e) {
        return fail('mcp-ping', 'protocol error', e.message);
      }
    }
  }

  async mcpCall() {
    const tools = ['echo', 'pythonExec', 'terminalExec'];
    const tool = tools[this.n % tools.length];
    const m = `m${this.i}x${this.n}`;
    const args = {
      echo: { message: m },
      pythonExec: { code: `print('${m}')` },
      terminalExec: { command: `echo ${m}`, session_id: this.session, create_if_missing: true, lease_ttl_sec: 600 },
    }[tool];
    const kind = `mcp-${tool}`;
    bump(requests, kind);
    let r;
    try {
      r = await this.mcp.client.callTool({ name: tool, arguments: args }, undefined, { timeout: REQUEST_TIMEOUT_MS });
    } catch (e) {
      return fail(kind, 'protocol error', e.message);
    }
    const why = toolRefusal(r);
    if (why) return bump(allowed, `${why} (${kind})`);
    const sc = r.structuredContent ?? {};
    const got = { echo: sc.message, pythonExec: sc.output, terminalExec: sc.stdout }[tool];
    const want = tool === 'echo' ? m : `${m}\n`;
    if (r.isError || got !== want) fail(kind, r.isError ? 'tool error' : 'wrong result', JSON.stringify(r));
  }

  async run() {
    // The mix: four REST steps, then MCP calls and pings.
    const steps = [
      ['rest-echo', () => this.echo()],
      ['rest-python-sync', () => this.pySync()],
      ['rest-python-async', () => this.pyAsync()],
      ['rest-terminal', () => this.terminal()],
      ['mcp', () => this.mcpCall()],
      ['mcp', () => this.mcpPing()],
      ['mcp', () => this.mcpCall()],
    ];
    // Not all clients in step.
    let k = this.i % steps.length;
    while (!stopping) {
      const [kind, fn] = steps[k];
      k = (k + 1) % steps.length;
      if (kind !== 'mcp') bump(requests, kind);
      this.n++;
      await fn();
    }
  }
}

/* ---- main ---- */

/** Memory of one process over the run: flat when the last third's peak stays within the bound. */
function memory(samples) {
  const third = Math.floor(samples.length / 3);
  const maxOf = (xs) => Math.max(...xs.map((s) => s.v));
  const warm = samples.slice(0, third), middle = samples.slice(third, 2 * third), last = samples.slice(2 * third);
  const mMax = maxOf(middle), lMax = maxOf(last);
  const bound = mMax + Math.max(mMax * FLAT_PCT, FLAT_MIB);
  return { warm: warm.at(-1), mMax, lMax, bound, flat: third > 0 && lMax <= bound };
}

async function main() {
  if (!existsSync(process.env.OBX_BIN || '')) console.error(`load: OBX_BIN=${process.env.OBX_BIN} (using the integration suite's default)`);
  await con.start();
  const cookie = await login(con.base, 'load-admin', ADMIN_PW);
  if (WORKERS === 'remote')
    for (let i = 0; i < REMOTE_WORKERS; i++) workers.push(await startRemoteWorker(con.base, cookie, { ONLYBOXES_RUNTIME: RUNTIME, ONLYBOXES_LOG_LEVEL: 'warn' }));
  const t = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'load' } });
  if (t.status !== 201) throw new Error(`cannot make a token: ${t.status} ${t.text}`);
  const token = t.body.token;

  const clients = Array.from({ length: CLIENTS }, (_, i) => new LoadClient(i, token));
  await Promise.all(clients.map((c) => c.connect()));

  // The processes watched: the console and each remote worker. Samples: RSS every second; their
  // descendants (pid, start time, pid namespace).
  const procs = [{ name: 'console', pid: con.proc.pid, rss: [] }, ...workers.map((w, i) => ({ name: `worker ${i + 1}`, pid: w.worker.proc.pid, rss: [] }))];
  const seen = new Map(); // "pid:start" -> {pid, start, ns, cmd}
  const t0 = Date.now();
  const look = () => {
    for (const p of procs) for (const d of descendants(p.pid)) seen.set(`${d.pid}:${d.start}`, d);
  };
  const sampler = setInterval(() => {
    for (const p of procs) {
      const v = rssMiB(p.pid);
      if (v !== null) p.rss.push({ t: (Date.now() - t0) / 1000, v });
    }
    look();
  }, 1000);

  const running = clients.map((c) => c.run());
  await sleep(SECONDS * 1000);
  stopping = true;
  const stopT = Date.now();
  await Promise.all(running);
  const drainS = (Date.now() - stopT) / 1000;
  clearInterval(sampler);
  look();

  // Every accepted task has ended.
  let notEnded = 0;
  for (const [id, kind] of accepted) {
    const g = await rest(token, 'GET', `/api/v1/tasks/${id}`);
    if (!TERMINAL.has(g.body?.status)) {
      notEnded++;
      fail(kind, 'task not in a terminal state', g.text);
    }
  }

  await Promise.all(clients.map((c) => c.close()));
  for (const p of procs) p.end = rssMiB(p.pid);
  // Workers first: each drains (nothing runs now) and exits; then the console.
  for (const [i, w] of workers.entries()) procs[i + 1].exit = await w.worker.stop();
  procs[0].exit = await con.stop();

  // Nothing the console or a worker started is left: no process they had, none in a box's pid
  // namespace.
  const boxNs = new Set([...seen.values()].map((d) => d.ns).filter((ns) => ns && ns !== readlinkSync('/proc/self/ns/pid')));
  let left = [];
  for (let k = 0; k < 50; k++) {
    left = [];
    for (const d of seen.values()) {
      const st = statOf(d.pid);
      if (st && st.start === d.start) left.push({ ...d, why: 'seen under the console' });
    }
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      try {
        const ns = readlinkSync(`/proc/${p}/ns/pid`);
        if (boxNs.has(ns) && !left.some((d) => d.pid === Number(p)) && !othersProcess(Number(p), seen, boxNs))
          left.push({ pid: Number(p), ns, cmd: readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ') });
      } catch {}
    }
    if (left.length === 0) break;
    await sleep(100);
  }

  const total = Object.values(requests).reduce((a, b) => a + b, 0);
  const nErrors = Object.values(errors).reduce((a, b) => a + b, 0);
  const fmt = (o) => Object.entries(o).sort().map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const mib = (v) => `${v.toFixed(1)} MiB`;
  const where = WORKERS === 'remote' ? `${REMOTE_WORKERS} remote workers` : 'the embedded worker';
  console.log(`load: ${CLIENTS} clients, ${SECONDS} s (+${drainS.toFixed(1)} s to finish the last requests), ${where}, runtime ${RUNTIME}`);
  console.log(`load: requests ${total} (${(total / SECONDS).toFixed(0)}/s): ${fmt(requests)}`);
  console.log(`load: tasks accepted ${accepted.size}, not ended ${notEnded}`);
  console.log(`load: documented refusals: ${fmt(allowed)}`);
  console.log(`load: errors ${nErrors}: ${fmt(errors)}`);
  for (const [k, ex] of Object.entries(examples)) for (const e of ex) console.log(`load:   ${k}: ${e}`);
  let flat = true;
  for (const p of procs) {
    const m = memory(p.rss);
    flat &&= m.flat;
    console.log(
      `load: ${p.name} RSS: warm-up ${mib(m.warm?.v ?? 0)} (at ${m.warm?.t.toFixed(0)} s), max middle third ${mib(m.mMax)}, ` +
        `max last third ${mib(m.lMax)} (bound ${mib(m.bound)}), end ${mib(p.end ?? 0)}: ${m.flat ? 'flat' : 'GROWING'}`,
    );
  }
  const exits = procs.map((p) => `${p.name} ${JSON.stringify(p.exit)}`).join(', ');
  console.log(`load: exits: ${exits}; processes seen under them ${seen.size}, left after exit ${left.length}`);
  for (const d of left.slice(0, 10)) console.log(`load:   left: ${d.pid} ${d.ns ?? ''} ${d.cmd.replace(/\s+/g, ' ').slice(0, 120)}`);

  const ok = nErrors === 0 && notEnded === 0 && flat && left.length === 0 && procs.every((p) => p.exit?.code === 0) && total > 0;
  if (!ok) {
    console.log(`load: FAILED\n${stderrTails()}`);
    return 1;
  }
  console.log('load: ok');
  return 0;
}

function stderrTails() {
  return [['console', con.stderr], ...workers.map((w, i) => [`worker ${i + 1}`, w.worker.stderr])]
    .map(([name, text]) => `--- ${name} stderr (tail) ---\n${(text ?? '').slice(-4000)}`)
    .join('\n');
}

function killAll() {
  for (const w of workers) if (w.worker.proc.exitCode === null) w.worker.proc.kill('SIGKILL');
  if (con.proc && con.proc.exitCode === null) con.proc.kill('SIGKILL');
}

// timeout(1) in run.sh ends a hung run with SIGTERM: the console and workers must not outlive it.
process.on('SIGTERM', () => {
  console.error('load: stopped by SIGTERM (the run hung)');
  killAll();
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
});

let rc = 1;
try {
  rc = await main();
} catch (e) {
  console.error(`load: ${e.stack}\n${stderrTails()}`);
  killAll();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(rc);
