// SPDX-License-Identifier: Apache-2.0
// The dashboard as a person uses it, in Chromium, against `onlyboxes console --with-worker` and
// real `onlyboxes worker` processes started with the commands the pages show. The tests run in
// order and share the console: sign in, tokens (used with the curl the page shows), workers
// (started from the page's command, seen online without a click), the startup tool, accounts,
// password, logout, then the security checks and the look on a dark, narrow screen. Each page's
// screenshot is saved (build/dashboard-screenshots/).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { BIN, Console, Worker, apiLogin, launch, request, screenshot, sleep } from './lib.mjs';

const ADMIN = 'admin';
const ADMIN_PW = 'Admin-pw-' + process.pid;
const MEMBER = 'member-ann';
const MEMBER_PW = 'Member-pw-' + process.pid;

let con;
let browser; // the admin's browser
let page;
const workers = [];

/** Waits until fn() is truthy (polling), failing with why() after timeoutMs. */
async function until(fn, why, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(typeof why === 'function' ? await why() : why);
    await sleep(100);
  }
}

const hash = () => page.evaluate(() => window.location.hash);

/**
 * Text on the page whose contrast with what is behind it is below WCAG AA (4.5:1, 3:1 for large
 * text); disabled controls are exempt, as WCAG says. Runs in the page.
 */
function lowContrast() {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return null;
    const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const lum = ({ r, g, b }) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) layers.push(c);
      if (c && c.a === 1) break;
    }
    let bg = { r: 255, g: 255, b: 255, a: 1 };
    for (const l of layers.reverse()) bg = over(l, bg);
    return bg;
  };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.getClientRects().length || el.closest('[disabled], [aria-disabled=true], [aria-hidden=true], .sr-only, .offscreen, .skip-link')) continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden') continue;
    const bg = background(el);
    const fg = over(parse(cs.color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(cs.fontSize);
    const need = size >= 24 || (size >= 18.66 && Number(cs.fontWeight) >= 700) ? 3 : 4.5;
    if (ratio < need) bad.push(`${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 30)}": ${ratio.toFixed(2)} < ${need}`);
  }
  return bad;
}

async function signIn(p, username, password) {
  await p.fill('#login-username', username);
  await p.fill('#login-password', password);
  await p.click('form button[type=submit]');
}

describe('dashboard', () => {
  before(async () => {
    con = await new Console({
      CONSOLE_DASHBOARD_USERNAME: ADMIN,
      CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
      CONSOLE_ENABLE_REGISTRATION: 'true',
      CONSOLE_LOGIN_MAX_FAILURES: '3',
      CONSOLE_HEARTBEAT_INTERVAL_SEC: '1',
    }).start();
    browser = await launch();
    page = browser.page;
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: con.base });
  });

  after(async () => {
    for (const w of workers) await w.stop();
    if (browser) await browser.close();
    if (con) await con.stop();
  });

  test('GET / serves the page from the binary: no inline script, ETag, gzip, security headers', async () => {
    const r = await request(con.base, 'GET', '/');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/html/);
    assert.match(r.headers['content-security-policy'], /default-src 'none'; script-src 'self'; style-src 'self'/);
    assert.ok(!/unsafe-inline|unsafe-eval/.test(r.headers['content-security-policy']));
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.ok(!/<script>|<script [^>]*>[^<]/.test(r.text), 'an inline script in index.html');
    const etag = r.headers.etag;
    assert.match(etag, /^"[0-9a-f]{16}"$/);
    const again = await request(con.base, 'GET', '/', { headers: { 'if-none-match': etag } });
    assert.deepEqual([again.status, again.text], [304, '']);
    const script = /src="(\/assets\/main-[A-Z0-9]+\.js)"/.exec(r.text)[1];
    const js = await request(con.base, 'GET', script, { headers: { 'accept-encoding': 'gzip, br' } });
    assert.equal(js.status, 200);
    assert.equal(js.headers['content-encoding'], 'gzip');
    assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable');
    const plain = await request(con.base, 'GET', script);
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.ok(js.raw.length < plain.raw.length / 2, `gzip ${js.raw.length} of ${plain.raw.length} bytes`);
    assert.equal((await request(con.base, 'HEAD', script)).headers['content-length'], String(plain.raw.length));
    assert.equal((await request(con.base, 'GET', '/assets/missing-AAAAAAAA.js')).status, 404);
    const notices = await request(con.base, 'GET', '/THIRD_PARTY_NOTICES.txt');
    assert.match(notices.text, /preact \d+\.\d+\.\d+ \(MIT\)/);
    // The API keeps its own answers.
    assert.equal((await request(con.base, 'GET', '/api/v1/nope')).status, 404);
  });

  test('sign-in: clear errors, then the page that was asked for', async () => {
    await page.goto(con.base + '/#/workers?status=online');
    await page.waitForSelector('#login-username');
    assert.equal(await hash(), '#/login?redirect=%2Fworkers%3Fstatus%3Donline');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'login-username', 'the username field has focus');
    await screenshot(page, 'login');
    await page.click('form button[type=submit]');
    assert.equal(await page.textContent('[role=alert]'), 'Enter your username and password.');
    await signIn(page, ADMIN, 'wrong-password');
    await page.waitForSelector('text=Invalid username or password.');
    await signIn(page, ADMIN, ADMIN_PW);
    await page.waitForSelector('h1:text("Workers")');
    assert.equal(await hash(), '#/workers?status=online');
    assert.equal(await page.getAttribute('.filter[aria-current=true]', 'href'), '#/workers?status=online');
  });

  test('the session cookie: HttpOnly, SameSite=Strict, out of reach of the page', async () => {
    const [c] = (await browser.context.cookies(con.base)).filter((x) => x.name === 'onlyboxes_console_session');
    assert.ok(c, 'no session cookie');
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    assert.equal(c.secure, false, 'plain HTTP: not Secure (the TLS tests check Secure)');
    assert.equal(await page.evaluate(() => document.cookie), '');
  });

  test('tokens: create, copy, the snippets work as shown (curl), shown once, delete', async () => {
    await page.click('nav >> text=API tokens');
    await page.waitForSelector('h1:text("API tokens")');
    assert.equal(await hash(), '#/tokens');
    await page.click('text=Create token');
    await page.click('dialog button[type=submit]');
    assert.match(await page.textContent('dialog [role=alert]'), /Give the token a name/);
    await page.fill('#token-name', 'laptop');
    await page.click('dialog button[type=submit]');
    const token = (await page.textContent('.token-value', { timeout: 10000 })).trim();
    assert.match(token, /^obx_[0-9a-f]{64}$/);
    await page.click('text=Copy token');
    await page.waitForSelector('dialog .copy-state:text("Copied")');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);
    await screenshot(page, 'token-created');

    const snippet = async (tab) => {
      await page.click(`[role=tab]:text("${tab}")`);
      return (await page.textContent('[role=tabpanel] pre')).trim();
    };
    const claude = await snippet('Claude Code');
    assert.equal(claude, `claude mcp add --transport http onlyboxes '${con.base}/mcp' --header 'Authorization: Bearer ${token}'`);
    const cursor = JSON.parse(await snippet('Cursor'));
    assert.deepEqual(cursor.mcpServers.onlyboxes, { url: con.base + '/mcp', headers: { Authorization: 'Bearer ' + token } });
    assert.equal(await snippet('HTTP header'), `Authorization: Bearer ${token}`);
    // The curl snippet, run as a person pastes it into a shell.
    const curl = await snippet('curl');
    const out = execFileSync('bash', ['-c', curl], { encoding: 'utf8', timeout: 30000 });
    assert.deepEqual(JSON.parse(out), { message: 'hello from onlyboxes' });
    // The token works on /mcp too.
    const mcp = await request(con.base, 'POST', '/mcp', {
      headers: { authorization: 'Bearer ' + token, accept: 'application/json, text/event-stream' },
      body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'browser-test', version: '1' } } },
    });
    assert.equal(mcp.status, 200, mcp.text);

    await page.click('dialog .actions button:text-is("Done")');
    await page.waitForSelector('dialog', { state: 'detached' });
    // Shown once: gone from the page and never kept by the browser.
    const html = await page.content();
    assert.ok(!html.includes(token), 'the token is still in the page');
    assert.deepEqual(await page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0]);
    const row = page.locator('tbody tr', { hasText: 'laptop' });
    assert.match(await row.textContent(), /obx_\*{6,}[0-9a-f]{4}/);
    await screenshot(page, 'tokens');

    await row.locator('button:text("Delete")').click();
    await page.click('dialog .actions button:text-is("Delete token")');
    await page.waitForSelector('text=No tokens yet.');
    const refused = await request(con.base, 'POST', '/api/v1/commands/echo', { headers: { authorization: 'Bearer ' + token }, body: { message: 'x' } });
    assert.equal(refused.status, 401);
  });

  test('workers: create one, start `onlyboxes worker` with the command the page shows, watch it come online, delete it', async () => {
    await page.click('nav >> text=Workers');
    await page.waitForSelector('h1:text("Workers")');
    await page.click('.filter:text("All")');
    await until(async () => (await page.textContent('.stat-total .stat-value')) === '1', 'the embedded worker is not counted');
    assert.equal(await page.textContent('.stat-online .stat-value'), '1');
    await page.click('text=Create worker');
    await page.check('input[value=normal]');
    await page.click('dialog button[type=submit]');
    await page.waitForSelector('text=Worker created');
    const masked = await page.textContent('dialog pre');
    assert.ok(masked.includes('WORKER_SECRET=••••'), masked);
    await screenshot(page, 'worker-created');
    await page.click('text=Show secret');
    const command = (await page.textContent('dialog pre')).trim();
    assert.match(command, /^WORKER_CONSOLE_GRPC_TARGET=\S+ WORKER_ID=\S+ WORKER_SECRET=[0-9a-f]{64} .*WORKER_CONSOLE_INSECURE=true onlyboxes worker$/);
    await page.click('text=Copy command');
    await page.waitForSelector('dialog .copy-state:text("Copied")');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), command);
    const nodeId = /WORKER_ID=(\S+)/.exec(command)[1];
    await page.click('dialog .actions button:text-is("Done")');
    assert.ok(!(await page.content()).includes(/WORKER_SECRET=(\S+)/.exec(command)[1]), 'the secret is still in the page');

    // The new worker is listed, offline until it runs.
    const row = page.locator('tbody tr', { hasText: nodeId });
    await until(async () => /Offline/.test(await row.textContent()), 'the new worker is not listed as offline');
    const w = Worker.fromShell(command).start();
    workers.push(w);
    // Auto-refresh brings it online without a click.
    await until(async () => /Online/.test(await row.textContent()), async () => `the worker never showed online:\n${w.stderr}`, 30000);
    assert.match(await row.textContent(), /echo\s*0\/16/);
    assert.match(await row.textContent(), /obx\.worker_type=normal/);
    await until(async () => (await page.textContent('.stat-online .stat-value')) === '2', 'online count');
    await screenshot(page, 'workers');

    await page.click('.filter:text("Offline")');
    assert.equal(await hash(), '#/workers?status=offline');
    await page.waitForSelector('text=No offline workers.');
    await page.click('.filter:text("Online")');
    await page.waitForSelector(`tbody tr:has-text("${nodeId}")`);

    await row.locator('button:text("Delete")').click();
    await page.click('dialog .actions button:text-is("Delete worker")');
    await until(async () => (await row.count()) === 0, 'the deleted worker is still listed');
    await until(() => /revoked/i.test(w.stderr), () => `the worker was not told: ${w.stderr}`);
  });

  test('workers: pagination in the URL', async () => {
    const cookie = await apiLogin(con.base, ADMIN, ADMIN_PW);
    for (let i = 0; i < 26; i++) assert.equal((await request(con.base, 'POST', '/api/v1/workers', { cookie, body: { type: 'normal' } })).status, 201);
    await page.goto(con.base + '/#/workers');
    await page.waitForSelector('.pagination-range:text("1–25 of 27")');
    await page.click('.pagination >> text=Next');
    await page.waitForSelector('.pagination-range:text("26–27 of 27")');
    assert.equal(await hash(), '#/workers?page=2');
    assert.equal(await page.locator('tbody tr').count(), 2);
    // A page past the end shows the last one.
    await page.goto(con.base + '/#/workers?page=9');
    await until(async () => (await hash()) === '#/workers?page=2', 'not sent to the last page');
  });

  test('worker startup tool: the command it builds starts a worker with its settings', async () => {
    // A fresh credential, read from the create dialog.
    await page.goto(con.base + '/#/workers');
    await page.click('text=Create worker');
    await page.click('dialog button[type=submit]');
    await page.click('text=Show secret');
    const created = (await page.textContent('dialog pre')).trim();
    await page.click('dialog .actions button:text-is("Done")');
    const id = /WORKER_ID=(\S+)/.exec(created)[1];
    const secret = /WORKER_SECRET=(\S+)/.exec(created)[1];

    await page.click('nav >> text=Worker startup');
    await page.waitForSelector('h1:text("Worker startup")');
    assert.match(await page.textContent('[role=alert]'), /Worker ID is required/);
    assert.ok(await page.isDisabled('text=Copy command'));
    await page.fill('#wt-binary', BIN);
    await page.fill('#wt-worker-console-grpc-target', con.grpcTarget);
    await page.check('#wt-worker-console-insecure');
    await page.fill('#wt-worker-id', id);
    await page.fill('#wt-worker-secret', secret);
    await page.fill('#wt-worker-node-name', 'built-by-tool');
    await page.fill('#wt-worker-labels', 'zone=test-1\nbroken line');
    await page.fill('#wt-worker-max-inflight', '3');
    await page.fill('#wt-worker-heartbeat-jitter-pct', '101');
    assert.match(await page.textContent('[role=alert]'), /WORKER_HEARTBEAT_JITTER_PCT must be a whole number from 0 to 100/);
    await page.fill('#wt-worker-heartbeat-jitter-pct', '10');
    assert.match(await page.textContent('.tool-output .notice-warning'), /1 label line is not key=value/);
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, 'worker-tool');
    await page.click('text=Copy command');
    const command = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(command, (await page.textContent('.tool-preview')).trim());
    assert.match(command, /\nWORKER_LABELS='zone=test-1' \\\n/);

    const w = Worker.fromShell(command).start();
    workers.push(w);
    await page.click('nav >> text=Workers');
    const row = page.locator('tbody tr', { hasText: 'built-by-tool' });
    await page.goto(con.base + '/#/workers?status=online');
    await until(async () => (await row.count()) === 1 && /Online/.test(await row.textContent()), async () => `the tool's worker never showed online:\n${w.stderr}`, 30000);
    const text = await row.textContent();
    assert.match(text, /zone=test-1/);
    assert.match(text, /pythonExec\s*0\/3/);
  });

  test('accounts: create a member when registration is on; members see their own pages only', async () => {
    await page.click('nav >> text=Accounts');
    await page.waitForSelector('h1:text("Accounts")');
    assert.match(await page.locator('tbody tr', { hasText: ADMIN }).textContent(), /Protected/);
    await page.click('text=Create account');
    await page.fill('#account-username', MEMBER);
    await page.fill('#account-password', MEMBER_PW);
    await page.click('dialog button[type=submit]');
    const row = page.locator('tbody tr', { hasText: MEMBER });
    await until(async () => (await row.count()) === 1, 'the new account is not listed');
    assert.match(await row.textContent(), /Member/);
    await screenshot(page, 'accounts');

    const member = await launch();
    try {
      const mp = member.page;
      await mp.goto(con.base + '/');
      await signIn(mp, MEMBER, MEMBER_PW);
      await mp.waitForSelector('h1:text("API tokens")');
      assert.equal(await mp.evaluate(() => location.hash), '#/tokens');
      assert.deepEqual(await mp.locator('#sidebar a').allTextContents(), ['Workers', 'API tokens', 'Sessions', 'Tasks', 'Worker startup']);
      await mp.goto(con.base + '/#/accounts');
      await until(async () => (await mp.evaluate(() => location.hash)) === '#/tokens', 'a member reached accounts');
      await mp.goto(con.base + '/#/workers');
      await mp.waitForSelector('text=Create worker-sys');
      await mp.waitForSelector('text=No workers yet.'); // normal workers are the admin's
      // The admin deletes the account: the member's next refresh goes back to sign-in.
      await row.locator('button:text("Delete")').click();
      await page.click('dialog .actions button:text-is("Delete account")');
      await until(async () => (await row.count()) === 0, 'the account is still listed');
      await until(async () => (await mp.evaluate(() => location.hash)).startsWith('#/login?redirect='), 'the member was not signed out', 15000);
      assert.deepEqual(member.problems, []);
    } finally {
      await member.close();
    }
  });

  test('change password, log out, sign in with the new one; a wrong current password keeps the session', async () => {
    const next = ADMIN_PW + '-new';
    await page.goto(con.base + '/#/tokens');
    await page.click('.account-menu > button');
    await page.click('text=Change password');
    await page.fill('#pw-current', 'not-it');
    await page.fill('#pw-new', next);
    await page.fill('#pw-again', next);
    await page.click('dialog button[type=submit]');
    await page.waitForSelector('dialog >> text=The current password is wrong.');
    assert.equal(await hash(), '#/tokens', 'still signed in');
    await page.fill('#pw-current', ADMIN_PW);
    await screenshot(page, 'change-password');
    await page.click('dialog button[type=submit]');
    await page.waitForSelector('text=Password changed');
    await page.click('dialog .actions button:text-is("Close")');
    // Escape closes a dialog and gives focus back.
    await page.click('text=Create token');
    await page.waitForSelector('#token-name');
    assert.equal(await page.evaluate(() => document.activeElement.closest('dialog') !== null), true, 'focus is in the dialog');
    await page.keyboard.press('Escape');
    await until(async () => (await page.locator('dialog').count()) === 0, async () => 'Escape left the dialog open: ' + (await page.evaluate(() => document.activeElement.outerHTML.slice(0, 120))), 5000);
    await page.click('.account-menu > button');
    await page.click('text=Log out');
    await page.waitForSelector('#login-username');
    assert.equal(await hash(), '#/login');
    await signIn(page, ADMIN, ADMIN_PW);
    await page.waitForSelector('text=Invalid username or password.');
    await signIn(page, ADMIN, next);
    await page.waitForSelector('h1:text("Workers")');
  });

  test('too many failed sign-ins: the page says how long to wait', async () => {
    const other = await launch();
    try {
      await other.page.goto(con.base + '/#/login');
      for (let i = 0; i < 3; i++) {
        await signIn(other.page, 'ghost', 'nope-' + i);
        await other.page.waitForSelector('text=Invalid username or password.');
        await other.page.fill('#login-password', '');
      }
      await signIn(other.page, 'ghost', 'nope');
      await other.page.waitForSelector('text=/Too many failed sign-in attempts. Try again in 5 minutes./');
    } finally {
      await other.close();
    }
  });

  test('CSRF: a page of another origin cannot act with the session; API clients without Origin still work', async () => {
    const cookie = await apiLogin(con.base, ADMIN, ADMIN_PW + '-new');
    const count = async () => (await request(con.base, 'GET', '/api/v1/console/tokens', { cookie })).body.total;
    const before = await count();
    // Over the wire: a foreign Origin is refused on every state-changing cookie route and sign-in.
    for (const [method, p, body] of [
      ['POST', '/api/v1/console/tokens', { name: 'csrf' }],
      ['POST', '/api/v1/workers', { type: 'normal' }],
      ['POST', '/api/v1/console/login', { username: ADMIN, password: 'x' }],
      ['POST', '/api/v1/console/logout', {}],
      ['DELETE', '/api/v1/console/accounts/whatever', undefined],
    ]) {
      const r = await request(con.base, method, p, { cookie, body, headers: { origin: 'http://evil.example' } });
      assert.equal(r.status, 403, `${method} ${p}: ${r.text}`);
      assert.match(r.body.error, /cross-site request refused: Origin http:\/\/evil\.example is not this console/);
    }
    assert.equal((await request(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'nul' }, headers: { origin: 'null' } })).status, 403);
    // The console's own origin, and no Origin at all (curl, scripts), are fine.
    assert.equal((await request(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'same-origin' }, headers: { origin: con.base } })).status, 201);
    const t = await request(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'script' } });
    assert.equal(t.status, 201);
    // A bearer route carries no ambient credential: Origin does not matter there.
    const echo = await request(con.base, 'POST', '/api/v1/commands/echo', { headers: { authorization: 'Bearer ' + t.body.token, origin: 'http://evil.example' }, body: { message: 'hi' } });
    assert.equal(echo.status, 200, echo.text);
    assert.equal(await count(), before + 2);

    // In the browser: a page on another port of the same host (the same site, so the cookie
    // goes along) posts a form and a no-cors fetch to the console.
    const evil = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><form id="f" method="POST" action="${con.base}/api/v1/console/tokens" enctype="text/plain"><input name='{"name":"evil","x":"' value='"}'></form>
<script>fetch(${JSON.stringify(con.base + '/api/v1/workers')}, {method: 'POST', mode: 'no-cors', credentials: 'include', body: '{"type":"normal"}'}).finally(() => document.getElementById('f').submit());</script>`);
    });
    await new Promise((r) => evil.listen(0, '127.0.0.1', r));
    try {
      const workersBefore = (await request(con.base, 'GET', '/api/v1/workers/stats', { cookie })).body.total;
      const seen = [];
      page.on('response', (r) => r.url().startsWith(con.base + '/api/') && seen.push(r.status()));
      await page.goto(`http://127.0.0.1:${evil.address().port}/`);
      await until(() => seen.length >= 2, 'the attacking requests never reached the console');
      assert.deepEqual(seen, [403, 403]);
      assert.equal(await count(), before + 2, 'a token was created cross-site');
      assert.equal((await request(con.base, 'GET', '/api/v1/workers/stats', { cookie })).body.total, workersBefore, 'a worker was created cross-site');
    } finally {
      evil.close();
    }
    // Framing is refused too (frame-ancestors 'none', X-Frame-Options: DENY), checked above on GET /.
  });

  test('keyboard and screen readers: labels, landmarks, focus order', async () => {
    for (const hashPath of ['#/workers', '#/tokens', '#/accounts', '#/sessions', '#/tasks', '#/tools/worker-startup']) {
      await page.goto(con.base + '/' + hashPath);
      await page.waitForSelector('main h1');
      const unlabeled = await page.evaluate(() =>
        [...document.querySelectorAll('input, select, textarea, button')]
          .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
          .map((el) => el.outerHTML.slice(0, 80)),
      );
      assert.deepEqual(unlabeled, [], hashPath);
      assert.deepEqual(await page.evaluate(lowContrast), [], `${hashPath}: contrast`);
      assert.equal(await page.locator('nav[aria-label=Main]').count(), 1);
      assert.equal(await page.locator('main').count(), 1);
    }
    await page.goto(con.base + '/#/tokens');
    await page.reload();
    await page.waitForSelector('main h1');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
    // Every stop of the keyboard shows where it is.
    await page.goto(con.base + '/#/workers');
    await page.reload();
    await page.waitForSelector('tbody tr');
    const seen = new Set();
    for (let i = 0; i < 25; i++) {
      await page.keyboard.press('Tab');
      const [what, outline] = await page.evaluate(() => {
        const el = document.activeElement;
        const cs = getComputedStyle(el);
        return [el.outerHTML.slice(0, 60), cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2];
      });
      assert.ok(outline, `no focus outline on ${what}`);
      seen.add(what);
    }
    assert.ok(seen.size >= 10, `only ${seen.size} keyboard stops`);
  });

  test('dark theme and a narrow screen follow the system; nothing overflows', async () => {
    const small = await launch({ colorScheme: 'dark', viewport: { width: 390, height: 844 } });
    try {
      const p = small.page;
      await p.goto(con.base + '/');
      const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(bg, 'rgb(15, 20, 26)', 'dark background');
      await screenshot(p, 'login-dark-narrow');
      await signIn(p, ADMIN, ADMIN_PW + '-new');
      await p.waitForSelector('h1:text("Workers")');
      for (const h of ['#/workers', '#/tokens', '#/accounts', '#/sessions', '#/tasks', '#/tools/worker-startup']) {
        await p.goto(con.base + '/' + h);
        await p.waitForSelector('main h1');
        const [scroll, width] = await p.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
        assert.ok(scroll <= width, `${h}: the page is ${scroll}px wide on a ${width}px screen`);
      }
      await p.goto(con.base + '/#/workers');
      await p.waitForSelector('tbody tr');
      assert.ok(!(await p.isVisible('#sidebar')), 'the navigation is folded away');
      await p.click('text=Menu');
      assert.ok(await p.isVisible('#sidebar a:text("Tokens"), #sidebar a:text("API tokens")'));
      await screenshot(p, 'workers-dark-narrow');
      for (const h of ['#/workers', '#/tokens', '#/accounts', '#/sessions', '#/tasks', '#/tools/worker-startup']) {
        await p.goto(con.base + '/' + h);
        await p.waitForSelector('main h1');
        await p.waitForTimeout(300); // the page's data
        assert.deepEqual(await p.evaluate(lowContrast), [], `${h} (dark): contrast`);
      }
      await p.goto(con.base + '/#/workers');
      assert.deepEqual(small.problems, []);
    } finally {
      await small.close();
    }
  });

  test('no CSP violation or script error on any page', () => {
    assert.deepEqual(browser.problems, []);
  });
});
