// SPDX-License-Identifier: Apache-2.0
// The conformance relay's modern era (relay-modern.mjs) against the real `onlyboxes mcp --stdio`:
// what the suite relies on without checking it itself. Notifications ride the request's own SSE
// stream with the client's token, errors get the binding's HTTP statuses, two clients may use the
// same id at once, a subscription hears of its task under the client's id, and a client that
// closes its stream cancels its call (the box's process goes away).

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BIN, sleepMarker, waitForProcess, assertNoProcess } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
};
const TASKS_META = {
  ...META,
  'io.modelcontextprotocol/clientCapabilities': {
    extensions: { 'io.modelcontextprotocol/tasks': {} },
  },
};

let relay;
let url;
let stderr = '';

before(async () => {
  relay = spawn(
    process.execPath,
    [path.join(here, 'relay.mjs'), '0', BIN, 'mcp', '--stdio', '--conformance-fixtures'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  url = await new Promise((resolve, reject) => {
    relay.stderr.on('data', (c) => {
      stderr += c;
      const m = /listening on (http:\/\/\S+\/mcp)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    relay.on('exit', (code) => reject(new Error(`relay exited (${code}): ${stderr}`)));
  });
});

after(async () => {
  relay.kill('SIGTERM');
  await new Promise((resolve) => relay.once('exit', resolve));
});

function post(body, signal) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify(body),
    signal,
  });
}

// The JSON-RPC messages of an SSE body, or the one JSON body, in order.
async function messages(res) {
  const text = await res.text();
  if (!res.headers.get('content-type')?.startsWith('text/event-stream')) return [JSON.parse(text)];
  return text
    .split('\n\n')
    .map((ev) =>
      ev
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n'),
    )
    .filter(Boolean)
    .map((d) => JSON.parse(d));
}

const call = (id, name, args, meta = META) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, _meta: meta },
});

test('progress rides the request stream, with the client token, before the answer', async () => {
  const res = await post(
    call('p', 'test_tool_with_progress', {}, { ...META, progressToken: 'tok' }),
  );
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const msgs = await messages(res);
  const progress = msgs.filter((m) => m.method === 'notifications/progress');
  assert.ok(progress.length >= 3, JSON.stringify(msgs));
  assert.ok(progress.every((m) => m.params.progressToken === 'tok'));
  assert.equal(msgs.at(-1).id, 'p');
  assert.equal(msgs.at(-1).result.resultType, 'complete');
});

test('errors get the modern binding HTTP statuses', async () => {
  const cases = [
    [{ jsonrpc: '2.0', id: 1, method: 'ping', params: { _meta: META } }, 404, -32601],
    [
      {
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/list',
        params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } },
      },
      400,
      -32602,
    ],
    [
      {
        jsonrpc: '2.0',
        id: 3,
        method: 'tools/list',
        params: { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } },
      },
      400,
      -32022,
    ],
    [call(4, 'test_missing_capability', {}), 400, -32021],
    [call(5, 'no_such_tool', {}), 200, undefined],
  ];
  for (const [body, status, code] of cases) {
    const res = await post(body);
    const [msg] = await messages(res);
    assert.equal(res.status, status, JSON.stringify(msg));
    assert.equal(msg.id, body.id);
    if (code !== undefined) assert.equal(msg.error?.code, code, JSON.stringify(msg));
  }
});

test('two clients may use the same id and token at once', async () => {
  const body = call(7, 'test_tool_with_progress', {}, { ...META, progressToken: 1 });
  const [a, b] = await Promise.all([post(body), post(body)]);
  for (const msgs of [await messages(a), await messages(b)]) {
    assert.equal(
      msgs.filter((m) => m.method === 'notifications/progress' && m.params.progressToken === 1)
        .length,
      3,
    );
    assert.equal(msgs.at(-1).id, 7);
    assert.ok(msgs.at(-1).result, JSON.stringify(msgs.at(-1)));
  }
});

test('a subscription hears of its task under the client id', async () => {
  const [created] = await messages(
    await post(call('t', 'slow_compute', { seconds: 1, label: 'relay' }, TASKS_META)),
  );
  const taskId = created.result?.taskId;
  assert.ok(taskId, JSON.stringify(created));
  const ac = new AbortController();
  const res = await post(
    {
      jsonrpc: '2.0',
      id: 'sub',
      method: 'subscriptions/listen',
      params: { notifications: { taskIds: [taskId] }, _meta: TASKS_META },
    },
    ac.signal,
  );
  const reader = res.body.getReader();
  let text = '';
  while (!/"status":"completed"/.test(text)) {
    const { value, done } = await reader.read();
    assert.ok(!done, `stream ended early: ${text}`);
    text += Buffer.from(value).toString('utf8');
  }
  ac.abort();
  assert.match(text, /notifications\/subscriptions\/acknowledged/);
  assert.match(text, /"io.modelcontextprotocol\/subscriptionId":"sub"/);
  assert.match(text, new RegExp(`"taskId":"${taskId}"`));
});

test('closing the stream cancels the call in the child', async () => {
  const secs = sleepMarker();
  const ac = new AbortController();
  const pending = post(call('c', 'terminalExec', { command: `sleep ${secs}` }), ac.signal).then(
    (res) => res.text(),
    () => 'aborted',
  );
  const running = await waitForProcess(`sleep ${secs}`);
  assert.ok(running.length > 0, `the command never started; relay stderr: ${stderr}`);
  ac.abort();
  assert.equal(await pending, 'aborted');
  await assertNoProcess(
    `sleep ${secs}`,
    10_000,
    'the relay sends notifications/cancelled when the client goes',
  );
});
