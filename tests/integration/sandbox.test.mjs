// SPDX-License-Identifier: Apache-2.0
// The box as a trust boundary, checked the way an attacker's code would probe it: no network,
// no writes to the system, no view of the host's secrets, a private /tmp.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import { describeRun, marker, runCli, serverTest, sharedServer } from './lib.mjs';

const server = sharedServer();

// Tries a TCP connection and prints CONNECTED or BLOCKED <reason>.
function connectProbe(host, port) {
  return [
    'import socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_STREAM)',
    's.settimeout(3)',
    'try:',
    `    s.connect((${JSON.stringify(host)}, ${port}))`,
    '    print("CONNECTED")',
    'except Exception as e:',
    '    print("BLOCKED", type(e).__name__, e)',
  ].join('\n');
}

describe('network', () => {
  let hostServer;
  let hostPort;
  let accepted = 0;
  before(async () => {
    hostServer = net.createServer((sock) => {
      accepted++;
      sock.on('error', () => {});
      sock.end('hello from the host\n');
    });
    await new Promise((resolve) => hostServer.listen(0, '127.0.0.1', resolve));
    hostPort = hostServer.address().port;
  });
  after(() => new Promise((resolve) => hostServer.close(resolve)));

  serverTest('the box has only a loopback interface', { server }, async (srv) => {
    const r = await srv.sh('cat /proc/net/dev');
    const ifaces = r.stdout
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0].trim())
      .filter(Boolean);
    assert.deepEqual(ifaces, ['lo'], r.stdout);
  });

  serverTest('the internet is unreachable', { server }, async (srv) => {
    const r = await srv.ok('pythonExec', { code: connectProbe('1.1.1.1', 80) });
    assert.match(r.output, /^BLOCKED/, r.output);
    const u = await srv.ok('pythonExec', {
      code: [
        'import urllib.request',
        'try:',
        '    urllib.request.urlopen("http://1.1.1.1/", timeout=3)',
        '    print("CONNECTED")',
        'except Exception as e:',
        '    print("BLOCKED", e)',
      ].join('\n'),
    });
    assert.match(u.output, /^BLOCKED/, u.output);
  });

  serverTest("the host's loopback services are unreachable", { server }, async (srv) => {
    const r = await srv.ok('pythonExec', { code: connectProbe('127.0.0.1', hostPort) });
    assert.match(r.output, /^BLOCKED/, r.output);
    const t = await srv.sh(`python3 -c '${connectProbe('127.0.0.1', hostPort).replace(/'/g, '"')}'`);
    assert.match(t.stdout, /^BLOCKED/, t.stdout + t.stderr);
    assert.equal(accepted, 0, 'the host server accepted a connection from a box');
  });
});

function interfaces(procNetDev) {
  return procNetDev
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0].trim())
    .filter(Boolean);
}

describe('network on request', () => {
  serverTest('refused unless the operator allows it, naming the setting', { server }, async (srv) => {
    const p = await srv.fails('pythonExec', { code: 'print(1)', network: true });
    assert.match(p, /network/);
    assert.match(p, /ONLYBOXES_ALLOW_NETWORK/);
    const t = await srv.fails('terminalExec', { command: 'echo hi', network: true });
    assert.match(t, /ONLYBOXES_ALLOW_NETWORK/);
    const bad = await srv.fails('pythonExec', { code: 'print(1)', network: 'yes' });
    assert.match(bad, /network/);
  });

  serverTest(
    'allowed: a box asked for with network has more than loopback, others still only loopback',
    { serverOptions: { env: { ONLYBOXES_ALLOW_NETWORK: 'true' } } },
    async (srv) => {
      const withNet = await srv.ok('pythonExec', {
        code: 'print(open("/proc/net/dev").read())',
        network: true,
      });
      assert.notDeepEqual(interfaces(withNet.output), ['lo'], withNet.output);
      const without = await srv.ok('pythonExec', { code: 'print(open("/proc/net/dev").read())' });
      assert.deepEqual(interfaces(without.output), ['lo'], without.output);

      const s = await srv.sh('cat /proc/net/dev', { network: true });
      assert.notDeepEqual(interfaces(s.stdout), ['lo'], s.stdout);
      const again = await srv.sh('cat /proc/net/dev', { session_id: s.session_id });
      assert.notDeepEqual(interfaces(again.stdout), ['lo'], 'the session keeps its network');

      const plain = await srv.sh('cat /proc/net/dev');
      assert.deepEqual(interfaces(plain.stdout), ['lo'], plain.stdout);
      const upgrade = await srv.fails('terminalExec', {
        command: 'echo hi',
        session_id: plain.session_id,
        network: true,
      });
      assert.match(upgrade, /without network access/);
    },
  );
});

describe('filesystem', () => {
  serverTest('system directories are read-only', { server }, async (srv) => {
    const m = marker();
    const targets = [`/usr/obx-${m}`, `/etc/obx-${m}`, `/bin/obx-${m}`];
    try {
      for (const p of targets) {
        const r = await srv.sh(`touch ${p}`);
        assert.notEqual(r.exit_code, 0, `touch ${p} succeeded inside the box`);
      }
    } finally {
      for (const p of targets) {
        if (existsSync(p)) {
          rmSync(p, { force: true });
          assert.fail(`${p} appeared on the host`);
        }
      }
    }
  });

  serverTest("the host's secrets are not readable", { server }, async (srv) => {
    const shadow = await srv.sh('cat /etc/shadow');
    assert.notEqual(shadow.exit_code, 0, 'the box can read /etc/shadow');
    assert.equal(shadow.stdout, '');
    const root = await srv.sh('ls -A /root');
    assert.ok(root.exit_code !== 0 || root.stdout === '', `the box can list /root: ${root.stdout}`);
  });

  serverTest("the box's /tmp is not the host's /tmp", { server }, async (srv) => {
    const p = `/tmp/obx-${marker()}`;
    try {
      const r = await srv.sh(`echo inside > ${p} && cat ${p}`);
      assert.equal(r.stdout, 'inside\n');
      assert.equal(existsSync(p), false, `${p} appeared on the host`);
    } finally {
      rmSync(p, { force: true });
    }
  });

  serverTest('the workspace is writable, and the same for pythonExec', { server }, async (srv) => {
    const r = await srv.ok('pythonExec', {
      code: 'import os\nopen("w.txt","w").write("ok")\nprint(os.getcwd(), open("w.txt").read())',
    });
    assert.equal(r.output, '/workspace ok\n');
  });

  serverTest(
    'the workspace holds ONLYBOXES_BOX_WORKSPACE_MB in all, whatever the number of files',
    { serverOptions: { env: { ONLYBOXES_BOX_WORKSPACE_MB: '32' } } },
    async (srv) => {
      const r = await srv.sh(
        'df -m /workspace | tail -n 1; for i in 1 2 3 4 5; do dd if=/dev/zero of=/workspace/f$i bs=1M count=10 2>&1 | ' +
          'grep -o "No space left on device" || true; done; du -sm /workspace',
      );
      assert.match(r.stdout, /^tmpfs\s+32\s/m, r.stdout);
      assert.match(r.stdout, /No space left on device/);
      const used = Number(/^(\d+)\s+\/workspace$/m.exec(r.stdout)?.[1]);
      assert.ok(used > 0 && used <= 32, `the workspace holds ${used} MiB: ${r.stdout}`);
    },
  );

  test('a workspace size out of range stops startup, naming the variable', () => {
    const r = runCli(['exec', '--', 'true'], { env: { ONLYBOXES_BOX_WORKSPACE_MB: '4' } });
    assert.notEqual(r.status, 0, describeRun(r));
    assert.match(r.stderr, /ONLYBOXES_BOX_WORKSPACE_MB=4 is invalid: expected a whole number from 16 to 65536/);
  });
});
