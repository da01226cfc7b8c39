// SPDX-License-Identifier: Apache-2.0
// API tokens of the signed-in account: the list (masked), creating one (its value shown once,
// with ready-made client snippets), deleting one.

import { useCallback, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { formatTime } from '../lib/format.js';
import { mcpUrl, tokenSnippets } from '../lib/snippets.js';
import { DataTable, ErrorNotice } from '../components/DataTable.jsx';
import { ConfirmDialog, Modal } from '../components/Modal.jsx';
import { CodeBlock, CopyButton } from '../components/CopyButton.jsx';

const NAME_MAX = 64;

/** Tabs over the snippets (arrow keys move between them, as a tab list should). */
function SnippetTabs({ snippets }) {
  const [active, setActive] = useState(snippets[0].id);
  const tabs = useRef({});
  const onKey = (e) => {
    const i = snippets.findIndex((s) => s.id === active);
    let j = -1;
    if (e.key === 'ArrowRight') j = (i + 1) % snippets.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + snippets.length) % snippets.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = snippets.length - 1;
    if (j < 0) return;
    e.preventDefault();
    setActive(snippets[j].id);
    tabs.current[snippets[j].id].focus();
  };
  const current = snippets.find((s) => s.id === active);
  return (
    <div class="tabs">
      <div role="tablist" aria-label="Use the token with" onKeyDown={onKey}>
        {snippets.map((s) => (
          <button
            key={s.id}
            ref={(el) => (tabs.current[s.id] = el)}
            type="button"
            role="tab"
            id={`tab-${s.id}`}
            aria-selected={s.id === active}
            aria-controls={`panel-${s.id}`}
            tabIndex={s.id === active ? 0 : -1}
            onClick={() => setActive(s.id)}
          >
            {s.title}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`panel-${current.id}`} aria-labelledby={`tab-${current.id}`} class="tab-panel">
        <p class="muted">{current.where}</p>
        <CodeBlock label={`${current.title} snippet`} text={current.text} />
      </div>
    </div>
  );
}

function CreateTokenDialog({ api, onClose, onCreated }) {
  const [name, setName] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState(null); // the only copy of the token, gone on close

  const submit = async (e) => {
    e.preventDefault();
    const n = name.trim();
    if (!n) {
      setError('Give the token a name, such as the client or machine that uses it.');
      return;
    }
    if ([...n].length > NAME_MAX) {
      setError(`A name may have at most ${NAME_MAX} characters.`);
      return;
    }
    setBusy(true);
    setError('');
    try {
      const r = await api.post('/api/v1/console/tokens', { name: n });
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
    const origin = window.location.origin;
    return (
      <Modal title={`Token “${created.name}” created`} onClose={close} wide>
        <p class="notice notice-warning">Copy the token now: it is shown only once. Whoever has it can use this console as you; delete it to revoke it.</p>
        <h3>Token</h3>
        <div class="code-block">
          <pre tabIndex={0} aria-label="Token value">
            <code class="token-value">{created.token}</code>
          </pre>
          <CopyButton text={created.token} label="Copy token" />
        </div>
        <h3>Use it</h3>
        <p class="muted">
          MCP endpoint: <code>{mcpUrl(origin)}</code>
        </p>
        <SnippetTabs snippets={tokenSnippets(origin, created.token)} />
        <div class="actions">
          <button type="button" class="button button-primary" onClick={close}>
            Done
          </button>
        </div>
      </Modal>
    );
  }
  return (
    <Modal title="Create API token" onClose={close}>
      <form onSubmit={submit} noValidate>
        <label for="token-name">Name</label>
        <input id="token-name" value={name} maxLength={NAME_MAX * 2} autocomplete="off" aria-describedby="token-name-help" onInput={(e) => setName(e.currentTarget.value)} />
        <p id="token-name-help" class="muted small">
          Unique among your tokens; for example the client or machine that uses it.
        </p>
        <ErrorNotice error={error} />
        <div class="actions">
          <button type="button" class="button" onClick={close}>
            Cancel
          </button>
          <button type="submit" class="button button-primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create token'}
          </button>
        </div>
      </form>
    </Modal>
  );
}

export function TokensPage({ api }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState('');
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState(null);
  const [deleteError, setDeleteError] = useState('');
  const [deleteBusy, setDeleteBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      const r = await api.get('/api/v1/console/tokens');
      setItems(r.items || []);
      setError('');
    } catch (err) {
      if (err.status !== 401) setError(err.message);
    }
  }, [api]);
  // Before the first paint: the data is asked for as soon as the page exists.
  useLayoutEffect(() => {
    load();
  }, [load]);

  const remove = async () => {
    setDeleteBusy(true);
    setDeleteError('');
    try {
      await api.del('/api/v1/console/tokens/' + encodeURIComponent(deleting.id));
      setDeleting(null);
      load();
    } catch (err) {
      setDeleteError(err.message);
    } finally {
      setDeleteBusy(false);
    }
  };

  const columns = [
    { key: 'name', title: 'Name', render: (t) => <strong>{t.name}</strong> },
    { key: 'token', title: 'Token', render: (t) => <code>{t.token_masked}</code> },
    { key: 'created', title: 'Created', render: (t) => formatTime(t.created_at) },
    { key: 'updated', title: 'Updated', render: (t) => formatTime(t.updated_at) },
    {
      key: 'actions',
      title: 'Actions',
      class: 'col-actions',
      render: (t) => (
        <button
          type="button"
          class="button button-small button-danger"
          aria-label={`Delete token ${t.name}`}
          onClick={() => {
            setDeleteError('');
            setDeleting(t);
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
        <h1 tabIndex={-1}>API tokens</h1>
        <div class="page-tools">
          <button type="button" class="button button-primary" onClick={() => setCreating(true)}>
            Create token
          </button>
        </div>
      </div>
      <p class="muted">
        A token lets an MCP client or a script use this console as you: <code>/mcp</code> and the REST API take it as <code>Authorization: Bearer …</code>. Its value is shown once, when it is created.
      </p>
      <ErrorNotice error={error} />
      <DataTable caption="API tokens" columns={columns} rows={items || []} rowKey={(t) => t.id} loading={!items} empty="No tokens yet." />
      {creating && <CreateTokenDialog api={api} onClose={() => setCreating(false)} onCreated={load} />}
      {deleting && (
        <ConfirmDialog title="Delete token" confirmLabel="Delete token" busy={deleteBusy} error={deleteError} onConfirm={remove} onClose={() => setDeleting(null)}>
          <p>
            Delete <strong>{deleting.name}</strong>? Clients using it are refused from now on. This cannot be undone.
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}
