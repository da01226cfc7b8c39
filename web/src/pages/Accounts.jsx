// SPDX-License-Identifier: Apache-2.0
// Accounts (admins only): the list, creating a member account when the console allows
// registration, deleting members (never an admin, never oneself).

import { useCallback, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { queryString } from '../lib/api.js';
import { formatTime } from '../lib/format.js';
import { clampPage, parsePage } from '../lib/pagination.js';
import { buildHash } from '../lib/routes.js';
import { DataTable, ErrorNotice } from '../components/DataTable.jsx';
import { Pagination } from '../components/Pagination.jsx';
import { ConfirmDialog, Modal } from '../components/Modal.jsx';

export const ACCOUNTS_PAGE_SIZE = 20;

function CreateAccountDialog({ api, onClose, onCreated }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    if (!username.trim() || !password.trim()) {
      setError('Enter a username and a password.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      await api.post('/api/v1/console/register', { username, password });
      setPassword('');
      onCreated();
      onClose();
    } catch (err) {
      setError(err.message);
      setBusy(false);
    }
  };
  return (
    <Modal title="Create account" onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <label for="account-username">Username</label>
        <input id="account-username" autocomplete="off" value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
        <label for="account-password">Password</label>
        <input id="account-password" type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        <p class="muted small">The new account is a member: it sees its own tokens and its own worker-sys.</p>
        <ErrorNotice error={error} />
        <div class="actions">
          <button type="button" class="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="button button-primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create account'}
          </button>
        </div>
      </form>
    </Modal>
  );
}

export function AccountsPage({ api, session, query, navigate }) {
  const page = parsePage(query.page);
  const [data, setData] = useState(null);
  const [error, setError] = useState('');
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState(null);
  const [deleteError, setDeleteError] = useState('');
  const [deleteBusy, setDeleteBusy] = useState(false);
  const seq = useRef(0);

  const load = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const r = await api.get('/api/v1/console/accounts' + queryString({ page, page_size: ACCOUNTS_PAGE_SIZE }));
      if (mine !== seq.current) return;
      const last = clampPage(page, r.total, ACCOUNTS_PAGE_SIZE);
      if (last !== page) {
        navigate('/accounts', { page: last > 1 ? last : '' }, { replace: true });
        return;
      }
      setData(r);
      setError('');
    } catch (err) {
      if (mine === seq.current && err.status !== 401) setError(err.message);
    }
  }, [api, page, navigate]);
  // Before the first paint: the data is asked for as soon as the page exists.
  useLayoutEffect(() => {
    load();
  }, [load]);

  const remove = async () => {
    setDeleteBusy(true);
    setDeleteError('');
    try {
      await api.del('/api/v1/console/accounts/' + encodeURIComponent(deleting.account_id));
      setDeleting(null);
      load();
    } catch (err) {
      setDeleteError(err.message);
    } finally {
      setDeleteBusy(false);
    }
  };

  const me = session.account.account_id;
  const columns = [
    {
      key: 'username',
      title: 'Username',
      render: (a) => (
        <span>
          <strong>{a.username}</strong>
          {a.account_id === me && <span class="muted"> (you)</span>}
        </span>
      ),
    },
    { key: 'role', title: 'Role', render: (a) => <span class={a.is_admin ? 'badge badge-admin' : 'badge'}>{a.is_admin ? 'Admin' : 'Member'}</span> },
    { key: 'created', title: 'Created', render: (a) => formatTime(a.created_at) },
    { key: 'updated', title: 'Updated', render: (a) => formatTime(a.updated_at) },
    {
      key: 'actions',
      title: 'Actions',
      class: 'col-actions',
      render: (a) =>
        a.is_admin || a.account_id === me ? (
          <span class="muted small">Protected</span>
        ) : (
          <button
            type="button"
            class="button button-small button-danger"
            aria-label={`Delete account ${a.username}`}
            onClick={() => {
              setDeleteError('');
              setDeleting(a);
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
        <h1 tabIndex={-1}>Accounts</h1>
        <div class="page-tools">
          {session.registration_enabled && (
            <button type="button" class="button button-primary" onClick={() => setCreating(true)}>
              Create account
            </button>
          )}
        </div>
      </div>
      {!session.registration_enabled && (
        <p class="muted">
          Creating accounts is off on this console (<code>CONSOLE_ENABLE_REGISTRATION</code>).
        </p>
      )}
      <ErrorNotice error={error} />
      <DataTable caption="Accounts" columns={columns} rows={data ? data.items : []} rowKey={(a) => a.account_id} loading={!data} empty="No accounts." />
      {data && <Pagination page={page} pageSize={ACCOUNTS_PAGE_SIZE} total={data.total} href={(p) => buildHash('/accounts', { page: p > 1 ? p : '' })} label="Accounts pages" />}
      {creating && <CreateAccountDialog api={api} onClose={() => setCreating(false)} onCreated={load} />}
      {deleting && (
        <ConfirmDialog title="Delete account" confirmLabel="Delete account" busy={deleteBusy} error={deleteError} onConfirm={remove} onClose={() => setDeleting(null)}>
          <p>
            Delete <strong>{deleting.username}</strong>? Its sessions, tokens and worker-sys go with it. This cannot be undone.
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}
