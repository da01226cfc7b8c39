// SPDX-License-Identifier: Apache-2.0
// What the dashboard's browser tests share: Debian's Chromium under playwright-core with a fresh
// profile, `onlyboxes console --with-worker` on loopback ports with a fresh database, plain HTTP
// requests to it, `onlyboxes worker` processes, and where screenshots go.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const BIN = path.resolve(here, process.env.OBX_BIN || '../../build/onlyboxes');
export const CHROMIUM = process.env.OBX_CHROMIUM || '/usr/bin/chromium';
/** Screenshots of this run (a test artefact); OBX_UPDATE_SCREENSHOTS=1 writes docs/dashboard/ too. */
export const SHOTS = path.resolve(process.env.OBX_SCREENSHOT_DIR || path.join(ROOT, 'build/dashboard-screenshots'));
export const DOC_SHOTS = path.join(ROOT, 'docs/dashboard');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Lines the sanitizers print, so a crash in the console shows as a failure. */
function assertNoSanitizerReport(text, who) {
  const m = /^(==\d+==ERROR: \w+Sanitizer|WARNING: ThreadSanitizer|.*runtime error:)/m.exec(text);
  assert.ok(!m, `${who} reported: ${m && m[0]}\n${text.slice(-4000)}`);
}

/** A running console (`base`, `grpcTarget`, `stderr`); stop() waits for its exit. */
export class Console {
  constructor(env = {}, args = ['--with-worker']) {
    this.env = env;
    this.args = args;
    this.stderr = '';
    this.dir = mkdtempSync(path.join(tmpdir(), 'obx-browser-'));
  }

  async start() {
    assert.ok(existsSync(BIN), `binary not found: ${BIN}`);
    this.proc = spawn(BIN, ['console', ...this.args], {
      env: {
        ...process.env,
        CONSOLE_HTTP_ADDR: '127.0.0.1:0',
        CONSOLE_GRPC_ADDR: '127.0.0.1:0',
        CONSOLE_DB_PATH: path.join(this.dir, 'console.db'),
        CONSOLE_HASH_KEY: 'browser-test-key-' + process.pid,
        ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
        XDG_RUNTIME_DIR: this.dir,
        ...this.env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.proc.stderr.setEncoding('utf8');
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => resolve({ code, sig })));
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`console did not start:\n${this.stderr}`)), 20000);
      this.proc.stderr.on('data', (d) => {
        this.stderr += d;
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(this.stderr);
        const g = /workers connect to 127\.0\.0\.1:(\d+)/.exec(this.stderr);
        if (m && g && !this.base) {
          this.base = `http://127.0.0.1:${m[1]}`;
          this.grpcTarget = `127.0.0.1:${g[1]}`;
          clearTimeout(timer);
          resolve();
        }
      });
      this.proc.on('exit', () => reject(new Error(`console exited:\n${this.stderr}`)));
    });
    return this;
  }

  async stop() {
    this.proc.kill('SIGTERM');
    const r = await this.exited;
    assertNoSanitizerReport(this.stderr, 'onlyboxes console');
    rmSync(this.dir, { recursive: true, force: true });
    return r;
  }
}

/**
 * One HTTP request; body is JSON unless raw is given. Resolves { status, headers (lower-case
 * names), body (parsed JSON or null), text, raw (Buffer) }.
 */
export function request(base, method, p, { body, raw, headers = {}, cookie } = {}) {
  const h = { ...headers };
  if (cookie) h.cookie = `onlyboxes_console_session=${cookie}`;
  let payload = raw;
  if (body !== undefined) {
    payload = JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  if (payload !== undefined) h['content-length'] = Buffer.byteLength(payload);
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(p, base), { method, headers: h }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const rawBody = Buffer.concat(chunks);
        const text = rawBody.toString('utf8');
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {}
        resolve({ status: res.statusCode, headers: res.headers, body: json, text, raw: rawBody });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Signs in over the API; resolves the session cookie's value. */
export async function apiLogin(base, username, password) {
  const r = await request(base, 'POST', '/api/v1/console/login', { body: { username, password } });
  assert.equal(r.status, 200, r.text);
  const c = (r.headers['set-cookie'] || []).find((s) => s.startsWith('onlyboxes_console_session='));
  return c.split(';')[0].split('=')[1];
}

/** Chromium with a fresh profile, as the standards ask: Debian's build, never a download. */
export async function launch({ colorScheme = 'light', viewport = { width: 1280, height: 800 } } = {}) {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found (scripts/install-deps.sh installs Debian's chromium)`);
  const profile = mkdtempSync(path.join(tmpdir(), 'obx-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport,
    colorScheme,
    reducedMotion: 'reduce',
  });
  const page = context.pages()[0] || (await context.newPage());
  // What the page says about itself: a CSP violation or an uncaught error fails the test that
  // looks at `problems`.
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    const t = m.text();
    if (m.type() === 'error' && !/status of 40[1349]|status of 429/.test(t)) problems.push('console error: ' + t);
    if (/Content.Security.Policy/i.test(t)) problems.push('CSP: ' + t);
  });
  return {
    context,
    page,
    problems,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a screenshot of the page as NAME.png (and into docs/ with OBX_UPDATE_SCREENSHOTS=1). */
export async function screenshot(page, name, opts = {}) {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, name + '.png');
  await page.screenshot({ path: file, animations: 'disabled', caret: 'hide', ...opts });
  if (process.env.OBX_UPDATE_SCREENSHOTS === '1') {
    mkdirSync(DOC_SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(DOC_SHOTS, name + '.png'), animations: 'disabled', caret: 'hide', ...opts });
  }
  return file;
}

/** `onlyboxes worker` with exactly the given environment (plus PATH and a state directory). */
export class Worker {
  constructor(env) {
    this.env = env;
    this.stderr = '';
  }

  /** Started through bash with a command line, as a person pastes it (argv: ['bash','-c',cmd]). */
  static fromShell(command, extraEnv = {}) {
    const w = new Worker(extraEnv);
    w.shell = command;
    return w;
  }

  start() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'obx-browser-worker-'));
    const env = {
      PATH: `${path.dirname(BIN)}:${process.env.PATH}`,
      HOME: process.env.HOME || '/root',
      XDG_RUNTIME_DIR: this.dir,
      ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
      ONLYBOXES_WARM_POOL: '0',
      ...this.env,
    };
    for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'TSAN_OPTIONS', 'LSAN_OPTIONS']) if (process.env[k]) env[k] = process.env[k];
    const argv = this.shell ? ['bash', '-c', this.shell] : [BIN, 'worker'];
    // Its own process group, so that stop() reaches the worker through the shell too.
    this.proc = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    return this;
  }

  async stop() {
    try {
      process.kill(-this.proc.pid, 'SIGTERM');
    } catch {} // gone already
    const r = await this.exited;
    assertNoSanitizerReport(this.stderr, 'onlyboxes worker');
    rmSync(this.dir, { recursive: true, force: true });
    return r;
  }
}

/** A WebSocket client as a script makes one (ws-client.mjs). */
export { wsConnect } from './ws-client.mjs';
