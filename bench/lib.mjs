// What the bench scripts share: command-line options, a clock and percentiles, `onlyboxes mcp
// --stdio` spoken to in raw JSON-RPC lines, a process's memory and the Docker Engine API.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createInterface } from 'node:readline';

const argv = process.argv.slice(2);

/** The value after --name on the command line, or def. */
export function opt(name, def) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
}

/** True when --name is on the command line. */
export const flag = (name) => argv.includes(`--${name}`);

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** The p-th percentile (nearest rank) of samples. */
export function pct(samples, p) {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** `bin mcp --stdio --runtime runtime` with env added; request(method, params) resolves to the
 * answer. The child's stderr goes to ours. */
export function startMcp(bin, runtime, env = {}) {
  const child = spawn(bin, ['mcp', '--stdio', '--runtime', runtime], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
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

/** RSS (from status) and PSS (from smaps_rollup) of pid in MiB; zeros when it is gone. */
export function memOf(pid) {
  const kb = (text, key) => Number((new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text) || [])[1] || 0);
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return { rss: kb(status, 'VmRSS') / 1024, pss: kb(roll, 'Pss') / 1024 };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

/** GET path from the Docker Engine API ($DOCKER_HOST's unix socket); resolves to parsed JSON. */
export function engineGet(path) {
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
