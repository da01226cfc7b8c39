// SPDX-License-Identifier: Apache-2.0
// Sign in with a dashboard account; afterwards, the page that was asked for (or the account's
// home page).

import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import { loginErrorMessage } from '../lib/api.js';
import { homePath, parseHash, safeRedirect } from '../lib/routes.js';
import { Logo } from '../components/Logo.jsx';

export function LoginPage({ api, query, navigate, onSession }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const userRef = useRef(null);
  useLayoutEffect(() => userRef.current && userRef.current.focus(), []);

  const submit = async (e) => {
    e.preventDefault();
    if (!username.trim() || !password) {
      setError('Enter your username and password.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      const s = await api.post('/api/v1/console/login', { username, password }, { quiet401: true });
      setPassword('');
      onSession(s);
      const target = parseHash(safeRedirect(query.redirect) || homePath(s));
      navigate(target.path, target.query, { replace: true });
    } catch (err) {
      setError(loginErrorMessage(err));
      setBusy(false);
    }
  };

  return (
    <main class="login" id="main">
      <form class="card login-card" onSubmit={submit} noValidate aria-describedby={error ? 'login-error' : undefined}>
        <div class="login-brand">
          <Logo size={40} />
          <h1>Onlyboxes console</h1>
        </div>
        <p class="muted">Sign in to manage workers and API tokens.</p>
        <label for="login-username">Username</label>
        <input id="login-username" ref={userRef} name="username" autocomplete="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
        <label for="login-password">Password</label>
        <input id="login-password" name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        {error && (
          <p id="login-error" class="notice notice-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="button button-primary button-block" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
