// SPDX-License-Identifier: Apache-2.0
// The client configurations in examples/mcp-clients/ are what users copy: each must be valid JSON
// of the shape its client reads, and each local one must start a server the SDK can use, with the
// installed path replaced by the binary under test.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MCP_ARGS, McpServer } from './lib.mjs';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/mcp-clients');
const INSTALLED = '/usr/local/bin/onlyboxes';

/** The one server entry of a configuration file ("servers" for VS Code, "mcpServers" otherwise). */
function entry(file) {
  const conf = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
  const servers = conf.servers ?? conf.mcpServers;
  assert.ok(servers && typeof servers === 'object', `${file}: no servers/mcpServers object`);
  assert.deepEqual(Object.keys(servers), ['onlyboxes'], file);
  return servers.onlyboxes;
}

describe('examples/mcp-clients', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

  test('every file is a configuration with one onlyboxes server', () => {
    assert.ok(files.length >= 6, `only ${files.length} configurations`);
    for (const f of files) {
      const e = entry(f);
      if (e.url) {
        assert.match(e.url, /^https?:\/\/[^/]+\/mcp$/, f);
        assert.match(JSON.stringify(e.headers ?? {}) + (e.type ?? ''), /Bearer|http/, f);
        continue;
      }
      assert.equal(typeof e.command, 'string', f);
      assert.ok(Array.isArray(e.args), f);
      // Whatever starts it (directly, over ssh, in WSL), the server is `onlyboxes mcp --stdio`.
      const cmd = [e.command, ...e.args];
      assert.deepEqual(cmd.slice(cmd.indexOf(INSTALLED)), [INSTALLED, 'mcp', '--stdio'], f);
    }
  });

  for (const f of files) {
    const e = entry(f);
    if (e.command !== INSTALLED) continue;
    test(`${f} starts a server that lists the tools`, async () => {
      assert.deepEqual(e.args.slice(0, MCP_ARGS.length), MCP_ARGS, f);
      const srv = await new McpServer({ args: e.args.slice(MCP_ARGS.length), env: e.env ?? {} }).start();
      try {
        const names = (await srv.client.listTools()).tools.map((t) => t.name);
        for (const t of ['echo', 'pythonExec', 'terminalExec', 'readImage']) assert.ok(names.includes(t), `${f}: no ${t} in ${names}`);
      } finally {
        await srv.close();
      }
    });
  }
});
