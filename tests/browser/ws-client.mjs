// SPDX-License-Identifier: Apache-2.0
// A WebSocket client made of Node's http module, for the live terminal's tests and its benchmark:
// a handshake with the headers a test chooses (Cookie, Origin), which a browser would not let a
// page set, and the terminal's binary messages. No dependency, so bench/ can use it too.

import crypto from 'node:crypto';
import http from 'node:http';
/**
 * A WebSocket handshake and session as a script (not a browser) makes them, with the headers it
 * chooses (Cookie, Origin): resolves { status, body } when the server answers HTTP instead of
 * switching, else { status: 101, ws } with ws.send(type, data), ws.wait(pred, ms), ws.closed
 * ({code, reason} once closed), ws.screen() (terminal output), ws.events(), ws.end(). With
 * onMessage, each message goes to it instead of being kept (a benchmark's megabytes).
 */
export function wsConnect(url, { headers = {}, protocol = 'onlyboxes-terminal.v1', onMessage = null } = {}) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const h = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': key, ...headers };
    if (protocol) h['Sec-WebSocket-Protocol'] = protocol;
    const req = http.request(url, { headers: h });
    req.on('response', (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode, body: b }));
    });
    req.on('upgrade', (res, sock, head) => {
      const ws = { msgs: [], closed: null, waiters: [], buf: head };
      const frame = (op, data) => {
        const mask = crypto.randomBytes(4);
        const n = data.length;
        const hdr = n < 126 ? Buffer.from([0x80 | op, 0x80 | n]) : n < 65536 ? Buffer.from([0x80 | op, 0x80 | 126, n >> 8, n & 255]) : Buffer.concat([Buffer.from([0x80 | op, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
        const m = Buffer.from(data);
        for (let i = 0; i < m.length; i++) m[i] ^= mask[i & 3];
        sock.write(Buffer.concat([hdr, mask, m]));
      };
      const wake = () => ws.waiters.splice(0).forEach((f) => f());
      const pump = () => {
        for (;;) {
          const b = ws.buf;
          if (b.length < 2) return;
          let len = b[1] & 0x7f;
          let off = 2;
          if (len === 126) {
            if (b.length < 4) return;
            len = b.readUInt16BE(2);
            off = 4;
          } else if (len === 127) {
            if (b.length < 10) return;
            len = Number(b.readBigUInt64BE(2));
            off = 10;
          }
          if (b.length < off + len) return;
          const op = b[0] & 0x0f;
          const payload = Buffer.from(b.subarray(off, off + len));
          ws.buf = b.subarray(off + len);
          if (op === 8) ws.closed = { code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005, reason: payload.subarray(2).toString() };
          else if (op === 9) frame(0xa, payload);
          else if ((op === 1 || op === 2) && onMessage) onMessage(payload);
          else if (op === 1 || op === 2) ws.msgs.push(payload);
          wake();
        }
      };
      sock.on('data', (d) => {
        ws.buf = Buffer.concat([ws.buf, d]);
        pump();
      });
      sock.on('error', () => {});
      sock.on('close', () => {
        if (!ws.closed) ws.closed = { code: 1006, reason: '' };
        wake();
      });
      ws.send = (type, data) => frame(2, Buffer.concat([Buffer.from(type), Buffer.from(data)]));
      ws.wait = (pred, ms = 20000) =>
        new Promise((res2, rej) => {
          const t = setTimeout(() => rej(new Error(`WebSocket: timed out; closed ${JSON.stringify(ws.closed)}; saw: ${ws.screen().slice(-500)}`)), ms);
          const check = () => {
            const v = pred(ws);
            if (v) {
              clearTimeout(t);
              res2(v);
            } else ws.waiters.push(check);
          };
          check();
        });
      ws.screen = () => ws.msgs.filter((m) => m[0] === 0x6f).map((m) => m.subarray(1).toString()).join('');
      ws.events = () => ws.msgs.filter((m) => m[0] === 0x65).map((m) => JSON.parse(m.subarray(1).toString()));
      ws.end = () => {
        frame(8, Buffer.from([0x03, 0xe8]));
        setTimeout(() => sock.destroy(), 200);
      };
      ws.sock = sock;
      pump();
      resolve({ status: 101, ws, protocol: res.headers['sec-websocket-protocol'] });
    });
    req.on('error', reject);
    req.end();
  });
}
