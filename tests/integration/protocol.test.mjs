// SPDX-License-Identifier: Apache-2.0
// The stdio JSON-RPC layer, byte for byte: version negotiation, id echo, notifications, errors,
// and a stdout that carries nothing but protocol lines. Uses a raw child process, not the SDK, so
// the test controls exactly what goes on the wire.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { withRaw } from './lib.mjs';

const LATEST = '2025-11-25';

describe('initialize', () => {
  for (const version of ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25']) {
    test(`protocol version ${version} is echoed`, () =>
      withRaw(async (raw) => {
        const r = await raw.initialize(version);
        assert.equal(r.protocolVersion, version);
        assert.equal(r.serverInfo?.name, 'onlyboxes');
        assert.equal(typeof r.serverInfo?.version, 'string');
        assert.ok(r.capabilities?.tools, 'capabilities.tools must be declared');
        // The session is usable after the handshake.
        const list = await raw.request(1, 'tools/list');
        assert.ok(Array.isArray(list.result?.tools), JSON.stringify(list));
        assert.deepEqual(raw.badLines, []);
      }));
  }

  test('an unknown future version gets the latest supported one', () =>
    withRaw(async (raw) => {
      const r = await raw.initialize('2099-01-01');
      assert.equal(r.protocolVersion, LATEST);
    }));
});

describe('JSON-RPC framing', () => {
  test('string and number ids are echoed exactly', () =>
    withRaw(async (raw) => {
      const init = await raw.request('abc', 'initialize', {
        protocolVersion: LATEST,
        capabilities: {},
        clientInfo: { name: 'raw', version: '0' },
      });
      assert.equal(init.id, 'abc');
      assert.equal(init.jsonrpc, '2.0');
      raw.notify('notifications/initialized');
      const ping0 = await raw.request(0, 'ping');
      assert.equal(ping0.id, 0);
      assert.deepEqual(ping0.result, {});
      const pingStr = await raw.request('0', 'ping');
      assert.equal(pingStr.id, '0', 'the string id "0" must stay a string');
      const big = await raw.request(9007199254740991, 'ping');
      assert.equal(big.id, 9007199254740991);
    }));

  test('a notification gets no reply', () =>
    withRaw(async (raw) => {
      await raw.initialize();
      raw.notify('notifications/initialized');
      raw.notify('notifications/some-unknown-notification', { x: 1 });
      raw.notify('notifications/cancelled', { requestId: 'never-sent' });
      const r = await raw.request('after', 'ping');
      assert.deepEqual(r.result, {});
      assert.deepEqual(raw.messages, [], 'nothing but the ping answer may arrive');
    }));

  test('an unknown method is -32601', () =>
    withRaw(async (raw) => {
      await raw.initialize();
      const r = await raw.request(7, 'no/such/method', {});
      assert.equal(r.error?.code, -32601, JSON.stringify(r));
      assert.equal(r.result, undefined);
    }));

  test('server/discover answers before initialize, and the legacy handshake still follows', () =>
    withRaw(async (raw) => {
      // A dual-era client probes with this first. With the modern _meta it gets the server's
      // versions; without it, a -32602 that names what is missing (never silence); either way
      // the server stays up for an initialize that follows.
      const meta = {
        'io.modelcontextprotocol/protocolVersion': '2026-07-28',
        'io.modelcontextprotocol/clientCapabilities': {},
      };
      const d = await raw.request(1, 'server/discover', { _meta: meta }, 5000);
      assert.deepEqual(d.result?.supportedVersions, ['2026-07-28'], JSON.stringify(d));
      const bare = await raw.request(2, 'server/discover', {}, 5000);
      assert.equal(bare.error?.code, -32602, JSON.stringify(bare));
      assert.match(bare.error.message, /_meta/);
      const init = await raw.initialize();
      assert.equal(init.protocolVersion, LATEST);
    }));

  test('a garbage line is -32700 and the server keeps running', () =>
    withRaw(async (raw) => {
      await raw.initialize();
      raw.send('this is {not json');
      const err = await raw.waitFor((m) => m.error?.code === -32700, 10_000, 'a -32700 error');
      assert.equal(err.id ?? null, null);
      const r = await raw.request('still-there', 'ping');
      assert.deepEqual(r.result, {});
      assert.equal(raw.exit, null);
    }));

  test('stdout carries only JSON-RPC lines', () =>
    withRaw(async (raw) => {
      await raw.initialize();
      await raw.request(1, 'tools/list');
      await raw.request(2, 'tools/call', { name: 'echo', arguments: { message: 'hello' } });
      await raw.request(3, 'tools/call', {
        name: 'pythonExec',
        arguments: { code: 'import sys; print("to stdout"); print("to stderr", file=sys.stderr)' },
      });
      await raw.request(4, 'tools/call', { name: 'nope', arguments: {} });
      await raw.request(5, 'no/such/method');
      assert.deepEqual(raw.badLines, [], 'every stdout line must be JSON');
      for (const m of raw.messages) assert.equal(m.jsonrpc, '2.0', JSON.stringify(m));
    }));
});
