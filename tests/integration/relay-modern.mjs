// SPDX-License-Identifier: Apache-2.0
// The modern half (protocol 2026-07-28) of the test relay in relay.mjs: every modern POST goes, as
// one line, to a single long-lived stdio child (its tasks and subscriptions live in that process's
// memory), and what the child writes back is routed to the POST it belongs to:
//
//   - a response, by its id;
//   - notifications/progress, by its progressToken;
//   - notifications/subscriptions/acknowledged and notifications/tasks, by the subscriptionId in
//     their _meta (the server uses the subscriptions/listen request's id);
//   - notifications/message, to the one request in flight when there is exactly one (the stdio
//     binding has no other way to tell; with several in flight it is logged and dropped).
//
// A POST whose notifications come before its response is answered as SSE, otherwise as JSON, with
// the HTTP status the modern Streamable HTTP binding gives the JSON-RPC error (statusFor below).
// A client that closes its stream before the answer makes the relay send notifications/cancelled
// for that request to the child, as the binding does. Requests from different HTTP clients may
// reuse an id or a progressToken; the relay renames such a collision on the way in and restores
// the client's own value on the way out, so the child sees every id verbatim otherwise.
//
// HTTP headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-*) are not checked here:
// stdio has no headers, and their checks are tested against the console's own /mcp.

import { spawn } from 'node:child_process';
import readline from 'node:readline';

const META_SUBSCRIPTION = 'io.modelcontextprotocol/subscriptionId';
const MODERN_META_KEYS = [
  'io.modelcontextprotocol/protocolVersion',
  'io.modelcontextprotocol/clientCapabilities',
  'io.modelcontextprotocol/clientInfo',
  'io.modelcontextprotocol/logLevel',
];

// The HTTP status of a JSON answer in the 2026-07-28 Streamable HTTP binding: an unknown method is
// 404, the era's own errors and a bad _meta envelope are 400, anything else travels with 200.
export function statusFor(msg) {
  const e = msg?.error;
  if (!e || typeof e !== 'object') return 200;
  if (e.code === -32601) return 404;
  if (e.code === -32020 || e.code === -32021 || e.code === -32022) return 400;
  if (e.code === -32602 && e.data && typeof e.data === 'object' && 'envelope' in e.data) return 400;
  return 200;
}

// Whether a POST body belongs to the modern era: the server's own rule (server.c handle_one) is a
// request whose params._meta carries one of the era's keys; initialize without them opens a legacy
// session.
export function claimsModern(body) {
  const meta = body?.params?._meta;
  return !!meta && typeof meta === 'object' && MODERN_META_KEYS.some((k) => k in meta);
}

const key = (v) => JSON.stringify(v);
const isScalarId = (v) => typeof v === 'string' || typeof v === 'number';

export class ModernRelay {
  constructor(command, args, log) {
    this.command = command;
    this.args = args;
    this.log = log;
    this.child = null;
    this.exited = null; // why the child is gone, once it is
    this.byId = new Map(); // key(child-side id) -> pending
    this.byToken = new Map(); // key(child-side progressToken) -> pending
    this.anonymous = []; // pending requests whose answer comes back with id null (malformed ones)
    this.renamed = 0;
  }

  start() {
    this.child = spawn(this.command, this.args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.on('error', (e) => this.log(`modern child: ${e.message}`));
    this.child.stdin.on('error', (e) => this.log(`modern child stdin: ${e.message}`));
    this.child.on('exit', (code, signal) => {
      this.exited = `the stdio server exited (${signal ?? `code ${code}`})`;
      this.log(`modern child: ${this.exited}`);
      for (const p of [...this.byId.values(), ...this.anonymous]) {
        this.finish(
          p,
          {
            jsonrpc: '2.0',
            id: p.origId ?? null,
            error: { code: -32603, message: `relay: ${this.exited}` },
          },
          502,
        );
      }
    });
    readline
      .createInterface({ input: this.child.stdout })
      .on('line', (line) => this.fromChild(line));
    this.log(`modern child started: pid ${this.child.pid}`);
  }

  // One line to the child. A body that is not JSON goes as received, its line breaks turned into
  // spaces so that it stays one line (and still fails to parse).
  send(msg, raw = false) {
    const line = raw ? msg.replace(/\r?\n/g, ' ') : JSON.stringify(msg);
    this.child.stdin.write(`${line}\n`);
  }

  inFlight() {
    return [...this.byId.values()].filter((p) => !p.listen);
  }

  // A child-side id no request in flight uses: the client's own when free, else a fresh one of
  // the same type.
  freeId(id) {
    if (!this.byId.has(key(id))) return id;
    let fresh;
    do {
      this.renamed++;
      fresh = typeof id === 'number' ? 1_000_000_000 + this.renamed : `${id}~relay${this.renamed}`;
    } while (this.byId.has(key(fresh)));
    return fresh;
  }

  freeToken(token) {
    if (!this.byToken.has(key(token))) return token;
    let fresh;
    do {
      this.renamed++;
      fresh =
        typeof token === 'number' ? 1_000_000_000 + this.renamed : `${token}~relay${this.renamed}`;
    } while (this.byToken.has(key(fresh)));
    return fresh;
  }

  // One modern POST. body is the parsed JSON (undefined when it did not parse), raw the text as
  // received.
  handle(req, res, body, raw) {
    if (this.exited) {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          jsonrpc: '2.0',
          id: null,
          error: { code: -32603, message: `relay: ${this.exited}` },
        }),
      );
      return;
    }
    if (body === undefined && raw.trim() === '') {
      // stdio has no empty message to pass on: a blank line is skipped, never answered.
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          jsonrpc: '2.0',
          id: null,
          error: { code: -32700, message: 'Parse error: relay: the body is empty' },
        }),
      );
      return;
    }
    const accept = String(req.headers.accept ?? '');
    const isObject = body && typeof body === 'object' && !Array.isArray(body);
    const hasMethod = isObject && typeof body.method === 'string';
    if (isObject && !('id' in body) && hasMethod) {
      this.send(this.clientNotification(body));
      res.writeHead(202).end();
      return;
    }
    if (isObject && !hasMethod && ('result' in body || 'error' in body)) {
      this.send(body); // the modern server sends no requests; passed on all the same
      res.writeHead(202).end();
      return;
    }
    const p = {
      res,
      origId: isObject ? body.id : null,
      sse: false,
      done: false,
      listen: false,
      acceptsSse: accept.includes('text/event-stream') || accept === '' || accept.includes('*/*'),
    };
    if (!isObject || !isScalarId(body.id)) {
      // Malformed: the child answers with id null (or the id it could read); the answers go to
      // such requests in the order they came.
      this.anonymous.push(p);
      this.watchClose(p);
      body === undefined ? this.send(raw, true) : this.send(body);
      return;
    }
    const msg = structuredClone(body);
    p.childId = this.freeId(body.id);
    msg.id = p.childId;
    this.byId.set(key(p.childId), p);
    const token = msg.params?._meta?.progressToken;
    if (isScalarId(token)) {
      p.origToken = token;
      p.childToken = this.freeToken(token);
      msg.params._meta.progressToken = p.childToken;
      this.byToken.set(key(p.childToken), p);
    }
    p.listen = body.method === 'subscriptions/listen';
    this.watchClose(p);
    this.send(msg);
  }

  // notifications/cancelled names the client's request id; the child knows it by its own.
  clientNotification(body) {
    if (body.method !== 'notifications/cancelled' || !isScalarId(body.params?.requestId))
      return body;
    const want = key(body.params.requestId);
    const matches = [...this.byId.values()].filter((p) => key(p.origId) === want);
    if (matches.length === 0) return body;
    const msg = structuredClone(body);
    msg.params.requestId = matches[matches.length - 1].childId;
    return msg;
  }

  watchClose(p) {
    p.res.on('close', () => {
      if (p.done) return;
      p.done = true;
      this.forget(p);
      if (p.childId !== undefined && !this.exited) {
        this.send({
          jsonrpc: '2.0',
          method: 'notifications/cancelled',
          params: { requestId: p.childId, reason: 'the client closed its stream' },
        });
      }
    });
  }

  forget(p) {
    if (p.childId !== undefined && this.byId.get(key(p.childId)) === p)
      this.byId.delete(key(p.childId));
    if (p.childToken !== undefined && this.byToken.get(key(p.childToken)) === p)
      this.byToken.delete(key(p.childToken));
    const i = this.anonymous.indexOf(p);
    if (i >= 0) this.anonymous.splice(i, 1);
  }

  // The answer: the last SSE event, or the JSON body with its status.
  finish(p, msg, status) {
    if (p.done) return;
    p.done = true;
    this.forget(p);
    if (p.sse) {
      p.res.end(`event: message\ndata: ${JSON.stringify(msg)}\n\n`);
      return;
    }
    const text = JSON.stringify(msg);
    p.res.writeHead(status ?? statusFor(msg), { 'content-type': 'application/json' });
    p.res.end(text);
  }

  notify(p, msg) {
    if (p.done) return;
    if (!p.sse) {
      if (!p.acceptsSse) {
        this.log(`dropped ${msg.method} for request ${key(p.origId)}: its client accepts no SSE`);
        return;
      }
      p.sse = true;
      p.res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      p.res.flushHeaders();
    }
    p.res.write(`event: message\ndata: ${JSON.stringify(msg)}\n\n`);
  }

  fromChild(line) {
    if (line.trim() === '') return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      this.log(`modern child wrote a line that is not JSON: ${line.slice(0, 200)}`);
      return;
    }
    if (Array.isArray(msg) || typeof msg !== 'object' || msg === null) {
      const p = this.anonymous[0];
      if (p) this.finish(p, msg, 200);
      else this.log(`unrouted batch answer: ${line.slice(0, 200)}`);
      return;
    }
    if (!('method' in msg)) return this.response(msg, line);
    if (!('id' in msg)) return this.notification(msg, line);
    this.log(`dropped a request from the modern child (the era has none): ${line.slice(0, 200)}`);
  }

  response(msg, line) {
    if (isScalarId(msg.id)) {
      const p = this.byId.get(key(msg.id));
      if (p) {
        msg.id = p.origId;
        return this.finish(p, msg);
      }
      // Answered after the client went away (cancelled): nothing to deliver.
      return;
    }
    const p = this.anonymous[0];
    if (p) return this.finish(p, msg);
    this.log(`unrouted answer: ${line.slice(0, 200)}`);
  }

  notification(msg, line) {
    let p;
    const meta = msg.params?._meta;
    if (msg.method === 'notifications/progress' && isScalarId(msg.params?.progressToken)) {
      p = this.byToken.get(key(msg.params.progressToken));
      if (p) msg.params.progressToken = p.origToken;
    } else if (meta && typeof meta === 'object' && META_SUBSCRIPTION in meta) {
      p = this.byId.get(key(meta[META_SUBSCRIPTION]));
      if (p) meta[META_SUBSCRIPTION] = p.origId;
    } else if (msg.method === 'notifications/message') {
      const flying = this.inFlight();
      if (flying.length === 1) p = flying[0];
    }
    if (p) return this.notify(p, msg);
    this.log(
      `unrouted notification (${this.inFlight().length} requests in flight): ${line.slice(0, 300)}`,
    );
  }

  async close() {
    if (!this.child || this.exited) return;
    this.child.stdin.end();
    await new Promise((resolve) => {
      const t = setTimeout(() => {
        this.child.kill('SIGKILL');
        resolve();
      }, 5000);
      this.child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
