// SPDX-License-Identifier: Apache-2.0
import test from 'node:test';
import assert from 'node:assert/strict';
import { AckCounter, INPUT_CHUNK, PROTOCOL, cellSgr, colorsOnly, cursorLine, decodeMessage, encodeAck, encodeInput, encodeResize, endText, eventSummary, eventText, formatDuration, terminalUrl } from '../src/lib/terminal.js';

const bytes = (u8) => Array.from(u8);
const text = (u8) => new TextDecoder().decode(u8);

test('the socket: its URL and subprotocol', () => {
  assert.equal(PROTOCOL, 'onlyboxes-terminal.v1');
  assert.equal(terminalUrl({ protocol: 'http:', host: '127.0.0.1:8089' }, 's 1/x', 80, 24), 'ws://127.0.0.1:8089/api/v1/sessions/s%201%2Fx/terminal?cols=80&rows=24');
  assert.equal(terminalUrl({ protocol: 'https:', host: 'c.example' }, 'a', 120, 40), 'wss://c.example/api/v1/sessions/a/terminal?cols=120&rows=40');
});

test('messages to the console: input in pieces, a size, an acknowledgement', () => {
  const [m] = encodeInput('ls é\r');
  assert.equal(String.fromCharCode(m[0]), 'i');
  assert.equal(text(m.subarray(1)), 'ls é\r');
  const big = encodeInput(new Uint8Array(INPUT_CHUNK * 2 + 5).fill(97));
  assert.deepEqual(big.map((x) => x.length), [INPUT_CHUNK + 1, INPUT_CHUNK + 1, 6]);
  assert.deepEqual(bytes(encodeResize(300, 50)), [114, 1, 44, 0, 50]);
  assert.deepEqual(bytes(encodeResize(0, 5000)), [114, 0, 1, 3, 232]);
  assert.equal(text(encodeAck(1234567.9)), 'a1234567');
});

test('messages from the console: output, events, the end; anything else is ignored', () => {
  const out = decodeMessage(new Uint8Array([111, 104, 105]).buffer);
  assert.equal(out.type, 'output');
  assert.deepEqual(bytes(out.data), [104, 105]);
  const ev = decodeMessage(new TextEncoder().encode('e{"type":"exec","exec":3,"command":"ls"}'));
  assert.deepEqual(ev, { type: 'event', event: { type: 'exec', exec: 3, command: 'ls' } });
  assert.equal(decodeMessage(new TextEncoder().encode('e{"no":"type"}')), null);
  assert.equal(decodeMessage(new TextEncoder().encode('enot json')), null);
  assert.deepEqual(decodeMessage(new TextEncoder().encode('x{"reason":"idle"}')), { type: 'end', end: { reason: 'idle' } });
  assert.deepEqual(decodeMessage(new TextEncoder().encode('x')), { type: 'end', end: {} });
  assert.equal(decodeMessage(new TextEncoder().encode('zzz')), null);
  assert.equal(decodeMessage(new Uint8Array(0)), null);
});

test('acknowledgements every so many bytes shown, and what is left on a flush', () => {
  const a = new AckCounter(100);
  assert.equal(a.add(60), null);
  assert.equal(a.add(60), 120);
  assert.equal(a.add(10), null);
  assert.equal(a.flush(), 130);
  assert.equal(a.flush(), null);
});

test("the agent's commands as the terminal shows them", () => {
  assert.equal(eventText({ type: 'exec', exec: 1, command: 'ls -l' }), '\x1b[1;35m▶ agent\x1b[0m \x1b[35m$ ls -l\x1b[0m\r\n');
  assert.match(eventText({ type: 'exec', command: 'a\nb', cut: true }), /\$ a\r\n {2}b …/);
  assert.equal(eventText({ type: 'exec_output', stream: 'stdout', data: 'a\nb\n' }), 'a\r\nb\r\n');
  assert.equal(eventText({ type: 'exec_output', stream: 'stderr', data: 'bad\n' }), '\x1b[31mbad\r\n\x1b[0m');
  assert.equal(eventText({ type: 'exec_end', exit_code: 2, duration_ms: 1500, dropped_bytes: 0 }), '\x1b[2;35m■ exit 2 · 1.5 s\x1b[0m\r\n');
  assert.match(eventText({ type: 'exec_end', canceled: true, exit_code: -1, dropped_bytes: 9 }), /canceled · 9 bytes of output not shown/);
  assert.match(eventText({ type: 'exec_end', timed_out: true, exit_code: -1 }), /timed out/);
  assert.equal(eventText({ type: 'open', pid: 1 }), '');
  assert.equal(eventSummary({ type: 'exec', command: 'make\nmake test' }), 'Agent ran: make');
  assert.equal(eventSummary({ type: 'exec_output' }), '');
});

test("a command's output keeps its colours but cannot drive the terminal", () => {
  assert.equal(colorsOnly('\x1b[31mred\x1b[0m ok'), '\x1b[31mred\x1b[0m ok');
  assert.equal(colorsOnly('\x1b]52;c;ZXZpbA==\x07x'), '␛]52;c;ZXZpbA==�x');
  assert.equal(colorsOnly('\x1b[?1049h\x1b[2J'), '␛[?1049h␛[2J');
  assert.equal(colorsOnly('tab\there\r\n'), 'tab\there\r\n');
  // the command's own text is shown, never run by the terminal
  assert.match(eventText({ type: 'exec', command: 'printf "\x1b]0;title\x07"' }), /␛\]0;title�/);
});

test('what the page says when a terminal ends', () => {
  assert.equal(endText({ reason: 'exited', exit_code: 0 }, 1000), 'The shell exited (code 0).');
  assert.match(endText({ reason: 'idle' }, 1000), /without input/);
  assert.match(endText({ reason: 'session_ended' }, 1000), /session ended/);
  assert.match(endText({ reason: 'refused', message: 'authentication required' }, 4401), /Sign in again/);
  assert.match(endText({ reason: 'refused', code: 'session_not_found' }, 4404), /does not exist/);
  assert.equal(endText({ reason: 'refused', message: 'too many' }, 4429), 'too many');
  assert.match(endText(null, 1006), /connection to the console was lost/);
});

test('durations', () => {
  assert.equal(formatDuration(850), '850 ms');
  assert.equal(formatDuration(4250), '4.3 s');
  assert.equal(formatDuration(42_000), '42 s');
  assert.equal(formatDuration(185_000), '3m 05s');
  assert.equal(formatDuration(7_620_000), '2h 07m');
  assert.equal(formatDuration(NaN), '—');
});

/** A line of xterm.js's buffer, as its API shows it, for the prompt restored after a command. */
function fakeCell(chars, attrs = {}) {
  return { chars, width: chars === '' ? 0 : 1, ...attrs };
}

function fakeBuffer(cells, cursorX) {
  const cell = {};
  const bind = (c) => {
    Object.assign(cell, {
      getChars: () => c.chars,
      getWidth: () => c.width,
      isBold: () => !!c.bold,
      isDim: () => false,
      isItalic: () => false,
      isUnderline: () => false,
      isInverse: () => false,
      isFgRGB: () => c.fgRGB !== undefined,
      isFgPalette: () => c.fg !== undefined,
      getFgColor: () => (c.fgRGB !== undefined ? c.fgRGB : c.fg ?? -1),
      isBgRGB: () => false,
      isBgPalette: () => c.bg !== undefined,
      getBgColor: () => c.bg ?? -1,
    });
  };
  return {
    baseY: 10,
    cursorY: 2,
    cursorX,
    getNullCell: () => cell,
    getLine: (y) => (y === 12 ? { getCell: (x) => (x < cells.length ? (bind(cells[x]), cell) : undefined) } : undefined),
  };
}

test('the cursor line comes back with its colours, up to the cursor', () => {
  const line = [fakeCell('~', { fg: 6, bold: true }), fakeCell('$', { fg: 6, bold: true }), fakeCell(' '), fakeCell('l'), fakeCell('s'), fakeCell('x')];
  assert.equal(cursorLine(fakeBuffer(line, 5)), '\x1b[0;1;36m~$\x1b[0m ls\x1b[0m');
  assert.equal(cursorLine(fakeBuffer([fakeCell('é', { fg: 200, bg: 9 }), fakeCell('')], 2)), '\x1b[0;38;5;200;101mé\x1b[0m');
  assert.equal(cursorLine(fakeBuffer(line, 0)), '');
  assert.equal(cursorLine(fakeBuffer([fakeCell('a', { fgRGB: 0x102030 })], 1)), '\x1b[0;38;2;16;32;48ma\x1b[0m');
  const plain = fakeBuffer([fakeCell('a')], 1);
  plain.getLine(12).getCell(0);
  assert.equal(cellSgr(plain.getNullCell()), '');
});
