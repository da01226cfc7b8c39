// SPDX-License-Identifier: Apache-2.0
// The MCP Inspector's CLI (`mcp-inspector --cli`, Node >= 22 from npx) in both eras it speaks
// (--protocol-era legacy|modern) against `onlyboxes mcp --stdio` and against the console's /mcp
// with a bearer token, one CLI run per tool call as a user types them. Over stdio each run starts
// a new server, so a terminal session cannot outlive its call: the second terminalExec and the
// readImage that name it get session_not_found with the text that says why and what to do. Over
// HTTP the sessions belong to the token's account and every tool works across runs. Then what it
// prints without a token, in CI (no terminal), at a terminal, and with --stored-auth-only.
// inspector.test.mjs keeps tools/list and the exit code of a tool error.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, MCP_ARGS, assertNoSanitizerReport } from './lib.mjs';
import {
  FIRST_COMMAND,
  IMAGE_PATH,
  PNG_B64,
  RUNTIME,
  SECOND_COMMAND,
  everyTool,
  expect,
  note,
  npxFetch,
  run,
  startConsole,
  tempHome,
} from './clients-lib.mjs';

const PACKAGES = ['node@22', '@modelcontextprotocol/inspector@2.12.0'];
const inspectorCli = await npxFetch(PACKAGES, 'mcp-inspector', { node22: true });
const { skip } = inspectorCli;
const ERAS = ['legacy', 'modern'];
const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';

let home;
before(() => {
  home = tempHome('inspector');
});
after(() => {
  if (home) rmSync(home, { recursive: true, force: true });
});

/**
 * One Inspector CLI run, as `npx -y -p node@22 -p @modelcontextprotocol/inspector@2.12.0 --
 * mcp-inspector --cli ...` runs it (without npm's own start each time): the target with its own
 * flags first, then the Inspector's options.
 */
function inspector(target, options, { timeoutMs = 120_000 } = {}) {
  return run(inspectorCli.bin, ['--cli', ...target, ...options], { env: { ...inspectorCli.env, HOME: home }, timeoutMs });
}

const STDIO = [BIN, ...MCP_ARGS, '--', '-e', `ONLYBOXES_RUNTIME=${RUNTIME}`];

/**
 * tools/call through the CLI; resolves the CallToolResult. The exit code is 0, or 5 for a result
 * with isError (the only failure a call may have here). --format json keeps stdout to the result.
 */
async function toolCall(target, era, name, args, extra = []) {
  const r = await inspector(target, [
    '--protocol-era', era, '--method', 'tools/call', '--tool-name', name, '--tool-args-json', JSON.stringify(args),
    '--format', 'json', ...extra,
  ]);
  // Without -q the server's stderr comes through: a sanitizer build's report fails the call.
  assertNoSanitizerReport(r.stderr, `${target[0]} under the Inspector`);
  let out;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    assert.fail(`the Inspector printed no JSON result\n${r.report}`);
  }
  assert.ok(out.result, r.report);
  assert.equal(r.status, out.result.isError ? 5 : 0, r.report);
  return out.result;
}

/** The era shows in the result: a modern one carries resultType and the server's identity. */
function assertEra(result, era, serverName) {
  if (era === 'modern') {
    assert.equal(result.resultType, 'complete', JSON.stringify(result));
    assert.equal(result._meta?.[SERVER_INFO]?.name, serverName);
  } else {
    assert.equal(result.resultType, undefined, JSON.stringify(result));
    assert.equal(result._meta, undefined, JSON.stringify(result));
  }
}

describe('Inspector CLI over stdio (a new onlyboxes mcp --stdio for each call)', () => {
  for (const era of ERAS) {
    test(`--protocol-era ${era}: each tool; the next call's server does not have the first call's session`, { skip }, async () => {
      const call = (name, args) => toolCall(STDIO, era, name, args);
      const echo = await call('echo', { message: `inspector ${era}` });
      expect.echo(echo, `inspector ${era}`);
      assertEra(echo, era, 'onlyboxes');
      expect.python(await call('pythonExec', { code: 'print(6*7)' }));
      const sessionId = expect.firstTerminal(await call('terminalExec', { command: FIRST_COMMAND }));
      expect.lostSession(await call('terminalExec', { command: SECOND_COMMAND, session_id: sessionId }));
      expect.lostSession(await call('readImage', { session_id: sessionId, file_path: IMAGE_PATH }));
    });
  }
});

describe('Inspector CLI over HTTP (console /mcp)', () => {
  let server;
  before(async () => {
    if (!skip) server = await startConsole();
  });
  after(async () => {
    await server?.stop();
  });

  for (const era of ERAS) {
    test(`--protocol-era ${era} with --header "Authorization: Bearer ...": every tool, sessions kept across runs`, { skip }, async () => {
      const target = [server.url, '--header', `Authorization: Bearer ${server.token}`];
      const echo = await toolCall(target, era, 'echo', { message: 'era check' });
      expect.echo(echo, 'era check');
      assertEra(echo, era, 'onlyboxes-console');
      await everyTool((name, args) => toolCall(target, era, name, args), `the Inspector, ${era}`);
    });
  }

  test('readImage saved with --output-format raw is the PNG the session wrote', { skip }, async () => {
    const target = [server.url, '--header', `Authorization: Bearer ${server.token}`];
    const sessionId = expect.firstTerminal(await toolCall(target, 'modern', 'terminalExec', { command: FIRST_COMMAND }));
    const file = path.join(home, 'dot.png');
    const r = await inspector(target, [
      '--protocol-era', 'modern', '--method', 'tools/call', '--tool-name', 'readImage',
      '--tool-args-json', JSON.stringify({ session_id: sessionId, file_path: IMAGE_PATH }),
      '--output', file, '--output-format', 'raw', '-q',
    ]);
    assert.equal(r.status, 0, r.report);
    assert.ok(readFileSync(file).equals(Buffer.from(PNG_B64, 'base64')), 'the saved file is the PNG, byte for byte');
  });

  test('?token= in the URL instead of the header', { skip }, async () => {
    const url = `${server.url}?token=${encodeURIComponent(server.token)}`;
    expect.echo(await toolCall([url], 'legacy', 'echo', { message: 'query token' }), 'query token');
  });

  /** One run without a usable token; the JSON error line it ends with, and the run. */
  async function refused(target, extra = []) {
    const r = await inspector(target, ['--method', 'tools/list', ...extra]);
    const line = r.stderr.split('\n').find((l) => l.startsWith('{"error"'));
    assert.ok(line, `no error line\n${r.report}`);
    return { r, error: JSON.parse(line).error };
  }

  test('without a token, in CI (no terminal): auth_required, exit 3, asks for a terminal', { skip }, async (t) => {
    const { r, error } = await refused([server.url]);
    note(t, `the Inspector without a token, no terminal (exit ${r.status}, ${r.ms} ms)`, r.stdout + r.stderr);
    assert.equal(r.status, 3, r.report);
    assert.equal(error.code, 'auth_required');
    assert.match(error.message, /Interactive OAuth requires a TTY/);
  });

  test('without a token, --stored-auth-only: exit 3 with the console "token required" text', { skip }, async (t) => {
    const { r, error } = await refused([server.url], ['--stored-auth-only']);
    note(t, `the Inspector without a token, --stored-auth-only (exit ${r.status}, ${r.ms} ms)`, r.stdout + r.stderr);
    assert.equal(r.status, 3, r.report);
    assert.equal(error.code, 'auth_required');
    assert.match(error.message, /token required: this MCP endpoint takes an API token/);
    assert.match(error.message, /Authorization: Bearer <token>/);
  });

  test('a wrong token, --stored-auth-only: exit 3 with the console "invalid token" text', { skip }, async (t) => {
    const { r, error } = await refused([server.url, '--header', 'Authorization: Bearer obx_not_a_token'], ['--stored-auth-only']);
    note(t, `the Inspector with a wrong token, --stored-auth-only (exit ${r.status}, ${r.ms} ms)`, r.stdout + r.stderr);
    assert.equal(r.status, 3, r.report);
    assert.match(error.message, /invalid token: this MCP endpoint takes an API token/);
  });

  const haveScript = spawnSync('script', ['--version']).status === 0;
  for (const [label, target] of [
    ['without a token', () => [server.url]],
    ['with a wrong token', () => [server.url, '--header', 'Authorization: Bearer obx_not_a_token']],
  ]) {
    test(
      `${label}, at a terminal: the OAuth attempt ends at the console's 404 text, exit 1`,
      { skip: skip || (haveScript ? false : 'no script(1) here to give the Inspector a terminal') },
      async (t) => {
        // script(1) gives the CLI a pseudo-terminal, as a user's shell does.
        const argv = [inspectorCli.bin, '--cli', ...target(), '--method', 'tools/list'];
        const r = await run('script', ['-qec', argv.map(shellQuote).join(' '), '/dev/null'], {
          env: { ...inspectorCli.env, HOME: home },
          input: '',
        });
        const text = r.stdout.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
        const shown = text.split('\n').filter((l) => /^\{"error"|^\[mcp-inspector\]/.test(l));
        note(t, `the Inspector ${label}, at a terminal (exit ${r.status}, ${r.ms} ms)`, shown.join('\n'));
        assert.equal(r.status, 1, r.report);
        const line = shown.find((l) => l.startsWith('{"error"'));
        assert.ok(line, r.report);
        const { error } = JSON.parse(line);
        assert.match(error.message, /^Dynamic Client Registration rejected \(HTTP 404\): /);
        assert.match(error.message, /onlyboxes has no OAuth authorization server/);
        assert.match(error.message, /Authorization: Bearer <token>/);
      },
    );
  }
});

function shellQuote(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
