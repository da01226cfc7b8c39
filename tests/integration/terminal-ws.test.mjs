// SPDX-License-Identifier: Apache-2.0
// The console's live terminal over its WebSocket (GET /api/v1/sessions/:id/terminal, subprotocol
// onlyboxes-terminal.v1, docs/console.md "Live terminals"), driven by a script the way the
// dashboard drives it, without a browser: the WebSocket client of tests/browser/ws-client.mjs
// sends the dashboard's cookie and the console's own Origin. It runs on the runtime the
// environment selects (ONLYBOXES_RUNTIME=bubblewrap, the default, or docker), twice: with the
// console's embedded worker (--with-worker) and with a remote `onlyboxes worker` connected over
// gRPC on loopback (the worker protocol's "pty" extension). Each time an agent's terminalExec over
// REST makes a session (a directory, a file, an exported variable); then, with the terminal open:
//  1. typing runs in the session's box: `echo hi-$((6*7))` prints hi-42, in the session's
//     working directory, with its variable and its file;
//  2. the agent's terminalExec while the terminal is open shows as exec / exec_output / exec_end
//     events, and typing goes on afterwards;
//  3. a resize (`r`, u16 cols and rows) reaches the pseudo-terminal: `stty size` says `30 100`;
//  4. the box's limits hold in the terminal (README "Sandboxes", docs/tools.md): uid 65532, no
//     capabilities, no_new_privs, a seccomp filter — on both runtimes;
//  5. another account cannot open this session's terminal (closes with 4404, not a byte shown);
//  6. DELETE /api/v1/sessions/:id closes the terminal (`x` reason session_ended, then a normal
//     close) and the box is gone: no host process is left in the box's pid namespace (nor a
//     process the terminal detached with setsid), the sessions API lists nothing, and on docker
//     the box's container (found by the owner-pid label and its pid namespace) is removed.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { wsConnect } from '../browser/ws-client.mjs';
import { COOKIE, bearer, call, login } from './console-lib.mjs';
import { assertNoProcess, containersOf, engineGet, sleep, sleepMarker, waitForProcess } from './lib.mjs';
import { consoleEnv, online, provision, startDeployment, startWorker, waitWorkers } from './remote-lib.mjs';

const RUNTIME = process.env.ONLYBOXES_RUNTIME || 'bubblewrap';
const MEMBER = 'term-member';
const MEMBER_PW = 'Member-pw-' + process.pid;
const SID = 'tws-demo';
// The machine is small and busy: bounds against a hang, never expectations of speed.
const WAIT = 60_000;
const T = { timeout: 180_000 };

const dir = mkdtempSync(path.join(tmpdir(), 'obx-terminal-ws-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An agent's terminalExec over REST (Bearer token). */
const agentExec = (d, body) => bearer(d.con.base, 'POST', '/api/v1/commands/terminal', d.token, body);

/** Opens the session's terminal as the dashboard does: cookie, the console's Origin, 80x24. */
function openTerminal(d, cookie, sid = SID) {
  const url = `${d.con.base}/api/v1/sessions/${encodeURIComponent(sid)}/terminal?cols=80&rows=24`;
  return wsConnect(url, { headers: { cookie: `${COOKIE}=${cookie}`, origin: d.con.base } });
}

/** The terminal's `x` messages (its end, JSON). */
const ends = (ws) => ws.msgs.filter((m) => m[0] === 0x78).map((m) => JSON.parse(m.subarray(1).toString()));

/** Types line (and Enter); resolves the terminal's output after it once every re matched there. */
async function typeAndSee(ws, line, res) {
  const mark = ws.screen().length;
  ws.send('i', line + '\r');
  const seen = () => ws.screen().slice(mark);
  await ws.wait(() => res.every((re) => re.test(seen())), WAIT).catch((e) => {
    assert.fail(`typed ${JSON.stringify(line)}, expected ${res.join(' ')}; the terminal printed:\n${seen()}\n(${e.message})`);
  });
  return seen();
}

/** Host pids whose pid namespace is ns (e.g. "pid:[4026532301]"). */
function processesIn(ns) {
  const found = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readlinkSync(`/proc/${e}/ns/pid`) === ns) found.push(Number(e));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return found;
}

/** The id of the container (of those the process ownerPid started) whose first process is in
 * pid namespace ns, or null: docker names the box's container, the terminal cannot. */
async function containerIn(ownerPid, ns) {
  for (const c of await containersOf(ownerPid)) {
    const pid = (await engineGet(`/containers/${c.Id}/json`)).State?.Pid;
    try {
      if (pid && readlinkSync(`/proc/${pid}/ns/pid`) === ns) return c.Id;
    } catch {
      // stopped meanwhile
    }
  }
  return null;
}

/** Polls fn() until it is truthy; returns its last value either way after timeoutMs. */
async function poll(fn, timeoutMs = WAIT) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await sleep(200);
  }
}

/**
 * The six checks, against a deployment made by start(): resolves { con, cookie, token,
 * memberCookie, ownerPid (the process that starts the boxes), stop() }.
 */
function terminalSuite(name, start) {
  describe(name, () => {
    let d;
    let ws;

    before(async () => {
      d = await start();
      const reg = await call(d.con.base, 'POST', '/api/v1/console/register', { cookie: d.cookie, body: { username: MEMBER, password: MEMBER_PW } });
      assert.equal(reg.status, 201, reg.text);
      d.memberCookie = await login(d.con.base, MEMBER, MEMBER_PW);
      const r = await agentExec(d, { command: 'mkdir -p proj && cd proj && echo hello > notes.txt && export DEMO_VAR=from-the-agent', session_id: SID, create_if_missing: true });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.exit_code, 0, r.text);
    });

    after(async () => {
      if (ws && !ws.closed) ws.end();
      await d?.stop();
    });

    test('typing runs in the session: hi-42, its directory, variable and file', T, async () => {
      const r = await openTerminal(d, d.cookie);
      assert.equal(r.status, 101, r.body);
      assert.equal(r.protocol, 'onlyboxes-terminal.v1');
      ws = r.ws;
      const open = await ws.wait((w) => w.events().find((e) => e.type === 'open'), WAIT);
      assert.match(open.shell, /sh/);
      assert.deepEqual([open.cols, open.rows], [80, 24]);
      await typeAndSee(ws, 'echo hi-$((6*7))', [/^hi-42\r?$/m]);
      await typeAndSee(ws, 'pwd; echo "[$DEMO_VAR]"; cat notes.txt', [/^\/workspace\/proj\r?$/m, /^\[from-the-agent\]\r?$/m, /^hello\r?$/m]);
    });

    test("the agent's terminalExec shows in the open terminal as it runs", T, async () => {
      const r = await agentExec(d, { command: 'echo agent-$((40+2)); touch made-by-agent', session_id: SID });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.stdout, 'agent-42\n', r.text);
      const ev = await ws.wait((w) => {
        const es = w.events();
        const start = es.find((e) => e.type === 'exec' && /agent-\$\(\(40\+2\)\)/.test(e.command));
        const end = start && es.find((e) => e.type === 'exec_end' && e.exec === start.exec);
        return end && { start, end, out: es.filter((e) => e.type === 'exec_output' && e.exec === start.exec) };
      }, WAIT);
      assert.match(ev.out.map((e) => e.data).join(''), /agent-42/);
      assert.equal(ev.end.exit_code, 0);
      assert.equal(ev.end.timed_out, false);
      // The prompt is back, and the agent's file is there for the person.
      await typeAndSee(ws, 'ls made-by-agent && echo typed-after-$((1+1))', [/^typed-after-2\r?$/m]);
    });

    test('a resize reaches the pseudo-terminal: stty size says 30 100', T, async () => {
      const size = Buffer.alloc(4);
      size.writeUInt16BE(100, 0);
      size.writeUInt16BE(30, 2);
      ws.send('r', size);
      await typeAndSee(ws, 'stty size', [/^30 100\r?$/m]);
    });

    test("the box's limits hold in the terminal: uid 65532, no capabilities, no_new_privs, seccomp", T, async () => {
      // Documented for both runtimes (README "Sandboxes", docs/tools.md): the user sandbox
      // (65532), every capability dropped, no_new_privs, a seccomp filter (mode 2).
      const out = await typeAndSee(ws, "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status", [/^Seccomp:\s+\d\r?$/m]);
      assert.match(out, /^65532\r?$/m);
      assert.match(out, /^CapEff:\s+0+\r?$/m);
      assert.match(out, /^NoNewPrivs:\s+1\r?$/m);
      assert.match(out, /^Seccomp:\s+2\r?$/m);
    });

    test("another account cannot open this session's terminal (4404)", T, async () => {
      const r = await openTerminal(d, d.memberCookie);
      assert.equal(r.status, 101, r.body);
      await r.ws.wait((w) => w.closed, WAIT);
      assert.equal(r.ws.closed.code, 4404);
      assert.equal(ends(r.ws)[0]?.reason, 'refused');
      assert.equal(r.ws.screen(), '', 'no byte of the terminal went to the other account');
      const rest = await call(d.con.base, 'GET', `/api/v1/sessions/${SID}`, { cookie: d.memberCookie });
      assert.equal(rest.status, 404, rest.text);
    });

    test('ending the session closes the terminal, and nothing of its box is left', T, async () => {
      // What identifies the box from the host: its pid namespace (both runtimes; on docker it
      // also names the container); and a process detached from the terminal.
      const mark = sleepMarker();
      const out = await typeAndSee(ws, `(setsid sleep ${mark} >/dev/null 2>&1 &); echo "box-ns=$(readlink /proc/self/ns/pid)"`, [/box-ns=pid:\[\d+\]/]);
      const ns = /box-ns=(pid:\[\d+\])/.exec(out)[1];
      assert.ok((await waitForProcess(mark, WAIT)).length > 0, 'the detached sleep is not seen on the host');
      assert.ok(processesIn(ns).length > 0, `no host process in the box's namespace ${ns}`);
      const container = RUNTIME === 'docker' ? await containerIn(d.ownerPid, ns) : null;
      if (RUNTIME === 'docker') assert.ok(container, `no container of pid ${d.ownerPid} runs the box (${ns})`);

      const del = await bearer(d.con.base, 'DELETE', `/api/v1/sessions/${SID}`, d.token);
      assert.equal(del.status, 204, del.text);
      await ws.wait((w) => w.closed, WAIT);
      assert.deepEqual(ends(ws).map((e) => e.reason), ['session_ended']);
      assert.deepEqual(ws.closed, { code: 1000, reason: 'session_ended' });

      await assertNoProcess(mark, WAIT, 'a process the terminal detached, after its session ended');
      const emptied = await poll(() => processesIn(ns).length === 0);
      assert.ok(emptied, `processes still in the box's namespace ${ns}: ${processesIn(ns)}`);
      const list = await bearer(d.con.base, 'GET', '/api/v1/sessions', d.token);
      assert.deepEqual(list.body.items, [], list.text);
      assert.equal((await bearer(d.con.base, 'GET', `/api/v1/sessions/${SID}`, d.token)).status, 404);
      if (RUNTIME === 'docker') {
        const gone = await poll(async () => !(await containersOf(d.ownerPid)).some((c) => c.Id === container));
        assert.ok(gone, `container ${container.slice(0, 12)} of the ended session is still there`);
      }
    });
  });
}

terminalSuite(`live terminal over the WebSocket, embedded worker (${RUNTIME})`, async () => {
  mkdirSync(path.join(dir, 'embedded'));
  const d = await startDeployment(consoleEnv(path.join(dir, 'embedded'), { ONLYBOXES_RUNTIME: RUNTIME, CONSOLE_ENABLE_REGISTRATION: 'true' }), ['--with-worker']);
  return { ...d, ownerPid: d.con.proc.pid, stop: () => d.con.stop() };
});

terminalSuite(`live terminal over the WebSocket, remote worker over gRPC (${RUNTIME})`, async () => {
  mkdirSync(path.join(dir, 'remote'));
  const d = await startDeployment(consoleEnv(path.join(dir, 'remote'), { CONSOLE_ENABLE_REGISTRATION: 'true' }));
  const v = await provision(d.con, d.cookie);
  const w = startWorker(v, { ONLYBOXES_RUNTIME: RUNTIME });
  const stop = async () => {
    await w.stop();
    await d.con.stop();
  };
  try {
    await waitWorkers(d.con, d.cookie, online([v.WORKER_ID]), WAIT);
  } catch (e) {
    e.message += `\n--- worker stderr ---\n${w.stderr}`;
    await stop();
    throw e;
  }
  return { ...d, ownerPid: w.proc.pid, stop };
});
