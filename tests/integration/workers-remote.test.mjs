// SPDX-License-Identifier: Apache-2.0
// Remote workers as a team runs them: `onlyboxes console` and two `onlyboxes worker` processes on
// loopback, provisioned through the REST API with the startup command the console hands out.
// Tools run on the workers over REST and /mcp (output streams back while a command runs); calls
// spread over both workers; a terminal session sticks to its worker across a console restart; a
// cancel kills the remote process; TLS and mutual TLS with certificates made here; a worker on
// docker where a daemon runs.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { Console, bearer, call } from './console-lib.mjs';
import { assertNoProcess, sleep, sleepMarker, waitForProcess } from './lib.mjs';
import { consoleEnv, online, provision, startDeployment, startWorker, waitWorkers } from './remote-lib.mjs';
import { dockerUnavailable } from '../fault/lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-remote-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A task to its end; resolves the task. */
async function waitTask(base, token, id, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await bearer(base, 'GET', `/api/v1/tasks/${id}`, token);
    if (['succeeded', 'failed', 'timeout', 'canceled'].includes(r.body?.status)) return r.body;
    if (Date.now() >= deadline) assert.fail(`task ${id} did not end: ${r.text}`);
    await sleep(50);
  }
}

// A 1x1 PNG.
const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP438DwHwAGgAJ/zxIJ8QAAAABJRU5ErkJggg==';

const terminal = (base, token, body) => bearer(base, 'POST', '/api/v1/commands/terminal', token, body);

describe('a console with two remote workers', () => {
  let d, w1, w2, v1, v2;
  const env = consoleEnv(dir);

  before(async () => {
    d = await startDeployment(env);
    v1 = await provision(d.con, d.cookie);
    v2 = await provision(d.con, d.cookie);
    w1 = startWorker(v1, { WORKER_LABELS: 'zone=a' });
    w2 = startWorker(v2, { WORKER_LABELS: 'zone=b' });
    await waitWorkers(d.con, d.cookie, online([v1.WORKER_ID, v2.WORKER_ID]));
  });

  after(async () => {
    await w1?.stop();
    await w2?.stop();
    await d?.con.stop();
  });

  test('the workers list shows them as the original does: online, labels, capabilities, kind', async () => {
    const items = await waitWorkers(d.con, d.cookie, online([v1.WORKER_ID, v2.WORKER_ID]));
    const one = items.find((w) => w.node_id === v1.WORKER_ID);
    assert.equal(one.labels.zone, 'a');
    assert.equal(one.labels['obx.worker_type'], 'normal', 'the stored type is kept');
    assert.equal(one.executor_kind, process.env.ONLYBOXES_RUNTIME || 'bubblewrap');
    assert.deepEqual(one.capabilities.map((c) => c.name).sort(), ['echo', 'pythonExec', 'terminalExec', 'terminalFiles', 'terminalPty', 'terminalResource', 'terminalSession']);
    const inflight = await call(d.con.base, 'GET', '/api/v1/workers/inflight', { cookie: d.cookie });
    assert.deepEqual(inflight.body.workers.map((w) => w.node_id).sort(), [v1.WORKER_ID, v2.WORKER_ID].sort());
    // The worker's secret is not in the console's log, nor its own.
    assert.ok(!d.con.stderr.includes(v1.WORKER_SECRET));
    assert.ok(!w1.stderr.includes(v1.WORKER_SECRET));
  });

  test('echo, pythonExec and terminalExec run on the workers over REST', async () => {
    const echo = await bearer(d.con.base, 'POST', '/api/v1/commands/echo', d.token, { message: 'through the worker protocol' });
    assert.deepEqual([echo.status, echo.body], [200, { message: 'through the worker protocol' }]);
    const py = await bearer(d.con.base, 'POST', '/api/v1/tasks', d.token, {
      capability: 'pythonExec',
      input: { code: 'import socket; print(6 * 7)' },
      mode: 'sync',
    });
    assert.equal(py.status, 200, py.text);
    assert.equal(py.body.result.output, '42\n');
    const t1 = await terminal(d.con.base, d.token, { command: 'cd /tmp && echo hi > f && pwd', session_id: 'rest-1', create_if_missing: true });
    assert.equal(t1.status, 200, t1.text);
    assert.deepEqual([t1.body.stdout, t1.body.created, t1.body.session_id], ['/tmp\n', true, 'rest-1']);
    // The same session, on the same worker, ten times.
    for (let i = 0; i < 10; i++) {
      const t = await terminal(d.con.base, d.token, { command: 'pwd; cat f', session_id: 'rest-1' });
      assert.equal(t.body.stdout, '/tmp\nhi\n', `call ${i}: ${t.text}`);
    }
  });

  test('/mcp through a remote worker: every tool, and output as progress while the command runs', async () => {
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', d.con.base), {
      requestInit: { headers: { Authorization: `Bearer ${d.token}` } },
    });
    const client = new Client({ name: 'remote-test', version: '0' }, { capabilities: {} });
    await client.connect(transport);
    try {
      const e = await client.callTool({ name: 'echo', arguments: { message: 'mcp remote' } });
      assert.equal(e.structuredContent.message, 'mcp remote');
      const py = await client.callTool({ name: 'pythonExec', arguments: { code: 'print(2 ** 10)' } });
      assert.equal(py.structuredContent.output, '1024\n');
      const progress = [];
      const r = await client.callTool(
        { name: 'terminalExec', arguments: { command: 'for i in 1 2 3; do echo line$i; sleep 0.3; done', session_id: 'mcp-1', create_if_missing: true } },
        CallToolResultSchema,
        { onprogress: (p) => progress.push({ ...p, at: Date.now() }), timeout: 60_000 },
      );
      const done = Date.now();
      assert.equal(r.structuredContent.stdout, 'line1\nline2\nline3\n');
      assert.ok(progress.length >= 2, `progress: ${JSON.stringify(progress)}`);
      assert.match(progress[0].message, /line1/);
      assert.ok(progress[0].at < done, 'the first chunk arrives before the answer');
      // readImage of a file the session wrote, on the worker that has the session.
      await client.callTool({
        name: 'terminalExec',
        arguments: {
          command: `echo ${PNG_B64} | base64 -d > dot.png`,
          session_id: 'mcp-1',
        },
      });
      const img = await client.callTool({ name: 'readImage', arguments: { session_id: 'mcp-1', file_path: 'dot.png' } });
      assert.equal(img.content[0].type, 'image', JSON.stringify(img));
      assert.equal(img.content[0].mimeType, 'image/png');
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close();
    }
  });

  test('calls spread over both workers by load', async () => {
    const ids = [];
    for (let i = 0; i < 6; i++) {
      const r = await bearer(d.con.base, 'POST', '/api/v1/tasks', d.token, {
        capability: 'pythonExec',
        input: { code: 'import time; time.sleep(2)' },
        mode: 'async',
      });
      assert.equal(r.status, 202, r.text);
      ids.push(r.body.task_id);
    }
    // While they run, each worker has some of them.
    const deadline = Date.now() + 10_000;
    let busy = [];
    while (Date.now() < deadline) {
      const r = await call(d.con.base, 'GET', '/api/v1/workers/inflight', { cookie: d.cookie });
      busy = r.body.workers.map((w) => w.capabilities.find((c) => c.name === 'pythonexec')?.inflight || 0);
      if (busy.length === 2 && busy.every((n) => n > 0)) break;
      await sleep(50);
    }
    assert.ok(busy.length === 2 && busy.every((n) => n > 0), `in flight per worker: ${busy}`);
    for (const id of ids) assert.equal((await waitTask(d.con.base, d.token, id)).status, 'succeeded');
  });

  test('a cancel through the console kills the process on the worker', async () => {
    const m = sleepMarker();
    const r = await bearer(d.con.base, 'POST', '/api/v1/tasks', d.token, {
      capability: 'terminalExec',
      input: { command: `sleep ${m}`, session_id: 'cancel-1', create_if_missing: true },
      mode: 'async',
      timeout_ms: 600_000,
    });
    assert.equal(r.status, 202, r.text);
    assert.ok((await waitForProcess(m, 20_000)).length > 0, 'the command never started');
    const c = await bearer(d.con.base, 'POST', `/api/v1/tasks/${r.body.task_id}/cancel`, d.token);
    assert.equal(c.status, 200, c.text);
    await assertNoProcess(m, 10_000, 'a canceled remote command keeps running');
    assert.equal((await waitTask(d.con.base, d.token, r.body.task_id)).status, 'canceled');
    // The session itself is still there on its worker.
    const t = await terminal(d.con.base, d.token, { command: 'echo still', session_id: 'cancel-1' });
    assert.equal(t.body?.stdout, 'still\n', `${t.status} ${t.text}`);
  });

  test('a terminal session sticks to its worker across a console restart', async () => {
    const a = await terminal(d.con.base, d.token, { command: 'mkdir -p /tmp/sticky && cd /tmp/sticky && export MARK=kept && pwd', session_id: 'sticky-1', create_if_missing: true });
    assert.equal(a.body.stdout, '/tmp/sticky\n', a.text);
    // The workers know the console by its address: it comes back on the same ports.
    const ports = { CONSOLE_HTTP_ADDR: `127.0.0.1:${new URL(d.con.base).port}`, CONSOLE_GRPC_ADDR: `127.0.0.1:${d.con.grpcPort}` };
    await d.con.stop();
    d.con = await new Console({ ...env, ...ports }).start();
    await waitWorkers(d.con, d.cookie, online([v1.WORKER_ID, v2.WORKER_ID]), 30_000, 'after the console restart');
    for (let i = 0; i < 5; i++) {
      const b = await terminal(d.con.base, d.token, { command: 'pwd; echo $MARK', session_id: 'sticky-1' });
      assert.equal(b.status, 200, b.text);
      assert.equal(b.body.stdout, '/tmp/sticky\nkept\n');
      assert.equal(b.body.created, false);
    }
  });

  test('a worker stopped with SIGTERM drains, removes its boxes and goes offline', async () => {
    const v3 = await provision(d.con, d.cookie);
    const w3 = startWorker(v3);
    await waitWorkers(d.con, d.cookie, online([v3.WORKER_ID]));
    const r = await w3.stop();
    assert.equal(r.code, 0, w3.stderr);
    await assertNoProcess(w3.stateDir, 5000, 'a box of the stopped worker is left');
    await waitWorkers(d.con, d.cookie, (items) => items.some((w) => w.node_id === v3.WORKER_ID && w.status === 'offline'));
    // Deleting a connected worker ends its stream: it hears why.
    const v4 = await provision(d.con, d.cookie);
    const w4 = startWorker(v4);
    await waitWorkers(d.con, d.cookie, online([v4.WORKER_ID]));
    const del = await call(d.con.base, 'DELETE', `/api/v1/workers/${v4.WORKER_ID}`, { cookie: d.cookie });
    assert.equal(del.status, 204);
    const deadline = Date.now() + 10_000;
    while (!/worker credential revoked/.test(w4.stderr) && Date.now() < deadline) await sleep(50);
    assert.match(w4.stderr, /PermissionDenied: worker credential revoked/);
    await w4.stop();
  });
});

/* ------------------------------------------------------------------------------------------ */

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, signed by it, in d. */
function makeCerts(d) {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=obx test ca'], d);
  writeFileSync(path.join(d, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const [name, ext] of [
    ['server', ['-extfile', 'server.ext']],
    ['client', []],
    ['stranger', []],
  ]) {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], d);
    if (name === 'stranger') {
      openssl(['x509', '-req', '-in', `${name}.csr`, '-signkey', `${name}.key`, '-out', `${name}.pem`, '-days', '2'], d);
    } else {
      openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', ...ext], d);
    }
  }
}

/** Waits until w logs a line matching re (or exits); returns its stderr. */
async function waitLog(w, re, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(w.stderr) && !w.exit && Date.now() < deadline) await sleep(50);
  return w.stderr;
}

describe('TLS and mutual TLS on the workers port', () => {
  const cd = mkdtempSync(path.join(tmpdir(), 'obx-remote-tls-'));
  let d;
  const f = (n) => path.join(cd, n);

  before(async () => {
    makeCerts(cd);
    d = await startDeployment(
      consoleEnv(cd, { CONSOLE_GRPC_TLS_CERT_FILE: f('server.pem'), CONSOLE_GRPC_TLS_KEY_FILE: f('server.key'), CONSOLE_GRPC_CLIENT_CA_FILE: f('ca.pem') }),
    );
  });
  after(async () => {
    await d?.con.stop();
    rmSync(cd, { recursive: true, force: true });
  });

  test('the console says it requires client certificates, and the startup command asks for TLS', async () => {
    assert.match(d.con.stderr, /workers connect to .* \(gRPC, TLS with client certificates\)/);
    const v = await provision(d.con, d.cookie);
    assert.equal(v.WORKER_CONSOLE_INSECURE, undefined);
  });

  test('a worker with the CA and a client certificate connects and runs calls', async () => {
    const v = await provision(d.con, d.cookie);
    const w = startWorker(v, { WORKER_CONSOLE_CA_FILE: f('ca.pem'), WORKER_CONSOLE_CERT_FILE: f('client.pem'), WORKER_CONSOLE_KEY_FILE: f('client.key') });
    try {
      await waitWorkers(d.con, d.cookie, online([v.WORKER_ID]));
      assert.match(w.stderr, /TLS, client certificate/);
      const echo = await bearer(d.con.base, 'POST', '/api/v1/commands/echo', d.token, { message: 'over mTLS' });
      assert.deepEqual(echo.body, { message: 'over mTLS' });
    } finally {
      await w.stop();
    }
  });

  for (const [name, extra, why] of [
    ['without a client certificate', { WORKER_CONSOLE_CA_FILE: 'ca.pem' }, /refused or did not answer/],
    ['with a certificate the console did not sign', { WORKER_CONSOLE_CA_FILE: 'ca.pem', WORKER_CONSOLE_CERT_FILE: 'stranger.pem', WORKER_CONSOLE_KEY_FILE: 'stranger.key' }, /refused or did not answer/],
    ['trusting another CA', { WORKER_CONSOLE_CA_FILE: 'stranger.pem', WORKER_CONSOLE_CERT_FILE: 'client.pem', WORKER_CONSOLE_KEY_FILE: 'client.key' }, /refused or did not answer/],
    ['in plaintext', { WORKER_CONSOLE_INSECURE: 'true' }, /refused or did not answer/],
  ]) {
    test(`a worker ${name} is not let in, says so and keeps trying`, async () => {
      const v = await provision(d.con, d.cookie);
      const files = Object.fromEntries(Object.entries(extra).map(([k, val]) => [k, k === 'WORKER_CONSOLE_INSECURE' ? val : f(val)]));
      const w = startWorker(v, files);
      try {
        const log = await waitLog(w, /next attempt|refused or did not answer[\s\S]*refused or did not answer/);
        assert.match(log, why);
        assert.equal(w.exit, undefined, 'the worker keeps trying instead of exiting');
        const items = await waitWorkers(d.con, d.cookie, (all) => all.some((x) => x.node_id === v.WORKER_ID));
        assert.equal(items.find((x) => x.node_id === v.WORKER_ID).status, 'offline');
      } finally {
        await w.stop();
      }
    });
  }
});

describe('a worker on docker', { skip: dockerUnavailable() || false }, () => {
  const dd = mkdtempSync(path.join(tmpdir(), 'obx-remote-docker-'));
  let d, w, v;
  before(async () => {
    d = await startDeployment(consoleEnv(dd));
    v = await provision(d.con, d.cookie);
    w = startWorker(v, { ONLYBOXES_RUNTIME: 'docker' });
    await waitWorkers(d.con, d.cookie, online([v.WORKER_ID]), 60_000);
  });
  after(async () => {
    await w?.stop();
    await d?.con.stop();
    rmSync(dd, { recursive: true, force: true });
  });

  test('runs Python and a terminal session in containers, and says it is docker', async () => {
    const items = await waitWorkers(d.con, d.cookie, online([v.WORKER_ID]));
    assert.equal(items.find((x) => x.node_id === v.WORKER_ID).executor_kind, 'docker');
    const py = await bearer(d.con.base, 'POST', '/api/v1/tasks', d.token, { capability: 'pythonExec', input: { code: 'print(3 * 3)' }, mode: 'sync' });
    assert.equal(py.body.result?.output, '9\n', py.text);
    await terminal(d.con.base, d.token, { command: 'cd /tmp', session_id: 'dk', create_if_missing: true });
    const t = await terminal(d.con.base, d.token, { command: 'pwd', session_id: 'dk' });
    assert.equal(t.body.stdout, '/tmp\n', t.text);
  });
});
