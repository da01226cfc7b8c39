// SPDX-License-Identifier: Apache-2.0
// Shared by the real-client tests (client-*.test.mjs), which drive onlyboxes with the MCP clients
// users run: the one scenario every client goes through (each tool, checked the way a user
// would), a console with an account and an API token, and the clients npx fetches (Node 22,
// the Inspector, Claude Code). Those skip themselves, loudly and with npm's reason, only when npm
// cannot fetch them; a client that was fetched and then fails is a failure.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { BIN, resultText } from './lib.mjs';
import { Console, call, login } from './console-lib.mjs';

/** The runtime the boxes use here (the docker runtime has its own stage). */
export const RUNTIME = process.env.ONLYBOXES_RUNTIME || 'bubblewrap';

/** A 1x1 PNG: the file the scenario writes in a session and reads back with readImage. */
export const PNG_B64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP438DwHwAGgAJ/zxIJ8QAAAABJRU5ErkJggg==';

/** The first terminalExec: state the second one must find (directory, variable, file). */
export const FIRST_COMMAND = `mkdir -p pics && cd pics && export OBX_KEPT=kept && echo ${PNG_B64} | base64 -d > dot.png`;
export const SECOND_COMMAND = 'pwd; echo $OBX_KEPT; ls';
/** readImage's file_path for that PNG: relative paths follow the session's cwd (pics, after the cd). */
export const IMAGE_PATH = 'dot.png';

/** What a user checks in each tool's answer. */
export const expect = {
  echo(r, message) {
    assert.notEqual(r.isError, true, resultText(r));
    assert.deepEqual(r.structuredContent, { message });
  },
  python(r) {
    assert.notEqual(r.isError, true, resultText(r));
    assert.equal(r.structuredContent.output, '42\n', JSON.stringify(r));
    assert.equal(r.structuredContent.exit_code, 0);
  },
  firstTerminal(r) {
    assert.notEqual(r.isError, true, resultText(r));
    assert.equal(r.structuredContent.exit_code, 0, JSON.stringify(r.structuredContent));
    assert.equal(r.structuredContent.created, true);
    assert.match(r.structuredContent.session_id, /^\S+$/);
    return r.structuredContent.session_id;
  },
  secondTerminal(r, sessionId) {
    assert.notEqual(r.isError, true, resultText(r));
    assert.equal(r.structuredContent.session_id, sessionId);
    assert.equal(r.structuredContent.created, false, 'the second call must land in the same session');
    assert.match(r.structuredContent.stdout, /\/pics\nkept\ndot\.png\n$/, 'directory, variable and file kept');
  },
  image(r) {
    assert.notEqual(r.isError, true, JSON.stringify(r).slice(0, 2000));
    assert.deepEqual(r.content, [{ type: 'image', mimeType: 'image/png', data: PNG_B64 }]);
  },
  /** A tool error whose text says what session_not_found means for `mcp --stdio`. */
  lostSession(r) {
    assert.equal(r.isError, true, JSON.stringify(r).slice(0, 2000));
    const text = resultText(r);
    assert.match(text, /^session_not_found: /);
    assert.match(text, /lives as long as this server process/);
    assert.match(text, /keep one MCP connection open across calls/);
    assert.match(text, /onlyboxes console/);
  },
};

/**
 * Every tool through `callTool(name, args)` (resolving to a CallToolResult): echo, pythonExec,
 * terminalExec twice in one session, readImage on the PNG that session wrote.
 */
export async function everyTool(callTool, who) {
  const message = `hello from ${who}`;
  expect.echo(await callTool('echo', { message }), message);
  expect.python(await callTool('pythonExec', { code: 'print(6*7)' }));
  const sessionId = expect.firstTerminal(await callTool('terminalExec', { command: FIRST_COMMAND }));
  expect.secondTerminal(await callTool('terminalExec', { command: SECOND_COMMAND, session_id: sessionId }), sessionId);
  expect.image(await callTool('readImage', { session_id: sessionId, file_path: IMAGE_PATH }));
}

/* ------------------------------------------------------------------------------------------ */
/* A console with an account and a token                                                        */

/**
 * `onlyboxes console --with-worker` on a free loopback port with a fresh database, and an API
 * token made through the dashboard's API. Resolves { con, url (of /mcp), token, stop() }.
 */
export async function startConsole(env = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'obx-clients-'));
  const password = 'Cl1ents-' + Math.random().toString(16).slice(2);
  const con = await new Console(
    {
      CONSOLE_DB_PATH: path.join(dir, 'console.db'),
      CONSOLE_HASH_KEY: 'clients-' + process.pid,
      CONSOLE_DASHBOARD_USERNAME: 'clients-admin',
      CONSOLE_DASHBOARD_PASSWORD: password,
      ONLYBOXES_RUNTIME: RUNTIME,
      ...env,
    },
    ['--with-worker'],
  ).start();
  try {
    const cookie = await login(con.base, 'clients-admin', password);
    const t = await call(con.base, 'POST', '/api/v1/console/tokens', { cookie, body: { name: 'clients' } });
    assert.equal(t.status, 201, t.text);
    return {
      con,
      url: `${con.base}/mcp`,
      token: t.body.token,
      async stop() {
        await con.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await con.stop();
    throw e;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Commands                                                                                     */

/** npm's cache: kept when a test gives a client a HOME of its own, so npx does not fetch again. */
export const NPM_CACHE = process.env.npm_config_cache || path.join(homedir(), '.npm');

/** A fresh directory to be a client's HOME (its configuration and stored auth go there). */
export function tempHome(prefix) {
  return mkdtempSync(path.join(tmpdir(), `obx-${prefix}-home-`));
}

/**
 * Runs a command without blocking the event loop (a console's stderr keeps draining meanwhile).
 * Resolves { status, signal, stdout, stderr, ms, report }; `report` is the whole run, for messages.
 * `env` adds to this process's environment (a null value removes the variable). `input` is
 * written to stdin (which is then closed); stdin is /dev/null otherwise.
 */
export function run(cmd, args, { env = {}, cwd, input, timeoutMs = 120_000 } = {}) {
  const childEnv = { ...process.env, npm_config_cache: NPM_CACHE, NO_COLOR: '1', FORCE_COLOR: '0', ...env };
  for (const [k, v] of Object.entries(childEnv)) if (v === null || v === undefined) delete childEnv[k];
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, {
      cwd,
      env: childEnv,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    if (input !== undefined) {
      child.stdin.on('error', () => {});
      child.stdin.end(input);
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - t0;
      stderr = withoutNpmNoise(stderr);
      const report = `${cmd} ${args.join(' ')}\nstatus=${status} signal=${signal} (${ms} ms)\n--- stdout ---\n${stdout.slice(0, 8000)}\n--- stderr ---\n${stderr.slice(-8000)}`;
      resolve({ status, signal, stdout, stderr, ms, report });
    });
  });
}

/** npm's engine warnings and update notices, which say nothing about the client under test. */
function withoutNpmNoise(text) {
  return text
    .split('\n')
    .filter((l) => !/^npm (warn|notice)\b/.test(l))
    .join('\n');
}

/** npx arguments that run `bin` from the given packages. */
export function npxArgs(packages, bin, args) {
  return ['-y', ...packages.flatMap((p) => ['-p', p]), '--', bin, ...args];
}

/** npm's words for "the registry could not be reached or has no such package". */
const FETCH_FAILURE = /npm (error|ERR!) (code )?(E404|ETARGET|E5\d\d|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ENETUNREACH|EHOSTUNREACH|EINTEGRITY|ERR_SOCKET_TIMEOUT|FETCH_ERROR)|request to https?:\/\/\S+ failed/;

/**
 * Fetches the packages with npx (once; later runs read npm's cache) and finds `bin` among them.
 * Resolves { skip: false, bin, env } where `bin` is the command's absolute path and `env` the PATH
 * npx runs it with (its node first: Node 22 when node@22 is one of the packages), so each later run
 * costs the client's start only, not npm's. When npm cannot fetch the packages it resolves
 * { skip: reason }, printed loudly on stderr. Any other failure throws: a client that was fetched
 * and does not run is a failure.
 */
export async function npxFetch(packages, bin, { versionArgs = ['--version'], node22 = false } = {}) {
  if (node22 && process.env.OBX_SKIP_NODE22 === '1') {
    return { skip: loudSkip(`OBX_SKIP_NODE22=1: ${packages.join(' ')} needs Node 22 from npx`) };
  }
  const r = await run('npx', npxArgs(packages, 'sh', ['-c', 'printf "%s\\n" "$PATH"']), { timeoutMs: 900_000 });
  if (r.status !== 0) {
    const npmError = r.stderr.split('\n').find((l) => FETCH_FAILURE.test(l));
    if (npmError) return { skip: loudSkip(`npx cannot fetch ${packages.join(' ')}: ${npmError.trim()}`) };
    throw new Error(`npx could not set up ${packages.join(' ')}:\n${r.report}`);
  }
  const PATH = r.stdout.trim();
  const dir = PATH.split(':').find((d) => existsSync(path.join(d, bin)));
  assert.ok(dir, `npx fetched ${packages.join(' ')} but its PATH has no ${bin}: ${PATH}`);
  const env = { PATH };
  const v = await run(path.join(dir, bin), versionArgs, { env });
  assert.equal(v.status, 0, `${bin} was fetched but does not run:\n${v.report}`);
  return { skip: false, bin: path.join(dir, bin), env, version: v.stdout.trim() };
}

function loudSkip(reason) {
  process.stderr.write(`\n${'*'.repeat(100)}\n*** SKIPPED: ${reason}\n${'*'.repeat(100)}\n\n`);
  return reason;
}

/** What a client printed, as diagnostics of test t: one line each, so any reporter shows it. */
export function note(t, label, text) {
  t.diagnostic(`${label}:`);
  const lines = text.trim() === '' ? ['(nothing)'] : text.trim().split('\n');
  for (const l of lines) t.diagnostic(`    ${l}`);
}

/** The same text indented under a label, for a failure message. */
export function printed(label, text) {
  return `${label}:\n${(text.trim() || '(nothing)')
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n')}`;
}

export { BIN };
