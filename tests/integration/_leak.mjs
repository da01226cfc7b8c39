import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
const BIN = '/work/wt-remote-qa/build/onlyboxes';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function holders(link) {
  const out = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let fds; try { fds = readdirSync(`/proc/${e}/fd`); } catch { continue; }
    for (const fd of fds) { try { if (readlinkSync(`/proc/${e}/fd/${fd}`) === link) { out.push(Number(e)); break; } } catch {} }
  }
  return out;
}
const mode = process.argv[2] || 'worker';
let leaks = 0;
for (let i = 0; i < 40; i++) {
  const env = { ...process.env, XDG_RUNTIME_DIR: mkdtempSync(path.join(tmpdir(), 'leak-')), ONLYBOXES_RUNTIME: 'bubblewrap', ONLYBOXES_WARM_POOL: '4', WORKER_ID: 'x', WORKER_SECRET: 'y', WORKER_CONSOLE_GRPC_TARGET: '127.0.0.1:1', WORKER_CONSOLE_INSECURE: 'true' };
  const p = spawn(BIN, mode === 'worker' ? ['worker'] : ['mcp', '--stdio'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
  p.stderr.resume();
  await sleep(2);
  let link; try { link = readlinkSync(`/proc/${p.pid}/fd/2`); } catch {}
  const exited = new Promise((r) => p.on('exit', r));
  await sleep(5 + i);
  p.kill('SIGKILL');
  await exited;
  await sleep(1500);
  const h = link ? holders(link) : [];
  if (h.length) {
    const q = spawn(BIN, mode === 'worker' ? ['worker'] : ['mcp', '--stdio'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
    let qerr = ''; q.stderr.on('data', (d) => (qerr += d));
    await sleep(3000);
    const still = h.filter((x) => { try { process.kill(x, 0); return true; } catch { return false; } });
    q.kill('SIGTERM'); await new Promise((r) => q.on('exit', r));
    console.log(`after a restart on the same state dir: ${still.length} still running`); console.log(qerr.split('\n').filter(l => /stale|left|remov/i.test(l)).join('\n'));
  }
  if (h.length) { leaks++; console.log(`${5 + i} ms: left ${h.join(' ')}`); for (const x of h) try { process.kill(x, 'SIGKILL'); } catch {} }
  p.stderr.destroy(); p.stdin?.destroy();
}
console.log(`${mode}: ${leaks} of 40 kills left a process`);
