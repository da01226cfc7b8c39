// SPDX-License-Identifier: Apache-2.0
// The console binds exactly the address it is given (CONSOLE_HTTP_ADDR): checked on the bound
// socket as `ss` shows it, and by connecting, inside a network namespace of the test's own with a
// second, non-loopback address, so nothing outside this machine is involved.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { Console, startFailure } from './console-lib.mjs';

const KEY = 'listen-test-hash-key-0123456789abcdef';

function env(addr, dir) {
  return { CONSOLE_HASH_KEY: KEY, CONSOLE_DB_PATH: `${dir}/c.db`, CONSOLE_HTTP_ADDR: addr, CONSOLE_GRPC_ADDR: addr, CONSOLE_DASHBOARD_PASSWORD: 'listen-test-password' };
}

async function tmpdir() {
  const { mkdtemp } = await import('node:fs/promises');
  const os = await import('node:os');
  return mkdtemp(`${os.tmpdir()}/obx-listen-`);
}

/** Local addresses the process listens on, as `ss -ltn` prints them ("127.0.0.1:8089", "[::1]:8089", "*:8089"). */
function listening(pid, prefix = []) {
  const argv = [...prefix, 'ss', '-ltnpH'];
  const out = execFileSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => l.trim().split(/\s+/)[3])
    // gRPC binds an IPv4 address on an IPv6 socket as its mapped form: the same address.
    .map((a) => a.replace(/^\[::ffff:([0-9.]+)\]/, '$1'));
}

const ipv6 = spawnSync('sh', ['-c', 'test -e /proc/net/if_inet6 && ip -6 addr show lo | grep -q "::1"']).status === 0;

for (const [addr, want] of [
  ['127.0.0.1:0', (p) => [`127.0.0.1:${p}`]],
  ['[::1]:0', (p) => [`[::1]:${p}`]],
  [':0', (p) => [`*:${p}`]],
]) {
  test(`CONSOLE_HTTP_ADDR=${addr} binds exactly that`, { skip: addr.startsWith('[') && !ipv6 ? 'no IPv6 loopback here' : false }, async () => {
    const dir = await tmpdir();
    const con = await new Console(env(addr, dir)).start();
    try {
      const port = new URL(con.base).port;
      assert.deepEqual(listening(con.proc.pid).filter((a) => a.endsWith(`:${port}`)), want(port));
      // The workers' port follows the same rule (CONSOLE_GRPC_ADDR).
      assert.deepEqual(listening(con.proc.pid).filter((a) => a.endsWith(`:${con.grpcPort}`)), want(con.grpcPort));
      assert.match(con.stderr, new RegExp(`listening on http://${addr.startsWith(':') ? '\\[::\\]' : addr.replace(/[[\]]/g, '\\$&').replace(':0', '')}:${port}`));
      const r = await fetch(new URL('/api/v1/console/session', con.base));
      assert.equal(r.status, 401);
    } finally {
      await con.stop();
    }
  });
}

test('a bad CONSOLE_HTTP_ADDR or CONSOLE_GRPC_ADDR stops the console, naming it', async () => {
  const dir = await tmpdir();
  for (const [name, v, msg] of [
    ['CONSOLE_HTTP_ADDR', '::1:8089', /CONSOLE_HTTP_ADDR=::1:8089: write an IPv6 address in brackets/],
    ['CONSOLE_HTTP_ADDR', '127.0.0.1', /CONSOLE_HTTP_ADDR=127\.0\.0\.1: expected HOST:PORT/],
    ['CONSOLE_HTTP_ADDR', 'no-such-host.invalid:0', /cannot resolve no-such-host\.invalid/],
    ['CONSOLE_GRPC_ADDR', '127.0.0.1:99999', /CONSOLE_GRPC_ADDR=127\.0\.0\.1:99999/],
  ]) {
    const r = await startFailure({ ...env('127.0.0.1:0', dir), [name]: v });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, msg);
  }
});

// A namespace with loopback and a veth pair, one end holding 10.251.0.1: the console bound to
// loopback must refuse a connection to 10.251.0.1; bound to every interface (the control) it
// must accept it.
const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;

test('bound to loopback, a connection to another address of the host is refused', { skip: canNetns ? false : 'needs root and ip netns' }, async () => {
  const ns = `obx-listen-${process.pid}`;
  const sh = (cmd) => execFileSync('sh', ['-c', cmd], { stdio: 'pipe' });
  sh(`ip netns add ${ns}`);
  try {
    sh(`ip netns exec ${ns} sh -c 'ip link set lo up && ip link add v0 type veth peer name v1 && ip addr add 10.251.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up'`);
    const inNs = ['ip', 'netns', 'exec', ns];
    const probe = (host, port) =>
      spawnSync(inNs[0], [...inNs.slice(1), 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://${host}:${port}/api/v1/console/session`], {
        encoding: 'utf8',
      });
    for (const [addr, external] of [
      ['127.0.0.1:0', false],
      [':0', true],
    ]) {
      const dir = await tmpdir();
      const con = await new Console(env(addr, dir)).start(inNs);
      try {
        const port = new URL(con.base).port;
        const local = probe('127.0.0.1', port);
        assert.equal(local.stdout, '401', `loopback: ${local.stderr}`);
        const other = probe('10.251.0.1', port);
        const otherGrpc = probe('10.251.0.1', con.grpcPort);
        if (external) {
          assert.equal(other.stdout, '401', 'the control: bound to every interface, 10.251.0.1 answers');
          assert.notEqual(otherGrpc.status, 7, 'the control: the workers port takes the connection');
        } else {
          assert.equal(other.status, 7, `curl must fail to connect (exit 7), got ${other.status} ${other.stdout}`);
          assert.equal(other.stdout, '000');
          assert.equal(otherGrpc.status, 7, 'the workers port refuses it too');
        }
      } finally {
        await con.stop();
      }
    }
  } finally {
    sh(`ip netns delete ${ns}`);
  }
});
