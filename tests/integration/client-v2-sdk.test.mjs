// SPDX-License-Identifier: Apache-2.0
// The v2 MCP TypeScript SDK (@modelcontextprotocol/client, Node >= 20) as an application uses it,
// against `onlyboxes mcp --stdio` and the console's /mcp with a bearer token, in each era it can
// negotiate: pinned to 2026-07-28 (modern, server/discover), legacy offering only 2025-11-25 (the
// SDK's pin takes modern revisions only), and auto (it probes, and onlyboxes answers as modern).
// Every tool runs in each. Then the tasks extension through the SDK's own package for it
// (@modelcontextprotocol/ext-tasks): a pythonExec that outlives the server's task threshold comes
// back as a task, its result is read with tasks/get, and tasks/cancel stops a task's process.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { createTaskSessionFromClient, resultFromTaskOutcome } from '@modelcontextprotocol/ext-tasks/client';
import { BIN, MCP_ARGS, assertNoProcess, assertNoSanitizerReport, sleepMarker, waitForProcess } from './lib.mjs';
import { RUNTIME, everyTool, startConsole } from './clients-lib.mjs';

const TASKS = 'io.modelcontextprotocol/tasks';
const TOOLS = ['echo', 'pythonExec', 'readImage', 'terminalExec'];
// The console offers exportFile too (a signed download link); mcp --stdio only with --export-dir.
const CONSOLE_TOOLS = ['echo', 'exportFile', 'pythonExec', 'readImage', 'terminalExec'];

const ERAS = [
  {
    name: 'pinned to 2026-07-28',
    options: { versionNegotiation: { mode: { pin: '2026-07-28' } } },
    era: 'modern',
    version: '2026-07-28',
  },
  {
    name: 'legacy, offering only 2025-11-25',
    options: { supportedProtocolVersions: ['2025-11-25'] },
    era: 'legacy',
    version: '2025-11-25',
  },
  { name: 'auto', options: { versionNegotiation: { mode: 'auto' } }, era: 'modern', version: '2026-07-28' },
];

/** A stdio transport whose server stderr is kept, for failure messages and sanitizer reports. */
function stdioTransport(env = {}) {
  const transport = new StdioClientTransport({
    command: BIN,
    args: MCP_ARGS,
    env: { ...process.env, ONLYBOXES_RUNTIME: RUNTIME, ...env },
    stderr: 'pipe',
  });
  transport.obxStderr = '';
  transport.stderr.setEncoding('utf8');
  transport.stderr.on('data', (d) => (transport.obxStderr += d));
  return transport;
}

function httpTransport(server) {
  return new StreamableHTTPClientTransport(new URL(server.url), {
    requestInit: { headers: { Authorization: `Bearer ${server.token}` } },
  });
}

/** Connects, runs fn(client, transport), closes; a failure carries the stdio server's stderr. */
async function withClient(transport, options, fn) {
  const client = new Client({ name: 'obx-v2-sdk-test', version: '0.0.0' }, options);
  try {
    await client.connect(transport);
    return await fn(client, transport);
  } catch (e) {
    if (transport.obxStderr && e instanceof Error) e.message += `\n--- onlyboxes stderr ---\n${transport.obxStderr.slice(-8000)}`;
    throw e;
  } finally {
    if (transport.sessionId !== undefined) await transport.terminateSession?.().catch(() => {});
    await client.close();
    if (transport.obxStderr !== undefined) assertNoSanitizerReport(transport.obxStderr);
  }
}

function callToolWith(client) {
  return (name, args) => client.callTool({ name, arguments: args }, { timeout: 120_000 });
}

describe('v2 SDK over stdio (onlyboxes mcp --stdio)', () => {
  for (const e of ERAS) {
    test(`${e.name}: ${e.era} era, every tool`, async () => {
      await withClient(stdioTransport(), e.options, async (client) => {
        assert.equal(client.getProtocolEra(), e.era);
        assert.equal(client.getNegotiatedProtocolVersion(), e.version);
        assert.equal(client.getServerVersion()?.name, 'onlyboxes');
        assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), TOOLS);
        await everyTool(callToolWith(client), `the v2 SDK over stdio, ${e.name}`);
      });
    });
  }

  test('the SDK has no legacy pin: { pin: "2025-11-25" } is refused before anything is sent', async () => {
    const client = new Client({ name: 'obx-v2-sdk-test', version: '0.0.0' }, { versionNegotiation: { mode: { pin: '2025-11-25' } } });
    const transport = stdioTransport();
    await assert.rejects(client.connect(transport), (err) => {
      assert.ok(err instanceof TypeError, String(err));
      assert.match(err.message, /not a modern protocol revision/);
      return true;
    });
    await client.close();
  });
});

describe('v2 SDK over HTTP (console /mcp, bearer token)', () => {
  let server;
  before(async () => {
    server = await startConsole();
  });
  after(async () => {
    await server?.stop();
  });

  for (const e of ERAS) {
    test(`${e.name}: ${e.era} era, every tool`, async () => {
      await withClient(httpTransport(server), e.options, async (client, transport) => {
        assert.equal(client.getProtocolEra(), e.era);
        assert.equal(client.getNegotiatedProtocolVersion(), e.version);
        assert.equal(client.getServerVersion()?.name, 'onlyboxes-console');
        // The modern era is stateless: no Mcp-Session-Id; the legacy one opens a session.
        if (e.era === 'modern') assert.equal(transport.sessionId, undefined);
        else assert.match(transport.sessionId, /^[\x21-\x7e]+$/);
        assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), CONSOLE_TOOLS);
        await everyTool(callToolWith(client), `the v2 SDK over HTTP, ${e.name}`);
      });
    });
  }
});

/*
 * The tasks extension. SDK 2.4.0's own codec takes only resultType "complete" (or
 * "input_required") for tools/call: a bare client.callTool() that meets a task rejects with
 * UnsupportedResultType. The SDK's answer is @modelcontextprotocol/ext-tasks, whose 2026-07-28
 * path wants the host to send the task requests itself (`rawDispatch`) with the framing the
 * client was built with. The host here sends them on the SDK's own connected transport and takes
 * their answers off it before the Client sees them.
 */
function rawDispatcher(transport, sent) {
  const pending = new Map();
  let n = 0;
  const inner = transport.onmessage;
  transport.onmessage = (msg, extra) => {
    if (msg && typeof msg.id === 'string' && pending.has(msg.id) && !('method' in msg)) {
      const resolve = pending.get(msg.id);
      pending.delete(msg.id);
      resolve(msg);
      return;
    }
    inner?.(msg, extra);
  };
  return async (request) => {
    const id = `obx-raw-${++n}`;
    const answer = new Promise((resolve) => pending.set(id, resolve));
    sent.push(request.method);
    await transport.send({ jsonrpc: '2.0', id, ...request });
    const msg = await answer;
    return 'error' in msg ? { kind: 'error', error: msg.error } : { kind: 'result', result: msg.result };
  };
}

async function taskRoundTrip(transport, serverName) {
  const clientInfo = { name: 'obx-v2-tasks-test', version: '0.0.0' };
  const capabilities = { extensions: { [TASKS]: {} } };
  await withClient(transport, { capabilities, versionNegotiation: { mode: { pin: '2026-07-28' } } }, async (client) => {
    assert.equal(client.getProtocolEra(), 'modern');
    assert.deepEqual(client.getServerCapabilities()?.extensions?.[TASKS], {}, 'the server offers the tasks extension');
    const sent = [];
    const session = createTaskSessionFromClient(client, {
      endpointId: `onlyboxes-${serverName}`,
      rawDispatch: rawDispatcher(transport, sent),
      v2RequestFraming: { protocolVersion: '2026-07-28', clientInfo, clientCapabilities: capabilities },
    });
    try {
      assert.equal(session.capabilities.execution, true);
      // Sleeps well past the 1 s threshold, so it is a task however slow the machine is.
      const execution = await session.callTool('pythonExec', { code: 'import time; time.sleep(3); print(6*7)' });
      assert.equal(execution.kind, 'task', 'a call running past the threshold becomes a task');
      assert.match(execution.handle.taskId, /^\S+$/);
      const seen = [];
      const { outcome } = await execution.settle({ onEvent: (ev) => seen.push(ev.type === 'task' ? ev.task.status : ev.type) });
      assert.equal(outcome.status, 'completed', JSON.stringify(outcome).slice(0, 2000));
      const result = resultFromTaskOutcome(outcome);
      assert.equal(result.structuredContent.output, '42\n');
      assert.equal(result.structuredContent.exit_code, 0);
      assert.equal(seen[0], 'working', `events: ${seen}`);
      assert.ok(sent.includes('tasks/get'), `the result was read with tasks/get: ${sent}`);

      // A quick call is still answered at once, through the same session.
      const quick = await session.callTool('echo', { message: 'at once' });
      assert.equal(quick.kind, 'immediate');
      assert.deepEqual(resultFromTaskOutcome((await quick.settle()).outcome).structuredContent, { message: 'at once' });

      // Cancelling a task (tasks/cancel) stops its process.
      const secs = sleepMarker();
      const sleeper = await session.callTool('terminalExec', { command: `sleep ${secs}` });
      assert.equal(sleeper.kind, 'task');
      assert.ok((await waitForProcess(`sleep ${secs}`, 30_000)).length > 0, 'the command never started');
      await sleeper.cancel();
      assert.equal((await sleeper.settle()).outcome.status, 'cancelled');
      assert.ok(sent.includes('tasks/cancel'), `cancelled with tasks/cancel: ${sent}`);
      await assertNoProcess(secs, 10_000, 'after tasks/cancel');
    } finally {
      await session.close();
    }
  });
}

describe('v2 SDK with the tasks extension (ext-tasks)', () => {
  test('stdio: a long pythonExec becomes a task; tasks/get brings its result, tasks/cancel stops one', async () => {
    await taskRoundTrip(stdioTransport({ ONLYBOXES_MCP_TASK_AFTER_MS: '1000' }), 'stdio');
  });

  test('HTTP: a long pythonExec becomes a task; tasks/get brings its result, tasks/cancel stops one', async () => {
    const server = await startConsole({ CONSOLE_MCP_TASK_AFTER_MS: '1000' });
    try {
      await taskRoundTrip(httpTransport(server), 'console');
    } finally {
      await server.stop();
    }
  });
});
