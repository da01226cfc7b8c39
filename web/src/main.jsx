// SPDX-License-Identifier: Apache-2.0
// The dashboard: asks the console who is signed in once, then shows the page the URL's hash
// names (or sends the visitor where routes.js says). A 401 from any call returns to sign-in, with
// the page to come back to.

import { render } from 'preact';
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { createApi } from './lib/api.js';
import { buildHash, parseHash, resolveRoute } from './lib/routes.js';
import { Layout } from './components/Layout.jsx';
import { LoginPage } from './pages/Login.jsx';
import { WorkersPage } from './pages/Workers.jsx';
import { TokensPage } from './pages/Tokens.jsx';
import { AccountsPage } from './pages/Accounts.jsx';
import { WorkerToolPage } from './pages/WorkerTool.jsx';
import { ChangePasswordDialog } from './pages/ChangePassword.jsx';
import './styles.css';

const PAGES = {
  login: LoginPage,
  workers: WorkersPage,
  tokens: TokensPage,
  accounts: AccountsPage,
  'worker-tool': WorkerToolPage,
};

function App() {
  const [session, setSession] = useState(undefined); // undefined: asking; null: signed out
  const [bootError, setBootError] = useState('');
  const [loc, setLoc] = useState(() => parseHash(window.location.hash));
  const [changingPassword, setChangingPassword] = useState(false);
  const mainTitle = useRef('');

  useEffect(() => {
    const on = () => setLoc(parseHash(window.location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);

  const navigate = useCallback((path, query = {}, { replace = false } = {}) => {
    const hash = buildHash(path, query);
    if (replace) window.history.replaceState(null, '', hash);
    else window.history.pushState(null, '', hash);
    setLoc(parseHash(hash));
  }, []);

  const api = useMemo(
    () =>
      createApi(window.fetch.bind(window), () => {
        setChangingPassword(false);
        setSession(null);
      }),
    [],
  );

  useEffect(() => {
    api.get('/api/v1/console/session', { quiet401: true }).then(
      (s) => setSession(s),
      (e) => {
        if (e.status === 401) setSession(null);
        else setBootError(e.message);
      },
    );
  }, [api]);

  const resolved = session === undefined ? null : resolveRoute(loc.path, loc.query, session);
  useEffect(() => {
    if (resolved && resolved.redirect) {
      const target = parseHash(resolved.redirect);
      navigate(target.path, target.query, { replace: true });
    }
  });

  const route = resolved && resolved.route;
  useEffect(() => {
    if (!route) return;
    document.title = `${route.title} · Onlyboxes`;
    // A new page: tell screen readers by moving focus to its heading (not on the first load).
    if (mainTitle.current && mainTitle.current !== route.path) {
      const h = document.querySelector('main h1');
      if (h) h.focus();
    }
    mainTitle.current = route.path;
  }, [route && route.path]);

  const logout = useCallback(async () => {
    try {
      await api.post('/api/v1/console/logout', undefined, { quiet401: true });
    } catch {
      // signed out on this side whatever the console said
    }
    setSession(null);
    navigate('/login', {}, { replace: true });
  }, [api, navigate]);

  if (bootError) {
    return (
      <main class="boot">
        <p class="notice notice-error" role="alert">
          The console did not answer: {bootError}
        </p>
      </main>
    );
  }
  if (!route) {
    return (
      <main class="boot" aria-busy="true">
        <p>Loading…</p>
      </main>
    );
  }
  const Page = PAGES[route.name];
  const props = { api, session, query: loc.query, navigate, onSession: setSession };
  if (route.public) return <Page {...props} />;
  return (
    <Layout session={session} route={route} onChangePassword={() => setChangingPassword(true)} onLogout={logout}>
      <Page key={route.path} {...props} />
      {changingPassword && <ChangePasswordDialog api={api} onClose={() => setChangingPassword(false)} />}
    </Layout>
  );
}

render(<App />, document.getElementById('app'));
