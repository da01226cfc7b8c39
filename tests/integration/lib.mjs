// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the black-box tests: start `onlyboxes mcp --stdio` under the official MCP SDK
// client (or as a raw child process speaking JSON-RPC lines), call tools, and look at the host's
// process table from outside the boxes. Every test goes through here so that a failure always
// carries the server's stderr.

import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Absolute path of the binary under test: $OBX_BIN, else ../../build/onlyboxes. */
export const BIN = path.resolve(here, process.env.OBX_BIN || '../../build/onlyboxes');

/** Arguments that start the stdio MCP server. */
export const MCP_ARGS = ['mcp', '--stdio'];

/** Kept per server so a failure report stays readable. */
const STDERR_KEEP = 64 * 1024;

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A string no other test (or earlier run) uses, safe inside shell words and file names. */
export function marker(prefix = 'obx') {
  return `${prefix}${process.pid}x${randomBytes(6).toString('hex')}`;
}

/**
 * A number of seconds that is unique to this call and long enough to outlive any test:
 * `sleep <value>` shows the value in its command line, so the host can find the process.
 */
export function sleepMarker() {
  const digits = String(randomBytes(6).readUIntBE(0, 6)).padStart(15, '0');
  return `1000.${digits}`;
}

function appendCapped(prev, chunk) {
  const s = prev + chunk;
  return s.length > STDERR_KEEP ? s.slice(s.length - STDERR_KEEP) : s;
}

function serverEnv(extra) {
  return { ...process.env, ...extra };
}

/**
 * The first line of an AddressSanitizer, LeakSanitizer, UBSan or ThreadSanitizer report in text,
 * or null. The sanitizer builds are run through the same tests, and a report fails the test even
 * when the behaviour looked right.
 */
export function sanitizerReport(text) {
  const m = /^.*(ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior|Thread)Sanitizer|WARNING: ThreadSanitizer|FATAL: ThreadSanitizer).*$/m.exec(
    text ?? '',
  );
  return m ? m[0] : null;
}

export function assertNoSanitizerReport(text, who = 'onlyboxes') {
  const line = sanitizerReport(text);
  if (line) assert.fail(`${who} reported a sanitizer error: ${line}\n--- stderr (tail) ---\n${text.slice(-8000)}`);
}

/* ------------------------------------------------------------------------------------------ */
/* SDK client                                                                                  */

/**
 * A running `onlyboxes mcp --stdio` with a connected SDK Client.
 * `server.stderr` holds (the tail of) what the server wrote on stderr.
 */
export class McpServer {
  constructor({ args = [], env = {} } = {}) {
    this.args = [...MCP_ARGS, ...args];
    this.env = serverEnv(env);
    this.stderr = '';
    this.client = null;
    this.transport = null;
  }

  async start() {
    assert.ok(existsSync(BIN), `binary not found: ${BIN} (build it, or set OBX_BIN)`);
    this.transport = new StdioClientTransport({
      command: BIN,
      args: this.args,
      env: this.env,
      stderr: 'pipe',
    });
    // The stream exists before start(); read it from the first byte so the pipe never fills.
    this.transport.stderr.setEncoding('utf8');
    this.transport.stderr.on('data', (d) => {
      this.stderr = appendCapped(this.stderr, d);
    });
    this.client = new Client({ name: 'obx-integration', version: '0.0.0' }, { capabilities: {} });
    try {
      await this.client.connect(this.transport);
    } catch (e) {
      await this.close();
      throw withStderr(e, this.stderr);
    }
    return this;
  }

  get pid() {
    return this.transport?.pid ?? null;
  }

  /** tools/call; resolves to the CallToolResult (isError results included). */
  call(name, args, options = {}) {
    return this.client.callTool({ name, arguments: args }, undefined, {
      timeout: 120_000,
      ...options,
    });
  }

  /** Calls a tool that must succeed; returns its structuredContent. */
  async ok(name, args, options) {
    const r = await this.call(name, args, options);
    assert.notEqual(r.isError, true, `${name} failed: ${resultText(r)}`);
    assert.ok(r.structuredContent, `${name} returned no structuredContent: ${JSON.stringify(r)}`);
    return r.structuredContent;
  }

  /** Calls a tool that must fail with isError; returns the error text. */
  async fails(name, args, options) {
    const r = await this.call(name, args, options);
    assert.equal(r.isError, true, `${name} should have failed, got ${JSON.stringify(r).slice(0, 2000)}`);
    const text = resultText(r);
    assert.ok(text.length > 0, 'an error result must explain itself in a text item');
    return text;
  }

  /** terminalExec that must succeed. */
  sh(command, extra = {}) {
    return this.ok('terminalExec', { command, ...extra });
  }

  async close() {
    const t = this.transport;
    this.transport = null;
    if (!t) return;
    try {
      await this.client.close();
    } catch {
      // already gone
    }
    // The SDK escalates to SIGTERM/SIGKILL on its own; make sure the process really went away.
    const pid = t.pid;
    if (pid) await waitForExit(pid, 6000);
    await sleep(50); // the last stderr bytes (an exit-time leak report) arrive after the exit
    assertNoSanitizerReport(this.stderr);
  }
}

export async function startServer(opts) {
  return new McpServer(opts).start();
}

/** All text items of a CallToolResult, joined. */
export function resultText(r) {
  return (r?.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}

function withStderr(err, stderr) {
  if (!stderr || !(err instanceof Error) || err.obxStderrAttached) return err;
  err.message += `\n--- onlyboxes stderr (tail) ---\n${stderr}\n--- end of stderr ---`;
  err.obxStderrAttached = true;
  return err;
}

/**
 * Declares a node:test test that gets a fresh server (or the shared one given in opts.server,
 * a function returning an McpServer). On failure the server's stderr is appended to the error.
 */
export function serverTest(name, opts, fn) {
  if (typeof opts === 'function') {
    fn = opts;
    opts = {};
  }
  const { server: shared, serverOptions, ...testOpts } = opts;
  test(name, testOpts, async (t) => {
    let srv;
    let mark = 0;
    try {
      if (shared) {
        srv = shared();
        assert.ok(srv, 'shared server did not start');
        mark = srv.stderr.length;
      } else {
        srv = await startServer(serverOptions);
      }
      await fn(srv, t);
    } catch (e) {
      throw withStderr(e, srv ? srv.stderr.slice(shared ? mark : 0) || srv.stderr : '');
    } finally {
      if (srv && !shared) await srv.close();
    }
  });
}

/**
 * One server for all tests of a file (started in before(), closed in after()). Returns a getter to
 * pass as serverTest's opts.server.
 */
export function sharedServer(opts) {
  let srv = null;
  before(async () => {
    srv = await startServer(opts);
  });
  after(async () => {
    await srv?.close();
  });
  return () => srv;
}

/* ------------------------------------------------------------------------------------------ */
/* Raw JSON-RPC over the child's stdin/stdout                                                    */

/**
 * The server as a plain child process, for exact control of the bytes on the wire.
 * Every stdout line must parse as JSON; anything else is recorded in `badLines`.
 */
export class RawServer {
  constructor({ args = [], env = {} } = {}) {
    assert.ok(existsSync(BIN), `binary not found: ${BIN} (build it, or set OBX_BIN)`);
    this.child = spawn(BIN, [...MCP_ARGS, ...args], {
      env: serverEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.stderr = '';
    this.messages = [];
    this.badLines = [];
    this.waiters = [];
    this.exit = null;
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
        this._wake();
      });
    });
    this.child.on('error', (e) => {
      this.stderr = appendCapped(this.stderr, `spawn error: ${e.message}\n`);
    });
    this.child.stdin.on('error', () => {}); // EPIPE after the server exits is a test result, not a crash
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d) => {
      this.stderr = appendCapped(this.stderr, d);
    });
    let pending = Buffer.alloc(0);
    this.child.stdout.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      let nl;
      while ((nl = pending.indexOf(0x0a)) >= 0) {
        const line = pending.subarray(0, nl).toString('utf8').replace(/\r$/, '');
        pending = pending.subarray(nl + 1);
        if (line === '') continue;
        try {
          this.messages.push(JSON.parse(line));
        } catch {
          this.badLines.push(line);
        }
      }
      this._wake();
    });
  }

  get pid() {
    return this.child.pid;
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Writes one line: an object is serialised, a string is sent as is. */
  send(msg) {
    const line = typeof msg === 'string' ? msg : JSON.stringify(msg);
    this.child.stdin.write(line + '\n');
  }

  /** Resolves with (and removes) the first message matching pred; rejects after timeoutMs. */
  async waitFor(pred, timeoutMs = 30_000, what = 'a message') {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex(pred);
      if (i >= 0) return this.messages.splice(i, 1)[0];
      if (this.exit) {
        throw withStderr(
          new Error(`server exited (${JSON.stringify(this.exit)}) while waiting for ${what}`),
          this.stderr,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw withStderr(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}; unmatched messages: ` +
              JSON.stringify(this.messages).slice(0, 2000),
          ),
          this.stderr,
        );
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The response whose id is exactly `id` (same JSON type and value). */
  response(id, timeoutMs) {
    return this.waitFor(
      (m) => 'id' in m && !('method' in m) && m.id === id,
      timeoutMs,
      `the response to id ${JSON.stringify(id)}`,
    );
  }

  async request(id, method, params, timeoutMs) {
    const msg = { jsonrpc: '2.0', id, method };
    if (params !== undefined) msg.params = params;
    this.send(msg);
    return this.response(id, timeoutMs);
  }

  notify(method, params) {
    const msg = { jsonrpc: '2.0', method };
    if (params !== undefined) msg.params = params;
    this.send(msg);
  }

  /** initialize + notifications/initialized; returns the initialize result. */
  async initialize(protocolVersion = '2025-11-25', id = 'init') {
    const r = await this.request(id, 'initialize', {
      protocolVersion,
      capabilities: {},
      clientInfo: { name: 'obx-raw', version: '0.0.0' },
    });
    assert.ok(r.result, `initialize failed: ${JSON.stringify(r)}`);
    this.notify('notifications/initialized');
    return r.result;
  }

  /** Closes stdin and waits for the exit; resolves with {code, signal} or null on timeout. */
  async closeStdin(timeoutMs = 10_000) {
    this.child.stdin.end();
    return Promise.race([this.exitPromise, sleep(timeoutMs).then(() => null)]);
  }

  async kill() {
    if (this.exit) return;
    this.child.stdin.end();
    const done = await Promise.race([this.exitPromise, sleep(3000).then(() => null)]);
    if (done) return;
    this.child.kill('SIGTERM');
    const done2 = await Promise.race([this.exitPromise, sleep(3000).then(() => null)]);
    if (!done2) this.child.kill('SIGKILL');
    await this.exitPromise;
  }

  /** Waits for stderr to be fully read, then fails on any sanitizer report in it. */
  async checkStderr() {
    if (!this.child.stderr.readableEnded) {
      await Promise.race([new Promise((r) => this.child.stderr.once('end', r)), sleep(2000)]);
    }
    assertNoSanitizerReport(this.stderr);
  }
}

/** Runs fn(raw) with a fresh raw server; its stderr is attached to any failure. */
export async function withRaw(fn, opts) {
  const raw = new RawServer(opts);
  try {
    const result = await fn(raw);
    await raw.kill();
    await raw.checkStderr();
    return result;
  } catch (e) {
    throw withStderr(e, raw.stderr);
  } finally {
    await raw.kill();
  }
}

/* ------------------------------------------------------------------------------------------ */
/* The host's process table, seen from outside every box                                         */

/** Host pids whose command line contains needle (this test process excluded). */
export function findProcesses(needle) {
  const found = [];
  let entries;
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`);
    } catch {
      continue; // exited while we looked
    }
    if (cmd.length === 0) continue; // zombie or kernel thread
    const text = cmd.toString('utf8').replace(/\0/g, ' ');
    if (text.includes(needle)) found.push({ pid, cmdline: text.trim() });
  }
  return found;
}

/** Polls until some process with needle exists; returns them, or [] after timeoutMs. */
export async function waitForProcess(needle, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = findProcesses(needle);
    if (p.length > 0 || Date.now() >= deadline) return p;
    await sleep(25);
  }
}

/** Polls until no process with needle exists; returns what is left after timeoutMs ([] = gone). */
export async function waitForNoProcess(needle, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = findProcesses(needle);
    if (p.length === 0 || Date.now() >= deadline) return p;
    await sleep(25);
  }
}

/** Asserts that within timeoutMs no host process carries needle; kills leftovers so runs stay clean. */
export async function assertNoProcess(needle, timeoutMs = 2000, why = '') {
  const left = await waitForNoProcess(needle, timeoutMs);
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  assert.deepEqual(
    left.map((p) => p.cmdline),
    [],
    `processes still running on the host ${timeoutMs} ms later${why ? ` (${why})` : ''}`,
  );
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it has finished for our purposes.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

async function waitForExit(pid, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(25);
}

/* ------------------------------------------------------------------------------------------ */
/* The CLI                                                                                       */

/** Runs the binary synchronously; returns {status, signal, stdout, stderr}. */
export function runCli(args, { input, timeoutMs = 120_000, env = {} } = {}) {
  assert.ok(existsSync(BIN), `binary not found: ${BIN} (build it, or set OBX_BIN)`);
  const r = spawnSync(BIN, args, {
    input: input ?? '',
    env: serverEnv(env),
    timeout: timeoutMs,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  assertNoSanitizerReport(r.stderr, `onlyboxes ${args.join(' ')}`);
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** One line describing a CLI result, for assertion messages. */
export function describeRun(r) {
  return `status=${r.status} signal=${r.signal}\n--- stdout ---\n${r.stdout.slice(0, 4000)}\n--- stderr ---\n${r.stderr.slice(-4000)}`;
}

/* ------------------------------------------------------------------------------------------ */
/* The Docker daemon, asked directly (Engine API over its unix socket), never through onlyboxes  */

function daemonSocket() {
  const h = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
  assert.ok(h.startsWith('unix://'), `these tests need a unix-socket daemon, DOCKER_HOST=${h}`);
  return h.slice('unix://'.length);
}

/** GET on the Engine API; resolves to the parsed JSON body. */
export function engineGet(path) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: daemonSocket(), path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`GET ${path}: HTTP ${res.statusCode} ${body}`));
        else resolve(JSON.parse(body));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Containers (any state) whose owner-pid label is pid: those the onlyboxes process pid started. */
export function containersOf(pid) {
  const filters = encodeURIComponent(JSON.stringify({ label: [`onlyboxes.owner-pid=${pid}`] }));
  return engineGet(`/containers/json?all=1&filters=${filters}`);
}
