// SPDX-License-Identifier: Apache-2.0
// How fast files move in and out of sessions: PUT and GET /api/v1/sessions/{id}/files of a large
// file through a console with its embedded worker and through a remote `onlyboxes worker` (gRPC,
// "files" extension), with curl as a user would, and exportFile's latency over /mcp (the MCP SDK
// client) for a small and a large file. Each figure is the median of --reps runs.
//
//   node bench/files-bench.mjs [--bin build/onlyboxes] [--runtime bubblewrap|docker] [--mb 100]
//                              [--reps 5] [--md]

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../tests/integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js';
import { StreamableHTTPClientTransport } from '../tests/integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const BIN = path.resolve(opt('bin', path.join(here, '../build/onlyboxes')));
const RUNTIME = opt('runtime', 'bubblewrap');
const MB = Number(opt('mb', '100'));
const REPS = Number(opt('reps', '5'));
const MD = args.includes('--md');

const median = (v) => v.slice().sort((a, b) => a - b)[Math.floor(v.length / 2)];
const dir = mkdtempSync(path.join(tmpdir(), 'obx-files-bench-'));

function start(argv, env) {
  const p = spawn(BIN, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  p.log = '';
  p.stderr.on('data', (d) => (p.log += d));
  return p;
}

async function waitFor(p, re) {
  for (let i = 0; i < 200; i++) {
    const m = re.exec(p.log);
    if (m) return m;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not seen: ${re}\n${p.log}`);
}

async function json(base, method, p, { cookie, token, body } = {}) {
  const res = await fetch(new URL(p, base), {
    method,
    headers: {
      ...(cookie ? { cookie } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { res, body: await res.json().catch(() => null) };
}

async function deployment(name, remote) {
  const env = {
    CONSOLE_HASH_KEY: 'bench-' + name,
    CONSOLE_DB_PATH: path.join(dir, name, 'c.db'),
    CONSOLE_DASHBOARD_USERNAME: 'admin',
    CONSOLE_DASHBOARD_PASSWORD: 'bench-password-1',
    CONSOLE_HTTP_ADDR: '127.0.0.1:0',
    CONSOLE_GRPC_ADDR: '127.0.0.1:0',
    CONSOLE_MAX_UPLOAD_MB: String(MB * 2),
    CONSOLE_EXPORT_MAX_MB: String(MB * (REPS + 2)),
    ONLYBOXES_RUNTIME: RUNTIME,
    ONLYBOXES_BOX_WORKSPACE_MB: String(MB * 4),
    ONLYBOXES_DOCKER_WORKSPACE_MB: String(MB * 4),
    ONLYBOXES_DOCKER_MEMORY_MB: String(MB * 6),
  };
  const con = start(['console', ...(remote ? [] : ['--with-worker'])], env);
  const m = await waitFor(con, /listening on (http:\/\/[^\s]+)/);
  const g = await waitFor(con, /workers connect to \S+:(\d+)/);
  const base = m[1];
  const login = await fetch(new URL('/api/v1/console/login', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'bench-password-1' }),
  });
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const t = await json(base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 't' } });
  const d = { con, base, token: t.body.token, procs: [con] };
  if (remote) {
    const w = await json(base, 'POST', '/api/v1/workers', { cookie, body: { type: 'normal' } });
    const wp = start(['worker'], {
      ...env,
      ...w.body.env,
      WORKER_CONSOLE_GRPC_TARGET: `127.0.0.1:${g[1]}`,
      XDG_RUNTIME_DIR: path.join(dir, name),
    });
    d.procs.push(wp);
    await waitFor(wp, /connected to the console/);
  }
  return d;
}

/* curl, as a user moves a file: its own time for the whole request. */
function curl(argv) {
  const r = spawnSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{time_total}', ...argv], { encoding: 'utf8' });
  const [code, secs] = r.stdout.trim().split(' ');
  if (r.status !== 0 || Number(code) >= 300) throw new Error(`curl ${argv.join(' ')}: ${r.stdout} ${r.stderr}`);
  return Number(secs) * 1000;
}

async function transfers(d, label) {
  const file = path.join(dir, 'big.bin');
  writeFileSync(file, randomBytes(MB * 1024 * 1024));
  const sid = 'bench';
  await json(d.base, 'POST', '/api/v1/commands/terminal', { token: d.token, body: { command: 'true', session_id: sid, create_if_missing: true } });
  const url = new URL(`/api/v1/sessions/${sid}/files?path=big.bin`, d.base).href;
  const auth = ['-H', `Authorization: Bearer ${d.token}`];
  const up = [], down = [];
  for (let i = 0; i < REPS; i++) {
    up.push(curl([...auth, '-T', file, url]));
    down.push(curl([...auth, url]));
  }
  return [
    [`${label}: upload ${MB} MiB (curl -T)`, median(up), (MB / median(up)) * 1000],
    [`${label}: download ${MB} MiB (curl)`, median(down), (MB / median(down)) * 1000],
  ];
}

async function exports(d, label) {
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', d.base), { requestInit: { headers: { Authorization: `Bearer ${d.token}` } } });
  const client = new Client({ name: 'bench', version: '0' }, { capabilities: {} });
  await client.connect(transport);
  const rows = [];
  for (const [name, bytes] of [['1 MiB', 1 << 20], [`${MB} MiB`, MB << 20]]) {
    await client.callTool({ name: 'terminalExec', arguments: { command: `head -c ${bytes} /dev/urandom > e.bin`, session_id: 'exp', create_if_missing: true } });
    const v = [];
    for (let i = 0; i < REPS; i++) {
      const t0 = performance.now();
      const r = await client.callTool({ name: 'exportFile', arguments: { session_id: 'exp', file_path: 'e.bin' } });
      v.push(performance.now() - t0);
      if (r.isError) throw new Error(JSON.stringify(r));
    }
    rows.push([`${label}: exportFile of ${name} (call to link)`, median(v), (bytes / (1 << 20) / median(v)) * 1000]);
  }
  await client.close();
  return rows;
}

const rows = [];
try {
  for (const [name, remote] of [['embedded worker', false], ['remote worker (gRPC)', true]]) {
    const d = await deployment(name.replace(/\W+/g, '-'), remote);
    try {
      rows.push(...(await transfers(d, name)));
      rows.push(...(await exports(d, name)));
    } finally {
      for (const p of d.procs.reverse()) {
        p.kill('SIGTERM');
        await new Promise((r) => p.on('exit', r));
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (MD) {
  console.log(`| files, ${RUNTIME} (median of ${REPS}) | ms | MiB/s |\n|---|---:|---:|`);
  for (const [n, ms, rate] of rows) console.log(`| ${n} | ${ms.toFixed(1)} | ${rate.toFixed(0)} |`);
} else {
  for (const [n, ms, rate] of rows) console.log(`${n}: ${ms.toFixed(1)} ms, ${rate.toFixed(0)} MiB/s`);
}
