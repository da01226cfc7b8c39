// SPDX-License-Identifier: Apache-2.0
import test from 'node:test';
import assert from 'node:assert/strict';
import { capabilityName, isLive, leaseText, parseTaskStatus, taskDurationText, taskExitCode, taskOutputs, taskSession } from '../src/lib/sessions.js';
import { installCspStyles } from '../src/lib/csp-styles.js';

test("a session's lease", () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(leaseText({ lease_expires_unix_ms: now + 250_000 }, now), 'in 4m 10s');
  assert.equal(leaseText({ lease_expires_unix_ms: now - 1 }, now), 'expired');
  assert.equal(leaseText({}, now), '—');
});

test('tasks: statuses, durations, exit codes, outputs, sessions', () => {
  const now = Date.parse('2026-01-01T00:01:00Z');
  const done = { status: 'succeeded', created_at: '2026-01-01T00:00:00Z', completed_at: '2026-01-01T00:00:02.500Z', result: { stdout: 'hi\n', stderr: '', exit_code: 0, stdout_truncated: true, session_id: 's1' } };
  assert.equal(taskDurationText(done, now), '2.5 s');
  assert.equal(taskExitCode(done), 0);
  assert.deepEqual(taskOutputs(done), [
    { name: 'stdout', text: 'hi\n', truncated: true },
    { name: 'stderr', text: '', truncated: false },
  ]);
  assert.equal(taskSession(done), 's1');
  const running = { status: 'running', created_at: '2026-01-01T00:00:30Z' };
  assert.ok(isLive(running) && !isLive(done));
  assert.equal(taskDurationText(running, now), '30 s');
  assert.equal(taskExitCode(running), null);
  assert.deepEqual(taskOutputs({ result: { output: '42\n', stderr: 'w', exit_code: 1 } }).map((o) => o.name), ['output', 'stderr']);
  assert.deepEqual(taskOutputs({ result: { message: 'hello' } }), [{ name: 'message', text: 'hello', truncated: false }]);
  assert.equal(parseTaskStatus('failed'), 'failed');
  assert.equal(parseTaskStatus('bogus'), 'all');
  assert.equal(capabilityName('terminalexec'), 'terminalExec');
  assert.equal(capabilityName('somethingNew'), 'somethingNew');
});

test("xterm.js's styles go through constructed sheets and the CSSOM, never inline", () => {
  const adopted = [];
  class Sheet {
    replaceSync(t) {
      this.text = t;
    }
  }
  const made = [];
  const doc = {
    get adoptedStyleSheets() {
      return adopted.slice();
    },
    set adoptedStyleSheets(v) {
      adopted.splice(0, adopted.length, ...v);
    },
    createElement(tag) {
      const el = { tag, hidden: false, remove() {} };
      made.push(el);
      return el;
    },
  };
  const proto = {
    setAttribute(name, value) {
      this.attrs = { ...(this.attrs || {}), [name]: value };
    },
  };
  installCspStyles(doc, proto, Sheet);
  const st = doc.createElement('STYLE');
  assert.equal(st.tag, 'obx-style');
  assert.equal(st.hidden, true);
  st.textContent = '.xterm { color: red }';
  assert.equal(adopted.length, 1);
  assert.equal(adopted[0].text, '.xterm { color: red }');
  st.textContent = '.xterm { color: blue }';
  assert.equal(adopted.length, 1);
  assert.equal(adopted[0].text, '.xterm { color: blue }');
  st.remove();
  assert.equal(adopted.length, 0);
  assert.equal(doc.createElement('div').tag, 'div');
  const el = Object.create(proto);
  el.style = { cssText: '' };
  el.setAttribute('style', 'color:#ff0000;');
  assert.equal(el.style.cssText, 'color:#ff0000;');
  assert.equal(el.attrs, undefined);
  el.setAttribute('aria-label', 'x');
  assert.deepEqual(el.attrs, { 'aria-label': 'x' });
});
