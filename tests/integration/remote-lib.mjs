// SPDX-License-Identifier: Apache-2.0
// A team deployment on loopback for the tests: `onlyboxes console` with its gRPC port, workers
// provisioned through the REST API the way the dashboard does it, and `onlyboxes worker`
// processes started with the command the console handed out.

import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sleep } from './lib.mjs';
import { Console, call, login } from './console-lib.mjs';
import { WorkerProcess } from './interop/binary.mjs';

export const ADMIN = 'remote-admin';
export const ADMIN_PW = 'Remote-' + Math.random().toString(16).slice(2);

/** Console env for a fresh database in dir; heartbeats every second so losses show fast. */
export function consoleEnv(dir, extra = {}) {
  return {
    CONSOLE_DB_PATH: path.join(dir, 'console.db'),
    CONSOLE_HASH_KEY: 'remote-hash-key-' + process.pid,
    CONSOLE_DASHBOARD_USERNAME: ADMIN,
    CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
    CONSOLE_HEARTBEAT_INTERVAL_SEC: '1',
    ...extra,
  };
}

/** A started console with an admin cookie and an API token. */
export async function startDeployment(env, args = []) {
  const con = await new Console(env, args).start();
  const cookie = await login(con.base, ADMIN, ADMIN_PW);
  const t = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'remote-' + Math.random() } });
  assert.equal(t.status, 201, t.text);
  return { con, cookie, token: t.body.token };
}

/** Provisions a normal worker; resolves the WORKER_* variables of its startup command. */
export async function provision(con, cookie) {
  const r = await call(con.base, 'POST', '/api/v1/workers', { cookie, body: { type: 'normal' } });
  assert.equal(r.status, 201, r.text);
  return r.body.env;
}

/** Starts `onlyboxes worker` with vars (as handed out) plus extra; its boxes' state in a dir of
 * its own (so the test can find its processes: they name that directory). */
export function startWorker(vars, extra = {}) {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'obx-remote-worker-'));
  const w = new WorkerProcess({
    ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
    XDG_RUNTIME_DIR: stateDir,
    ONLYBOXES_WARM_POOL: '1',
    ...vars,
    ...extra,
  }).start();
  w.stateDir = stateDir;
  w.nodeId = vars.WORKER_ID;
  return w;
}

/** Polls GET /api/v1/workers until pred(items) holds; returns the items. */
export async function waitWorkers(con, cookie, pred, timeoutMs = 20_000, why = '') {
  const deadline = Date.now() + timeoutMs;
  let items = [];
  for (;;) {
    const r = await call(con.base, 'GET', '/api/v1/workers?page_size=100', { cookie });
    items = r.body?.items || [];
    if (pred(items)) return items;
    if (Date.now() >= deadline) assert.fail(`workers never became as expected ${why}: ${JSON.stringify(items)}`);
    await sleep(100);
  }
}

export const online = (ids) => (items) => ids.every((id) => items.some((w) => w.node_id === id && w.status === 'online'));
