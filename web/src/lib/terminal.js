// SPDX-License-Identifier: Apache-2.0
// The live terminal's side of the console's WebSocket (src/console/api/terminal.c): binary
// messages whose first byte says what they are. To the page: 'o' what the terminal printed, 'e'
// an event (JSON), 'x' the end (JSON). From the page: 'i' typed bytes, 'r' a new size (u16 cols,
// u16 rows, big-endian), 'a' how many output bytes it has shown (a decimal running total: the
// terminal sends only so far ahead of it). Pure functions, unit tested.

export const PROTOCOL = 'onlyboxes-terminal.v1';
/** Output bytes shown between two acknowledgements (the terminal's window is 256 KiB). */
export const ACK_EVERY = 32 * 1024;
/** The largest piece of typed input sent at once (the console takes 64 KiB a message). */
export const INPUT_CHUNK = 32 * 1024;

const enc = new TextEncoder();

/** The socket's URL for a session, from the page's location ({protocol, host}). */
export function terminalUrl(loc, sessionId, cols, rows) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = new URLSearchParams({ cols: String(cols), rows: String(rows) });
  return `${scheme}//${loc.host}/api/v1/sessions/${encodeURIComponent(sessionId)}/terminal?${q}`;
}

function typed(type, body) {
  const out = new Uint8Array(1 + body.length);
  out[0] = type.charCodeAt(0);
  out.set(body, 1);
  return out;
}

/** Typed text (or bytes) as 'i' messages of at most INPUT_CHUNK bytes each. */
export function encodeInput(data) {
  const bytes = typeof data === 'string' ? enc.encode(data) : data;
  const out = [];
  for (let i = 0; i < bytes.length; i += INPUT_CHUNK) out.push(typed('i', bytes.subarray(i, i + INPUT_CHUNK)));
  return out;
}

export function encodeResize(cols, rows) {
  const b = new Uint8Array(4);
  const c = Math.max(1, Math.min(1000, cols | 0));
  const r = Math.max(1, Math.min(1000, rows | 0));
  b[0] = c >> 8;
  b[1] = c & 255;
  b[2] = r >> 8;
  b[3] = r & 255;
  return typed('r', b);
}

export function encodeAck(total) {
  return typed('a', enc.encode(String(Math.floor(total))));
}

/** A message from the console: {type: 'output', data} | {type: 'event', event} | {type: 'end', end}; null when unknown. */
export function decodeMessage(buffer) {
  const b = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  if (b.length === 0) return null;
  const body = b.subarray(1);
  const json = () => {
    try {
      return JSON.parse(new TextDecoder().decode(body));
    } catch {
      return null;
    }
  };
  switch (String.fromCharCode(b[0])) {
    case 'o':
      return { type: 'output', data: body };
    case 'e': {
      const event = json();
      return event && typeof event.type === 'string' ? { type: 'event', event } : null;
    }
    case 'x':
      return { type: 'end', end: json() || {} };
    default:
      return null;
  }
}

/** Counts output shown; says when (and what) to acknowledge. */
export class AckCounter {
  constructor(every = ACK_EVERY) {
    this.every = every;
    this.shown = 0;
    this.acked = 0;
  }

  /** n more bytes shown; returns the total to acknowledge now, or null. */
  add(n) {
    this.shown += n;
    return this.shown - this.acked >= this.every ? this.flush() : null;
  }

  /** Whatever is shown and not yet acknowledged (null when nothing is). */
  flush() {
    if (this.shown === this.acked) return null;
    this.acked = this.shown;
    return this.shown;
  }
}

const ESC = '\x1b[';
/** Line ends as a terminal wants them; a bare \n would leave the cursor in its column. */
export function crlf(text) {
  return text.replace(/\r?\n/g, '\r\n');
}

/** Characters that would drive the terminal (escape sequences) made visible and harmless. */
function inert(text) {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, (c) => (c === '\x1b' ? '␛' : '�'));
}

/**
 * A command's output as the terminal may show it: its colours (SGR sequences) kept, every other
 * control sequence made visible. What a command prints must not move the cursor, switch screens,
 * retitle the tab or reach the clipboard of the person watching.
 */
export function colorsOnly(text) {
  // eslint-disable-next-line no-control-regex
  const sgr = /\x1b\[[0-9;:]*m/g;
  let out = '';
  let last = 0;
  for (const m of text.matchAll(sgr)) {
    out += inert(text.slice(last, m.index)) + m[0];
    last = m.index + m[0].length;
  }
  return out + inert(text.slice(last));
}

/**
 * What the terminal shows for an event about the agent's commands (ANSI text), or '' for an event
 * that is not shown there. A command's lines start where the cursor is: the caller starts a new
 * line first when it is not at the start of one.
 */
export function eventText(event) {
  switch (event.type) {
    case 'exec': {
      const cmd = inert(String(event.command || '')).replace(/\n/g, '\r\n  ');
      return `${ESC}1;35m▶ agent${ESC}0m ${ESC}35m$ ${cmd}${event.cut ? ' …' : ''}${ESC}0m\r\n`;
    }
    case 'exec_output': {
      const text = crlf(colorsOnly(String(event.data || '')));
      return event.stream === 'stderr' ? `${ESC}31m${text}${ESC}0m` : text;
    }
    case 'exec_end': {
      const parts = [];
      if (event.canceled) parts.push('canceled');
      else if (event.timed_out) parts.push('timed out');
      else if (event.signal) parts.push(`killed by signal ${event.signal}`);
      else parts.push(`exit ${event.exit_code}`);
      if (Number.isFinite(event.duration_ms)) parts.push(formatDuration(event.duration_ms));
      if (event.dropped_bytes > 0) parts.push(`${event.dropped_bytes} bytes of output not shown`);
      return `${ESC}2;35m■ ${parts.join(' · ')}${ESC}0m\r\n`;
    }
    case 'input_dropped':
      return `\r\n${ESC}33m(typing too fast: some input was dropped)${ESC}0m\r\n`;
    default:
      return '';
  }
}

/** A one-line summary of an agent's command, for the page's activity list and screen readers. */
export function eventSummary(event) {
  if (event.type === 'exec') return `Agent ran: ${String(event.command || '').split('\n')[0].slice(0, 200)}`;
  if (event.type === 'exec_end') return event.canceled ? 'Agent command canceled' : event.timed_out ? 'Agent command timed out' : `Agent command ended (exit ${event.exit_code})`;
  return '';
}

/**
 * The SGR parameters (";1;38;5;208") of a cell of xterm.js's buffer (IBufferCell): what it takes
 * to write the cell again as it looks.
 */
export function cellSgr(c) {
  let s = '';
  if (c.isBold()) s += ';1';
  if (c.isDim()) s += ';2';
  if (c.isItalic()) s += ';3';
  if (c.isUnderline()) s += ';4';
  if (c.isInverse()) s += ';7';
  const color = (rgb, palette, v, base, bright, ext) => {
    if (rgb) return `;${ext};2;${(v >> 16) & 255};${(v >> 8) & 255};${v & 255}`;
    if (!palette) return '';
    if (v < 8) return `;${base + v}`;
    if (v < 16) return `;${bright + v - 8}`;
    return `;${ext};5;${v}`;
  };
  s += color(c.isFgRGB(), c.isFgPalette(), c.getFgColor(), 30, 90, 38);
  s += color(c.isBgRGB(), c.isBgPalette(), c.getBgColor(), 40, 100, 48);
  return s;
}

/**
 * The line the cursor is on, up to the cursor, as text that writes it again with its colours
 * (buffer: xterm.js's active buffer). What was typed at a prompt comes back after an agent's
 * command was shown below it, the cursor where the shell expects it.
 */
export function cursorLine(buffer) {
  const line = buffer.getLine(buffer.baseY + buffer.cursorY);
  if (!line) return '';
  const cell = buffer.getNullCell();
  let out = '';
  let prev = null;
  for (let x = 0; x < buffer.cursorX; x++) {
    if (!line.getCell(x, cell)) break;
    if (cell.getWidth() === 0) continue; /* the second half of a wide character */
    const sgr = cellSgr(cell);
    if (sgr !== prev) {
      out += `${ESC}0${sgr}m`;
      prev = sgr;
    }
    out += cell.getChars() || ' ';
  }
  return prev === null ? out : out + `${ESC}0m`;
}

/** "850 ms", "4.2 s", "3m 05s", "2h 07m". */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** What the page says when the terminal ended: the end message (may be null) and the close code. */
export function endText(end, code) {
  const e = end || {};
  if (code === 4401) return 'Your dashboard session ended. Sign in again to open the terminal.';
  if (code === 4404) return 'This terminal session does not exist (any more), or is not yours.';
  if (code === 4429) return e.message || 'Too many live terminals are open.';
  switch (e.reason) {
    case 'exited':
      return `The shell exited${Number.isInteger(e.exit_code) ? ` (code ${e.exit_code})` : ''}.`;
    case 'idle':
      return 'The terminal closed after a long time without input.';
    case 'closed':
      return 'The terminal was closed.';
    case 'session_ended':
      return 'The session ended: its box is gone.';
    case 'refused':
    case 'error':
      return e.message || 'The terminal could not be opened.';
    default:
      if (code === 1006 || code === undefined) return 'The connection to the console was lost.';
      return e.message || 'The terminal closed.';
  }
}
