// SPDX-License-Identifier: Apache-2.0
// A live terminal in the page: xterm.js in a container, joined to the console's WebSocket for a
// session (terminal.js says what travels on it). Loaded only by the Terminal page (a chunk of its
// own: xterm.js is most of the dashboard's script). The page hears about the connection through
// callbacks and asks for copy, paste, reconnect and close.

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { installCspStyles } from './csp-styles.js';
import { AckCounter, PROTOCOL, cursorLine, decodeMessage, encodeAck, encodeInput, encodeResize, eventText, terminalUrl } from './terminal.js';

const LIGHT = {
  background: '#ffffff',
  foreground: '#17202b',
  cursor: '#1f5fc9',
  cursorAccent: '#ffffff',
  selectionBackground: '#b5cdf5',
  black: '#17202b',
  brightBlack: '#55606e',
};
const DARK = {
  background: '#11171e',
  foreground: '#e6ebf1',
  cursor: '#8db8ff',
  cursorAccent: '#11171e',
  selectionBackground: '#2f4a73',
  white: '#e6ebf1',
  brightWhite: '#ffffff',
};

const enc = new TextEncoder();

export class TerminalView {
  /**
   * container: the element to draw in. on: {state(s) ('connecting' | 'open' | 'ended'),
   * opened(openEvent), event(event), ended(text, code), size({cols, rows})}.
   */
  constructor(container, on) {
    installCspStyles();
    this.on = on;
    this.ws = null;
    this.open = false;
    this.chain = Promise.resolve();
    this.dark = window.matchMedia('(prefers-color-scheme: dark)');
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      lineHeight: 1.2, /* room below the baseline: an underscore stays visible */
      scrollback: 5000,
      theme: this.dark.matches ? DARK : LIGHT,
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(container);
    this.term.textarea && this.term.textarea.setAttribute('aria-label', 'Terminal input');
    this.onScheme = () => (this.term.options.theme = this.dark.matches ? DARK : LIGHT);
    this.dark.addEventListener('change', this.onScheme);
    this.term.onData((d) => this.sendInput(d));
    this.term.onBinary((d) => this.sendInput(Uint8Array.from(d, (c) => c.charCodeAt(0) & 255)));
    this.term.onResize(({ cols, rows }) => {
      this.send(encodeResize(cols, rows));
      this.on.size({ cols, rows });
    });
    // Ctrl+Shift+C copies the selection (Ctrl+C stays the terminal's interrupt); Ctrl+Shift+V
    // is left to the browser, whose paste the terminal takes.
    this.term.attachCustomKeyEventHandler((e) => {
      if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
      if (e.code === 'KeyC') {
        this.copy();
        return false;
      }
      return e.code !== 'KeyV';
    });
    this.resizer = new ResizeObserver(() => {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.refit();
      });
    });
    this.resizer.observe(container);
    this.refit();
    this.ackTimer = setInterval(() => this.flushAck(), 500);
  }

  refit() {
    try {
      this.fit.fit();
    } catch {
      // not laid out yet
    }
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.open) this.ws.send(bytes);
  }

  sendInput(data) {
    for (const m of encodeInput(data)) this.send(m);
  }

  flushAck() {
    const a = this.acks && this.acks.flush();
    if (a !== null && a !== undefined) this.send(encodeAck(a));
  }

  /** Opens the socket for sessionId (closing one that is open). */
  connect(sessionId) {
    this.disconnect();
    const acks = new AckCounter();
    this.acks = acks;
    let end = null;
    this.on.state('connecting');
    const ws = new WebSocket(terminalUrl(window.location, sessionId, this.term.cols, this.term.rows), PROTOCOL);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      const msg = decodeMessage(m.data);
      if (!msg) return;
      if (msg.type === 'output') {
        const n = msg.data.length;
        this.later(() =>
          this.term.write(msg.data, () => {
            const a = acks.add(n);
            if (a !== null && this.ws === ws) this.send(encodeAck(a));
          }),
        );
      } else if (msg.type === 'event') {
        if (msg.event.type === 'open') {
          this.open = true;
          this.on.opened(msg.event);
          this.on.state('open');
          // The page may have changed size while the socket opened.
          if (msg.event.cols !== this.term.cols || msg.event.rows !== this.term.rows) this.send(encodeResize(this.term.cols, this.term.rows));
        }
        this.later(() => this.showEvent(msg.event));
        this.on.event(msg.event);
      } else {
        end = msg.end;
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.open = false;
      this.ws = null;
      this.on.state('ended');
      this.on.ended(end, e.code);
    };
  }

  /**
   * An agent's command in the terminal, between the lines the shell printed: its block starts on a
   * line of its own, and after it the line the cursor was on (a prompt, what was typed) is written
   * again, so the shell's own idea of the cursor holds. A full-screen program (an editor, a pager:
   * the alternate screen) is not written over; the page's list still shows the command.
   */
  showEvent(event) {
    const text = eventText(event);
    if (!text) return undefined;
    if (event.type === 'exec') {
      // Where the cursor is once everything before has been drawn.
      return new Promise((done) =>
        this.term.write('', () => {
          const buffer = this.term.buffer.active;
          this.quiet = buffer.type === 'alternate';
          if (!this.quiet) {
            this.saved = cursorLine(buffer);
            this.term.write((buffer.cursorX > 0 ? '\r\n' : '') + text);
            this.lineStart = true;
          }
          done();
        }),
      );
    }
    if (this.quiet && (event.type === 'exec_output' || event.type === 'exec_end')) return;
    if (event.type === 'exec_end') {
      this.term.write((this.lineStart ? '' : '\r\n') + text + (this.saved || ''));
      this.saved = '';
      return;
    }
    this.term.write(text);
    this.lineStart = /\n$/.test(event.data || text);
    return undefined;
  }

  /** Runs fn after what came before it: output and events are drawn in the order they came. */
  later(fn) {
    this.chain = this.chain.then(fn);
  }

  disconnect() {
    const ws = this.ws;
    this.ws = null;
    this.open = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'closed by the page');
  }

  /** Copies the selection; resolves true when there was one. */
  async copy() {
    const text = this.term.getSelection();
    if (!text) return false;
    await navigator.clipboard.writeText(text);
    return true;
  }

  /** Pastes the clipboard's text into the terminal (as typed, bracketed when the shell asks). */
  async paste() {
    const text = await navigator.clipboard.readText();
    if (text) this.term.paste(text);
    this.term.focus();
  }

  focus() {
    this.term.focus();
  }

  setScreenReaderMode(on) {
    this.term.options.screenReaderMode = on;
  }

  /** Bytes typed as they are (for tests and tools): the same path as the keyboard. */
  type(text) {
    this.sendInput(enc.encode(text));
  }

  dispose() {
    this.disconnect();
    clearInterval(this.ackTimer);
    if (this.frame) cancelAnimationFrame(this.frame);
    this.resizer.disconnect();
    this.dark.removeEventListener('change', this.onScheme);
    this.term.dispose();
  }
}
