// SPDX-License-Identifier: Apache-2.0
// The signed-in account's tasks (REST tasks, sync commands, and MCP calls that became tasks):
// status, capability, when, how long, exit code; a detail view with the output; cancel one that
// runs. The filter and page live in the URL. Refreshes every 3 seconds while the tab is visible.

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { queryString } from '../lib/api.js';
import { formatTime } from '../lib/format.js';
import { clampPage, parsePage } from '../lib/pagination.js';
import { buildHash } from '../lib/routes.js';
import { capabilityName, isLive, parseTaskStatus, TASK_STATUSES, TASKS_PAGE_SIZE, taskDurationText, taskExitCode, taskOutputs, taskSession } from '../lib/sessions.js';
import { DataTable, ErrorNotice } from '../components/DataTable.jsx';
import { Pagination } from '../components/Pagination.jsx';
import { Modal } from '../components/Modal.jsx';
import { CodeBlock } from '../components/CopyButton.jsx';

const REFRESH_MS = 3000;
const FILTER_LABELS = { all: 'All', running: 'Running', succeeded: 'Succeeded', failed: 'Failed', timeout: 'Timed out', canceled: 'Canceled' };
const STATUS_TONE = { succeeded: 'online', running: 'busy', dispatched: 'busy', queued: 'busy', failed: 'failed', timeout: 'failed', canceled: 'offline' };

function StatusPill({ status }) {
  return <span class={'pill pill-' + (STATUS_TONE[status] || 'offline')}>{status}</span>;
}

function TaskDialog({ task, now, onClose, onCancel, cancelBusy, cancelError }) {
  const outs = taskOutputs(task);
  const sid = taskSession(task);
  return (
    <Modal title={`Task ${task.task_id}`} onClose={onClose} wide>
      <dl class="facts">
        <dt>Status</dt>
        <dd>
          <StatusPill status={task.status} />
        </dd>
        <dt>Capability</dt>
        <dd>
          <code>{capabilityName(task.capability)}</code>
        </dd>
        {task.request_id && (
          <>
            <dt>Request id</dt>
            <dd>
              <code>{task.request_id}</code>
            </dd>
          </>
        )}
        <dt>Created</dt>
        <dd>{formatTime(task.created_at)}</dd>
        <dt>Duration</dt>
        <dd>{taskDurationText(task, now)}</dd>
        <dt>Exit code</dt>
        <dd>{taskExitCode(task) ?? '—'}</dd>
        {sid && (
          <>
            <dt>Session</dt>
            <dd>
              <code>{sid}</code> <a href={buildHash('/terminal', { session: sid })}>open its terminal</a>
            </dd>
          </>
        )}
      </dl>
      {task.error && (
        <p class="notice notice-error">
          <code>{task.error.code}</code> {task.error.message}
        </p>
      )}
      {outs.map((o) => (
        <div key={o.name}>
          <h3>
            {o.name}
            {o.truncated && <span class="muted small"> (cut at the worker's limit)</span>}
          </h3>
          {o.text ? <CodeBlock label={`Task ${o.name}`} text={o.text} /> : <p class="muted">(empty)</p>}
        </div>
      ))}
      {!task.result && !task.error && <p class="muted">No result yet.</p>}
      {cancelError && (
        <p class="notice notice-error" role="alert">
          {cancelError}
        </p>
      )}
      <div class="actions">
        {isLive(task) && (
          <button type="button" class="button button-danger" disabled={cancelBusy} onClick={onCancel}>
            {cancelBusy ? 'Canceling…' : 'Cancel task'}
          </button>
        )}
        <button type="button" class="button button-primary" onClick={onClose}>
          Close
        </button>
      </div>
    </Modal>
  );
}

export function TasksPage({ api, query, navigate }) {
  const status = parseTaskStatus(query.status);
  const page = parsePage(query.page);
  const [data, setData] = useState(null);
  const [error, setError] = useState('');
  const [auto, setAuto] = useState(true);
  const [now, setNow] = useState(Date.now());
  const [open, setOpen] = useState(null); // the task shown in the dialog
  const [cancelBusy, setCancelBusy] = useState(false);
  const [cancelError, setCancelError] = useState('');
  const seq = useRef(0);

  const load = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const list = await api.get('/api/v1/tasks' + queryString({ page, page_size: TASKS_PAGE_SIZE, status: status === 'all' ? '' : status }));
      if (mine !== seq.current) return;
      const last = clampPage(page, list.total, TASKS_PAGE_SIZE);
      if (last !== page) {
        navigate('/tasks', { status: status === 'all' ? '' : status, page: last > 1 ? last : '' }, { replace: true });
        return;
      }
      setData(list);
      setNow(Date.now());
      setError('');
      // The dialog follows its task as it runs.
      setOpen((o) => (o ? list.items.find((t) => t.task_id === o.task_id) || o : o));
    } catch (err) {
      if (mine === seq.current && err.status !== 401) setError(err.message);
    }
  }, [api, page, status, navigate]);

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

  const cancel = async () => {
    setCancelBusy(true);
    setCancelError('');
    try {
      const t = await api.post('/api/v1/tasks/' + encodeURIComponent(open.task_id) + '/cancel');
      setOpen(t);
      load();
    } catch (err) {
      // 409: it ended first; its snapshot is what it ended as.
      if (err.status === 409) load();
      else setCancelError(err.message);
    } finally {
      setCancelBusy(false);
    }
  };

  const href = (p, s = status) => buildHash('/tasks', { status: s === 'all' ? '' : s, page: p > 1 ? p : '' });
  const columns = [
    {
      key: 'task',
      title: 'Task',
      class: 'col-node',
      render: (t) => (
        <button
          type="button"
          class="link-button"
          aria-label={`Details of task ${t.task_id}`}
          onClick={() => {
            setCancelError('');
            setOpen(t);
          }}
        >
          <code>{t.task_id.slice(0, 8)}</code>
        </button>
      ),
    },
    { key: 'status', title: 'Status', render: (t) => <StatusPill status={t.status} /> },
    { key: 'cap', title: 'Capability', render: (t) => <code>{capabilityName(t.capability)}</code> },
    { key: 'created', title: 'Created', render: (t) => formatTime(t.created_at) },
    { key: 'duration', title: 'Duration', render: (t) => taskDurationText(t, now) },
    { key: 'exit', title: 'Exit code', render: (t) => taskExitCode(t) ?? <span class="muted">—</span> },
    {
      key: 'actions',
      title: 'Actions',
      class: 'col-actions',
      render: (t) => (
        <button
          type="button"
          class="button button-small"
          onClick={() => {
            setCancelError('');
            setOpen(t);
          }}
        >
          Details
        </button>
      ),
    },
  ];

  return (
    <section class="page">
      <div class="page-head">
        <h1 tabIndex={-1}>Tasks</h1>
        <div class="page-tools">
          <label class="switch">
            <input type="checkbox" checked={auto} onChange={(e) => setAuto(e.currentTarget.checked)} /> Auto-refresh
          </label>
          <button type="button" class="button" onClick={() => load()}>
            Refresh
          </button>
        </div>
      </div>
      <ErrorNotice error={error} />
      <nav class="filters" aria-label="Filter by status">
        {TASK_STATUSES.map((s) => (
          <a key={s} class="filter" href={href(1, s)} aria-current={s === status ? 'true' : undefined}>
            {FILTER_LABELS[s]}
          </a>
        ))}
      </nav>
      <DataTable
        caption="Tasks"
        columns={columns}
        rows={data ? data.items : []}
        rowKey={(t) => t.task_id}
        loading={!data}
        empty={status === 'all' ? 'No tasks yet: POST /api/v1/tasks, the command routes and long MCP calls make them.' : 'No tasks with this status.'}
      />
      {data && <Pagination page={page} pageSize={TASKS_PAGE_SIZE} total={data.total} href={(p) => href(p)} label="Tasks pages" />}
      {open && <TaskDialog task={open} now={now} onClose={() => setOpen(null)} onCancel={cancel} cancelBusy={cancelBusy} cancelError={cancelError} />}
    </section>
  );
}
