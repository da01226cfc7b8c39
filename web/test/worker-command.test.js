// SPDX-License-Identifier: Apache-2.0
import test from 'node:test';
import assert from 'node:assert/strict';
import { buildWorkerCommand, defaultWorkerValues, parseLabels, validTarget, WORKER_FIELDS } from '../src/lib/worker-command.js';

const base = () => ({ ...defaultWorkerValues(), WORKER_ID: 'node-1', WORKER_SECRET: 's3cr3t' });
const keys = (r) => r.errors.map((e) => e.key);

test('the required settings, then a multi-line command with every value quoted', () => {
  const empty = buildWorkerCommand(defaultWorkerValues());
  assert.deepEqual(keys(empty).sort(), ['WORKER_ID', 'WORKER_SECRET']);
  assert.equal(empty.command, '');
  const r = buildWorkerCommand({ ...base(), WORKER_CONSOLE_GRPC_TARGET: 'console.example.com:50051', WORKER_CONSOLE_INSECURE: true });
  assert.deepEqual(r.errors, []);
  assert.equal(
    r.command,
    [
      "WORKER_CONSOLE_GRPC_TARGET='console.example.com:50051' \\",
      "WORKER_CONSOLE_INSECURE='true' \\",
      "WORKER_ID='node-1' \\",
      "WORKER_SECRET='s3cr3t' \\",
      "WORKER_HEARTBEAT_INTERVAL_SEC='5' \\",
      "WORKER_HEARTBEAT_JITTER_PCT='20' \\",
      'onlyboxes worker',
    ].join('\n'),
  );
  assert.equal(r.envFile.split('\n')[0], 'WORKER_CONSOLE_GRPC_TARGET=console.example.com:50051');
});

test('a value with quotes and spaces stays one word; the binary path is quoted when it must be', () => {
  const r = buildWorkerCommand({ ...base(), WORKER_SECRET: "it's a secret", WORKER_NODE_NAME: 'rack 4', binary: '/opt/my tools/onlyboxes' });
  assert.ok(r.command.includes("WORKER_SECRET='it'\\''s a secret' \\"), r.command);
  assert.ok(r.command.endsWith("'/opt/my tools/onlyboxes' worker"), r.command);
  assert.ok(r.envFile.includes('WORKER_NODE_NAME="rack 4"'), r.envFile);
});

test('numbers: the worker\'s bounds, empty keeps its default', () => {
  for (const [key, bad] of [['WORKER_HEARTBEAT_JITTER_PCT', '101'], ['WORKER_HEARTBEAT_INTERVAL_SEC', '0'], ['WORKER_MAX_INFLIGHT', '2.5'], ['ONLYBOXES_WARM_POOL', 'x'], ['WORKER_TERMINAL_OUTPUT_LIMIT_BYTES', '100']]) {
    const r = buildWorkerCommand({ ...base(), [key]: bad });
    assert.deepEqual(keys(r), [key], `${key}=${bad}`);
    assert.equal(r.command, '');
  }
  const r = buildWorkerCommand({ ...base(), WORKER_MAX_INFLIGHT: '32', ONLYBOXES_WARM_POOL: '0', WORKER_DRAIN_TIMEOUT_SEC: '' });
  assert.ok(r.command.includes("WORKER_MAX_INFLIGHT='32'"));
  assert.ok(r.command.includes("ONLYBOXES_WARM_POOL='0'"));
  assert.ok(!r.command.includes('WORKER_DRAIN_TIMEOUT_SEC'));
});

test('the call timeout is written only in manual mode, with a warning below twice the interval', () => {
  assert.ok(!buildWorkerCommand({ ...base(), WORKER_CALL_TIMEOUT_SEC: '3' }).command.includes('WORKER_CALL_TIMEOUT_SEC'));
  const manual = buildWorkerCommand({ ...base(), callTimeoutMode: 'manual', WORKER_CALL_TIMEOUT_SEC: '3' });
  assert.ok(manual.command.includes("WORKER_CALL_TIMEOUT_SEC='3'"));
  assert.equal(manual.warnings.length, 1);
  assert.match(manual.warnings[0], /twice the heartbeat interval \(10 s\)/);
  assert.deepEqual(buildWorkerCommand({ ...base(), callTimeoutMode: 'manual', WORKER_CALL_TIMEOUT_SEC: '12' }).warnings, []);
  assert.deepEqual(keys(buildWorkerCommand({ ...base(), callTimeoutMode: 'manual' })), ['WORKER_CALL_TIMEOUT_SEC']);
});

test('leases: the longest raised to the shortest, the default clamped, both said', () => {
  const r = buildWorkerCommand({ ...base(), WORKER_TERMINAL_LEASE_MIN_SEC: '600', WORKER_TERMINAL_LEASE_MAX_SEC: '300', WORKER_TERMINAL_LEASE_DEFAULT_SEC: '30' });
  assert.deepEqual(r.errors, []);
  assert.ok(r.command.includes("WORKER_TERMINAL_LEASE_MAX_SEC='600'"), r.command);
  assert.ok(r.command.includes("WORKER_TERMINAL_LEASE_DEFAULT_SEC='600'"), r.command);
  assert.equal(r.warnings.length, 2);
});

test('labels: key=value per line, the last value of a key wins, bad lines reported', () => {
  assert.deepEqual(parseLabels('zone=eu\nrack = 4\nzone=us\nnovalue\n=x\na=b,c\n\n'), { csv: 'rack=4,zone=us', bad: ['novalue', '=x', 'a=b,c'] });
  const r = buildWorkerCommand({ ...base(), WORKER_LABELS: 'zone=eu\nbroken' });
  assert.ok(r.command.includes("WORKER_LABELS='zone=eu'"));
  assert.match(r.warnings.join(' '), /1 label line is not key=value/);
});

test('connection checks: the address, both halves of a client certificate, plaintext warnings', () => {
  assert.ok(validTarget('10.0.0.5:50051'));
  assert.ok(validTarget('[::1]:50051'));
  for (const bad of ['console.example.com', ':50051', 'host:0', 'host:70000', 'http://host:1']) assert.ok(!validTarget(bad), bad);
  assert.deepEqual(keys(buildWorkerCommand({ ...base(), WORKER_CONSOLE_GRPC_TARGET: 'nohost' })), ['WORKER_CONSOLE_GRPC_TARGET']);
  assert.deepEqual(keys(buildWorkerCommand({ ...base(), WORKER_CONSOLE_CERT_FILE: '/etc/w.pem' })), ['WORKER_CONSOLE_KEY_FILE']);
  const remote = buildWorkerCommand({ ...base(), WORKER_CONSOLE_GRPC_TARGET: 'console.example.com:50051', WORKER_CONSOLE_INSECURE: true, WORKER_CONSOLE_CA_FILE: '/ca.pem' });
  assert.equal(remote.warnings.length, 2);
  assert.deepEqual(buildWorkerCommand({ ...base(), WORKER_CONSOLE_INSECURE: true }).warnings, [], 'plaintext on loopback is fine');
  assert.deepEqual(keys(buildWorkerCommand({ ...base(), WORKER_ID: 'x'.repeat(129) })), ['WORKER_ID']);
  assert.deepEqual(keys(buildWorkerCommand({ ...base(), WORKER_NODE_NAME: 'a\nb' })), ['WORKER_NODE_NAME']);
  assert.deepEqual(keys(buildWorkerCommand({ ...base(), binary: ' ' })), ['binary']);
});

test('lists, choices and the network warning', () => {
  const r = buildWorkerCommand({ ...base(), WORKER_EGRESS_ALLOW: ' pypi.org \n\nfiles.pythonhosted.org', ONLYBOXES_RUNTIME: 'docker', ONLYBOXES_ALLOW_NETWORK: 'true', ONLYBOXES_LOG_LEVEL: 'debug' });
  assert.ok(r.command.includes("WORKER_EGRESS_ALLOW='pypi.org,files.pythonhosted.org'"));
  assert.ok(r.command.includes("ONLYBOXES_RUNTIME='docker'"));
  assert.ok(r.command.includes("ONLYBOXES_LOG_LEVEL='debug'"));
  assert.match(r.warnings.join(' '), /full network/);
});

test('every field names a variable `onlyboxes worker` reads, once', () => {
  const names = WORKER_FIELDS.map((f) => f.key);
  assert.equal(new Set(names).size, names.length);
  for (const n of names) assert.match(n, /^(WORKER|ONLYBOXES)_[A-Z_]+$/);
});
