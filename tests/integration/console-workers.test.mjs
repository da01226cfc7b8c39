// SPDX-License-Identifier: Apache-2.0
// Black-box tests of the console's worker management (reference §1.5): the real binary on a free
// loopback port with a fresh database, driven with real HTTP requests and dashboard cookies.
// Status codes, bodies and messages follow the reference; beyond it: the secret is stored only as
// its HMAC, an account's deletion takes its worker-sys along, and the embedded worker of
// `--with-worker` shows as an online worker to admins.

import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Console, call, login, startFailure } from './console-lib.mjs';

const ADMIN = 'workers-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2) + '-pw';
const HASH_KEY = 'workers-hash-key-' + process.pid;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const W = '/api/v1/workers';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-workers-'));
const env = {
  CONSOLE_DB_PATH: path.join(dir, 'db', 'console.db'),
  CONSOLE_HASH_KEY: HASH_KEY,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_ENABLE_REGISTRATION: 'true',
  ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
};
after(() => rmSync(dir, { recursive: true, force: true }));

/** Registers a non-admin account and signs it in; returns {cookie, id}. */
async function member(base, admin, username) {
  const r = await call(base, 'POST', '/api/v1/console/register', { cookie: admin, body: { username, password: username + '-pw' } });
  assert.equal(r.status, 201, r.text);
  return { cookie: await login(base, username, username + '-pw'), id: r.body.account.account_id };
}

/** Parses the startup command into its variables and the program it runs. */
function parseCommand(command) {
  const words = command.split(' ');
  const vars = Object.fromEntries(words.filter((w) => w.includes('=')).map((w) => w.split('=')));
  return { vars, program: words.filter((w) => !w.includes('=')).join(' ') };
}

describe('workers', () => {
  let con, admin, adminId;
  const made = []; // every POST /workers response, to check that no secret leaks

  before(async () => {
    con = await new Console(env).start();
    admin = await login(con.base, ADMIN, ADMIN_PW);
    adminId = (await call(con.base, 'GET', '/api/v1/console/session', { cookie: admin })).body.account.account_id;
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('every route needs the dashboard cookie', async () => {
    const routes = [
      ['GET', W],
      ['GET', `${W}/stats`],
      ['GET', `${W}/inflight`],
      ['POST', W],
      ['DELETE', `${W}/some-node`],
      ['GET', `${W}/some-node/startup-command`],
    ];
    for (const [m, p] of routes) {
      const none = await call(con.base, m, p, m === 'POST' ? { body: { type: 'normal' } } : {});
      assert.deepEqual([none.status, none.body], [401, { error: 'authentication required' }], `${m} ${p}`);
      const bogus = await call(con.base, m, p, { cookie: 'f'.repeat(64) });
      assert.equal(bogus.status, 401, `${m} ${p} with an unknown session`);
    }
    // A Bearer token is not a dashboard session.
    const tok = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie: admin, body: { name: 'not-a-cookie' } });
    const bearer = await call(con.base, 'GET', W, { headers: { authorization: `Bearer ${tok.body.token}` } });
    assert.equal(bearer.status, 401);
  });

  test('an empty list, stats and in-flight counters', async () => {
    const list = await call(con.base, 'GET', W, { cookie: admin });
    assert.deepEqual([list.status, list.body], [200, { items: [], total: 0, page: 1, page_size: 20 }]);
    const stats = await call(con.base, 'GET', `${W}/stats`, { cookie: admin });
    assert.equal(stats.status, 200);
    const { generated_at, ...counts } = stats.body;
    assert.deepEqual(counts, { total: 0, online: 0, offline: 0, stale: 0, stale_after_sec: 30 });
    assert.ok(!Number.isNaN(Date.parse(generated_at)), generated_at);
    const inflight = await call(con.base, 'GET', `${W}/inflight`, { cookie: admin });
    assert.equal(inflight.status, 200);
    assert.deepEqual(inflight.body.workers, []);
    assert.ok(!Number.isNaN(Date.parse(inflight.body.generated_at)));
  });

  test('validation: type, body, page, page_size, status, stale_after_sec', async () => {
    for (const [opts, error] of [
      [{ body: {} }, 'type must be one of normal|worker-sys'],
      [{ body: { type: '' } }, 'type must be one of normal|worker-sys'],
      [{ body: { type: 'gpu' } }, 'type must be one of normal|worker-sys'],
      [{ body: { type: 'worker_sys' } }, 'type must be one of normal|worker-sys'],
      [{ body: { type: 5 } }, 'invalid request body'],
      [{ raw: '{"type":' }, 'invalid request body'],
      [{ raw: '["normal"]' }, 'invalid request body'],
      [{}, 'invalid request body'],
    ]) {
      const r = await call(con.base, 'POST', W, { cookie: admin, ...opts });
      assert.deepEqual([r.status, r.body], [400, { error }], JSON.stringify(opts));
    }
    for (const [q, error] of [
      ['page=0', 'page must be a positive integer'],
      ['page=x', 'page must be a positive integer'],
      ['page_size=0', 'page_size must be a positive integer'],
      ['page_size=-3', 'page_size must be a positive integer'],
      ['page_size=ten', 'page_size must be a positive integer'],
      ['status=ONLINE', 'status must be one of all|online|offline'],
      ['status=dead', 'status must be one of all|online|offline'],
    ]) {
      const r = await call(con.base, 'GET', `${W}?${q}`, { cookie: admin });
      assert.deepEqual([r.status, r.body], [400, { error }], q);
    }
    for (const q of ['stale_after_sec=0', 'stale_after_sec=-1', 'stale_after_sec=1.5', 'stale_after_sec=abc']) {
      const r = await call(con.base, 'GET', `${W}/stats?${q}`, { cookie: admin });
      assert.deepEqual([r.status, r.body], [400, { error: 'stale_after_sec must be a positive integer' }], q);
    }
    const blank = await call(con.base, 'DELETE', `${W}/%20`, { cookie: admin });
    assert.deepEqual([blank.status, blank.body], [400, { error: 'node_id is required' }]);
  });

  test('admin provisions a normal worker: id, secret shown once, startup command', async () => {
    const r = await call(con.base, 'POST', W, { cookie: admin, body: { type: '  Normal ' } });
    assert.equal(r.status, 201, r.text);
    made.push(r.body);
    assert.deepEqual(Object.keys(r.body).sort(), ['command', 'env', 'node_id', 'type']);
    assert.match(r.body.node_id, UUID);
    assert.equal(r.body.type, 'normal');
    const { vars, program } = parseCommand(r.body.command);
    assert.deepEqual(Object.keys(vars), [
      'WORKER_CONSOLE_GRPC_TARGET',
      'WORKER_ID',
      'WORKER_SECRET',
      'WORKER_HEARTBEAT_INTERVAL_SEC',
      'WORKER_HEARTBEAT_JITTER_PCT',
      'WORKER_CONSOLE_INSECURE',
    ]);
    assert.equal(program, 'onlyboxes worker');
    // CONSOLE_GRPC_ADDR is 127.0.0.1:0 here: its host, with the port it got.
    assert.equal(vars.WORKER_CONSOLE_GRPC_TARGET, `127.0.0.1:${con.grpcPort}`);
    assert.equal(vars.WORKER_ID, r.body.node_id);
    assert.match(vars.WORKER_SECRET, /^[0-9a-f]{64}$/);
    assert.equal(vars.WORKER_HEARTBEAT_INTERVAL_SEC, '5');
    assert.equal(vars.WORKER_HEARTBEAT_JITTER_PCT, '20');
    // This console's worker port is plaintext, and a worker uses TLS unless told otherwise.
    assert.equal(vars.WORKER_CONSOLE_INSECURE, 'true');
    assert.deepEqual(r.body.env, vars);

    const list = await call(con.base, 'GET', W, { cookie: admin });
    assert.equal(list.status, 200);
    assert.equal(list.body.total, 1);
    const item = list.body.items[0];
    assert.deepEqual(Object.keys(item).sort(), [
      'capabilities', 'executor_kind', 'labels', 'last_seen_at', 'node_id', 'node_name', 'registered_at', 'status', 'version',
    ]);
    assert.equal(item.node_id, r.body.node_id);
    assert.equal(item.node_name, `worker-${r.body.node_id.slice(0, 8)}`);
    assert.equal(item.status, 'offline');
    assert.deepEqual(item.capabilities, []);
    assert.deepEqual(item.labels, { source: 'console-ui', 'obx.owner_id': adminId, 'obx.worker_type': 'normal' });
    assert.equal(item.executor_kind, '');
    assert.equal(item.version, '');
    assert.ok(Date.parse(item.last_seen_at) < Date.parse(item.registered_at), 'starts offline');

    // The secret is never returned again.
    assert.ok(!list.text.includes(vars.WORKER_SECRET));
    for (const id of [r.body.node_id, 'no-such-node']) {
      const again = await call(con.base, 'GET', `${W}/${id}/startup-command`, { cookie: admin });
      assert.deepEqual([again.status, again.body], [410, {
        error: 'worker secret is returned only when creating the worker; delete and recreate to get a new startup command',
      }]);
    }
  });

  test('only the HMAC of the secret is stored', async () => {
    const { vars } = parseCommand(made[0].command);
    const files = ['', '-wal'].map((s) => env.CONSOLE_DB_PATH + s).filter((f) => existsSync(f));
    const db = files.map((f) => readFileSync(f).toString('latin1')).join('');
    assert.ok(!db.includes(vars.WORKER_SECRET), 'the plaintext secret is in the database');
    const hmac = createHmac('sha256', HASH_KEY).update(vars.WORKER_SECRET).digest('hex');
    assert.ok(db.includes(hmac), 'the HMAC-SHA256 of the secret is stored');
  });

  test('pagination, status filter and stats', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await call(con.base, 'POST', W, { cookie: admin, body: { type: 'normal' } });
      assert.equal(r.status, 201);
      made.push(r.body);
    }
    const all = await call(con.base, 'GET', W, { cookie: admin });
    assert.equal(all.body.total, 4);
    // Oldest registration first.
    assert.deepEqual(all.body.items.map((w) => w.node_id), made.slice(0, 4).map((w) => w.node_id));
    const page2 = await call(con.base, 'GET', `${W}?page=2&page_size=3`, { cookie: admin });
    assert.deepEqual([page2.body.page, page2.body.page_size, page2.body.total], [2, 3, 4]);
    assert.deepEqual(page2.body.items.map((w) => w.node_id), [made[3].node_id]);
    const past = await call(con.base, 'GET', `${W}?page=9`, { cookie: admin });
    assert.deepEqual([past.body.items, past.body.total], [[], 4]);
    const clamped = await call(con.base, 'GET', `${W}?page_size=1000`, { cookie: admin });
    assert.equal(clamped.body.page_size, 100);

    const online = await call(con.base, 'GET', `${W}?status=online`, { cookie: admin });
    assert.deepEqual([online.body.items, online.body.total], [[], 0]);
    const offline = await call(con.base, 'GET', `${W}?status=offline&page_size=2`, { cookie: admin });
    assert.deepEqual([offline.body.items.length, offline.body.total], [2, 4]);

    const stats = await call(con.base, 'GET', `${W}/stats`, { cookie: admin });
    assert.deepEqual([stats.body.total, stats.body.online, stats.body.offline, stats.body.stale], [4, 0, 4, 0]);
    // A new worker counts as last seen offline_ttl + 1 s (16 s) ago.
    const stale = await call(con.base, 'GET', `${W}/stats?stale_after_sec=1`, { cookie: admin });
    assert.deepEqual([stale.body.stale, stale.body.stale_after_sec], [4, 1]);
  });

  test('role rules: members see, create and delete only their own worker-sys', async () => {
    const alice = await member(con.base, admin, 'w-alice');
    const bob = await member(con.base, admin, 'w-bob');

    const normal = await call(con.base, 'POST', W, { cookie: alice.cookie, body: { type: 'normal' } });
    assert.deepEqual([normal.status, normal.body], [403, { error: 'only admin can create normal worker' }]);
    const a1 = await call(con.base, 'POST', W, { cookie: alice.cookie, body: { type: 'WORKER-SYS' } });
    assert.equal(a1.status, 201, a1.text);
    assert.equal(a1.body.type, 'worker-sys');
    made.push(a1.body);
    const a2 = await call(con.base, 'POST', W, { cookie: alice.cookie, body: { type: 'worker-sys' } });
    assert.deepEqual([a2.status, a2.body], [409, { error: 'worker-sys already exists for current account' }]);
    const b1 = await call(con.base, 'POST', W, { cookie: bob.cookie, body: { type: 'worker-sys' } });
    assert.equal(b1.status, 201);
    made.push(b1.body);

    const aliceList = await call(con.base, 'GET', W, { cookie: alice.cookie });
    assert.equal(aliceList.body.total, 1);
    assert.equal(aliceList.body.items[0].node_id, a1.body.node_id);
    assert.deepEqual(aliceList.body.items[0].labels, { source: 'console-ui', 'obx.owner_id': alice.id, 'obx.worker_type': 'worker-sys' });
    const aliceStats = await call(con.base, 'GET', `${W}/stats`, { cookie: alice.cookie });
    assert.deepEqual([aliceStats.body.total, aliceStats.body.offline], [1, 1]);
    const aliceInflight = await call(con.base, 'GET', `${W}/inflight`, { cookie: alice.cookie });
    assert.deepEqual(aliceInflight.body.workers, []);
    const bobList = await call(con.base, 'GET', W, { cookie: bob.cookie });
    assert.deepEqual(bobList.body.items.map((w) => w.node_id), [b1.body.node_id]);
    const adminList = await call(con.base, 'GET', `${W}?page_size=100`, { cookie: admin });
    const ids = adminList.body.items.map((w) => w.node_id);
    assert.ok(ids.includes(a1.body.node_id) && ids.includes(b1.body.node_id), 'the admin sees every worker');

    // Another account's worker, or a normal one, is "not found" for a member.
    for (const id of [b1.body.node_id, made[0].node_id, 'missing']) {
      const r = await call(con.base, 'DELETE', `${W}/${id}`, { cookie: alice.cookie });
      assert.deepEqual([r.status, r.body], [404, { error: 'worker not found' }], id);
    }
    assert.equal((await call(con.base, 'GET', W, { cookie: bob.cookie })).body.total, 1, 'bob\'s worker is still there');
    const del = await call(con.base, 'DELETE', `${W}/${a1.body.node_id}`, { cookie: alice.cookie });
    assert.equal(del.status, 204);
    assert.equal((await call(con.base, 'GET', W, { cookie: alice.cookie })).body.total, 0);
    // With the old one gone the claim is free again.
    const a3 = await call(con.base, 'POST', W, { cookie: alice.cookie, body: { type: 'worker-sys' } });
    assert.equal(a3.status, 201);
    made.push(a3.body);

    // The admin has one worker-sys of its own too, and may delete anyone's.
    const s1 = await call(con.base, 'POST', W, { cookie: admin, body: { type: 'worker-sys' } });
    assert.equal(s1.status, 201);
    made.push(s1.body);
    const s2 = await call(con.base, 'POST', W, { cookie: admin, body: { type: 'worker-sys' } });
    assert.equal(s2.status, 409);
    const byAdmin = await call(con.base, 'DELETE', `${W}/${b1.body.node_id}`, { cookie: admin });
    assert.equal(byAdmin.status, 204);
    assert.equal((await call(con.base, 'GET', W, { cookie: bob.cookie })).body.total, 0);
    const twice = await call(con.base, 'DELETE', `${W}/${b1.body.node_id}`, { cookie: admin });
    assert.deepEqual([twice.status, twice.body], [404, { error: 'worker not found' }]);

    // Deleting an account deletes its worker-sys (and frees nothing else).
    const before = (await call(con.base, 'GET', W, { cookie: admin })).body.total;
    const gone = await call(con.base, 'DELETE', `/api/v1/console/accounts/${alice.id}`, { cookie: admin });
    assert.equal(gone.status, 204);
    const afterDel = await call(con.base, 'GET', `${W}?page_size=100`, { cookie: admin });
    assert.equal(afterDel.body.total, before - 1);
    assert.ok(!afterDel.body.items.some((w) => w.node_id === a3.body.node_id));
  });

  test('secrets never reach the log', async () => {
    assert.ok(made.length >= 5);
    for (const w of made) {
      const { vars } = parseCommand(w.command);
      assert.ok(!con.stderr.includes(vars.WORKER_SECRET), 'a worker secret was logged');
    }
    assert.match(con.stderr, /provisioned by account/);
  });

  test('a restart keeps provisioned workers and forgets no credential', async () => {
    const before = await call(con.base, 'GET', `${W}?page_size=100`, { cookie: admin });
    assert.equal((await con.stop()).code, 0);
    con = await new Console(env).start();
    const afterRestart = await call(con.base, 'GET', `${W}?page_size=100`, { cookie: admin });
    assert.equal(afterRestart.status, 200);
    assert.deepEqual(afterRestart.body, before.body);
    const still = await call(con.base, 'POST', W, { cookie: admin, body: { type: 'worker-sys' } });
    assert.equal(still.status, 409, 'the worker-sys claim survives the restart');
  });
});

describe('workers: CONSOLE_GRPC_ADDR and the embedded worker', () => {
  test('the target in the startup command: CONSOLE_GRPC_PUBLIC_ADDR, else the address bound', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'obx-console-workers-grpc-'));
    const c = await new Console({ ...env, CONSOLE_DB_PATH: path.join(d, 'c.db'), CONSOLE_GRPC_PUBLIC_ADDR: 'grpc.example.test:6001' }).start();
    try {
      const a = await login(c.base, ADMIN, ADMIN_PW);
      const r = await call(c.base, 'POST', W, { cookie: a, body: { type: 'normal' } });
      assert.equal(parseCommand(r.body.command).vars.WORKER_CONSOLE_GRPC_TARGET, 'grpc.example.test:6001');
      // A wildcard host takes the request's Host header (port dropped, IPv6 in brackets), with
      // the port bound.
      await c.stop();
      const c2 = await new Console({ ...env, CONSOLE_DB_PATH: path.join(d, 'c.db'), CONSOLE_GRPC_ADDR: '[::]:0' }).start();
      try {
        const port = c2.grpcPort;
        assert.ok(port > 0);
        for (const [host, target] of [
          ['console.example.test:8089', `console.example.test:${port}`],
          ['[::1]:8089', `[::1]:${port}`],
          ['bad$(host)', `127.0.0.1:${port}`],
        ]) {
          const r2 = await call(c2.base, 'POST', W, { cookie: a, body: { type: 'normal' }, headers: { host } });
          assert.equal(r2.status, 201);
          assert.equal(r2.body.env.WORKER_CONSOLE_GRPC_TARGET, target, host);
        }
      } finally {
        await c2.stop();
      }
      const bad = await startFailure({ ...env, CONSOLE_DB_PATH: path.join(d, 'c.db'), CONSOLE_GRPC_PUBLIC_ADDR: 'no-port' });
      assert.match(bad.stderr, /CONSOLE_GRPC_PUBLIC_ADDR=no-port/);
    } finally {
      if (c.proc.exitCode === null) await c.stop();
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('--with-worker: the embedded worker is an online worker for admins only', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'obx-console-workers-emb-'));
    const c = await new Console({ ...env, CONSOLE_DB_PATH: path.join(d, 'c.db') }, ['--with-worker']).start();
    try {
      const a = await login(c.base, ADMIN, ADMIN_PW);
      const p = await call(c.base, 'POST', W, { cookie: a, body: { type: 'normal' } });
      const list = await call(c.base, 'GET', W, { cookie: a });
      assert.equal(list.body.total, 2);
      const [emb, prov] = list.body.items;
      assert.equal(emb.node_id, 'embedded');
      assert.equal(emb.status, 'online');
      assert.equal(emb.executor_kind, env.ONLYBOXES_RUNTIME);
      assert.deepEqual(emb.labels, { 'obx.worker_type': 'normal', source: 'embedded' });
      assert.deepEqual(emb.capabilities.map((x) => x.name), ['echo', 'pythonExec', 'terminalExec', 'terminalFiles', 'terminalPty', 'terminalResource', 'terminalSession']);
      assert.equal(prov.node_id, p.body.node_id);
      const page2 = await call(c.base, 'GET', `${W}?page=2&page_size=1`, { cookie: a });
      assert.deepEqual([page2.body.items.map((w) => w.node_id), page2.body.total], [[p.body.node_id], 2]);
      const offline = await call(c.base, 'GET', `${W}?status=offline`, { cookie: a });
      assert.deepEqual(offline.body.items.map((w) => w.node_id), [p.body.node_id]);
      const online = await call(c.base, 'GET', `${W}?status=online`, { cookie: a });
      assert.deepEqual(online.body.items.map((w) => w.node_id), ['embedded']);
      const stats = await call(c.base, 'GET', `${W}/stats`, { cookie: a });
      assert.deepEqual([stats.body.total, stats.body.online, stats.body.offline], [2, 1, 1]);
      const inflight = await call(c.base, 'GET', `${W}/inflight`, { cookie: a });
      assert.equal(inflight.body.workers.length, 1);
      assert.equal(inflight.body.workers[0].node_id, 'embedded');
      for (const cap of inflight.body.workers[0].capabilities) {
        assert.equal(cap.name, cap.name.toLowerCase());
        assert.equal(cap.inflight, 0);
        assert.ok(cap.max_inflight > 0);
      }
      const del = await call(c.base, 'DELETE', `${W}/embedded`, { cookie: a });
      assert.equal(del.status, 409);
      assert.match(del.body.error, /embedded worker cannot be deleted/);

      const m = await member(c.base, a, 'emb-member');
      const mine = await call(c.base, 'GET', W, { cookie: m.cookie });
      assert.deepEqual([mine.body.items, mine.body.total], [[], 0]);
      assert.deepEqual((await call(c.base, 'GET', `${W}/inflight`, { cookie: m.cookie })).body.workers, []);
      assert.equal((await call(c.base, 'GET', `${W}/stats`, { cookie: m.cookie })).body.total, 0);
      const notFound = await call(c.base, 'DELETE', `${W}/embedded`, { cookie: m.cookie });
      assert.equal(notFound.status, 404);
    } finally {
      await c.stop();
      rmSync(d, { recursive: true, force: true });
    }
  });
});
