// SPDX-License-Identifier: Apache-2.0
// The client configurations in examples/mcp-clients/ are what users copy: each must be valid JSON
// of the shape its client reads, and each local one must start a server the SDK can use, with the
// installed path replaced by the binary under test.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, MCP_ARGS, McpServer } from './lib.mjs';

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

// The systemd units and their environment files in examples/systemd/: each unit passes systemd's
// own check (with the installed path replaced by the binary under test), starts the subcommand
// its name says, and every variable an environment file sets (or shows commented out) is one the
// command documents in its --help or docs/console.md.
describe('examples/systemd', () => {
  const sdir = path.resolve(dir, '../systemd');
  const repoRoot = path.resolve(sdir, '../..');

  test('the units pass systemd-analyze verify', { skip: spawnSync('systemd-analyze', ['--version']).status === 0 ? false : 'no systemd-analyze' }, () => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'obx-units-'));
    try {
      for (const unit of ['onlyboxes-console.service', 'onlyboxes-worker.service']) {
        const text = readFileSync(path.join(sdir, unit), 'utf8');
        assert.match(text, new RegExp(`^ExecStart=${INSTALLED} ${unit.includes('console') ? 'console' : 'worker'}$`, 'm'), unit);
        writeFileSync(path.join(tmp, unit), text.replaceAll(INSTALLED, BIN));
        const r = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(tmp, unit)], { encoding: 'utf8' });
        assert.equal(r.status, 0, `${unit}: ${r.stderr}`);
        assert.equal(r.stderr.trim(), '', `${unit}: ${r.stderr}`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('every variable in the environment files is documented', () => {
    const consoleDoc = readFileSync(path.join(repoRoot, 'docs/console.md'), 'utf8');
    const workerHelp = spawnSync(BIN, ['worker', '--help'], { encoding: 'utf8' }).stdout;
    for (const [file, known] of [
      ['console.env.example', consoleDoc],
      ['worker.env.example', workerHelp + readFileSync(path.join(repoRoot, 'README.md'), 'utf8')],
    ]) {
      const names = [...readFileSync(path.join(sdir, file), 'utf8').matchAll(/^#?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]);
      assert.ok(names.length >= 4, file);
      for (const n of names) assert.ok(known.includes(n), `${file}: ${n} is documented nowhere`);
    }
  });
});
