// SPDX-License-Identifier: Apache-2.0
// Workers: counts, the table (filter and page in the URL), creating a worker with its one-time
// startup command, deleting one. Refreshes every 5 seconds while the tab is visible.

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { queryString } from '../lib/api.js';
import { between, formatAge, formatTime } from '../lib/format.js';
import { clampPage, parsePage } from '../lib/pagination.js';
import { buildHash } from '../lib/routes.js';
import { capabilitiesWithInflight, labelEntries, parseStatus, STALE_AFTER_SEC, STATUS_FILTERS, WORKERS_PAGE_SIZE } from '../lib/workers.js';
import { DataTable, ErrorNotice } from '../components/DataTable.jsx';
import { Pagination } from '../components/Pagination.jsx';
import { ConfirmDialog, Modal } from '../components/Modal.jsx';
import { CodeBlock } from '../components/CopyButton.jsx';

const REFRESH_MS = 5000;
const FILTER_LABELS = { all: 'All', online: 'Online', offline: 'Offline' };

function StatCard({ label, value, hint, tone }) {
  return (
    <div class={'stat stat-' + tone}>
      <dt>{label}</dt>
      <dd>
        <span class="stat-value">{value ?? '—'}</span>
        {hint && <span class="stat-hint">{hint}</span>}
      </dd>
    </div>
  );
}

/** The command with the secret hidden unless shown. */
function maskSecret(command, secret) {
  return secret ? command.split(secret).join('•'.repeat(12)) : command;
}

function CreateWorkerDialog({ api, session, onClose, onCreated }) {
  const admin = session.account.is_admin;
  const [type, setType] = useState(admin ? 'normal' : 'worker-sys');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [created, setCreated] = useState(null); // the only copy of the secret, gone on close
  const [reveal, setReveal] = useState(false);

  const create = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const r = await api.post('/api/v1/workers', { type });
      setCreated(r);
      onCreated();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  const close = () => {
    setCreated(null);
    onClose();
  };

  if (created) {
    const secret = created.env && created.env.WORKER_SECRET;
    return (
      <Modal title="Worker created" onClose={close} wide>
        <p class="notice notice-warning">
          Copy the startup command now: the secret is shown only once. Anyone who has it can connect as this worker; delete the worker to revoke it.
        </p>
        <dl class="facts">
          <dt>Node ID</dt>
          <dd>
            <code>{created.node_id}</code>
          </dd>
          <dt>Type</dt>
          <dd>{created.type}</dd>
          <dt>Secret</dt>
          <dd>
            <code class="secret">{reveal ? secret : '•'.repeat(12)}</code>{' '}
            <button type="button" class="button button-small" aria-pressed={reveal} onClick={() => setReveal(!reveal)}>
              {reveal ? 'Hide secret' : 'Show secret'}
            </button>
          </dd>
        </dl>
        <h3>Start it on the worker's host</h3>
        <CodeBlock label="Startup command" text={created.command} display={reveal ? created.command : maskSecret(created.command, secret)} copyLabel="Copy command" />
        {created.type === 'worker-sys' ? (
          <p class="muted">
            A worker-sys may offer only the computerUse and readImage tools; run a worker-sys implementation with these variables. <code>onlyboxes worker</code> runs normal workers.
          </p>
        ) : (
          <p class="muted">
            It appears online here within seconds of starting. More settings (labels, TLS files, limits): the <a href={buildHash('/tools/worker-startup')}>worker startup tool</a>.
          </p>
        )}
        <div class="actions">
          <button type="button" class="button button-primary" onClick={close}>
            Done
          </button>
        </div>
      </Modal>
    );
  }
  return (
    <Modal title={admin ? 'Create worker' : 'Create worker-sys'} onClose={close}>
      <form onSubmit={create}>
        {admin ? (
          <fieldset class="choices">
            <legend>Type</legend>
            <label class="choice">
              <input type="radio" name="worker-type" value="normal" checked={type === 'normal'} onChange={() => setType('normal')} />
              <span>
                <strong>Normal</strong>
                <span class="muted"> — runs every tool in sandboxes, for every account (onlyboxes worker)</span>
              </span>
            </label>
            <label class="choice">
              <input type="radio" name="worker-type" value="worker-sys" checked={type === 'worker-sys'} onChange={() => setType('worker-sys')} />
              <span>
                <strong>Worker-sys</strong>
                <span class="muted"> — computerUse and readImage on a host of your own; one per account</span>
              </span>
            </label>
          </fieldset>
        ) : (
          <p>A worker-sys runs computerUse and readImage on a host of your own. Each account may have one.</p>
        )}
        <ErrorNotice error={error} />
        <div class="actions">
          <button type="button" class="button" onClick={close}>
            Cancel
          </button>
          <button type="submit" class="button button-primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create'}
          </button>
        </div>
      </form>
    </Modal>
  );
}

export function WorkersPage({ api, session, query, navigate }) {
  const status = parseStatus(query.status);
  const page = parsePage(query.page);
  const [data, setData] = useState(null);
  const [error, setError] = useState('');
  const [auto, setAuto] = useState(true);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState(null);
  const [deleteError, setDeleteError] = useState('');
  const [deleteBusy, setDeleteBusy] = useState(false);
  const seq = useRef(0);
  const inflight = useRef(false);

  const load = useCallback(
    async (background = false) => {
      if (background && inflight.current) return;
      const mine = ++seq.current;
      inflight.current = true;
      try {
        const [stats, list, live] = await Promise.all([
          api.get('/api/v1/workers/stats' + queryString({ stale_after_sec: STALE_AFTER_SEC })),
          api.get('/api/v1/workers' + queryString({ page, page_size: WORKERS_PAGE_SIZE, status: status === 'all' ? '' : status })),
          api.get('/api/v1/workers/inflight'),
        ]);
        if (mine !== seq.current) return;
        const last = clampPage(page, list.total, WORKERS_PAGE_SIZE);
        if (last !== page) {
          navigate('/workers', { status: status === 'all' ? '' : status, page: last }, { replace: true });
          return;
        }
        setData({ stats, list, live });
        setError('');
      } catch (err) {
        if (mine === seq.current && err.status !== 401) setError(err.message);
      } finally {
        if (mine === seq.current) inflight.current = false;
      }
    },
    [api, page, status, navigate],
  );

  // Before the first paint: the data is asked for as soon as the page exists.
  useLayoutEffect(() => {
    load();
  }, [load]);

  useEffect(() => {
    if (!auto) return undefined;
    const tick = () => {
      if (document.visibilityState === 'visible') load(true);
    };
    const timer = setInterval(tick, REFRESH_MS);
    document.addEventListener('visibilitychange', tick);
    return () => {
      clearInterval(timer);
      document.removeEventListener('visibilitychange', tick);
    };
  }, [auto, load]);

  const href = (p, s = status) => buildHash('/workers', { status: s === 'all' ? '' : s, page: p > 1 ? p : '' });

  const remove = async () => {
    setDeleteBusy(true);
    setDeleteError('');
    try {
      await api.del('/api/v1/workers/' + encodeURIComponent(deleting.node_id));
      setDeleting(null);
      load();
    } catch (err) {
      setDeleteError(err.message);
    } finally {
      setDeleteBusy(false);
    }
  };

  const stats = data && data.stats;
  const now = stats && stats.generated_at;
  const columns = [
    {
      key: 'node',
      title: 'Node',
      class: 'col-node',
      render: (w) => (
        <div class="cell-stack">
          <strong>{w.node_name || w.node_id}</strong>
          <code class="muted small">{w.node_id}</code>
        </div>
      ),
    },
    {
      key: 'runtime',
      title: 'Runtime',
      render: (w) =>
        w.executor_kind ? (
          <div class="cell-stack">
            <span>{w.executor_kind}</span>
            {w.version && <span class="muted small">{w.version}</span>}
          </div>
        ) : (
          <span class="muted">not connected yet</span>
        ),
    },
    {
      key: 'caps',
      title: 'Capabilities',
      render: (w) => {
        const caps = capabilitiesWithInflight(w, data.live);
        if (!caps.length) return <span class="muted">—</span>;
        return (
          <ul class="badges">
            {caps.map((c) => (
              <li key={c.name} class="badge" title={`${c.inflight ?? 0} running, at most ${c.max}`}>
                {c.name} <span class="badge-count">{c.inflight === null ? '–' : c.inflight}/{c.max}</span>
              </li>
            ))}
          </ul>
        );
      },
    },
    {
      key: 'labels',
      title: 'Labels',
      class: 'col-labels',
      render: (w) => {
        const l = labelEntries(w.labels);
        if (!l.length) return <span class="muted">—</span>;
        return (
          <ul class="badges badges-stacked">
            {l.map(([k, v]) => (
              <li key={k} class="badge badge-label">
                {k}={v}
              </li>
            ))}
          </ul>
        );
      },
    },
    {
      key: 'status',
      title: 'Status',
      render: (w) => <span class={'pill pill-' + w.status}>{w.status === 'online' ? 'Online' : 'Offline'}</span>,
    },
    {
      key: 'seen',
      title: 'Registered',
      render: (w) => (
        <div class="cell-stack">
          <span>{formatTime(w.registered_at)}</span>
          <span class="muted small">{w.executor_kind ? 'heartbeat ' + formatAge(between(w.last_seen_at, now)) : 'no heartbeat yet'}</span>
        </div>
      ),
    },
    {
      key: 'actions',
      title: 'Actions',
      class: 'col-actions',
      render: (w) =>
        w.node_id === 'embedded' ? (
          <span class="muted small" title="The console's own worker (--with-worker)">Built in</span>
        ) : (
          <button
            type="button"
            class="button button-small button-danger"
            aria-label={`Delete worker ${w.node_name || w.node_id}`}
            onClick={() => {
              setDeleteError('');
              setDeleting(w);
            }}
          >
            Delete
          </button>
        ),
    },
  ];

  return (
    <section class="page">
      <div class="page-head">
        <h1 tabIndex={-1}>Workers</h1>
        <div class="page-tools">
          <label class="switch">
            <input type="checkbox" checked={auto} onChange={(e) => setAuto(e.currentTarget.checked)} /> Auto-refresh
          </label>
          <button type="button" class="button" onClick={() => load()}>
            Refresh
          </button>
          <button type="button" class="button button-primary" onClick={() => setCreating(true)}>
            {session.account.is_admin ? 'Create worker' : 'Create worker-sys'}
          </button>
        </div>
      </div>
      <dl class="stats" aria-label="Worker counts">
        <StatCard label="Total" value={stats && stats.total} tone="total" />
        <StatCard label="Online" value={stats && stats.online} tone="online" />
        <StatCard label="Offline" value={stats && stats.offline} tone="offline" />
        <StatCard label="Stale" value={stats && stats.stale} hint={`heartbeat > ${STALE_AFTER_SEC}s`} tone="stale" />
      </dl>
      <ErrorNotice error={error} />
      <nav class="filters" aria-label="Filter by status">
        {STATUS_FILTERS.map((s) => (
          <a key={s} class="filter" href={href(1, s)} aria-current={s === status ? 'true' : undefined}>
            {FILTER_LABELS[s]}
          </a>
        ))}
      </nav>
      <DataTable
        caption="Workers"
        columns={columns}
        rows={data ? data.list.items : []}
        rowKey={(w) => w.node_id}
        loading={!data}
        empty={status === 'all' ? 'No workers yet. Create one, then start it with the command shown.' : `No ${status} workers.`}
      />
      {data && <Pagination page={page} pageSize={WORKERS_PAGE_SIZE} total={data.list.total} href={(p) => href(p)} label="Workers pages" />}
      {creating && <CreateWorkerDialog api={api} session={session} onClose={() => setCreating(false)} onCreated={() => load()} />}
      {deleting && (
        <ConfirmDialog title="Delete worker" confirmLabel="Delete worker" busy={deleteBusy} error={deleteError} onConfirm={remove} onClose={() => setDeleting(null)}>
          <p>
            Delete <strong>{deleting.node_name || deleting.node_id}</strong>? Its credential is revoked and a running worker is disconnected at once. This cannot be undone.
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}
