// SPDX-License-Identifier: Apache-2.0
import test from 'node:test';
import assert from 'node:assert/strict';
import { capabilitiesWithInflight, commandEnv, labelEntries, parseStatus } from '../src/lib/workers.js';
import { formatAge } from '../src/lib/format.js';
import { ApiError, createApi, loginErrorMessage } from '../src/lib/api.js';

test('in-flight counters match capabilities whatever their case', () => {
  const w = { node_id: 'n1', capabilities: [{ name: 'pythonExec', max_inflight: 4 }, { name: 'echo', max_inflight: 8 }] };
  const live = { workers: [{ node_id: 'n1', capabilities: [{ name: 'pythonexec', inflight: 3, max_inflight: 4 }] }, { node_id: 'n2', capabilities: [] }] };
  assert.deepEqual(capabilitiesWithInflight(w, live), [
    { name: 'pythonExec', inflight: 3, max: 4 },
    { name: 'echo', inflight: null, max: 8 },
  ]);
  assert.deepEqual(capabilitiesWithInflight(w, null)[0], { name: 'pythonExec', inflight: null, max: 4 });
});

test('labels, status filter, startup command variables, ages', () => {
  assert.deepEqual(labelEntries({ zone: 'eu', 'obx.worker_type': 'normal' }), [['obx.worker_type', 'normal'], ['zone', 'eu']]);
  assert.equal(parseStatus('online'), 'online');
  assert.equal(parseStatus('ONLINE'), 'all');
  assert.deepEqual(commandEnv('A=1 WORKER_ID=x-y B= onlyboxes worker'), { A: '1', WORKER_ID: 'x-y', B: '' });
  assert.equal(formatAge(4999), '4s ago');
  assert.equal(formatAge(125_000), '2m ago');
  assert.equal(formatAge(3 * 3600_000), '3h ago');
  assert.equal(formatAge(5 * 86400_000), '5d ago');
  assert.equal(formatAge(-10), '0s ago');
});

function fakeFetch(status, body, headers = {}) {
  const calls = [];
  const fn = async (path, init) => {
    calls.push({ path, init });
    return { ok: status >= 200 && status < 300, status, text: async () => (body === undefined ? '' : JSON.stringify(body)), headers: new Map(Object.entries(headers)) };
  };
  return { fn, calls };
}

test('API client: JSON both ways, the console\'s error text, 401 ends the session', async () => {
  let ended = 0;
  const ok = fakeFetch(201, { id: 't1' });
  assert.deepEqual(await createApi(ok.fn, () => ended++).post('/api/v1/console/tokens', { name: 'x' }), { id: 't1' });
  assert.equal(ok.calls[0].init.method, 'POST');
  assert.equal(ok.calls[0].init.credentials, 'same-origin');
  assert.equal(ok.calls[0].init.body, '{"name":"x"}');
  const bad = fakeFetch(409, { error: 'token name already exists' });
  await assert.rejects(createApi(bad.fn, () => ended++).post('/x', {}), (e) => e instanceof ApiError && e.status === 409 && e.message === 'token name already exists');
  assert.equal(ended, 0);
  const gone = fakeFetch(401, { error: 'authentication required' });
  await assert.rejects(createApi(gone.fn, () => ended++).get('/api/v1/workers'));
  assert.equal(ended, 1);
  await assert.rejects(createApi(gone.fn, () => ended++).post('/api/v1/console/password', {}, { quiet401: true }));
  assert.equal(ended, 1, 'a wrong current password does not sign out');
  const limited = fakeFetch(429, { error: 'too many login attempts; try again later' }, { 'retry-after': '300' });
  const err = await createApi(limited.fn).post('/api/v1/console/login', {}).catch((e) => e);
  assert.equal(err.retryAfter, 300);
  assert.equal(loginErrorMessage(err), 'Too many failed sign-in attempts. Try again in 5 minutes.');
  assert.equal(loginErrorMessage(new ApiError(401, 'invalid username or password')), 'Invalid username or password.');
});
