// SPDX-License-Identifier: Apache-2.0
// The signed-in account's terminal sessions (those its terminalExec calls made, over MCP or
// REST): where each runs, when it was made and last used, its lease, whether a command runs in it.
// Renew a lease, end a session (its box goes with every process in it), open its live terminal.
// Refreshes every 5 seconds while the tab is visible.

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { queryString } from '../lib/api.js';
import { formatTime } from '../lib/format.js';
import { clampPage, parsePage } from '../lib/pagination.js';
import { buildHash } from '../lib/routes.js';
import { leaseText, SESSIONS_PAGE_SIZE } from '../lib/sessions.js';
import { DataTable, ErrorNotice } from '../components/DataTable.jsx';
import { Pagination } from '../components/Pagination.jsx';
import { ConfirmDialog } from '../components/Modal.jsx';

const REFRESH_MS = 5000;

export function SessionsPage({ api, query, navigate }) {
  const page = parsePage(query.page);
  const [data, setData] = useState(null);
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');
  const [auto, setAuto] = useState(true);
  const [now, setNow] = useState(Date.now());
  const [ending, setEnding] = useState(null);
  const [endError, setEndError] = useState('');
  const [endBusy, setEndBusy] = useState(false);
  const [renewing, setRenewing] = useState('');
  const seq = useRef(0);

  const load = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const list = await api.get('/api/v1/sessions' + queryString({ page, page_size: SESSIONS_PAGE_SIZE }));
      if (mine !== seq.current) return;
      const last = clampPage(page, list.total, SESSIONS_PAGE_SIZE);
      if (last !== page) {
        navigate('/sessions', { page: last > 1 ? last : '' }, { replace: true });
        return;
      }
      setData(list);
      setNow(Date.now());
      setError('');
    } catch (err) {
      if (mine === seq.current && err.status !== 401) setError(err.message);
    }
  }, [api, page, navigate]);

  useLayoutEffect(() => {
    load();
  }, [load]);

  useEffect(() => {
    if (!auto) return undefined;
    const tick = () => {
      if (document.visibilityState === 'visible') load();
    };
    const timer = setInterval(tick, REFRESH_MS);
    document.addEventListener('visibilitychange', tick);
    return () => {
      clearInterval(timer);
      document.removeEventListener('visibilitychange', tick);
    };
  }, [auto, load]);

  const path = (s) => '/api/v1/sessions/' + encodeURIComponent(s.session_id);

  const renew = async (s) => {
    setRenewing(s.session_id);
    setNotice('');
    try {
      const r = await api.post(path(s) + '/renew');
      setNotice(`Session ${s.session_id}: lease renewed until ${formatTime(r.lease_expires_at)}.`);
      load();
    } catch (err) {
      if (err.status !== 401) setError(err.message);
    } finally {
      setRenewing('');
    }
  };

  const end = async () => {
    setEndBusy(true);
    setEndError('');
    try {
      await api.del(path(ending));
      setNotice(`Session ${ending.session_id} ended.`);
      setEnding(null);
      load();
    } catch (err) {
      setEndError(err.message);
    } finally {
      setEndBusy(false);
    }
  };

  const columns = [
    { key: 'id', title: 'Session', class: 'col-node', render: (s) => <code>{s.session_id}</code> },
    { key: 'worker', title: 'Worker', render: (s) => <code class="small">{s.worker}</code> },
    {
      key: 'created',
      title: 'Created',
      render: (s) => (
        <div class="cell-stack">
          <span>{formatTime(s.created_at)}</span>
          <span class="muted small">last used {formatTime(s.last_used_at)}</span>
        </div>
      ),
    },
    {
      key: 'lease',
      title: 'Lease',
      render: (s) => (
        <div class="cell-stack">
          <span>{leaseText(s, now)}</span>
          <span class="muted small">{formatTime(s.lease_expires_at)}</span>
        </div>
      ),
    },
    {
      key: 'state',
      title: 'State',
      render: (s) =>
        s.status !== 'active' ? (
          <span class="pill pill-offline">{s.status === 'unavailable' ? 'Worker offline' : s.status}</span>
        ) : (
          <span class={'pill ' + (s.busy ? 'pill-busy' : 'pill-online')}>{s.busy ? 'Busy' : 'Idle'}</span>
        ),
    },
    {
      key: 'actions',
      title: 'Actions',
      class: 'col-actions',
      render: (s) => (
        <div class="row-actions">
          <a class="button button-small button-primary" href={buildHash('/terminal', { session: s.session_id })} aria-label={`Open the terminal of session ${s.session_id}`}>
            Terminal
          </a>
          <button type="button" class="button button-small" disabled={renewing === s.session_id} aria-label={`Renew the lease of session ${s.session_id}`} onClick={() => renew(s)}>
            Renew
          </button>
          <button
            type="button"
            class="button button-small button-danger"
            aria-label={`End session ${s.session_id}`}
            onClick={() => {
              setEndError('');
              setEnding(s);
            }}
          >
            End
          </button>
        </div>
      ),
    },
  ];

  return (
    <section class="page">
      <div class="page-head">
        <h1 tabIndex={-1}>Sessions</h1>
        <div class="page-tools">
          <label class="switch">
            <input type="checkbox" checked={auto} onChange={(e) => setAuto(e.currentTarget.checked)} /> Auto-refresh
          </label>
          <button type="button" class="button" onClick={() => load()}>
            Refresh
          </button>
        </div>
      </div>
      <p class="muted">Terminal sessions of your account: each keeps a box whose files, working directory and exported variables carry from one terminalExec call to the next.</p>
      <ErrorNotice error={error} />
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <DataTable
        caption="Terminal sessions"
        columns={columns}
        rows={data ? data.items : []}
        rowKey={(s) => s.session_id}
        loading={!data}
        empty="No terminal sessions. A terminalExec call (over MCP or POST /api/v1/commands/terminal) starts one."
      />
      {data && <Pagination page={page} pageSize={SESSIONS_PAGE_SIZE} total={data.total} href={(p) => buildHash('/sessions', { page: p > 1 ? p : '' })} label="Sessions pages" />}
      {ending && (
        <ConfirmDialog title="End session" confirmLabel="End session" busy={endBusy} error={endError} onConfirm={end} onClose={() => setEnding(null)}>
          <p>
            End session <code>{ending.session_id}</code>? Its box is removed with its files and every process in it, open terminals too. The next terminalExec call with this id gets session_not_found (or a new session with create_if_missing).
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}
