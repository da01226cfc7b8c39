// SPDX-License-Identifier: Apache-2.0
// Network "allowlist": a box reaches exactly the hosts of ONLYBOXES_EGRESS_ALLOW through the
// worker's egress proxy, with the clients people use (curl, Python's urllib, pip) and nothing
// configured in the box. There is no outside network here, so the destinations are an HTTP and an
// HTTPS server (a self-signed certificate for pypi.test) on this test's loopback, and the test-only
// ONLYBOXES_EGRESS_TEST_RESOLVE points names under .test at them. What must stay out of reach is
// tried too: a name off the list, an IP address, names that resolve to forbidden addresses, a port
// not listed, a DNS query and a direct connection; the servers count every connection they get.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, marker, serverTest, sharedServer, startServer } from './lib.mjs';

const PROXY = 'http://127.0.0.1:3128';

/* ---- the destinations, on this test's loopback ---- */

const dir = mkdtempSync(path.join(os.tmpdir(), 'obx-egress-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function makeCert() {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  const r = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key,
      '-out', cert, '-days', '2', '-subj', '/CN=pypi.test', '-addext', 'subjectAltName=DNS:pypi.test'],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, `openssl could not make a certificate: ${r.stderr}`);
  return { key: readFileSync(key), cert: readFileSync(cert, 'utf8') };
}

/** A wheel pip can install: obx_probe with VALUE = 42. Built with the host's Python. */
function makeWheel() {
  const file = path.join(dir, 'obx_probe-1.0-py3-none-any.whl');
  const py = [
    'import base64, hashlib, sys, zipfile',
    'files = {',
    '  "obx_probe/__init__.py": "VALUE = 42\\n",',
    '  "obx_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: obx-probe\\nVersion: 1.0\\n",',
    '  "obx_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: obx\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",',
    '}',
    'def digest(b): return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()',
    'record = "".join(f"{n},{digest(c.encode())},{len(c.encode())}\\n" for n, c in files.items())',
    'record += "obx_probe-1.0.dist-info/RECORD,,\\n"',
    'with zipfile.ZipFile(sys.argv[1], "w") as z:',
    '    for n, c in files.items(): z.writestr(n, c)',
    '    z.writestr("obx_probe-1.0.dist-info/RECORD", record)',
  ].join('\n');
  const r = spawnSync('python3', ['-', file], { input: py, encoding: 'utf8' });
  assert.equal(r.status, 0, `could not build a wheel: ${r.stderr}`);
  return readFileSync(file);
}

const tls = makeCert();
const wheel = makeWheel();
const wheelSha = createHash('sha256').update(wheel).digest('hex');
const seen = { http: 0, https: 0 };

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const plain = http.createServer((req, res) => {
  if (req.url === '/big') {
    res.end(Buffer.alloc(3 << 20, 'x'));
    return;
  }
  res.end(`hello from plain.test ${req.method} ${req.url} host=${req.headers.host}\n`);
});
plain.on('connection', () => seen.http++);
const pypi = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
  if (req.url === '/simple/obx-probe/') {
    res.setHeader('Content-Type', 'text/html');
    res.end(
      '<!DOCTYPE html><html><body>' +
        `<a href="/packages/obx_probe-1.0-py3-none-any.whl#sha256=${wheelSha}">obx_probe-1.0-py3-none-any.whl</a>` +
        '</body></html>\n',
    );
  } else if (req.url === '/packages/obx_probe-1.0-py3-none-any.whl') {
    res.setHeader('Content-Type', 'application/octet-stream');
    res.end(wheel);
  } else if (req.url.startsWith('/simple')) {
    res.statusCode = 404;
    res.end('not found\n');
  } else {
    res.end('hello from pypi.test over TLS\n');
  }
});
pypi.on('connection', () => seen.https++);
const plainPort = await listen(plain);
const pypiPort = await listen(pypi);
after(() => {
  plain.closeAllConnections?.();
  pypi.closeAllConnections?.();
  plain.close();
  pypi.close();
});

/** A non-loopback IPv4 address of this host, or null. */
const hostAddr =
  Object.values(os.networkInterfaces())
    .flat()
    .find((a) => a.family === 'IPv4' && !a.internal)?.address ?? null;

function egressEnv(extra = {}) {
  const pins = [`plain.test=127.0.0.1:${plainPort}`, `pypi.test=127.0.0.1:${pypiPort}`, 'meta.test=169.254.169.254'];
  if (hostAddr) pins.push(`self.test=${hostAddr}:${plainPort}`);
  return {
    ONLYBOXES_EGRESS_ALLOW: 'plain.test,pypi.test,meta.test,self.test',
    ONLYBOXES_EGRESS_TEST_RESOLVE: pins.join(','),
    ...extra,
  };
}

// Full network allowed too, so that a session's network can be asked for the other way round.
const server = sharedServer({ env: egressEnv({ ONLYBOXES_ALLOW_NETWORK: 'true' }) });

/** A new allowlist session with the test's certificate at /workspace/ca.pem; its id. */
async function allowlistSession(srv) {
  const r = await srv.sh(`cat > /workspace/ca.pem <<'OBX_PEM'\n${tls.cert}OBX_PEM\necho ok`, {
    network: 'allowlist',
  });
  assert.equal(r.stdout, 'ok\n', JSON.stringify(r));
  return r.session_id;
}

/** Python code run in a session through a quoted here-document. */
function py(srv, session_id, code, extra = {}) {
  return srv.sh(`python3 - <<'OBX_PY_END'\n${code}\nOBX_PY_END`, { session_id, ...extra });
}

function describeRun(r) {
  return JSON.stringify(r).slice(0, 2000);
}

/** Runs the CLI without blocking this process, whose servers must keep answering. */
function runCli(args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('network "allowlist": allowed hosts', () => {
  serverTest('the box has only loopback, and the proxy settings every client reads', { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const r = await srv.sh('cat /proc/net/dev; env | grep -i _proxy= | sort', { session_id: s });
    const ifaces = r.stdout
      .split('\n')
      .filter((l) => l.includes(':') && !l.includes('='))
      .map((l) => l.split(':')[0].trim());
    assert.deepEqual(ifaces, ['lo'], r.stdout);
    for (const v of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) {
      assert.ok(r.stdout.includes(`${v}=${PROXY}\n`), `${v} missing: ${r.stdout}`);
    }
    assert.match(r.stdout, /^no_proxy=localhost,127\.0\.0\.1,::1$/m);
  });

  serverTest('curl reaches an allowed name over HTTP and HTTPS (CONNECT)', { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const before = { ...seen };
    const r = await srv.sh(
      'curl -sS http://plain.test/simple/; curl -sS --cacert /workspace/ca.pem https://pypi.test/',
      { session_id: s },
    );
    assert.equal(r.exit_code, 0, describeRun(r));
    // The destination saw the Host of the URL it was checked against.
    assert.equal(r.stdout, 'hello from plain.test GET /simple/ host=plain.test\nhello from pypi.test over TLS\n');
    assert.equal(seen.http, before.http + 1);
    assert.equal(seen.https, before.https + 1);
    // More than every buffer on the way holds, byte for byte.
    const big = await srv.sh('curl -sS http://plain.test/big | sha256sum', { session_id: s });
    const want = createHash('sha256').update(Buffer.alloc(3 << 20, 'x')).digest('hex');
    assert.equal(big.stdout, `${want}  -\n`, describeRun(big));
  });

  serverTest("Python's urllib works unchanged, in a session and in pythonExec", { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const code = [
      'import ssl, urllib.request',
      'print(urllib.request.urlopen("http://plain.test/x", timeout=10).read().decode(), end="")',
      'ctx = ssl.create_default_context(cafile="/workspace/ca.pem")',
      'print(urllib.request.urlopen("https://pypi.test/", timeout=10, context=ctx).read().decode(), end="")',
    ].join('\n');
    const r = await py(srv, s, code);
    assert.equal(r.stdout, 'hello from plain.test GET /x host=plain.test\nhello from pypi.test over TLS\n', describeRun(r));
    const p = await srv.ok('pythonExec', {
      code: 'import urllib.request\nprint(urllib.request.urlopen("http://plain.test/py").read().decode(), end="")',
      network: 'allowlist',
    });
    assert.equal(p.output, 'hello from plain.test GET /py host=plain.test\n', JSON.stringify(p));
  });

  serverTest('pip downloads and installs a package from an index behind HTTPS', { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const pip =
      'python3 -m pip --disable-pip-version-check --no-cache-dir --cert /workspace/ca.pem';
    const r = await srv.sh(
      `${pip} download --no-deps --index-url https://pypi.test/simple/ -d /workspace/dl obx-probe && ls /workspace/dl && ` +
        `${pip} install --no-deps --index-url https://pypi.test/simple/ --target /workspace/lib obx-probe >/dev/null && ` +
        `PYTHONPATH=/workspace/lib python3 -c 'import obx_probe; print(obx_probe.VALUE)'`,
      { session_id: s, timeout_ms: 120_000 },
    );
    assert.equal(r.exit_code, 0, describeRun(r));
    assert.match(r.stdout, /obx_probe-1\.0-py3-none-any\.whl\n/);
    assert.match(r.stdout, /^42$/m);
  });
});

describe('pip install into the user site', () => {
  /** Code that installs obx-probe with pip as a user would, then imports it. */
  function pipCode() {
    return [
      'import subprocess, sys',
      `open("/workspace/ca.pem", "w").write(${JSON.stringify(tls.cert)})`,
      'r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--no-deps",',
      '    "--cert", "/workspace/ca.pem", "--index-url", "https://pypi.test/simple/", "obx-probe"],',
      '    capture_output=True, text=True)',
      'print(r.returncode, r.stdout[-300:] + r.stderr[-1500:] if r.returncode else "")',
    ].join('\n');
  }

  serverTest('pythonExec: pip install, then import in the same call, from ~/.local', { server }, async (srv) => {
    const code = `${pipCode()}\nimport obx_probe, site\nprint(obx_probe.VALUE, obx_probe.__file__.startswith(site.getusersitepackages()), site.getusersitepackages())`;
    const r = await srv.ok('pythonExec', { code, network: 'allowlist', timeout_ms: 120_000 });
    assert.match(r.output, /^0 \n42 True \/workspace\/\.local\/lib\/python3\.\d+\/site-packages\n$/, JSON.stringify(r));
  });

  serverTest('a Python session: pip install in one call, import in the next', { server }, async (srv) => {
    const session_id = marker('pip');
    const a = await srv.ok('pythonExec', { code: pipCode(), session_id, create_if_missing: true, network: 'allowlist', timeout_ms: 120_000 });
    assert.equal(a.output, '0 \n', JSON.stringify(a));
    const b = await srv.ok('pythonExec', { code: 'import obx_probe\nobx_probe.VALUE', session_id });
    assert.equal(b.result, '42', JSON.stringify(b));
    // The same package for the session's terminal, and gone with the box.
    const t = await srv.sh('python3 -c "import obx_probe; print(obx_probe.VALUE)"', { session_id });
    assert.equal(t.stdout, '42\n', JSON.stringify(t));
  });
});

describe('network "allowlist": everything else is refused', () => {
  serverTest('a name off the list: 403 with the reason, logged with the session', { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const r = await srv.sh('curl -sS http://evil.test/; curl -sS https://evil.test/ 2>&1; echo rc=$?', {
      session_id: s,
    });
    assert.match(r.stdout, /^egress to evil\.test is not allowed \(ONLYBOXES_EGRESS_ALLOW\)$/m, describeRun(r));
    assert.match(r.stdout, /CONNECT tunnel failed, response 403/, describeRun(r));
    const u = await py(
      srv,
      s,
      'import urllib.request\ntry:\n    urllib.request.urlopen("https://evil.test/", timeout=10)\nexcept Exception as e:\n    print(e)',
    );
    assert.match(u.stdout, /Tunnel connection failed: 403 egress to evil\.test is not allowed \(ONLYBOXES_EGRESS_ALLOW\)/);
    assert.match(srv.stderr, new RegExp(`egress: session ${s}: refused GET evil\\.test:80: 403 egress to evil\\.test is not allowed`));
    assert.match(srv.stderr, new RegExp(`egress: session ${s}: refused CONNECT evil\\.test:443`));
  });

  serverTest("IP addresses, the host's loopback among them", { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const before = { ...seen };
    // --noproxy '' sends even loopback through the proxy: what an attacker would do.
    const r = await srv.sh(
      `curl -sS --noproxy '' -x ${PROXY} http://127.0.0.1:${plainPort}/; ` +
        `curl -sS --noproxy '' -x ${PROXY} http://[::1]:${plainPort}/; ` +
        `curl -sS -p --noproxy '' -x ${PROXY} http://127.0.0.1:${pypiPort}/ 2>&1`,
      { session_id: s },
    );
    assert.match(r.stdout, /^egress to 127\.0\.0\.1 is not allowed: an IP address/m, describeRun(r));
    assert.match(r.stdout, /^egress to ::1 is not allowed: an IP address/m, describeRun(r));
    assert.match(r.stdout, /CONNECT tunnel failed, response 403/, describeRun(r));
    // Other spellings of an address, sent as is (curl would rewrite them first).
    const raw = [
      'import socket',
      `for req in ("GET http://2130706433:${plainPort}/ HTTP/1.1", "CONNECT 0x7f.1:${plainPort} HTTP/1.1"):`,
      '    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)',
      '    s.sendall(req.encode() + b"\\r\\n\\r\\n")',
      '    print(s.recv(4096).split(b"\\r\\n")[0].decode())',
    ].join('\n');
    const spelled = await py(srv, s, raw);
    assert.match(spelled.stdout, /^HTTP\/1\.1 403 egress to 2130706433 is not allowed: an IP address/m, describeRun(spelled));
    assert.match(spelled.stdout, /^HTTP\/1\.1 403 egress to 0x7f\.1 is not allowed: an IP address/m, describeRun(spelled));
    assert.deepEqual(seen, before, 'a test server was reached');
  });

  serverTest('names that resolve to forbidden addresses: metadata, this host', { server }, async (srv, t) => {
    const s = await allowlistSession(srv);
    const before = { ...seen };
    const r = await srv.sh('curl -sS http://meta.test/latest/meta-data/; curl -sS http://self.test/', { session_id: s });
    assert.match(
      r.stdout,
      /^egress to meta\.test is not allowed: it resolves to 169\.254\.169\.254, a cloud metadata address$/m,
      describeRun(r),
    );
    if (hostAddr) {
      assert.ok(
        r.stdout.includes(`egress to self.test is not allowed: it resolves to ${hostAddr}, an address of this host\n`),
        describeRun(r),
      );
    } else {
      t.diagnostic('this host has no non-loopback IPv4 address: self.test not tried');
    }
    assert.deepEqual(seen, before, 'a test server was reached');
  });

  serverTest('a port the list does not name', { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const r = await srv.sh('curl -sS --cacert /workspace/ca.pem https://pypi.test:22/ 2>&1; curl -sS http://plain.test:8080/', {
      session_id: s,
    });
    assert.match(r.stdout, /CONNECT tunnel failed, response 403/, describeRun(r));
    assert.match(r.stdout, /^egress to plain\.test port 8080 is not allowed: plain\.test is listed for ports 80, 443/m);
    assert.match(srv.stderr, /refused CONNECT pypi\.test:22: 403 egress to pypi\.test port 22 is not allowed/);
  });

  serverTest('no DNS and no direct connection out of the box', { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const before = { ...seen };
    const code = [
      'import socket',
      'def tcp(host, port):',
      '    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.settimeout(3)',
      '    try:',
      '        s.connect((host, port)); return "CONNECTED"',
      '    except Exception as e:',
      '        return f"BLOCKED {type(e).__name__}"',
      'def dns(server):',
      '    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)',
      '    q = bytes.fromhex("abcd01000001000000000000") + b"\\x05plain\\x04test\\x00\\x00\\x01\\x00\\x01"',
      '    try:',
      '        s.sendto(q, (server, 53)); s.recvfrom(512); return "ANSWERED"',
      '    except Exception as e:',
      '        return f"BLOCKED {type(e).__name__}"',
      `print("direct-loopback", tcp("127.0.0.1", ${plainPort}))`,
      'print("direct-internet", tcp("1.1.1.1", 443))',
      'print("dns", dns("1.1.1.1"))',
      'print("dns-local", dns("127.0.0.53"))',
      'try:',
      '    socket.getaddrinfo("plain.test", 80); print("resolve RESOLVED")',
      'except Exception as e:',
      '    print("resolve BLOCKED", type(e).__name__)',
    ].join('\n');
    const r = await py(srv, s, code);
    for (const what of ['direct-loopback', 'direct-internet', 'dns', 'dns-local', 'resolve']) {
      assert.match(r.stdout, new RegExp(`^${what} BLOCKED`, 'm'), describeRun(r));
    }
    if (hostAddr) {
      const h = await py(srv, s, `${code.split('\n').slice(0, 7).join('\n')}\nprint(tcp("${hostAddr}", ${plainPort}))`);
      assert.match(h.stdout, /^BLOCKED/m, describeRun(h));
    }
    assert.deepEqual(seen, before, 'a test server was reached');
  });
});

describe('network "allowlist": the relay in the box', () => {
  serverTest("comes back when the box's code kills it", { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const relay = 'pgrep -x egress-relay';
    const r = await srv.sh(
      `old=$(${relay}); kill -9 $old; for i in $(seq 50); do ` +
        `new=$(${relay}); [ -n "$new" ] && [ "$new" != "$old" ] && break; sleep 0.1; done; ` +
        'echo "old=$old new=$new"; curl -sS http://plain.test/after',
      { session_id: s },
    );
    const m = /old=(\d+) new=(\d+)/.exec(r.stdout);
    assert.ok(m && m[1] !== m[2], `the relay was not started again: ${describeRun(r)}`);
    assert.match(r.stdout, /hello from plain\.test GET \/after/, describeRun(r));
  });
});

describe('network "allowlist": asking for it', () => {
  serverTest('refused without an allow-list, naming the setting', async (srv) => {
    const p = await srv.fails('pythonExec', { code: 'print(1)', network: 'allowlist' });
    assert.match(p, /invalid_payload: network: "allowlist" needs an egress allow-list/);
    assert.match(p, /ONLYBOXES_EGRESS_ALLOW/);
    const t = await srv.fails('terminalExec', { command: 'true', network: 'allowlist' });
    assert.match(t, /ONLYBOXES_EGRESS_ALLOW/);
  });

  serverTest("a session keeps the network it started with", { server }, async (srv) => {
    const s = await allowlistSession(srv);
    const again = await srv.sh('curl -sS http://plain.test/again', { session_id: s });
    assert.match(again.stdout, /hello from plain\.test/, 'the session keeps its proxy');
    const full = await srv.fails('terminalExec', { command: 'true', session_id: s, network: true });
    assert.match(full, /session .* was started with network "allowlist"/);
    const plainSession = (await srv.sh('true')).session_id;
    const up = await srv.fails('terminalExec', { command: 'true', session_id: plainSession, network: 'allowlist' });
    assert.match(up, /was started without network access; .*start a new session with network "allowlist"/);
    const none = await srv.sh('env | grep -ci _proxy=; ls /.onlyboxes/', { session_id: plainSession });
    assert.match(none.stdout, /^0\n/, 'a box without the allow-list has no proxy settings');
    assert.doesNotMatch(none.stdout, /egress/);
  });

  const onDocker = (process.env.ONLYBOXES_RUNTIME || '').toLowerCase() === 'docker';
  test(
    'docker: refused where the daemon cannot bind the proxy socket',
    { skip: onDocker ? false : 'docker runtime only' },
    async () => {
      const r = await runCli(['exec', '--network', 'allowlist', '--', 'true'], egressEnv({ ONLYBOXES_DOCKER_DIRECT: 'false' }));
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /"allowlist" is not available with this Docker daemon \(on another host, or ONLYBOXES_DOCKER_DIRECT=false\)/);
    },
  );

  test('the CLI: --network allowlist, and a clear error for anything else', async () => {
    const env = egressEnv();
    const ok = await runCli(['exec', '--network', 'allowlist', '--', 'curl', '-sS', 'http://plain.test/cli'], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'hello from plain.test GET /cli host=plain.test\n');
    const no = await runCli(
      ['python', '--network', 'allowlist', '-c', 'import urllib.request as u; u.urlopen("http://evil.test/")'],
      env,
    );
    assert.notEqual(no.code, 0);
    assert.match(no.stderr, /egress to evil\.test is not allowed/);
    const bad = await runCli(['exec', '--network', 'maybe', '--', 'true'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--network maybe is invalid: expected false, allowlist or true/);
  });
});

describe('network "allowlist": limits', () => {
  serverTest(
    'connections at once and bytes per box, each refused with its setting named',
    { serverOptions: { env: egressEnv({ ONLYBOXES_EGRESS_MAX_CONNECTIONS: '2', ONLYBOXES_EGRESS_MAX_MB: '1' }) } },
    async (srv) => {
      const s = await allowlistSession(srv);
      const tunnels = [
        'import socket',
        'def tunnel():',
        '    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)',
        '    s.sendall(b"CONNECT plain.test:80 HTTP/1.1\\r\\n\\r\\n")',
        '    data = b""',
        '    while b"\\r\\n\\r\\n" not in data:',
        '        d = s.recv(4096)',
        '        if not d: break',
        '        data += d',
        '    return s, data.split(b"\\r\\n")[0].decode()',
        'held = [tunnel() for _ in range(3)]',
        'for s, status in held: print(status)',
        'for s, status in held: s.close()',
        'again = tunnel()',
        'print(again[1])',
      ].join('\n');
      const r = await py(srv, s, tunnels);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, 4, describeRun(r));
      assert.match(lines[0], /^HTTP\/1\.1 200 /);
      assert.match(lines[1], /^HTTP\/1\.1 200 /);
      assert.equal(lines[2], 'HTTP/1.1 429 egress: this box has 2 connections open, its limit (ONLYBOXES_EGRESS_MAX_CONNECTIONS)');
      // Connections just closed free their slots even before both sides have ended.
      assert.match(lines[3], /^HTTP\/1\.1 200 /, describeRun(r));

      const b = await srv.sh('curl -sS -o /workspace/big http://plain.test/big; echo rc=$?; ' +
        'stat -c %s /workspace/big; curl -sS http://plain.test/', { session_id: s });
      const size = Number(b.stdout.split('\n')[1]);
      assert.match(b.stdout, /^rc=(18|56)$/m, `the download was cut: ${describeRun(b)}`);
      assert.ok(size < 3 << 20, `the whole download came through: ${size}`);
      assert.match(b.stdout, /^egress: this box has used its 1 MiB of egress traffic \(ONLYBOXES_EGRESS_MAX_MB\)$/m, describeRun(b));
    },
  );

  test('allowed and refused connections are counted per box and logged with it', async () => {
    const srv = await startServer({ env: egressEnv() });
    let s;
    try {
      const cmd = 'curl -sS http://plain.test/a http://plain.test/b; curl -sS http://evil.test/';
      s = (await srv.sh(cmd, { network: 'allowlist' })).session_id;
    } finally {
      await srv.close();
    }
    const line = new RegExp(`egress: session ${s}: 2 connection\\(s\\) allowed, 1 refused, 0 failed, \\d+ bytes relayed`);
    assert.match(srv.stderr, line);
  });
});
