// SPDX-License-Identifier: Apache-2.0
// The tool catalogue and the stateless tools (echo, pythonExec) through the official SDK client,
// as an MCP client such as Claude Code sees them.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { marker, resultText, serverTest, sharedServer } from './lib.mjs';

const server = sharedServer();

describe('tools/list', () => {
  serverTest('lists exactly the four tools, each fully described', { server }, async (srv) => {
    const { tools, nextCursor } = await srv.client.listTools();
    assert.equal(nextCursor, undefined);
    assert.deepEqual(tools.map((t) => t.name).sort(), [
      'echo',
      'pythonExec',
      'readImage',
      'terminalExec',
    ]);
    for (const t of tools) {
      assert.equal(typeof t.description, 'string', `${t.name} needs a description`);
      assert.ok(t.description.length > 0, `${t.name} needs a description`);
      assert.equal(t.inputSchema?.type, 'object', `${t.name} inputSchema.type`);
      for (const k of ['anyOf', 'oneOf', 'allOf']) {
        assert.equal(t.inputSchema[k], undefined, `${t.name} inputSchema has top-level ${k}`);
      }
    }
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    for (const name of ['echo', 'pythonExec', 'terminalExec']) {
      assert.equal(byName[name].outputSchema?.type, 'object', `${name} outputSchema`);
    }
    assert.deepEqual(byName.echo.inputSchema.required, ['message']);
    assert.deepEqual(byName.pythonExec.inputSchema.required, ['code']);
    assert.deepEqual(byName.terminalExec.inputSchema.required, ['command']);
    assert.deepEqual([...byName.readImage.inputSchema.required].sort(), ['file_path', 'session_id']);
  });
});

describe('echo', () => {
  serverTest('returns the message', { server }, async (srv) => {
    const msg = `hello ${marker()} ünïcödé ✓`;
    const r = await srv.call('echo', { message: msg });
    assert.notEqual(r.isError, true);
    assert.deepEqual(r.structuredContent, { message: msg });
    // The same result serialised in a text item, for clients without structured output.
    const text = r.content.find((c) => c.type === 'text');
    assert.ok(text, 'a text item is expected next to structuredContent');
    assert.deepEqual(JSON.parse(text.text), { message: msg });
  });

  serverTest('a blank message is an error naming the field', { server }, async (srv) => {
    const text = await srv.fails('echo', { message: '   ' });
    assert.match(text, /message/);
  });

  serverTest('a missing message is an error naming the field', { server }, async (srv) => {
    const text = await srv.fails('echo', {});
    assert.match(text, /message/);
  });

  serverTest('an unknown argument is an error naming it', { server }, async (srv) => {
    const text = await srv.fails('echo', { message: 'hi', bogus_arg: 1 });
    assert.match(text, /bogus_arg/);
  });

  serverTest('a wrongly typed argument is an error naming it', { server }, async (srv) => {
    const text = await srv.fails('echo', { message: 'hi', timeout_ms: 'soon' });
    assert.match(text, /timeout_ms/);
  });

  serverTest('an unknown tool is JSON-RPC error -32602', { server }, async (srv) => {
    await assert.rejects(srv.call('noSuchTool', {}), (e) => {
      assert.ok(e instanceof McpError, `expected McpError, got ${e}`);
      assert.equal(e.code, -32602);
      return true;
    });
    // The connection survives it.
    assert.deepEqual((await srv.ok('echo', { message: 'x' })).message, 'x');
  });
});

describe('pythonExec', () => {
  serverTest('print(1)', { server }, async (srv) => {
    const r = await srv.ok('pythonExec', { code: 'print(1)' });
    assert.equal(r.output, '1\n');
    assert.equal(r.exit_code, 0);
    assert.equal(r.stderr, '');
  });

  serverTest('a non-zero exit is a result, not an error', { server }, async (srv) => {
    const r = await srv.ok('pythonExec', { code: 'import sys\nprint("bye")\nsys.exit(3)' });
    assert.equal(r.exit_code, 3);
    assert.equal(r.output, 'bye\n');
  });

  serverTest('stderr and exceptions are captured', { server }, async (srv) => {
    const r = await srv.ok('pythonExec', {
      code: 'import sys\nprint("warn", file=sys.stderr)\nraise ValueError("boom")',
    });
    assert.match(r.stderr, /warn/);
    assert.match(r.stderr, /ValueError: boom/);
    assert.equal(r.exit_code, 1);
  });

  serverTest('missing code is an error naming "code"', { server }, async (srv) => {
    assert.match(await srv.fails('pythonExec', {}), /code/);
    assert.match(await srv.fails('pythonExec', { code: ' \n\t' }), /code/);
  });

  serverTest('timeout_ms out of range is an error naming it', { server }, async (srv) => {
    for (const bad of [0, -5, 600001, 1.5]) {
      const text = await srv.fails('pythonExec', { code: 'print(1)', timeout_ms: bad });
      assert.match(text, /timeout_ms/, `timeout_ms=${bad}`);
    }
  });

  serverTest('each call gets a fresh box: files do not survive', { server }, async (srv) => {
    const name = `state-${marker()}.txt`;
    const w = await srv.ok('pythonExec', {
      code: `import os\nopen(${JSON.stringify(name)}, "w").write("x")\nprint(os.path.exists(${JSON.stringify(name)}))`,
    });
    assert.equal(w.output, 'True\n');
    const r = await srv.ok('pythonExec', {
      code: `import os\nprint(os.path.exists(${JSON.stringify(name)}))`,
    });
    assert.equal(r.output, 'False\n');
  });

  serverTest('streams progress while the code runs', { server }, async (srv) => {
    const progress = [];
    const code = [
      'import time',
      'for i in range(5):',
      '    print("tick", i, flush=True)',
      '    time.sleep(0.3)',
    ].join('\n');
    const r = await srv.call(
      'pythonExec',
      { code },
      { onprogress: (p) => progress.push(p), resetTimeoutOnProgress: true },
    );
    assert.notEqual(r.isError, true);
    assert.equal(r.structuredContent.output, 'tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n');
    assert.ok(progress.length >= 2, `expected ≥ 2 progress notifications, got ${JSON.stringify(progress)}`);
    for (let i = 1; i < progress.length; i++) {
      assert.ok(progress[i].progress > progress[i - 1].progress, `progress must increase: ${JSON.stringify(progress)}`);
    }
    const streamed = progress.map((p) => p.message ?? '').join('');
    assert.match(streamed, /tick 0/, 'progress messages carry the new output');
  });

  serverTest('several calls run at once', { server }, async (srv) => {
    // Each call reports when its program ran (wall clock, shared by host and boxes). Run one
    // after another, no two of the 1.5 s intervals could overlap; run at once, each overlaps
    // another one (how many start together depends on how fast the runtime starts boxes).
    const code = 'import time\nt0 = time.time()\ntime.sleep(1.5)\nprint(t0, time.time())';
    const rs = await Promise.all([1, 2, 3, 4].map(() => srv.ok('pythonExec', { code })));
    const spans = rs.map((r) => r.output.trim().split(' ').map(Number));
    const overlaps = (a, b) => a[0] < b[1] && b[0] < a[1];
    for (const [i, span] of spans.entries()) {
      const other = spans.some((o, j) => j !== i && overlaps(span, o));
      assert.ok(other, `call ${i} ran alone, so calls were serialised: ${JSON.stringify(spans)}`);
    }
  });
});

describe('a host where no sandbox can start', () => {
  // The server still comes up, so the user sees the reason in their MCP client instead of a dead
  // server; echo needs no box and keeps working.
  const opts = { serverOptions: { env: { ONLYBOXES_AGENT: '/nonexistent/onlyboxes-agent' } } };

  serverTest('tools that need a box say why, echo still works', opts, async (srv) => {
    const e = await srv.client.callTool({ name: 'echo', arguments: { message: 'still here' } });
    assert.equal(e.structuredContent.message, 'still here');
    const r = await srv.client.callTool({ name: 'pythonExec', arguments: { code: 'print(1)' } });
    assert.equal(r.isError, true);
    assert.match(resultText(r), /runtime_unavailable: .*ONLYBOXES_AGENT/);
  });
});
