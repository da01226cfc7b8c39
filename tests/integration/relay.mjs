// SPDX-License-Identifier: Apache-2.0
// Test-only relay that exposes a stdio MCP server as Streamable HTTP, so the conformance suite
// (which speaks HTTP only) exercises the stdio code path of the binary under test.
//
//   node relay.mjs PORT COMMAND [ARGS...]
//
// Legacy era (an initialize handshake, then Mcp-Session-Id): each HTTP session gets its own child
// process. Responses go back on the POST that carried their request; a progress notification
// follows its progressToken to the request that asked for it; any other notification rides the
// stream of the newest request still in flight (the conformance scenarios run one call at a time),
// or the GET stream when nothing is in flight.
//
// Modern era (2026-07-28: no session, every request carries its _meta): every POST without a
// session id other than a legacy initialize goes to one long-lived child; see relay-modern.mjs.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ModernRelay, claimsModern } from './relay-modern.mjs';

const [, , portArg, command, ...args] = process.argv;
if (!portArg || !command) {
  process.stderr.write('usage: node relay.mjs PORT COMMAND [ARGS...]\n');
  process.exit(2);
}

const MAX_BODY = 8 * 1024 * 1024;
const IDLE_MS = 120_000;
const sessions = new Map(); // session id -> { http, child, lastUsed }
let modern; // the modern era's child, started with the first modern request

function log(msg) {
  process.stderr.write(`relay: ${msg}\n`);
}

function isRequest(m) {
  return typeof m?.method === 'string' && 'id' in m;
}

function isResponse(m) {
  return m && 'id' in m && !('method' in m);
}

async function openSession() {
  const child = new StdioClientTransport({ command, args, stderr: 'inherit' });
  const inflight = []; // request ids, oldest first
  const byToken = new Map(); // progressToken -> request id
  const entry = { http: null, child, lastUsed: Date.now() };

  const httpT = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (id) => {
      entry.id = id;
      sessions.set(id, entry);
    },
  });
  entry.http = httpT;

  httpT.onmessage = (m) => {
    if (isRequest(m)) {
      inflight.push(m.id);
      const token = m.params?._meta?.progressToken;
      if (token !== undefined) byToken.set(token, m.id);
    }
    child.send(m).catch((e) => log(`to server: ${e.message}`));
  };

  child.onmessage = (m) => {
    let related;
    if (isResponse(m)) {
      const i = inflight.indexOf(m.id);
      if (i >= 0) inflight.splice(i, 1);
      for (const [tok, id] of byToken) if (id === m.id) byToken.delete(tok);
    } else if (m.method === 'notifications/progress' && byToken.has(m.params?.progressToken)) {
      related = byToken.get(m.params.progressToken);
    } else if (!isRequest(m) && inflight.length > 0) {
      related = inflight[inflight.length - 1];
    }
    httpT
      .send(m, related !== undefined ? { relatedRequestId: related } : undefined)
      .catch((e) => log(`to client: ${e.message}`));
  };

  let closing = false;
  const closeBoth = () => {
    if (closing) return;
    closing = true;
    if (entry.id) sessions.delete(entry.id);
    child.close().catch(() => {});
    httpT.close().catch(() => {});
  };
  httpT.onclose = closeBoth;
  child.onclose = closeBoth;
  child.onerror = (e) => log(`server process: ${e.message}`);

  await child.start();
  return entry;
}

// { raw, body, parsed }: body is undefined when there is none or it is not JSON.
async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > MAX_BODY) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(c);
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  if (size === 0) return { raw, body: undefined, parsed: false };
  try {
    return { raw, body: JSON.parse(raw), parsed: true };
  } catch {
    return { raw, body: undefined, parsed: false };
  }
}

function isLegacyInitialize(body) {
  return body && typeof body === 'object' && body.method === 'initialize' && !claimsModern(body);
}

function fail(res, status, code, message) {
  if (res.headersSent) return res.end();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } }));
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://relay');
    if (url.pathname !== '/mcp') return fail(res, 404, -32601, 'not found');
    const { raw, body, parsed } = await readBody(req);
    const sid = req.headers['mcp-session-id'];
    let entry = sid ? sessions.get(sid) : undefined;
    if (!entry) {
      if (sid) return fail(res, 404, -32001, 'Session not found');
      if (req.method !== 'POST') return fail(res, 405, -32000, 'Method not allowed');
      if (!isLegacyInitialize(body)) {
        if (!modern) {
          modern = new ModernRelay(command, args, log);
          modern.start();
        }
        return modern.handle(req, res, body, raw);
      }
      entry = await openSession();
    }
    if (raw.length > 0 && !parsed) return fail(res, 400, -32700, 'Parse error');
    entry.lastUsed = Date.now();
    await entry.http.handleRequest(req, res, body);
  } catch (e) {
    fail(res, e.status ?? 500, e.code ?? -32603, e.message);
  }
});

// The conformance runner opens a session per scenario and never deletes them.
const reaper = setInterval(() => {
  const now = Date.now();
  for (const entry of sessions.values()) {
    if (now - entry.lastUsed > IDLE_MS) entry.http.close().catch(() => {});
  }
}, 10_000);
reaper.unref();

async function shutdown(signal) {
  log(`${signal}: closing ${sessions.size} session(s)`);
  server.close();
  await Promise.allSettled([...sessions.values()].map((e) => e.child.close()));
  if (modern) await modern.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.listen(Number(portArg), '127.0.0.1', () => {
  log(`listening on http://127.0.0.1:${server.address().port}/mcp for ${command} ${args.join(' ')}`);
});
