// SPDX-License-Identifier: Apache-2.0
// Claude Code (npx @anthropic-ai/claude-code, Node >= 22) set up the way its users do it:
// `claude mcp add` for onlyboxes over stdio and for the console's /mcp (bearer header, or
// ?token= in the URL), then `claude mcp list`, whose health check connects to each server (2.1.332
// speaks 2026-07-28 over both transports, server/discover then tools/list, as seen on the wire
// when this was written). No API key is needed for that, and none is given; HOME is a fresh
// directory. Servers without a usable token are added too, and what the list says about them goes
// into the test log.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { BIN, MCP_ARGS } from './lib.mjs';
import { RUNTIME, note, npxFetch, run, startConsole, tempHome } from './clients-lib.mjs';

const PACKAGES = ['node@22', '@anthropic-ai/claude-code@2.1.332'];
const claudeCode = await npxFetch(PACKAGES, 'claude', { node22: true });
const { skip } = claudeCode;

let home;
let server;
let list; // the run of `claude mcp list`
const lines = {}; // server name -> what `claude mcp list` says after "name: target - "

/** `claude ...` with the fresh HOME, no API key, nothing sent that the test does not need. */
function claude(args) {
  return run(claudeCode.bin, args, {
    cwd: home,
    env: {
      ...claudeCode.env,
      HOME: home,
      ANTHROPIC_API_KEY: null,
      ANTHROPIC_AUTH_TOKEN: null,
      CLAUDE_CODE_OAUTH_TOKEN: null,
      DISABLE_AUTOUPDATER: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    },
    timeoutMs: 120_000,
  });
}

async function add(args) {
  const r = await claude(['mcp', 'add', '--scope', 'user', ...args]);
  assert.equal(r.status, 0, r.report);
  assert.match(r.stdout, /^Added (stdio|HTTP) MCP server /, r.report);
  return r;
}

describe('Claude Code: claude mcp add, then claude mcp list', () => {
  before(async () => {
    if (skip) return;
    home = tempHome('claude-code');
    server = await startConsole();
    await add(['obx-stdio', '-e', `ONLYBOXES_RUNTIME=${RUNTIME}`, '--', BIN, ...MCP_ARGS]);
    await add(['--transport', 'http', 'obx-http', server.url, '--header', `Authorization: Bearer ${server.token}`]);
    await add(['--transport', 'http', 'obx-query-token', `${server.url}?token=${encodeURIComponent(server.token)}`]);
    await add(['--transport', 'http', 'obx-no-token', server.url]);
    await add(['--transport', 'http', 'obx-wrong-token', server.url, '--header', 'Authorization: Bearer obx_not_a_token']);
    list = await claude(['mcp', 'list']);
    assert.equal(list.status, 0, list.report);
    for (const l of list.stdout.split('\n')) {
      const m = /^(obx-[\w-]+): .* - (.*)$/.exec(l);
      if (m) lines[m[1]] = m[2];
    }
  });
  after(async () => {
    await server?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  function status(name) {
    assert.ok(lines[name], `claude mcp list did not report ${name}\n${list.report}`);
    return lines[name];
  }

  test('stdio (onlyboxes mcp --stdio): connected', { skip }, (t) => {
    note(t, `claude mcp list (${list.ms} ms)`, list.stdout);
    assert.equal(status('obx-stdio'), '✔ Connected', list.report);
  });

  test('HTTP with --header "Authorization: Bearer ...": connected', { skip }, () => {
    assert.equal(status('obx-http'), '✔ Connected', list.report);
  });

  test('HTTP with ?token= in the URL: connected', { skip }, () => {
    assert.equal(status('obx-query-token'), '✔ Connected', list.report);
  });

  test('HTTP without a token: failed, with the console text on the header to configure', { skip }, (t) => {
    const s = status('obx-no-token');
    note(t, 'claude mcp list says of the server without a token', s);
    assert.match(s, /^✘ Failed to connect — Dynamic Client Registration rejected \(HTTP 404\): /);
    assert.match(s, /onlyboxes has no OAuth authorization server/);
    assert.match(s, /Authorization: Bearer <token>/);
  });

  test('HTTP with a wrong token: failed, with the console "invalid token" text', { skip }, (t) => {
    const s = status('obx-wrong-token');
    note(t, 'claude mcp list says of the server with a wrong token', s);
    assert.match(s, /^✘ Failed to connect — Server rejected the configured Authorization header \(HTTP 401\)/);
    assert.match(s, /invalid token: /);
  });

  test('the console texts survive Claude Code redacting what looks like a path', { skip }, () => {
    assert.doesNotMatch(status('obx-no-token') + status('obx-wrong-token'), /\[redacted\]/);
  });
});
