// SPDX-License-Identifier: Apache-2.0
// Black-box tests of `onlyboxes console`: the real binary on a free loopback port with a fresh
// SQLite database, driven with real HTTP requests. Status codes, bodies and messages follow
// reference §1.3/§1.4; the rest checks what we fixed (rate limit, body limit, the admin
// password never printed, sessions surviving a restart).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BIN } from './lib.mjs';
import { COOKIE, Console, call, login, sessionCookie } from './console-lib.mjs';

const ADMIN = 'root-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2) + '-pw';
const HASH_KEY = 'test-hash-key-' + process.pid;

const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-'));
const dbPath = path.join(dir, 'db', 'console.db');
const env = {
  CONSOLE_DB_PATH: dbPath,
  CONSOLE_HASH_KEY: HASH_KEY,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_ENABLE_REGISTRATION: 'true',
};
let con;
let admin; // cookie value
after(() => rmSync(dir, { recursive: true, force: true }));

describe('console', () => {
  before(async () => {
    con = await new Console(env).start();
    admin = await login(con.base, ADMIN, ADMIN_PW);
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('login: cookie attributes, wrong password, bad body', async () => {
    const r = await call(con.base, 'POST', '/api/v1/console/login', {
      body: { username: `  ${ADMIN.toUpperCase()} `, password: ADMIN_PW },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.authenticated, true);
    assert.equal(r.body.account.username, ADMIN);
    assert.equal(r.body.account.is_admin, true);
    assert.match(r.body.account.account_id, /^acc_[0-9a-f]{32}$/);
    assert.equal(r.body.registration_enabled, true);
    assert.equal(typeof r.body.console_version, 'string');
    const { value, header } = sessionCookie(r);
    assert.match(value, /^[0-9a-f]{64}$/);
    for (const attr of ['Path=/', 'HttpOnly', 'SameSite=Strict', 'Max-Age=43200']) assert.ok(header.includes(attr), header);
    assert.ok(!/secure/i.test(header), 'no Secure on plain HTTP');
    assert.ok(/Expires=/.test(header));

    const bad = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: ADMIN, password: 'nope' } });
    assert.equal(bad.status, 401);
    assert.deepEqual(bad.body, { error: 'invalid username or password' });
    const unknown = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: 'ghost', password: 'x' } });
    assert.deepEqual([unknown.status, unknown.body], [401, { error: 'invalid username or password' }]);
    const malformed = await call(con.base, 'POST', '/api/v1/console/login', { raw: '{not json' });
    assert.deepEqual([malformed.status, malformed.body], [400, { error: 'invalid request body' }]);
    const typed = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: 1, password: 'x' } });
    assert.deepEqual([typed.status, typed.body], [400, { error: 'invalid request body' }]);
  });

  test('session requires a valid cookie; logout invalidates it', async () => {
    const none = await call(con.base, 'GET', '/api/v1/console/session');
    assert.deepEqual([none.status, none.body], [401, { error: 'authentication required' }]);
    assert.equal(none.headers.getSetCookie().length, 0, 'no cookie cleared without a cookie');
    const bogus = await call(con.base, 'GET', '/api/v1/console/session', { cookie: 'f'.repeat(64) });
    assert.equal(bogus.status, 401);
    assert.match(bogus.headers.getSetCookie()[0], /Max-Age=0/);

    const c = await login(con.base, ADMIN, ADMIN_PW);
    const ok = await call(con.base, 'GET', '/api/v1/console/session', { cookie: c });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.account.username, ADMIN);
    const out = await call(con.base, 'POST', '/api/v1/console/logout', { cookie: c });
    assert.equal(out.status, 204);
    assert.match(out.headers.getSetCookie()[0], new RegExp(`^${COOKIE}=;.*Max-Age=0`));
    const after = await call(con.base, 'GET', '/api/v1/console/session', { cookie: c });
    assert.equal(after.status, 401);
    const anon = await call(con.base, 'POST', '/api/v1/console/logout');
    assert.equal(anon.status, 204);
  });

  test('register: validation, duplicates, non-admin forbidden', async () => {
    const p = '/api/v1/console/register';
    const cases = [
      [{ username: '   ', password: 'pw' }, 'username is required'],
      [{ username: 'x'.repeat(65), password: 'pw' }, 'username length must be <= 64'],
      [{ username: 'alice', password: '   ' }, 'password is required'],
    ];
    for (const [body, error] of cases) {
      const r = await call(con.base, 'POST', p, { cookie: admin, body });
      assert.deepEqual([r.status, r.body], [400, { error }], JSON.stringify(body));
    }
    const bad = await call(con.base, 'POST', p, { cookie: admin, raw: '[]' });
    assert.deepEqual([bad.status, bad.body], [400, { error: 'invalid request body' }]);
    const ok = await call(con.base, 'POST', p, { cookie: admin, body: { username: ' Alice ', password: 'alice-pw' } });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.body.account.username, 'Alice');
    assert.equal(ok.body.account.is_admin, false);
    assert.match(ok.body.account.account_id, /^acc_[0-9a-f]{32}$/);
    assert.ok(ok.body.created_at && ok.body.updated_at);
    const dup = await call(con.base, 'POST', p, { cookie: admin, body: { username: 'ALICE', password: 'x' } });
    assert.deepEqual([dup.status, dup.body], [409, { error: 'username already exists' }]);

    const alice = await login(con.base, 'alice', 'alice-pw');
    const forbidden = await call(con.base, 'POST', p, { cookie: alice, body: { username: 'bob', password: 'x' } });
    assert.deepEqual([forbidden.status, forbidden.body], [403, { error: 'admin access required' }]);
    const list = await call(con.base, 'GET', '/api/v1/console/accounts', { cookie: alice });
    assert.deepEqual([list.status, list.body], [403, { error: 'admin access required' }]);
    const noauth = await call(con.base, 'POST', p, { body: { username: 'bob', password: 'x' } });
    assert.equal(noauth.status, 401);
  });

  test('accounts list: pagination, clamping, validation', async () => {
    for (const name of ['pg1', 'pg2', 'pg3']) {
      const r = await call(con.base, 'POST', '/api/v1/console/register', { cookie: admin, body: { username: name, password: 'pw-' + name } });
      assert.equal(r.status, 201);
    }
    const all = await call(con.base, 'GET', '/api/v1/console/accounts', { cookie: admin });
    assert.equal(all.status, 200);
    assert.equal(all.body.page, 1);
    assert.equal(all.body.page_size, 20);
    assert.equal(all.body.total, all.body.items.length);
    assert.ok(all.body.total >= 4);
    const item = all.body.items.find((a) => a.username === ADMIN);
    assert.deepEqual(Object.keys(item).sort(), ['account_id', 'created_at', 'is_admin', 'updated_at', 'username']);
    const page2 = await call(con.base, 'GET', '/api/v1/console/accounts?page=2&page_size=2', { cookie: admin });
    assert.equal(page2.body.items.length, Math.min(2, all.body.total - 2));
    assert.deepEqual(page2.body.items.map((a) => a.account_id), all.body.items.slice(2, 4).map((a) => a.account_id));
    const clamped = await call(con.base, 'GET', '/api/v1/console/accounts?page_size=1000', { cookie: admin });
    assert.equal(clamped.body.page_size, 100);
    for (const [q, error] of [
      ['page=0', 'page must be a positive integer'],
      ['page=abc', 'page must be a positive integer'],
      ['page_size=-1', 'page_size must be a positive integer'],
    ]) {
      const r = await call(con.base, 'GET', '/api/v1/console/accounts?' + q, { cookie: admin });
      assert.deepEqual([r.status, r.body], [400, { error }], q);
    }
  });

  test('tokens: create, mask, list, conflicts, delete, value 410, isolation', async () => {
    const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: admin, body: { username: 'tok-user', password: 'tok-pw' } });
    assert.equal(reg.status, 201);
    const user = await login(con.base, 'tok-user', 'tok-pw');
    const p = '/api/v1/console/tokens';

    const gen = await call(con.base, 'POST', p, { cookie: user, body: { name: ' ci ' } });
    assert.equal(gen.status, 201, gen.text);
    assert.match(gen.body.token, /^obx_[0-9a-f]{64}$/);
    assert.match(gen.body.id, /^tok_[0-9a-f]{32}$/);
    assert.equal(gen.body.name, 'ci');
    assert.equal(gen.body.generated, true);
    assert.equal(gen.body.token_masked, gen.body.token.slice(0, 4) + '*'.repeat(60) + gen.body.token.slice(-4));

    const chosen = 'my-secret-token-0123456789abcdef';
    const manual = await call(con.base, 'POST', p, { cookie: user, body: { name: 'manual', token: `  ${chosen}  ` } });
    assert.equal(manual.status, 201, manual.text);
    assert.equal(manual.body.token, chosen);
    assert.equal(manual.body.generated, false);
    assert.equal(manual.body.token_masked, 'my-s' + '*'.repeat(24) + 'cdef');
    const other = await call(con.base, 'POST', p, { cookie: user, body: { name: 'short', token: 'Z'.repeat(20) + 'abcdefghijkl' } });
    assert.equal(other.status, 201, other.text);
    const nul = await call(con.base, 'POST', p, { cookie: user, body: { name: 'null-token', token: null } });
    assert.equal(nul.body.generated, true);

    const list = await call(con.base, 'GET', p, { cookie: user });
    assert.equal(list.status, 200);
    assert.equal(list.body.total, 4);
    assert.deepEqual(list.body.items.map((t) => t.name), ['ci', 'manual', 'short', 'null-token']);
    for (const t of list.body.items) {
      assert.deepEqual(Object.keys(t).sort(), ['created_at', 'id', 'name', 'token_masked', 'updated_at']);
      assert.ok(!JSON.stringify(t).includes(gen.body.token));
    }

    const dupName = await call(con.base, 'POST', p, { cookie: user, body: { name: 'CI' } });
    assert.deepEqual([dupName.status, dupName.body], [409, { error: 'token name already exists' }]);
    const dupValue = await call(con.base, 'POST', p, { cookie: admin, body: { name: 'other', token: chosen } });
    assert.deepEqual([dupValue.status, dupValue.body], [409, { error: 'token already exists' }]);
    for (const [body, error] of [
      [{}, 'name is required'],
      [{ name: '  ' }, 'name is required'],
      [{ name: 'n'.repeat(65) }, 'name length must be <= 64'],
      [{ name: 'a', token: '   ' }, 'token is required'],
      [{ name: 'a', token: 'x'.repeat(257) }, 'token length must be <= 256'],
      [{ name: 'a', token: 'has space' }, 'token must not contain whitespace'],
      [{ name: 'a', token: 'nb\u00a0sp' }, 'token must not contain whitespace'],
      // Guessable values: a chosen token alone signs in as its account.
      ...['abc', 'password1234', 'x'.repeat(64), 'abababababababababababababababab', '0123456789a'.repeat(4)].map((token) => [
        { name: 'a', token },
        'token must be at least 32 characters long with at least 12 different ones (leave it out to get a generated one)',
      ]),
      [{ name: 5 }, 'invalid request body'],
    ]) {
      const r = await call(con.base, 'POST', p, { cookie: user, body });
      assert.deepEqual([r.status, r.body], [400, { error }], JSON.stringify(body));
    }
    const unicodeName = await call(con.base, 'POST', p, { cookie: user, body: { name: 'é'.repeat(64) } });
    assert.equal(unicodeName.status, 201, '64 runes (128 bytes) is allowed');

    // Another account sees none of these and cannot delete them.
    const adminList = await call(con.base, 'GET', p, { cookie: admin });
    assert.ok(!adminList.body.items.some((t) => t.id === gen.body.id));
    const foreign = await call(con.base, 'DELETE', `${p}/${gen.body.id}`, { cookie: admin });
    assert.deepEqual([foreign.status, foreign.body], [404, { error: 'token not found' }]);

    const value = await call(con.base, 'GET', `${p}/${gen.body.id}/value`, { cookie: user });
    assert.deepEqual([value.status, value.body], [410, {
      error: 'token value is only returned at creation time; delete and recreate the token to obtain a new value',
    }]);
    const del = await call(con.base, 'DELETE', `${p}/${gen.body.id}`, { cookie: user });
    assert.equal(del.status, 204);
    const again = await call(con.base, 'DELETE', `${p}/${gen.body.id}`, { cookie: user });
    assert.equal(again.status, 404);
    const noauth = await call(con.base, 'GET', p);
    assert.deepEqual([noauth.status, noauth.body], [401, { error: 'authentication required' }]);
  });

  test('delete account: self, admin, missing, member with its tokens and sessions', async () => {
    const session = await call(con.base, 'GET', '/api/v1/console/session', { cookie: admin });
    const adminId = session.body.account.account_id;
    const self = await call(con.base, 'DELETE', `/api/v1/console/accounts/${adminId}`, { cookie: admin });
    assert.deepEqual([self.status, self.body], [403, { error: 'cannot delete current account' }]);
    const missing = await call(con.base, 'DELETE', '/api/v1/console/accounts/acc_nope', { cookie: admin });
    assert.deepEqual([missing.status, missing.body], [404, { error: 'account not found' }]);

    const reg = await call(con.base, 'POST', '/api/v1/console/register', { cookie: admin, body: { username: 'doomed', password: 'doomed-pw' } });
    const doomed = await login(con.base, 'doomed', 'doomed-pw');
    const doomedValue = 'doomed-token-value-0123456789abcdef';
    const tok = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie: doomed, body: { name: 'd', token: doomedValue } });
    assert.equal(tok.status, 201);
    // A non-admin cannot delete the admin; the route is admin-only.
    const byMember = await call(con.base, 'DELETE', `/api/v1/console/accounts/${adminId}`, { cookie: doomed });
    assert.equal(byMember.status, 403);

    const del = await call(con.base, 'DELETE', `/api/v1/console/accounts/${reg.body.account.account_id}`, { cookie: admin });
    assert.equal(del.status, 204);
    const gone = await call(con.base, 'GET', '/api/v1/console/session', { cookie: doomed });
    assert.equal(gone.status, 401, 'the deleted account is logged out');
    const relogin = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: 'doomed', password: 'doomed-pw' } });
    assert.equal(relogin.status, 401);
    // Its token is gone: the same value can be created again by someone else.
    const reuse = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie: admin, body: { name: 'reuse', token: doomedValue } });
    assert.equal(reuse.status, 201, 'the deleted account\'s token no longer exists');
  });

  test('password change: validation, wrong current, rotation of sessions', async () => {
    await call(con.base, 'POST', '/api/v1/console/register', { cookie: admin, body: { username: 'pwuser', password: 'old-pw' } });
    const s1 = await login(con.base, 'pwuser', 'old-pw');
    const s2 = await login(con.base, 'pwuser', 'old-pw');
    const p = '/api/v1/console/password';
    for (const [body, error] of [
      [{ new_password: 'x' }, 'current_password is required'],
      [{ current_password: 'old-pw', new_password: '  ' }, 'new_password is required'],
    ]) {
      const r = await call(con.base, 'POST', p, { cookie: s1, body });
      assert.deepEqual([r.status, r.body], [400, { error }]);
    }
    const wrong = await call(con.base, 'POST', p, { cookie: s1, body: { current_password: 'bad', new_password: 'new-pw' } });
    assert.deepEqual([wrong.status, wrong.body], [401, { error: 'invalid current password' }]);
    const ok = await call(con.base, 'POST', p, { cookie: s1, body: { current_password: 'old-pw', new_password: 'new-pw' } });
    assert.equal(ok.status, 204);
    const fresh = sessionCookie(ok).value;
    for (const old of [s1, s2]) assert.equal((await call(con.base, 'GET', '/api/v1/console/session', { cookie: old })).status, 401);
    assert.equal((await call(con.base, 'GET', '/api/v1/console/session', { cookie: fresh })).status, 200);
    assert.equal((await call(con.base, 'POST', '/api/v1/console/login', { body: { username: 'pwuser', password: 'old-pw' } })).status, 401);
    await login(con.base, 'pwuser', 'new-pw');
  });

  test('router: unknown routes 404, a known path with another method 405, trailing slash redirect, body limit', async () => {
    // Outside the API, as the reference: an empty 404.
    for (const [m, p] of [['GET', '/nope'], ['GET', '/API/v1/console/session']]) {
      const r = await call(con.base, m, p);
      assert.deepEqual([r.status, r.text], [404, ''], `${m} ${p}`);
    }
    // On the API, the answer names the mistake.
    const none = await call(con.base, 'POST', '/api/v1/commands/python', { body: { code: 'print(1)' } });
    assert.deepEqual([none.status, none.body], [404, { error: 'no such route: POST /api/v1/commands/python' }]);
    for (const [m, p, allow] of [['GET', '/api/v1/console/login', 'POST'], ['PUT', '/api/v1/console/tokens', 'GET, POST'], ['GET', '/api/v1/tasks/t_1/cancel', 'POST']]) {
      const r = await call(con.base, m, p);
      assert.equal(r.status, 405, `${m} ${p}: ${r.text}`);
      assert.equal(r.headers.get('allow'), allow);
      assert.deepEqual(r.body, { error: `method ${m} is not allowed on ${p}; it takes ${allow}` });
    }
    const redirect = await call(con.base, 'GET', '/api/v1/console/session/');
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), '/api/v1/console/session');
    const big = await call(con.base, 'POST', '/api/v1/console/login', { raw: 'x'.repeat(1024 * 1024 + 1), headers: { 'content-type': 'application/json' } });
    assert.deepEqual([big.status, big.body], [413, { error: 'request body too large' }]);
    // The server is still fine afterwards.
    assert.equal((await call(con.base, 'GET', '/api/v1/console/session', { cookie: admin })).status, 200);
  });

  test('registration disabled gives 403 to the admin', async () => {
    const c2dir = mkdtempSync(path.join(tmpdir(), 'obx-console-noreg-'));
    const c2 = await new Console({ ...env, CONSOLE_DB_PATH: path.join(c2dir, 'c.db'), CONSOLE_ENABLE_REGISTRATION: 'false' }).start();
    try {
      const a = await login(c2.base, ADMIN, ADMIN_PW);
      const r = await call(c2.base, 'POST', '/api/v1/console/register', { cookie: a, body: { username: 'x', password: 'y' } });
      assert.deepEqual([r.status, r.body], [403, { error: 'registration is disabled' }]);
      const s = await call(c2.base, 'GET', '/api/v1/console/session', { cookie: a });
      assert.equal(s.body.registration_enabled, false);
    } finally {
      await c2.stop();
      rmSync(c2dir, { recursive: true, force: true });
    }
  });

  test('login rate limit: 429 after 10 failures for one username', async () => {
    await call(con.base, 'POST', '/api/v1/console/register', { cookie: admin, body: { username: 'victim', password: 'victim-pw' } });
    for (let i = 0; i < 10; i++) {
      const r = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: 'victim', password: 'guess' + i } });
      assert.equal(r.status, 401);
    }
    const limited = await call(con.base, 'POST', '/api/v1/console/login', { body: { username: 'victim', password: 'victim-pw' } });
    assert.deepEqual([limited.status, limited.body], [429, { error: 'too many login attempts; try again later' }]);
    assert.ok(limited.headers.get('retry-after'));
    // Other usernames are unaffected.
    await login(con.base, ADMIN, ADMIN_PW);
  });
});

describe('console restart and secrets', () => {
  test('tokens, accounts and dashboard sessions survive a restart; the password is never printed', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'obx-console-restart-'));
    const e = { ...env, CONSOLE_DB_PATH: path.join(d, 'c.db') };
    let c = await new Console(e).start();
    const a = await login(c.base, ADMIN, ADMIN_PW);
    const reg = await call(c.base, 'POST', '/api/v1/console/register', { cookie: a, body: { username: 'keeper', password: 'keeper-pw' } });
    assert.equal(reg.status, 201);
    const tok = await call(c.base, 'POST', '/api/v1/console/tokens', { cookie: a, body: { name: 'persist' } });
    assert.equal(tok.status, 201);
    const first = await c.stop();
    assert.equal(first.code, 0, 'graceful exit on SIGTERM');
    assert.ok(!c.stderr.includes(ADMIN_PW), 'admin password printed');
    assert.ok(!c.stderr.includes(tok.body.token), 'token printed');

    c = await new Console(e).start();
    try {
      const s = await call(c.base, 'GET', '/api/v1/console/session', { cookie: a });
      assert.equal(s.status, 200, 'the dashboard cookie still works after a restart');
      const list = await call(c.base, 'GET', '/api/v1/console/tokens', { cookie: a });
      assert.deepEqual(list.body.items.map((t) => t.id), [tok.body.id]);
      assert.equal(list.body.items[0].token_masked, tok.body.token_masked);
      await login(c.base, 'keeper', 'keeper-pw');
      assert.match(c.stderr, /an admin account exists/);
      assert.ok(!c.stderr.includes(ADMIN_PW));
    } finally {
      await c.stop();
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('an empty CONSOLE_DASHBOARD_PASSWORD is generated into a 0600 file, never logged', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'obx-console-gen-'));
    const c = await new Console({ CONSOLE_DB_PATH: path.join(d, 'data', 'c.db'), CONSOLE_HASH_KEY: HASH_KEY, CONSOLE_DASHBOARD_PASSWORD: '', CONSOLE_DASHBOARD_USERNAME: '' }).start();
    try {
      const file = path.join(d, 'data', 'onlyboxes-console-admin-password.txt');
      const pw = readFileSync(file, 'utf8').trim();
      assert.match(pw, /^[0-9a-f]{48}$/);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.ok(!c.stderr.includes(pw), 'generated password printed');
      assert.ok(c.stderr.includes(file), 'the log names the file');
      const user = /first admin account '(admin-[0-9a-f]{8})'/.exec(c.stderr)[1];
      await login(c.base, user, pw);
    } finally {
      await c.stop();
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('a missing CONSOLE_HASH_KEY stops startup with a clear message', async () => {
    const proc = spawn(BIN, ['console'], { env: { ...process.env, CONSOLE_HASH_KEY: '  ', CONSOLE_HTTP_ADDR: '127.0.0.1:0', CONSOLE_GRPC_ADDR: '127.0.0.1:0' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => proc.on('exit', r));
    assert.notEqual(code, 0);
    assert.match(err, /CONSOLE_HASH_KEY is required/);
  });
});
