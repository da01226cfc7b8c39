// SPDX-License-Identifier: Apache-2.0
// Black-box tests of the console's built-in TLS: a self-signed certificate made here with the
// openssl CLI, the real binary serving HTTPS only on its port, a client that trusts exactly that
// certificate. Checks what a user would: login works over HTTPS, the cookie is Secure, a plaintext
// client gets a 400 naming its mistake, an untrusting one is refused, the SDK's MCP client works
// on /mcp with progress over SSE, and a bad TLS configuration stops startup with a message that
// names the variable and the file.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Console, call, login, sessionCookie, startFailure } from './console-lib.mjs';

const ADMIN = 'tls-admin';
const ADMIN_PW = 'Adm1n-' + Math.random().toString(16).slice(2) + '-pw';
const dir = mkdtempSync(path.join(tmpdir(), 'obx-console-tls-'));
const cert = path.join(dir, 'cert.pem');
const key = path.join(dir, 'key.pem');
const env = {
  CONSOLE_DB_PATH: path.join(dir, 'console.db'),
  CONSOLE_HASH_KEY: 'tls-hash-key-' + process.pid,
  CONSOLE_DASHBOARD_USERNAME: ADMIN,
  CONSOLE_DASHBOARD_PASSWORD: ADMIN_PW,
  CONSOLE_TLS_CERT_FILE: cert,
  CONSOLE_TLS_KEY_FILE: key,
};

function selfSigned(certFile, keyFile) {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
}

before(() => selfSigned(cert, key));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('console over HTTPS', () => {
  let con, ca;
  before(async () => {
    ca = readFileSync(cert);
    con = await new Console(env).start();
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('the startup line says https and the port speaks TLS', async () => {
    assert.match(con.stderr, /listening on https:\/\/127\.0\.0\.1:\d+/);
    assert.ok(con.base.startsWith('https://'));
    const r = await call(con.base, 'GET', '/api/v1/console/session', { ca });
    assert.deepEqual([r.status, r.body], [401, { error: 'authentication required' }]);
  });

  test('login over HTTPS sets a Secure cookie that works', async () => {
    const r = await call(con.base, 'POST', '/api/v1/console/login', { ca, body: { username: ADMIN, password: ADMIN_PW } });
    assert.equal(r.status, 200, r.text);
    const { value, header } = sessionCookie(r);
    for (const attr of ['Secure', 'HttpOnly', 'SameSite=Strict', 'Path=/']) assert.ok(header.includes(attr), header);
    const s = await call(con.base, 'GET', '/api/v1/console/session', { ca, cookie: value });
    assert.equal(s.status, 200);
    assert.equal(s.body.account.username, ADMIN);
    const w = await call(con.base, 'POST', '/api/v1/workers', { ca, cookie: value, body: { type: 'normal' } });
    assert.equal(w.status, 201);
    const out = await call(con.base, 'POST', '/api/v1/console/logout', { ca, cookie: value });
    assert.equal(out.status, 204);
    assert.match(out.headers.getSetCookie()[0], /Max-Age=0;.*Secure/);
  });

  test('plaintext HTTP to the TLS port gets a 400 that says so, and is never served', async () => {
    const plain = con.base.replace('https://', 'http://');
    for (const [method, route, opts] of [
      ['GET', '/api/v1/console/session', {}],
      ['POST', '/api/v1/console/login', { body: { username: ADMIN, password: ADMIN_PW } }],
    ]) {
      const r = await call(plain, method, route, opts);
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(r.body, { error: 'this port speaks HTTPS: the request was sent as plain HTTP' });
      assert.equal(r.headers.get('set-cookie'), null, 'a plaintext login must not sign in');
    }
    // Still serving HTTPS afterwards.
    assert.equal((await call(con.base, 'GET', '/api/v1/console/session', { ca })).status, 401);
  });

  test('a client that does not trust the certificate is refused', async () => {
    await assert.rejects(call(con.base, 'GET', '/api/v1/console/session'), /self[- ]signed|certificate/i);
  });

  test('the session survives a restart over HTTPS', async () => {
    const c = await login(con.base, ADMIN, ADMIN_PW, { ca });
    assert.equal((await con.stop()).code, 0);
    con = await new Console(env).start();
    assert.equal((await call(con.base, 'GET', '/api/v1/console/session', { ca, cookie: c })).status, 200);
  });
});

describe('TLS configuration errors stop startup', () => {
  test('a missing key file is named', async () => {
    const missing = path.join(dir, 'no-such-key.pem');
    const r = await startFailure({ ...env, CONSOLE_TLS_KEY_FILE: missing });
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(`CONSOLE_TLS_KEY_FILE=${missing}: cannot read`), r.stderr);
    assert.ok(!/listening on/.test(r.stderr));
  });

  test('one file without the other', async () => {
    const onlyCert = await startFailure({ ...env, CONSOLE_TLS_KEY_FILE: '' });
    assert.notEqual(onlyCert.code, 0);
    assert.match(onlyCert.stderr, /CONSOLE_TLS_CERT_FILE is set but CONSOLE_TLS_KEY_FILE is not/);
    const onlyKey = await startFailure({ ...env, CONSOLE_TLS_CERT_FILE: '' });
    assert.notEqual(onlyKey.code, 0);
    assert.match(onlyKey.stderr, /CONSOLE_TLS_KEY_FILE is set but CONSOLE_TLS_CERT_FILE is not/);
  });

  test('a file that is not a certificate, or a key that does not match', async () => {
    const junk = path.join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    const r = await startFailure({ ...env, CONSOLE_TLS_CERT_FILE: junk });
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(`CONSOLE_TLS_CERT_FILE=${junk}: not a PEM file`), r.stderr);
    const swapped = await startFailure({ ...env, CONSOLE_TLS_CERT_FILE: key, CONSOLE_TLS_KEY_FILE: cert });
    assert.notEqual(swapped.code, 0);
    assert.match(swapped.stderr, /CONSOLE_TLS_CERT_FILE=.*not a PEM file with a CERTIFICATE/);

    const otherCert = path.join(dir, 'other-cert.pem');
    const otherKey = path.join(dir, 'other-key.pem');
    selfSigned(otherCert, otherKey);
    const mismatch = await startFailure({ ...env, CONSOLE_TLS_KEY_FILE: otherKey });
    assert.notEqual(mismatch.code, 0);
    assert.match(mismatch.stderr, /CONSOLE_TLS_CERT_FILE=.*CONSOLE_TLS_KEY_FILE=.*other-key\.pem: TLS setup failed/);
  });
});

// The SDK's client speaks through fetch, which trusts extra certificates only from
// NODE_EXTRA_CA_CERTS at startup: this child process is such a client. It prints one JSON line.
const SDK_CLIENT = `
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
const [url, token] = process.argv.slice(-2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: 'Bearer ' + token } },
});
const client = new Client({ name: 'obx-tls-test', version: '0.0.0' }, { capabilities: {} });
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name);
const progress = [];
const r = await client.callTool(
  { name: 'terminalExec', arguments: { command: 'for i in 1 2 3; do echo line$i; sleep 0.3; done' } },
  CallToolResultSchema,
  { onprogress: (p) => progress.push({ message: p.message, at: Date.now() }), timeout: 60000 },
);
const done = Date.now();
await transport.terminateSession();
await client.close();
console.log(JSON.stringify({ tools, stdout: r.structuredContent.stdout, progress, done }));
`;

describe('MCP over HTTPS', () => {
  let con, ca;
  before(async () => {
    ca = readFileSync(cert);
    con = await new Console({
      ...env,
      CONSOLE_DB_PATH: path.join(dir, 'mcp.db'),
      ONLYBOXES_RUNTIME: process.env.ONLYBOXES_RUNTIME || 'bubblewrap',
    }, ['--with-worker']).start();
  });
  after(async () => {
    if (con) await con.stop();
  });

  test('the SDK client calls a tool on /mcp and gets its progress over SSE through TLS', async () => {
    const cookie = await login(con.base, ADMIN, ADMIN_PW, { ca });
    const t = await call(con.base, 'POST', '/api/v1/console/tokens', { ca, cookie, body: { name: 'tls-mcp' } });
    assert.equal(t.status, 201, t.text);
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', SDK_CLIENT, '--', con.base + '/mcp', t.body.token], {
      cwd: path.dirname(new URL(import.meta.url).pathname),
      env: { ...process.env, NODE_EXTRA_CA_CERTS: cert },
      encoding: 'utf8',
      timeout: 60000,
    });
    const r = JSON.parse(out.trim().split('\n').pop());
    assert.ok(r.tools.includes('terminalExec'), r.tools.join(','));
    assert.equal(r.stdout, 'line1\nline2\nline3\n');
    assert.ok(r.progress.length >= 2, JSON.stringify(r.progress));
    assert.match(r.progress[0].message, /line1/);
    assert.ok(r.done - r.progress[0].at >= 300, 'the first chunk must arrive while the command still runs');
  });
});
