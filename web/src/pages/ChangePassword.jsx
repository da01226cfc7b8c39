// SPDX-License-Identifier: Apache-2.0
// Change one's own password. The console then ends every other session of the account.

import { useState } from 'preact/hooks';
import { Modal } from '../components/Modal.jsx';

export function ChangePasswordDialog({ api, onClose }) {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [again, setAgain] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    if (!current || !next.trim()) {
      setError('Enter your current password and a new one.');
      return;
    }
    if (next !== again) {
      setError('The new password and its confirmation differ.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      await api.post('/api/v1/console/password', { current_password: current, new_password: next }, { quiet401: true });
      setCurrent('');
      setNext('');
      setAgain('');
      setDone(true);
    } catch (err) {
      setError(err.status === 401 && /current password/.test(err.message) ? 'The current password is wrong.' : err.message);
    } finally {
      setBusy(false);
    }
  };

  if (done) {
    return (
      <Modal title="Password changed" onClose={onClose}>
        <p role="status">Your password was changed. Your other sessions were signed out; this one goes on.</p>
        <div class="actions">
          <button type="button" class="button button-primary" onClick={onClose}>
            Close
          </button>
        </div>
      </Modal>
    );
  }
  return (
    <Modal title="Change password" onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <label for="pw-current">Current password</label>
        <input id="pw-current" type="password" autocomplete="current-password" value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
        <label for="pw-new">New password</label>
        <input id="pw-new" type="password" autocomplete="new-password" value={next} onInput={(e) => setNext(e.currentTarget.value)} />
        <label for="pw-again">New password again</label>
        <input id="pw-again" type="password" autocomplete="new-password" value={again} onInput={(e) => setAgain(e.currentTarget.value)} />
        {error && (
          <p class="notice notice-error" role="alert">
            {error}
          </p>
        )}
        <div class="actions">
          <button type="button" class="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="button button-primary" disabled={busy}>
            {busy ? 'Saving…' : 'Change password'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
