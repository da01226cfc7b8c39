// SPDX-License-Identifier: Apache-2.0
// Moving from the original Onlyboxes: a database with the original console's schema and rows
// (shared/reference/onlyboxes-upstream.md §7: its goose migrations, bcrypt password hashes made
// here with libcrypt's bcrypt, tokens and a worker credential hashed with the same
// CONSOLE_HASH_KEY, finished and interrupted tasks) is started on. The console comes up, keeps a
// copy of the file as it was, migrates it forward, lets its users in (replacing their bcrypt hash
// by argon2id at that sign-in), takes the original tokens and the provisioned worker's
// credential, and shows the workers and the tasks.

import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Console, bearer, call, login, startFailure } from './console-lib.mjs';
import { startWorker, waitWorkers, online } from './remote-lib.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'obx-migrate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HASH_KEY = 'the-original-hash-key';
const hmac = (v) => createHmac('sha256', HASH_KEY).update(v).digest('hex');

/** A bcrypt hash as Go's x/crypto/bcrypt writes it ($2a$, cost 12), made by libcrypt. */
function bcrypt(password) {
  const r = spawnSync('python3', ['-W', 'ignore', '-c',
    'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=4096)))', password], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const h = r.stdout.trim();
  assert.match(h, /^\$2b\$12\$/);
  return '$2a$' + h.slice(4);
}

/** Runs SQL on a database file with Python's sqlite3 (the statements as the original wrote them). */
function sql(file, script, query) {
  const r = spawnSync('python3', ['-c', `
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript(sys.argv[2])
rows = db.execute(sys.argv[3]).fetchall() if sys.argv[3] else []
db.commit()
print(json.dumps(rows))`, file, script, query || ''], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

// The original's final schema (§7), as its goose migrations 1-4 leave it.
const ORIGINAL_SCHEMA = `
CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL, is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));
INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1), (1, 1), (2, 1), (3, 1), (4, 1);
CREATE TABLE worker_nodes (node_id TEXT PRIMARY KEY, session_id TEXT NOT NULL DEFAULT '', provisioned INTEGER NOT NULL DEFAULT 0 CHECK (provisioned IN (0, 1)), node_name TEXT NOT NULL DEFAULT '', executor_kind TEXT NOT NULL DEFAULT '', version TEXT NOT NULL DEFAULT '', registered_at_unix_ms INTEGER NOT NULL, last_seen_at_unix_ms INTEGER NOT NULL);
CREATE INDEX idx_worker_nodes_last_seen ON worker_nodes(last_seen_at_unix_ms);
CREATE INDEX idx_worker_nodes_status_probe ON worker_nodes(session_id, last_seen_at_unix_ms);
CREATE TABLE worker_capabilities (node_id TEXT NOT NULL REFERENCES worker_nodes(node_id) ON DELETE CASCADE, capability_name TEXT NOT NULL, max_inflight INTEGER NOT NULL, PRIMARY KEY (node_id, capability_name));
CREATE INDEX idx_worker_caps_lookup ON worker_capabilities(capability_name, node_id);
CREATE TABLE worker_labels (node_id TEXT NOT NULL REFERENCES worker_nodes(node_id) ON DELETE CASCADE, label_key TEXT NOT NULL, label_value TEXT NOT NULL, PRIMARY KEY (node_id, label_key));
CREATE TABLE worker_credentials (node_id TEXT PRIMARY KEY REFERENCES worker_nodes(node_id) ON DELETE CASCADE, secret_hash TEXT NOT NULL, hash_algo TEXT NOT NULL, created_at_unix_ms INTEGER NOT NULL, updated_at_unix_ms INTEGER NOT NULL);
CREATE TABLE accounts (account_id TEXT PRIMARY KEY, username TEXT NOT NULL, username_key TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, hash_algo TEXT NOT NULL, is_admin INTEGER NOT NULL CHECK (is_admin IN (0, 1)), created_at_unix_ms INTEGER NOT NULL, updated_at_unix_ms INTEGER NOT NULL);
CREATE INDEX idx_accounts_created ON accounts(created_at_unix_ms);
CREATE TABLE trusted_tokens (token_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE, name TEXT NOT NULL, name_key TEXT NOT NULL, token_hash TEXT NOT NULL, token_masked TEXT NOT NULL, generated INTEGER NOT NULL CHECK (generated IN (0, 1)), created_at_unix_ms INTEGER NOT NULL, updated_at_unix_ms INTEGER NOT NULL, UNIQUE (account_id, name_key), UNIQUE (token_hash));
CREATE INDEX idx_trusted_tokens_account_created ON trusted_tokens(account_id, created_at_unix_ms);
CREATE TABLE tasks (task_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, request_id TEXT NOT NULL DEFAULT '', capability TEXT NOT NULL, input_json TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('queued', 'dispatched', 'running', 'succeeded', 'failed', 'timeout', 'canceled')), command_id TEXT NOT NULL DEFAULT '', result_json TEXT NOT NULL DEFAULT '', error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '', created_at_unix_ms INTEGER NOT NULL, updated_at_unix_ms INTEGER NOT NULL, deadline_at_unix_ms INTEGER NOT NULL, completed_at_unix_ms INTEGER NOT NULL DEFAULT 0, expires_at_unix_ms INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX idx_tasks_owner_request_unique ON tasks(owner_id, request_id) WHERE request_id <> '';
CREATE INDEX idx_tasks_owner_created ON tasks(owner_id, created_at_unix_ms DESC);
CREATE INDEX idx_tasks_expires ON tasks(expires_at_unix_ms);
CREATE INDEX idx_tasks_status ON tasks(status);
CREATE TABLE worker_sys_owner_claims (owner_id TEXT PRIMARY KEY, node_id TEXT NOT NULL UNIQUE REFERENCES worker_nodes(node_id) ON DELETE CASCADE, claimed_at_unix_ms INTEGER NOT NULL);
CREATE TABLE dashboard_credentials (singleton_id INTEGER PRIMARY KEY CHECK (singleton_id = 1), username TEXT NOT NULL, password_hash TEXT NOT NULL, hash_algo TEXT NOT NULL, created_at_unix_ms INTEGER NOT NULL, updated_at_unix_ms INTEGER NOT NULL);
`;

const ADMIN = { id: 'acc_' + 'a'.repeat(32), name: 'Admin-Original', password: 'orig admin pw!' };
const ALICE = { id: 'acc_' + 'b'.repeat(32), name: 'alice', password: 'alice-secret-42' };
const TOKEN = 'obx_' + 'c0ffee'.repeat(10) + 'abcd';
const NODE = '3f0c2a9e-1111-4222-8333-444455556666';
const SECRET = 'd'.repeat(64);
const T_DONE = '6b1f0f5e-0000-4000-8000-000000000001';
const T_RUNNING = '6b1f0f5e-0000-4000-8000-000000000002';

function originalRows() {
  const now = Date.now();
  const q = (s) => `'${String(s).replaceAll("'", "''")}'`;
  return `
INSERT INTO accounts VALUES (${q(ADMIN.id)}, ${q(ADMIN.name)}, ${q(ADMIN.name.toLowerCase())}, ${q(bcrypt(ADMIN.password))}, 'bcrypt', 1, ${now - 90000}, ${now - 90000});
INSERT INTO accounts VALUES (${q(ALICE.id)}, 'alice', 'alice', ${q(bcrypt(ALICE.password))}, 'bcrypt', 0, ${now - 80000}, ${now - 80000});
INSERT INTO dashboard_credentials VALUES (1, ${q(ADMIN.name)}, 'legacy', 'bcrypt', ${now - 99000}, ${now - 99000});
INSERT INTO trusted_tokens VALUES ('tok_${'e'.repeat(32)}', ${q(ALICE.id)}, 'laptop', 'laptop', ${q(hmac(TOKEN))}, 'obx_******abcd', 1, ${now - 70000}, ${now - 70000});
INSERT INTO worker_nodes VALUES (${q(NODE)}, 'a-session-of-then', 1, 'worker-3f0c2a9e', 'docker', '0.0.3', ${now - 60000}, ${now - 60000});
INSERT INTO worker_capabilities VALUES (${q(NODE)}, 'echo', 4), (${q(NODE)}, 'pythonExec', 4);
INSERT INTO worker_labels VALUES (${q(NODE)}, 'source', 'console-ui'), (${q(NODE)}, 'obx.owner_id', ${q(ADMIN.id)}), (${q(NODE)}, 'obx.worker_type', 'normal');
INSERT INTO worker_credentials VALUES (${q(NODE)}, ${q(hmac(SECRET))}, 'hmac-sha256', ${now - 60000}, ${now - 60000});
INSERT INTO tasks VALUES (${q(T_DONE)}, ${q(ALICE.id)}, 'req-1', 'pythonexec', '{"code":"print(1)"}', 'succeeded', 'cmd-1', '{"output":"1\\n","stderr":"","exit_code":0}', '', '', ${now - 50000}, ${now - 49000}, ${now + 10000}, ${now - 49000}, ${now + 86400000});
INSERT INTO tasks VALUES (${q(T_RUNNING)}, ${q(ALICE.id)}, '', 'terminalexec', '{"command":"sleep 100"}', 'running', 'cmd-2', '', '', '', ${now - 40000}, ${now - 40000}, ${now + 60000}, 0, 0);
`;
}

describe('a console started on the original console\'s database', () => {
  const db = path.join(dir, 'db', 'onlyboxes-console.db');
  let con;
  const env = { CONSOLE_DB_PATH: db, CONSOLE_HASH_KEY: HASH_KEY, CONSOLE_HEARTBEAT_INTERVAL_SEC: '1' };

  after(async () => {
    await con?.stop();
  });

  test('comes up, keeps a copy of the file as it was, and migrates it forward', async () => {
    spawnSync('mkdir', ['-p', path.dirname(db)]);
    sql(db, ORIGINAL_SCHEMA + originalRows());
    con = await new Console(env).start();
    assert.match(con.stderr, /made by the original console \(its schema version 4\); a copy of it as it was is kept at /);
    const copies = readdirSync(path.dirname(db)).filter((f) => f.startsWith('onlyboxes-console.db.original-'));
    assert.equal(copies.length, 1);
    // The copy is the original untouched: bcrypt hashes and the running task as they were.
    const copy = path.join(path.dirname(db), copies[0]);
    assert.deepEqual(sql(copy, '', 'SELECT hash_algo FROM accounts ORDER BY username_key'), [['bcrypt'], ['bcrypt']]);
    assert.deepEqual(sql(copy, '', `SELECT status FROM tasks WHERE task_id = '${T_RUNNING}'`), [['running']]);
    // Nothing of the original is lost; what it had not is added.
    assert.deepEqual(sql(db, '', 'SELECT count(*) FROM accounts'), [[2]]);
    assert.deepEqual(sql(db, '', 'SELECT count(*) FROM trusted_tokens'), [[1]]);
    assert.deepEqual(sql(db, '', 'SELECT count(*) FROM worker_credentials'), [[1]]);
    assert.deepEqual(sql(db, '', 'SELECT count(*) FROM goose_db_version'), [[5]]);
    assert.deepEqual(sql(db, '', 'PRAGMA user_version'), [[5]]);
  });

  test('its users sign in with their old passwords; the bcrypt hash becomes argon2id then', async () => {
    const bad = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: 'alice', password: 'wrong' } });
    assert.equal(bad.status, 401);
    assert.deepEqual(sql(db, '', "SELECT hash_algo FROM accounts WHERE username_key = 'alice'"), [['bcrypt']]);
    await login(con.base, 'alice', ALICE.password);
    const [[algo, hash]] = sql(db, '', "SELECT hash_algo, password_hash FROM accounts WHERE username_key = 'alice'");
    assert.equal(algo, 'argon2id');
    assert.match(hash, /^\$argon2id\$/);
    assert.match(con.stderr, /account alice: its bcrypt password hash was replaced by argon2id/);
    assert.ok(!con.stderr.includes(ALICE.password), 'a password in the log');
    // Again, now against the new hash; the admin's name keeps its case.
    const cookie = await login(con.base, 'alice', ALICE.password);
    const me = await call(con.base, 'GET', '/api/v1/console/session', { cookie });
    assert.deepEqual(me.body.account, { account_id: ALICE.id, username: 'alice', is_admin: false });
    const admin = await login(con.base, 'admin-original', ADMIN.password);
    const s = await call(con.base, 'GET', '/api/v1/console/session', { cookie: admin });
    assert.equal(s.body.account.username, 'Admin-Original');
    assert.equal(s.body.account.is_admin, true);
  });

  test('an original token still works, and the finished task stays readable', async () => {
    const done = await bearer(con.base, 'GET', `/api/v1/tasks/${T_DONE}`, TOKEN);
    assert.equal(done.status, 200, done.text);
    assert.equal(done.body.status, 'succeeded');
    assert.deepEqual(done.body.result, { output: '1\n', stderr: '', exit_code: 0 });
    assert.equal(done.body.request_id, 'req-1');
    const running = await bearer(con.base, 'GET', `/api/v1/tasks/${T_RUNNING}`, TOKEN);
    assert.equal(running.body.status, 'failed');
    assert.deepEqual(running.body.error, { code: 'console_restarted', message: 'task interrupted by console restart' });
    const list = await bearer(con.base, 'GET', '/api/v1/tasks', TOKEN);
    assert.deepEqual(list.body.items.map((t) => t.task_id), [T_RUNNING, T_DONE]);
    // The original replayed an earlier task for a reused request_id: so does this console for it.
    const again = await bearer(con.base, 'POST', '/api/v1/tasks', TOKEN, {
      capability: 'pythonExec', input: { code: 'print(1)' }, request_id: 'req-1', mode: 'async',
    });
    assert.equal(again.body.task_id, T_DONE);
    const tokens = await call(con.base, 'GET', '/api/v1/console/tokens', { cookie: await login(con.base, 'alice', ALICE.password) });
    assert.deepEqual(tokens.body.items.map((t) => t.name), ['laptop']);
  });

  test('the provisioned worker is listed and connects with its original credential', async () => {
    const admin = await login(con.base, 'admin-original', ADMIN.password);
    let items = await waitWorkers(con, admin, (it) => it.some((w) => w.node_id === NODE));
    const w = items.find((x) => x.node_id === NODE);
    assert.equal(w.status, 'offline');
    assert.equal(w.labels['obx.worker_type'], 'normal');
    const worker = startWorker({
      WORKER_CONSOLE_GRPC_TARGET: con.grpcTarget, WORKER_CONSOLE_INSECURE: 'true', WORKER_ID: NODE, WORKER_SECRET: SECRET,
    });
    try {
      items = await waitWorkers(con, admin, online([NODE]));
      const echo = await bearer(con.base, 'POST', '/api/v1/commands/echo', TOKEN, { message: 'after the move' });
      assert.deepEqual([echo.status, echo.body], [200, { message: 'after the move' }]);
    } finally {
      await worker.stop();
    }
  });

  test('a second start migrates nothing again and keeps no second copy', async () => {
    await con.stop();
    con = await new Console(env).start();
    assert.doesNotMatch(con.stderr, /made by the original console/);
    assert.equal(readdirSync(path.dirname(db)).filter((f) => f.includes('.original-')).length, 1);
    await login(con.base, 'alice', ALICE.password);
  });
});

test('a database of an early original console (no accounts yet) is refused, saying what to do', async () => {
  const db = path.join(dir, 'early.db');
  sql(db, `CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL, is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));
INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1), (1, 1), (2, 1);
CREATE TABLE trusted_tokens (token_hash TEXT PRIMARY KEY);`);
  const r = await startFailure({ CONSOLE_DB_PATH: db, CONSOLE_HASH_KEY: HASH_KEY });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /made by an early version of the original console \(its schema version 2 has no accounts yet\): start that console once on it/);
  assert.deepEqual(sql(db, '', 'SELECT count(*) FROM trusted_tokens'), [[0]]);
  assert.deepEqual(sql(db, '', 'PRAGMA user_version'), [[0]]);
});
