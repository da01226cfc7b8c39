// SPDX-License-Identifier: Apache-2.0
// The official MCP Inspector CLI, an independent client, drives the binary over stdio.
// The Inspector needs Node >= 22; npx fetches one next to it. OBX_SKIP_NODE22=1 skips this file
// (for machines that cannot fetch it).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { BIN, MCP_ARGS } from './lib.mjs';

const INSPECTOR = '@modelcontextprotocol/inspector@2.12.0';
const skip = process.env.OBX_SKIP_NODE22 === '1' ? 'OBX_SKIP_NODE22=1: no Node 22 for the Inspector' : false;

function inspector(...cliArgs) {
  // The target and its own flags come first, then `--`, then the Inspector's options.
  const args = ['-y', '-p', 'node@22', '-p', INSPECTOR, '--', 'mcp-inspector', '--cli', BIN, ...MCP_ARGS, '--', ...cliArgs];
  const r = spawnSync('npx', args, { encoding: 'utf8', timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
  if (r.error) throw r.error;
  const report = `npx ${args.join(' ')}\nstatus=${r.status}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr
    .split('\n')
    .filter((l) => !l.startsWith('npm warn'))
    .join('\n')}`;
  return { ...r, report };
}

function parseJson(r) {
  try {
    return JSON.parse(r.stdout);
  } catch {
    assert.fail(`stdout is not JSON\n${r.report}`);
  }
}

describe('MCP Inspector CLI', { skip }, () => {
  test('tools/list', { timeout: 600_000 }, () => {
    const r = inspector('--method', 'tools/list', '--format', 'json', '-q');
    assert.equal(r.status, 0, r.report);
    const names = parseJson(r).result?.tools?.map((t) => t.name).sort();
    assert.deepEqual(names, ['echo', 'pythonExec', 'readImage', 'terminalExec'], r.report);
  });

  test('tools/call echo', { timeout: 600_000 }, () => {
    const r = inspector(
      '--method', 'tools/call', '--tool-name', 'echo', '--tool-args-json', '{"message":"from the inspector"}',
      '--format', 'json', '-q',
    );
    assert.equal(r.status, 0, r.report);
    const res = parseJson(r).result;
    assert.deepEqual(res?.structuredContent, { message: 'from the inspector' }, r.report);
  });

  test('a tool error is reported as one', { timeout: 600_000 }, () => {
    const r = inspector(
      '--method', 'tools/call', '--tool-name', 'echo', '--tool-args-json', '{"message":" "}', '--format', 'json', '-q',
    );
    assert.equal(r.status, 5, `exit 5 means isError: ${r.report}`);
  });
});
