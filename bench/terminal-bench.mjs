// SPDX-License-Identifier: Apache-2.0
// The live terminal's speed, as a browser sees it through the console's WebSocket, with the
// console's embedded worker and through a remote `onlyboxes worker` over gRPC on loopback:
//   - keystroke echo: one character typed at the shell's prompt until its echo arrives, --keys
//     times one after the other (median, p90, p99);
//   - output: `head -c MB` of text printed by the shell until its end mark arrives, the client
//     acknowledging every 32 KiB as soon as it has it (a browser that draws at once), in MB/s of
//     terminal output received.
//
//   node bench/terminal-bench.mjs [--bin build/onlyboxes] [--runtime bubblewrap|docker]
//                                 [--keys 300] [--mb 200] [--md]

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { wsConnect } from '../tests/browser/ws-client.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const BIN = path.resolve(opt('bin', path.join(here, '../build/onlyboxes')));
const RUNTIME = opt('runtime', 'bubblewrap');
const KEYS = Number(opt('keys', '300'));
const MB = Number(opt('mb', '200'));
const MD = args.includes('--md');
const PW = 'bench-pw-12345678';
const dir = mkdtempSync(path.join(tmpdir(), 'obx-terminal-bench-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (v, p) => v.slice().sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * p))];

function start(argv, env) {
  const p = spawn(BIN, argv, { env: { ...process.env, XDG_RUNTIME_DIR: dir, ONLYBOXES_RUNTIME: RUNTIME, ONLYBOXES_WARM_POOL: '0', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  p.log = '';
  p.stderr.on('data', (d) => (p.log += d));
  p.exited = new Promise((r) => p.on('exit', r));
  return p;
}

async function call(base, method, p, { body, cookie, token } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (cookie) headers.cookie = cookie;
  if (token) headers.authorization = 'Bearer ' + token;
  const r = await fetch(base + p, { method, headers, body: body && JSON.stringify(body) });
  return { status: r.status, headers: r.headers, body: await r.json().catch(() => null) };
}

async function consoleUp(remote) {
  const c = start(remote ? ['console'] : ['console', '--with-worker'], {
    CONSOLE_HTTP_ADDR: '127.0.0.1:0',
    CONSOLE_GRPC_ADDR: '127.0.0.1:0',
    CONSOLE_DB_PATH: path.join(dir, `console-${remote}.db`),
    CONSOLE_HASH_KEY: 'terminal-bench-key-' + process.pid,
    CONSOLE_DASHBOARD_USERNAME: 'admin',
    CONSOLE_DASHBOARD_PASSWORD: PW,
  });
  for (let i = 0; i < 200 && !/workers connect to/.test(c.log); i++) await sleep(50);
  c.base = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(c.log)[1];
  const grpc = /workers connect to (127\.0\.0\.1:\d+)/.exec(c.log)[1];
  const login = await fetch(c.base + '/api/v1/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: PW }) });
  c.cookie = login.headers.get('set-cookie').split(';')[0];
  c.token = (await call(c.base, 'POST', '/api/v1/console/tokens', { body: { name: 'bench' }, cookie: c.cookie })).body.token;
  if (remote) {
    const w = await call(c.base, 'POST', '/api/v1/workers', { body: { type: 'normal' }, cookie: c.cookie });
    c.worker = start(['worker'], { ...w.body.env, WORKER_CONSOLE_GRPC_TARGET: grpc, WORKER_CONSOLE_INSECURE: 'true' });
    for (let i = 0; i < 200 && !/connected to the console/.test(c.worker.log); i++) await sleep(50);
  }
  const r = await call(c.base, 'POST', '/api/v1/commands/terminal', { body: { command: 'true', session_id: 'bench', create_if_missing: true }, token: c.token });
  if (r.status !== 200) throw new Error('terminalExec: ' + JSON.stringify(r.body) + c.log);
  return c;
}

async function open(c, onMessage) {
  const r = await wsConnect(`${c.base}/api/v1/sessions/bench/terminal?cols=200&rows=50`, { headers: { cookie: c.cookie }, onMessage });
  if (r.status !== 101) throw new Error(`WebSocket: ${r.status} ${r.body}`);
  return r.ws;
}

async function echoLatency(c) {
  let waiting = null;
  const ws = await open(c, (m) => {
    if (m[0] === 0x65 && /"open"/.test(m.toString())) waiting && waiting();
    if (m[0] === 0x6f && waiting) waiting();
  });
  await new Promise((r) => (waiting = r));
  await sleep(300); // the prompt
  const ms = [];
  for (let i = 0; i < KEYS; i++) {
    const got = new Promise((r) => (waiting = r));
    const t = process.hrtime.bigint();
    ws.send('i', 'x');
    await got;
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (i % 50 === 49) {
      const cleared = new Promise((r) => (waiting = r));
      ws.send('i', '\x15'); // ^U: an empty line again
      await cleared;
      await sleep(20);
    }
  }
  ws.end();
  return { p50: pct(ms, 0.5), p90: pct(ms, 0.9), p99: pct(ms, 0.99) };
}

async function throughput(c) {
  let bytes = 0;
  let acked = 0;
  let tail = '';
  let done;
  const finished = new Promise((r) => (done = r));
  let opened;
  const isOpen = new Promise((r) => (opened = r));
  let t0 = 0n;
  const ws = await open(c, (m) => {
    if (m[0] === 0x65 && /"open"/.test(m.toString())) opened();
    if (m[0] !== 0x6f || !t0) return;
    bytes += m.length - 1;
    if (bytes - acked >= 32 * 1024) {
      acked = bytes;
      ws.send('a', String(bytes));
    }
    tail = (tail + m.subarray(1).toString('latin1')).slice(-64);
    if (/BENCH-END-42/.test(tail)) done();
  });
  await isOpen;
  await sleep(300);
  t0 = process.hrtime.bigint();
  ws.send('i', `head -c ${MB * 1000000} /dev/zero | tr '\\0' 'y' | fold -w 100; echo BENCH-END-$((6*7))\r`);
  await finished;
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  ws.end();
  return { mbps: bytes / 1e6 / sec, mb: bytes / 1e6 };
}

const rows = [];
try {
  for (const remote of [false, true]) {
    const c = await consoleUp(remote);
    try {
      const lat = await echoLatency(c);
      const thr = await throughput(c);
      rows.push({ where: remote ? 'remote worker (gRPC, loopback)' : 'embedded worker', lat, thr });
    } finally {
      if (c.worker) {
        c.worker.kill('SIGTERM');
        await c.worker.exited;
      }
      c.kill('SIGTERM');
      await c.exited;
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (MD) {
  console.log(`| live terminal (${RUNTIME}) | keystroke echo p50 / p90 / p99 | output received |`);
  console.log('|---|---|---|');
  for (const r of rows) console.log(`| ${r.where} | ${r.lat.p50.toFixed(2)} / ${r.lat.p90.toFixed(2)} / ${r.lat.p99.toFixed(2)} ms | ${r.thr.mbps.toFixed(1)} MB/s (${r.thr.mb.toFixed(0)} MB) |`);
} else {
  for (const r of rows) console.log(`${r.where}: echo p50 ${r.lat.p50.toFixed(2)} ms, p90 ${r.lat.p90.toFixed(2)} ms, p99 ${r.lat.p99.toFixed(2)} ms; output ${r.thr.mbps.toFixed(1)} MB/s over ${r.thr.mb.toFixed(0)} MB`);
}
