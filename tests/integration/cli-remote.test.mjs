// SPDX-License-Identifier: Apache-2.0
// The remote CLI: `onlyboxes exec | python | call --console URL --token T` against the real console
// with its embedded worker (a fresh database on a free loopback port), as a user runs them: output,
// exit statuses, a terminal session that outlives one invocation, clear errors for a bad token and
// an unreachable console, Ctrl-C canceling the remote task, the environment variables, HTTPS with
// a private CA, and the token never showing in anything printed.

import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BIN, assertNoProcess, assertNoSanitizerReport, describeRun, runCli, sleepMarker, waitForProcess } from './lib.mjs';
import { Console, call, login } from './console-lib.mjs';

const RUNTIME = process.env.ONLYBOXES_RUNTIME || 'bubblewrap';
const ADMIN = 'cli-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2);
const dir = mkdtempSync(path.join(tmpdir(), 'obx-cli-remote-'));
const consoleEnv = (name) => ({
  CONSOLE_DB_PATH: path.join(dir, `${name}.db`),
  CONSOLE_HASH_KEY: 'cli-remote-key-' + process.pid,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  ONLYBOXES_RUNTIME: RUNTIME,
});
// Nothing from the environment of whoever runs the tests decides local or remote here.
const CLEAN = { ONLYBOXES_CONSOLE: '', ONLYBOXES_TOKEN: '', ONLYBOXES_CA_FILE: '', ONLYBOXES_RUNTIME: RUNTIME };

after(() => rmSync(dir, { recursive: true, force: true }));

/** Starts a console with its worker and makes an API token; resolves {con, token, ca?}. */
async function consoleWithToken(name, extraEnv = {}, ca) {
  const con = await new Console({ ...consoleEnv(name), ...extraEnv }, ['--with-worker']).start();
  const cookie = await login(con.base, ADMIN, ADMIN_PW, { ca });
  const t = await call(con.base, 'POST', '/api/v1/console/tokens', { ca, cookie, body: { name: 'cli' } });
  assert.equal(t.status, 201, t.text);
  return { con, token: t.body.token };
}

/** A loopback port nothing listens on. */
async function closedPort() {
  const srv = createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

describe('remote CLI over HTTP', () => {
  let con, token, remote, printed;
  const runs = [];

  /** runCli with the console and token in flags (or env, with { via: 'env' }). */
  function run(args, { via = 'flags', env = {}, input } = {}) {
    const [cmd, ...rest] = args;
    const flags = via === 'flags' ? ['--console', con.base, '--token', token] : [];
    const vars = via === 'env' ? { ONLYBOXES_CONSOLE: con.base, ONLYBOXES_TOKEN: token } : {};
    const r = runCli([cmd, ...flags, ...rest], { input, env: { ...CLEAN, ...vars, ...env } });
    runs.push(r);
    return r;
  }

  before(async () => {
    ({ con, token } = await consoleWithToken('http'));
    remote = (path) => call(con.base, 'GET', path, { headers: { authorization: `Bearer ${token}` } });
    printed = () => runs.map((r) => r.stdout + r.stderr).join('\n');
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('exec passes stdout, stderr and the exit status through', () => {
    const r = run(['exec', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(r.status, 7, describeRun(r));
    assert.equal(r.stdout, 'out\n', describeRun(r));
    assert.equal(r.stderr, 'err\n', describeRun(r));
    const ok = run(['exec', '--', 'sh', '-c', 'pwd; cat /proc/net/dev | tail -n +3 | cut -d: -f1']);
    assert.equal(ok.status, 0, describeRun(ok));
    assert.deepEqual(ok.stdout.split('\n').map((s) => s.trim()).filter(Boolean), ['/workspace', 'lo'], describeRun(ok));
  });

  test('python: -c, stdin and a file, with the exit status and stderr', () => {
    const c = run(['python', '-c', 'import sys; print(6*7); print("bad", file=sys.stderr); sys.exit(4)']);
    assert.deepEqual([c.status, c.stdout, c.stderr], [4, '42\n', 'bad\n'], describeRun(c));
    const s = run(['python', '-'], { input: 'print("from stdin")\n' });
    assert.deepEqual([s.status, s.stdout], [0, 'from stdin\n'], describeRun(s));
    const file = path.join(dir, 'prog.py');
    writeFileSync(file, 'print(sum(range(10)))\n');
    const f = run(['python', file]);
    assert.deepEqual([f.status, f.stdout], [0, '45\n'], describeRun(f));
  });

  test('a timeout kills the remote program and exits 124', () => {
    const r = run(['python', '--timeout-ms', '500', '-c', 'import time; time.sleep(30)']);
    assert.equal(r.status, 124, describeRun(r));
    assert.match(r.stderr, /timed out after 500 ms/, describeRun(r));
  });

  test('call prints exactly what the local call prints, with the same exit status', () => {
    const cases = [
      ['echo', '{"message":"hi there"}'],
      ['pythonExec', '{"code":"print(1); import sys; print(2, file=sys.stderr)"}'],
      ['echo', '{"message":"  "}'],
      ['terminalExec', '{"command":"echo x","session_id":"never-made"}'],
    ];
    for (const [tool, json] of cases) {
      const local = runCli(['call', tool, json], { env: CLEAN });
      const r = run(['call', tool, json]);
      assert.equal(r.status, local.status, `${tool}: ${describeRun(r)}`);
      assert.equal(r.stdout, local.stdout, `${tool}: ${describeRun(r)}`);
      assert.ok(r.stdout.length > 0 && JSON.parse(r.stdout), describeRun(r));
    }
    const t = run(['call', 'terminalExec', '{"command":"echo hi; exit 3"}']);
    assert.equal(t.status, 0, describeRun(t));
    const out = JSON.parse(t.stdout).structuredContent;
    assert.deepEqual([out.stdout, out.exit_code], ['hi\n', 3], describeRun(t));
  });

  test('a session keeps cd and export across separate exec invocations', () => {
    const s = 'dev-' + process.pid;
    for (const cmd of [['cd', '/tmp'], ['export', 'GREETING=hello remote']]) {
      const r = run(['exec', '--session', s, '--', ...cmd]);
      assert.equal(r.status, 0, describeRun(r));
    }
    const r = run(['exec', '--session', s, '--', 'sh', '-c', 'pwd; echo "$GREETING"']);
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stdout, '/tmp\nhello remote\n', describeRun(r));
    // Another session starts fresh.
    const other = run(['exec', '--session', s + '-b', '--', 'sh', '-c', 'pwd; echo "[$GREETING]"']);
    assert.equal(other.stdout, '/workspace\n[]\n', describeRun(other));
    // call reaches the same session.
    const c = run(['call', 'terminalExec', JSON.stringify({ command: 'pwd', session_id: s })]);
    assert.equal(JSON.parse(c.stdout).structuredContent.stdout, '/tmp\n', describeRun(c));
  });

  test('the environment variables work, and a flag wins over them', () => {
    const r = run(['exec', '--', 'echo', 'via env'], { via: 'env' });
    assert.deepEqual([r.status, r.stdout], [0, 'via env\n'], describeRun(r));
    const p = run(['python', '-c', 'print("py via env")'], { via: 'env' });
    assert.deepEqual([p.status, p.stdout], [0, 'py via env\n'], describeRun(p));
    const c = run(['call', 'echo', '{"message":"call via env"}'], { via: 'env' });
    assert.equal(JSON.parse(c.stdout).structuredContent.message, 'call via env', describeRun(c));
    // Wrong values in the environment; the flags are right and win.
    const w = run(['exec', '--console', con.base, '--token', token, '--', 'echo', 'flags win'], {
      via: 'none',
      env: { ONLYBOXES_CONSOLE: 'http://127.0.0.1:1', ONLYBOXES_TOKEN: 'obx_wrong' },
    });
    assert.deepEqual([w.status, w.stdout], [0, 'flags win\n'], describeRun(w));
  });

  test('a bad token is a clear one-line error naming the console, never the token', () => {
    const bad = 'obx_' + 'f'.repeat(64);
    for (const args of [['exec', '--', 'true'], ['python', '-c', 'print(1)'], ['call', 'echo', '{"message":"x"}']]) {
      const r = run(args, { via: 'none', env: { ONLYBOXES_CONSOLE: con.base, ONLYBOXES_TOKEN: bad } });
      assert.notEqual(r.status, 0, describeRun(r));
      assert.equal(r.stdout, '', describeRun(r));
      assert.equal(r.stderr.trim().split('\n').length, 1, describeRun(r));
      assert.ok(r.stderr.includes(con.base), describeRun(r));
      assert.match(r.stderr, /refused the token/, describeRun(r));
      assert.ok(!r.stderr.includes(bad), 'the token was printed');
    }
    const none = run(['exec', '--', 'true'], { via: 'none', env: { ONLYBOXES_CONSOLE: con.base } });
    assert.notEqual(none.status, 0, describeRun(none));
    assert.match(none.stderr, /no token for the console at .*ONLYBOXES_TOKEN/, describeRun(none));
  });

  test('an unreachable console is a clear one-line error naming its URL', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    for (const args of [['exec', '--', 'true'], ['call', 'echo', '{"message":"x"}']]) {
      const r = run(args, { via: 'none', env: { ONLYBOXES_CONSOLE: url, ONLYBOXES_TOKEN: token } });
      assert.equal(r.status, 125, describeRun(r));
      assert.equal(r.stderr.trim().split('\n').length, 1, describeRun(r));
      assert.ok(r.stderr.includes(`cannot reach the console at ${url}`), describeRun(r));
    }
    const bad = run(['exec', '--console', 'ftp://example.com', '--', 'true'], { via: 'none', env: { ONLYBOXES_TOKEN: token } });
    assert.notEqual(bad.status, 0, describeRun(bad));
    assert.match(bad.stderr, /expected http:\/\/HOST/, describeRun(bad));
  });

  test('--runtime belongs to local mode and is refused with a console', () => {
    const r = run(['exec', '--runtime', 'bubblewrap', '--', 'true']);
    assert.notEqual(r.status, 0, describeRun(r));
    assert.match(r.stderr, /--runtime .* cannot be used with a console/, describeRun(r));
  });

  // The marker is split with "" so that only the sleep in the box carries it, not our own argv.
  const split = (secs) => `sleep ${secs.slice(0, 6)}""${secs.slice(6)}`;
  for (const [name, argv] of [
    ['exec', (secs) => ['exec', '--', 'sh', '-c', split(secs)]],
    ['call', (secs) => ['call', 'terminalExec', JSON.stringify({ command: split(secs) })]],
  ]) {
    test(`Ctrl-C cancels the remote task (${name}): it ends canceled, its process is gone, exit 130`, async () => {
      const secs = sleepMarker();
      const [cmd, ...rest] = argv(secs);
      const child = spawn(BIN, [cmd, '--console', con.base, '--token', token, ...rest], {
        env: { ...process.env, ...CLEAN },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '',
        stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
      try {
        assert.notDeepEqual(await waitForProcess(secs, 20000), [], `the command never started: ${stderr}`);
        child.kill('SIGINT');
        const { code, sig } = await exited;
        runs.push({ stdout, stderr });
        assertNoSanitizerReport(stderr, `onlyboxes ${cmd}`);
        assert.deepEqual([code, sig], [130, null], stderr);
        const m = /task ([0-9a-f-]{36}) was canceled on the console at ([^\s"]+)/.exec(stdout + stderr);
        assert.ok(m, `no task id in the output: ${stdout}${stderr}`);
        assert.equal(m[2], con.base);
        const t = await remote(`/api/v1/tasks/${m[1]}`);
        assert.equal(t.status, 200, t.text);
        assert.equal(t.body.status, 'canceled', t.text);
        await assertNoProcess(secs, 5000, 'the canceled command still runs');
      } finally {
        child.kill('SIGKILL');
      }
    });
  }

  test('--help documents the remote options', () => {
    for (const cmd of ['exec', 'python', 'call']) {
      const r = runCli([cmd, '--help'], { env: CLEAN });
      assert.equal(r.status, 0, describeRun(r));
      for (const word of ['--console URL', '--token', 'ONLYBOXES_CONSOLE', 'ONLYBOXES_TOKEN', '--ca-file', '--timeout-ms'])
        assert.ok(r.stdout.includes(word), `${cmd} --help lacks ${word}`);
    }
  });

  test('the token never shows in anything printed, even with debug logging', () => {
    run(['exec', '--', 'true'], { env: { ONLYBOXES_LOG_LEVEL: 'debug' } });
    run(['call', 'echo', '{"message":"x"}'], { via: 'env', env: { ONLYBOXES_LOG_LEVEL: 'debug' } });
    assert.ok(runs.length > 20, 'the other tests ran first');
    assert.ok(!printed().includes(token), 'the token was printed');
    assert.ok(!printed().includes(token.slice(4, 40)), 'part of the token was printed');
  });
});

describe('remote CLI over HTTPS with a private CA', () => {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  let con, token;
  before(async () => {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
    ({ con, token } = await consoleWithToken('https', { CONSOLE_TLS_CERT_FILE: cert, CONSOLE_TLS_KEY_FILE: key }, readFileSync(cert)));
    assert.ok(con.base.startsWith('https://'), con.base);
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('--ca-file or ONLYBOXES_CA_FILE trusts the console; without it the error says why', () => {
    const env = { ...CLEAN, ONLYBOXES_CONSOLE: con.base, ONLYBOXES_TOKEN: token };
    const flag = runCli(['exec', '--ca-file', cert, '--', 'echo', 'over tls'], { env });
    assert.deepEqual([flag.status, flag.stdout], [0, 'over tls\n'], describeRun(flag));
    const viaEnv = runCli(['python', '-c', 'print("tls env")'], { env: { ...env, ONLYBOXES_CA_FILE: cert } });
    assert.deepEqual([viaEnv.status, viaEnv.stdout], [0, 'tls env\n'], describeRun(viaEnv));
    const untrusted = runCli(['exec', '--', 'true'], { env });
    assert.equal(untrusted.status, 125, describeRun(untrusted));
    assert.ok(untrusted.stderr.includes(`cannot reach the console at ${con.base}`), describeRun(untrusted));
    assert.match(untrusted.stderr, /certificate/i, describeRun(untrusted));
    for (const r of [flag, viaEnv, untrusted]) assert.ok(!(r.stdout + r.stderr).includes(token));
  });
});
