// What the same work costs without onlyboxes, on the same machine and image, for the table of
// bench/run.sh:
//   - `docker exec CONTAINER sh -c 'echo hi'` (the docker CLI) on a running container;
//   - the Engine API exec (POST /containers/ID/exec, then /exec/ID/start) on the same container,
//     with a client that keeps its connection to the daemon;
//   - `docker run --rm IMAGE python3 -c 'print(1)'`.
//
//   node bench/baselines.mjs [--image onlyboxes/work:bookworm-data] [--n 50] [--md]
//
// Needs a Docker daemon and the image (scripts/docker-up.sh). Prints nothing but a note on stderr
// and exits 0 when there is no daemon, so the harness can go on without these rows.
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { opt, flag, nowMs, pct } from './lib.mjs';

const IMAGE = opt('image', process.env.WORKER_TERMINAL_EXEC_DOCKER_IMAGE || 'onlyboxes/work:bookworm-data');
const N = Number(opt('n', '50'));
const MD = flag('md');
const SOCKET = (process.env.DOCKER_HOST || 'unix:///var/run/docker.sock').replace('unix://', '');


const agent = new http.Agent({ keepAlive: true, maxSockets: 1, socketPath: SOCKET });

function api(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        agent,
        socketPath: SOCKET,
        method,
        path,
        headers: data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {},
      },
      (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// The multiplexed stream of a non-TTY exec: 8-byte headers, stream 1 is stdout.
function demuxStdout(buf) {
  let out = '';
  for (let o = 0; o + 8 <= buf.length; ) {
    const len = buf.readUInt32BE(o + 4);
    if (buf[o] === 1) out += buf.subarray(o + 8, o + 8 + len).toString();
    o += 8 + len;
  }
  return out;
}

async function main() {
  try {
    const ping = await api('GET', '/_ping');
    if (ping.status !== 200) throw new Error(`HTTP ${ping.status}`);
  } catch (e) {
    console.error(`baselines: no Docker daemon at ${SOCKET} (${e.message}); docker rows skipped`);
    return;
  }
  const img = await api('GET', `/images/${encodeURIComponent(IMAGE)}/json`);
  if (img.status !== 200) {
    console.error(`baselines: image ${IMAGE} missing (scripts/build-test-image.sh); docker rows skipped`);
    return;
  }

  const created = await api('POST', '/containers/create', {
    Image: IMAGE,
    Cmd: ['sleep', 'infinity'],
    HostConfig: { NetworkMode: 'none', AutoRemove: false },
    Labels: { 'onlyboxes.bench': 'true' },
  });
  if (created.status !== 201) throw new Error(`create: ${created.body}`);
  const id = JSON.parse(created.body).Id;
  const rows = [];
  try {
    const started = await api('POST', `/containers/${id}/start`);
    if (started.status !== 204) throw new Error(`start: ${started.body}`);

    const cli = [];
    for (let i = 0; i < N; i++) {
      const t0 = nowMs();
      const r = spawnSync('docker', ['exec', id, 'sh', '-c', 'echo hi'], { encoding: 'utf8' });
      cli.push(nowMs() - t0);
      if (r.stdout !== 'hi\n') throw new Error(`docker exec: ${r.stdout} ${r.stderr}`);
    }
    rows.push({ name: "docker exec CONTAINER sh -c 'echo hi' (CLI)", s: cli });

    const engine = [];
    for (let i = 0; i < N; i++) {
      const t0 = nowMs();
      const ex = await api('POST', `/containers/${id}/exec`, {
        Cmd: ['sh', '-c', 'echo hi'],
        AttachStdout: true,
        AttachStderr: true,
      });
      const eid = JSON.parse(ex.body).Id;
      const st = await api('POST', `/exec/${eid}/start`, { Detach: false, Tty: false });
      engine.push(nowMs() - t0);
      if (demuxStdout(st.body) !== 'hi\n') throw new Error(`engine exec: ${st.body}`);
    }
    rows.push({ name: "Engine API exec sh -c 'echo hi' (kept connection)", s: engine });
  } finally {
    await api('DELETE', `/containers/${id}?force=1`);
  }

  const run = [];
  for (let i = 0; i < Math.max(5, Math.floor(N / 5)); i++) {
    const t0 = nowMs();
    const r = spawnSync('docker', ['run', '--rm', '--network', 'none', IMAGE, 'python3', '-c', 'print(1)'], {
      encoding: 'utf8',
    });
    run.push(nowMs() - t0);
    if (r.stdout !== '1\n') throw new Error(`docker run: ${r.stdout} ${r.stderr}`);
  }
  rows.push({ name: "docker run --rm IMAGE python3 -c 'print(1)'", s: run });

  for (const r of rows) {
    const [p50, p90, p99] = [50, 90, 99].map((p) => pct(r.s, p).toFixed(2));
    if (MD) console.log(`| baseline: ${r.name} | ${r.s.length} | ${p50} | ${p90} | ${p99} | - |`);
    else console.log(`${r.name.padEnd(55)} n=${String(r.s.length).padStart(4)}  p50=${p50}  p90=${p90}  p99=${p99}`);
  }
  agent.destroy();
}

await main();
