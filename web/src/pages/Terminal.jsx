// SPDX-License-Identifier: Apache-2.0
// A session's live terminal: a shell in the session's box, in the same files and working
// directory as the agent's commands, which show here as they run (so a person can watch what the
// model does and step in). Copy and paste from the toolbar or the keyboard; the terminal follows
// the window's size. xterm.js is fetched with this page only.

import { useEffect, useRef, useState } from 'preact/hooks';
import { buildHash } from '../lib/routes.js';
import { endText, eventSummary } from '../lib/terminal.js';
import { ErrorNotice } from '../components/DataTable.jsx';

const STATE_LABELS = { loading: 'Loading…', connecting: 'Connecting…', open: 'Connected', ended: 'Closed' };
const ACTIVITY_KEPT = 8;

export function TerminalPage({ query }) {
  const sessionId = query.session || '';
  const box = useRef(null);
  const view = useRef(null);
  const [state, setState] = useState('loading');
  const [opened, setOpened] = useState(null);
  const [ended, setEnded] = useState('');
  const [size, setSize] = useState(null);
  const [activity, setActivity] = useState([]);
  const [note, setNote] = useState('');
  const [error, setError] = useState('');
  const [reader, setReader] = useState(false);

  useEffect(() => {
    if (!sessionId) return undefined;
    let gone = false;
    import('../lib/terminal-view.js').then(
      ({ TerminalView }) => {
        if (gone) return;
        const v = new TerminalView(box.current, {
          state: setState,
          opened: (e) => {
            setOpened(e);
            setEnded('');
            setSize({ cols: e.cols, rows: e.rows });
          },
          event: (e) => {
            const s = eventSummary(e);
            if (s) setActivity((a) => [...a.slice(-(ACTIVITY_KEPT - 1)), { at: Date.now(), text: s }]);
          },
          ended: (end, code) => setEnded(endText(end, code)),
          size: setSize,
        });
        view.current = v;
        // A page for tests and tools to type through, as the keyboard does.
        window.obxTerminal = v;
        v.connect(sessionId);
        v.focus();
      },
      (e) => setError(`The terminal could not be loaded: ${e.message}`),
    );
    return () => {
      gone = true;
      if (view.current) view.current.dispose();
      view.current = null;
      if (window.obxTerminal) delete window.obxTerminal;
    };
  }, [sessionId]);

  const act = async (fn, done) => {
    setNote('');
    try {
      const r = await fn();
      if (done) setNote(typeof done === 'function' ? done(r) : done);
    } catch (e) {
      setNote(`The clipboard refused: ${e.message}`);
    }
  };

  if (!sessionId) {
    return (
      <section class="page">
        <h1 tabIndex={-1}>Terminal</h1>
        <p>
          Open a terminal from the <a href={buildHash('/sessions')}>Sessions</a> page.
        </p>
      </section>
    );
  }
  return (
    <section class="page page-terminal">
      <div class="page-head">
        <h1 tabIndex={-1}>
          Terminal <code class="session-name">{sessionId}</code>
        </h1>
        <div class="page-tools">
          <span class={'pill pill-' + (state === 'open' ? 'online' : 'offline')} role="status">
            {STATE_LABELS[state]}
            {state === 'open' && opened ? ` · ${opened.shell}` : ''}
            {state === 'open' && size ? ` · ${size.cols}×${size.rows}` : ''}
          </span>
          <button type="button" class="button" disabled={state !== 'open'} onClick={() => act(() => view.current.copy(), (ok) => (ok ? 'Copied the selection.' : 'Select some text first.'))}>
            Copy
          </button>
          <button type="button" class="button" disabled={state !== 'open'} onClick={() => act(() => view.current.paste())}>
            Paste
          </button>
          <label class="switch">
            <input
              type="checkbox"
              checked={reader}
              onChange={(e) => {
                setReader(e.currentTarget.checked);
                if (view.current) view.current.setScreenReaderMode(e.currentTarget.checked);
              }}
            />{' '}
            Screen reader mode
          </label>
          {state === 'ended' && (
            <button type="button" class="button button-primary" onClick={() => view.current && view.current.connect(sessionId)}>
              Reconnect
            </button>
          )}
          <a class="button" href={buildHash('/sessions')}>
            Sessions
          </a>
        </div>
      </div>
      <ErrorNotice error={error} />
      {ended && (
        <p class="notice notice-warning" role="alert">
          {ended}
        </p>
      )}
      <div class="terminal-box" ref={box} />
      <p class="muted small terminal-help" aria-live="polite">
        {note ||
          'Commands the agent runs in this session appear here in magenta as they run, with their output. Copy: select, then Ctrl+Shift+C. Paste: Ctrl+Shift+V. The terminal closes after a long time without input.'}
      </p>
      {activity.length > 0 && (
        <section class="card terminal-activity" aria-label="The agent's commands">
          <h2>The agent's commands</h2>
          <ol aria-live="polite">
            {activity.map((a) => (
              <li key={a.at + a.text}>
                <time class="muted small">{new Date(a.at).toLocaleTimeString()}</time> {a.text}
              </li>
            ))}
          </ol>
        </section>
      )}
    </section>
  );
}
