// SPDX-License-Identifier: Apache-2.0
// mcp-remote, the stdio-to-HTTP bridge users put in front of a remote server for a client that
// only starts local servers (Claude Desktop, Cursor: `npx mcp-remote URL --header ...`). The 1.x
// SDK client starts it as its stdio server, exactly as those clients do, and calls every tool
// through it against the console's /mcp. Then what it prints when the token is missing or wrong:
// it meets the 401, looks for an OAuth authorization server, and reports what the console's
// discovery answers say.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { everyTool, note, printed, run, startConsole, tempHome } from './clients-lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const MCP_REMOTE = path.join(here, 'node_modules', '.bin', 'mcp-remote');

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'obx-mcp-remote-test', version: '0' } },
});

/** The lines of mcp-remote's log a user reads, without the stack traces and metadata dumps. */
function logLines(stderr) {
  return stderr
    .split('\n')
    .filter((l) => /^\[\d+\] /.test(l))
    .map((l) => l.replace(/^\[\d+\] (\[\d+\] )?/, ''))
    .join('\n');
}

describe('mcp-remote in front of the console /mcp', () => {
  let server;
  before(async () => {
    server = await startConsole();
  });
  after(async () => {
    await server?.stop();
  });

  test('with --header "Authorization: Bearer ...": every tool, driven by the 1.x SDK over stdio', async () => {
    const home = tempHome('mcp-remote');
    const transport = new StdioClientTransport({
    command: MCP_REMOTE,
    args: [server.url, '--header', `Authorization: Bearer ${server.token}`],
    env: { ...process.env, HOME: home },
    stderr: 'pipe',
    });
    let log = '';
    transport.stderr.setEncoding('utf8');
    transport.stderr.on('data', (d) => (log += d));
    const client = new Client({ name: 'obx-mcp-remote-test', version: '0.0.0' });
    try {
    await client.connect(transport);
    assert.equal(client.getServerVersion()?.name, 'onlyboxes-console');
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((x) => x.name).sort(), ['echo', 'exportFile', 'pythonExec', 'readImage', 'terminalExec']);
    await everyTool((name, args) => client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 }), 'mcp-remote');
    assert.match(log, /Connected to remote server using StreamableHTTPClientTransport/);
    } catch (e) {
    e.message += `\n${printed('mcp-remote printed', logLines(log))}`;
    throw e;
    } finally {
    await client.close();
    rmSync(home, { recursive: true, force: true });
    }
  });

  /** Runs mcp-remote as a client would, feeding it one initialize; resolves the run. */
  async function bridge(extraArgs) {
    const home = tempHome('mcp-remote');
    try {
    return await run(MCP_REMOTE, [server.url, ...extraArgs], { env: { HOME: home }, input: INITIALIZE + '\n', timeoutMs: 90_000 });
    } finally {
    rmSync(home, { recursive: true, force: true });
    }
  }

  test('without a token it stops with the console text on how to configure the header', async (t) => {
    const r = await bridge([]);
    note(t, `mcp-remote without a token printed (exit ${r.status}, ${r.ms} ms)`, logLines(r.stderr));
    assert.equal(r.status, 1, r.report);
    assert.equal(r.stdout, '', 'no answer to initialize');
    const fatal = r.stderr.split('\n').find((l) => /Fatal error:/.test(l));
    assert.ok(fatal, r.report);
    // What the user reads: mcp-remote's own prefix, then the console's explanation.
    assert.match(fatal, /Dynamic Client Registration rejected \(HTTP 404\)/);
    assert.match(fatal, /onlyboxes has no OAuth authorization server/);
    assert.match(fatal, /Authorization: Bearer <token>/);
    assert.match(fatal, /\?token=<token>/);
  });

  test('with a wrong token it stops too, saying the token it sends is not valid', async (t) => {
    const r = await bridge(['--header', 'Authorization: Bearer obx_not_a_token']);
    note(t, `mcp-remote with a wrong token printed (exit ${r.status}, ${r.ms} ms)`, logLines(r.stderr));
    assert.equal(r.status, 1, r.report);
    const fatal = r.stderr.split('\n').find((l) => /Fatal error:/.test(l));
    assert.match(fatal, /Dynamic Client Registration rejected \(HTTP 404\)/);
    assert.match(fatal, /the token in the Authorization header your client sends is not valid/);
  });

  // What mcp-remote (the 1.x SDK's auth code) reads first: the challenge of the 401, as fetch
  // gives it, every field line of the header joined.
  test('the 401 it meets carries one WWW-Authenticate challenge', async () => {
    for (const token of [undefined, 'obx_not_a_token']) {
      const res = await fetch(server.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: INITIALIZE,
      });
      await res.text();
      assert.equal(res.status, 401);
      assert.equal(
        res.headers.get('www-authenticate'),
        token ? 'Bearer realm="onlyboxes", error="invalid_token"' : 'Bearer realm="onlyboxes"',
      );
    }
  });

  test('with a wrong token it says the token is not valid', async () => {
    const r = await bridge(['--header', 'Authorization: Bearer obx_not_a_token']);
    assert.match(logLines(r.stderr), /invalid token|token .*(not valid|invalid|unknown)/i);
  });
});
