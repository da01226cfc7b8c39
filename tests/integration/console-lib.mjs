// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the console's black-box tests: start `onlyboxes console` on a free loopback
// port (plain HTTP or HTTPS), make real HTTP(S) requests with an optional session cookie, sign in.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { BIN, assertNoSanitizerReport } from './lib.mjs';

export const COOKIE = 'onlyboxes_console_session';

/** A running console: `base` URL, `stderr` so far, stop() waits for a clean exit. */
export class Console {
  constructor(env, args = []) {
    this.env = env;
    this.args = args;
    this.stderr = '';
  }

  /** prefix: a command the console runs under (e.g. ['ip', 'netns', 'exec', NS]). */
  async start(prefix = []) {
    assert.ok(existsSync(BIN), `binary not found: ${BIN}`);
    const argv = [...prefix, BIN, 'console', ...this.args];
    this.proc = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, CONSOLE_HTTP_ADDR: '127.0.0.1:0', CONSOLE_GRPC_ADDR: '127.0.0.1:0', ...this.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.proc.stderr.setEncoding('utf8');
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => resolve({ code, sig })));
    this.base = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`console did not start:\n${this.stderr}`)), 20000);
      this.proc.stderr.on('data', (d) => {
        this.stderr += d;
        const m = /listening on (https?):\/\/(\[[^\]\s]+\]|[^\s:]+):(\d+)/.exec(this.stderr);
        const g = /workers connect to (\S+):(\d+)/.exec(this.stderr);
        if (m && g) {
          this.grpcPort = Number(g[2]);
          this.grpcTarget = `127.0.0.1:${g[2]}`;
        }
        if (m && (g || this.env.CONSOLE_GRPC_ADDR === 'off')) {
          clearTimeout(timer);
          this.boundHost = m[2];
          resolve(`${m[1]}://${m[2].startsWith('[') && m[2] !== '[::]' ? m[2] : '127.0.0.1'}:${m[3]}`);
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
    return r;
  }
}

/** Runs `onlyboxes console` expecting it to fail at startup; resolves {code, stderr}. */
export function startFailure(env, args = []) {
  const proc = spawn(BIN, ['console', ...args], {
    env: { ...process.env, CONSOLE_HTTP_ADDR: '127.0.0.1:0', CONSOLE_GRPC_ADDR: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 20000);
  return new Promise((resolve) =>
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    }),
  );
}

/**
 * One request with a JSON body and an optional session cookie; `ca` trusts a certificate for
 * https. Never follows redirects. Resolves {status, headers (a Headers), body (JSON or null), text}.
 */
export function call(base, method, p, { body, cookie, raw, headers = {}, ca } = {}) {
  const h = { ...headers };
  if (cookie) h.cookie = `${COOKIE}=${cookie}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const payload = raw !== undefined ? raw : body !== undefined ? JSON.stringify(body) : undefined;
  if (payload !== undefined) h['content-length'] = Buffer.byteLength(payload);
  const url = new URL(p, base);
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers: h, ca }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const hs = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) hs.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {}
        resolve({ status: res.statusCode, headers: hs, body: json, text });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

export function sessionCookie(res) {
  const sc = res.headers.getSetCookie().find((c) => c.startsWith(COOKIE + '='));
  assert.ok(sc, 'no session cookie set');
  return { value: sc.slice(COOKIE.length + 1).split(';')[0], header: sc };
}

/** Signs in and returns the session cookie value. */
export async function login(base, username, password, opts = {}) {
  const r = await call(base, 'POST', '/api/v1/console/login', { ...opts, body: { username, password } });
  assert.equal(r.status, 200, r.text);
  return sessionCookie(r).value;
}

/** A Bearer request; `signal` aborts it. */
export function bearer(base, method, p, token, body, { signal } = {}) {
  return fetch(new URL(p, base), {
    method,
    signal,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  }).then(fetchResult);
}

/** A fetch() response as { status, body (parsed JSON, or null), text }. */
export async function fetchResult(res) {
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {}
  return { status: res.status, body: json, text };
}

/** Runs fn(client) with an SDK client on the console's /mcp (at base) with the token; its MCP
 * session ends (DELETE) afterwards. */
export async function withMcpClient(base, token, fn) {
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', base), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'obx-console-test', version: '0.0.0' }, { capabilities: {} });
  await client.connect(transport);
  try {
    return await fn(client);
  } finally {
    await transport.terminateSession();
    await client.close();
  }
}
