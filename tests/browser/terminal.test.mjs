// SPDX-License-Identifier: Apache-2.0
// The live terminal and the Sessions and Tasks pages, in Chromium, against a real console: first
// with its embedded worker (`--with-worker`), then with a real `onlyboxes worker` connected over
// gRPC on loopback. A session made by a terminalExec call is opened from the Sessions page; what
// is typed runs in the session's box and shows; the agent's terminalExec calls (REST and MCP)
// show in the same view as they run; the terminal follows the window's size; copy and paste work;
// the WebSocket refuses another site, a missing or stale cookie and another account; terminals
// per session are bounded; ending a session closes its terminal. Screenshots of the new pages are
// saved with the others (build/dashboard-screenshots/).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Console, Worker, apiLogin, launch, request, screenshot, sleep, wsConnect } from './lib.mjs';

const ADMIN = 'admin';
const ADMIN_PW = 'Admin-pw-' + process.pid;
const MEMBER = 'member-bob';
const MEMBER_PW = 'Member-pw-' + process.pid;

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

async function signIn(p, base, username, password) {
  await p.goto(base + '/#/login');
  await p.fill('#login-username', username);
  await p.fill('#login-password', password);
  await p.click('form button[type=submit]');
  await p.waitForFunction(() => !location.hash.startsWith('#/login'));
  await p.waitForSelector('nav[aria-label=Main]', { state: 'attached' });
}

/** What the terminal shows (its rows' text). */
const screenText = (p) => p.evaluate(() => (document.querySelector('.xterm-rows') || {}).innerText || '');

async function waitScreen(p, re, why) {
  await until(async () => re.test(await screenText(p)), async () => `${why}; the terminal shows:\n${await screenText(p)}`);
}

async function terminalStatus(p) {
  return p.locator('.page-head [role=status]').textContent();
}

/** A terminalExec over REST with the token, as an agent's tool call arrives. */
function agentExec(base, token, body) {
  return request(base, 'POST', '/api/v1/commands/terminal', { body, headers: { authorization: 'Bearer ' + token } });
}

/** A terminalExec over MCP (Streamable HTTP, one request on its own). */
async function agentMcp(base, token, args) {
  const r = await request(base, 'POST', '/mcp', {
    body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'terminalExec', arguments: args } },
    headers: { authorization: 'Bearer ' + token, accept: 'application/json, text/event-stream' },
  });
  assert.equal(r.status, 200, r.text);
  return r.text;
}

/** Opens a session's terminal from the Sessions page and waits until it is connected. */
async function openTerminal(p, base, sid) {
  await p.goto(base + '/#/sessions');
  const row = p.locator('tbody tr', { hasText: sid });
  await until(async () => (await row.count()) === 1, `session ${sid} is not listed`);
  await row.locator('a:text("Terminal")').click();
  await until(async () => /Connected/.test(await terminalStatus(p)), async () => `not connected: ${await terminalStatus(p)}`);
}

function wsUrl(base, sid) {
  return `${base}/api/v1/sessions/${encodeURIComponent(sid)}/terminal?cols=80&rows=24`;
}

describe('live terminal, Sessions and Tasks, embedded worker', () => {
  let con;
  let browser;
  let page;
  let cookie;
  let token;
  let memberCookie;

  before(async () => {
    con = await new Console({
      CONSOLE_DASHBOARD_USERNAME: ADMIN,
      CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
      CONSOLE_ENABLE_REGISTRATION: 'true',
    }).start();
    browser = await launch();
    page = browser.page;
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: con.base });
    cookie = await apiLogin(con.base, ADMIN, ADMIN_PW);
    token = (await request(con.base, 'POST', '/api/v1/console/tokens', { body: { name: 'agent' }, cookie })).body.token;
    const reg = await request(con.base, 'POST', '/api/v1/console/register', { body: { username: MEMBER, password: MEMBER_PW }, cookie });
    assert.equal(reg.status, 201, reg.text);
    memberCookie = await apiLogin(con.base, MEMBER, MEMBER_PW);
    const r = await agentExec(con.base, token, { command: 'mkdir -p proj && cd proj && echo hello > notes.txt && export DEMO_VAR=from-the-agent', session_id: 'demo', create_if_missing: true });
    assert.equal(r.status, 200, r.text);
    await signIn(page, con.base, ADMIN, ADMIN_PW);
  });

  after(async () => {
    if (browser) await browser.close();
    if (con) await con.stop();
  });

  test("the Sessions page lists the account's sessions; a terminal opens from it", async () => {
    await page.goto(con.base + '/#/sessions');
    const row = page.locator('tbody tr', { hasText: 'demo' });
    await until(async () => (await row.count()) === 1, 'session demo is not listed');
    const text = await row.textContent();
    assert.match(text, /embedded/);
    assert.match(text, /Idle/);
    assert.match(text, /in \d+/, 'the lease has time left');
    await screenshot(page, 'sessions');
    await row.locator('a:text("Terminal")').click();
    assert.equal(await page.evaluate(() => location.hash), '#/terminal?session=demo');
    await until(async () => /Connected · bash/.test(await terminalStatus(page)), async () => `status: ${await terminalStatus(page)}`);
  });

  test('typing runs in the session: echo hi, its directory and exported variables, its files', async () => {
    await page.locator('.xterm').click();
    await page.keyboard.type('echo hi; echo "[$DEMO_VAR]"; pwd; cat notes.txt\n');
    await waitScreen(page, /^hi$/m, 'echo hi did not show');
    const s = await screenText(page);
    assert.match(s, /\[from-the-agent\]/);
    assert.match(s, /\/workspace\/proj/);
    assert.match(s, /hello/);
  });

  test("the agent's terminalExec calls show in the same view as they run (REST and MCP)", async () => {
    const rest = await agentExec(con.base, token, { command: 'echo agent-rest-1; sleep 0.3; echo agent-rest-2 >&2; touch made-by-agent', session_id: 'demo' });
    assert.equal(rest.status, 200, rest.text);
    await waitScreen(page, /▶ agent \$ echo agent-rest-1/, 'the REST command is not shown');
    await waitScreen(page, /agent-rest-2[\s\S]*■ exit 0/, 'its output and end are not shown');
    await agentMcp(con.base, token, { command: 'echo agent-mcp-$((20+22))', session_id: 'demo' });
    await waitScreen(page, /agent-mcp-42/, 'the MCP command is not shown');
    // The prompt is back after each, with what the shell expects: typing goes on.
    await page.keyboard.type('ls made-by-agent && echo typed-after\n');
    await waitScreen(page, /typed-after/, 'typing after an agent command');
    const activity = await page.locator('.terminal-activity li').allTextContents();
    assert.ok(activity.some((t) => /Agent ran: echo agent-mcp/.test(t)), activity.join('|'));
    await screenshot(page, 'terminal');
  });

  test('the terminal follows the window; stty sees the size', async () => {
    const before = await terminalStatus(page);
    await page.setViewportSize({ width: 980, height: 640 });
    await until(async () => (await terminalStatus(page)) !== before, 'the size did not change');
    const [, cols, rows] = /(\d+)×(\d+)/.exec(await terminalStatus(page));
    await page.locator('.xterm').click();
    await page.keyboard.type('stty size\n');
    await waitScreen(page, new RegExp(`^${rows} ${cols}$`, 'm'), `stty does not say ${rows} ${cols}`);
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  test('copy and paste', async () => {
    await page.locator('.xterm').click();
    await page.keyboard.type('echo copy-me-$((6*7))\n');
    await waitScreen(page, /^copy-me-42$/m, 'echo copy-me');
    await page.evaluate(() => window.obxTerminal.term.selectAll());
    await page.click('button:text("Copy")');
    await until(async () => /^copy-me-42$/m.test(await page.evaluate(() => navigator.clipboard.readText())), 'the copy did not reach the clipboard');
    await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((1+1))'));
    await page.click('button:text("Paste")');
    await waitScreen(page, /echo pasted-\$\(\(1\+1\)\)/, 'the paste did not reach the shell');
    await until(async () => page.evaluate(() => document.activeElement === window.obxTerminal.term.textarea), 'the terminal does not have the focus back after a paste');
    await page.keyboard.press('Enter');
    await waitScreen(page, /pasted-2/, 'the paste did not run');
  });

  test('a flood of output reaches the end and the terminal still answers', async () => {
    await page.locator('.xterm').click();
    await page.keyboard.type('seq 1 300000 | tail -n +1; echo flood-done\n');
    await until(async () => /flood-done/.test(await screenText(page)), 'the flood did not end', 60000);
    await page.keyboard.type('echo still-here\n');
    await waitScreen(page, /still-here/, 'no answer after the flood');
  });

  test('the WebSocket: subprotocol, Origin, cookie', async () => {
    const url = wsUrl(con.base, 'demo');
    const plain = await request(con.base, 'GET', '/api/v1/sessions/demo/terminal');
    assert.equal(plain.status, 426, plain.text);
    const noCookie = await wsConnect(url);
    assert.equal(noCookie.status, 401, noCookie.body);
    const cross = await wsConnect(url, { headers: { cookie: `onlyboxes_console_session=${cookie}`, origin: 'http://evil.example' } });
    assert.equal(cross.status, 403, cross.body);
    assert.match(cross.body, /cross-site WebSocket refused/);
    const noProto = await wsConnect(url, { headers: { cookie: `onlyboxes_console_session=${cookie}` }, protocol: null });
    assert.equal(noProto.status, 400);
    const stale = await wsConnect(url, { headers: { cookie: 'onlyboxes_console_session=not-a-session' } });
    assert.equal(stale.status, 101);
    await stale.ws.wait((w) => w.closed);
    assert.equal(stale.ws.closed.code, 4401);
    // A cookie that was valid, after its sign-out.
    const gone = await apiLogin(con.base, ADMIN, ADMIN_PW);
    await request(con.base, 'POST', '/api/v1/console/logout', { cookie: gone });
    const after = await wsConnect(url, { headers: { cookie: `onlyboxes_console_session=${gone}`, origin: con.base } });
    await after.ws.wait((w) => w.closed);
    assert.equal(after.ws.closed.code, 4401);
    // The right cookie, the console's own Origin: a terminal.
    const ok = await wsConnect(url, { headers: { cookie: `onlyboxes_console_session=${cookie}`, origin: con.base } });
    assert.equal(ok.protocol, 'onlyboxes-terminal.v1');
    await ok.ws.wait((w) => w.events().some((e) => e.type === 'open'));
    ok.ws.send('i', 'echo raw-$((3*3))\r');
    await ok.ws.wait((w) => /raw-9/.test(w.screen()));
    ok.ws.end();

    // A page of another site in the same browser (the session cookie is there) cannot open one.
    const evil = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>elsewhere</title>');
    });
    await new Promise((r) => evil.listen(0, '127.0.0.2', r));
    try {
      const p = await browser.context.newPage();
      await p.goto(`http://127.0.0.2:${evil.address().port}/`);
      const outcome = await p.evaluate(
        (u) =>
          new Promise((resolve) => {
            const s = new WebSocket(u, 'onlyboxes-terminal.v1');
            s.onmessage = () => resolve('message');
            s.onclose = (e) => resolve('closed ' + e.code);
          }),
        url.replace('http:', 'ws:'),
      );
      assert.equal(outcome, 'closed 1006');
      await p.close();
    } finally {
      evil.close();
    }
  });

  test("another account never reaches this account's session", async () => {
    const r = await wsConnect(wsUrl(con.base, 'demo'), { headers: { cookie: `onlyboxes_console_session=${memberCookie}`, origin: con.base } });
    await r.ws.wait((w) => w.closed);
    assert.equal(r.ws.closed.code, 4404);
    assert.ok(!r.ws.screen(), 'no byte of the terminal went to the other account');
    const list = await request(con.base, 'GET', '/api/v1/sessions', { cookie: memberCookie });
    assert.deepEqual(list.body.items, []);
    const member = await launch();
    try {
      await signIn(member.page, con.base, MEMBER, MEMBER_PW);
      await member.page.goto(con.base + '/#/terminal?session=demo');
      await member.page.waitForSelector('.notice-warning');
      assert.match(await member.page.locator('.notice-warning').textContent(), /does not exist \(any more\), or is not yours/);
      await member.page.goto(con.base + '/#/sessions');
      await member.page.waitForSelector('td.empty');
      assert.deepEqual(member.problems, []);
    } finally {
      await member.close();
    }
  });

  test('terminals per session are bounded', async () => {
    const open = [];
    try {
      // The page holds one; the default allows four.
      for (let i = 0; i < 3; i++) {
        const r = await wsConnect(wsUrl(con.base, 'demo'), { headers: { cookie: `onlyboxes_console_session=${cookie}` } });
        await r.ws.wait((w) => w.events().some((e) => e.type === 'open'));
        open.push(r.ws);
      }
      const over = await wsConnect(wsUrl(con.base, 'demo'), { headers: { cookie: `onlyboxes_console_session=${cookie}` } });
      await over.ws.wait((w) => w.closed);
      assert.equal(over.ws.closed.code, 4429);
    } finally {
      for (const w of open) w.end();
    }
  });

  test('Tasks: statuses, capability, duration, exit code, output, cancel, auto-refresh', async () => {
    const auth = { authorization: 'Bearer ' + token };
    const echo = await request(con.base, 'POST', '/api/v1/tasks', { body: { capability: 'echo', input: { message: 'hello tasks' }, mode: 'sync' }, headers: auth });
    assert.equal(echo.status, 200, echo.text);
    const failing = await request(con.base, 'POST', '/api/v1/tasks', {
      body: { capability: 'terminalExec', input: { command: 'echo task-out; echo task-err >&2; exit 3', session_id: 'demo' }, mode: 'sync' },
      headers: auth,
    });
    assert.equal(failing.status, 200, failing.text);
    const long = await request(con.base, 'POST', '/api/v1/tasks', {
      body: { capability: 'pythonExec', input: { code: 'import time\nprint("started", flush=True)\ntime.sleep(120)' }, mode: 'async', timeout_ms: 300000 },
      headers: auth,
    });
    assert.equal(long.status, 202, long.text);
    await page.goto(con.base + '/#/tasks');
    const row = (id) => page.locator('tbody tr', { hasText: id.slice(0, 8) });
    await until(async () => (await row(long.body.task_id).count()) === 1, 'the running task is not listed');
    await until(async () => /running/.test(await row(long.body.task_id).textContent()), 'the task does not show running');
    assert.match(await row(echo.body.task_id).textContent(), /succeeded.*echo/);
    assert.match(await row(failing.body.task_id).textContent(), /succeeded.*terminalExec.*3/);
    await screenshot(page, 'tasks');

    await row(failing.body.task_id).locator('button:text("Details")').click();
    const dialog = page.locator('dialog');
    await until(async () => /task-out/.test(await dialog.textContent()), 'the output is not in the detail view');
    const d = await dialog.textContent();
    assert.match(d, /task-err/);
    assert.match(d, /Exit code\s*3/);
    await screenshot(page, 'task-detail');
    await dialog.locator('button:text("Close")').click();

    await row(long.body.task_id).locator('button:text("Details")').click();
    await dialog.locator('button:text("Cancel task")').click();
    await until(async () => /canceled/.test(await dialog.textContent()), 'the dialog does not show the task canceled');
    await dialog.locator('button:text("Close")').click();
    // The table follows by itself.
    await until(async () => /canceled/.test(await row(long.body.task_id).textContent()), 'the table does not show it canceled');
    const snap = await request(con.base, 'GET', '/api/v1/tasks/' + long.body.task_id, { headers: auth });
    assert.equal(snap.body.status, 'canceled');
    // Another account sees none of them.
    const theirs = await request(con.base, 'GET', '/api/v1/tasks', { cookie: memberCookie });
    assert.equal(theirs.body.total, 0);
  });

  test('Sessions: renew a lease; ending a session closes its open terminal', async () => {
    const term = await browser.context.newPage();
    await openTerminal(term, con.base, 'demo');
    await page.goto(con.base + '/#/sessions');
    const row = page.locator('tbody tr', { hasText: 'demo' });
    await until(async () => (await row.count()) === 1, 'session demo is not listed');
    const before = (await request(con.base, 'GET', '/api/v1/sessions/demo', { cookie })).body.lease_expires_unix_ms;
    // Leases are kept in milliseconds: renewing a millisecond after the last use already extends it.
    const readAt = Date.now();
    await until(async () => Date.now() > readAt, 'the clock does not move');
    await row.locator('button:text("Renew")').click();
    await page.waitForSelector('text=lease renewed until');
    const renewed = (await request(con.base, 'GET', '/api/v1/sessions/demo', { cookie })).body.lease_expires_unix_ms;
    assert.ok(renewed > before, `lease ${before} -> ${renewed}`);
    await row.locator('button:text("End")').click();
    await page.locator('dialog button:text("End session")').click();
    await until(async () => (await row.count()) === 0, 'the session is still listed');
    await term.waitForSelector('.notice-warning');
    assert.match(await term.locator('.notice-warning').textContent(), /session ended|closed/);
    assert.match(await terminalStatus(term), /Closed/);
    await term.close();
  });

  test('the terminal on a dark, narrow screen', async () => {
    const r = await agentExec(con.base, token, { command: 'cd /tmp && echo narrow', session_id: 'phone', create_if_missing: true });
    assert.equal(r.status, 200, r.text);
    const small = await launch({ colorScheme: 'dark', viewport: { width: 390, height: 844 } });
    try {
      await signIn(small.page, con.base, ADMIN, ADMIN_PW);
      await openTerminal(small.page, con.base, 'phone');
      await small.page.keyboard.type('ls -d /tmp && echo on-a-phone\n');
      await waitScreen(small.page, /on-a-phone/, 'typing on a narrow screen');
      const [scroll, width] = await small.page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      assert.ok(scroll <= width, `the page is ${scroll}px wide on a ${width}px screen`);
      await screenshot(small.page, 'terminal-dark-narrow');
      assert.deepEqual(small.problems, []);
    } finally {
      await small.close();
    }
  });

  test('no CSP violation or script error on these pages', () => {
    assert.deepEqual(browser.problems, []);
  });
});

describe('live terminal through a remote worker (gRPC on loopback)', () => {
  let con;
  let worker;
  let browser;
  let page;
  let token;

  before(async () => {
    con = await new Console({ CONSOLE_DASHBOARD_USERNAME: ADMIN, CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW, CONSOLE_HEARTBEAT_INTERVAL_SEC: '1' }, []).start();
    const cookie = await apiLogin(con.base, ADMIN, ADMIN_PW);
    token = (await request(con.base, 'POST', '/api/v1/console/tokens', { body: { name: 'agent' }, cookie })).body.token;
    const w = await request(con.base, 'POST', '/api/v1/workers', { body: { type: 'normal' }, cookie });
    assert.equal(w.status, 201, w.text);
    worker = new Worker({ ...w.body.env, WORKER_CONSOLE_GRPC_TARGET: con.grpcTarget, WORKER_CONSOLE_INSECURE: 'true' }).start();
    await until(
      async () => (await request(con.base, 'GET', '/api/v1/workers?status=online', { cookie })).body.total === 1,
      () => `the worker did not come online:\n${worker.stderr}`,
    );
    const r = await agentExec(con.base, token, { command: 'mkdir -p far && cd far && export WHERE=remote', session_id: 'remote-demo', create_if_missing: true });
    assert.equal(r.status, 200, r.text);
    browser = await launch();
    page = browser.page;
    await signIn(page, con.base, ADMIN, ADMIN_PW);
  });

  after(async () => {
    if (browser) await browser.close();
    if (worker) await worker.stop();
    if (con) await con.stop();
  });

  test('open, type, see the agent, resize, close: all through the worker protocol', async () => {
    await openTerminal(page, con.base, 'remote-demo');
    const row = await request(con.base, 'GET', '/api/v1/sessions/remote-demo', { headers: { authorization: 'Bearer ' + token } });
    assert.notEqual(row.body.worker, 'embedded');
    await page.locator('.xterm').click();
    await page.keyboard.type('echo hi; echo "[$WHERE]"; pwd\n');
    await waitScreen(page, /\[remote\]/, 'typing through the remote worker');
    assert.match(await screenText(page), /\/workspace\/far/);
    await agentExec(con.base, token, { command: 'echo from-the-remote-agent', session_id: 'remote-demo' });
    await waitScreen(page, /▶ agent \$ echo from-the-remote-agent[\s\S]*from-the-remote-agent[\s\S]*■ exit 0/, 'the agent command through the remote worker');
    await page.setViewportSize({ width: 900, height: 600 });
    const [, cols, rows] = await until(async () => {
      const m = /(\d+)×(\d+)/.exec(await terminalStatus(page));
      return m && m[1] !== '120' ? m : null;
    }, 'no resize');
    await page.keyboard.type('stty size\n');
    await waitScreen(page, new RegExp(`${rows} ${cols}`), 'the remote terminal did not take the size');
    await page.keyboard.type('exit 5\n');
    await page.waitForSelector('.notice-warning');
    assert.match(await page.locator('.notice-warning').textContent(), /exited \(code 5\)/);
    assert.deepEqual(browser.problems, []);
  });
});
